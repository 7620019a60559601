"""The agent's worker threads: where a route's service call runs, off the event loop.

A service call may wait — for the disk (the audit log commits before the answer goes
out), the card reader, a remote system — so it must not run on the event loop, which
parses and answers every other request meanwhile. FastAPI would run a plain ``def``
route in anyio's thread pool, and then its answer's validation in that pool again: two
hand-overs per request, each a thread woken and the loop woken back, and on a busy
machine each wake-up a wait for a core. :func:`off_loop` makes the route a coroutine
that hands only the call itself to :class:`Workers`; FastAPI then validates and
serialises the answer on the loop (CPU work, a few microseconds for a resident). So a
request crosses to a thread once, and the crossing itself is a queue put and a
``call_soon_threadsafe``, without anyio's capacity limiter and cancel scope per call.

As with anyio's threads, a call once started is not abandoned: a request cancelled while
its call runs (the server stopping) ends when the call has, so a stopping agent still
waits for the calls in flight before it closes the Middleware.

A few routes are short reads whose only effect is what they answer (a resident looked
up): :func:`on_loop` marks them. Their service call runs on the event loop itself — no
hand-over — with its audit entries held (:meth:`~hcmiddleware.audit.Audit.held`); the
answer waits, without blocking the loop, until :class:`Committer`'s one thread has
committed them, together with every other held entry waiting by then. So each call
still answers only once its entry is on disk, but the loop never waits for the disk and
many calls share one commit and one wake-up. When the database is not a local SQLite
file (a round trip per statement), or its connections are all but taken, such a route
runs in the workers as any other, its entries still committed by the committer.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import functools
import inspect
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from hcmiddleware import storage

if TYPE_CHECKING:
    import sqlalchemy as sa

    from hcmiddleware.audit import Audit, Held

__all__ = ["Committer", "Workers", "off_loop", "on_loop", "route_for", "service_time"]

_T = TypeVar("_T")
log = logging.getLogger("hcmiddleware.agent")

#: seconds the request's service calls took themselves (:func:`service_time`)
_SPENT: contextvars.ContextVar[list[float] | None] = contextvars.ContextVar(
    "hcm_agent_service_time", default=None
)


@contextlib.contextmanager
def service_time() -> Iterator[list[float]]:
    """Add up, in ``[seconds]``, the time the block's routes spent in their service call
    itself — in the worker thread or on the loop, with the commit of its audit entries —
    leaving out the hand-overs and the waits for a thread, the loop or the committer.
    What a request took beyond it is the agent's own (``Server-Timing: svc``)."""
    cell = [0.0]
    token = _SPENT.set(cell)
    try:
        yield cell
    finally:
        _SPENT.reset(token)


def _spent(seconds: float) -> None:
    cell = _SPENT.get()
    if cell is not None:
        cell[0] += seconds


def _timed(fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T:
    """``fn(*args, **kwargs)``, its time added to the request's :func:`service_time`."""
    start = time.perf_counter()
    try:
        return fn(*args, **kwargs)
    finally:
        _spent(time.perf_counter() - start)


class _Job:
    __slots__ = ("call", "context", "done", "finished", "future", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, call: Callable[[], Any]) -> None:
        self.loop = loop
        self.future: asyncio.Future[Any] = loop.create_future()
        self.context = contextvars.copy_context()
        self.call = call
        #: set on the loop once the call has returned or raised
        self.done = False
        #: what a cancelled request waits on until the call is done
        self.finished: asyncio.Future[None] | None = None


def _finish(job: _Job, result: Any, error: BaseException | None) -> None:
    """On the loop: hand the call's outcome to the request waiting for it."""
    job.done = True
    if not job.future.done():
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(result)
    if job.finished is not None and not job.finished.done():
        job.finished.set_result(None)


class _Thread:
    """One worker thread and the slot a call is handed to it in."""

    __slots__ = ("slot", "thread")

    def __init__(self) -> None:
        self.slot: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self.thread: threading.Thread | None = None


class Workers:
    """Up to ``limit`` threads (started as needed, kept until :meth:`close`) that run
    the blocking calls of the agent's routes; more calls at once wait their turn.

    A call goes to the thread that became idle last (its caches, and the database
    connection it used, are the warmest), handed to it alone: the others sleep on.
    """

    def __init__(self, limit: int = 40, *, name: str = "hcm-agent-worker") -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self._name = name
        self._lock = threading.Lock()
        self._threads: list[_Thread] = []
        #: idle threads, the last one idle at the end
        self._idle: list[_Thread] = []
        #: calls waiting for a thread (all ``limit`` busy)
        self._waiting: collections.deque[_Job] = collections.deque()
        self._closed = False

    @property
    def threads(self) -> int:
        """How many threads have been started."""
        return len(self._threads)

    def idle(self) -> bool:
        """No call is running in a thread or waiting for one."""
        return len(self._idle) == len(self._threads) and not self._waiting

    async def run(self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T:
        """``fn(*args, **kwargs)`` in a worker thread, in a copy of the caller's context."""
        loop = asyncio.get_running_loop()
        job = _Job(loop, functools.partial(fn, *args, **kwargs))
        self._submit(job)
        try:
            result: _T = await job.future
            return result
        except asyncio.CancelledError:
            # the call cannot be stopped half-way: the request ends once it has
            while not job.done:
                job.finished = loop.create_future()
                try:
                    await job.finished
                except asyncio.CancelledError:
                    continue
            raise

    def close(self, timeout: float = 5.0) -> None:
        """Stop the threads once the calls handed to them have run (new calls refused);
        wait at most ``timeout`` seconds in all for them (they are daemon threads)."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            threads = [t.thread for t in self._threads if t.thread is not None]
        for worker in idle:
            worker.slot.put(None)
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _submit(self, job: _Job) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("the agent's worker threads are stopped")
            if self._idle:
                worker = self._idle.pop()
            elif len(self._threads) < self.limit:
                worker = _Thread()
                worker.thread = threading.Thread(
                    target=self._work,
                    args=(worker,),
                    name=f"{self._name}-{len(self._threads) + 1}",
                    daemon=True,
                )
                self._threads.append(worker)
                worker.thread.start()
            else:
                self._waiting.append(job)  # the next thread free takes it
                return
        worker.slot.put(job)

    def _work(self, worker: _Thread) -> None:
        job = worker.slot.get()
        while job is not None:
            result: Any = None
            error: BaseException | None = None
            try:
                result = job.context.run(job.call)
            except BaseException as exc:  # handed to the request, as anyio's threads do
                error = exc
            with self._lock:
                following = self._waiting.popleft() if self._waiting else None
                stop = following is None and self._closed
                if following is None and not stop:
                    self._idle.append(worker)
            # the loop woken last before this thread waits: it then finds the GIL free
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                job.loop.call_soon_threadsafe(_finish, job, result, error)
            del job, result, error  # hold nothing while idle
            if stop:
                return
            job = following if following is not None else worker.slot.get()


def off_loop(endpoint: Callable[..., Any], workers: Workers) -> Callable[..., Any]:
    """A plain ``def`` route as a coroutine that runs it in ``workers``.

    The signature, name and docstring stay the route's (``functools.wraps``), so its
    parameters, answer model and OpenAPI operation are the same. Coroutines,
    generators and anything else are given back as they are.
    """
    if not inspect.isfunction(endpoint) or (
        inspect.iscoroutinefunction(endpoint)
        or inspect.isgeneratorfunction(endpoint)
        or inspect.isasyncgenfunction(endpoint)
    ):
        return endpoint

    @functools.wraps(endpoint)
    async def route(*args: Any, **kwargs: Any) -> Any:
        return await workers.run(_timed, endpoint, *args, **kwargs)

    return route


#: the attribute :func:`on_loop` sets on a route's endpoint
_ON_LOOP = "__hcm_on_loop__"


def on_loop(endpoint: Callable[..., _T]) -> Callable[..., _T]:
    """Mark a plain ``def`` route as a short read whose only effect is its answer: it
    runs on the event loop with its audit entries held for the :class:`Committer`
    (:func:`held_on_loop`). Only for calls that wait for nothing but the installation's
    own database and act on nothing outside it."""
    setattr(endpoint, _ON_LOOP, True)
    return endpoint


def _room_in(engine: sa.Engine) -> bool:
    """True if a connection can be had from ``engine``'s pool without waiting (a pool
    without a limit always has room)."""
    pool = engine.pool
    size = getattr(pool, "size", None)
    checked_out = getattr(pool, "checkedout", None)
    if not callable(size) or not callable(checked_out):
        return True
    return bool(checked_out() < size())


#: what the committer's queue carries to ask for :meth:`Committer._flush`
_FLUSH = "flush"
#: seconds after a commit on the loop that its announcement follows
_FLUSH_AFTER = 0.05


class Committer:
    """One thread that commits the audit entries :func:`on_loop` routes held: every
    block waiting when it wakes, in one group commit, then one wake-up of the loop for
    all of them. Calls that wait on it do so without blocking the loop."""

    def __init__(self, audit: Audit, *, name: str = "hcm-agent-commit") -> None:
        self.audit = audit
        self._queue: queue.SimpleQueue[
            tuple[Held, asyncio.AbstractEventLoop, asyncio.Future[float]] | str | None
        ] = queue.SimpleQueue()
        #: calls of :func:`on_loop` routes under way (counted on the loop)
        self.calls = 0
        #: the thread is committing a batch
        self._committing = False
        #: a flush of what the loop committed itself is scheduled
        self._flush_asked = False
        self._folded = 0.0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def commit_now(self, held: Held) -> bool:
        """On the loop: commit ``held`` right here if the call is the only one under way
        and nothing is queued or being committed — it then costs no wake-up of this
        thread and none of the loop — and only if the commit needs no wait
        (:meth:`Audit.commit_held_now`). False, with nothing written, otherwise: then
        :meth:`commit`. The announcement (and a checkpoint when due) follows on this
        thread, shortly after the answer.

        :raises AuditError: the commit was tried and failed.
        """
        if self.calls != 1 or self._committing or not self._queue.empty():
            return False
        if not self.audit.commit_held_now([held]):
            return False
        if not self._flush_asked:
            self._flush_asked = True
            asyncio.get_running_loop().call_later(_FLUSH_AFTER, self._queue.put, _FLUSH)
        return True

    async def commit(self, held: Held) -> float:
        """Return once ``held``'s entries are committed — the seconds the commit took,
        not counting the wait for the thread — or raise the commit's error.

        A request cancelled meanwhile (the server stopping) still waits for the commit:
        the entries are written either way, and nothing of the answer goes out before.
        """
        if not len(held):
            return 0.0
        loop = asyncio.get_running_loop()
        done: asyncio.Future[float] = loop.create_future()
        self._queue.put((held, loop, done))
        while True:
            try:
                return await asyncio.shield(done)
            except asyncio.CancelledError:
                if done.done():
                    raise
                continue

    def close(self, timeout: float = 30.0) -> None:
        """Commit what is queued and stop the thread."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                break
            items = [first]
            while True:  # everything queued by now rides in this commit
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                items.append(item)
            batch = [item for item in items if not isinstance(item, str)]
            if len(batch) < len(items):  # asked to flush what the loop committed
                self._flush_asked = False
                if not batch:
                    self._flush()
                    continue
            error: BaseException | None = None
            start = time.perf_counter()
            self._committing = True
            try:
                self.audit.commit_held(held for held, _loop, _done in batch)
            except BaseException as exc:  # handed to each request, as a worker's error is
                error = exc
            finally:
                self._committing = False
            took = time.perf_counter() - start
            by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[float]]] = {}
            for _held, loop, done in batch:
                by_loop.setdefault(loop, []).append(done)
            for loop, futures in by_loop.items():
                with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits
                    loop.call_soon_threadsafe(_settle, futures, took, error)
            del batch, items, error
        self._flush()  # stopping: what the loop committed last is announced too

    def _flush(self) -> None:
        """Announce what the loop committed itself (a checkpoint when due), and fold
        SQLite's write-ahead log, which those commits leave to others, once a second at
        most."""
        try:
            self.audit.flush()
            if time.monotonic() - self._folded >= 1.0:
                self._folded = time.monotonic()
                storage.fold_log(self.audit.engine)
        except Exception:  # the entries are committed; the next flush tries again
            log.exception("the audit log's announcement or fold failed")


def _settle(futures: list[asyncio.Future[float]], took: float, error: BaseException | None) -> None:
    for done in futures:
        if not done.done():
            if error is not None:
                done.set_exception(error)
            else:
                done.set_result(took)


def held_on_loop(
    endpoint: Callable[..., Any],
    workers: Workers,
    committer: Committer,
    engine: Callable[[], sa.Engine],
) -> Callable[..., Any]:
    """An :func:`on_loop` route as a coroutine: the call on the loop (or, on a database
    that is not a local SQLite file or whose pool is taken, in ``workers``) with its
    audit entries held, and the answer given once the ``committer`` has committed them —
    also when the call raised (a refusal is audited before it is answered)."""
    audit = committer.audit

    @functools.wraps(endpoint)
    async def route(*args: Any, **kwargs: Any) -> Any:
        result: Any = None
        error: BaseException | None = None
        database = engine()
        here = database.dialect.name == "sqlite" and _room_in(database)
        committer.calls += 1
        try:
            with audit.held() as held:
                try:
                    if here:
                        result = _timed(endpoint, *args, **kwargs)
                    else:
                        result = await workers.run(_timed, endpoint, *args, **kwargs)
                except Exception as exc:
                    error = exc
            if not (here and workers.idle() and _timed(committer.commit_now, held)):
                _spent(await committer.commit(held))
        finally:
            committer.calls -= 1
        if error is not None:
            raise error
        return result

    return route


def route_for(
    endpoint: Callable[..., Any],
    workers: Workers,
    committer: Committer,
    engine: Callable[[], sa.Engine],
) -> Callable[..., Any]:
    """A route's endpoint as the agent runs it: :func:`held_on_loop` if it is marked
    :func:`on_loop`, else :func:`off_loop`."""
    if getattr(endpoint, _ON_LOOP, False):
        return held_on_loop(endpoint, workers, committer, engine)
    return off_loop(endpoint, workers)

"""Calling hooks so that a failing or slow plugin cannot crash or stall the core (R-SEC-3).

pluggy calls every implementation of a hook in one loop and lets an exception escape
without saying whose it was. The dispatcher instead calls each implementation on its
own, in pluggy's order (``tryfirst`` first, then last-registered first, ``trylast``
last), and:

* runs it in a daemon worker thread with the plugin's timeout, so a hung adapter costs
  the caller at most that timeout and never blocks interpreter exit; a plugin's worker
  threads are reused from call to call (starting a thread per call cost more than the
  call), and one busy with a call that timed out takes no other until that call
  returns — the next call gets another thread;
* refuses a plugin at once when it already has ``max_stalled_calls`` calls that never
  returned, instead of piling up threads;
* turns an exception into :class:`~hcmiddleware.errors.PluginCallError` (or
  :class:`~hcmiddleware.errors.PluginTimeoutError`) carrying the plugin and hook names,
  with the original exception as ``__cause__``; an :class:`~hcmiddleware.errors.HcmError`
  raised on purpose by a plugin (a typed refusal such as ``HisError``) passes through
  unchanged, since it already says what to do.

``firstresult`` hooks raise: the operation cannot go on without its handler. Other hooks
contain the failure: it is logged, counted in :attr:`Dispatcher.health`, announced
through ``hcm_plugin_failed``, and the remaining plugins still run.
"""

from __future__ import annotations

import contextvars
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from hcmiddleware.access.context import _SYSTEM, system
from hcmiddleware.errors import (
    HcmError,
    PluginCallError,
    PluginError,
    PluginTimeoutError,
    PluginUnavailableError,
)

__all__ = ["CallRecord", "Dispatcher", "PluginHealth"]

log = logging.getLogger("hcmiddleware.dispatch")

#: Setup hooks run inline, without a worker thread: they run once, at start.
INLINE_HOOKS = frozenset({"hcm_add_config", "hcm_configure", "hcm_unconfigure"})
#: Setup hooks whose failure stops start-up (the plugin would run half-configured).
FATAL_HOOKS = frozenset({"hcm_add_config", "hcm_configure"})


@dataclass
class PluginHealth:
    """What the dispatcher has seen of one plugin since start."""

    calls: int = 0
    failures: int = 0
    timeouts: int = 0
    stalled: int = 0
    last_error: str | None = None


@dataclass(frozen=True)
class CallRecord:
    """One hook call as seen by observers (the test kit's hook recorder)."""

    hook: str
    kwargs: dict[str, Any]
    results: list[tuple[str, Any]] = field(default_factory=list)
    errors: list[tuple[str, BaseException]] = field(default_factory=list)
    duration: float = 0.0


Observer = Callable[[CallRecord], None]


class _Call:
    """One hook call handed to a worker thread, and what came of it."""

    __slots__ = ("abandoned", "args", "context", "done", "error", "finished", "fn", "result")

    def __init__(self, fn: Callable[..., Any], args: list[Any]) -> None:
        self.fn = fn
        self.args = args
        self.context = contextvars.copy_context()  # the caller's context variables
        self.context.run(_SYSTEM.set, True)  # a plugin is a trusted in-process caller
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        #: both under the dispatcher's lock: the worker is through / the caller gave up
        self.finished = False
        self.abandoned = False

    def run(self) -> None:
        try:
            self.result = self.context.run(self.fn, *self.args)
        except BaseException as exc:  # handed to the waiting caller, never lost
            self.error = exc
        finally:
            self.done.set()


class _Worker:
    """A plugin's daemon thread, running the calls handed to it one at a time."""

    __slots__ = ("_calls", "_dispatcher", "_health", "_plugin")

    #: seconds an idle worker waits for a call before its thread ends
    IDLE = 60.0

    def __init__(self, dispatcher: Dispatcher, plugin: str, health: PluginHealth) -> None:
        self._dispatcher = dispatcher
        self._plugin = plugin
        self._health = health
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        threading.Thread(target=self._loop, name=f"hcm-plugin-{plugin}", daemon=True).start()

    def submit(self, call: _Call | None) -> None:
        """Run ``call`` next; ``None`` ends the thread."""
        self._calls.put(call)

    def _loop(self) -> None:
        while True:
            try:
                call = self._calls.get(timeout=self.IDLE)
            except queue.Empty:
                if self._dispatcher._retire(self._plugin, self):
                    return
                continue  # handed a call just now: take it
            if call is None:
                return
            call.run()
            if not self._dispatcher._returned(self._plugin, self, call, self._health):
                return


class Dispatcher:
    """Calls hook implementations one by one with timeouts and containment."""

    def __init__(
        self,
        pm: pluggy.PluginManager,
        *,
        default_timeout: float = 10.0,
        timeouts: dict[str, float] | None = None,
        max_stalled_calls: int = 4,
    ) -> None:
        self._pm = pm
        self._default_timeout = default_timeout
        self._timeouts = dict(timeouts or {})
        self._max_stalled = max_stalled_calls
        self._lock = threading.Lock()
        self.health: dict[str, PluginHealth] = {}
        self._observers: list[Observer] = []
        #: each plugin's worker threads waiting for a call
        self._idle: dict[str, list[_Worker]] = {}
        #: plugins whose hooks run in the caller's thread: the core's own small sinks,
        #: which a worker thread would only slow down (see :meth:`trust`)
        self._trusted: set[str] = set()

    #: idle worker threads kept per plugin (more are started when calls overlap)
    MAX_IDLE_WORKERS = 4

    def trust(self, plugin: str) -> None:
        """Run ``plugin``'s hooks in the calling thread, without a timeout.

        For the core's own built-in sinks only (the audit log's logger sink): code that
        cannot hang on a remote system, called for every audited act, where handing each
        call to a worker thread costs more than the call. Failures are still contained.
        """
        self._trusted.add(plugin)

    # -- observers -----------------------------------------------------------------

    def add_observer(self, observer: Observer) -> Callable[[], None]:
        """Be told of every hook call; returns a function that removes the observer."""
        self._observers.append(observer)
        return lambda: self._observers.remove(observer)

    # -- calling -------------------------------------------------------------------

    def timeout_for(self, plugin: str) -> float:
        """The call timeout of ``plugin`` in seconds."""
        return self._timeouts.get(plugin, self._default_timeout)

    def call(self, hook: str, /, **kwargs: Any) -> Any:
        """Call ``hook`` with keyword arguments, with pluggy's result semantics.

        Returns the first non-None result for ``firstresult`` hooks (or ``None``), else
        the list of non-None results.
        """
        return self._call(hook, kwargs)[1]

    def call_first(self, hook: str, /, **kwargs: Any) -> tuple[str | None, Any]:
        """Call a ``firstresult`` hook; ``(plugin, answer)``, or ``(None, None)`` if none answered.

        The typed services use it to name the plugin whose answer broke the hook's contract.
        """
        caller: pluggy.HookCaller = getattr(self._pm.hook, hook)
        if not (caller.spec and caller.spec.opts.get("firstresult")):
            raise TypeError(f"{hook} is not a firstresult hook")
        answered: tuple[str | None, Any] = self._call(hook, kwargs)[0]
        return answered

    def _call(self, hook: str, kwargs: dict[str, Any]) -> tuple[tuple[str | None, Any], Any]:
        caller: pluggy.HookCaller = getattr(self._pm.hook, hook)
        spec = caller.spec
        firstresult = bool(spec and spec.opts.get("firstresult"))
        if spec is not None:
            missing = [a for a in spec.argnames if a not in kwargs]
            if missing:
                raise TypeError(f"{hook}() missing arguments: {', '.join(missing)}")
        record = CallRecord(hook=hook, kwargs=kwargs)
        started = time.perf_counter()
        results: list[Any] = []
        try:
            for impl in reversed(caller.get_hookimpls()):
                name = impl.plugin_name
                try:
                    value = self._call_one(hook, name, impl, kwargs)
                except HcmError as exc:
                    # PluginError from containment, or a typed refusal (HisError …)
                    # raised on purpose by the plugin: tag it with the plugin's name.
                    if not isinstance(exc, PluginError):
                        exc.plugin = name  # type: ignore[attr-defined]
                    record.errors.append((name, exc))
                    if firstresult or hook in FATAL_HOOKS:
                        raise
                    self._contained(hook, name, exc)
                    continue
                if value is not None:
                    record.results.append((name, value))
                    if firstresult:
                        return (name, value), value
                    results.append(value)
            return (None, None), (None if firstresult else results)
        finally:
            self._notify(record, time.perf_counter() - started)

    def implementers(self, hook: str) -> list[str]:
        """The plugins implementing ``hook``, in the order :meth:`call` asks them."""
        caller: pluggy.HookCaller = getattr(self._pm.hook, hook)
        return [impl.plugin_name for impl in reversed(caller.get_hookimpls())]

    def call_for(self, plugin: str, hook: str, /, **kwargs: Any) -> Any:
        """Call only ``plugin``'s implementation of ``hook`` (None if it has none)."""
        caller: pluggy.HookCaller = getattr(self._pm.hook, hook)
        for impl in caller.get_hookimpls():
            if impl.plugin_name == plugin:
                return self._call_one(hook, plugin, impl, kwargs)
        return None

    def call_each(self, hook: str, /, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call every implementation of ``hook``; each result or error, by plugin name.

        Nothing is raised for a plugin's failure: the error object takes the result's
        place (and is logged). Used where every plugin's answer matters on its own
        (``hcm doctor``, a sync that must tell a silent feed from a failed one).
        Observers see the call like any other.
        """
        caller: pluggy.HookCaller = getattr(self._pm.hook, hook)
        record = CallRecord(hook=hook, kwargs=kwargs)
        started = time.perf_counter()
        outcome: list[tuple[str, Any]] = []
        try:
            for impl in reversed(caller.get_hookimpls()):
                name = impl.plugin_name
                try:
                    value = self._call_one(hook, name, impl, kwargs)
                except HcmError as exc:
                    log.error("failure of plugin %s in %s: %s", name, hook, exc.message)
                    record.errors.append((name, exc))
                    outcome.append((name, exc))
                    continue
                if value is not None:
                    record.results.append((name, value))
                outcome.append((name, value))
        finally:
            self._notify(record, time.perf_counter() - started)
        return outcome

    def _call_one(self, hook: str, name: str, impl: Any, kwargs: dict[str, Any]) -> Any:
        args = [kwargs[a] for a in impl.argnames]
        health = self._health(name)
        health.calls += 1
        if hook in INLINE_HOOKS or name in self._trusted:
            try:
                with system():
                    return impl.function(*args)
            except HcmError:
                raise
            except Exception as exc:
                health.failures += 1
                health.last_error = f"{type(exc).__name__}: {exc}"
                raise PluginCallError(
                    f"plugin {name!r} failed in {hook}: {type(exc).__name__}: {exc}",
                    plugin=name,
                    hook=hook,
                ) from exc
        with self._lock:
            if health.stalled >= self._max_stalled:
                raise PluginUnavailableError(
                    f"plugin {name!r} has {health.stalled} calls that never returned; "
                    f"{hook} refused",
                    plugin=name,
                    hook=hook,
                )
        timeout = self.timeout_for(name)
        call = _Call(impl.function, args)
        with self._lock:
            idle = self._idle.get(name)
            worker = idle.pop() if idle else None
        if worker is None:
            worker = _Worker(self, name, health)
        worker.submit(call)
        if not call.done.wait(timeout):
            with self._lock:
                late = call.finished  # answered just as the wait ran out: not a timeout
                if not late:
                    call.abandoned = True
                    health.stalled += 1
                    health.timeouts += 1
                    health.last_error = f"timeout in {hook} after {timeout:g}s"
            if not late:
                raise PluginTimeoutError(
                    f"plugin {name!r} did not answer {hook} within {timeout:g} s",
                    plugin=name,
                    hook=hook,
                    timeout=timeout,
                )
        failure = call.error
        if failure is not None:
            if isinstance(failure, HcmError) or not isinstance(failure, Exception):
                raise failure  # a typed refusal, or KeyboardInterrupt / SystemExit
            health.failures += 1
            health.last_error = f"{type(failure).__name__}: {failure}"
            raise PluginCallError(
                f"plugin {name!r} failed in {hook}: {type(failure).__name__}: {failure}",
                plugin=name,
                hook=hook,
            ) from failure
        return call.result

    def _returned(self, plugin: str, worker: _Worker, call: _Call, health: PluginHealth) -> bool:
        """A worker is through with ``call``; may it wait for the next one?"""
        with self._lock:
            call.finished = True
            if call.abandoned:
                health.stalled -= 1  # a late answer frees the slot the timed-out call held
            idle = self._idle.setdefault(plugin, [])
            if len(idle) >= self.MAX_IDLE_WORKERS:
                return False
            idle.append(worker)
            return True

    def _retire(self, plugin: str, worker: _Worker) -> bool:
        """An idle worker's wait ran out: True if it may end (no call was handed to it)."""
        with self._lock:
            idle = self._idle.get(plugin, [])
            if worker in idle:
                idle.remove(worker)
                return True
            return False

    def close(self) -> None:
        """End the idle worker threads (calls still running end their threads on return).

        The dispatcher stays usable: a later call starts a worker again.
        """
        with self._lock:
            idle = [w for workers in self._idle.values() for w in workers]
            self._idle.clear()
        for worker in idle:
            worker.submit(None)

    def _health(self, name: str) -> PluginHealth:
        with self._lock:
            return self.health.setdefault(name, PluginHealth())

    def _contained(self, hook: str, name: str, exc: HcmError) -> None:
        log.error("contained failure of plugin %s in %s: %s", name, hook, exc.message)
        if hook == "hcm_plugin_failed":
            return
        try:
            self.call(
                "hcm_plugin_failed",
                plugin=name,
                hook=hook,
                error=f"{type(exc).__name__}: {exc.message}",
            )
        except HcmError:
            log.exception("hcm_plugin_failed itself failed")

    def _notify(self, record: CallRecord, duration: float) -> None:
        if not self._observers:
            return
        final = CallRecord(
            hook=record.hook,
            kwargs=record.kwargs,
            results=record.results,
            errors=record.errors,
            duration=duration,
        )
        for observer in list(self._observers):
            observer(final)


class HookProxy:
    """``middleware.hooks.hcm_x(**kwargs)``: attribute access to :meth:`Dispatcher.call`."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if not name.startswith("hcm_"):
            raise AttributeError(name)
        dispatcher = self._dispatcher

        def call(**kwargs: Any) -> Any:
            return dispatcher.call(name, **kwargs)

        call.__name__ = name
        return call

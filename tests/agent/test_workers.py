"""The agent's worker threads: a route's service call runs in one, off the event loop,
once per request; a call once started is not abandoned."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from hcmiddleware import Middleware
from hcmiddleware.agent import create_app
from hcmiddleware.agent.workers import Workers, off_loop
from hcmiddleware.errors import ResidentNotFoundError

from .conftest import agent_config

_where: contextvars.ContextVar[str] = contextvars.ContextVar("where", default="unset")


def test_a_call_runs_in_a_worker_thread_with_the_callers_context() -> None:
    workers = Workers(limit=2)

    def call(x: int, *, y: int) -> tuple[threading.Thread, str, int]:
        return threading.current_thread(), _where.get(), x + y

    async def main() -> tuple[threading.Thread, str, int]:
        _where.set("request")
        return await workers.run(call, 1, y=2)

    try:
        thread, where, total = asyncio.run(main())
    finally:
        workers.close()
    assert thread is not threading.main_thread()
    assert thread.name.startswith("hcm-agent-worker-")
    assert (where, total) == ("request", 3)
    assert not thread.is_alive()  # closed: the thread has ended


def test_an_error_reaches_the_request_as_it_was_raised() -> None:
    workers = Workers(limit=1)

    def refuse() -> None:
        raise ResidentNotFoundError("nobody holds this id_number", hint="enrol them")

    async def main() -> None:
        await workers.run(refuse)

    try:
        with pytest.raises(ResidentNotFoundError, match="nobody holds"):
            asyncio.run(main())
        # the thread is not lost with the error: the next call runs in it
        assert asyncio.run(_value(workers, 7)) == 7
        assert workers.threads == 1
    finally:
        workers.close()


async def _value(workers: Workers, value: int) -> int:
    return await workers.run(lambda: value)


def test_calls_beyond_the_limit_wait_their_turn() -> None:
    workers = Workers(limit=2)
    running = 0
    most = 0
    lock = threading.Lock()

    def call() -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.05)
        with lock:
            running -= 1

    async def main() -> None:
        await asyncio.gather(*(workers.run(call) for _ in range(6)))

    try:
        started = time.perf_counter()
        asyncio.run(main())
        took = time.perf_counter() - started
    finally:
        workers.close()
    assert most == 2
    assert workers.threads == 2
    assert took >= 0.14  # three turns of two


def test_a_call_goes_to_the_thread_idle_last() -> None:
    """Three threads started by three calls at once; one at a time after that, every call
    runs in the same thread (the one whose caches are warm), the others sleep on."""
    workers = Workers(limit=3)
    gate = threading.Barrier(3)

    def together() -> None:
        gate.wait(5)

    def which() -> threading.Thread:
        return threading.current_thread()

    async def main() -> list[threading.Thread]:
        await asyncio.gather(*(workers.run(together) for _ in range(3)))
        return [await workers.run(which) for _ in range(10)]

    try:
        used = asyncio.run(main())
    finally:
        workers.close()
    assert workers.threads == 3
    assert len(set(used)) == 1


def test_a_cancelled_request_ends_only_when_its_call_has() -> None:
    workers = Workers(limit=1)
    finished = threading.Event()

    def slow() -> str:
        time.sleep(0.2)
        finished.set()
        return "done"

    async def main() -> float:
        task = asyncio.ensure_future(workers.run(slow))
        await asyncio.sleep(0.05)  # the call is under way
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.perf_counter()

    try:
        asyncio.run(main())
        # the cancellation waited for the call: it had finished when the task ended
        assert finished.is_set()
    finally:
        workers.close()


def test_closed_workers_take_no_more_calls() -> None:
    workers = Workers(limit=1)
    assert asyncio.run(_value(workers, 1)) == 1
    workers.close()
    with pytest.raises(RuntimeError, match="stopped"):
        asyncio.run(_value(workers, 2))
    with pytest.raises(ValueError):
        Workers(limit=0)


def test_off_loop_keeps_the_routes_signature_and_leaves_coroutines_alone() -> None:
    workers = Workers(limit=1)

    def plain(a: int, b: str = "x") -> dict[str, Any]:
        """A route."""
        return {"a": a, "b": b}

    async def coroutine() -> int:
        return 1

    def generator() -> Any:
        yield 1

    wrapped = off_loop(plain, workers)
    assert inspect.iscoroutinefunction(wrapped)
    assert inspect.signature(wrapped) == inspect.signature(plain)
    assert (wrapped.__name__, wrapped.__doc__) == ("plain", "A route.")
    assert off_loop(coroutine, workers) is coroutine
    assert off_loop(generator, workers) is generator
    try:
        assert asyncio.run(wrapped(a=1)) == {"a": 1, "b": "x"}
    finally:
        workers.close()


def test_a_search_crosses_to_a_thread_once_a_lookup_and_health_not_at_all(
    tmp_path: Path, handed: list[str]
) -> None:
    """A search's service call runs in the agent's workers, and nothing of the request
    in anyio's thread pool (its answer is validated on the loop); a lookup runs on the
    loop (``on_loop``), health needs no thread."""
    from fastapi.testclient import TestClient

    config, tokens = agent_config(tmp_path / "hcm-data")
    pool: list[str] = []
    import anyio.to_thread

    anyio_run = anyio.to_thread.run_sync

    async def in_pool(fn: Any, *args: Any, **kwargs: Any) -> Any:
        pool.append(getattr(fn, "__name__", "?"))
        return await anyio_run(fn, *args, **kwargs)

    with Middleware(config) as mw:
        number = "210102198503121239"
        mw.residents.enrol(name="张三", sex=1, id_number=number, source="test")
        mp = pytest.MonkeyPatch()
        try:
            mp.setattr(anyio.to_thread, "run_sync", in_pool)
            app = create_app(mw)
            with TestClient(app) as client:
                headers = {"Authorization": f"Bearer {tokens['desk']}"}
                query = {"kind": "id_number", "value": number}
                first = client.get("/v1/residents/lookup", params=query, headers=headers)
                assert first.status_code == 200, first.text
                # the workstation's first session is made in a thread (it may write a refusal)
                assert handed == ["session_for"]
                handed.clear()
                found = client.get("/v1/residents/lookup", params=query, headers=headers)
                assert found.status_code == 200, found.text
                assert found.json()["id_number"] == number
                assert handed == []
                searched = client.post(
                    "/v1/residents/search", json={"name": "张三"}, headers=headers
                )
                assert searched.status_code == 200, searched.text
                assert handed == ["search"]
                handed.clear()
                assert client.get("/v1/health").status_code == 200
                assert handed == []
                missing = client.get(
                    "/v1/residents/lookup",
                    params={"kind": "id_number", "value": "110101199003070038"},
                    headers=headers,
                )
                assert missing.status_code == 404  # the route's typed error, from the loop
                assert missing.json()["title"] == "ResidentNotFoundError"
            # FastAPI's own pool is never used for a route or its answer
            assert pool == []
            app.state.agent.close()
        finally:
            mp.undo()

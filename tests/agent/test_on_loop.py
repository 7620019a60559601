"""Routes marked ``on_loop`` (a resident looked up): the call on the event loop, its
audit entry held and committed before the answer goes out — on the loop itself when the
call is alone and the write lock free, else by the agent's committer."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from hcmiddleware import Middleware
from hcmiddleware.agent import create_app
from hcmiddleware.agent.workers import Committer
from hcmiddleware.audit import Audit, Held
from hcmiddleware.errors import AuditError

from .conftest import agent_config

NUMBER = "210102198503121239"


def _lookup(client: TestClient, token: str, number: str = NUMBER) -> Any:
    return client.get(
        "/v1/residents/lookup",
        params={"kind": "id_number", "value": number},
        headers={"Authorization": f"Bearer {token}"},
    )


#: where a lookup's entry is committed: on the loop (a lone call, the write lock free)
#: or by the committer's thread (forced here by refusing the loop's commit)
PATHS = ["loop", "committer"]


def _by(path: str, mp: pytest.MonkeyPatch) -> str:
    """Make lookups commit by ``path``; the Audit method that then commits them."""
    if path == "committer":
        mp.setattr(Committer, "commit_now", lambda self, held: False)
        return "commit_held"
    return "commit_held_now"


@pytest.mark.parametrize("path", PATHS)
def test_a_lookup_answers_once_its_entry_is_committed(tmp_path: Path, path: str) -> None:
    config, tokens = agent_config(tmp_path / "hcm-data")
    with Middleware(config) as mw:
        rid = mw.residents.enrol(name="张三", sex=1, id_number=NUMBER, source="t").resident_id
        announced: list[int] = []
        app = create_app(mw)
        with TestClient(app) as client:
            before = len(list(mw.audit.entries(action="residents.lookup")))
            mp = pytest.MonkeyPatch()
            method = _by(path, mp)
            real = getattr(Audit, method)

            def spy(self: Audit, blocks: Any) -> Any:
                time.sleep(0.2)  # a slow disk: an answer that did not wait would be out
                done = real(self, blocks)
                # committed by now: the answer has not gone out yet
                announced.append(len(list(mw.audit.entries(action="residents.lookup"))))
                return done

            mp.setattr(Audit, method, spy)
            try:
                found = _lookup(client, tokens["desk"])
            finally:
                mp.undo()
            assert found.status_code == 200, found.text
            assert found.json()["resident_id"] == rid
            assert announced == [before + 1]
            # in the database as the answer arrives, not only by now
            assert len(list(mw.audit.entries(action="residents.lookup"))) == before + 1
            (entry,) = list(mw.audit.entries(action="residents.lookup"))[before:]
            assert entry.subject == rid
            assert entry.user == "u-desk"
            # a resident nobody holds: the 404 waits for its entry too
            missing = _lookup(client, tokens["desk"], "110101199003070038")
            assert missing.status_code == 404
            assert len(list(mw.audit.entries(action="residents.lookup"))) == before + 2
        assert mw.audit.verify().ok


@pytest.mark.parametrize("path", PATHS)
def test_a_failed_commit_shows_nothing(tmp_path: Path, path: str) -> None:
    """The resident was read, but its reading could not be audited: the caller gets the
    audit log's error, not the resident."""
    config, tokens = agent_config(tmp_path / "hcm-data")
    with Middleware(config) as mw:
        mw.residents.enrol(name="张三", sex=1, id_number=NUMBER, source="t")
        app = create_app(mw)
        with TestClient(app) as client:
            assert _lookup(client, tokens["desk"]).status_code == 200

            def broken(self: Audit, blocks: Any) -> None:
                raise AuditError("the disk is full", hint="free some space")

            mp = pytest.MonkeyPatch()
            mp.setattr(Audit, _by(path, mp), broken)
            try:
                refused = _lookup(client, tokens["desk"])
            finally:
                mp.undo()
            assert refused.status_code >= 500
            assert refused.headers["content-type"].startswith("application/problem+json")
            assert refused.json()["title"] == "AuditError"
            assert "张三" not in refused.text
            assert NUMBER not in refused.text
            # the committer lives on: the next lookup is answered
            assert _lookup(client, tokens["desk"]).status_code == 200


def test_a_taken_pool_sends_the_call_to_the_workers(tmp_path: Path, handed: list[str]) -> None:
    """With the database's connections all checked out, the loop must not wait for
    one: the lookup runs in a worker thread, its entry still held for the committer."""
    config, tokens = agent_config(tmp_path / "hcm-data")
    with Middleware(config) as mw:
        mw.residents.enrol(name="张三", sex=1, id_number=NUMBER, source="t")
        app = create_app(mw)
        with TestClient(app) as client:
            assert _lookup(client, tokens["desk"]).status_code == 200
            handed.clear()
            pool = mw.engine.pool
            assert isinstance(pool, sa.pool.QueuePool)
            taken = [mw.engine.connect() for _ in range(pool.size())]
            try:
                committed = len(list(mw.audit.entries(action="residents.lookup")))
                found = _lookup(client, tokens["desk"])
                assert found.status_code == 200, found.text
                assert handed == ["lookup"]
            finally:
                for conn in taken:
                    conn.close()
            assert len(list(mw.audit.entries(action="residents.lookup"))) == committed + 1


def test_blocks_waiting_together_share_one_commit(tmp_path: Path) -> None:
    """While the committer's thread commits one block, the blocks queued behind it are
    committed together in the next: one commit and one wake-up of the loop for all."""
    config, _tokens = agent_config(tmp_path / "hcm-data")
    with Middleware(config) as mw:
        audit: Audit = mw._raw("audit")
        committer = Committer(audit)
        real = Audit.commit_held
        calls: list[int] = []
        gate = threading.Event()

        def slow(self: Audit, blocks: Any) -> None:
            blocks = list(blocks)
            calls.append(sum(len(b) for b in blocks))
            if len(calls) == 1:
                gate.wait(10)
            real(self, blocks)

        def block(n: int) -> Held:
            with audit.held() as held:
                audit("test.act", actor="t", subject=f"r{n}")
            assert len(held) == 1
            return held

        async def main() -> None:
            first = asyncio.ensure_future(committer.commit(block(0)))
            while not calls:
                await asyncio.sleep(0.001)
            rest = [asyncio.ensure_future(committer.commit(block(n))) for n in range(1, 6)]
            await asyncio.sleep(0.05)
            gate.set()
            await asyncio.gather(first, *rest)

        mp = pytest.MonkeyPatch()
        mp.setattr(Audit, "commit_held", slow)
        try:
            asyncio.run(main())
        finally:
            mp.undo()
            committer.close()
        assert calls == [1, 5]
        subjects = [e.subject for e in mw.audit.entries(action="test.act")]
        assert subjects == [f"r{n}" for n in range(6)]
        assert mw.audit.verify().ok


def test_held_entries_are_not_committed_by_leaving_the_block(tmp_path: Path) -> None:
    config, _tokens = agent_config(tmp_path / "hcm-data")
    with Middleware(config) as mw:
        audit: Audit = mw._raw("audit")
        with audit.held() as held:
            shown = audit("test.held", actor="t", subject="r1")
        assert len(held) == 1
        assert list(mw.audit.entries(action="test.held")) == []
        audit.commit_held([held])
        (entry,) = mw.audit.entries(action="test.held")
        assert shown.seq == entry.seq
        assert shown.hash == entry.hash
        # inside a grouped block, the group commits them; the handle stays empty
        with audit.grouped():
            with audit.held() as inner:
                audit("test.held", actor="t", subject="r2")
            assert len(inner) == 0
        assert [e.subject for e in mw.audit.entries(action="test.held")] == ["r1", "r2"]


def test_server_timing_gives_the_services_own_time(tmp_path: Path) -> None:
    """``Server-Timing: svc;dur=…``: the milliseconds the call's service took itself (the
    lookup and its commit; a search in its worker), what the agent added left out; a
    call that reaches no service says 0."""
    config, tokens = agent_config(tmp_path / "hcm-data")
    headers = {"Authorization": f"Bearer {tokens['desk']}"}
    with Middleware(config) as mw:
        mw.residents.enrol(name="张三", sex=1, id_number=NUMBER, source="t")
        real = Audit.commit_held

        def slow(self: Audit, blocks: Any) -> None:
            time.sleep(0.05)  # a slow disk: the commit is the service's time
            real(self, blocks)

        with TestClient(create_app(mw)) as client:
            assert _lookup(client, tokens["desk"]).status_code == 200
            mp = pytest.MonkeyPatch()
            _by("committer", mp)
            mp.setattr(Audit, "commit_held", slow)
            try:
                started = time.perf_counter()
                found = _lookup(client, tokens["desk"])
                total = (time.perf_counter() - started) * 1000
            finally:
                mp.undo()
            name, _, value = found.headers["server-timing"].partition(";dur=")
            assert name == "svc"
            assert 50 <= float(value) <= total
            searched = client.post("/v1/residents/search", json={"name": "张三"}, headers=headers)
            assert float(searched.headers["server-timing"].split("=")[1]) > 0
            health = client.get("/v1/health")
            assert health.headers["server-timing"] == "svc;dur=0.000"


def test_a_lone_lookup_commits_on_the_loop_and_is_announced_after(tmp_path: Path) -> None:
    """Nothing else under way: the entry is committed on the loop (the committer's thread
    is not woken for it), on disk when the answer arrives, and announced shortly after
    by the committer's thread."""
    announced: list[tuple[str | None, str]] = []

    def observe(call: Any) -> None:
        if call.hook == "hcm_audit_event":
            announced.append((call.kwargs["event"].subject, threading.current_thread().name))

    config, tokens = agent_config(tmp_path / "hcm-data")
    with Middleware(config) as mw:
        mw.dispatcher.add_observer(observe)
        rid = mw.residents.enrol(name="张三", sex=1, id_number=NUMBER, source="t").resident_id
        handed: list[Held] = []
        real = Committer.commit

        async def spy(self: Committer, held: Held) -> float:
            handed.append(held)
            return await real(self, held)

        with TestClient(create_app(mw)) as client:
            # the first append opens the log (reads its head, maybe migrates): not on
            # the loop
            assert _lookup(client, tokens["desk"]).status_code == 200
            mp = pytest.MonkeyPatch()
            mp.setattr(Committer, "commit", spy)
            try:
                for _ in range(3):
                    assert _lookup(client, tokens["desk"]).status_code == 200
                    # on disk as the answer arrives
                    assert list(mw.audit.entries(action="residents.lookup"))[-1].subject == rid
            finally:
                mp.undo()
            assert handed == []
            deadline = time.monotonic() + 5
            while sum(1 for a in announced if a[0] == rid) < 4:
                assert time.monotonic() < deadline, announced
                time.sleep(0.01)
            assert {name for subject, name in announced if subject == rid} == {"hcm-agent-commit"}
            assert sum(1 for a in announced if a[0] == rid) == 4  # each once
        assert mw.audit.verify().ok


def test_a_write_lock_held_elsewhere_leaves_the_loop_free(tmp_path: Path) -> None:
    """Another connection (a second process on the same file) holds SQLite's write lock:
    the lone lookup does not wait for it on the loop — its commit goes to the committer,
    which waits — and the loop answers other requests meanwhile."""
    config, tokens = agent_config(tmp_path / "hcm-data")
    with Middleware(config) as mw:
        mw.residents.enrol(name="张三", sex=1, id_number=NUMBER, source="t")
        other = sa.create_engine(mw.engine.url, poolclass=sa.pool.NullPool)
        with TestClient(create_app(mw)) as client:
            assert _lookup(client, tokens["desk"]).status_code == 200
            before = len(list(mw.audit.entries(action="residents.lookup")))
            answers: list[Any] = []
            with other.connect() as conn:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
                waiting = threading.Thread(
                    target=lambda: answers.append(_lookup(client, tokens["desk"]))
                )
                waiting.start()
                time.sleep(0.3)
                assert answers == []  # its entry cannot be written yet
                started = time.monotonic()
                assert client.get("/v1/health").status_code == 200
                assert time.monotonic() - started < 1.0
                conn.exec_driver_sql("ROLLBACK")
            waiting.join(10)
            assert [a.status_code for a in answers] == [200]
            assert len(list(mw.audit.entries(action="residents.lookup"))) == before + 1
        other.dispose()
        assert mw.audit.verify().ok


def test_the_loop_commits_only_a_call_that_is_alone(tmp_path: Path) -> None:
    config, _tokens = agent_config(tmp_path / "hcm-data")
    with Middleware(config) as mw:
        audit: Audit = mw._raw("audit")
        audit("test.open", actor="t")
        committer = Committer(audit)

        def block(subject: str) -> Held:
            with audit.held() as held:
                audit("test.act", actor="t", subject=subject)
            return held

        async def main() -> list[bool]:
            outcomes = []
            committer.calls = 2  # another call under way
            outcomes.append(committer.commit_now(block("two")))
            committer.calls = 1
            committer._committing = True  # the thread is committing a batch
            outcomes.append(committer.commit_now(block("busy")))
            committer._committing = False
            outcomes.append(committer.commit_now(block("alone")))
            await asyncio.sleep(0.2)  # the announcement's turn, after the answer
            return outcomes

        try:
            assert asyncio.run(main()) == [False, False, True]
        finally:
            committer.close()
        assert [e.subject for e in mw.audit.entries(action="test.act")] == ["alone"]
        assert mw.audit.verify().ok

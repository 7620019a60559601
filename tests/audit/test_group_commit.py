"""Appends made at once share one commit (a group commit), each as durable as its own;
the threads of a process take turns at SQLite's write lock."""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from hcmiddleware import storage
from hcmiddleware.errors import AuditError
from hcmiddleware.runtime import Middleware
from hcmiddleware.testing import HookRecorder
from hcmiddleware.testing.plugin import MiddlewareFactory

from .conftest import MakeAudited


def _commits(mw: Middleware) -> list[int]:
    """A list that grows by one at each commit on ``mw``'s database."""
    seen: list[int] = []
    sa.event.listen(mw.engine, "commit", lambda conn: seen.append(1))
    return seen


def _wait_for(condition: Any, what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def test_appends_waiting_for_the_lock_are_committed_together(
    hcm_make_middleware: MiddlewareFactory,
) -> None:
    mw = hcm_make_middleware()
    mw.audit("card.read", actor="kiosk-01")  # the log is open and migrated
    commits = _commits(mw)
    got: dict[int, Any] = {}

    def append(i: int) -> None:
        got[i] = mw.audit("card.read", actor=f"kiosk-{i:02d}")

    threads = [threading.Thread(target=append, args=(i,)) for i in range(6)]
    with storage.begin_write(mw.engine):  # another writer holds the database
        for t in threads:
            t.start()
        # one of them leads and waits for the lock; the other five wait for it
        _wait_for(lambda: len(mw.audit._waiting) == 6, "six appends to queue")
        assert commits == []
    for t in threads:
        t.join(10)
    assert sorted(got) == list(range(6))
    # our writer's (empty) transaction, then one commit for all six entries
    assert len(commits) == 2
    entries = mw.audit.entries()
    assert [e.seq for e in entries] == list(range(1, 8))
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(entries))
    # each caller got its own entry back, as stored
    stored = {e.seq: (e.actor, e.hash) for e in entries}
    assert {stored[g.seq] for g in got.values()} == {
        (f"kiosk-{i:02d}", got[i].hash) for i in range(6)
    }
    assert mw.audit.verify().ok


def test_every_entry_of_a_group_is_announced_once(
    hcm_make_middleware: MiddlewareFactory,
) -> None:
    from hcmiddleware.testing.recorder import HookRecorder

    mw = hcm_make_middleware()
    recorder = HookRecorder(mw)
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for i in range(25):
                mw.audit("card.read", actor=f"t{worker}", i=str(i))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    announced = [r.kwargs["event"].seq for r in recorder.calls("hcm_audit_event")]
    assert sorted(announced) == list(range(1, 201))
    assert mw.audit.verify().ok


def test_a_group_that_cannot_commit_fails_every_caller_and_the_next_one_works(
    hcm_make_middleware: MiddlewareFactory,
) -> None:
    mw = hcm_make_middleware()
    mw.audit("card.read", actor="kiosk-01")
    with mw.engine.begin() as conn:  # the head row removed by hand
        head = conn.execute(sa.text("SELECT * FROM audit_head")).mappings().one()
        conn.execute(sa.text("DELETE FROM audit_head"))
    failed: list[BaseException] = []

    def append(i: int) -> None:
        try:
            mw.audit("card.read", actor=f"kiosk-{i:02d}")
        except AuditError as exc:
            failed.append(exc)

    threads = [threading.Thread(target=append, args=(i,)) for i in range(4)]
    with storage.begin_write(mw.engine):
        for t in threads:
            t.start()
        _wait_for(lambda: len(mw.audit._waiting) == 4, "four appends to queue")
    for t in threads:
        t.join(10)
    assert len(failed) == 4
    assert all("head row is missing" in str(exc) for exc in failed)
    with mw.engine.begin() as conn:  # restored from the backup
        conn.execute(
            sa.text(
                "INSERT INTO audit_head (id, seq, hash, algorithm, checkpoint_seq, "
                "checkpoint_at) VALUES (:id, :seq, :hash, :algorithm, :checkpoint_seq, "
                ":checkpoint_at)"
            ),
            dict(head),
        )
    assert mw.audit("card.read", actor="kiosk-09").seq == 2
    assert mw.audit.verify().ok


def test_a_thread_knows_it_is_writing_and_writers_take_turns(
    hcm_make_middleware: MiddlewareFactory,
) -> None:
    writers = 6
    mw = hcm_make_middleware()
    with storage.begin_write(mw.engine) as conn:
        conn.execute(sa.text("CREATE TABLE tally (n INTEGER NOT NULL)"))
    errors: list[BaseException] = []
    inside = [0]
    most = [0]
    lock = threading.Lock()

    def work() -> None:
        try:
            for _ in range(30):
                with storage.begin_write(mw.engine) as conn:
                    with lock:
                        inside[0] += 1
                        most[0] = max(most[0], inside[0])
                    assert storage.writing(mw.engine)
                    conn.execute(sa.text("INSERT INTO tally (n) VALUES (1)"))
                    with lock:
                        inside[0] -= 1
                assert not storage.writing(mw.engine)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert most[0] == 1  # one writer at a time, in this process
    with mw.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM tally")).scalar() == writers * 30


def test_an_urgent_writer_goes_before_the_writers_waiting(
    hcm_make_middleware: MiddlewareFactory,
) -> None:
    mw = hcm_make_middleware()
    with storage.begin_write(mw.engine) as conn:
        conn.execute(sa.text("CREATE TABLE turns (who TEXT NOT NULL)"))
    order: list[str] = []

    def write(who: str, urgent: bool) -> None:
        with storage.begin_write(mw.engine, urgent=urgent) as conn:
            order.append(who)
            conn.execute(sa.text("INSERT INTO turns (who) VALUES (:who)"), {"who": who})

    plain = [threading.Thread(target=write, args=(f"plain-{n}", False)) for n in range(3)]
    urgent = threading.Thread(target=write, args=("urgent", True))
    with storage.begin_write(mw.engine) as conn:  # a writer in progress
        for thread in plain:
            thread.start()
        time.sleep(0.2)  # the others are queued for the turn
        urgent.start()
        _wait_for(lambda: storage.urgent_waiting(mw.engine), "the urgent writer to wait")
        conn.execute(sa.text("INSERT INTO turns (who) VALUES ('first')"))
        assert order == []  # the one in progress is not interrupted
    for thread in [*plain, urgent]:
        thread.join(10)
    assert order[0] == "urgent"
    assert sorted(order[1:]) == ["plain-0", "plain-1", "plain-2"]
    assert not storage.urgent_waiting(mw.engine)
    with mw.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM turns")).scalar() == 5


def test_an_urgent_writer_that_gives_up_holds_nobody_back(
    hcm_make_middleware: MiddlewareFactory,
) -> None:
    turn = storage._writer_turn(hcm_make_middleware().engine)
    got: dict[str, bool] = {}

    def wait(who: str, urgent: bool, timeout: float) -> None:
        got[who] = turn.acquire(urgent=urgent, timeout=timeout)
        if got[who]:
            turn.release()

    assert turn.acquire(urgent=False, timeout=1)  # a writer in progress, for a while
    urgent = threading.Thread(target=wait, args=("urgent", True, 0.2))
    urgent.start()
    _wait_for(lambda: turn.urgent_waiting, "the urgent writer to wait")
    plain = threading.Thread(target=wait, args=("plain", False, 5.0))
    plain.start()
    urgent.join(5)
    assert got == {"urgent": False}  # it gave up (and meets SQLite's own lock)
    assert not turn.urgent_waiting
    started = time.monotonic()
    turn.release()
    plain.join(5)
    assert got["plain"]
    assert time.monotonic() - started < 1


def test_an_urgent_commit_leaves_the_checkpoint_to_others(
    hcm_make_middleware: MiddlewareFactory,
) -> None:
    mw = hcm_make_middleware()
    database = Path(str(mw.engine.url.database))
    with storage.begin_write(mw.engine) as conn:
        conn.execute(sa.text("CREATE TABLE blobs (b BLOB NOT NULL)"))
    storage.fold_log(mw.engine)
    size = database.stat().st_size

    def add(pages: int, **kwargs: Any) -> None:
        for _ in range(pages // 10):
            with storage.begin_write(mw.engine, **kwargs) as conn:
                conn.execute(sa.text("INSERT INTO blobs (b) VALUES (randomblob(40000))"))

    add(1500, urgent=True)  # past SQLite's 1000 pages: still in the log only
    assert database.stat().st_size == size
    storage.fold_log(mw.engine)
    assert database.stat().st_size > size + 1400 * 4096
    size = database.stat().st_size
    add(1500)  # commits that are not urgent checkpoint as SQLite does
    assert database.stat().st_size > size + 500 * 4096
    with mw.engine.connect() as conn:  # the connections are as they were
        raw: Any = conn.connection.driver_connection
        assert raw.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000


def test_entries_riding_along_are_committed_with_the_next_append(
    hcm_make_middleware: MiddlewareFactory,
) -> None:
    mw = hcm_make_middleware()
    mw.audit("card.read", actor="kiosk-01")
    commits = _commits(mw)
    rode: list[Any] = []
    calls = [{"action": "agent.call", "actor": "desk-01", "details": {"status": "200"}}] * 2
    taker = threading.Thread(target=lambda: rode.extend(mw.audit.record_many(calls, ride_along=30)))
    taker.start()
    _wait_for(lambda: len(mw.audit._waiting) == 2, "two entries to wait for a ride")
    time.sleep(0.05)
    assert commits == []  # they wait for another append
    own = mw.audit("card.read", actor="kiosk-02")
    taker.join(10)
    assert not taker.is_alive()
    assert len(commits) == 1  # one commit took all three
    assert [e.seq for e in rode] == [2, 3]
    assert own.seq == 4
    # alone, they commit on their own once the wait is over
    (alone,) = mw.audit.record_many(calls[:1], ride_along=0.01)
    assert (alone.seq, len(commits)) == (5, 2)
    assert mw.audit.record_many([]) == []
    assert mw.audit.verify().ok


def test_a_writer_waits_for_its_turn_no_longer_than_sqlite_would(
    hcm_make_middleware: MiddlewareFactory, monkeypatch: Any
) -> None:
    mw = hcm_make_middleware()
    with storage.begin_write(mw.engine) as conn:
        conn.execute(sa.text("CREATE TABLE tally (n INTEGER NOT NULL)"))
    monkeypatch.setattr(storage, "_WRITER_WAIT", 0.1)
    entered = threading.Event()
    waited: list[float] = []

    def late() -> None:
        entered.wait(5)
        started = time.monotonic()
        # past the process's turn it meets SQLite's own lock (busy_timeout), as before
        with storage.begin_write(mw.engine) as conn:
            conn.execute(sa.text("INSERT INTO tally (n) VALUES (2)"))
        waited.append(time.monotonic() - started)

    other = threading.Thread(target=late)
    other.start()
    with storage.begin_write(mw.engine) as conn:
        conn.execute(sa.text("INSERT INTO tally (n) VALUES (1)"))
        entered.set()
        time.sleep(0.4)  # longer than the turn's wait, shorter than busy_timeout
    other.join(10)
    assert len(waited) == 1
    assert waited[0] >= 0.3
    with mw.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT n FROM tally ORDER BY n")).scalars().all() == [1, 2]


# --- a step's entries in one commit (Audit.grouped) ---------------------------------------


def test_entries_of_a_grouped_block_are_committed_together_at_its_end(
    audited: MakeAudited,
) -> None:
    mw = audited()
    mw.audit("card.read", actor="kiosk-01")  # the log is open and migrated
    commits = _commits(mw)
    recorder = HookRecorder(mw)

    def announced() -> list[str]:
        return [c.kwargs["event"].action for c in recorder.calls("hcm_audit_event")]

    with mw.audit.grouped():
        read = mw.audit("card.read", actor="kiosk-01")
        with mw.audit.grouped():  # a block inside commits with the outer one
            mw.audit("flow.outpatient.identify", actor="kiosk-01", subject="r-1")
        # held: nothing is in the chain, nothing committed or announced yet
        assert (read.seq, commits, announced()) == (0, [], [])
        assert mw.audit.head()[0] == 1
    assert len(commits) == 1
    entries = mw.audit.entries()
    assert [e.action for e in entries] == ["card.read", "card.read", "flow.outpatient.identify"]
    # the entry handed out is the one stored, number and hash included
    assert (read.seq, read.hash, read.prev_hash) == (2, entries[1].hash, entries[0].hash)
    assert announced() == ["card.read", "flow.outpatient.identify"]
    assert mw.audit.verify().ok


def test_a_grouped_block_that_fails_still_commits_what_it_audited(
    audited: MakeAudited,
) -> None:
    mw = audited()

    def step() -> None:
        with mw.audit.grouped():
            mw.audit("card.write_visit", actor="desk-07", slot="3")  # the card was written
            raise LookupError("the step failed after the act")

    with pytest.raises(LookupError):
        step()
    assert [e.action for e in mw.audit.entries()] == ["card.write_visit"]


def test_an_entry_in_a_transaction_is_not_held_by_a_grouped_block(
    audited: MakeAudited,
) -> None:
    mw = audited()

    def act_that_fails() -> None:
        with mw.audit.transaction() as conn:
            mw.audit.record("band.bound", actor="ward", connection=conn)
            raise LookupError("the act is rolled back, and its entry with it")

    with mw.audit.grouped():
        mw.audit("card.read", actor="kiosk-01")
        with pytest.raises(LookupError):
            act_that_fails()
        with mw.audit.transaction() as conn:
            mw.audit.record("band.bound", actor="ward", connection=conn)
        assert [e.action for e in mw.audit.entries()] == ["band.bound"]
    assert [e.action for e in mw.audit.entries()] == ["band.bound", "card.read"]
    assert mw.audit.verify().ok


def test_a_grouped_block_that_cannot_commit_raises_and_writes_none(
    audited: MakeAudited,
) -> None:
    mw = audited()
    mw.audit("card.read", actor="kiosk-01")

    def step() -> None:
        with mw.audit.grouped():
            mw.audit("card.read", actor="kiosk-01")
            mw.audit("flow.outpatient.identify", actor="kiosk-01")
            with mw.engine.begin() as conn:  # the log broken by hand meanwhile
                conn.execute(sa.text("DELETE FROM audit_head"))

    with pytest.raises(AuditError):
        step()
    with mw.engine.begin() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM audit_log")).scalar_one() == 1


def _held(mw: Middleware, subject: str) -> Any:
    with mw.audit.held() as held:
        mw.audit("card.read", actor="kiosk-01", subject=subject)
    return held


def test_a_commit_that_must_not_wait_is_made_only_when_nobody_is_in_its_way(
    hcm_make_middleware: MiddlewareFactory,
) -> None:
    """``commit_held_now`` (an event loop's commit): made at once when the lock is free;
    refused with nothing written while another thread of this process writes, while a
    group commit forms behind it, or while another connection holds SQLite's lock —
    and refused at once, not after waiting."""
    mw = hcm_make_middleware()
    mw.audit("card.read", actor="kiosk-01")  # open and migrated
    audit = mw.audit

    free = _held(mw, "r-free")
    assert audit.commit_held_now([free]) is True
    assert [e.subject for e in audit.entries(action="card.read")][-1] == "r-free"
    assert audit.commit_held_now([]) is True  # nothing held: nothing to do

    # another thread of this process has the writers' turn, and an append waits behind it
    holding, release = threading.Event(), threading.Event()

    def writer() -> None:
        with storage.begin_write(mw.engine):
            holding.set()
            release.wait(10)

    behind: list[Any] = []
    threads = [
        threading.Thread(target=writer),
        threading.Thread(target=lambda: behind.append(audit("card.read", actor="k2"))),
    ]
    threads[0].start()
    assert holding.wait(10)
    refused = _held(mw, "r-turn")
    started = time.monotonic()
    assert audit.commit_held_now([refused]) is False  # the turn is taken
    threads[1].start()
    _wait_for(lambda: audit._leading, "the append to lead a group")
    assert audit.commit_held_now([refused]) is False  # a group is forming
    assert time.monotonic() - started < 1.0
    release.set()
    for t in threads:
        t.join(10)
    assert len(behind) == 1
    assert "r-turn" not in [e.subject for e in audit.entries(action="card.read")]

    # another connection (another process, say) holds SQLite's write lock
    other = sa.create_engine(mw.engine.url, poolclass=sa.pool.NullPool)
    with other.connect() as conn:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        started = time.monotonic()
        assert audit.commit_held_now([refused]) is False
        assert time.monotonic() - started < 1.0  # SQLite's busy wait was not taken
        conn.exec_driver_sql("ROLLBACK")
    other.dispose()
    # refused three times, then committed once, in its place after the others
    assert audit.commit_held_now([refused]) is True
    assert [e.subject for e in audit.entries(action="card.read")][-1] == "r-turn"
    # the connection waits for other connections' locks again, as before
    with mw.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
    assert audit.verify().ok


def test_a_commit_that_must_not_wait_announces_nothing_until_flushed(
    hcm_make_middleware: MiddlewareFactory,
) -> None:
    mw = hcm_make_middleware()
    mw.audit("card.read", actor="kiosk-01")
    recorder = HookRecorder(mw)
    held = _held(mw, "r-1")
    assert mw.audit.commit_held_now([held]) is True
    assert recorder.calls("hcm_audit_event") == []
    mw.audit.flush()
    assert [c.kwargs["event"].subject for c in recorder.calls("hcm_audit_event")] == ["r-1"]


def test_a_commit_that_must_not_wait_and_fails_writes_nothing_and_frees_the_log(
    hcm_make_middleware: MiddlewareFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    mw = hcm_make_middleware()
    mw.audit("card.read", actor="kiosk-01")
    audit = mw.audit
    held = _held(mw, "r-1")
    real = type(audit)._write

    def failing(self: Any, conn: Any, fields: Any, given: Any) -> Any:
        raise sa.exc.OperationalError("INSERT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(type(audit), "_write", failing)
    with pytest.raises(AuditError):
        audit.commit_held_now([held])
    monkeypatch.setattr(type(audit), "_write", real)
    assert "r-1" not in [e.subject for e in audit.entries(action="card.read")]
    assert not audit._leading
    audit("card.read", actor="kiosk-01", subject="r-2")  # the next append is not held up
    assert audit.verify().ok


def test_a_write_that_must_not_wait_is_refused_on_a_database_that_cannot_promise_it() -> None:
    engine = storage.create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    with pytest.raises(storage.WriteBusyError), storage.begin_write(engine, wait=False):
        pass  # nothing was tried: no connection to a server that is not there

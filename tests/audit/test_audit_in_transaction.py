"""Entries in a caller's transaction: the act and its entries commit together or not at
all — also when the commit itself fails — the numbers have no gaps across threads and
processes, and the chain verifies; the text the database builds for the verifier is the
text Python hashes, byte for byte."""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap
import threading
from typing import Any

import pytest
import sqlalchemy as sa

from hcmiddleware.audit import chain
from hcmiddleware.errors import AuditError
from hcmiddleware.models import AuditEntry
from hcmiddleware.runtime import Middleware
from hcmiddleware.testing import HookRecorder

from .conftest import MakeAudited, fill


def _acts(mw: Middleware) -> None:
    with mw.engine.begin() as conn:
        conn.execute(
            sa.text("CREATE TABLE IF NOT EXISTS acts (id VARCHAR(40) PRIMARY KEY, what TEXT)")
        )


def _count_acts(mw: Middleware) -> int:
    with mw.engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM acts")).scalar_one())


def _head(conn: sa.Connection) -> int:
    return int(conn.execute(sa.text("SELECT seq FROM audit_head")).scalar_one())


def _postgresql(mw: Middleware) -> bool:
    return mw.engine.dialect.name == "postgresql"


def test_an_entry_in_a_transaction_is_announced_once_committed(audited: MakeAudited) -> None:
    mw = audited()
    _acts(mw)
    fill(mw, 2)
    recorder = HookRecorder(mw)
    with mw.audit.transaction() as conn:
        conn.execute(sa.text("INSERT INTO acts VALUES ('a-1', 'registered')"))
        first = mw.audit.record("act.done", actor="clerk-2", subject="r-1", connection=conn)
        second = mw.audit.record("act.more", actor="clerk-2", connection=conn)
        assert _head(conn) == 4  # appended at once, in the transaction
        assert recorder.calls("hcm_audit_event") == []
    assert (first.seq, second.seq) == (3, 4)
    assert second.prev_hash == first.hash
    stored = mw.audit.entries(start=3)
    assert [e.model_dump() for e in stored] == [first.model_dump(), second.model_dump()]
    announced = [r.kwargs["event"] for r in recorder.calls("hcm_audit_event")]
    assert [(e.seq, e.hash) for e in announced] == [(3, first.hash), (4, second.hash)]
    assert _count_acts(mw) == 1
    assert mw.audit.verify().ok


def test_the_text_the_database_builds_is_the_text_python_hashes(audited: MakeAudited) -> None:
    mw = audited(terminal="kiosk-03")
    made: list[AuditEntry] = []
    with mw.audit.transaction() as conn:
        for subject, user, role, details in [
            (None, None, None, {}),
            ("r-0001", "u-17", "clerk", {"note": "queue moved"}),
            ("o'brien%s", "u\\1", "r", {"a": "你好 \"quoted\" 'single' %d \\ end"}),
            ("x" * 64, "y" * 64, "z" * 32, {"k": "🩺"}),
        ]:
            made.append(
                mw.audit.record(
                    "act.text",
                    actor="clerk-2",
                    subject=subject,
                    user=user,
                    role=role,
                    details=details,
                    connection=conn,
                )
            )
    prev = bytes(32)
    for entry in made:
        at = entry.at.replace(tzinfo=None)
        body = chain.canonical(
            entry.seq,
            at,
            entry.action,
            entry.actor,
            entry.subject,
            entry.outcome,
            entry.user,
            entry.role,
            entry.terminal,
            chain.canonical_details(entry.details),
        )
        assert entry.prev_hash == prev.hex()
        assert entry.hash == chain.digest("sha256")(prev + body).hex()
        prev = bytes.fromhex(entry.hash)
    # and the verifier's query builds the same text from the stored columns
    with mw.engine.connect() as conn:
        raw: Any = conn.connection.driver_connection
        sql = chain.canonical_sql(conn.dialect.name)
        cursor = raw.cursor()
        cursor.execute(sql, {"lo": 1, "hi": 4} if _postgresql(mw) else (1, 4))
        texts = [row[1] for row in cursor.fetchall()]
    assert [t.encode() for t in texts] == [
        chain.canonical(
            e.seq,
            e.at.replace(tzinfo=None),
            e.action,
            e.actor,
            e.subject,
            e.outcome,
            e.user,
            e.role,
            e.terminal,
            chain.canonical_details(e.details),
        )
        for e in made
    ]
    assert mw.audit.verify().ok


def test_a_transaction_rolled_back_takes_its_entries_with_it(audited: MakeAudited) -> None:
    mw = audited()
    _acts(mw)
    fill(mw, 1)
    recorder = HookRecorder(mw)

    def act() -> None:
        with mw.audit.transaction() as conn:
            conn.execute(sa.text("INSERT INTO acts VALUES ('a-1', 'registered')"))
            mw.audit.record("act.done", actor="clerk-2", connection=conn)
            mw.audit.record("act.more", actor="clerk-2", connection=conn)
            raise RuntimeError("the act failed after its entries")

    with pytest.raises(RuntimeError):
        act()
    # rolled back by hand, then the connection goes on with another act
    with mw.engine.connect() as conn:
        conn.execute(sa.text("INSERT INTO acts VALUES ('a-2', 'registered')"))
        mw.audit.record("act.undone", actor="clerk-2", connection=conn)
        conn.rollback()
        conn.execute(sa.text("INSERT INTO acts VALUES ('a-3', 'registered')"))
        kept = mw.audit.record("act.kept", actor="clerk-2", connection=conn)
        conn.commit()
    mw.audit.flush()
    assert kept.seq == 2
    assert [e.action for e in mw.audit.entries()] == ["card.read", "act.kept"]
    assert [r.kwargs["event"].action for r in recorder.calls("hcm_audit_event")] == ["act.kept"]
    with mw.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT id FROM acts")).scalars().all() == ["a-3"]
    assert mw.audit.verify().ok


def test_an_entry_that_cannot_be_appended_fails_the_act(audited: MakeAudited) -> None:
    """The entry's number was taken by hand meanwhile: the append fails, and the act is
    not committed without its entry."""
    mw = audited()
    _acts(mw)
    fill(mw, 2)
    recorder = HookRecorder(mw)
    first = mw.audit.entries()[0]
    with mw.engine.begin() as conn:  # entry 3 put in by hand, the head not moved
        conn.execute(
            sa.text(
                "INSERT INTO audit_log (seq, at, action, actor, subject, outcome, user_id, "
                "role, terminal, details, prev_hash, hash) SELECT 3, at, action, actor, "
                "subject, outcome, user_id, role, terminal, details, prev_hash, hash "
                "FROM audit_log WHERE seq = 1"
            )
        )

    def act() -> None:
        with mw.audit.transaction() as conn:
            conn.execute(sa.text("INSERT INTO acts VALUES ('a-1', 'registered')"))
            mw.audit.record("act.done", actor="clerk-2", connection=conn)

    with pytest.raises(AuditError, match="already holds an entry"):
        act()
    assert _count_acts(mw) == 0
    assert recorder.calls("hcm_audit_event") == []
    assert mw.audit.head()[0] == 2
    with mw.engine.begin() as conn:  # the stray entry removed: the log works again
        conn.execute(sa.text("DELETE FROM audit_log WHERE seq = 3"))
    with mw.audit.transaction() as conn:
        conn.execute(sa.text("INSERT INTO acts VALUES ('a-2', 'registered')"))
        again = mw.audit.record("act.done", actor="clerk-2", connection=conn)
    assert again.seq == 3
    assert mw.audit.entries()[0] == first
    assert _count_acts(mw) == 1
    assert mw.audit.verify().ok


def test_a_head_removed_in_the_act_fails_it_and_is_restored(audited: MakeAudited) -> None:
    mw = audited()
    _acts(mw)
    fill(mw, 1)

    def act() -> None:
        with mw.audit.transaction() as conn:
            conn.execute(sa.text("INSERT INTO acts VALUES ('a-1', 'registered')"))
            conn.execute(sa.text("DELETE FROM audit_head"))
            mw.audit.record("act.done", actor="clerk-2", connection=conn)

    with pytest.raises(AuditError, match="head row is missing"):
        act()
    assert _count_acts(mw) == 0
    assert mw.audit.head()[0] == 1  # the delete went with the act
    assert mw.audit("card.read", actor="kiosk-01").seq == 2
    assert mw.audit.verify().ok


#: PostgreSQL only: what the test needs, SQLite does not have
only_postgresql = pytest.mark.parametrize(
    "fresh_database", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)


@only_postgresql  # SQLite has no unique constraint checked at commit
def test_a_commit_that_fails_writes_neither_the_act_nor_its_entries(audited: MakeAudited) -> None:
    """A constraint checked at COMMIT fails: the entries appended in the transaction are
    rolled back with the act, and none is announced."""
    mw = audited()
    with mw.engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE late (id INTEGER UNIQUE DEFERRABLE INITIALLY DEFERRED)"))
    fill(mw, 1)
    recorder = HookRecorder(mw)

    def act() -> None:
        with mw.audit.transaction() as conn:
            conn.execute(sa.text("INSERT INTO late VALUES (1), (1)"))
            mw.audit.record("act.done", actor="clerk-2", connection=conn)

    with pytest.raises(sa.exc.IntegrityError):
        act()
    assert mw.audit.head()[0] == 1
    assert recorder.calls("hcm_audit_event") == []
    with mw.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM late")).scalar_one() == 0
    assert mw.audit("card.read", actor="kiosk-01").seq == 2
    assert mw.audit.verify().ok


def test_an_sm3_chain_is_appended_in_the_transaction(audited: MakeAudited) -> None:
    mw = audited(hash="sm3")
    _acts(mw)
    with mw.audit.transaction() as conn:
        conn.execute(sa.text("INSERT INTO acts VALUES ('a-1', 'registered')"))
        entry = mw.audit.record("act.done", actor="clerk-2", connection=conn)
        assert entry.seq == 1
        assert _head(conn) == 1
    body = chain.canonical(
        1, entry.at.replace(tzinfo=None), "act.done", "clerk-2", None, "ok", "system",
        "system", entry.terminal, "{}",
    )  # fmt: skip
    assert entry.hash == chain.digest("sm3")(bytes(32) + body).hex()
    report = mw.audit.verify()
    assert report.ok
    assert report.algorithm == "sm3"


_CHILD = textwrap.dedent(
    """
    import sys
    import time
    from pathlib import Path

    import sqlalchemy as sa

    from hcmiddleware.runtime import Middleware
    from hcmiddleware.testing.plugin import embedded_config

    url, data_dir, count, go = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    config = embedded_config(
        data_dir, database={"url": url}, audit={"terminal": "child", "checkpoint_every": 25}
    )
    with Middleware(config) as mw:
        mw.audit.open()
        print("ready", flush=True)
        while not Path(go).exists():
            time.sleep(0.001)
        for i in range(count):
            with mw.audit.transaction() as conn:
                conn.execute(
                    sa.text("INSERT INTO acts VALUES (:id, 'child')"), {"id": f"child-{i}"}
                )
                mw.audit.record(
                    "act.child", actor="child", details={"i": str(i)}, connection=conn
                )
    """
)


def test_concurrent_appenders_in_threads_and_another_process_make_one_chain(
    audited: MakeAudited, audit_db: str, tmp_path: Any
) -> None:
    mw = audited(checkpoint_every=25)
    _acts(mw)
    fill(mw, 1)
    go = tmp_path / "go"
    child = subprocess.Popen(
        [
            sys.executable, "-c", _CHILD, audit_db, str(mw.config.middleware.data_dir),
            "60", str(go),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready", child.stderr and child.stderr.read()
    got: dict[str, AuditEntry] = {}
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(worker: int) -> None:
        try:
            for i in range(30):
                key = f"t{worker}-{i}"
                if i % 5 == 4:  # now and then a stand-alone entry (a group commit)
                    entry = mw.audit("card.read", actor=f"t{worker}", i=str(i))
                    with lock:
                        got[key] = entry
                    continue
                with mw.audit.transaction() as conn:
                    conn.execute(sa.text("INSERT INTO acts VALUES (:id, 'thread')"), {"id": key})
                    entry = mw.audit.record(
                        "act.thread", actor=f"t{worker}", details={"i": str(i)}, connection=conn
                    )
                    if i % 3 == 0:  # two entries in one transaction
                        mw.audit.record("act.extra", actor=f"t{worker}", connection=conn)
                with lock:
                    got[key] = entry
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    go.touch()
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    _out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    assert errors == []
    entries = mw.audit.entries()
    # every entry of both processes, numbered without a gap, each after the one before
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(entries))
    actions = [e.action for e in entries]
    assert actions.count("act.child") == 60
    assert actions.count("act.thread") == 4 * 24
    assert actions.count("act.extra") == 4 * 8
    assert actions.count("card.read") == 1 + 4 * 6
    # each act committed with its entry, and each caller was given its entry as stored
    assert _count_acts(mw) == 60 + 4 * 24
    stored = {e.seq: e for e in entries}
    assert all(stored[e.seq].model_dump() == e.model_dump() for e in got.values())
    # the processes met on the head: the chain interleaves them
    assert len({e.terminal for e in entries}) == 2
    mw.audit.checkpoint()
    report = mw.audit.verify()
    assert report.ok, report.render()
    assert report.checkpoints >= 2


@only_postgresql  # SQLite's transactions are begun by SQLAlchemy (storage._sqlite_begin)
def test_a_connection_in_autocommit_appends_at_once(audited: MakeAudited) -> None:
    """Without a transaction, an entry is written by the statements that append it, as the
    act's are."""
    mw = audited()
    mw.audit.open()
    with mw.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        entry = mw.audit.record("act.done", actor="clerk-2", connection=conn)
        assert entry.seq == 1
    assert [e.seq for e in mw.audit.entries()] == [1]
    assert mw.audit.verify().ok

"""The chain: what an entry holds, its hash, appends in the act's transaction, concurrency."""

from __future__ import annotations

import hashlib
import itertools
import threading
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from hcmiddleware.audit import chain
from hcmiddleware.errors import AuditAlgorithmError, AuditError, AuditInputError
from hcmiddleware.models import AuditEntry, AuditEvent
from hcmiddleware.testing import HookRecorder

from .conftest import MakeAudited, fill


def test_an_entry_is_stored_with_its_place_and_hash(audited: MakeAudited) -> None:
    mw = audited(terminal="kiosk-03")
    first = mw.audit("card.read", actor="kiosk-03", subject="r-0001", reader="R0")
    second = mw.audit(
        "flow.outpatient.register", actor="clerk-2", user="u-17", role="clerk", queue_number="4"
    )
    assert (first.seq, second.seq) == (1, 2)
    assert first.prev_hash == "00" * 32
    assert second.prev_hash == first.hash
    assert first.terminal == "kiosk-03"
    assert (second.user, second.role) == ("u-17", "clerk")
    # an unbound call is the embedding process's: the system caller ([access] system_user)
    assert (first.user, first.role) == ("system", "system")
    # the hash is H(prev ‖ canonical), recomputed here from the documented encoding
    at = first.at.replace(tzinfo=None)
    fields = ["1", f"{at:%Y-%m-%d %H:%M:%S.%f}", "card.read", "kiosk-03", "r-0001", "ok"]
    body = "\x1f".join([*fields, "system", "system", "kiosk-03", '{"reader":"R0"}']).encode()
    assert first.hash == hashlib.sha256(bytes(32) + body).hexdigest()
    stored = mw.audit.entries()
    assert [e.model_dump() for e in stored] == [first.model_dump(), second.model_dump()]
    assert mw.audit.verify().ok


def test_sm3_chain(audited: MakeAudited) -> None:
    mw = audited(hash="sm3")
    entry = mw.audit("card.read", actor="kiosk-03")
    body = chain.canonical(
        1, entry.at.replace(tzinfo=None), "card.read", "kiosk-03", None, "ok", "system", "system",
        entry.terminal, "{}",
    )  # fmt: skip
    assert entry.hash == chain.digest("sm3")(bytes(32) + body).hex()
    # the SM3 test vector of GB/T 32905: "abc"
    assert chain.digest("sm3")(b"abc").hex() == (
        "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    )
    fill(mw, 10)
    report = mw.audit.verify()
    assert report.ok
    assert report.algorithm == "sm3"


def test_the_hash_of_a_chain_cannot_change_by_config(audited: MakeAudited) -> None:
    mw = audited(hash="sha256")
    fill(mw, 3)
    mw.close()
    other = audited(hash="sm3")
    with pytest.raises(AuditAlgorithmError) as caught:
        other.audit("card.read", actor="kiosk-03")
    assert (caught.value.chain, caught.value.configured) == ("sha256", "sm3")
    assert caught.value.key == "audit.hash"
    assert 'hash = "sha256"' in caught.value.hint
    assert audited(hash="sha256").audit.head() == (3 + 0, "sha256")


def test_every_sink_receives_the_committed_entry(
    audited: MakeAudited, hcm_make_middleware: Any
) -> None:
    seen: list[AuditEvent] = []

    class Siem:
        def hcm_audit_event(self, event: AuditEvent) -> None:
            seen.append(event)

    mw = audited(plugins={"siem": Siem()})
    recorder = HookRecorder(mw)
    entry = mw.audit("card.read", actor="kiosk-03")
    assert seen == [entry]
    assert isinstance(seen[0], AuditEntry)
    assert recorder.last("hcm_audit_event").kwargs["event"].seq == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("subject", "11010519491231002X"),  # a resident ID number
        ("actor", "13800138000"),  # a mobile number
        ("detail", "11010519491231002X"),
        ("subject", "r-1\nforged line"),
        ("subject", "x" * 65),
        ("detail", "y" * 257),
    ],
)
def test_what_the_log_must_not_hold_is_refused(
    audited: MakeAudited, field: str, value: str
) -> None:
    mw = audited()
    args: dict[str, Any] = {"actor": "kiosk-03"}
    if field == "detail":
        args["note"] = value
    else:
        args[field] = value
    with pytest.raises(AuditInputError) as caught:
        mw.audit("card.read", **args)
    assert value not in str(caught.value)
    assert mw.audit.head()[0] == 0  # nothing written


def test_bad_calls_are_refused(audited: MakeAudited) -> None:
    mw = audited()
    with pytest.raises(AuditInputError):
        mw.audit("card.read", actor="k", outcome="maybe")  # type: ignore[arg-type]
    with pytest.raises(AuditInputError):
        mw.audit("card.read", actor="k", count=3)  # type: ignore[arg-type]
    with pytest.raises(AuditInputError):
        mw.audit("card.read", actor="k", **{"Bad Key": "x"})
    with pytest.raises(AuditInputError):
        mw.audit("", actor="k")


# --- in the act's own transaction ----------------------------------------------------


def _acts(conn: sa.Connection) -> None:
    conn.execute(sa.text("CREATE TABLE IF NOT EXISTS acts (id INTEGER PRIMARY KEY)"))


def test_an_act_and_its_entry_commit_together(audited: MakeAudited) -> None:
    mw = audited()
    recorder = HookRecorder(mw)
    with mw.audit.transaction() as conn:
        _acts(conn)
        conn.execute(sa.text("INSERT INTO acts (id) VALUES (1)"))
        entry = mw.audit.record("act.done", actor="clerk-2", connection=conn)
        assert recorder.calls("hcm_audit_event") == []  # not before the commit
    assert [r.kwargs["event"].seq for r in recorder.calls("hcm_audit_event")] == [entry.seq]
    with mw.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM acts")).scalar() == 1


def test_an_act_rolled_back_leaves_no_entry(audited: MakeAudited) -> None:
    mw = audited()
    with mw.audit.transaction() as conn:
        _acts(conn)
    recorder = HookRecorder(mw)

    def failing_act() -> None:
        with mw.audit.transaction() as conn:
            conn.execute(sa.text("INSERT INTO acts (id) VALUES (2)"))
            mw.audit.record("act.done", actor="clerk-2", connection=conn)
            raise RuntimeError("the act failed")

    with pytest.raises(RuntimeError):
        failing_act()
    assert mw.audit.head()[0] == 0
    assert recorder.calls("hcm_audit_event") == []
    # a savepoint rolled back takes its entries with it; the rest commit
    with mw.audit.transaction() as conn:
        mw.audit.record("act.kept", actor="clerk-2", connection=conn)
        try:
            with conn.begin_nested():
                mw.audit.record("act.undone", actor="clerk-2", connection=conn)
                raise RuntimeError("part of the act failed")
        except RuntimeError:
            pass
    assert [r.kwargs["event"].action for r in recorder.calls("hcm_audit_event")] == ["act.kept"]
    assert [e.action for e in mw.audit.entries()] == ["act.kept"]
    assert mw.audit.verify().ok


def test_many_entries_in_one_transaction_around_a_savepoint_rolled_back(
    audited: MakeAudited,
) -> None:
    mw = audited()
    other = audited(terminal="kiosk-02")  # another writer on the same database
    fill(mw, 2)
    with mw.audit.transaction() as conn:
        for i in range(3):
            mw.audit.record("act.step", actor="clerk-2", details={"i": str(i)}, connection=conn)
        try:
            with conn.begin_nested():
                mw.audit.record("act.undone", actor="clerk-2", connection=conn)
                raise RuntimeError("part of the act failed")
        except RuntimeError:
            pass
        # after the savepoint: the next entry follows the last one kept, not the undone one
        last = mw.audit.record("act.after", actor="clerk-2", connection=conn)
    assert last.seq == 6
    other.audit("card.read", actor="kiosk-02")  # appended after this process's last entry
    again = mw.audit.record("act.next", actor="clerk-2")  # so this one reads the head
    assert again.seq == 8
    entries = mw.audit.entries()
    assert [e.seq for e in entries] == list(range(1, 9))
    assert "act.undone" not in {e.action for e in entries}
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(entries))
    assert mw.audit.verify().ok


def test_an_entry_that_cannot_be_written_fails_the_act(audited: MakeAudited) -> None:
    mw = audited()
    fill(mw, 2)
    with mw.engine.begin() as conn:  # the head row removed by hand
        conn.execute(sa.text("DELETE FROM audit_head"))

    def act() -> None:
        with mw.audit.transaction() as conn:
            _acts(conn)
            conn.execute(sa.text("INSERT INTO acts (id) VALUES (3)"))
            mw.audit.record("act.done", actor="clerk-2", connection=conn)

    with pytest.raises(AuditError):
        act()
    with mw.engine.connect() as conn:
        assert "acts" not in sa.inspect(conn).get_table_names()


def test_a_connection_to_another_database_is_refused(audited: MakeAudited, tmp_path: Any) -> None:
    mw = audited()
    elsewhere = sa.create_engine(f"sqlite:///{tmp_path / 'other.db'}")
    with elsewhere.begin() as conn, pytest.raises(AuditError):
        mw.audit.record("act.done", actor="clerk-2", connection=conn)
    elsewhere.dispose()


# --- concurrency --------------------------------------------------------------------


def test_concurrent_appends_make_one_unbroken_chain(audited: MakeAudited) -> None:
    mw = audited(checkpoint_every=25)
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for i in range(40):
                if i % 4 == 0:
                    with mw.audit.transaction() as conn:
                        mw.audit.record(
                            "act.done", actor=f"t{worker}", details={"i": str(i)}, connection=conn
                        )
                else:
                    mw.audit("card.read", actor=f"t{worker}", i=str(i))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    entries = mw.audit.entries()
    assert [e.seq for e in entries] == list(range(1, 241))
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(entries))
    report = mw.audit.verify()
    assert report.ok, report.render()
    assert report.checkpoints >= 240 // 25


def test_two_terminals_on_one_database_share_the_chain(
    audited: MakeAudited, tmp_path: Path
) -> None:
    first = audited(terminal="kiosk-01")
    first.audit("card.read", actor="kiosk-01")
    first.audit.checkpoint()  # signed with kiosk-01's key
    # each terminal knows the other's public key (its own is in its signing key)
    first_key = tmp_path / "hcm-data-0" / "keys" / "audit-signing.pub"
    second = audited(terminal="kiosk-02", verify_keys=[str(first_key)])
    second.audit("card.read", actor="kiosk-02")
    first.audit("card.read", actor="kiosk-01")
    assert [e.terminal for e in second.audit.entries()] == ["kiosk-01", "kiosk-02", "kiosk-01"]
    assert second.audit.verify().ok
    # without the other terminal's key its checkpoints cannot be trusted
    third = audited(terminal="kiosk-03")
    report = third.audit.verify()
    assert not report.ok
    assert report.first is not None
    assert report.first.kind == "checkpoint"
    assert "not this terminal's nor in verify_keys" in report.first.message


# --- listing --------------------------------------------------------------------------


def test_entries_are_filtered(audited: MakeAudited) -> None:
    mw = audited()
    fill(mw, 12)
    assert {e.subject for e in mw.audit.entries(resident="r-0001")} == {"r-0001"}
    assert len(mw.audit.entries(resident="r-0001")) == 2  # i = 1, 11
    assert {e.action for e in mw.audit.entries(action="card.read")} == {"card.read"}
    assert len(mw.audit.entries(action="flow.outpatient.*")) == 8
    assert mw.audit.entries(action="flow.%") == []  # no wildcard but the trailing *
    recent = mw.audit.entries(limit=3)
    assert [e.seq for e in recent] == [10, 11, 12]
    later = mw.audit.entries(since=recent[0].at)
    assert [e.seq for e in later] == [10, 11, 12]
    assert [e.seq for e in mw.audit.entries(start=4, end=5)] == [4, 5]


def test_an_event_made_elsewhere_keeps_its_time(audited: MakeAudited) -> None:
    from datetime import UTC, datetime

    mw = audited(terminal="kiosk-03")
    at = datetime(2026, 12, 3, 8, 30, 0, 123456, tzinfo=UTC)
    event = AuditEvent(at=at, actor="ward-2", action="ward.location", subject="r-0007")
    entry = mw.audit.append(event)
    assert (entry.seq, entry.at, entry.terminal) == (1, at, "kiosk-03")
    assert mw.audit.entries()[0].at == at
    assert mw.audit.verify().ok

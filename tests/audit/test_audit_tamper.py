"""The audit table edited by hand in every way: verify names the first bad entry and why.

Each test builds the same chain of 60 entries (a checkpoint at 1, every 20 after, and at
close, signed, also written to a checkpoint file "on another disk"), then edits the
database the way someone with a database client would, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from hcmiddleware.audit import chain
from hcmiddleware.audit.tables import AuditLogRow
from hcmiddleware.audit.verify import VerifyReport
from hcmiddleware.errors import CheckpointFileError
from hcmiddleware.runtime import Middleware

from .conftest import MakeAudited, fill, raw

ENTRIES = 60


@pytest.fixture
def built(audited: MakeAudited, tmp_path: Path) -> Callable[[], Middleware]:
    """Build the chain once, then hand out fresh Middlewares on the same database."""
    checkpoints = tmp_path / "other-disk" / "checkpoints.jsonl"
    settings: dict[str, Any] = {"checkpoint_every": 20, "checkpoint_file": str(checkpoints)}
    mw = audited(**settings)
    fill(mw, ENTRIES)
    mw.close()  # checkpoints the tail
    lines = checkpoints.read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [1, 21, 41, 60]
    # the fixture's key folder is per Middleware: the next one verifies with this one's key
    public = tmp_path / "hcm-data-0" / "keys" / "audit-signing.pub"
    return lambda: audited(verify_keys=[str(public)], **settings)


def _first(report: VerifyReport) -> tuple[int, str]:
    assert not report.ok, report.render()
    assert report.first is not None
    return report.first.seq, report.first.kind


def test_the_untouched_chain_verifies(built: Callable[[], Middleware]) -> None:
    mw = built()
    report = mw.audit.verify()
    assert report.ok, report.render()
    assert (report.entries, report.head) == (ENTRIES, ENTRIES)
    assert report.checkpoints == 8  # four in the table, four in the file
    assert report.unsigned_checkpoints == 0
    assert mw.audit.verify(start=10, end=30).ok


def test_a_changed_entry_is_named(built: Callable[[], Middleware]) -> None:
    mw = built()
    raw(mw, "UPDATE audit_log SET subject = 'r-9999' WHERE seq = 17")
    assert _first(mw.audit.verify()) == (17, "changed")
    # a range that holds it finds it; one that does not, does not
    assert _first(mw.audit.verify(start=10, end=20)) == (17, "changed")
    assert mw.audit.verify(start=18, end=20).ok


def test_a_changed_detail_or_time_is_named(built: Callable[[], Middleware]) -> None:
    mw = built()
    raw(mw, """UPDATE audit_log SET details = '{"department":"ER"}' WHERE seq = 23""")
    raw(mw, "UPDATE audit_log SET at = :at WHERE seq = 40", at=datetime(2025, 1, 1, 8, 0))
    report = mw.audit.verify()
    assert [(p.seq, p.kind) for p in report.problems] == [(23, "changed"), (40, "changed")]


def test_a_removed_entry_is_named(built: Callable[[], Middleware]) -> None:
    mw = built()
    raw(mw, "DELETE FROM audit_log WHERE seq = 17")
    seq, kind = _first(mw.audit.verify())
    assert (seq, kind) == (17, "missing")


def test_removed_entries_with_the_rest_renumbered_are_named(
    built: Callable[[], Middleware],
) -> None:
    mw = built()
    raw(mw, "DELETE FROM audit_log WHERE seq = 17")
    raw(mw, "UPDATE audit_log SET seq = -seq WHERE seq > 17")
    raw(mw, "UPDATE audit_log SET seq = -seq - 1 WHERE seq < 0")
    report = mw.audit.verify()
    assert _first(report) == (17, "changed")
    assert "removed and the rest renumbered" in report.problems[0].message


def _forge(mw: Middleware, seq: int, prev: bytes, subject: str) -> bytes:
    """Write a well-formed entry the log never made (as one who knows the algorithm)."""
    when = datetime(2026, 1, 1, 8, 0, 0, 0)
    body = chain.canonical(
        seq, when, "card.read", "kiosk-03", subject, "ok", None, None, "kiosk-03", "{}"
    )
    new = chain.digest("sha256")(prev + body)
    with mw.engine.begin() as conn:
        conn.execute(
            AuditLogRow.__table__.insert(),  # type: ignore[attr-defined]
            {
                "seq": seq, "at": when, "action": "card.read", "actor": "kiosk-03",
                "subject": subject, "outcome": "ok", "user_id": None, "role": None,
                "terminal": "kiosk-03", "details": "{}", "prev_hash": prev, "hash": new,
            },
        )  # fmt: skip
    return new


def _hash(mw: Middleware, seq: int) -> bytes:
    with mw.engine.connect() as conn:
        value = conn.execute(sa.text("SELECT hash FROM audit_log WHERE seq = :s"), {"s": seq})
        return bytes(value.scalar_one())


def test_an_inserted_entry_is_named(built: Callable[[], Middleware]) -> None:
    mw = built()
    # make room at 30 and put a well-formed entry there, following entry 29
    raw(mw, "UPDATE audit_log SET seq = -seq WHERE seq >= 30")
    raw(mw, "UPDATE audit_log SET seq = -seq + 1 WHERE seq < 0")
    raw(mw, "UPDATE audit_head SET seq = seq + 1")
    _forge(mw, 30, _hash(mw, 29), "r-0042")
    report = mw.audit.verify()
    assert _first(report) == (30, "inserted")
    assert "entries 30–30 were put in between" in report.problems[0].message


def test_an_entry_added_past_the_head_is_named(built: Callable[[], Middleware]) -> None:
    mw = built()
    _forge(mw, ENTRIES + 1, _hash(mw, ENTRIES), "r-0042")
    assert _first(mw.audit.verify()) == (ENTRIES + 1, "inserted")


def test_reordered_entries_are_named(built: Callable[[], Middleware]) -> None:
    mw = built()
    raw(mw, "UPDATE audit_log SET seq = -1 WHERE seq = 20")
    raw(mw, "UPDATE audit_log SET seq = 20 WHERE seq = 21")
    raw(mw, "UPDATE audit_log SET seq = 21 WHERE seq = -1")
    report = mw.audit.verify()
    assert _first(report) == (20, "reordered")


def test_a_truncated_table_is_named(built: Callable[[], Middleware]) -> None:
    mw = built()
    raw(mw, "DELETE FROM audit_log WHERE seq > 50")
    report = mw.audit.verify()
    assert _first(report) == (51, "truncated")
    assert "head counts 60" in report.problems[0].message


def test_a_truncation_covered_up_in_the_database_is_caught_by_the_checkpoint_file(
    built: Callable[[], Middleware],
) -> None:
    mw = built()
    raw(mw, "DELETE FROM audit_log WHERE seq > 50")
    raw(mw, "DELETE FROM audit_checkpoints WHERE seq > 50")
    with mw.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE audit_head SET seq = 50, checkpoint_seq = 41, hash = :h"),
            {"h": _hash(mw, 50)},
        )
    report = mw.audit.verify()
    assert _first(report) == (51, "truncated")
    assert "checkpoints.jsonl" in report.problems[0].message


def _rewrite_from(mw: Middleware, start: int) -> None:
    """Change entry ``start`` and recompute every hash after it, head included."""
    table = AuditLogRow.__table__  # type: ignore[attr-defined]
    with mw.engine.begin() as conn:
        rows = conn.execute(sa.select(table).where(table.c.seq >= start).order_by("seq")).all()
        prev = _hash(mw, start - 1)
        for row in rows:
            subject = "r-9999" if row.seq == start else row.subject
            body = chain.canonical(
                row.seq, row.at, row.action, row.actor, subject, row.outcome, row.user_id,
                row.role, row.terminal, row.details,
            )  # fmt: skip
            new = chain.digest("sha256")(prev + body)
            conn.execute(
                table.update().where(table.c.seq == row.seq),
                {"subject": subject, "prev_hash": prev, "hash": new},
            )
            prev = new
        conn.execute(sa.text("UPDATE audit_head SET hash = :h"), {"h": prev})


def test_a_rewrite_with_recomputed_hashes_is_caught_by_the_checkpoints(
    built: Callable[[], Middleware],
) -> None:
    mw = built()
    _rewrite_from(mw, 5)
    report = mw.audit.verify()
    # the chain itself is consistent again; the signed checkpoints are not fooled
    assert _first(report) == (2, "rewritten")
    assert "from 2 to 21 were rewritten" in report.problems[0].message


def test_a_whole_table_rewritten_with_its_checkpoints_is_caught_by_the_file(
    built: Callable[[], Middleware],
) -> None:
    mw = built()
    _rewrite_from(mw, 5)
    # the intruder also replaces the table's checkpoints by unsigned ones that match
    with mw.engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_checkpoints SET signature = NULL, key_id = NULL"))
        for seq in (21, 41, 60):
            conn.execute(
                sa.text("UPDATE audit_checkpoints SET hash = :h WHERE seq = :s"),
                {"h": _hash(mw, seq), "s": seq},
            )
    report = mw.audit.verify()
    assert _first(report) == (2, "rewritten")
    assert "checkpoints.jsonl" in report.problems[0].message
    # without the file the rewrite goes unseen: why the checkpoints must leave the database
    file = mw.config.audit.checkpoint_file
    assert file is not None
    file.rename(file.with_suffix(".away"))
    alone = mw.audit.verify()
    assert alone.ok
    assert alone.unsigned_checkpoints == 4


def test_a_checkpoint_with_a_bad_signature_is_named(
    built: Callable[[], Middleware], tmp_path: Path
) -> None:
    mw = built()
    file = mw.config.audit.checkpoint_file
    assert file is not None
    lines = file.read_text().splitlines()
    forged = json.loads(lines[1])
    forged["hash"] = "ab" * 32  # a checkpoint of another chain, under the old signature
    copy = tmp_path / "copy.jsonl"
    copy.write_text("\n".join([lines[0], json.dumps(forged), *lines[2:]]) + "\n")
    report = mw.audit.verify(checkpoints=copy)
    assert _first(report) == (21, "checkpoint")
    assert "does not verify" in report.problems[0].message
    # in the database too
    raw(mw, "UPDATE audit_checkpoints SET signature = :s WHERE seq = 41", s=b"\x00" * 64)
    kinds = [(p.seq, p.kind) for p in mw.audit.verify().problems]
    assert (41, "checkpoint") in kinds


def test_a_damaged_checkpoint_file_is_a_typed_error(
    built: Callable[[], Middleware], tmp_path: Path
) -> None:
    mw = built()
    damaged = tmp_path / "damaged.jsonl"
    damaged.write_text('{"seq": 1, "hash": "00"}\nnot json\n')
    with pytest.raises(CheckpointFileError) as caught:
        mw.audit.verify(checkpoints=damaged)
    assert (caught.value.file, caught.value.line) == (str(damaged), 1)
    assert "line 1" in caught.value.message

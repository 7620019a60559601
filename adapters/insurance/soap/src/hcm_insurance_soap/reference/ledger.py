"""The reference insurer's own ledger: settlements, cancellations and reversals.

Idempotent per message ID. The fund's share is a fixed rate per scheme (basic 70 %,
rural 60 %, rounded half-up to the fen); the rest is the patient's.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

__all__ = ["FUND_RATES", "InsurerLedger", "SettlementRecord", "split"]

CENT = Decimal("0.01")
FUND_RATES = {"basic": Decimal("0.70"), "rural": Decimal("0.60")}

SCHEMA = """
CREATE TABLE IF NOT EXISTS message (
    message_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,            -- settle | cancel | tombstone
    settlement_id TEXT,
    total TEXT NOT NULL,
    fund_paid TEXT NOT NULL,
    patient_paid TEXT NOT NULL,
    status TEXT NOT NULL,          -- settled | cancelled | reversed
    occurred_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS message_settlement ON message(settlement_id);
"""


def split(scheme: str, total: Decimal) -> tuple[Decimal, Decimal]:
    """``(fund_paid, patient_paid)`` of a bill under ``scheme``."""
    fund = (total * FUND_RATES[scheme]).quantize(CENT, rounding=ROUND_HALF_UP)
    return fund, total - fund


@dataclass(frozen=True)
class SettlementRecord:
    """One message as the insurer holds it."""

    message_id: str
    kind: str
    settlement_id: str | None
    total: Decimal
    fund_paid: Decimal
    patient_paid: Decimal
    status: str
    occurred_at: datetime


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


class InsurerLedger:
    """The insurer's book in one SQLite file; every operation is one transaction."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the database file."""
        with self._lock:
            self._db.close()

    def settle(self, message_id: str, scheme: str, total: Decimal) -> SettlementRecord:
        """Settle a bill once; a repeated message ID returns the first answer."""
        with self._lock:
            seen = self._get(message_id)
            if seen is not None:
                return seen
            fund, patient = split(scheme, total)
            self._write(message_id, "settle", "JS" + message_id, total, fund, patient, "settled")
            return self._must(message_id)

    def cancel(self, message_id: str, settlement_id: str) -> SettlementRecord | None:
        """Cancel a settlement; None if there is no such live settlement."""
        with self._lock:
            seen = self._get(message_id)
            if seen is not None:
                return seen
            row = self._db.execute(
                "SELECT message_id FROM message WHERE settlement_id=? AND kind='settle'",
                (settlement_id,),
            ).fetchone()
            original = None if row is None else self._get(row[0])
            if original is None or original.status == "reversed":
                return None
            if original.status == "cancelled":
                done = self._db.execute(
                    "SELECT message_id FROM message WHERE settlement_id=? AND kind='cancel' "
                    "AND status='cancelled'",
                    (settlement_id,),
                ).fetchone()
                return self._get(done[0]) if done else None
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "UPDATE message SET status='cancelled' WHERE message_id=?", (original.message_id,)
            )
            self._write(
                message_id, "cancel", settlement_id, original.total, original.fund_paid,
                original.patient_paid, "cancelled",
            )  # fmt: skip
            self._db.execute("COMMIT")
            return self._must(message_id)

    def reverse(self, original_message_id: str) -> bool:
        """Reverse (冲正) a message; an unknown one becomes a reversed tombstone."""
        with self._lock:
            seen = self._get(original_message_id)
            if seen is None:
                zero = Decimal("0.00")
                self._write(original_message_id, "tombstone", None, zero, zero, zero, "reversed")
            elif seen.kind == "settle" and seen.status == "settled":
                self._db.execute(
                    "UPDATE message SET status='reversed' WHERE message_id=?",
                    (original_message_id,),
                )
            elif seen.kind == "cancel" and seen.status == "cancelled":
                # reversing a cancellation puts the settlement back
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute(
                    "UPDATE message SET status='reversed' WHERE message_id=?",
                    (original_message_id,),
                )
                self._db.execute(
                    "UPDATE message SET status='settled' WHERE settlement_id=? AND kind='settle'",
                    (seen.settlement_id,),
                )
                self._db.execute("COMMIT")
            return True

    def lines(self, date_from: date, date_to: date) -> list[SettlementRecord]:
        """Messages that moved fund money in the (UTC) period, for reconciliation.

        A settlement later cancelled still counts (the cancellation is its own line).
        """
        start = datetime(date_from.year, date_from.month, date_from.day)
        end = datetime(date_to.year, date_to.month, date_to.day) + timedelta(days=1)
        with self._lock:
            ids = self._db.execute(
                "SELECT message_id FROM message WHERE occurred_at>=? AND occurred_at<? AND ("
                "(kind='settle' AND status IN ('settled','cancelled')) OR "
                "(kind='cancel' AND status='cancelled')) ORDER BY occurred_at, message_id",
                (start.isoformat(), end.isoformat()),
            ).fetchall()
            return [self._must(r[0]) for r in ids]

    def records(self) -> list[SettlementRecord]:
        """Every message (for checks against the journal)."""
        with self._lock:
            ids = [r[0] for r in self._db.execute("SELECT message_id FROM message")]
            return [self._must(i) for i in ids]

    def _write(
        self,
        message_id: str,
        kind: str,
        settlement_id: str | None,
        total: Decimal,
        fund: Decimal,
        patient: Decimal,
        status: str,
    ) -> None:
        sql = "INSERT INTO message VALUES (?,?,?,?,?,?,?,?)"
        self._db.execute(
            sql,
            (message_id, kind, settlement_id, str(total), str(fund), str(patient), status,
             _now().isoformat()),
        )  # fmt: skip

    def _must(self, message_id: str) -> SettlementRecord:
        found = self._get(message_id)
        assert found is not None
        return found

    def _get(self, message_id: str) -> SettlementRecord | None:
        row = self._db.execute(
            "SELECT message_id, kind, settlement_id, total, fund_paid, patient_paid, status, "
            "occurred_at FROM message WHERE message_id=?",
            (message_id,),
        ).fetchone()
        if row is None:
            return None
        return SettlementRecord(
            message_id=row[0],
            kind=row[1],
            settlement_id=row[2],
            total=Decimal(row[3]).quantize(CENT),
            fund_paid=Decimal(row[4]).quantize(CENT),
            patient_paid=Decimal(row[5]).quantize(CENT),
            status=row[6],
            occurred_at=datetime.fromisoformat(row[7]),
        )

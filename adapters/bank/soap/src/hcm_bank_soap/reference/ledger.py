"""The reference bank's own ledger: accounts and transactions in a SQLite file.

Idempotent by transaction ID: a movement seen before returns its first answer. A
reversal of an ID never seen records a reversed tombstone, so a late delivery of the
original is refused instead of moving money.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

__all__ = ["BankLedger", "LedgerResult"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS account (
    card_number TEXT PRIMARY KEY,
    bank_card_masked TEXT NOT NULL,
    id_digest TEXT NOT NULL,
    bound INTEGER NOT NULL,
    balance TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS txn (
    transaction_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    card_number TEXT,
    amount TEXT NOT NULL,
    original_transaction_id TEXT,
    status TEXT NOT NULL,
    reference TEXT NOT NULL,
    balance_after TEXT,
    reason TEXT,
    occurred_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS txn_original ON txn(original_transaction_id);
CREATE INDEX IF NOT EXISTS txn_day ON txn(occurred_at);
"""

CENT = Decimal("0.01")


@dataclass(frozen=True)
class LedgerResult:
    """A transaction as the ledger holds it."""

    transaction_id: str
    kind: str
    status: str  # CONFIRMED | FAILED | REVERSED
    amount: Decimal
    reference: str
    balance_after: Decimal | None
    reason: str | None
    occurred_at: datetime
    card_number: str | None = None


def _digest(id_number: str) -> str:
    return hashlib.sha256(id_number.upper().encode()).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


class BankLedger:
    """Accounts keyed by health card number; every operation is one SQLite transaction."""

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

    # -- accounts ---------------------------------------------------------------------

    def bind(self, card: str, bank_card: str, id_number: str) -> tuple[str, datetime]:
        """Bind ``bank_card`` to the card's account (created on first bind)."""
        masked = f"{bank_card[:4]} **** **** {bank_card[-4:]}"
        with self._lock:
            row = self._db.execute(
                "SELECT id_digest FROM account WHERE card_number=?", (card,)
            ).fetchone()
            if row is not None and row[0] != _digest(id_number):
                raise PermissionError("the ID number does not match the account holder")
            if row is None:
                self._db.execute(
                    "INSERT INTO account VALUES (?,?,?,1,'0.00')",
                    (card, masked, _digest(id_number)),
                )
            else:
                self._db.execute(
                    "UPDATE account SET bound=1, bank_card_masked=? WHERE card_number=?",
                    (masked, card),
                )
        return masked, _now()

    def unbind(self, card: str, id_number: str) -> bool:
        """Unbind; the balance stays with the card's account."""
        with self._lock:
            cur = self._db.execute(
                "UPDATE account SET bound=0 WHERE card_number=? AND id_digest=? AND bound=1",
                (card, _digest(id_number)),
            )
            return cur.rowcount == 1

    def balance(self, card: str) -> Decimal | None:
        """The account's balance, or None if the card has no account."""
        with self._lock:
            row = self._db.execute(
                "SELECT balance FROM account WHERE card_number=?", (card,)
            ).fetchone()
        return None if row is None else Decimal(row[0])

    # -- movements --------------------------------------------------------------------

    def move(
        self,
        kind: str,
        transaction_id: str,
        card: str,
        amount: Decimal,
        original: str | None = None,
    ) -> LedgerResult:
        """Apply a top-up, payment or refund once; a repeated ID returns the first answer."""
        with self._lock:
            seen = self._get(transaction_id)
            if seen is not None:
                return seen
            self._db.execute("BEGIN IMMEDIATE")
            try:
                result = self._apply(kind, transaction_id, card, amount, original)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return result

    def _apply(
        self, kind: str, tid: str, card: str, amount: Decimal, original: str | None
    ) -> LedgerResult:
        account = self._db.execute(
            "SELECT balance, bound FROM account WHERE card_number=?", (card,)
        ).fetchone()
        reason: str | None = None
        balance = Decimal(account[0]) if account else None
        if account is None or not account[1]:
            reason = "no bank card is bound to this health card"
        elif kind == "pay" and balance is not None and balance < amount:
            reason = "insufficient balance"
        elif kind == "refund":
            reason = self._refund_refusal(card, amount, original)
        if reason is None and balance is not None:
            balance = balance + amount if kind in ("top_up", "refund") else balance - amount
            self._db.execute(
                "UPDATE account SET balance=? WHERE card_number=?", (str(balance), card)
            )
        status = "FAILED" if reason else "CONFIRMED"
        now = _now()
        self._db.execute(
            "INSERT INTO txn VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                tid,
                kind,
                card,
                str(amount),
                original,
                status,
                "B" + hashlib.sha256(tid.encode()).hexdigest()[:15].upper(),
                str(balance) if balance is not None and not reason else None,
                reason,
                now.isoformat(),
            ),
        )
        found = self._get(tid)
        assert found is not None
        return found

    def _refund_refusal(self, card: str, amount: Decimal, original: str | None) -> str | None:
        if not original:
            return "a refund names the payment it refunds"
        row = self._db.execute(
            "SELECT kind, card_number, amount, status FROM txn WHERE transaction_id=?", (original,)
        ).fetchone()
        if row is None or row[0] != "pay" or row[3] != "CONFIRMED":
            return "the original payment is unknown or not confirmed"
        if row[1] != card:
            return "the original payment was made with another card"
        done = self._db.execute(
            "SELECT amount FROM txn WHERE original_transaction_id=? AND kind='refund' "
            "AND status='CONFIRMED'",
            (original,),
        ).fetchall()
        if sum((Decimal(r[0]) for r in done), Decimal(0)) + amount > Decimal(row[2]):
            return "refund above the amount paid"
        return None

    def query(self, transaction_id: str) -> LedgerResult | None:
        """The transaction, or None if the bank never received it."""
        with self._lock:
            return self._get(transaction_id)

    def reverse(self, transaction_id: str) -> bool:
        """Reverse (冲正) a transaction; an unknown ID becomes a reversed tombstone."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                seen = self._get(transaction_id)
                if seen is None:
                    self._db.execute(
                        "INSERT INTO txn VALUES (?,?,?,?,?,?,?,?,?,?)",
                        (transaction_id, "unknown", None, "0.00", None, "REVERSED", "-", None,
                         "reversed before it arrived", _now().isoformat()),
                    )  # fmt: skip
                elif seen.status == "CONFIRMED":
                    sign = -1 if seen.kind in ("top_up", "refund") else 1
                    self._db.execute(
                        "UPDATE account SET balance=CAST(? AS TEXT) WHERE card_number=?",
                        (
                            str(self._balance(seen.card_number) + sign * seen.amount),
                            seen.card_number,
                        ),
                    )
                    self._db.execute(
                        "UPDATE txn SET status='REVERSED', reason='reversed' "
                        "WHERE transaction_id=?",
                        (transaction_id,),
                    )
                elif seen.status == "FAILED":
                    self._db.execute(
                        "UPDATE txn SET status='REVERSED' WHERE transaction_id=?", (transaction_id,)
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return True

    def _balance(self, card: str | None) -> Decimal:
        row = self._db.execute(
            "SELECT balance FROM account WHERE card_number=?", (card,)
        ).fetchone()
        return Decimal(row[0]) if row else Decimal(0)

    def statement(self, day: date) -> list[LedgerResult]:
        """Confirmed movements of one (UTC) day, in order."""
        start = datetime(day.year, day.month, day.day)
        with self._lock:
            rows = self._db.execute(
                "SELECT transaction_id FROM txn WHERE status='CONFIRMED' AND occurred_at>=? "
                "AND occurred_at<? ORDER BY occurred_at, transaction_id",
                (start.isoformat(), (start + timedelta(days=1)).isoformat()),
            ).fetchall()
            return [r for r in (self._get(t[0]) for t in rows) if r is not None]

    def transactions(self) -> list[LedgerResult]:
        """Every transaction (for checks against the journal)."""
        with self._lock:
            ids = [r[0] for r in self._db.execute("SELECT transaction_id FROM txn")]
            return [r for r in (self._get(t) for t in ids) if r is not None]

    def _get(self, tid: str) -> LedgerResult | None:
        row = self._db.execute(
            "SELECT transaction_id, kind, status, amount, reference, balance_after, reason, "
            "occurred_at, card_number FROM txn WHERE transaction_id=?",
            (tid,),
        ).fetchone()
        if row is None:
            return None
        return LedgerResult(
            transaction_id=row[0],
            kind=row[1],
            status=row[2],
            amount=Decimal(row[3]).quantize(CENT),
            reference=row[4],
            balance_after=None if row[5] is None else Decimal(row[5]),
            reason=row[6],
            occurred_at=datetime.fromisoformat(row[7]),
            card_number=row[8],
        )

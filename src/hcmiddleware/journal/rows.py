"""The journal's rows: inserting an entry, compare-and-set state changes, lookups.

:class:`EntryStore` is the base every part of :class:`~hcmiddleware.journal.Journal`
builds on. :func:`_write` is the write transaction, and :data:`DURABLE_STATES` says
which state changes it forces to disk before anything is sent.

Every state an entry takes is appended to the audit log (``journal.<state>``, the
transaction ID as subject) in the very transaction that writes it: the state change and
its audit entry commit together, or neither does.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from hcmiddleware import storage
from hcmiddleware.errors import (
    IdempotencyConflictError,
    MoneyError,
    RefundRefusedError,
    UnknownTransactionError,
)
from hcmiddleware.journal.records import Movement, mask_card
from hcmiddleware.journal.states import ALLOWED, PaymentStatus
from hcmiddleware.journal.tables import JournalEntry, JournalEvent
from hcmiddleware.models import MoneyKind

#: the audit log's actor for the journal's own state changes
JOURNAL_ACTOR = "journal"
#: a state change to audit once its transaction has committed (another database)
_Later = list[tuple[str, str, str | None, dict[str, str]]]

if TYPE_CHECKING:
    from hcmiddleware.runtime import Middleware

__all__ = ["CANCEL", "DURABLE_STATES", "SETTLE", "CrashPoint", "EntryStore"]

P = PaymentStatus
_ENTRY: sa.Table = JournalEntry.__table__  # type: ignore[assignment]
_EVENT: sa.Table = JournalEvent.__table__  # type: ignore[assignment]

#: Prepared once: building statements per call costs more than running them.
_SET_STATE = (
    _ENTRY.update()
    .where(_ENTRY.c.seq == sa.bindparam("w_seq"), _ENTRY.c.state == sa.bindparam("w_state"))
    .returning(*_ENTRY.c)
)
_ADD_EVENT = _EVENT.insert()
_ADD_ENTRY = _ENTRY.insert()
_SET_ID = _ENTRY.update().where(_ENTRY.c.seq == sa.bindparam("w_seq"))
#: columns an insert may leave out; listed so every insert has the same shape
_OPTIONAL_FIELDS = (
    "card_number",
    "original_transaction_id",
    "terminal_id",
    "settlement_id",
    "fund_paid",
    "patient_paid",
    "payload",
    "remote_reference",
    "reason",
)

#: Called with a point's name between journal writes; tests make it kill the process.
CrashPoint = Callable[[str], None]

#: the insurer channel's entry kinds (the bank's are :class:`MoneyKind` values)
SETTLE = "settle"
CANCEL = "cancel"


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


#: Transitions whose loss in a power cut recovery could not redo: they are forced to
#: disk before anything is sent. Every other write is redone by recovery if lost (a lost
#: ``confirmed`` leaves ``sent``, and the bank is asked again), so it is committed
#: without waiting for the disk — one forced write per movement instead of three.
DURABLE_STATES = frozenset({PaymentStatus.SENT})


def _write(engine: Engine, *, durable: bool) -> AbstractContextManager[Connection]:
    """A write transaction; ``durable=False`` commits without forcing the disk
    (see :func:`hcmiddleware.storage.begin_write`)."""
    return storage.begin_write(engine, durable=durable)


class EntryStore:
    """The journal's database, its message IDs and its rows (see :class:`Journal`)."""

    def __init__(
        self,
        middleware: Middleware,
        *,
        engine: Engine | None = None,
        crash_point: CrashPoint | None = None,
        migrate: bool = True,
    ) -> None:
        self.mw = middleware
        self.engine = engine if engine is not None else middleware.engine
        self.institution_code = middleware.config.middleware.institution_code
        self._crash: CrashPoint = crash_point or (lambda _point: None)
        # Refund ceilings are checked and reserved under this lock (SQLite has no
        # row locks; PostgreSQL also takes FOR UPDATE on the original payment).
        self._refund_lock = threading.Lock()
        self._id_lock = threading.Lock()
        self._last_second = ""
        self._counter = 0
        if migrate:
            storage.upgrade(self.engine)

    # -- identifiers -------------------------------------------------------------------

    def new_message_id(self, seq: int | None = None) -> str:
        """A message ID: institution code (12) + yyyyMMddHHmmss (14) + sequence (4).

        A journal entry's sequence is its row number modulo 8,000, so its ID stays
        unique across restarts and processes sharing the database as long as fewer
        than 8,000 movements start in one second. Without ``seq`` (pre-settlement,
        which moves no money and is not journalled) a per-process counter in
        9000–9999 is used; adapters keep 8000–8999 for their own messages.
        """
        stamp = _now().strftime("%Y%m%d%H%M%S")
        if seq is None:
            with self._id_lock:
                self._counter = self._counter + 1 if stamp == self._last_second else 0
                self._last_second = stamp
                number = 9000 + self._counter % 1000
        else:
            number = seq % 8000
        return f"{self.institution_code}{stamp}{number:04d}"

    # -- rows ---------------------------------------------------------------------------

    def _existing(self, key: str, fields: dict[str, Any]) -> Movement | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(_ENTRY).where(_ENTRY.c.idempotency_key == key)).first()
        if row is None:
            return None
        for name in ("channel", "kind", "card_number", "amount", "original_transaction_id"):
            mine, theirs = fields.get(name), getattr(row, name)
            if isinstance(theirs, Decimal) or isinstance(mine, Decimal):
                same = theirs is not None and mine is not None and Decimal(theirs) == Decimal(mine)
            else:
                same = mine == theirs
            if not same:
                raise IdempotencyConflictError(
                    f"idempotency key already used for another movement ({name} differs)",
                    transaction_id=row.transaction_id,
                )
        return self._movement(row)

    # -- the audit log ------------------------------------------------------------------

    def _audit_in(
        self,
        conn: Connection,
        later: _Later,
        action: str,
        transaction_id: str,
        terminal: str | None,
        **details: str,
    ) -> None:
        """Audit a change in ``conn``'s transaction when the audit log shares the journal's
        database; otherwise keep it for :meth:`_audited`, after the commit."""
        if self.mw.audit.engine is self.engine:
            self.mw.audit.record(
                action,
                actor=JOURNAL_ACTOR,
                subject=transaction_id,
                details=details,
                terminal=terminal,
                connection=conn,
            )
        else:
            later.append((action, transaction_id, terminal, details))

    def _audited(self, later: _Later) -> None:
        """After a commit: announce its audit entries, or write those kept for later."""
        for action, transaction_id, terminal, details in later:
            self.mw.audit.record(
                action,
                actor=JOURNAL_ACTOR,
                subject=transaction_id,
                details=details,
                terminal=terminal,
            )
        self.mw.audit.flush()

    def _insert(
        self,
        key: str,
        fields: dict[str, Any],
        conn: Connection | None = None,
        later: _Later | None = None,
    ) -> int | None:
        if conn is None:
            mine: _Later = []
            try:
                # not durable: if a power cut loses it, nothing had been sent yet
                with _write(self.engine, durable=False) as own:
                    seq = self._insert(key, fields, own, mine)
            except sa.exc.IntegrityError:
                return None
            self._audited(mine)
            return seq
        now = _now()
        params = dict.fromkeys(_OPTIONAL_FIELDS)
        params.update(fields)
        params.update(
            transaction_id=f"tmp-{uuid.uuid4().hex}",  # replaced below, in this transaction
            idempotency_key=key,
            state=P.PENDING.value,
            created_at=now,
            updated_at=now,
            attempts=0,
            currency="CNY",
            reversal_requested=False,
        )
        inserted = conn.execute(_ADD_ENTRY, params).inserted_primary_key
        assert inserted is not None
        seq = int(inserted[0])
        transaction_id = self.new_message_id(seq)
        conn.execute(_SET_ID, {"w_seq": seq, "transaction_id": transaction_id})
        conn.execute(
            _ADD_EVENT, {"entry_seq": seq, "state": P.PENDING.value, "note": None, "at": now}
        )
        self._audit_in(
            conn,
            later if later is not None else [],
            f"journal.{P.PENDING.value}",
            transaction_id,
            params["terminal_id"],
            channel=str(params["channel"]),
            kind=str(params["kind"]),
            amount=str(params["amount"]),
        )
        return seq

    def _payment_for_refund(self, conn: Connection, original_id: str, card: str | None) -> Any:
        query = sa.select(_ENTRY).where(_ENTRY.c.transaction_id == original_id)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        original = conn.execute(query).first()
        if original is None:
            raise UnknownTransactionError(
                f"no payment {original_id!r} in the journal", transaction_id=original_id
            )
        if original.kind != MoneyKind.PAY.value or original.state != P.CONFIRMED.value:
            raise RefundRefusedError(
                f"transaction {original_id!r} is a {original.kind} in state {original.state}; "
                "only a confirmed payment can be refunded",
                transaction_id=original_id,
            )
        if card is not None and original.card_number != card:
            raise RefundRefusedError(
                "the refund's card is not the card that paid", transaction_id=original_id
            )
        return original

    def _refunded(self, conn: Connection, original_id: str) -> Decimal:
        # confirmed refunds and those still in flight both hold part of the ceiling
        total = conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(_ENTRY.c.amount), 0)).where(
                _ENTRY.c.original_transaction_id == original_id,
                _ENTRY.c.kind == MoneyKind.REFUND.value,
                _ENTRY.c.state.in_(
                    [P.CONFIRMED.value, P.PENDING.value, P.SENT.value, P.UNKNOWN.value]
                ),
            )
        ).scalar_one()
        return Decimal(str(total)).quantize(Decimal("0.01"))

    def _transition(
        self, seq: int, expected: PaymentStatus, new: PaymentStatus, **values: Any
    ) -> Any:
        """Compare-and-set the entry's state; the updated row, or None if someone else
        moved it first."""
        if new not in ALLOWED[expected]:
            raise MoneyError(f"journal state {expected.value} cannot become {new.value}")
        now = _now()
        later: _Later = []
        with _write(self.engine, durable=new in DURABLE_STATES) as conn:
            row = conn.execute(
                _SET_STATE,
                {"w_seq": seq, "w_state": expected.value, "state": new.value, "updated_at": now}
                | values,
            ).first()
            if row is None:
                return None
            conn.execute(
                _ADD_EVENT,
                {"entry_seq": seq, "state": new.value, "note": values.get("reason"), "at": now},
            )
            self._audit_in(
                conn,
                later,
                f"journal.{new.value}",
                row.transaction_id,
                row.terminal_id,
                previous=expected.value,
                channel=row.channel,
                kind=row.kind,
                amount=str(row.amount),
            )
        self._audited(later)
        return row

    def _row(self, seq: int) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(_ENTRY).where(_ENTRY.c.seq == seq)).one()

    def _by_tid(self, transaction_id: str) -> Any:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(_ENTRY).where(_ENTRY.c.transaction_id == transaction_id)
            ).first()
        if row is None:
            raise UnknownTransactionError(
                f"no journal entry {transaction_id!r}", transaction_id=transaction_id
            )
        return row

    def _snapshot(self, seq: int) -> Movement:
        return self._movement(self._row(seq))

    @staticmethod
    def _movement(row: Any) -> Movement:
        def money(v: Any) -> Decimal | None:
            return None if v is None else Decimal(v).quantize(Decimal("0.01"))

        return Movement(
            transaction_id=row.transaction_id,
            idempotency_key=row.idempotency_key,
            channel=row.channel,
            kind=row.kind,
            state=P(row.state),
            amount=Decimal(row.amount).quantize(Decimal("0.01")),
            currency=row.currency,
            created_at=row.created_at,
            updated_at=row.updated_at,
            original_transaction_id=row.original_transaction_id,
            remote_reference=row.remote_reference,
            settlement_id=row.settlement_id,
            fund_paid=money(row.fund_paid),
            patient_paid=money(row.patient_paid),
            reason=row.reason,
            attempts=row.attempts,
            terminal_id=row.terminal_id,
            card_masked=mask_card(row.card_number),
        )

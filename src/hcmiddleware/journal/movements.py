"""The journal: every money movement is written before it is sent, and settled after.

The order of writes is the whole design:

1. ``pending`` is committed with the idempotency key before anything else happens;
   a second request with the same key finds it and never moves money again.
2. ``sent`` is committed *before* the bank or insurer is called. So after a crash an
   entry still ``pending`` was certainly never sent (it is marked ``failed``), and an
   entry ``sent`` may have been (its outcome is established by asking).
3. The answer is committed: ``confirmed`` or ``failed``. A timeout, a dropped
   connection, a SOAP fault or a malformed reply is ``unknown``: the outcome is then
   asked for (bank: query) and, when the remote side has no record, reversed (冲正)
   so that a late delivery cannot move money either. Nothing is ever guessed.

:meth:`Journal.recover` runs that same resolution for whatever a crashed process left
in flight. Every state change is a compare-and-set on the row, so two resolvers
cannot both apply a change.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.engine import Connection, Engine

from hcmiddleware import storage
from hcmiddleware.errors import (
    AmountError,
    HcmError,
    IdempotencyConflictError,
    MalformedResponseError,
    MoneyError,
    NoHandlerError,
    OutcomeUnknownError,
    PluginUnavailableError,
    RefundRefusedError,
    RemoteUnavailableError,
    UnknownTransactionError,
)
from hcmiddleware.journal.records import Movement, RecoveryReport
from hcmiddleware.journal.records import mask_card as mask_card
from hcmiddleware.journal.states import ALLOWED, IN_FLIGHT, PaymentStatus
from hcmiddleware.journal.tables import JournalEntry, JournalEvent
from hcmiddleware.models import (
    Charge,
    MoneyKind,
    PaymentRequest,
    PaymentResult,
    Settlement,
    SettlementRequest,
    parse_amount,
)

if TYPE_CHECKING:
    from hcmiddleware.runtime import Middleware

__all__ = ["CrashPoint", "Journal", "Movement", "RecoveryReport"]

log = logging.getLogger("hcmiddleware.journal")

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

_BANK_HOOKS = {
    MoneyKind.TOP_UP: "hcm_bank_top_up",
    MoneyKind.PAY: "hcm_bank_pay",
    MoneyKind.REFUND: "hcm_bank_refund",
}
SETTLE = "settle"
CANCEL = "cancel"


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


#: Transitions whose loss in a power cut recovery could not redo: they are forced to
#: disk before anything is sent. Every other write is redone by recovery if lost (a lost
#: ``confirmed`` leaves ``sent``, and the bank is asked again), so it is committed
#: without waiting for the disk — one forced write per movement instead of three.
DURABLE_STATES = frozenset({PaymentStatus.SENT})


@contextmanager
def _write(engine: Engine, *, durable: bool) -> Iterator[Connection]:
    """A write transaction; ``durable=False`` commits without forcing the disk.

    SQLite (WAL): ``synchronous=NORMAL`` for this commit — safe against a process
    crash, and the next forced commit carries it to disk. PostgreSQL:
    ``synchronous_commit=off`` for this transaction, with the same meaning.
    """
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        # on the driver's connection: through SQLAlchemy the PRAGMA would open a
        # transaction, and the level cannot change inside one
        raw: Any = conn.connection.driver_connection
        if sqlite and not durable:
            raw.execute("PRAGMA synchronous=NORMAL")
        try:
            write = conn.execution_options(hcm_write=True)
            with write.begin():
                if not durable and conn.dialect.name == "postgresql":
                    write.exec_driver_sql("SET LOCAL synchronous_commit = off")
                yield write
        finally:
            if sqlite and not durable:
                raw.execute("PRAGMA synchronous=FULL")


def _outcome_unknown(exc: BaseException) -> bool:
    """Whether an error raised by a money hook leaves the outcome open.

    Only refusals that certainly happened before anything was sent close it: no plugin
    answers the hook, the plugin was refused at once for hung calls, the adapter
    refused the amount, the remote side could not be reached at all. Anything else —
    timeouts, faults, malformed answers, an adapter that crashed — may have happened
    after the request left, so the bank is asked.
    """
    return not isinstance(
        exc, NoHandlerError | PluginUnavailableError | AmountError | RemoteUnavailableError
    )


class Journal:
    """Journalled money movements through the bank and insurance hooks.

    :param middleware: the started Middleware whose hooks reach the adapters.
    :param engine: the database; default the Middleware's.
    :param crash_point: called between writes with the point's name (fault injection).
    :param migrate: bring the database up to the newest migration first (safe at every
        start; pass ``False`` when the caller has already done so).
    """

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

    # -- bank movements --------------------------------------------------------------

    def top_up(
        self, *, key: str, card_number: str, amount: Any, terminal_id: str | None = None
    ) -> Movement:
        """Top up the card's account; see :meth:`bank_movement`."""
        return self.bank_movement(
            MoneyKind.TOP_UP, key=key, card_number=card_number, amount=amount,
            terminal_id=terminal_id,
        )  # fmt: skip

    def pay(
        self, *, key: str, card_number: str, amount: Any, terminal_id: str | None = None
    ) -> Movement:
        """Pay from the card's account; see :meth:`bank_movement`."""
        return self.bank_movement(
            MoneyKind.PAY, key=key, card_number=card_number, amount=amount,
            terminal_id=terminal_id,
        )  # fmt: skip

    def refund(
        self,
        *,
        key: str,
        card_number: str,
        amount: Any,
        original_transaction_id: str,
        terminal_id: str | None = None,
    ) -> Movement:
        """Refund part or all of a confirmed payment; never more than is left of it."""
        return self.bank_movement(
            MoneyKind.REFUND,
            key=key,
            card_number=card_number,
            amount=amount,
            original_transaction_id=original_transaction_id,
            terminal_id=terminal_id,
        )

    def bank_movement(
        self,
        kind: MoneyKind,
        *,
        key: str,
        card_number: str,
        amount: Any,
        currency: str = "CNY",
        original_transaction_id: str | None = None,
        terminal_id: str | None = None,
    ) -> Movement:
        """Journal and send one bank movement; return the entry as it ended.

        Bad input (amount, currency, refund ceiling, key reused for something else)
        raises before anything is written or sent. A repeated key returns the first
        movement's entry and sends nothing. The returned state is ``confirmed``,
        ``failed``, ``reversed`` or — when the bank cannot be reached to settle it —
        ``unknown`` (recovery settles it later).
        """
        value = parse_amount(amount)
        if currency != "CNY":
            raise AmountError(
                f"currency {currency!r} is not accepted",
                hint="the card's account is in yuan: give the amount in CNY",
            )
        if not key or len(key) > 128:
            raise IdempotencyConflictError(
                "an idempotency key of 1 to 128 characters is required",
                hint="use the order or receipt number the movement belongs to",
            )
        fields = {
            "channel": "bank",
            "kind": kind.value,
            "card_number": card_number,
            "amount": value,
            "original_transaction_id": original_transaction_id,
            "terminal_id": terminal_id,
        }
        if kind is MoneyKind.REFUND:
            # a repeated refund must be found before its ceiling is checked again
            existing = self._existing(key, fields)
            if existing is not None:
                return existing
            with self._refund_lock:
                seq = self._insert_refund(key, fields)
        else:
            # the unique key finds a repeated request: no read before the write
            seq = self._insert(key, fields)
        if seq is None:  # lost a race with the same key
            found = self._existing(key, fields)
            assert found is not None
            return found
        self._crash("after_pending")
        return self._send_bank(seq)

    def _send_bank(self, seq: int) -> Movement:
        row = self._transition(seq, P.PENDING, P.SENT, attempts=1)
        if row is None:
            return self._snapshot(seq)
        request = PaymentRequest(
            transaction_id=row.transaction_id,
            kind=MoneyKind(row.kind),
            card_number=row.card_number,
            amount=row.amount,
            original_transaction_id=row.original_transaction_id,
            terminal_id=row.terminal_id,
        )
        self._crash("after_sent")
        try:
            result = getattr(self.mw.hooks, _BANK_HOOKS[MoneyKind(row.kind)])(request=request)
        except HcmError as exc:
            return self._after_error(seq, exc)
        self._crash("after_answer")
        if result is None:
            done = self._transition(seq, P.SENT, P.FAILED, reason="no bank adapter is enabled")
        elif not isinstance(result, PaymentResult) or result.transaction_id != row.transaction_id:
            return self._after_error(
                seq,
                MalformedResponseError(
                    "the bank answered for another transaction", transaction_id=row.transaction_id
                ),
            )
        else:
            done = self._record_result(seq, P.SENT, result)
        return self._snapshot(seq) if done is None else self._movement(done)

    def _record_result(self, seq: int, expected: PaymentStatus, result: PaymentResult) -> Any:
        state = P.CONFIRMED if result.status == P.CONFIRMED else P.FAILED
        return self._transition(
            seq, expected, state, remote_reference=result.bank_reference, reason=result.reason
        )

    def _after_error(self, seq: int, exc: HcmError) -> Movement:
        note = f"{type(exc).__name__}: {exc.message}"[:200]
        if not _outcome_unknown(exc):
            self._transition(seq, P.SENT, P.FAILED, reason=note)
            return self._snapshot(seq)
        self._transition(seq, P.SENT, P.UNKNOWN, reason=note)
        self._crash("after_unknown")
        return self.resolve(self._row(seq).transaction_id)

    # -- insurer movements ----------------------------------------------------------

    def settle(
        self,
        *,
        key: str,
        scheme: str,
        insured_id: str,
        patient_id: str,
        visit_id: str,
        charges: Sequence[Charge],
        total: Any,
    ) -> Movement:
        """Journal and send an insurance settlement (the message ID is the journal's).

        An unknown outcome is reversed by the original message ID — the national
        platform's rule — and the entry ends ``reversed``; settle again with a new key.
        """
        value = parse_amount(total)
        try:
            draft = SettlementRequest(
                message_id=self.new_message_id(),
                scheme=scheme,
                insured_id=insured_id,
                patient_id=patient_id,
                visit_id=visit_id,
                charges=tuple(charges),
                total=value,
            )
        except ValidationError as exc:
            raise MoneyError(
                f"the settlement request is not valid: {exc.errors()[0]['msg']}",
                hint="check the scheme (basic or rural), the charges and the total",
            ) from None
        if sum((c.amount for c in charges), Decimal(0)) != value:
            raise AmountError(
                f"the charges add up to {sum((c.amount for c in charges), Decimal(0))}, "
                f"not to the total {value}",
                hint="settle exactly the bill's charges",
            )
        fields = {
            "channel": "insurer",
            "kind": SETTLE,
            "card_number": None,
            "amount": value,
            "original_transaction_id": None,
            "terminal_id": None,
            "payload": json.dumps(
                {"scheme": scheme, "patient_id": patient_id, "visit_id": visit_id},
                sort_keys=True,
            ),
        }
        existing = self._existing(key, fields)
        if existing is not None:
            return existing
        seq = self._insert(key, fields)
        if seq is None:
            found = self._existing(key, fields)
            assert found is not None
            return found
        self._crash("after_pending")
        request = draft.model_copy(update={"message_id": self._row(seq).transaction_id})
        return self._send_insurer(seq, lambda: self.mw.hooks.hcm_insurance_settle(request=request))

    def cancel_settlement(self, *, key: str, settlement_id: str) -> Movement:
        """Journal and send the cancellation of a confirmed settlement.

        A cancellation whose outcome is unknown is sent again (the insurer cancels a
        settlement once, however often asked) until its answer is known.
        """
        original = self._find_settlement(settlement_id)
        fields = {
            "channel": "insurer",
            "kind": CANCEL,
            "card_number": None,
            "amount": original.amount,
            "original_transaction_id": original.transaction_id,
            "terminal_id": None,
            "settlement_id": settlement_id,
            "fund_paid": original.fund_paid,
            "patient_paid": original.patient_paid,
        }
        existing = self._existing(key, fields)
        if existing is not None:
            return existing
        with self.engine.connect() as conn:
            other = conn.execute(
                sa.select(_ENTRY.c.transaction_id).where(
                    _ENTRY.c.settlement_id == settlement_id,
                    _ENTRY.c.kind == CANCEL,
                    _ENTRY.c.state.notin_([P.FAILED.value, P.REVERSED.value]),
                )
            ).first()
        if other is not None:
            raise IdempotencyConflictError(
                f"settlement {settlement_id!r} is already being cancelled",
                transaction_id=other[0],
                hint="look at that cancellation with `hcm journal show`",
            )
        seq = self._insert(key, fields)
        if seq is None:
            found = self._existing(key, fields)
            assert found is not None
            return found
        self._crash("after_pending")
        message_id = self._row(seq).transaction_id
        return self._send_insurer(
            seq,
            lambda: self.mw.hooks.hcm_insurance_cancel(
                settlement_id=settlement_id, message_id=message_id
            ),
        )

    def _find_settlement(self, settlement_id: str) -> Any:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(_ENTRY).where(
                    _ENTRY.c.settlement_id == settlement_id,
                    _ENTRY.c.kind == SETTLE,
                    _ENTRY.c.state == P.CONFIRMED.value,
                )
            ).first()
        if row is None:
            raise UnknownTransactionError(
                f"no confirmed settlement {settlement_id!r} in the journal",
                hint="cancel only a settlement this site settled; check `hcm journal list`",
            )
        return row

    def _send_insurer(self, seq: int, call: Callable[[], Settlement | None]) -> Movement:
        row = self._transition(seq, P.PENDING, P.SENT, attempts=1)
        if row is None:
            return self._snapshot(seq)
        self._crash("after_sent")
        try:
            result = call()
        except HcmError as exc:
            return self._after_error(seq, exc)
        self._crash("after_answer")
        if result is None:
            self._transition(seq, P.SENT, P.FAILED, reason="no insurance adapter is enabled")
            return self._snapshot(seq)
        if result.message_id != row.transaction_id:
            return self._after_error(
                seq,
                MalformedResponseError(
                    "the insurer answered for another message", transaction_id=row.transaction_id
                ),
            )
        self._record_settlement(seq, P.SENT, result)
        return self._snapshot(seq)

    def _record_settlement(self, seq: int, expected: PaymentStatus, result: Settlement) -> None:
        wanted = "settled" if self._row(seq).kind == SETTLE else "cancelled"
        if result.status == wanted:
            self._transition(
                seq,
                expected,
                P.CONFIRMED,
                settlement_id=result.settlement_id,
                fund_paid=result.fund_paid,
                patient_paid=result.patient_paid,
                remote_reference=result.settlement_id,
            )
        else:
            self._transition(seq, expected, P.FAILED, reason=f"insurer answered {result.status}")

    # -- resolution and recovery ------------------------------------------------------

    def resolve(self, transaction_id: str) -> Movement:
        """Establish the outcome of an entry in flight; never guess, never resend money.

        ``pending`` was never sent: ``failed``. Bank ``sent``/``unknown``: the bank is
        asked; if it has the transaction its answer is taken, if not it is reversed.
        Insurer settlement: reversed by its original message ID. Insurer cancellation:
        asked again (idempotent). If the remote side cannot be reached, the entry stays
        ``unknown`` and a later :meth:`recover` tries again.
        """
        row = self._by_tid(transaction_id)
        seq, state = row.seq, P(row.state)
        if state is P.PENDING:
            self._transition(
                seq, P.PENDING, P.FAILED, reason="not sent: interrupted before sending"
            )
            return self._snapshot(seq)
        if state not in IN_FLIGHT:
            return self._snapshot(seq)
        try:
            if row.channel == "bank":
                self._resolve_bank(row)
            elif row.kind == SETTLE:
                self._resolve_settlement(row)
            else:
                self._resolve_cancel(row)
        except HcmError as exc:
            log.warning("transaction %s still unknown: %s", transaction_id, exc.message)
            if P(self._row(seq).state) is P.SENT:
                self._transition(seq, P.SENT, P.UNKNOWN, reason=exc.message[:200])
        return self._snapshot(seq)

    def _resolve_bank(self, row: Any) -> None:
        state = P(row.state)
        if not row.reversal_requested:
            result = self.mw.hooks.hcm_bank_query(transaction_id=row.transaction_id)
            self._crash("after_query")
            if isinstance(result, PaymentResult):
                if result.transaction_id != row.transaction_id:
                    raise MalformedResponseError(
                        "the bank's query answered for another transaction",
                        transaction_id=row.transaction_id,
                    )
                self._record_result(row.seq, state, result)
                return
            self._request_reversal(row.seq)
            self._crash("after_reversal_requested")
        if not self.mw.hooks.hcm_bank_reverse(transaction_id=row.transaction_id):
            raise OutcomeUnknownError(
                "the bank did not confirm the reversal", transaction_id=row.transaction_id
            )
        self._crash("after_reverse")
        self._transition(row.seq, state, P.REVERSED, reason="reversed: outcome was unknown")

    def _request_reversal(self, seq: int) -> None:
        # durable: once a reversal may be on its way, no later query may confirm
        with _write(self.engine, durable=True) as conn:
            conn.execute(
                _ENTRY.update()
                .where(_ENTRY.c.seq == seq)
                .values(reversal_requested=True, updated_at=_now())
            )

    def _resolve_settlement(self, row: Any) -> None:
        state = P(row.state)
        if not row.reversal_requested:
            self._request_reversal(row.seq)
            self._crash("after_reversal_requested")
        confirmed = self.mw.hooks.hcm_insurance_reverse(
            original_message_id=row.transaction_id, message_id=self.new_message_id()
        )
        if not confirmed:
            raise OutcomeUnknownError(
                "the insurer did not confirm the reversal", transaction_id=row.transaction_id
            )
        self._crash("after_reverse")
        self._transition(row.seq, state, P.REVERSED, reason="reversed: outcome was unknown")

    def _resolve_cancel(self, row: Any) -> None:
        result = self.mw.hooks.hcm_insurance_cancel(
            settlement_id=row.settlement_id, message_id=row.transaction_id
        )
        self._crash("after_answer")
        if result is None:
            raise OutcomeUnknownError(
                "no insurance adapter answered", transaction_id=row.transaction_id
            )
        self._record_settlement(row.seq, P(row.state), result)

    def recover(self, *, min_age: timedelta = timedelta(0)) -> RecoveryReport:
        """Settle every entry left in flight.

        At start, with nothing running, everything in flight is settled. While other
        terminals are paying, pass ``min_age`` (e.g. two minutes): an entry changed
        more recently may still be in a live call, and recovering it would reverse a
        payment its terminal is about to see confirmed (safely — the compare-and-set
        keeps one outcome — but needlessly).
        """
        report = RecoveryReport()
        cutoff = _now() - min_age
        with self.engine.connect() as conn:
            ids = (
                conn.execute(
                    sa.select(_ENTRY.c.transaction_id)
                    .where(
                        _ENTRY.c.state.in_([s.value for s in IN_FLIGHT]),
                        _ENTRY.c.updated_at <= cutoff,
                    )
                    .order_by(_ENTRY.c.seq)
                )
                .scalars()
                .all()
            )
        for tid in ids:
            report.examined += 1
            moved = self.resolve(tid)
            report.count(moved.state)
            if moved.state in IN_FLIGHT:
                report.still_unknown.append(tid)
        if report.examined:
            log.info("journal recovery: %s", report.outcomes)
        return report

    # -- reading ----------------------------------------------------------------------

    def get(self, transaction_id: str) -> Movement:
        """The entry with ``transaction_id``; UnknownTransactionError if none."""
        return self._movement(self._by_tid(transaction_id))

    def by_key(self, key: str) -> Movement | None:
        """The entry made for idempotency key ``key``, if any."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(_ENTRY).where(_ENTRY.c.idempotency_key == key)).first()
        return None if row is None else self._movement(row)

    def entries(
        self,
        *,
        state: PaymentStatus | str | None = None,
        day: date | None = None,
        channel: str | None = None,
        limit: int | None = None,
    ) -> list[Movement]:
        """Entries, oldest first, filtered by state, UTC day of creation and channel."""
        query = sa.select(_ENTRY).order_by(_ENTRY.c.seq)
        if state is not None:
            query = query.where(_ENTRY.c.state == P(state).value)
        if channel is not None:
            query = query.where(_ENTRY.c.channel == channel)
        if day is not None:
            start = datetime(day.year, day.month, day.day)
            query = query.where(
                _ENTRY.c.created_at >= start, _ENTRY.c.created_at < start + timedelta(days=1)
            )
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [self._movement(r) for r in conn.execute(query)]

    def history(self, transaction_id: str) -> list[tuple[datetime, str, str | None]]:
        """Every state the entry went through: ``(at, state, note)``."""
        row = self._by_tid(transaction_id)
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(_EVENT.c.at, _EVENT.c.state, _EVENT.c.note)
                .where(_EVENT.c.entry_seq == row.seq)
                .order_by(_EVENT.c.id)
            ).all()
        return [(r.at, r.state, r.note) for r in rows]

    def refundable(self, transaction_id: str) -> Decimal:
        """What is left to refund of a confirmed payment (in-flight refunds count)."""
        with self.engine.connect() as conn:
            original = self._payment_for_refund(conn, transaction_id, None)
            return Decimal(original.amount) - self._refunded(conn, transaction_id)

    # -- writing ----------------------------------------------------------------------

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

    def _insert(
        self, key: str, fields: dict[str, Any], conn: Connection | None = None
    ) -> int | None:
        if conn is None:
            try:
                # not durable: if a power cut loses it, nothing had been sent yet
                with _write(self.engine, durable=False) as own:
                    return self._insert(key, fields, own)
            except sa.exc.IntegrityError:
                return None
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
        conn.execute(_SET_ID, {"w_seq": seq, "transaction_id": self.new_message_id(seq)})
        conn.execute(
            _ADD_EVENT, {"entry_seq": seq, "state": P.PENDING.value, "note": None, "at": now}
        )
        return seq

    def _insert_refund(self, key: str, fields: dict[str, Any]) -> int | None:
        original_id = fields["original_transaction_id"]
        try:
            with _write(self.engine, durable=False) as conn:
                original = self._payment_for_refund(conn, original_id, fields["card_number"])
                left = Decimal(original.amount) - self._refunded(conn, original_id)
                if fields["amount"] > left:
                    raise RefundRefusedError(
                        f"refund of {fields['amount']} is above what is left of the payment "
                        f"({left})",
                        transaction_id=original_id,
                    )
                return self._insert(key, fields, conn)
        except sa.exc.IntegrityError:
            return None

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

    def iter_in_flight(self) -> Iterator[Movement]:
        """Entries not yet settled (pending, sent, unknown), oldest first."""
        for state in (P.PENDING, P.SENT, P.UNKNOWN):
            yield from self.entries(state=state)

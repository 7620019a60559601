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
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError

from hcmiddleware.errors import (
    AmountError,
    HcmError,
    IdempotencyConflictError,
    MalformedResponseError,
    MoneyError,
    RefundRefusedError,
    UnknownTransactionError,
)
from hcmiddleware.journal.queries import Queries
from hcmiddleware.journal.records import Movement, RecoveryReport
from hcmiddleware.journal.records import mask_card as mask_card
from hcmiddleware.journal.resolution import Resolution
from hcmiddleware.journal.rows import _ENTRY, CrashPoint, _write
from hcmiddleware.journal.rows import CANCEL as CANCEL
from hcmiddleware.journal.rows import DURABLE_STATES as DURABLE_STATES
from hcmiddleware.journal.rows import SETTLE as SETTLE
from hcmiddleware.journal.states import PaymentStatus
from hcmiddleware.models import (
    Charge,
    MoneyKind,
    PaymentRequest,
    PaymentResult,
    Settlement,
    SettlementRequest,
    parse_amount,
)

__all__ = ["CrashPoint", "Journal", "Movement", "RecoveryReport"]

P = PaymentStatus

_BANK_HOOKS = {
    MoneyKind.TOP_UP: "hcm_bank_top_up",
    MoneyKind.PAY: "hcm_bank_pay",
    MoneyKind.REFUND: "hcm_bank_refund",
}


class Journal(Resolution, Queries):
    """Journalled money movements through the bank and insurance hooks.

    :param middleware: the started Middleware whose hooks reach the adapters.
    :param engine: the database; default the Middleware's.
    :param crash_point: called between writes with the point's name (fault injection).
    :param migrate: bring the database up to the newest migration first (safe at every
        start; pass ``False`` when the caller has already done so).
    """

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

"""Bank movements: top-up, payment and refund through the ``hcm_bank_*`` hooks."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from hcmiddleware.errors import (
    AmountError,
    CardRefusedError,
    HcmError,
    IdempotencyConflictError,
    MalformedResponseError,
    RefundRefusedError,
)
from hcmiddleware.journal.records import Movement
from hcmiddleware.journal.resolution import Resolution
from hcmiddleware.journal.rows import _Later, _write
from hcmiddleware.journal.states import PaymentStatus
from hcmiddleware.models import MoneyKind, PaymentRequest, PaymentResult, parse_amount

__all__ = ["BankMovements"]

P = PaymentStatus

_BANK_HOOKS = {
    MoneyKind.TOP_UP: "hcm_bank_top_up",
    MoneyKind.PAY: "hcm_bank_pay",
    MoneyKind.REFUND: "hcm_bank_refund",
}


class BankMovements(Resolution):
    """Journalled bank movements; a refund never exceeds what is left of its payment."""

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
        try:
            # offline, before anything is written or sent: a listed or frozen card
            # moves no money
            self.mw.cards.check(card_number, for_payment=True, actor=terminal_id or "journal")
        except CardRefusedError:
            # a retry of what moved before the card was listed answers what happened
            existing = self._existing(key, fields)
            if existing is not None:
                return existing
            raise
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
        later: _Later = []
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
                seq = self._insert(key, fields, conn, later)
        except sa.exc.IntegrityError:
            return None
        self._audited(later)
        return seq

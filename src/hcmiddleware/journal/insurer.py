"""Insurer settlements: settle and cancel through the ``hcm_insurance_*`` hooks."""

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
    UnknownTransactionError,
)
from hcmiddleware.journal.records import Movement
from hcmiddleware.journal.resolution import Resolution
from hcmiddleware.journal.rows import _ENTRY, CANCEL, SETTLE
from hcmiddleware.journal.states import PaymentStatus
from hcmiddleware.models import Charge, Settlement, SettlementRequest, parse_amount

__all__ = ["InsurerSettlements"]

P = PaymentStatus


class InsurerSettlements(Resolution):
    """Journalled insurance settlements and their cancellations."""

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
        if not isinstance(result, Settlement):  # an adapter breaking the hook's contract
            return self._after_error(
                seq,
                MalformedResponseError(
                    f"the insurance adapter answered a {type(result).__name__}, not a Settlement",
                    transaction_id=row.transaction_id,
                ),
            )
        if result.message_id != row.transaction_id:
            return self._after_error(
                seq,
                MalformedResponseError(
                    "the insurer answered for another message", transaction_id=row.transaction_id
                ),
            )
        self._record_settlement(seq, P.SENT, result)
        return self._snapshot(seq)

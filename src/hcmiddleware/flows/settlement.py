"""Insurance real-time settlement with the bank-advanced part returned (R-PAY-2).

The hospital's flow: the patient pays each department from the card's bank account
(the bank advances the whole bill); at the cashier the bill is pre-settled, then
settled with the insurer; the part the fund pays is then refunded to the card's
account against the advance payments. Every step is journalled and idempotent by the
caller's key, so running the flow again after a crash finishes it without paying or
returning anything twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from hcmiddleware.errors import (
    MoneyError,
    NoHandlerError,
    RefundRefusedError,
)
from hcmiddleware.flows.payment import finish
from hcmiddleware.journal import Journal, Movement
from hcmiddleware.models import (
    Charge,
    PaymentStatus,
    Settlement,
    SettlementRequest,
    parse_amount,
)

__all__ = ["SettlementOutcome", "pre_settle", "settle_visit"]


@dataclass(frozen=True)
class SettlementOutcome:
    """What the cashier gets back: the split, the settlement and the money returned."""

    pre_settlement: Settlement
    settlement: Movement
    returned: tuple[Movement, ...]

    @property
    def returned_total(self) -> Decimal:
        """The sum refunded to the card's account."""
        return sum((m.amount for m in self.returned), Decimal("0.00"))


def pre_settle(
    journal: Journal,
    *,
    scheme: str,
    insured_id: str,
    patient_id: str,
    visit_id: str,
    charges: Sequence[Charge],
) -> Settlement:
    """Ask the insurer how the bill would be split; nothing is paid or journalled."""
    total = sum((c.amount for c in charges), Decimal("0.00"))
    request = SettlementRequest(
        message_id=journal.new_message_id(),
        scheme=scheme,
        insured_id=insured_id,
        patient_id=patient_id,
        visit_id=visit_id,
        charges=tuple(charges),
        total=parse_amount(total),
    )
    split = journal.mw.hooks.hcm_insurance_pre_settle(request=request)
    if split is None:
        raise NoHandlerError(
            "hcm_insurance_pre_settle", hint="enable an insurance adapter in [plugins] enabled"
        )
    if split.total != request.total:
        raise MoneyError(
            f"the insurer pre-settled {split.total}, not the bill's {request.total}",
            hint="check the bill's charges with the insurer before settling",
        )
    return split  # type: ignore[no-any-return]


def settle_visit(
    journal: Journal,
    *,
    key: str,
    scheme: str,
    insured_id: str,
    patient_id: str,
    visit_id: str,
    charges: Sequence[Charge],
    card_number: str,
    advance_transaction_ids: Sequence[str],
) -> SettlementOutcome:
    """Settle a visit and return the fund's part to the card's account.

    Refused before anything is sent when the advance payments cannot cover the
    fund's part. A settlement whose outcome is lost is reversed by the journal and
    this raises :class:`~hcmiddleware.errors.PaymentDeclinedError`: settle again with
    a new key. (A caller's settlement: ``session.flows.settle_visit(…)``.)
    """
    return _settle_visit(
        journal, journal, "cashier", key=key, scheme=scheme, insured_id=insured_id,
        patient_id=patient_id, visit_id=visit_id, charges=charges, card_number=card_number,
        advance_transaction_ids=advance_transaction_ids,
    )  # fmt: skip


def _settle_visit(
    movements: Journal,
    journal: Journal,
    actor: str,
    *,
    key: str,
    scheme: str,
    insured_id: str,
    patient_id: str,
    visit_id: str,
    charges: Sequence[Charge],
    card_number: str,
    advance_transaction_ids: Sequence[str],
) -> SettlementOutcome:
    """:func:`settle_visit`, moving the money through ``movements`` (the journal, or a
    session's view of it) and finishing through ``journal``."""
    split = pre_settle(
        journal,
        scheme=scheme,
        insured_id=insured_id,
        patient_id=patient_id,
        visit_id=visit_id,
        charges=charges,
    )
    plan = _return_plan(movements, key, advance_transaction_ids, split.fund_paid)
    settled = movements.settle(
        key=f"{key}:settle",
        scheme=scheme,
        insured_id=insured_id,
        patient_id=patient_id,
        visit_id=visit_id,
        charges=charges,
        total=split.total,
    )
    finish(journal, settled, "settle", actor, patient_id=patient_id)
    fund = settled.fund_paid or Decimal("0.00")
    if fund != split.fund_paid:
        # the insurer settled a different split than it pre-settled: return what it paid
        plan = _return_plan(movements, key, advance_transaction_ids, fund)
    returned = []
    for refund_key, original, amount in plan:
        moved = movements.refund(
            key=refund_key,
            card_number=card_number,
            amount=amount,
            original_transaction_id=original,
        )
        returned.append(finish(journal, moved, "refund", actor))
    return SettlementOutcome(split, settled, tuple(returned))


def _return_plan(
    journal: Journal,
    key: str,
    advances: Sequence[str],
    fund_paid: Decimal,
) -> list[tuple[str, str, Any]]:
    """Which advance payment gives back how much: ``(key, original, amount)``.

    The journal checks each refund's card against its advance payment.
    """
    plan: list[tuple[str, str, Any]] = []
    remaining = fund_paid
    for original in advances:
        if remaining <= 0:
            break
        # A refund already journalled under its key (a re-run) keeps its amount; one
        # that failed or was reversed moved nothing, so the next attempt gets a new key.
        attempt = 0
        while True:
            refund_key = f"{key}:return:{original}:{attempt}"
            done = journal.by_key(refund_key)
            if done is None or done.state not in (PaymentStatus.FAILED, PaymentStatus.REVERSED):
                break
            attempt += 1
        part = done.amount if done is not None else min(journal.refundable(original), remaining)
        if part > 0:
            plan.append((refund_key, original, part))
            remaining -= part
    if remaining > 0:
        raise RefundRefusedError(
            f"the advance payments cannot cover the fund's part ({fund_paid}); "
            f"{remaining} would be left",
            hint="name every advance payment of the visit, or settle at the counter",
        )
    return plan

"""Insurance settlement through the journal, with the fund's part returned to the card."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hcm_bank_soap.reference import SoapServer
from money_peers import CARD, ID_NUMBER, charges, insurer_plan

from hcmiddleware.errors import (
    AmountError,
    IdempotencyConflictError,
    MoneyError,
    PaymentDeclinedError,
    RefundRefusedError,
    UnknownTransactionError,
)
from hcmiddleware.flows import payment, settlement
from hcmiddleware.journal import Journal
from hcmiddleware.models import PaymentStatus as P


def _advance(journal: Journal, *amounts: str) -> list[str]:
    payment.top_up(journal, key="topup", card_number=CARD, amount="1000.00")
    return [
        payment.pay(journal, key=f"adv-{i}", card_number=CARD, amount=a).transaction_id
        for i, a in enumerate(amounts)
    ]


def _settle(journal: Journal, advances: list[str], key: str = "visit-1", *amounts: str):  # type: ignore[no-untyped-def]
    return settlement.settle_visit(
        journal,
        key=key,
        scheme="basic",
        insured_id=ID_NUMBER,
        patient_id="P1",
        visit_id="V1",
        charges=charges(*(amounts or ("60.00", "40.00"))),
        card_number=CARD,
        advance_transaction_ids=advances,
    )


def test_fund_part_is_settled_and_returned(
    journal: Journal, bank: SoapServer, insurer: SoapServer
) -> None:
    advances = _advance(journal, "60.00", "40.00")
    outcome = _settle(journal, advances)
    assert outcome.settlement.state is P.CONFIRMED
    assert outcome.settlement.fund_paid == Decimal("70.00")
    assert outcome.returned_total == Decimal("70.00")
    assert [m.amount for m in outcome.returned] == [Decimal("60.00"), Decimal("10.00")]
    # 1000 - 100 advanced + 70 returned by the fund
    assert bank.service.ledger.balance(CARD) == Decimal("970.00")  # type: ignore[attr-defined]


def test_running_the_flow_again_settles_and_returns_once(
    journal: Journal, bank: SoapServer, insurer: SoapServer
) -> None:
    advances = _advance(journal, "100.00")
    first = _settle(journal, advances)
    again = _settle(journal, advances)
    assert again.settlement.transaction_id == first.settlement.transaction_id
    assert [m.transaction_id for m in again.returned] == [m.transaction_id for m in first.returned]
    assert insurer.requests["Settle"] == 1
    assert bank.service.ledger.balance(CARD) == Decimal("970.00")  # type: ignore[attr-defined]


def test_lost_settlement_answer_is_reversed_and_nothing_returned(
    journal: Journal, bank: SoapServer, insurer: SoapServer
) -> None:
    advances = _advance(journal, "100.00")
    insurer.set_faults(insurer_plan(drop=1.0, operations=frozenset({"Settle"})))
    with pytest.raises(PaymentDeclinedError) as caught:
        _settle(journal, advances)
    assert caught.value.state == "reversed"
    records = insurer.service.ledger.records()  # type: ignore[attr-defined]
    assert [r.status for r in records] == ["reversed"]
    assert bank.service.ledger.balance(CARD) == Decimal("900.00")  # type: ignore[attr-defined]


def test_advances_too_small_refused_before_settling(
    journal: Journal, bank: SoapServer, insurer: SoapServer
) -> None:
    advances = _advance(journal, "50.00")
    with pytest.raises(RefundRefusedError):
        _settle(journal, advances)
    assert insurer.requests["Settle"] == 0


def test_cancel_once(journal: Journal, insurer: SoapServer) -> None:
    settled = journal.settle(
        key="s", scheme="rural", insured_id=ID_NUMBER, patient_id="P1", visit_id="V1",
        charges=charges("10.00"), total="10.00",
    )  # fmt: skip
    assert settled.fund_paid == Decimal("6.00")
    assert settled.settlement_id is not None
    cancelled = journal.cancel_settlement(key="c", settlement_id=settled.settlement_id)
    assert cancelled.state is P.CONFIRMED
    with pytest.raises(IdempotencyConflictError):
        journal.cancel_settlement(key="c2", settlement_id=settled.settlement_id)
    with pytest.raises(UnknownTransactionError):
        journal.cancel_settlement(key="c3", settlement_id="JS-no-such")


def test_lost_cancel_answer_is_asked_again(journal: Journal, insurer: SoapServer) -> None:
    settled = journal.settle(
        key="s", scheme="basic", insured_id=ID_NUMBER, patient_id="P1", visit_id="V1",
        charges=charges("10.00"), total="10.00",
    )  # fmt: skip
    assert settled.settlement_id is not None
    insurer.set_faults(insurer_plan(drop=1.0, operations=frozenset({"Cancel"})))
    pending = journal.cancel_settlement(key="c", settlement_id=settled.settlement_id)
    assert pending.state is P.UNKNOWN
    insurer.set_faults(insurer_plan())
    assert journal.recover().outcomes == {"confirmed": 1}


def test_bad_settlement_input_writes_nothing(journal: Journal, insurer: SoapServer) -> None:
    with pytest.raises(AmountError):
        journal.settle(
            key="bad", scheme="basic", insured_id=ID_NUMBER, patient_id="P1", visit_id="V1",
            charges=charges("10.00"), total="11.00",
        )  # fmt: skip
    with pytest.raises(MoneyError):
        journal.settle(
            key="bad", scheme="gold", insured_id=ID_NUMBER, patient_id="P1", visit_id="V1",
            charges=charges("10.00"), total="10.00",
        )  # fmt: skip
    assert journal.entries() == []
    assert sum(insurer.requests.values()) == 0

"""The money flows as a caller runs them (``session.flows``): the role is checked before
anything moves, and every entry names the caller's user, role and terminal."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from hcm_bank_soap.reference import SoapServer
from money_peers import CARD, ID_NUMBER, charges

from hcmiddleware import AccessDeniedError, Caller
from hcmiddleware.runtime import Middleware

CASHIER = Caller(user="c-107", role="cashier", terminal="till-2")
BANK_CARD = "6222000055556666"


def test_a_cashier_tops_up_pays_and_settles_as_itself(
    money_mw: Callable[..., Middleware], bank: SoapServer, insurer: Any
) -> None:
    mw = money_mw()
    till = mw.acting_as(CASHIER)
    up = till.flows.top_up(key="up", card_number=CARD, amount="1000.00")
    paid = [
        till.flows.pay(key=f"adv-{i}", card_number=CARD, amount=amount)
        for i, amount in enumerate(("60.00", "40.00"))
    ]
    assert {m.terminal_id for m in (up, *paid)} == {"till-2"}
    outcome = till.flows.settle_visit(
        key="visit-1", scheme="basic", insured_id=ID_NUMBER, patient_id="P1", visit_id="V1",
        charges=charges("60.00", "40.00"), card_number=CARD,
        advance_transaction_ids=[m.transaction_id for m in paid],
    )  # fmt: skip
    assert outcome.returned_total == Decimal("70.00")
    assert bank.service.ledger.balance(CARD) == Decimal("970.00")  # type: ignore[attr-defined]
    money = mw.audit.entries(action="money.*")
    assert [e.action for e in money] == [
        "money.top_up", "money.pay", "money.pay", "money.settle", "money.refund", "money.refund",
    ]  # fmt: skip
    assert {(e.actor, e.user, e.role, e.terminal) for e in money} == {
        ("c-107", "c-107", "cashier", "till-2")
    }
    # each movement went through the session: its states are audited in the caller's
    # name, and the session adds no entry of its own beside them
    journal = mw.audit.entries(action="journal.*")
    assert {e.action for e in journal} == {
        "journal.pending", "journal.sent", "journal.confirmed",
        "journal.by_key", "journal.refundable",  # the settlement's look-ups: reads
    }  # fmt: skip
    assert {(e.user, e.role, e.terminal) for e in journal} == {("c-107", "cashier", "till-2")}


def test_a_role_without_the_operation_moves_no_money(
    money_mw: Callable[..., Middleware], bank: SoapServer
) -> None:
    mw = money_mw()
    doctor = mw.acting_as(Caller(user="d-1", role="doctor", terminal="room-4"))
    with pytest.raises(AccessDeniedError) as caught:
        doctor.flows.pay(key="p", card_number=CARD, amount="1.00")
    assert (caught.value.role, caught.value.operation, caught.value.reason) == (
        "doctor", "journal.pay", "operation",
    )  # fmt: skip
    with pytest.raises(AccessDeniedError):
        doctor.flows.charges_payment(card_number=CARD)
    registration = mw.acting_as(Caller(user="r-1", role="registration", terminal="desk-1"))
    with pytest.raises(AccessDeniedError) as caught:
        registration.flows.bind_bank_card(
            card_number=CARD, bank_card_number=BANK_CARD, holder_id_number=ID_NUMBER,
            presented_id_number=ID_NUMBER,
        )  # fmt: skip
    assert caught.value.operation == "bank.bind"
    assert bank.requests.get("Pay", 0) == 0
    assert bank.requests.get("Bind", 0) == 0
    refused = mw.audit.entries(action="access.refused")
    assert [(e.user, e.details["operation"], e.details["step"]) for e in refused] == [
        ("d-1", "journal.pay", "flows.pay"),
        ("d-1", "journal.pay", "flows.pay"),
        ("r-1", "bank.bind", "flows.bind_bank_card"),
    ]
    assert not mw.audit.entries(action="money.*")


def test_a_settlement_needs_every_operation_it_uses_before_the_insurer_is_asked(
    money_mw: Callable[..., Middleware], bank: SoapServer, insurer: Any
) -> None:
    # a cashier who may settle and pay but not refund: the fund's part could not go back
    ops = ["journal.top_up", "journal.pay", "journal.settle", "journal.by_key"]
    mw = money_mw(access={"roles": {"cashier": {"operations": ops, "categories": ["money"]}}})
    till = mw.acting_as(CASHIER)
    till.flows.top_up(key="up", card_number=CARD, amount="100.00")
    advance = till.flows.pay(key="adv", card_number=CARD, amount="100.00")
    with pytest.raises(AccessDeniedError) as caught:
        till.flows.settle_visit(
            key="visit-1", scheme="basic", insured_id=ID_NUMBER, patient_id="P1",
            visit_id="V1", charges=charges("100.00"), card_number=CARD,
            advance_transaction_ids=[advance.transaction_id],
        )  # fmt: skip
    assert caught.value.operation == "journal.refund"
    assert not insurer.requests.get("PreSettle", 0)
    assert not insurer.requests.get("Settle", 0)
    assert mw.audit.entries(action="access.refused")[-1].details["step"] == "flows.settle_visit"


def test_bank_binding_as_a_cashier(money_mw: Callable[..., Middleware], bank: SoapServer) -> None:
    mw = money_mw()
    till = mw.acting_as(CASHIER)
    till.flows.unbind_bank_card(
        card_number=CARD, holder_id_number=ID_NUMBER, presented_id_number=ID_NUMBER
    )
    binding = till.flows.bind_bank_card(
        card_number=CARD, bank_card_number=BANK_CARD, holder_id_number=ID_NUMBER,
        presented_id_number=ID_NUMBER,
    )  # fmt: skip
    assert binding.bank_account_masked.endswith(BANK_CARD[-4:])
    assert (bank.requests["Unbind"], bank.requests["Bind"]) == (1, 1)
    audited = mw.audit.entries(action="bank.*")
    assert [(e.action, e.user, e.role, e.terminal) for e in audited] == [
        ("bank.unbind", "c-107", "cashier", "till-2"),
        ("bank.bind", "c-107", "cashier", "till-2"),
    ]

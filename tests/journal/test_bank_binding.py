"""Binding a bank card at the counter: identity document first, then the bank over SOAP."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal

import pytest
from money_peers import CARD, ID_NUMBER

from hcmiddleware.errors import IdentityDocumentError, NoAdapterError, PaymentDeclinedError
from hcmiddleware.flows.payment import bind_bank_card, pay, unbind_bank_card
from hcmiddleware.runtime import Middleware
from hcmiddleware.testing.plugin import MiddlewareFactory

BANK_CARD = "6222000055556666"


def test_unbind_then_bind_through_the_reference_bank(
    money_mw: Callable[..., Middleware],
) -> None:
    mw = money_mw()
    unbind_bank_card(
        mw, card_number=CARD, holder_id_number=ID_NUMBER, presented_id_number=ID_NUMBER,
        actor="counter-2",
    )  # fmt: skip
    with pytest.raises(PaymentDeclinedError):
        pay(mw.journal, key="after-unbind", card_number=CARD, amount=Decimal("1.00"))
    binding = bind_bank_card(
        mw, card_number=CARD, bank_card_number=BANK_CARD, holder_id_number=ID_NUMBER,
        presented_id_number=ID_NUMBER.lower(), actor="counter-2",
    )  # fmt: skip
    assert BANK_CARD not in binding.bank_account_masked
    assert binding.bank_account_masked.endswith(BANK_CARD[-4:])
    # audited without any part of the bank card's number
    audited = mw.audit.entries(action="bank.*")
    assert [e.action for e in audited] == ["bank.unbind", "bank.bind"]
    assert all(BANK_CARD[-4:] not in json.dumps(e.details) for e in audited)


def test_a_wrong_document_sends_nothing(money_mw: Callable[..., Middleware]) -> None:
    mw = money_mw()
    sent: list[str] = []
    mw.dispatcher.add_observer(lambda record: sent.append(record.hook))
    with pytest.raises(IdentityDocumentError, match="not the card holder's"):
        bind_bank_card(
            mw, card_number=CARD, bank_card_number=BANK_CARD, holder_id_number=ID_NUMBER,
            presented_id_number="11010519491231002X", actor="counter-2",
        )  # fmt: skip
    assert "hcm_bank_bind" not in sent


def test_without_a_bank_adapter_the_capability_is_named(
    hcm_make_middleware: MiddlewareFactory,
) -> None:
    mw = hcm_make_middleware()
    with pytest.raises(NoAdapterError) as caught:
        unbind_bank_card(
            mw, card_number=CARD, holder_id_number=ID_NUMBER, presented_id_number=ID_NUMBER,
            actor="counter-2",
        )  # fmt: skip
    assert caught.value.capability == "bank.binding"

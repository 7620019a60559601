"""A card on a refused list moves no money: checked offline before anything is written."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from hcm_bank_soap.reference import SoapServer
from money_peers import CARD

from hcmiddleware.cards.reference import ListPublisher
from hcmiddleware.errors import CardRefusedError
from hcmiddleware.models import PaymentStatus as P
from hcmiddleware.runtime import Middleware


def balance(bank: SoapServer) -> Decimal:
    value = bank.service.ledger.balance(CARD)  # type: ignore[attr-defined]
    assert value is not None
    return value


@pytest.mark.parametrize("state", ["loss_reported", "cancelled", "replaced", "frozen"])
def test_a_listed_card_moves_no_money_and_nothing_is_journalled(
    money_mw: Callable[..., Middleware], bank: SoapServer, tmp_path: Path, state: str
) -> None:
    bank_list = ListPublisher("bank:REF")
    pem = tmp_path / "bank-list.pem"
    pem.write_bytes(bank_list.public_pem())
    mw = money_mw(cards={"list_keys": {"bank:REF": str(pem)}})
    first = mw.journal.top_up(key="up-1", card_number=CARD, amount="50.00")
    assert first.state is P.CONFIRMED
    before = balance(bank)
    bank_list.list_card(CARD, state)  # type: ignore[arg-type]
    mw.cards.apply(bank_list.publish())
    for move in (mw.journal.top_up, mw.journal.pay):
        with pytest.raises(CardRefusedError) as caught:
            move(key=f"{move.__name__}-2", card_number=CARD, amount="10.00")
        assert caught.value.state == state
    assert [m.transaction_id for m in mw.journal.entries()] == [first.transaction_id]
    assert balance(bank) == before
    # a retry of what moved before the card was listed answers what happened
    again = mw.journal.top_up(key="up-1", card_number=CARD, amount="50.00")
    assert again.transaction_id == first.transaction_id

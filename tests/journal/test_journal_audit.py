"""Every state of a money movement is in the audit chain, written with the state itself."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa
from hcm_bank_soap.reference import SoapServer
from money_peers import CARD

from hcmiddleware.errors import AuditError
from hcmiddleware.flows import payment
from hcmiddleware.runtime import Middleware


def test_each_state_of_a_payment_is_audited_on_each_database(
    journal_db: str, bank: SoapServer, money_mw: Callable[..., Middleware]
) -> None:
    mw = money_mw(database={"url": journal_db})
    payment.top_up(mw.journal, key="up", card_number=CARD, amount="100.00")
    paid = payment.pay(mw.journal, key="p", card_number=CARD, amount="40.00")
    trail = mw.audit.entries(resident=paid.transaction_id)
    assert [e.action for e in trail] == [
        "journal.pending", "journal.sent", "journal.confirmed", "money.pay",
    ]  # fmt: skip
    assert trail[1].details == {
        "previous": "pending", "channel": "bank", "kind": "pay", "amount": "40.00",
    }  # fmt: skip
    assert {e.actor for e in trail[:3]} == {"journal"}
    # no card number anywhere in the log
    assert all(CARD not in e.model_dump_json() for e in mw.audit.entries())
    assert mw.audit.verify().ok


def test_a_state_that_cannot_be_audited_is_not_written(
    journal_db: str, bank: SoapServer, money_mw: Callable[..., Middleware]
) -> None:
    mw = money_mw(database={"url": journal_db})
    journal = mw.journal
    with mw.engine.begin() as conn:  # the audit log broken by hand
        conn.execute(sa.text("DELETE FROM audit_head"))
    with pytest.raises(AuditError):
        journal.pay(key="p", card_number=CARD, amount="10.00")
    # the movement's pending state went with its audit entry: nothing was journalled,
    # so nothing was sent to the bank either
    assert journal.entries() == []

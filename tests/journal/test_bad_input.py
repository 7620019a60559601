"""Bad input: a typed error, nothing written, nothing sent, nothing lost."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hcm_bank_soap.reference import SoapServer
from money_peers import CARD, ID_NUMBER, OTHER_CARD, bank_plan

from hcmiddleware.errors import (
    AmountError,
    IdempotencyConflictError,
    IdentityDocumentError,
    MalformedResponseError,
    PaymentDeclinedError,
    RefundRefusedError,
    UnknownTransactionError,
)
from hcmiddleware.flows import payment
from hcmiddleware.journal import Journal
from hcmiddleware.models import MoneyKind
from hcmiddleware.models import PaymentStatus as P


def _nothing_happened(journal: Journal, bank: SoapServer, entries: int = 0) -> None:
    assert len(journal.entries()) == entries
    assert bank.requests["Pay"] + bank.requests["TopUp"] + bank.requests["Refund"] == entries


@pytest.mark.parametrize(
    "amount", ["12.345", "0.001", "-5.00", "0", "0.00", "abc", "NaN", "Infinity", 1.5, True, ""]
)
def test_bad_amounts_are_refused_before_writing(
    journal: Journal, bank: SoapServer, amount: object
) -> None:
    with pytest.raises(AmountError) as caught:
        payment.pay(journal, key="k", card_number=CARD, amount=amount)
    assert caught.value.hint
    _nothing_happened(journal, bank)


def test_other_currency_is_refused(journal: Journal, bank: SoapServer) -> None:
    with pytest.raises(AmountError, match="currency"):
        journal.bank_movement(
            MoneyKind.PAY, key="k", card_number=CARD, amount="1.00", currency="USD"
        )
    _nothing_happened(journal, bank)


def test_key_reused_for_another_amount_is_refused(journal: Journal, bank: SoapServer) -> None:
    payment.top_up(journal, key="k", card_number=CARD, amount="10.00")
    with pytest.raises(IdempotencyConflictError):
        payment.top_up(journal, key="k", card_number=CARD, amount="10.01")
    with pytest.raises(IdempotencyConflictError):
        payment.pay(journal, key="k", card_number=CARD, amount="10.00")
    _nothing_happened(journal, bank, entries=1)


def _paid(journal: Journal, amount: str = "30.00") -> str:
    payment.top_up(journal, key="up", card_number=CARD, amount="100.00")
    return payment.pay(journal, key="p", card_number=CARD, amount=amount).transaction_id


def _refund(journal: Journal, original: str, amount: str, **kw: str) -> object:
    args = {
        "key": "r",
        "card_number": CARD,
        "original_transaction_id": original,
        "amount": amount,
        "holder_id_number": ID_NUMBER,
        "presented_id_number": ID_NUMBER,
    }
    args.update(kw)
    return payment.refund(journal, **args)  # type: ignore[arg-type]


def test_refund_above_paid_is_refused(journal: Journal, bank: SoapServer) -> None:
    original = _paid(journal)
    with pytest.raises(RefundRefusedError):
        _refund(journal, original, "30.01")
    _refund(journal, original, "20.00")
    with pytest.raises(RefundRefusedError):
        _refund(journal, original, "10.01", key="r2")
    assert journal.refundable(original) == Decimal("10.00")
    assert bank.service.ledger.balance(CARD) == Decimal("90.00")  # type: ignore[attr-defined]


def test_refund_of_unknown_or_wrong_transaction_is_refused(
    journal: Journal, bank: SoapServer
) -> None:
    original = _paid(journal)
    with pytest.raises(UnknownTransactionError):
        _refund(journal, "210100000001209901010000000000", "1.00")
    with pytest.raises(RefundRefusedError):  # a top-up is not a payment
        _refund(journal, journal.by_key("up").transaction_id, "1.00")  # type: ignore[union-attr]
    with pytest.raises(RefundRefusedError):  # not the card that paid
        _refund(journal, original, "1.00", card_number=OTHER_CARD)
    _nothing_happened(journal, bank, entries=2)


def test_refund_needs_the_holders_document(journal: Journal, bank: SoapServer) -> None:
    original = _paid(journal)
    with pytest.raises(IdentityDocumentError):
        _refund(journal, original, "1.00", presented_id_number="110105198001010016")
    with pytest.raises(IdentityDocumentError):  # check digit wrong
        _refund(journal, original, "1.00", presented_id_number="110105198001010033")
    _nothing_happened(journal, bank, entries=2)


def test_unknown_transaction_ids(journal: Journal) -> None:
    with pytest.raises(UnknownTransactionError) as caught:
        journal.get("nope")
    assert "hcm journal list" in caught.value.hint
    with pytest.raises(UnknownTransactionError):
        journal.resolve("nope")


def test_malformed_answer_is_settled_by_query_not_guessed(
    journal: Journal, bank: SoapServer
) -> None:
    payment.top_up(journal, key="up", card_number=CARD, amount="10.00")
    bank.set_faults(bank_plan(malformed=1.0, operations=frozenset({"Pay"})))
    moved = payment.pay(journal, key="p", card_number=CARD, amount="4.00")
    history = [(s, n) for _, s, n in journal.history(moved.transaction_id)]
    assert history[-2][0] == "unknown"
    assert "MalformedResponseError" in (history[-2][1] or "")
    assert moved.state is P.CONFIRMED
    assert bank.service.ledger.balance(CARD) == Decimal("6.00")  # type: ignore[attr-defined]


def test_malformed_query_answer_keeps_it_unknown(journal: Journal, bank: SoapServer) -> None:
    bank.set_faults(bank_plan(malformed=1.0, operations=frozenset({"TopUp", "Query"})))
    with pytest.raises(Exception) as caught:
        payment.top_up(journal, key="up", card_number=CARD, amount="10.00")
    assert type(caught.value).__name__ == "OutcomeUnknownError"
    moved = journal.by_key("up")
    assert moved is not None
    assert moved.state is P.UNKNOWN
    bank.set_faults(bank_plan())
    journal.recover()
    assert journal.get(moved.transaction_id).state is P.CONFIRMED


def test_declined_payment_raises_a_typed_error(journal: Journal) -> None:
    with pytest.raises(PaymentDeclinedError) as caught:
        payment.pay(journal, key="p", card_number=CARD, amount="1.00")
    assert caught.value.state == "failed"
    assert "insufficient balance" in caught.value.message


def test_adapter_refuses_a_reply_for_another_transaction() -> None:
    from hcm_bank_soap import BankSoap

    class Reply:
        transactionId = "other"  # noqa: N815
        status = "CONFIRMED"
        bankReference = None  # noqa: N815
        balanceAfter = None  # noqa: N815
        completedAt = "not a date"  # noqa: N815
        reason = None

    with pytest.raises(MalformedResponseError):
        BankSoap()._result(Reply(), "mine")


def test_bank_down_at_start_and_at_payment(hcm_make_middleware: Any, tmp_path: Path) -> None:
    """The middleware starts without its bank; a payment then fails at once, unsent."""
    from hcm_bank_soap import BankSoap

    dead = "http://127.0.0.1:9/bank"
    for settings in ({"wsdl": dead + "?wsdl"}, {"endpoint": dead}):
        mw = hcm_make_middleware(
            plugins={"bank-soap": BankSoap()},
            settings={"bank-soap": {**settings, "timeout": 1.0}},
        )
        journal = Journal(mw)
        moved = journal.pay(key="p", card_number=CARD, amount="1.00")
        assert moved.state is P.FAILED
        assert "RemoteUnavailableError" in (moved.reason or "")
        assert [s for _, s, _ in journal.history(moved.transaction_id)] == [
            "pending", "sent", "failed",
        ]  # fmt: skip
        with pytest.raises(PaymentDeclinedError):
            payment.pay(journal, key="p2", card_number=CARD, amount="1.00")
        assert [r.ok for p, r in mw.doctor() if p == "bank-soap"] == [False]

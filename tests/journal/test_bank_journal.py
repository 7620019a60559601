"""The journal against the reference bank: states, idempotency, unknown outcomes."""

from __future__ import annotations

import threading
import time
from decimal import Decimal
from pathlib import Path

from hcm_bank_soap import BankSoap
from hcm_bank_soap.reference import SoapServer
from money_peers import CARD, bank_plan

from hcmiddleware.journal import Journal
from hcmiddleware.models import PaymentStatus as P
from hcmiddleware.runtime import Middleware
from hcmiddleware.testing.plugin import embedded_config


def balance(bank: SoapServer, card: str = CARD) -> Decimal:
    value = bank.service.ledger.balance(card)  # type: ignore[attr-defined]
    assert value is not None
    return value


def test_top_up_then_pay_moves_money_once(journal: Journal, bank: SoapServer) -> None:
    up = journal.top_up(key="r-1", card_number=CARD, amount="100.00")
    paid = journal.pay(key="r-2", card_number=CARD, amount="12.34")
    assert (up.state, paid.state) == (P.CONFIRMED, P.CONFIRMED)
    assert balance(bank) == Decimal("87.66")
    assert [s for _, s, _ in journal.history(paid.transaction_id)] == [
        "pending", "sent", "confirmed",
    ]  # fmt: skip


def test_same_key_twice_never_pays_twice(journal: Journal, bank: SoapServer) -> None:
    journal.top_up(key="up", card_number=CARD, amount="50")
    first = journal.pay(key="same", card_number=CARD, amount="20.00")
    again = journal.pay(key="same", card_number=CARD, amount="20.00")
    assert again.transaction_id == first.transaction_id
    assert balance(bank) == Decimal("30.00")
    assert bank.requests["Pay"] == 1


def test_declined_payment_is_failed(journal: Journal, bank: SoapServer) -> None:
    moved = journal.pay(key="broke", card_number=CARD, amount="1.00")
    assert moved.state is P.FAILED
    assert moved.reason == "insufficient balance"


def test_lost_answer_after_commit_is_confirmed_by_query(journal: Journal, bank: SoapServer) -> None:
    journal.top_up(key="up", card_number=CARD, amount="50")
    bank.set_faults(bank_plan(drop=1.0, operations=frozenset({"Pay"})))
    moved = journal.pay(key="p", card_number=CARD, amount="5.00")
    assert moved.state is P.CONFIRMED
    assert [s for _, s, _ in journal.history(moved.transaction_id)][-2:] == [
        "unknown", "confirmed",
    ]  # fmt: skip
    assert balance(bank) == Decimal("45.00")


def test_fault_before_processing_is_reversed(journal: Journal, bank: SoapServer) -> None:
    journal.top_up(key="up", card_number=CARD, amount="50")
    bank.set_faults(bank_plan(fault=1.0, operations=frozenset({"Pay"})))
    moved = journal.pay(key="p", card_number=CARD, amount="5.00")
    assert moved.state is P.REVERSED
    assert balance(bank) == Decimal("50.00")
    # the reversal leaves a tombstone: the same ID arriving late moves nothing
    late = bank.service.ledger.move("pay", moved.transaction_id, CARD, Decimal("5.00"))  # type: ignore[attr-defined]
    assert late.status == "REVERSED"
    assert balance(bank) == Decimal("50.00")


def test_bank_down_leaves_unknown_until_recovery(journal: Journal, bank: SoapServer) -> None:
    journal.top_up(key="up", card_number=CARD, amount="50")
    bank.set_faults(bank_plan(drop=1.0, operations=frozenset({"Pay", "Query", "Reverse"})))
    moved = journal.pay(key="p", card_number=CARD, amount="5.00")
    assert moved.state is P.UNKNOWN
    bank.set_faults(bank_plan())
    report = journal.recover()
    assert report.outcomes == {"confirmed": 1}
    assert journal.get(moved.transaction_id).state is P.CONFIRMED
    assert balance(bank) == Decimal("45.00")


def test_dispatcher_timeout_is_unknown_and_reversed(bank: SoapServer, tmp_path: Path) -> None:
    """The core's own timeout (PluginTimeoutError) is an unknown outcome, never a failure."""
    config = embedded_config(
        tmp_path / "slow",
        plugins={"timeouts": {"bank-soap": 0.2}, "bank-soap": {"wsdl": bank.wsdl_url}},
    )
    mw = Middleware(config, plugins={"bank-soap": BankSoap()})
    journal = Journal(mw)
    journal.top_up(key="up", card_number=CARD, amount="50")
    bank.set_faults(bank_plan(delay=1.0, delay_seconds=0.5, operations=frozenset({"Pay"})))
    moved = journal.pay(key="slow", card_number=CARD, amount="5.00")
    notes = [n or "" for _, _, n in journal.history(moved.transaction_id)]
    assert any("PluginTimeoutError" in n for n in notes)
    assert moved.state is P.REVERSED
    time.sleep(0.6)  # the late request lands at the bank and is refused
    assert balance(bank) == Decimal("50.00")
    late = bank.service.ledger.query(moved.transaction_id)  # type: ignore[attr-defined]
    assert late.status == "REVERSED"
    mw.close()


def test_same_key_from_many_threads_sends_once(journal: Journal, bank: SoapServer) -> None:
    journal.top_up(key="up", card_number=CARD, amount="50")
    seen: list[str] = []

    def pay() -> None:
        seen.append(journal.pay(key="race", card_number=CARD, amount="7.00").transaction_id)

    threads = [threading.Thread(target=pay) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(seen)) == 1
    assert bank.requests["Pay"] == 1
    assert balance(bank) == Decimal("43.00")


def test_charges_payment_plugs_into_the_outpatient_settle(
    journal: Journal, bank: SoapServer
) -> None:
    from money_peers import charges

    from hcmiddleware.flows.payment import charges_payment, top_up

    top_up(journal, key="up", card_number=CARD, amount="100.00")
    pay = charges_payment(journal, card_number=CARD, terminal_id="KIOSK-01")
    bill = list(charges("12.00", "8.50"))
    first = pay(Decimal("20.50"), bill)
    again = pay(Decimal("20.50"), list(reversed(bill)))  # a retried settle
    assert again == first
    assert journal.get(first).state is P.CONFIRMED
    assert balance(bank) == Decimal("79.50")
    other = pay(Decimal("12.00"), bill[:1])  # different charges: a new payment
    assert other != first
    assert balance(bank) == Decimal("67.50")

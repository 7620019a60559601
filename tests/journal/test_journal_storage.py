"""The journal's tables: the migration matches the models; SQLite and PostgreSQL alike."""

from __future__ import annotations

import threading
from collections.abc import Callable
from decimal import Decimal

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from hcm_bank_soap.reference import SoapServer
from money_peers import CARD, ID_NUMBER

import hcmiddleware.journal.tables  # noqa: F401
from hcmiddleware import storage
from hcmiddleware.errors import RefundRefusedError
from hcmiddleware.flows import payment
from hcmiddleware.journal import Journal
from hcmiddleware.models import PaymentStatus as P
from hcmiddleware.runtime import Middleware
from hcmiddleware.storage import Base


def test_migration_builds_the_journal_tables_exactly(journal_db: str) -> None:
    engine = storage.create_engine(journal_db)
    try:
        storage.upgrade(engine)
        with engine.connect() as conn:
            diff = compare_metadata(
                MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
            )
        assert [d for d in diff if "money_journal" in repr(d)] == []
    finally:
        engine.dispose()


def test_payments_and_a_refund_race_on_each_database(
    journal_db: str, bank: SoapServer, money_mw: Callable[..., Middleware]
) -> None:
    journal = Journal(money_mw(database={"url": journal_db}))
    payment.top_up(journal, key="up", card_number=CARD, amount="100.00")
    paid = payment.pay(journal, key="p", card_number=CARD, amount="40.00")
    assert journal.get(paid.transaction_id).amount == Decimal("40.00")
    # eight cashiers refund 10.00 of the same 40.00 payment at once: four succeed
    outcomes: list[str] = []

    def refund(i: int) -> None:
        try:
            payment.refund(
                journal, key=f"r{i}", card_number=CARD, amount="10.00",
                original_transaction_id=paid.transaction_id,
                holder_id_number=ID_NUMBER, presented_id_number=ID_NUMBER,
            )  # fmt: skip
            outcomes.append("ok")
        except RefundRefusedError:
            outcomes.append("refused")

    threads = [threading.Thread(target=refund, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["ok"] * 4 + ["refused"] * 4
    assert journal.refundable(paid.transaction_id) == Decimal("0.00")
    assert bank.service.ledger.balance(CARD) == Decimal("100.00")  # type: ignore[attr-defined]
    assert {m.state for m in journal.entries()} == {P.CONFIRMED}

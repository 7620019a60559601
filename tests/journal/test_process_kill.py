"""A real middleware process killed with SIGKILL at each journal point, then recovered.

The fault campaign kills the journal in-process; this checks on disk, with a real
process and a real kill, that every point it uses is recoverable the same way.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from hcm_bank_soap.reference import SoapServer
from money_peers import CARD, bank_plan

from hcmiddleware.journal import Journal
from hcmiddleware.models import PaymentStatus as P
from hcmiddleware.runtime import Middleware

WORKER = Path(__file__).with_name("kill_worker.py")

# point -> (faults on Pay, state after recovery, bank balance after recovery)
CASES = {
    "after_pending": ({}, P.FAILED, "100.00"),
    "after_sent": ({}, P.REVERSED, "100.00"),
    "after_answer": ({}, P.CONFIRMED, "70.00"),
    "after_unknown": ({"drop": 1.0}, P.CONFIRMED, "70.00"),
    "after_query": ({"drop": 1.0}, P.CONFIRMED, "70.00"),
    "after_reversal_requested": ({"fault": 1.0}, P.REVERSED, "100.00"),
    "after_reverse": ({"fault": 1.0}, P.REVERSED, "100.00"),
}


@pytest.mark.parametrize("point", list(CASES))
def test_kill_at_point_then_recover(
    point: str,
    tmp_path: Path,
    bank: SoapServer,
    money_mw: Callable[..., Middleware],
) -> None:
    faults, expected, balance = CASES[point]
    bank.set_faults(bank_plan(operations=frozenset({"Pay"}), **faults))
    db_url = f"sqlite:///{tmp_path / 'journal.db'}"
    proc = subprocess.run(
        [sys.executable, str(WORKER), db_url, bank.wsdl_url, point, CARD, str(tmp_path / "w")],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    bank.set_faults(bank_plan())
    journal = Journal(money_mw(database={"url": db_url}))
    paid = journal.by_key("kill-pay")
    assert paid is not None
    assert paid.state in (P.PENDING, P.SENT, P.UNKNOWN)  # killed while in flight
    report = journal.recover()
    assert report.still_unknown == []
    assert journal.get(paid.transaction_id).state is expected
    assert bank.service.ledger.balance(CARD) == Decimal(balance)  # type: ignore[attr-defined]
    # the cashier presses again with the same key: nothing moves a second time
    again = journal.pay(key="kill-pay", card_number=CARD, amount="30.00")
    assert again.transaction_id == paid.transaction_id
    assert bank.service.ledger.balance(CARD) == Decimal(balance)  # type: ignore[attr-defined]

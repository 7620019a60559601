"""A middleware process that pays once and is killed (SIGKILL) at one journal point.

Run by ``test_process_kill.py``: ``python kill_worker.py DB_URL BANK_WSDL POINT CARD``.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from hcm_bank_soap import BankSoap

from hcmiddleware.journal import Journal
from hcmiddleware.runtime import Middleware
from hcmiddleware.testing.plugin import embedded_config


def main() -> None:
    """Top up, then pay, dying by SIGKILL when the payment reaches the named point."""
    db_url, wsdl, point, card, data_dir = sys.argv[1:6]
    config = embedded_config(
        Path(data_dir),
        database={"url": db_url},
        plugins={"bank-soap": {"wsdl": wsdl, "timeout": 2.0}},
    )
    armed = False

    def crash(at: str) -> None:
        if armed and at == point:
            os.kill(os.getpid(), signal.SIGKILL)

    with Middleware(config, plugins={"bank-soap": BankSoap()}) as mw:
        journal = Journal(mw, crash_point=crash)
        journal.top_up(key="kill-topup", card_number=card, amount="100.00")
        armed = True
        journal.pay(key="kill-pay", card_number=card, amount="30.00")
    sys.exit(3)  # the kill point was never reached


if __name__ == "__main__":
    main()

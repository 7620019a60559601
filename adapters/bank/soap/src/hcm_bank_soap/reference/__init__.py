"""The reference bank: a real SOAP server on loopback with its own persistent ledger.

Used by the tests, the examples and the demo in place of a bank's front end::

    from hcm_bank_soap.reference import FaultPlan, serve
    with serve("bank.db") as server:
        print(server.wsdl_url)

or from a shell: ``python -m hcm_bank_soap.reference --ledger bank.db --port 8091``.
"""

from __future__ import annotations

from pathlib import Path

from hcm_bank_soap.reference.ledger import BankLedger, LedgerResult
from hcm_bank_soap.reference.service import BankService
from hcmiddleware.testing.soap import FaultPlan, SoapFaultError, SoapServer

__all__ = [
    "BankLedger",
    "BankService",
    "FaultPlan",
    "LedgerResult",
    "SoapFaultError",
    "SoapServer",
    "serve",
]

#: The operations that move money or settle an unknown outcome: faults apply to these.
MONEY_OPERATIONS = frozenset({"TopUp", "Pay", "Refund", "Query", "Reverse"})


def serve(
    ledger: Path | str | BankLedger,
    *,
    port: int = 0,
    faults: FaultPlan | None = None,
    username: str | None = None,
    password: str | None = None,
) -> SoapServer:
    """A started reference bank on 127.0.0.1 (port 0: any free port)."""
    book = ledger if isinstance(ledger, BankLedger) else BankLedger(ledger)
    return SoapServer(
        BankService(book),
        path="/bank",
        port=port,
        faults=faults,
        username=username,
        password=password,
    ).start()

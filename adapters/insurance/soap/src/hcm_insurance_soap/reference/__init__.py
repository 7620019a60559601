"""The reference insurer: a real SOAP server on loopback with its own persistent ledger.

    from hcm_insurance_soap.reference import serve
    with serve("insurer.db") as server:
        print(server.wsdl_url)

or ``python -m hcm_insurance_soap.reference --ledger insurer.db --port 8092``.
"""

from __future__ import annotations

from pathlib import Path

from hcm_insurance_soap.reference.ledger import FUND_RATES, InsurerLedger, SettlementRecord, split
from hcm_insurance_soap.reference.service import InsuranceService
from hcmiddleware.testing.soap import FaultPlan, SoapFaultError, SoapServer

__all__ = [
    "FUND_RATES",
    "MONEY_OPERATIONS",
    "FaultPlan",
    "InsuranceService",
    "InsurerLedger",
    "SettlementRecord",
    "SoapFaultError",
    "SoapServer",
    "serve",
    "split",
]

#: The operations that move fund money or settle an unknown outcome: faults apply here.
MONEY_OPERATIONS = frozenset({"Settle", "Cancel", "Reverse"})


def serve(
    ledger: Path | str | InsurerLedger,
    *,
    port: int = 0,
    faults: FaultPlan | None = None,
    username: str | None = None,
    password: str | None = None,
) -> SoapServer:
    """A started reference insurer on 127.0.0.1 (port 0: any free port)."""
    book = ledger if isinstance(ledger, InsurerLedger) else InsurerLedger(ledger)
    return SoapServer(
        InsuranceService(book),
        path="/insurance",
        port=port,
        faults=faults,
        username=username,
        password=password,
    ).start()

"""Fixtures for the money tests: reference bank and insurer on loopback, a journal."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hcm_bank_soap import BankSoap
from hcm_bank_soap.reference import SoapServer
from hcm_bank_soap.reference import serve as serve_bank
from hcm_insurance_soap import InsuranceSoap
from hcm_insurance_soap.reference import serve as serve_insurer
from money_peers import CARD, ID_NUMBER, OTHER_CARD

from hcmiddleware.journal import Journal
from hcmiddleware.runtime import Middleware
from hcmiddleware.testing.plugin import MiddlewareFactory


@pytest.fixture
def bank(tmp_path: Path) -> Iterator[SoapServer]:
    """The reference bank on loopback, with two bound cards."""
    server = serve_bank(tmp_path / "bank-ledger.db")
    ledger = server.service.ledger  # type: ignore[attr-defined]
    ledger.bind(CARD, "6222000011112222", ID_NUMBER)
    ledger.bind(OTHER_CARD, "6222000033334444", "110105198001010016")
    yield server
    server.stop()


@pytest.fixture
def insurer(tmp_path: Path) -> Iterator[Any]:
    """The reference insurer on loopback."""
    server = serve_insurer(tmp_path / "insurer-ledger.db")
    yield server
    server.stop()


@pytest.fixture
def money_mw(
    hcm_make_middleware: MiddlewareFactory, bank: SoapServer, insurer: Any
) -> Callable[..., Middleware]:
    """Make a Middleware with both adapters pointed at the reference servers."""

    def make(timeout: float = 2.0, **sections: Any) -> Middleware:
        return hcm_make_middleware(
            plugins={"bank-soap": BankSoap(), "insurance-soap": InsuranceSoap()},
            settings={
                "bank-soap": {"wsdl": bank.wsdl_url, "timeout": timeout},
                "insurance-soap": {"wsdl": insurer.wsdl_url, "timeout": timeout},
            },
            middleware={"institution_code": "210100000001"},
            **sections,
        )

    return make


@pytest.fixture
def journal(money_mw: Callable[..., Middleware]) -> Journal:
    """A journal on a fresh SQLite database, talking to the reference servers."""
    return Journal(money_mw())


@pytest.fixture
def journal_db(fresh_database: str) -> str:
    """An empty journal database of each kind, as a URL (PostgreSQL: its own schema)."""
    return fresh_database

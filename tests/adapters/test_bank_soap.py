"""The bank SOAP adapter: conformance against the reference bank, envelopes, credentials."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hcm_bank_soap import BankSoap, BankSoapSettings
from hcm_bank_soap.reference import SoapServer, serve
from lxml import etree  # type: ignore[import-untyped]
from pydantic import SecretStr
from zeep.plugins import HistoryPlugin

from hcmiddleware.errors import RemoteFaultError
from hcmiddleware.models import MoneyKind, PaymentRequest
from hcmiddleware.runtime import Middleware
from hcmiddleware.testing.conformance import BankConformance

GOLDEN = Path(__file__).with_name("golden")


@pytest.fixture
def reference_bank(tmp_path: Path) -> Iterator[SoapServer]:
    """A reference bank that wants WS-Security credentials."""
    server = serve(tmp_path / "bank.db", username="HOSP0001", password="s3cret")
    yield server
    server.stop()


class TestBankSoap(BankConformance):
    plugin_name = "bank-soap"

    @pytest.fixture
    def plugin(self) -> BankSoap:
        return BankSoap()

    @pytest.fixture
    def plugin_settings(
        self, reference_bank: SoapServer, monkeypatch: pytest.MonkeyPatch
    ) -> dict[str, Any]:
        monkeypatch.setenv("HCM_TEST_BANK_PASSWORD", "s3cret")
        return {
            "wsdl": reference_bank.wsdl_url,
            "timeout": 2.0,
            "username": "HOSP0001",
            "password": {"env": "HCM_TEST_BANK_PASSWORD"},
        }

    @pytest.fixture
    def bank_account(self) -> tuple[str, str, str]:
        return ("1100000000000009", "6222000011112222", "110105198001010032")


def test_wrong_password_is_a_remote_fault(
    reference_bank: SoapServer, hcm_make_middleware: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HCM_TEST_BANK_PASSWORD", "wrong")
    mw: Middleware = hcm_make_middleware(
        plugins={"bank-soap": BankSoap()},
        settings={
            "bank-soap": {
                "wsdl": reference_bank.wsdl_url,
                "username": "HOSP0001",
                "password": {"env": "HCM_TEST_BANK_PASSWORD"},
            }
        },
    )
    with pytest.raises(RemoteFaultError) as caught:
        mw.hooks.hcm_bank_query(transaction_id="x")
    assert "authentication failed" in caught.value.message
    assert "wrong" not in str(caught.value)


def test_packaged_wsdl_and_endpoint_override(
    reference_bank: SoapServer, hcm_make_middleware: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HCM_TEST_BANK_PASSWORD", "s3cret")
    mw: Middleware = hcm_make_middleware(
        plugins={"bank-soap": BankSoap()},
        settings={
            "bank-soap": {
                "endpoint": reference_bank.url,
                "username": "HOSP0001",
                "password": {"env": "HCM_TEST_BANK_PASSWORD"},
            }
        },
    )
    assert mw.hooks.hcm_bank_query(transaction_id="never-sent") is None
    assert [r.ok for p, r in mw.doctor() if p == "bank-soap"] == [True]


def test_doctor_says_when_the_bank_is_down(hcm_make_middleware: Any) -> None:
    mw: Middleware = hcm_make_middleware(
        plugins={"bank-soap": BankSoap()},
        settings={"bank-soap": {"endpoint": "http://127.0.0.1:9/bank", "timeout": 0.5}},
    )
    checks = [r for p, r in mw.doctor() if p == "bank-soap"]
    assert [c.ok for c in checks] == [False]
    assert checks[0].hint


def _envelope(operation: str, **kwargs: Any) -> str:
    settings = BankSoapSettings(username="HOSP0001", password=SecretStr("s3cret"))
    client = BankSoap.make_client(settings)
    message = client.create_message(client.service, operation, **kwargs)
    return str(etree.tostring(message, pretty_print=True, encoding="unicode"))


ENVELOPES = {
    "bank_pay.xml": (
        "Pay",
        {
            "transactionId": "210100000001202611270930000001",
            "cardNumber": "1100000000000001",
            "amount": Decimal("12.50"),
            "currency": "CNY",
            "terminalId": "KIOSK-01",
        },
    ),
    "bank_refund.xml": (
        "Refund",
        {
            "transactionId": "210100000001202611270931000002",
            "cardNumber": "1100000000000001",
            "amount": Decimal("2.50"),
            "currency": "CNY",
            "originalTransactionId": "210100000001202611270930000001",
        },
    ),
    "bank_reverse.xml": ("Reverse", {"transactionId": "210100000001202611270930000001"}),
    "bank_statement.xml": ("Statement", {"day": date(2026, 11, 27)}),
}


@pytest.mark.parametrize("name", sorted(ENVELOPES))
def test_envelopes_match_golden_files(name: str) -> None:
    operation, kwargs = ENVELOPES[name]
    assert _envelope(operation, **kwargs) == (GOLDEN / name).read_text(encoding="utf-8")


def test_adapter_sends_the_golden_pay(
    reference_bank: SoapServer, hcm_make_middleware: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the hook really puts on the wire is the golden envelope."""
    monkeypatch.setenv("HCM_TEST_BANK_PASSWORD", "s3cret")
    plugin = BankSoap()
    hcm_make_middleware(
        plugins={"bank-soap": plugin},
        settings={
            "bank-soap": {
                "wsdl": reference_bank.wsdl_url,
                "username": "HOSP0001",
                "password": {"env": "HCM_TEST_BANK_PASSWORD"},
            }
        },
    )
    history = HistoryPlugin()
    plugin._ensure_service()  # the client is made on first use
    assert plugin.client is not None
    plugin.client.plugins.append(history)
    result = plugin.hcm_bank_pay(
        PaymentRequest(
            transaction_id="210100000001202611270930000001",
            kind=MoneyKind.PAY,
            card_number="1100000000000001",
            amount=Decimal("12.50"),
            terminal_id="KIOSK-01",
        )
    )
    assert result.reason == "no bank card is bound to this health card"
    sent = etree.tostring(history.last_sent["envelope"], pretty_print=True, encoding="unicode")
    assert sent == (GOLDEN / "bank_pay.xml").read_text(encoding="utf-8")

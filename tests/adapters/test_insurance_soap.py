"""The insurance SOAP adapter: conformance against the reference insurer, envelopes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hcm_insurance_soap import InsuranceSoap, InsuranceSoapSettings, bill
from hcm_insurance_soap.reference import SoapServer, serve
from lxml import etree  # type: ignore[import-untyped]
from pydantic import SecretStr
from zeep.plugins import HistoryPlugin

from hcmiddleware.errors import MalformedResponseError, RemoteFaultError
from hcmiddleware.models import Charge, SettlementRequest
from hcmiddleware.runtime import Middleware
from hcmiddleware.testing.conformance import InsuranceConformance

GOLDEN = Path(__file__).with_name("golden")
MESSAGE_ID = "210100000001202611270930000001"


@pytest.fixture
def reference_insurer(tmp_path: Path) -> Iterator[SoapServer]:
    """A reference insurer that wants WS-Security credentials."""
    server = serve(tmp_path / "insurer.db", username="210100000001", password="s3cret")
    yield server
    server.stop()


@pytest.fixture
def insurer_settings(
    reference_insurer: SoapServer, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """Settings that reach the reference insurer."""
    monkeypatch.setenv("HCM_TEST_INSURER_PASSWORD", "s3cret")
    return {
        "wsdl": reference_insurer.wsdl_url,
        "timeout": 2.0,
        "username": "210100000001",
        "password": {"env": "HCM_TEST_INSURER_PASSWORD"},
    }


class TestInsuranceSoap(InsuranceConformance):
    plugin_name = "insurance-soap"

    @pytest.fixture
    def plugin(self) -> InsuranceSoap:
        return InsuranceSoap()

    @pytest.fixture
    def plugin_settings(self, insurer_settings: dict[str, Any]) -> dict[str, Any]:
        return insurer_settings


def _request(message_id: str = MESSAGE_ID, total: str = "100.00") -> SettlementRequest:
    charge = Charge(
        charge_id="C1", patient_id="P1", visit_id="V1", item_code="250101001",
        item_name="blood count", quantity=Decimal(1), unit_price=Decimal(total),
        amount=Decimal(total), insurance_category="A",
    )  # fmt: skip
    return SettlementRequest(
        message_id=message_id,
        scheme="rural",
        insured_id="INS-0001",
        patient_id="P1",
        visit_id="V1",
        charges=(charge,),
        total=Decimal(total),
    )


def _envelope(operation: str, **kwargs: Any) -> str:
    settings = InsuranceSoapSettings(username="210100000001", password=SecretStr("s3cret"))
    client = InsuranceSoap.make_client(settings)
    message = client.create_message(client.service, operation, **kwargs)
    return str(etree.tostring(message, pretty_print=True, encoding="unicode"))


ENVELOPES = {
    "insurance_settle.xml": ("Settle", bill(_request())),
    "insurance_reverse.xml": (
        "Reverse",
        {"messageId": "210100000001202611270931000002", "originalMessageId": MESSAGE_ID},
    ),
    "insurance_cancel.xml": (
        "Cancel",
        {"messageId": "210100000001202611270932000003", "settlementId": "JS" + MESSAGE_ID},
    ),
    "insurance_reconcile_detail.xml": (
        "ReconcileDetail",
        {
            "messageId": "210100000001202611280100000004",
            "dateFrom": date(2026, 11, 27),
            "dateTo": date(2026, 11, 27),
        },
    ),
}


@pytest.mark.parametrize("name", sorted(ENVELOPES))
def test_envelopes_match_golden_files(name: str) -> None:
    operation, kwargs = ENVELOPES[name]
    assert _envelope(operation, **kwargs) == (GOLDEN / name).read_text(encoding="utf-8")


def test_adapter_sends_the_golden_settlement(
    insurer_settings: dict[str, Any], hcm_make_middleware: Any
) -> None:
    plugin = InsuranceSoap()
    hcm_make_middleware(
        plugins={"insurance-soap": plugin}, settings={"insurance-soap": insurer_settings}
    )
    history = HistoryPlugin()
    plugin._ensure_service()  # the client is made on first use
    assert plugin.client is not None
    plugin.client.plugins.append(history)
    settled = plugin.hcm_insurance_settle(_request())
    assert (settled.fund_paid, settled.patient_paid) == (Decimal("60.00"), Decimal("40.00"))
    sent = etree.tostring(history.last_sent["envelope"], pretty_print=True, encoding="unicode")
    assert sent == (GOLDEN / "insurance_settle.xml").read_text(encoding="utf-8")


def test_refusals_and_bad_answers_are_typed(
    insurer_settings: dict[str, Any], reference_insurer: SoapServer, hcm_make_middleware: Any
) -> None:
    mw: Middleware = hcm_make_middleware(
        plugins={"insurance-soap": InsuranceSoap()}, settings={"insurance-soap": insurer_settings}
    )
    with pytest.raises(RemoteFaultError) as caught:
        mw.hooks.hcm_insurance_cancel(settlement_id="JS-none", message_id=MESSAGE_ID)
    assert caught.value.fault_code.endswith("Client")
    from hcm_insurance_soap.reference import FaultPlan

    reference_insurer.set_faults(FaultPlan(malformed=1.0, operations=frozenset({"Settle"})))
    with pytest.raises(MalformedResponseError):
        mw.hooks.hcm_insurance_settle(request=_request("210100000001202611270930000009"))

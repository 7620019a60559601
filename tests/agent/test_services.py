"""The agent's endpoints for refunds and settlements, the queue, reports and printing, the
inpatient stay, wristbands and bedside executions — against the reference HIS (FHIR),
the reference bank and insurer (SOAP) on loopback, and the PDF page printer.

Each: the happy path, a role that may not (nothing done), and 501 naming the capability
when the configuration lacks it (nothing done either).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hcm_bank_soap import BankSoap
from hcm_bank_soap.reference import SoapServer
from hcm_bank_soap.reference import serve as serve_bank
from hcm_his_fhir import FhirHis
from hcm_his_reference import ReferenceHis
from hcm_insurance_soap import InsuranceSoap
from hcm_insurance_soap.reference import serve as serve_insurer

from hcmiddleware import Middleware
from hcmiddleware.agent import create_app
from hcmiddleware.card.emulator import EmulatedCard

from .conftest import HOSPITAL, Agent, agent_config
from .test_agent import CARD_NUMBER, ID_NUMBER, problem


@dataclass
class Site:
    """The agent of a hospital with its HIS, bank, insurer and page printer."""

    agent: Agent
    his: ReferenceHis
    bank: SoapServer
    pdf: Path

    @property
    def mw(self) -> Middleware:
        return self.agent.mw

    def journal_keys(self) -> list[str]:
        return [m.idempotency_key for m in self.mw.journal.entries()]


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    bank = serve_bank(tmp_path / "bank-ledger.db")
    bank.service.ledger.bind(CARD_NUMBER, "6222000011112222", ID_NUMBER)  # type: ignore[attr-defined]
    insurer = serve_insurer(tmp_path / "insurer-ledger.db")
    try:
        with ReferenceHis(tmp_path / "his.db", hospital_code=HOSPITAL) as his:
            plugins = {
                "enabled": [],
                "his-fhir": {"base_url": his.fhir_url, "timeout": 2.0, "attempts": 2},
                "bank-soap": {"wsdl": bank.wsdl_url, "timeout": 2.0},
                "insurance-soap": {"wsdl": insurer.wsdl_url, "timeout": 2.0},
            }
            config, tokens = agent_config(
                tmp_path / "hcm-data",
                plugins=plugins,
                sections={"printing": {"pdf_dir": str(tmp_path / "pdf"), "receipts": False}},
            )
            objects = {
                "his-fhir": FhirHis(),
                "bank-soap": BankSoap(),
                "insurance-soap": InsuranceSoap(),
            }
            with Middleware(config, plugins=objects) as mw, TestClient(create_app(mw)) as client:
                yield Site(Agent(mw, client, tokens), his, bank, tmp_path / "pdf")
                client.app.state.agent.close()  # type: ignore[attr-defined]
    finally:
        insurer.stop()
        bank.stop()


def _patient(site: Site) -> dict[str, Any]:
    """The sample card's holder, enrolled by hand and registered in the HIS."""
    a = site.agent
    resident = a.post(
        "/v1/residents",
        json={"name": "王堃喆", "sex": 1, "birth_date": "1985-03-12", "id_number": ID_NUMBER,
              "card_number": CARD_NUMBER},
    )  # fmt: skip
    assert resident.status_code == 201, resident.text
    patient = a.post("/v1/his/patients", json={"resident_id": resident.json()["resident_id"]})
    assert patient.status_code == 200, patient.text
    body: dict[str, Any] = patient.json()
    return body


def _admit(site: Site, patient: dict[str, Any], bed: str = "12") -> dict[str, Any]:
    now = dt.datetime.now().replace(second=0, microsecond=0)
    request = {"department_code": "NEI", "ward": "5A", "bed": bed,
               "admitted_at": now.isoformat(), "request_id": f"adm-{bed}"}  # fmt: skip
    made = site.agent.post("/v1/his/admissions", json={"patient": patient, "request": request})
    assert made.status_code == 201, made.text
    body: dict[str, Any] = made.json()
    return body


def _money(site: Site, path: str, who: str = "till", **body: Any) -> Any:
    return site.agent.post(f"/v1/journal/{path}", who, json=body)


# --- money ----------------------------------------------------------------------------


def test_refund_by_key_history_and_what_is_left(site: Site) -> None:
    assert (
        _money(site, "top-up", key="t-1", card_number=CARD_NUMBER, amount="100.00").json()["state"]
        == "confirmed"
    )
    paid = _money(site, "pay", key="p-1", card_number=CARD_NUMBER, amount="50.00").json()
    assert paid["state"] == "confirmed"
    body = {"key": "r-1", "card_number": CARD_NUMBER, "amount": "20.00",
            "original_transaction_id": paid["transaction_id"]}  # fmt: skip
    refunded = _money(site, "refund", **body)
    assert refunded.status_code == 200, refunded.text
    moved = refunded.json()
    assert (moved["kind"], moved["state"], moved["amount"]) == ("refund", "confirmed", "20.00")
    assert moved["original_transaction_id"] == paid["transaction_id"]
    # the same request again is the same refund: nothing moves twice
    again = _money(site, "refund", **body).json()
    assert again["transaction_id"] == moved["transaction_id"]
    ledger = site.bank.service.ledger  # type: ignore[attr-defined]
    assert ledger.balance(CARD_NUMBER) == Decimal("70.00")
    left = site.agent.get(f"/v1/journal/{paid['transaction_id']}/refundable", "till").json()
    assert Decimal(left["refundable"]) == Decimal("30.00")
    # more than is left is refused before anything is sent
    over = _money(site, "refund", **{**body, "key": "r-2", "amount": "30.01"})
    problem(over, 422, "RefundRefusedError")
    assert "r-2" not in site.journal_keys()
    found = site.agent.get("/v1/journal/by-key/r-1", "till").json()
    assert found["transaction_id"] == moved["transaction_id"]
    problem(site.agent.get("/v1/journal/by-key/r-9", "till"), 404, "UnknownTransactionError")
    steps = site.agent.get(f"/v1/journal/{moved['transaction_id']}/history", "till").json()
    assert [s["state"] for s in steps][-1] == "confirmed"
    assert steps[0]["state"] == "pending"


def test_settle_and_cancel_with_the_insurer(site: Site) -> None:
    charges = [
        {"charge_id": f"V1-c{i}", "patient_id": "P1", "visit_id": "V1", "item_code": f"I{i}",
         "item_name": "item", "quantity": "1", "unit_price": a, "amount": a}
        for i, a in enumerate(("60.00", "40.00"))
    ]  # fmt: skip
    body = {"key": "s-1", "scheme": "basic", "insured_id": ID_NUMBER, "patient_id": "P1",
            "visit_id": "V1", "charges": charges, "total": "100.00"}  # fmt: skip
    settled = _money(site, "settle", **body)
    assert settled.status_code == 200, settled.text
    moved = settled.json()
    assert (moved["channel"], moved["kind"], moved["state"]) == ("insurer", "settle", "confirmed")
    assert Decimal(moved["fund_paid"]) + Decimal(moved["patient_paid"]) == Decimal("100.00")
    assert _money(site, "settle", **body).json()["transaction_id"] == moved["transaction_id"]
    # a total that is not the charges' sum is refused before anything is sent
    problem(_money(site, "settle", **{**body, "key": "s-2", "total": "99.00"}), 422, "AmountError")
    cancel = {"key": "c-1", "settlement_id": moved["settlement_id"]}
    cancelled = _money(site, "cancel-settlement", **cancel)
    assert cancelled.status_code == 200, cancelled.text
    assert (cancelled.json()["kind"], cancelled.json()["state"]) == ("cancel", "confirmed")
    problem(
        _money(site, "cancel-settlement", key="c-2", settlement_id=moved["settlement_id"]),
        409,
        "IdempotencyConflictError",
    )
    assert site.journal_keys() == ["s-1", "c-1"]


@pytest.mark.parametrize(
    ("path", "body", "operation"),
    [
        ("refund", {"key": "r", "card_number": CARD_NUMBER, "amount": "1.00",
                    "original_transaction_id": "T1"}, "journal.refund"),
        ("settle", {"key": "s", "scheme": "basic", "insured_id": "I1", "patient_id": "P1",
                    "visit_id": "V1", "charges": [{"charge_id": "c", "patient_id": "P1",
                    "visit_id": "V1", "item_code": "I", "item_name": "i", "quantity": "1",
                    "unit_price": "1.00", "amount": "1.00"}], "total": "1.00"},
         "journal.settle"),
        ("cancel-settlement", {"key": "c", "settlement_id": "S1"}, "journal.cancel_settlement"),
        ("top-up", {"key": "t", "card_number": CARD_NUMBER, "amount": "1.00"}, "journal.top_up"),
    ],
)  # fmt: skip
def test_a_role_that_may_not_move_money_moves_none(
    site: Site, path: str, body: dict[str, Any], operation: str
) -> None:
    refused = problem(_money(site, path, "desk", **body), 403, "AccessDeniedError")
    assert (refused["role"], refused["operation"]) == ("registration", operation)
    assert site.journal_keys() == []
    (entry,) = site.mw.audit.entries(action="access.refused")
    assert entry.details["operation"] == operation


# --- what the configuration lacks: 501, nothing done --------------------------------------

_CHARGE = {"charge_id": "c", "patient_id": "P1", "visit_id": "V1", "item_code": "I",
           "item_name": "i", "quantity": "1", "unit_price": "1.00", "amount": "1.00"}  # fmt: skip
_PATIENT = {"hospital_code": HOSPITAL, "patient_id": "P1", "resident_id": "R1"}
_STAY = {"admission_id": "A1", "patient_id": "P1", "ward": "5A", "bed": "12",
         "admitted_at": "2026-01-05T08:00:00"}  # fmt: skip


@pytest.mark.parametrize(
    ("who", "path", "body", "capability", "hook"),
    [
        ("till", "/v1/journal/top-up", {"key": "k", "card_number": CARD_NUMBER,
         "amount": "1.00"}, "bank.payments", "hcm_bank_top_up"),
        ("till", "/v1/journal/pay", {"key": "k", "card_number": CARD_NUMBER,
         "amount": "1.00"}, "bank.payments", "hcm_bank_pay"),
        ("till", "/v1/journal/refund", {"key": "k", "card_number": CARD_NUMBER,
         "amount": "1.00", "original_transaction_id": "T1"}, "bank.payments",
         "hcm_bank_refund"),
        ("till", "/v1/journal/settle", {"key": "k", "scheme": "basic", "insured_id": "I1",
         "patient_id": "P1", "visit_id": "V1", "charges": [_CHARGE], "total": "1.00"},
         "insurance.settlement", "hcm_insurance_settle"),
        ("till", "/v1/journal/cancel-settlement", {"key": "k", "settlement_id": "S1"},
         "insurance.settlement", "hcm_insurance_cancel"),
        ("till", "/v1/his/deposits", {"key": "k", "card_number": CARD_NUMBER,
         "amount": "1.00", "admission": _STAY}, "bank.payments", "hcm_bank_pay"),
        ("desk", "/v1/his/admissions", {"patient": _PATIENT, "request": {
         "department_code": "NEI", "ward": "5A", "bed": "12",
         "admitted_at": "2026-01-05T08:00:00", "request_id": "r1"}}, "his.inpatient",
         "hcm_his_admit"),
        ("till", "/v1/his/bill", _STAY, "his.inpatient", "hcm_his_inpatient_bill"),
        ("till", "/v1/his/discharge", _STAY, "his.inpatient", "hcm_his_inpatient_bill"),
        ("doc", "/v1/his/reports/print?visit_id=V1", _PATIENT, "printing", "hcm_print"),
    ],
)  # fmt: skip
def test_a_capability_the_config_lacks_is_501_and_nothing_is_done(
    agent: Agent, who: str, path: str, body: dict[str, Any], capability: str, hook: str
) -> None:
    # the plain agent: the sample HIS (outpatient only), no bank, no insurer, no printer
    refused = problem(agent.post(path, who, json=body), 501, "NoAdapterError")
    assert (refused["capability"], refused["hook"]) == (capability, hook)
    assert capability in refused["detail"]
    assert agent.mw.journal.entries() == []


def test_a_deposit_the_his_cannot_record_takes_no_money(tmp_path: Path) -> None:
    # a bank but an HIS without stays: refused before the payment
    bank = serve_bank(tmp_path / "bank-ledger.db")
    try:
        config, tokens = agent_config(
            tmp_path / "d", plugins={"enabled": [], "bank-soap": {"wsdl": bank.wsdl_url}}
        )
        with (
            Middleware(config, plugins={"bank-soap": BankSoap()}) as mw,
            TestClient(create_app(mw)) as client,
        ):
            body = {"key": "k", "card_number": CARD_NUMBER, "amount": "1.00", "admission": _STAY}
            answer = client.post(
                "/v1/his/deposits", json=body, headers={"Authorization": f"Bearer {tokens['till']}"}
            )
            refused = problem(answer, 501, "NoAdapterError")
            assert (refused["capability"], refused["hook"]) == (
                "his.inpatient",
                "hcm_his_record_deposit",
            )
            assert mw.journal.entries() == []
            client.app.state.agent.close()  # type: ignore[attr-defined]
    finally:
        bank.stop()


# --- the inpatient stay ---------------------------------------------------------------


def test_admission_deposit_bill_discharge_and_the_band(site: Site) -> None:
    a = site.agent
    patient = _patient(site)
    problem(
        a.post("/v1/his/admissions", "nurse", json={"patient": patient, "request": {
            "department_code": "NEI", "ward": "5A", "bed": "12",
            "admitted_at": "2026-01-05T08:00:00", "request_id": "x"}}),
        403, "AccessDeniedError",
    )  # fmt: skip
    stay = _admit(site, patient)
    assert _admit(site, patient)["admission_id"] == stay["admission_id"]  # once per request
    bind = {"wristband_id": "WB-0001", "admission": stay, "card_number": CARD_NUMBER,
            "kind": "active"}  # fmt: skip
    band = a.post("/v1/ward/bands", json=bind)
    assert band.status_code == 201, band.text
    assert band.json()["admission_id"] == stay["admission_id"]
    # the bill shows the first bed day; discharging now is refused, nothing discharged
    owed = a.post("/v1/his/bill", "till", json=stay).json()
    assert Decimal(owed["balance"]) > 0
    refused = problem(a.post("/v1/his/discharge", "till", json=stay), 422, "DischargeRefusedError")
    assert Decimal(refused["balance"]) == Decimal(owed["balance"])
    assert site.his.store.admission(stay["admission_id"])["discharged_at"] is None
    # a registration desk takes no deposit; nothing is paid
    body = {"key": "dep-1", "card_number": CARD_NUMBER, "amount": "500.00", "admission": stay}
    denied = problem(a.post("/v1/his/deposits", "desk", json=body), 403, "AccessDeniedError")
    assert denied["operation"] == "journal.pay"
    assert site.journal_keys() == []
    # the cashier: money on the card's account, then the deposit
    _money(site, "top-up", key="t-1", card_number=CARD_NUMBER, amount="1000.00")
    paid = a.post("/v1/his/deposits", "till", json=body)
    assert paid.status_code == 200, paid.text
    deposit = paid.json()
    assert deposit["movement"]["state"] == "confirmed"
    assert Decimal(deposit["admission"]["deposit_balance"]) == Decimal("500.00")
    # sent again (a lost answer): the same payment, recorded once
    again = a.post("/v1/his/deposits", "till", json=body).json()
    assert again["movement"]["transaction_id"] == deposit["movement"]["transaction_id"]
    assert len(site.his.store.deposits(stay["admission_id"])) == 1
    ledger = site.bank.service.ledger  # type: ignore[attr-defined]
    assert ledger.balance(CARD_NUMBER) == Decimal("500.00")
    # now the deposit covers the bill: discharge, and the band identifies nobody
    bill = a.post("/v1/his/bill", "till", json=deposit["admission"]).json()
    assert Decimal(bill["balance"]) < 0  # a refund is due
    done = a.post("/v1/his/discharge", "till", json=deposit["admission"])
    assert done.status_code == 200, done.text
    assert done.json()["admission_id"] == stay["admission_id"]
    assert site.his.store.admission(stay["admission_id"])["discharged_at"] is not None
    problem(a.get("/v1/ward/bands/WB-0001", "nurse"), 409, "WristbandReleasedError")
    (unbound,) = site.mw.audit.entries(action="ward.unbind")
    assert (unbound.user, unbound.role) == ("u-till", "cashier")
    # what is due back goes back through the journal, against the deposit
    due = -Decimal(done.json()["final_bill"]["balance"])
    back = _money(site, "refund", key="dep-1-back", card_number=CARD_NUMBER, amount=str(due),
                  original_transaction_id=deposit["movement"]["transaction_id"])  # fmt: skip
    assert back.json()["state"] == "confirmed"
    assert ledger.balance(CARD_NUMBER) == Decimal("500.00") + due


# --- the queue, reports and printing --------------------------------------------------


def test_queue_reports_and_printing_them(site: Site, card: EmulatedCard) -> None:
    a = site.agent
    patient = _patient(site)
    start = dt.datetime.now().replace(second=0, microsecond=0)
    request = {"department_code": "NEI", "slot_start": start.isoformat(),
               "slot_end": (start + dt.timedelta(minutes=30)).isoformat(),
               "request_id": "visit-1"}  # fmt: skip
    registered = a.post("/v1/his/visits", json={"patient": patient, "request": request})
    assert registered.status_code == 201, registered.text
    visit = registered.json()
    position = a.post("/v1/his/queue", json=visit)
    assert position.status_code == 200, position.text
    assert position.json()["queue_number"] == visit["queue_number"]
    assert position.json()["ahead"] >= 0
    # reports are clinical: the doctor sees them once the patient is identified here
    problem(a.post("/v1/his/reports", "desk", params={"visit_id": visit["registration_id"]},
                   json=patient), 403, "AccessDeniedError")  # fmt: skip
    params = {"visit_id": visit["registration_id"]}
    problem(a.post("/v1/his/reports", "doc", params=params, json=patient), 403,
            "NotIdentifiedHereError")  # fmt: skip
    assert a.get("/v1/card", "doc", params={"parts": "identity"}).status_code == 200
    listed = a.post("/v1/his/reports", "doc", params=params, json=patient)
    assert listed.status_code == 200, listed.text
    (report,) = listed.json()
    assert report["status"] == "pending"
    assert a.post("/v1/his/reports/print", "doc", params=params, json=patient).json() == []
    site.his.store.issue_report(report["report_id"], "血常规正常")
    printed = a.post("/v1/his/reports/print", "doc", params=params, json=patient)
    assert printed.status_code == 200, printed.text
    (job,) = printed.json()
    assert (job["state"], job["document_id"], job["reprint"]) == (
        "printed", report["report_id"], False
    )  # fmt: skip
    assert list(site.pdf.glob("*.pdf"))
    # printed once; asked again it is only printed with again=true, as a copy
    assert a.post("/v1/his/reports/print", "doc", params=params, json=patient).json() == []
    copy = a.post("/v1/his/reports/print", "doc", params={**params, "again": "true"},
                  json=patient).json()  # fmt: skip
    assert [j["reprint"] for j in copy] == [True]
    (entry, *_) = site.mw.audit.entries(action="print.printed")
    assert (entry.user, entry.role) == ("u-doc", "doctor")
    # a cashier may not print them: refused before the HIS is asked
    refused = problem(a.post("/v1/his/reports/print", "till", params=params, json=patient),
                      403, "AccessDeniedError")  # fmt: skip
    assert refused["operation"] == "receipts.reports"


def test_charges_paid_needs_a_confirmed_payment(site: Site) -> None:
    a = site.agent
    patient = _patient(site)
    start = dt.datetime.now().replace(second=0, microsecond=0)
    request = {"department_code": "NEI", "slot_start": start.isoformat(),
               "slot_end": (start + dt.timedelta(minutes=30)).isoformat(),
               "request_id": "visit-2"}  # fmt: skip
    visit = a.post("/v1/his/visits", json={"patient": patient, "request": request}).json()
    charges = a.post("/v1/his/charges", "till", params={"visit_id": visit["registration_id"]},
                     json=patient).json()  # fmt: skip
    total = sum(Decimal(c["amount"]) for c in charges)
    ids = [c["charge_id"] for c in charges]
    top = _money(site, "top-up", key="t-1", card_number=CARD_NUMBER, amount="500.00").json()
    body = {"patient": patient, "charge_ids": ids, "transaction_id": top["transaction_id"]}
    problem(a.post("/v1/his/charges/paid", "till", json=body), 422, "MoneyError")
    paid = _money(site, "pay", key="p-1", card_number=CARD_NUMBER, amount=str(total)).json()
    body["transaction_id"] = paid["transaction_id"]
    problem(a.post("/v1/his/charges/paid", "desk", json=body), 403, "AccessDeniedError")
    done = a.post("/v1/his/charges/paid", "till", json=body)
    assert done.status_code == 200, done.text
    assert done.json() == {"transaction_id": paid["transaction_id"], "charge_ids": ids}
    after = a.post("/v1/his/charges", "till", params={"visit_id": visit["registration_id"]},
                   json=patient).json()  # fmt: skip
    assert all(c["paid"] for c in after)


# --- wristbands and the bedside -------------------------------------------------------


def test_band_label_move_rebind_and_an_execution(site: Site) -> None:
    a = site.agent
    patient = _patient(site)
    stay = _admit(site, patient)
    bind = {"wristband_id": "WB-0001", "admission": stay, "card_number": CARD_NUMBER}
    problem(a.post("/v1/ward/bands", "till", json=bind), 403, "AccessDeniedError")
    assert a.post("/v1/ward/bands", json=bind).status_code == 201
    assert a.post("/v1/ward/bands", json=bind).json()["wristband_id"] == "WB-0001"  # the same
    label = a.get("/v1/ward/bands/WB-0001/label")
    assert label.status_code == 200
    assert label.headers["content-type"].startswith("text/plain")
    assert label.text.startswith("^XA")
    assert "WB-0001" in label.text
    assert a.get("/v1/ward/bands/WB-0001/label", "till").status_code == 403
    problem(a.get("/v1/ward/bands/WB-9999", "nurse"), 404, "UnknownWristbandError")
    of_card = a.post("/v1/ward/bands/of-card", "nurse", json={"card_number": CARD_NUMBER})
    assert of_card.json()["wristband_id"] == "WB-0001"
    moved = a.post("/v1/ward/bands/WB-0001/move", "nurse", json={"ward": "5A", "bed": "14"})
    assert moved.status_code == 204
    assert a.get("/v1/ward/bands/WB-0001", "nurse").json()["bed"] == "14"
    made = a.post("/v1/ward/bands/WB-0001/rebind", json={"new_wristband_id": "WB-0002"})
    assert made.status_code == 200, made.text
    problem(a.get("/v1/ward/bands/WB-0001", "nurse"), 409, "WristbandDeadError")
    # the infusion, check by check, on the new band
    orders = a.get("/v1/ward/bands/WB-0002/orders", "nurse").json()
    drip = next(o for o in orders if o["route"] == "IVGTT")
    scan = {"wristband_id": "WB-0002", "nurse_id": "N-007", "order_id": drip["order_id"],
            "bed": "14", "drug_code": drip["code"], "dose": drip["dose"],
            "concentration": drip["concentration"], "route": drip["route"]}  # fmt: skip
    problem(a.post("/v1/ward/executions", "desk", json=scan), 403, "AccessDeniedError")
    started = a.post("/v1/ward/executions", "nurse", json=scan)
    assert started.status_code == 201, started.text
    execution = started.json()
    assert execution["state"] in ("during", "after")
    while execution["state"] in ("during", "after"):
        checked = a.post(f"/v1/ward/executions/{execution['execution_id']}/check", "nurse",
                         json=scan)  # fmt: skip
        assert checked.status_code == 200, checked.text
        execution = checked.json()
    assert (execution["state"], execution["his_state"]) == ("done", "recorded")
    assert a.get(f"/v1/ward/executions/{execution['execution_id']}", "nurse").json() == execution
    listed = a.get(f"/v1/ward/admissions/{stay['admission_id']}/executions", "nurse").json()
    assert [e["execution_id"] for e in listed] == [execution["execution_id"]]
    # a nursing order begun and given up
    nursing = next(o for o in orders if o["kind"] == "nursing")
    plain = {**scan, "order_id": nursing["order_id"], "drug_code": None, "dose": None,
             "concentration": None, "route": None}  # fmt: skip
    begun = a.post("/v1/ward/executions", "nurse", json=plain)
    assert begun.status_code == 201, begun.text
    assert begun.json()["state"] == "after"  # a nursing order: checked before and after
    gave_up = a.post(f"/v1/ward/executions/{begun.json()['execution_id']}/abandon", "nurse",
                     json={"reason": "patient asleep"})  # fmt: skip
    assert gave_up.status_code == 200, gave_up.text
    assert gave_up.json()["state"] == "abandoned"
    (abandoned,) = [e for e in site.mw.audit.entries(action="ward.abandon") if e.details]
    assert (abandoned.actor, abandoned.role, abandoned.details["reason"]) == (
        "u-nurse", "nurse", "patient asleep"
    )  # fmt: skip
    unbound = a.post("/v1/ward/bands/WB-0002/unbind", json={"reason": "transferred"})
    assert unbound.json()["status"] == "released"


def test_the_new_endpoints_are_in_the_openapi_document(agent: Agent) -> None:
    doc = agent.client.get("/openapi.json").json()
    paths = doc["paths"]
    for path, method in (
        ("/v1/journal/refund", "post"), ("/v1/journal/settle", "post"),
        ("/v1/journal/cancel-settlement", "post"), ("/v1/his/queue", "post"),
        ("/v1/his/reports", "post"), ("/v1/his/reports/print", "post"),
        ("/v1/his/admissions", "post"), ("/v1/his/deposits", "post"),
        ("/v1/his/bill", "post"), ("/v1/his/discharge", "post"), ("/v1/ward/bands", "post"),
        ("/v1/ward/bands/{wristband_id}/label", "get"), ("/v1/ward/executions", "post"),
    ):  # fmt: skip
        assert method in paths[path], path
        assert "501" in paths[path][method]["responses"]
    schemas = doc["components"]["schemas"]
    for model in (
        "RefundRequest", "SettleRequest", "DepositOut", "Admission", "Bill", "Discharge",
        "QueuePosition", "Report", "PrintJobOut", "WristbandBinding",
    ):  # fmt: skip
        # a model with fields serialised otherwise than read comes as -Input and -Output
        assert model in schemas or f"{model}-Input" in schemas, model


# --- the card's life, the e-card, the ward kiosk, merges -------------------------------


def _enrol(agent: Agent) -> str:
    made = agent.post(
        "/v1/residents",
        json={"name": "王堃喆", "sex": 1, "birth_date": "1985-03-12", "id_number": ID_NUMBER,
              "card_number": CARD_NUMBER},
    )  # fmt: skip
    assert made.status_code == 201, made.text
    return str(made.json()["resident_id"])


def test_card_state_check_and_a_loss_report(agent: Agent) -> None:
    resident_id = _enrol(agent)
    card = {"card_number": CARD_NUMBER}
    assert agent.post("/v1/cards/state", "nurse", json=card).json() == {"state": "active"}
    assert agent.post("/v1/cards/check", "till", json={**card, "for_payment": True}).json() == {
        "ok": True, "state": "active"
    }  # fmt: skip
    report = {**card, "resident_id": resident_id, "id_number": ID_NUMBER}
    refused = problem(agent.post("/v1/cards/report-loss", "nurse", json=report), 403,
                      "AccessDeniedError")  # fmt: skip
    assert refused["operation"] == "cards.report_loss"
    wrong = {**report, "id_number": "11010519491231002X"}
    problem(agent.post("/v1/cards/report-loss", json=wrong), 422, "IdentityError")
    assert agent.post("/v1/cards/state", json=card).json() == {"state": "active"}
    problem(agent.post("/v1/cards/report-loss", json={**report, "id_number": None,
                                                      "face": "not base64!"}),
            422, "AgentRequestError")  # fmt: skip
    done = agent.post("/v1/cards/report-loss", json=report)
    assert done.status_code == 200, done.text
    assert done.json()["state"] == "loss_reported"
    assert CARD_NUMBER not in done.text  # masked
    assert agent.post("/v1/cards/state", json=card).json() == {"state": "loss_reported"}
    body = problem(agent.post("/v1/cards/check", "till", json=card), 409, "CardRefusedError")
    assert body["state"] == "loss_reported"


def test_ecard_issue_bind_code_and_verify(tmp_path: Path) -> None:
    from hcmiddleware.testing import ehc_keys

    config, tokens = agent_config(
        tmp_path / "d", sections={"ehc": ehc_keys(tmp_path / "ehc", algorithm="ed25519")}
    )
    with Middleware(config) as mw, TestClient(create_app(mw)) as client:
        agent = Agent(mw, client, tokens)
        resident_id = _enrol(agent)
        problem(agent.post("/v1/ehc/issue", "nurse", json={"resident_id": resident_id}), 403,
                "AccessDeniedError")  # fmt: skip
        issued = agent.post("/v1/ehc/issue", json={"resident_id": resident_id})
        assert issued.status_code == 201, issued.text
        ecard_id = issued.json()["ecard_id"]
        again = agent.post("/v1/ehc/bind", json={"resident_id": resident_id, "ecard_id": ecard_id})
        assert again.json()["resident_id"] == resident_id
        code = agent.post("/v1/ehc/code", json={"ecard_id": ecard_id}).json()["text"]
        checked = agent.post("/v1/ehc/verify", json={"text": code})
        assert checked.status_code == 200, checked.text
        assert checked.json()["resident"]["resident_id"] == resident_id
        static = agent.post("/v1/ehc/code", json={"ecard_id": ecard_id, "kind": "static"})
        assert static.json()["text"] != code
        client.app.state.agent.close()  # type: ignore[attr-defined]


def test_issuing_an_ecard_without_an_issuer_is_501(agent: Agent) -> None:
    resident_id = _enrol(agent)
    body = problem(agent.post("/v1/ehc/issue", json={"resident_id": resident_id}), 501,
                   "NoAdapterError")  # fmt: skip
    assert body["capability"] == "ehc.issuing"


def test_the_ward_kiosk_summary_and_merge_history(site: Site) -> None:
    a = site.agent
    patient = _patient(site)
    stay = _admit(site, patient)
    bind = {"wristband_id": "WB-0001", "admission": stay, "card_number": CARD_NUMBER}
    assert a.post("/v1/ward/bands", json=bind).status_code == 201
    problem(a.post("/v1/ward/summary", "till", json={"wristband_id": "WB-0001"}), 403,
            "AccessDeniedError")  # fmt: skip
    summary = a.post("/v1/ward/summary", "nurse", json={"card_number": CARD_NUMBER})
    assert summary.status_code == 200, summary.text
    assert summary.json()["wristband_id"] == "WB-0001"
    assert any(d["route"] == "IVGTT" for d in summary.json()["drugs"])
    problem(a.post("/v1/ward/summary", "nurse", json={}), 422, "WardError")
    history = a.get(f"/v1/residents/{patient['resident_id']}/history", "audit")
    assert (history.status_code, history.json()) == (200, [])
    problem(a.get(f"/v1/residents/{patient['resident_id']}/history", "desk"), 403,
            "AccessDeniedError")  # fmt: skip

"""The FHIR R4 adapter against the reference HIS over real HTTP on loopback."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hcm_his_fhir import FhirClient, FhirHis, RetryPolicy
from hcm_his_reference import ReferenceHis

from hcmiddleware import Middleware
from hcmiddleware.errors import HisError, HisProtocolError, HisRejectedError, HisUnavailableError
from hcmiddleware.models import (
    AdmissionRequest,
    Deposit,
    HospitalPatient,
    OrderExecution,
    RegistrationRequest,
    Resident,
    Sex,
)
from hcmiddleware.registry import installed_plugins
from hcmiddleware.testing.conformance import HisConformance

HOSPITAL = "H0001"


@pytest.fixture
def reference_his(tmp_path: Any) -> Iterator[ReferenceHis]:
    with ReferenceHis(tmp_path / "his.db", hospital_code=HOSPITAL) as his:
        yield his


class ReferenceFaults:
    """The HisFaults switches, on the reference HIS's FHIR front."""

    def __init__(self, his: ReferenceHis, slow: float) -> None:
        self.his = his
        self.delay = slow

    def refuse(self) -> None:
        self.his.faults.set(nak="AE")

    def down(self) -> None:
        self.his.faults.set(drop="before")

    def slow(self) -> None:
        self.his.faults.set(delay=self.delay)

    def garbage(self) -> None:
        self.his.faults.set(garbage=True)

    def lose_next_write_answer(self) -> None:
        self.his.faults.set(drop="after", writes_only=True, times=1)

    def clear(self) -> None:
        self.his.faults.clear()


class TestFhirConformance(HisConformance):
    plugin_name = "his-fhir"

    @pytest.fixture
    def plugin(self) -> object:
        return installed_plugins()["his-fhir"].entry_point.load()()

    @pytest.fixture
    def plugin_settings(self, reference_his: ReferenceHis) -> dict[str, Any]:
        return {"base_url": reference_his.fhir_url, "timeout": 0.5, "attempts": 2, "backoff": 0.01}

    @pytest.fixture
    def his_faults(self, reference_his: ReferenceHis) -> ReferenceFaults:
        return ReferenceFaults(reference_his, slow=0.8)


# --- the adapter on its own: resources, retries, bad input -------------------------------

RESIDENT = Resident(
    resident_id="R-0001",
    name="欧阳娜娜",
    sex=Sex.FEMALE,
    birth_date=date(1992, 5, 17),
    id_number="110105199205170028",
)
NOW = datetime(2026, 11, 27, 9, 30, 0)


@pytest.fixture
def adapter(
    reference_his: ReferenceHis, hcm_make_middleware: Any
) -> Callable[..., tuple[Middleware, FhirHis]]:
    def make(**overrides: Any) -> tuple[Middleware, FhirHis]:
        settings = {
            "base_url": reference_his.fhir_url,
            "timeout": 0.5,
            "attempts": 3,
            "backoff": 0.01,
            **overrides,
        }
        plugin = FhirHis()
        mw = hcm_make_middleware(plugins={"his-fhir": plugin}, settings={"his-fhir": settings})
        return mw, plugin

    return make


def _sent(plugin: FhirHis) -> list[tuple[str, str, dict[str, Any] | None]]:
    """Record every request the plugin's client makes: method, path, resource."""
    client = plugin.client
    assert client is not None
    seen: list[tuple[str, str, dict[str, Any] | None]] = []
    original = client.request

    def spy(method: str, path: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
        seen.append((method, path, kwargs.get("resource")))
        return original(method, path, **kwargs)

    client.request = spy  # type: ignore[method-assign]
    return seen


def _patients(his: ReferenceHis) -> int:
    return len(his.store._all("SELECT patient_id FROM patient"))


def _journey(mw: Middleware) -> None:
    """Every hook once: outpatient visit, payment, reports, a stay to discharge."""
    hooks = mw.hooks
    patient = hooks.hcm_his_register_patient(resident=RESIDENT, card=None, hospital_code=HOSPITAL)
    start = datetime.now().replace(microsecond=0, second=0) + timedelta(hours=2)
    made = []
    for kind in ("appointment", "registration"):
        reg = hooks.hcm_his_register_visit(
            patient=patient,
            request=RegistrationRequest(
                kind=kind,
                department_code="NEI",
                doctor_code="D01",
                slot_start=start,
                slot_end=start + timedelta(minutes=30),
                fee=Decimal("12.00"),
                request_id=f"{kind}-1",
            ),
        )
        made.append(reg)
    first = made[0]
    position = hooks.hcm_his_queue_position(registration=reg)
    assert position.ahead == 1, "the appointment is ahead in the same department and day"
    assert hooks.hcm_his_queue_position(registration=first).ahead == 0
    orders = hooks.hcm_his_list_orders(patient=patient, visit_id=reg.registration_id)
    assert {o.kind for o in orders} == {"lab", "drug"}
    drug = next(o for o in orders if o.kind == "drug")
    assert (drug.dose, drug.route, drug.frequency) == ("0.5 g", "PO", "TID")
    assert {o.ordered_by for o in orders} == {"D01"}, "the visit's doctor ordered them"
    charges = hooks.hcm_his_list_charges(patient=patient, visit_id=reg.registration_id)
    assert sum(c.amount for c in charges) == Decimal("12.00") + Decimal("25.00") + Decimal("18.60")
    hooks.hcm_his_charges_paid(
        patient=patient, charge_ids=[c.charge_id for c in charges], transaction_id="T-1"
    )
    hooks.hcm_his_list_reports(patient=patient, visit_id=reg.registration_id)
    stay = hooks.hcm_his_admit(
        patient=patient,
        request=AdmissionRequest(
            department_code="NEI", ward="W3", bed="07", admitted_at=NOW, request_id="ADM-1"
        ),
    )
    orders = hooks.hcm_his_list_orders(patient=patient, visit_id=stay.admission_id)
    infusion = next(o for o in orders if o.kind == "drug")
    assert infusion.concentration == "0.9%"
    nursing = next(o for o in orders if o.kind == "nursing")
    hooks.hcm_his_order_executed(  # an order done: a Task
        execution=OrderExecution(
            order_id=nursing.order_id,
            admission_id=stay.admission_id,
            wristband_id="WB-7",
            executed_by="N01",
            executed_at=NOW,
            checks={"name": True, "bed": True},
        )
    )
    hooks.hcm_his_order_executed(  # a drug given: a MedicationAdministration
        execution=OrderExecution(
            order_id=infusion.order_id,
            admission_id=stay.admission_id,
            wristband_id="WB-7",
            executed_by="N01",
            second_nurse="N02",
            executed_at=NOW,
            checks={"name": True, "drug": True, "dose": True},
            patient_id=patient.patient_id,
            drug_code=infusion.code,
            dose="250 ml",
            route="IVGTT",
        )
    )
    bill = hooks.hcm_his_inpatient_bill(admission=stay)
    stay = hooks.hcm_his_record_deposit(
        admission=stay,
        deposit=Deposit(
            deposit_id="D-1",
            admission_id=stay.admission_id,
            amount=bill.total,
            paid_at=NOW,
            transaction_id="T-2",
        ),
    )
    assert stay.deposit_balance == bill.total
    done = hooks.hcm_his_discharge(
        admission=stay, bill=hooks.hcm_his_inpatient_bill(admission=stay)
    )
    assert done.final_bill.balance == Decimal("0.00")


def test_every_resource_sent_validates_as_fhir_r4(adapter: Any) -> None:
    from fhir.resources.R4B import get_fhir_model_class

    mw, plugin = adapter()
    sent = _sent(plugin)
    _journey(mw)
    kinds = set()
    for _method, _path, resource in sent:
        if resource is None:
            continue
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
        kinds.add(resource["resourceType"])
    assert kinds == {
        "Patient",
        "Encounter",
        "Appointment",
        "Parameters",
        "Task",
        "MedicationAdministration",
    }
    searched = {path for method, path, _r in sent if method == "GET"}
    assert searched >= {"ServiceRequest", "MedicationRequest", "ChargeItem", "DiagnosticReport"}


def test_journey_lands_in_the_his(adapter: Any, reference_his: ReferenceHis) -> None:
    mw, _plugin = adapter()
    _journey(mw)
    store = reference_his.store
    patient = store.find_patient(resident_id=RESIDENT.resident_id)
    assert patient is not None
    assert (patient["name"], patient["sex"], patient["birth_date"], patient["id_number"]) == (
        "欧阳娜娜",
        "F",
        "1992-05-17",
        "110105199205170028",
    )
    visits = store._all("SELECT kind, fee, doctor FROM visit ORDER BY rowid")
    assert visits == [
        {"kind": "appointment", "fee": "12.00", "doctor": "D01"},
        {"kind": "registration", "fee": "12.00", "doctor": "D01"},
    ]
    stay = store.admission_by_request("ADM-1")
    assert stay is not None
    assert stay["admitted_at"] == NOW.isoformat(), "times keep the hospital's local time"
    assert stay["discharged_at"] is not None
    assert store._all("SELECT order_id, executed_at, executed_by FROM execution") == [
        {
            "order_id": f"{stay['admission_id']}-O1",
            "executed_at": NOW.isoformat(),
            "executed_by": "N01",
        },
        {
            "order_id": f"{stay['admission_id']}-O2",
            "executed_at": NOW.isoformat(),
            "executed_by": "N01",
        },
    ]


def test_the_his_refuses_an_administration_of_another_drug(
    adapter: Any, reference_his: ReferenceHis
) -> None:
    mw, _plugin = adapter()
    hooks = mw.hooks
    patient = hooks.hcm_his_register_patient(resident=RESIDENT, card=None, hospital_code=HOSPITAL)
    stay = hooks.hcm_his_admit(
        patient=patient,
        request=AdmissionRequest(
            department_code="NEI", ward="W3", bed="07", admitted_at=NOW, request_id="ADM-9"
        ),
    )
    drip = next(
        o
        for o in hooks.hcm_his_list_orders(patient=patient, visit_id=stay.admission_id)
        if o.kind == "drug"
    )
    given = OrderExecution(
        order_id=drip.order_id,
        admission_id=stay.admission_id,
        wristband_id="WB-7",
        executed_by="N01",
        executed_at=NOW,
        checks={"drug": True},
        patient_id=patient.patient_id,
        drug_code="GS500",
        dose="500 ml",
        route="IVGTT",
    )
    with pytest.raises(HisRejectedError) as caught:
        hooks.hcm_his_order_executed(execution=given)
    assert caught.value.code == "wrong-drug"
    assert reference_his.store.executions(drip.order_id) == []


def test_times_travel_with_the_hospitals_offset(adapter: Any) -> None:
    mw, plugin = adapter()
    sent = _sent(plugin)
    mw.hooks.hcm_his_admit(
        patient=mw.hooks.hcm_his_register_patient(
            resident=RESIDENT, card=None, hospital_code=HOSPITAL
        ),
        request=AdmissionRequest(
            department_code="NEI", ward="W3", bed="07", admitted_at=NOW, request_id="ADM-9"
        ),
    )
    encounter = next(r for _m, _p, r in sent if r and r["resourceType"] == "Encounter")
    assert encounter["period"]["start"] == "2026-11-27T09:30:00+08:00"


def test_operation_outcome_is_typed_with_its_code(adapter: Any) -> None:
    mw, _plugin = adapter()
    stranger = HospitalPatient(hospital_code=HOSPITAL, patient_id="NOBODY", resident_id="x")
    request = RegistrationRequest(
        department_code="NEI", slot_start=NOW, slot_end=NOW + timedelta(minutes=20), request_id="R1"
    )
    with pytest.raises(HisRejectedError) as caught:
        mw.hooks.hcm_his_register_visit(patient=stranger, request=request)
    assert (caught.value.status, caught.value.code) == ("404", "unknown-patient")
    assert caught.value.plugin == "his-fhir"  # type: ignore[attr-defined]


def test_refused_payment_pays_nothing(adapter: Any, reference_his: ReferenceHis) -> None:
    mw, _plugin = adapter()
    patient = mw.hooks.hcm_his_register_patient(
        resident=RESIDENT, card=None, hospital_code=HOSPITAL
    )
    reg = mw.hooks.hcm_his_register_visit(
        patient=patient,
        request=RegistrationRequest(
            department_code="NEI",
            slot_start=NOW,
            slot_end=NOW + timedelta(minutes=20),
            request_id="R1",
        ),
    )
    charges = mw.hooks.hcm_his_list_charges(patient=patient, visit_id=reg.registration_id)
    mw.hooks.hcm_his_charges_paid(
        patient=patient, charge_ids=[charges[0].charge_id], transaction_id="T-A"
    )
    with pytest.raises(HisRejectedError) as caught:
        mw.hooks.hcm_his_charges_paid(
            patient=patient, charge_ids=[c.charge_id for c in charges], transaction_id="T-B"
        )
    assert (caught.value.status, caught.value.code) == ("409", "already-paid")
    paid = [
        c.paid for c in mw.hooks.hcm_his_list_charges(patient=patient, visit_id=reg.registration_id)
    ]
    assert paid == [True, False]


def test_lost_answer_is_resent_and_creates_once(adapter: Any, reference_his: ReferenceHis) -> None:
    mw, plugin = adapter()
    assert plugin.client is not None
    reference_his.faults.set(drop="after", writes_only=True, times=1)
    before = plugin.client.sent
    patient = mw.hooks.hcm_his_register_patient(
        resident=RESIDENT, card=None, hospital_code=HOSPITAL
    )
    assert plugin.client.sent - before == 2, "one resend"
    assert _patients(reference_his) == 1
    found = mw.hooks.hcm_his_lookup_patient(resident=RESIDENT, hospital_code=HOSPITAL)
    assert found is not None
    assert found.patient_id == patient.patient_id


def test_retries_are_bounded(adapter: Any, reference_his: ReferenceHis) -> None:
    mw, _plugin = adapter(attempts=3)
    reference_his.faults.set(drop="before")
    before = reference_his.faults.requests
    with pytest.raises(HisUnavailableError) as caught:
        mw.hooks.hcm_his_register_patient(resident=RESIDENT, card=None, hospital_code=HOSPITAL)
    assert reference_his.faults.requests - before == 3
    assert "3 tries" in caught.value.message
    reference_his.faults.clear()
    assert _patients(reference_his) == 0


def test_server_not_listening_is_unavailable(hcm_make_middleware: Any) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mw = hcm_make_middleware(
        plugins={"his-fhir": FhirHis()},
        settings={
            "his-fhir": {
                "base_url": f"http://127.0.0.1:{port}/fhir",
                "attempts": 2,
                "backoff": 0.01,
            }
        },
    )
    with pytest.raises(HisUnavailableError) as caught:
        mw.hooks.hcm_his_lookup_patient(resident=RESIDENT, hospital_code=HOSPITAL)
    assert caught.value.plugin == "his-fhir"  # type: ignore[attr-defined]
    assert "cannot connect" in caught.value.message
    checks = {c.name: c.ok for name, c in mw.doctor() if name == "his-fhir"}
    assert checks == {"fhir": False, "retry budget": True}


def test_doctor_sees_an_r4_server(adapter: Any) -> None:
    mw, _plugin = adapter()
    checks = {c.name: c for name, c in mw.doctor() if name == "his-fhir"}
    assert checks["fhir"].ok is True
    assert "FHIR 4.0.1" in checks["fhir"].detail
    assert checks["retry budget"].ok is True


def test_garbage_answer_is_a_protocol_error(adapter: Any, reference_his: ReferenceHis) -> None:
    mw, _plugin = adapter(attempts=2)
    reference_his.faults.set(garbage=True)
    with pytest.raises(HisProtocolError, match="not FHIR JSON"):
        mw.hooks.hcm_his_lookup_patient(resident=RESIDENT, hospital_code=HOSPITAL)


def test_invalid_resource_is_never_sent(reference_his: ReferenceHis) -> None:
    client = FhirClient(reference_his.fhir_url, RetryPolicy(attempts=1))
    with pytest.raises(HisError, match="fails FHIR R4 validation"):
        client.request("POST", "Patient", resource={"resourceType": "Patient", "gender": 42})
    assert client.sent == 0
    client.close()


def test_server_refuses_invalid_fhir_with_an_operation_outcome(reference_his: ReferenceHis) -> None:
    answer = httpx.post(
        f"{reference_his.fhir_url}/Patient",
        content=b'{"resourceType": "Patient", "birthDate": "not a date"}',
        headers={"Content-Type": "application/fhir+json"},
    )
    assert answer.status_code == 400
    outcome = answer.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["details"]["coding"][0]["code"] == "invalid-resource"
    assert _patients(reference_his) == 0


def test_simultaneous_registrations_of_one_resident_make_one_patient(
    adapter: Any, reference_his: ReferenceHis
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    mw, _plugin = adapter()
    with ThreadPoolExecutor(max_workers=5) as pool:
        made = list(
            pool.map(
                lambda _: mw.hooks.hcm_his_register_patient(
                    resident=RESIDENT, card=None, hospital_code="H0001"
                ),
                range(5),
            )
        )
    assert len({p.patient_id for p in made}) == 1
    assert _patients(reference_his) == 1

"""``Middleware.his``: typed HIS calls, "no adapter" apart from "not found", contracts checked."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from hcmiddleware import Middleware, hookimpl
from hcmiddleware.errors import NoAdapterError, NoHandlerError, PluginResultError
from hcmiddleware.models import (
    HospitalPatient,
    Registration,
    RegistrationRequest,
    Resident,
    Sex,
)
from hcmiddleware.testing import HookRecorder

HOSPITAL = "H00000000001"


class PatientsOnly:
    """A HIS adapter that can look patients up but not register them."""

    def __init__(self) -> None:
        self.known: dict[str, str] = {}

    @hookimpl
    def hcm_his_lookup_patient(self, resident: Resident, hospital_code: str) -> Any:
        pid = self.known.get(resident.resident_id)
        if pid is None:
            return None
        return HospitalPatient(
            hospital_code=hospital_code, patient_id=pid, resident_id=resident.resident_id
        )


class FullHis(PatientsOnly):
    """Finds and registers patients, registers visits; counts what it is asked."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[str] = []
        self.visit_answer: object = "ok"

    @hookimpl
    def hcm_his_lookup_patient(self, resident: Resident, hospital_code: str) -> Any:
        self.asked.append("lookup")
        return super().hcm_his_lookup_patient(resident, hospital_code)

    @hookimpl
    def hcm_his_register_patient(self, resident: Resident, hospital_code: str) -> Any:
        self.asked.append("register")
        pid = self.known.setdefault(resident.resident_id, f"P{len(self.known) + 1:05d}")
        return HospitalPatient(
            hospital_code=hospital_code, patient_id=pid, resident_id=resident.resident_id
        )

    @hookimpl
    def hcm_his_register_visit(self, patient: HospitalPatient, request: RegistrationRequest) -> Any:
        if self.visit_answer != "ok":
            return self.visit_answer
        return Registration(
            registration_id="R1",
            patient_id=patient.patient_id,
            department_code=request.department_code,
            slot_start=request.slot_start,
            slot_end=request.slot_end,
        )

    @hookimpl
    def hcm_his_list_orders(self, patient: HospitalPatient, visit_id: str) -> Any:
        return [{"order_id": "O1"}]

    @hookimpl
    def hcm_his_charges_paid(
        self, patient: HospitalPatient, charge_ids: list[str], transaction_id: str
    ) -> Any:
        return False


def start(hcm_make_middleware: Any, **plugins: object) -> Middleware:
    mw: Middleware = hcm_make_middleware(plugins=plugins, middleware={"institution_code": HOSPITAL})
    return mw


def resident(mw: Middleware) -> Resident:
    return mw.residents.enrol(
        name="张三", sex=Sex.MALE, birth_date=dt.date(1980, 5, 4), record_id="desk-1"
    )


def visit(patient: HospitalPatient) -> RegistrationRequest:
    nine = dt.datetime(2026, 12, 3, 9, 0)
    return RegistrationRequest(
        department_code="NEI",
        slot_start=nine,
        slot_end=nine + dt.timedelta(minutes=30),
        request_id=f"req-{patient.patient_id}",
    )


def test_no_adapter_is_not_not_found(hcm_make_middleware: Any) -> None:
    mw = start(hcm_make_middleware)
    who = resident(mw)
    with pytest.raises(NoAdapterError) as caught:
        mw.his.find(who)
    assert caught.value.capability == "his.patients"
    assert caught.value.hook == "hcm_his_lookup_patient"
    assert isinstance(caught.value, NoHandlerError)  # callers of the older error still catch it
    assert "[plugins] enabled" in caught.value.hint
    assert not mw.his.provides("his.patients")

    mw = start(hcm_make_middleware, patients=PatientsOnly())
    assert mw.his.find(resident(mw)) is None  # asked and not found: no error


def test_half_a_capability_is_named(hcm_make_middleware: Any) -> None:
    mw = start(hcm_make_middleware, patients=PatientsOnly())
    who = resident(mw)
    with pytest.raises(NoAdapterError) as caught:
        mw.his.find_or_register(who)
    assert caught.value.partial == ("patients",)
    assert "'patients' implements part of it but not hcm_his_register_patient" in str(caught.value)
    assert mw.residents.hospital_id(who.resident_id, HOSPITAL) is None  # nothing linked
    problems = [r for plugin, r in mw.doctor() if r.name == "his.patients"]
    assert len(problems) == 1
    assert not problems[0].ok
    assert "hcm_his_register_patient" in problems[0].detail


def test_find_or_register_links_and_asks_once(hcm_make_middleware: Any) -> None:
    his = FullHis()
    mw = start(hcm_make_middleware, his=his)
    recorder = HookRecorder(mw)
    who = resident(mw)
    first = mw.his.find_or_register(who)
    assert first.patient_id == "P00001"
    assert his.asked == ["register"]  # one adapter finds and creates: one question
    again, source = mw.his.resolve(who)
    assert (again.patient_id, source) == ("P00001", "index")
    assert his.asked == ["register"]
    assert mw.residents.hospital_id(who.resident_id, HOSPITAL) == "P00001"
    assert len(recorder.calls("hcm_his_register_patient")) == 1


def test_the_link_the_his_can_give_again_does_not_wait_for_the_disk(
    hcm_make_middleware: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hcmiddleware import storage

    mw = start(hcm_make_middleware, his=FullHis())
    who = resident(mw)
    writes: list[bool] = []
    real = storage.begin_write

    def begin_write(engine: Any, *, durable: bool = True, urgent: bool = False) -> Any:
        writes.append(durable)
        return real(engine, durable=durable, urgent=urgent)

    monkeypatch.setattr(storage, "begin_write", begin_write)
    mw.his.find_or_register(who)
    assert writes == [False], "the link: committed without waiting for the disk"
    assert mw.residents.hospital_id(who.resident_id, HOSPITAL) == "P00001"
    writes.clear()
    mw.residents.link_hospital_id(who.resident_id, "H0002", "Q1")
    assert writes == [True], "a link made by hand stays durable"


def test_wrong_answers_name_the_adapter(hcm_make_middleware: Any) -> None:
    his = FullHis()
    mw = start(hcm_make_middleware, his=his)
    patient = mw.his.find_or_register(resident(mw))
    assert mw.his.register_visit(patient, visit(patient)).registration_id == "R1"

    his.visit_answer = {"registration_id": "R1"}
    with pytest.raises(PluginResultError) as caught:
        mw.his.register_visit(patient, visit(patient))
    assert caught.value.plugin == "his"
    assert caught.value.hook == "hcm_his_register_visit"
    assert "with dict where the hook returns Registration" in caught.value.message

    his.visit_answer = None
    with pytest.raises(PluginResultError, match="must return a Registration or raise"):
        mw.his.register_visit(patient, visit(patient))

    with pytest.raises(PluginResultError, match="with dict where the hook returns Order"):
        mw.his.orders(patient, "R1")

    with pytest.raises(PluginResultError, match="did not record payment T-1") as unpaid:
        mw.his.charges_paid(patient, ["C1"], "T-1")
    assert "never pay them again" in unpaid.value.hint


def test_services_need_an_institution_code(hcm_make_middleware: Any) -> None:
    mw: Middleware = hcm_make_middleware(plugins={"his": FullHis()})
    from hcmiddleware.errors import FlowInputError

    with pytest.raises(FlowInputError, match="institution code"):
        mw.his.find_or_register(resident(mw))

"""Roles (R-SEC-2): ``mw.acting_as(caller)`` checks, cuts and audits every call."""

from __future__ import annotations

import datetime as dt
import json
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest

from hcmiddleware import (
    AccessDeniedError,
    Caller,
    FieldWithheldError,
    HospitalPatient,
    Middleware,
    NotIdentifiedHereError,
    Order,
    Report,
    Resident,
    Session,
    Sex,
    UnknownRoleError,
    UnknownTerminalError,
    hookimpl,
)
from hcmiddleware.card.emulator import EmulatedCard
from hcmiddleware.config import parse_config
from hcmiddleware.errors import CardPartNotReadError, ConfigError
from hcmiddleware.sam.samples import TEST_ISSUER_KEYS as KEYS

PROFILE = Path(str(files("hcmiddleware.card.samples"))) / "resident-profile.json"
HOSPITAL = "H00000000001"


class Reports:
    """A HIS adapter that finds patients and lists their reports (clinical data)."""

    @hookimpl
    def hcm_his_lookup_patient(self, resident: Resident, hospital_code: str) -> Any:
        return HospitalPatient(
            hospital_code=hospital_code, patient_id="P1", resident_id=resident.resident_id
        )

    @hookimpl
    def hcm_his_register_patient(self, resident: Resident, hospital_code: str) -> Any:
        return self.hcm_his_lookup_patient(resident, hospital_code)

    @hookimpl
    def hcm_his_list_reports(self, patient: HospitalPatient, visit_id: str) -> Any:
        return [
            Report(report_id="L1", patient_id=patient.patient_id, visit_id=visit_id,
                   kind="lab", title="CBC", status="final", summary="normal")
        ]  # fmt: skip

    @hookimpl
    def hcm_his_list_orders(self, patient: HospitalPatient, visit_id: str) -> Any:
        made = {"patient_id": patient.patient_id, "visit_id": visit_id}
        return [
            Order(order_id="O1", kind="drug", code="AMX", name="阿莫西林", dose="0.5g",
                  route="po", frequency="tid", **made),
            Order(order_id="O2", kind="skin_test", code="PST", name="青霉素皮试", **made),
        ]  # fmt: skip


def start(hcm_make_middleware: Any, **sections: Any) -> Middleware:
    mw: Middleware = hcm_make_middleware(
        plugins={"his": Reports()},
        middleware={"institution_code": HOSPITAL},
        sam={"keys": str(KEYS)},
        **sections,
    )
    return mw


def card() -> EmulatedCard:
    return EmulatedCard.from_files(PROFILE, KEYS)


def as_(mw: Middleware, role: str, *, user: str = "u-1", terminal: str = "desk-1") -> Session:
    return mw.acting_as(Caller(user=user, role=role, terminal=terminal))


def someone(mw: Middleware) -> Resident:
    return mw.residents.enrol(
        name="李四", sex=Sex.FEMALE, birth_date=dt.date(1975, 2, 3), phone="13912345678",
        address="沈阳市和平区", record_id="desk-9",
    )  # fmt: skip


# --- who may call ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"user": "", "role": "doctor", "terminal": "t"},
        {"user": "u", "role": "doctor", "terminal": "t\x00"},
        {"user": "u" * 65, "role": "doctor", "terminal": "t"},
        {"user": "u", "role": 7, "terminal": "t"},
        {"user": "u", "role": "doctor"},
    ],
)
def test_a_malformed_caller_is_a_typed_refusal(fields: dict[str, Any]) -> None:
    with pytest.raises(AccessDeniedError) as caught:
        Caller(**fields)
    assert caught.value.reason == "caller"


def test_an_unknown_role_is_refused_and_audited(hcm_make_middleware: Any) -> None:
    mw = start(hcm_make_middleware)
    with pytest.raises(UnknownRoleError) as caught:
        as_(mw, "janitor")
    assert (caught.value.role, caught.value.reason) == ("janitor", "unknown_role")
    entry = mw.audit.entries(action="access.refused")[-1]
    assert (entry.outcome, entry.user, entry.role, entry.terminal) == (
        "refused", "u-1", "janitor", "desk-1",
    )  # fmt: skip
    assert entry.details == {"operation": "acting_as", "reason": "unknown_role"}


def test_a_terminal_not_listed_is_refused(hcm_make_middleware: Any) -> None:
    mw = start(hcm_make_middleware, access={"terminals": ["desk-1", "kiosk-3"]})
    assert as_(mw, "doctor", terminal="kiosk-3").caller.terminal == "kiosk-3"
    with pytest.raises(UnknownTerminalError):
        as_(mw, "doctor", terminal="my-laptop")
    assert mw.audit.entries(action="access.refused")[-1].details["reason"] == "terminal"


def test_an_operation_the_role_lacks_is_refused_and_audited(hcm_make_middleware: Any) -> None:
    mw = start(hcm_make_middleware)
    cashier = as_(mw, "cashier", user="c-7", terminal="till-2")
    patient = HospitalPatient(hospital_code=HOSPITAL, patient_id="P1", resident_id="r-1")
    with pytest.raises(AccessDeniedError) as caught:
        cashier.his.reports(patient, "V1")
    assert (caught.value.role, caught.value.operation, caught.value.reason) == (
        "cashier", "his.reports", "operation",
    )  # fmt: skip
    entry = mw.audit.entries(action="access.refused")[-1]
    assert (entry.user, entry.role, entry.terminal, entry.outcome) == (
        "c-7", "cashier", "till-2", "refused",
    )  # fmt: skip
    assert entry.details["operation"] == "his.reports"


def test_what_a_session_does_not_offer_is_refused(hcm_make_middleware: Any) -> None:
    mw = start(hcm_make_middleware)
    doctor = as_(mw, "doctor")
    with pytest.raises(AccessDeniedError):
        doctor.residents.index  # noqa: B018 - the raw index would bypass every filter
    with pytest.raises(AccessDeniedError):
        doctor.terminal.open()  # a raw card session reads everything


# --- what a role sees ------------------------------------------------------------------------


def test_a_cashier_reads_only_identity_and_insurance_from_the_card(
    hcm_make_middleware: Any,
) -> None:
    mw = start(hcm_make_middleware)
    read = as_(mw, "cashier").terminal.read(card())
    assert {p.value for p in read.parts} == {"issuer", "identity", "documents", "social",
                                             "photo", "insurance"}  # fmt: skip
    assert read.cardholder.name
    with pytest.raises(CardPartNotReadError):
        read.clinical  # noqa: B018 - never left the card
    with pytest.raises(CardPartNotReadError):
        read.validity.phone1  # noqa: B018
    dumped = read.model_dump()
    assert dumped["clinical"] is None
    assert dumped["visits"] is None
    entry = mw.audit.entries(action="card.read")[-1]
    assert (entry.user, entry.role, entry.terminal) == ("u-1", "cashier", "desk-1")
    assert "basics" not in entry.details["parts"]


def test_naming_a_part_the_role_may_not_see_is_refused_before_the_card_is_read(
    hcm_make_middleware: Any,
) -> None:
    mw = start(hcm_make_middleware)
    emulated = card()
    with pytest.raises(AccessDeniedError) as caught:
        as_(mw, "cashier").terminal.read(emulated, parts="identity,allergies")
    assert caught.value.reason == "category"
    assert mw.audit.entries(action="access.refused")[-1].details["category"] == "allergies"
    assert not mw.audit.entries(action="card.read")


def test_a_doctor_reads_the_clinical_parts(hcm_make_middleware: Any) -> None:
    mw = start(hcm_make_middleware)
    read = as_(mw, "doctor").terminal.read(card())
    assert read.has("basics", "allergies", "immunisations", "visits", "phones")
    assert read.clinical.allergies is not None


def test_withheld_resident_fields_are_absent_not_blank(hcm_make_middleware: Any) -> None:
    mw = start(hcm_make_middleware)
    resident = someone(mw)
    seen = as_(mw, "cashier").residents.get(resident.resident_id)
    assert isinstance(seen, Resident)
    assert seen.resident_id == resident.resident_id
    assert seen.name == "李四"
    for field in ("phone", "address"):
        with pytest.raises(FieldWithheldError) as caught:
            getattr(seen, field)
        assert (caught.value.field, caught.value.category) == (field, "contact")
    dumped = seen.model_dump()
    assert "phone" not in dumped
    assert "address" not in dumped
    assert dumped["name"] == "李四"
    text = seen.model_dump_json()
    assert "13912345678" not in text
    assert '"phone"' not in text
    assert "13912345678" not in repr(seen)
    # the registration desk sees the contact data
    assert as_(mw, "registration").residents.get(resident.resident_id).phone == "13912345678"
    # an auditor sees no personal field at all
    bare = as_(mw, "auditor").residents.history(resident.resident_id)
    assert bare == []
    with pytest.raises(AccessDeniedError):
        as_(mw, "auditor").residents.get(resident.resident_id)


def test_search_candidates_are_cut_too(hcm_make_middleware: Any) -> None:
    mw = start(hcm_make_middleware)
    someone(mw)
    found = as_(mw, "cashier").residents.search(
        name="李四", sex=2, birth_date=dt.date(1975, 2, 3), phone="13912345678", limit=3
    )
    assert found
    assert all("phone" not in c.model_dump()["resident"] for c in found)
    entry = mw.audit.entries(action="residents.search")[-1]
    assert (entry.user, entry.role) == ("u-1", "cashier")


def test_a_role_without_the_category_of_an_answer_is_refused(hcm_make_middleware: Any) -> None:
    mw = start(
        hcm_make_middleware,
        access={"roles": {"pharmacist": {"operations": ["his.reports"], "categories": []}}},
    )
    patient = HospitalPatient(hospital_code=HOSPITAL, patient_id="P1", resident_id="r-1")
    with pytest.raises(AccessDeniedError) as caught:
        as_(mw, "pharmacist").his.reports(patient, "V1")
    assert (caught.value.reason, caught.value.operation) == ("category", "his.reports")


# --- the unbound services ---------------------------------------------------------------------


def test_unbound_calls_are_audited_as_the_system_caller(hcm_make_middleware: Any) -> None:
    mw = start(hcm_make_middleware, access={"system_user": "his-backend"})
    mw.terminal.read(card())
    entry = mw.audit.entries(action="card.read")[-1]
    assert (entry.user, entry.role) == ("his-backend", "system")


def test_require_caller_refuses_unbound_calls(hcm_make_middleware: Any) -> None:
    mw = start(hcm_make_middleware, access={"require_caller": True})
    with pytest.raises(AccessDeniedError) as caught:
        mw.terminal.read(card())
    assert "mw.acting_as" in str(caught.value)
    assert caught.value.reason == "require_caller"
    for service in ("residents", "his", "journal", "audit", "faces", "cards", "ehc", "ward"):
        with pytest.raises(AccessDeniedError):
            getattr(mw, service)
    # through a session the same call works, and the services it uses inside are allowed
    read = as_(mw, "registration").terminal.read(card())
    assert read.cardholder.name


# --- step by step, own only --------------------------------------------------------------------


def test_a_doctor_sees_reports_only_after_identification_here(hcm_make_middleware: Any) -> None:
    mw = start(hcm_make_middleware)
    doctor = as_(mw, "doctor", terminal="room-4")
    read = doctor.terminal.read(card())
    resident = doctor.residents.enrol_from_card(read)
    patient = HospitalPatient(
        hospital_code=HOSPITAL, patient_id="P1", resident_id=resident.resident_id
    )
    assert doctor.his.reports(patient, "V1")[0].summary == "normal"
    # the same doctor at another terminal has not identified the resident there
    elsewhere = as_(mw, "doctor", terminal="room-5")
    with pytest.raises(NotIdentifiedHereError) as caught:
        elsewhere.his.reports(patient, "V1")
    assert (caught.value.category, caught.value.reason) == ("clinical", "not_identified")
    # the visit ends: closed again
    doctor.end_visit(resident.resident_id)
    with pytest.raises(NotIdentifiedHereError):
        doctor.his.reports(patient, "V1")


def test_a_kiosk_sees_only_the_patient_identified_there(hcm_make_middleware: Any) -> None:
    mw = start(hcm_make_middleware)
    other = someone(mw)
    kiosk = as_(mw, "kiosk", user="kiosk-3", terminal="kiosk-3")
    with pytest.raises(AccessDeniedError) as caught:
        kiosk.residents.get(other.resident_id)
    assert caught.value.reason == "own_only"
    read = kiosk.terminal.read(card())
    mine = kiosk.residents.enrol_from_card(read)
    assert kiosk.residents.get(mine.resident_id).resident_id == mine.resident_id
    assert kiosk.identified(mine.resident_id)
    with pytest.raises(AccessDeniedError):
        kiosk.residents.get(other.resident_id)


# --- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "roles",
    [
        {"doctor": {"operations": ["terminal.raed"]}},
        {"doctor": {"categories": ["genome"]}},
        {"surgeon": {"operations": ["terminal.read"]}},
        {"doctor": {"operations": ["terminal.read"], "colour": "red"}},
    ],
)
def test_a_bad_role_config_names_the_key(roles: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"middleware": {"data_dir": str(tmp_path)}, "access": {"roles": roles}})
    assert (caught.value.key or "").startswith("access.roles")


def test_doctor_warns_of_a_role_granting_nothing_or_everything(hcm_make_middleware: Any) -> None:
    everything = {
        "operations": ["*"],
        "categories": ["identity", "contact", "insurance", "clinical", "allergies",
                       "immunisations", "visits", "money", "face"],
    }  # fmt: skip
    mw = start(
        hcm_make_middleware,
        access={"roles": {"auditor": {"operations": []}, "administrator": everything}},
    )
    rows = {r.name: r for _p, r in mw.doctor() if r.name.startswith("access")}
    assert not rows["access role auditor"].ok
    assert "no operation" in rows["access role auditor"].detail
    assert not rows["access role administrator"].ok
    assert "every operation" in rows["access role administrator"].detail
    with pytest.raises(AccessDeniedError):
        as_(mw, "auditor").audit.entries()


def test_json_of_a_cut_answer_is_valid_and_has_no_withheld_key(hcm_make_middleware: Any) -> None:
    mw = start(hcm_make_middleware)
    resident = someone(mw)
    seen = as_(mw, "pharmacist").residents.get(resident.resident_id)
    data = json.loads(seen.model_dump_json())
    assert set(data) & {"phone", "address"} == set()


# --- orders and reports, cut by their fields' categories ----------------------------------------


def _identified(mw: Middleware, role: str) -> tuple[Session, HospitalPatient]:
    """A session of ``role`` at a terminal where the card's holder was just identified."""
    resident = mw.residents.enrol_from_card(mw.terminal.read(card()))
    session = as_(mw, role)
    session.terminal.read(card())  # the card read identifies its holder here
    assert session.identified(resident.resident_id)
    return session, HospitalPatient(
        hospital_code=HOSPITAL, patient_id="P1", resident_id=resident.resident_id
    )


def test_orders_of_a_kind_the_role_may_not_see_are_left_out(hcm_make_middleware: Any) -> None:
    # a pharmacist who sees clinical basics but not allergies: no skin test for them
    pharmacist = {
        "operations": ["terminal.read", "his.orders"],
        "categories": ["identity", "clinical"],
    }
    mw = start(hcm_make_middleware, access={"roles": {"pharmacist": pharmacist}})
    session, patient = _identified(mw, "pharmacist")
    orders = session.his.orders(patient, "V1")
    assert [o.order_id for o in orders] == ["O1"]
    assert orders[0].dose == "0.5g"  # clinical: shown
    # the default pharmacist sees allergies: both orders, whole
    default, patient = _identified(start(hcm_make_middleware), "pharmacist")
    assert [o.order_id for o in default.his.orders(patient, "V1")] == ["O1", "O2"]


def test_a_field_moved_to_another_category_is_absent_not_blank(hcm_make_middleware: Any) -> None:
    mw = start(
        hcm_make_middleware,
        access={"fields": {"report": {"summary": "visits"}, "order": {"dose": "allergies"}}},
    )
    # the pharmacist sees clinical and allergies, not visits
    session, patient = _identified(mw, "pharmacist")
    orders = session.his.orders(patient, "V1")
    assert orders[0].dose == "0.5g"  # allergies: the pharmacist sees them
    nurse_view = {
        "operations": ["terminal.read", "his.reports", "his.orders"],
        "categories": ["identity", "clinical"],
    }
    mw = start(
        hcm_make_middleware,
        access={
            "fields": {"report": {"summary": "visits"}, "order": {"dose": "allergies"}},
            "roles": {"nurse": nurse_view},
        },
    )
    session, patient = _identified(mw, "nurse")
    report = session.his.reports(patient, "V1")[0]
    assert isinstance(report, Report)
    assert report.title == "CBC"  # clinical
    assert "summary" not in report.model_dump()
    assert "normal" not in report.model_dump_json()
    with pytest.raises(FieldWithheldError) as caught:
        report.summary  # noqa: B018
    assert (caught.value.field, caught.value.category) == ("summary", "visits")
    order = session.his.orders(patient, "V1")[0]
    assert "dose" not in order.model_dump()
    assert order.name == "阿莫西林"


@pytest.mark.parametrize(
    "fields",
    [
        {"report": {"sumary": "clinical"}},  # no such field
        {"report": {"summary": "genome"}},  # no such category
        {"bill": {"total": "money"}},  # not a model that is cut
    ],
)
def test_a_bad_field_category_names_the_key(fields: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"middleware": {"data_dir": str(tmp_path)}, "access": {"fields": fields}})
    assert (caught.value.key or "").startswith("access.fields")

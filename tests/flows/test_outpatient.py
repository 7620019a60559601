"""The outpatient journey, step by step, against the reference HIS (MLLP and FHIR)."""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hcm_his_reference import ReferenceHis
from PIL import Image

from hcmiddleware import Middleware, hookimpl
from hcmiddleware.card.emulator import EmulatedCard
from hcmiddleware.card.filemap import CardPart
from hcmiddleware.errors import (
    CardAbsentError,
    FaceMismatchError,
    FlowInputError,
    HisProtocolError,
    HisRejectedError,
    HisUnavailableError,
    IdentityError,
    NoHandlerError,
    NotIdentifiedError,
    PaymentNotRecordedError,
    RemoteFaultError,
)
from hcmiddleware.flows.outpatient import OutpatientFlow
from hcmiddleware.models import VisitSummary
from hcmiddleware.sam.samples import TEST_ISSUER_KEYS
from hcmiddleware.testing import HookRecorder

from .conftest import HOSPITAL, MakeMw, Till, count, his_plugin

SLOT = (datetime.now() + timedelta(days=1)).replace(hour=9, minute=0, second=0, microsecond=0)


def summary(fee: Decimal | None = None) -> VisitSummary:
    return VisitSummary(
        kind="outpatient",
        visited_at=datetime.now().replace(microsecond=0),
        institution_name="Test hospital",
        institution_code=HOSPITAL,
        department="内科",
        doctor="李医生",
        diagnosis_code="J06.9",
        diagnosis_name="急性上呼吸道感染",
        treatment="对症治疗",
        total_fee=fee,
    )


def test_whole_journey_lands_in_the_his_and_on_the_card(
    mw: Middleware, card: EmulatedCard, reference_his: ReferenceHis, till: Till
) -> None:
    recorder = HookRecorder(mw)
    flow = OutpatientFlow(mw, actor="kiosk-01")
    who = flow.identify(card)
    assert who.card is not None
    assert set(who.card.parts) == {CardPart.IDENTITY, CardPart.INSURANCE, CardPart.PHONES}
    before = len(mw.terminal.open(card).read_visits())
    patient = flow.patient(who)
    assert patient.created
    assert count(reference_his, "patient") == 1
    reg = flow.register(patient, department_code="NEI", slot_start=SLOT, fee="12.00")
    assert reg.slot_end - reg.slot_start == timedelta(minutes=30)
    position = flow.queue(reg)
    assert (position.queue_number, position.ahead) == (1, 0)

    desk = OutpatientFlow(mw, actor="desk-07").desk(who, patient, reg, card)  # reads them
    assert len(desk.previous_visits) == before > 0
    assert desk.previous_visits == sorted(
        desk.previous_visits, key=lambda v: v.visited_at, reverse=True
    )
    assert {o.kind for o in desk.orders} == {"lab", "drug"}

    charges = flow.charges(patient, reg)
    settled = flow.settle(patient, charges, pay=till)
    assert till.payments == [(sum(c.amount for c in charges), [c.charge_id for c in charges])]
    assert settled.transaction_id == "T-0001"
    assert all(c.paid for c in flow.charges(patient, reg))
    assert flow.settle(patient, flow.charges(patient, reg), pay=till).transaction_id is None
    assert len(till.payments) == 1, "paid charges are never paid again"

    assert [r.status for r in flow.reports(patient, reg)] == ["pending"]
    slot = flow.write_summary(who, summary(settled.amount), card)
    on_card = mw.terminal.open(card).read_visits()
    assert any(v.slot == slot and v.diagnosis_code == "J06.9" for v in on_card)

    actions = [c.kwargs["event"].action for c in recorder.calls("hcm_audit_event")]
    for step in (
        "identify",
        "patient",
        "register",
        "queue",
        "charges",
        "settle",
        "reports",
        "write_summary",
    ):
        assert f"flow.outpatient.{step}" in actions
    assert "flow.outpatient.desk" in actions


def test_second_visit_takes_the_patient_id_from_the_index(
    mw: Middleware, card: EmulatedCard, reference_his: ReferenceHis
) -> None:
    flow = OutpatientFlow(mw, actor="kiosk-01")
    first = flow.patient(flow.identify(card))
    assert mw.residents.index.hospital_id(first.resident_id, HOSPITAL) == first.patient_id
    recorder = HookRecorder(mw)
    again = flow.patient(flow.identify(card))
    assert again.patient_id == first.patient_id
    assert not again.created
    assert not recorder.calls("hcm_his_lookup_patient"), "the index answers first"
    assert not recorder.calls("hcm_his_register_patient")
    assert count(reference_his, "patient") == 1
    assert mw.residents.index.count() == 1, "no duplicate resident"


def test_first_visit_asks_the_one_his_to_find_or_create(
    mw: Middleware, card: EmulatedCard, reference_his: ReferenceHis
) -> None:
    flow = OutpatientFlow(mw, actor="kiosk-01")
    who = flow.identify(card)
    # a first attempt that crashed after the HIS made the patient, before the index
    # linked it: the retried step must find that patient, not make a second
    first = mw.hooks.hcm_his_register_patient(
        resident=who.resident, card=who.card, hospital_code=HOSPITAL
    )
    assert first.created
    recorder = HookRecorder(mw)
    again = flow.patient(who)
    assert (again.patient_id, again.created) == (first.patient_id, False)
    assert not recorder.calls("hcm_his_lookup_patient"), "register finds or creates alone"
    assert len(recorder.calls("hcm_his_register_patient")) == 1
    assert count(reference_his, "patient") == 1
    assert mw.residents.index.hospital_id(who.resident.resident_id, HOSPITAL) == first.patient_id


class LookupOnly:
    """A second HIS plugin that only looks patients up (a legacy ID service)."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    @hookimpl
    def hcm_his_lookup_patient(self, resident: Any, hospital_code: str) -> None:
        self.asked.append(resident.resident_id)


def test_with_another_his_plugin_each_is_asked_before_one_registers(
    protocol: str, reference_his: ReferenceHis, hcm_make_middleware: Any, card: EmulatedCard
) -> None:
    name, plugin, settings = his_plugin(protocol, reference_his)
    legacy = LookupOnly()
    mw = hcm_make_middleware(
        plugins={name: plugin, "legacy-ids": legacy},
        settings={name: settings},
        middleware={"institution_code": HOSPITAL},
        sam={"keys": str(TEST_ISSUER_KEYS)},
    )
    flow = OutpatientFlow(mw, actor="kiosk-01")
    who = flow.identify(card)
    recorder = HookRecorder(mw)
    patient = flow.patient(who)
    assert patient.created
    assert legacy.asked == [who.resident.resident_id]
    assert len(recorder.calls("hcm_his_lookup_patient")) == 1
    assert count(reference_his, "patient") == 1


def test_ecard_or_id_number_without_a_card(mw: Middleware, card: EmulatedCard) -> None:
    flow = OutpatientFlow(mw, actor="desk-02")
    with pytest.raises(NotIdentifiedError) as caught:
        flow.identify_by(id_number="210102198503121239")
    assert caught.value.step == "identify"
    enrolled = flow.identify(card).resident
    found = flow.identify_by(id_number="210102198503121239")
    assert found.resident.resident_id == enrolled.resident_id
    assert found.card is None
    with pytest.raises(FlowInputError):
        flow.identify_by()
    with pytest.raises(FlowInputError, match="no card"):
        flow.write_summary(found, summary())


def test_retried_registration_registers_once(
    make_mw: MakeMw, card: EmulatedCard, reference_his: ReferenceHis, tmp_path: Path
) -> None:
    mw = make_mw(data_dir=tmp_path / "site")
    flow = OutpatientFlow(mw, actor="kiosk-01")
    patient = flow.patient(flow.identify(card))
    first = flow.register(patient, department_code="NEI", slot_start=SLOT)
    again = flow.register(patient, department_code="NEI", slot_start=SLOT)
    # the whole flow again, from another process's Middleware (a kiosk restarted)
    other = OutpatientFlow(make_mw(data_dir=tmp_path / "site"), actor="kiosk-02")
    third = other.register(
        other.patient(other.identify(card)), department_code="NEI", slot_start=SLOT
    )
    assert first.registration_id == again.registration_id == third.registration_id
    assert count(reference_his, "visit") == 1
    assert count(reference_his, "patient") == 1
    later = flow.register(patient, department_code="NEI", slot_start=SLOT + timedelta(hours=1))
    assert later.registration_id != first.registration_id, "another slot is another visit"


@pytest.mark.parametrize(
    ("start", "end"),
    [(SLOT, SLOT + timedelta(minutes=61)), (SLOT, SLOT), (SLOT, SLOT - timedelta(minutes=5))],
)
def test_slot_over_an_hour_is_refused_before_the_his(
    mw: Middleware,
    card: EmulatedCard,
    reference_his: ReferenceHis,
    start: datetime,
    end: datetime,
) -> None:
    flow = OutpatientFlow(mw, actor="kiosk-01")
    patient = flow.patient(flow.identify(card))
    with pytest.raises(FlowInputError, match="at most an hour") as caught:
        flow.register(patient, department_code="NEI", slot_start=start, slot_end=end)
    assert caught.value.hint
    assert count(reference_his, "visit") == 0


def test_nak_is_typed_with_the_adapter_and_registers_nothing(
    mw: Middleware, card: EmulatedCard, reference_his: ReferenceHis
) -> None:
    flow = OutpatientFlow(mw, actor="kiosk-01")
    patient = flow.patient(flow.identify(card))
    recorder = HookRecorder(mw)
    reference_his.faults.set(nak="AE")
    with pytest.raises(HisRejectedError) as caught:
        flow.register(patient, department_code="NEI", slot_start=SLOT)
    assert getattr(caught.value, "plugin", "") in {"his-hl7", "his-fhir"}
    failed = recorder.last("hcm_audit_event").kwargs["event"]
    assert (failed.action, failed.outcome) == ("flow.outpatient.register", "refused")
    assert failed.details["plugin"] == caught.value.plugin  # type: ignore[attr-defined]
    assert count(reference_his, "visit") == 0
    reference_his.faults.clear()
    flow.register(patient, department_code="NEI", slot_start=SLOT)
    assert count(reference_his, "visit") == 1


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ({"drop": "before"}, HisUnavailableError),
        ({"delay": 0.8}, HisUnavailableError),
        ({"garbage": True}, HisProtocolError),
    ],
    ids=["down", "slow", "garbage"],
)
def test_his_down_slow_or_garbled_stops_the_flow_cleanly(
    mw: Middleware,
    card: EmulatedCard,
    reference_his: ReferenceHis,
    fault: dict[str, object],
    error: type[Exception],
) -> None:
    flow = OutpatientFlow(mw, actor="kiosk-01")
    who = flow.identify(card)
    reference_his.faults.set(**fault)  # type: ignore[arg-type]
    with pytest.raises(error) as caught:
        flow.patient(who)
    assert getattr(caught.value, "plugin", "") in {"his-hl7", "his-fhir"}
    assert mw.residents.index.hospital_id(who.resident.resident_id, HOSPITAL) is None
    reference_his.faults.clear()
    patient = flow.patient(who)
    flow.register(patient, department_code="NEI", slot_start=SLOT)
    assert (count(reference_his, "patient"), count(reference_his, "visit")) == (1, 1)


def test_lost_answer_to_a_registration_never_registers_twice(
    mw: Middleware, card: EmulatedCard, reference_his: ReferenceHis
) -> None:
    flow = OutpatientFlow(mw, actor="kiosk-01")
    patient = flow.patient(flow.identify(card))
    reference_his.faults.set(drop="after", writes_only=True, times=1)
    try:
        first = flow.register(patient, department_code="NEI", slot_start=SLOT)
    except HisUnavailableError:
        first = None  # the adapter gave up; the kiosk retries the step
    again = flow.register(patient, department_code="NEI", slot_start=SLOT)
    assert first is None or first.registration_id == again.registration_id
    assert count(reference_his, "visit") == 1


def test_card_pulled_mid_write_keeps_the_old_records(mw: Middleware, card: EmulatedCard) -> None:
    flow = OutpatientFlow(mw, actor="desk-07")
    who = flow.identify(card)
    before = mw.terminal.open(card).read_visits(signatures=False)
    card.pull_after(12, tear=True)
    with pytest.raises(CardAbsentError):
        flow.write_summary(who, summary(), card)
    card.reset()
    after = mw.terminal.open(card).read_visits(signatures=False)
    assert {(v.kind, v.visited_at) for v in before} <= {(v.kind, v.visited_at) for v in after}
    assert all(v.institution_code for v in after), "no half-written record"
    flow.write_summary(who, summary(), card)
    written = [
        v
        for v in mw.terminal.open(card).read_visits()
        if v.diagnosis_code == "J06.9" and v.institution_code == HOSPITAL
    ]
    assert len(written) == 1


def test_another_card_is_not_written(mw: Middleware, card: EmulatedCard) -> None:
    flow = OutpatientFlow(mw, actor="desk-07")
    who = flow.identify(card)
    assert who.card is not None
    issuer = who.card.issuer.model_copy(update={"card_number": "210000000099999999"})
    stranger = replace(who, card=who.card.model_copy(update={"issuer": issuer}))
    with pytest.raises(FlowInputError, match="not the card"):
        flow.write_summary(stranger, summary(), card)


def test_refused_payment_marks_nothing_paid(mw: Middleware, card: EmulatedCard, till: Till) -> None:
    flow = OutpatientFlow(mw, actor="cashier-1")
    patient = flow.patient(flow.identify(card))
    reg = flow.register(patient, department_code="NEI", slot_start=SLOT, fee="12.00")
    till.fail = RemoteFaultError("insufficient balance", fault_code="51")
    with pytest.raises(RemoteFaultError):
        flow.settle(patient, flow.charges(patient, reg), pay=till)
    assert not any(c.paid for c in flow.charges(patient, reg))


def test_payment_the_his_did_not_record_is_recorded_later_without_paying_again(
    mw: Middleware, card: EmulatedCard, reference_his: ReferenceHis, till: Till
) -> None:
    flow = OutpatientFlow(mw, actor="cashier-1")
    patient = flow.patient(flow.identify(card))
    reg = flow.register(patient, department_code="NEI", slot_start=SLOT, fee="12.00")
    charges = flow.charges(patient, reg)
    reference_his.faults.set(drop="before")
    with pytest.raises(PaymentNotRecordedError) as caught:
        flow.settle(patient, charges, pay=till)
    assert caught.value.transaction_id == "T-0001"
    assert caught.value.plugin in {"his-hl7", "his-fhir"}
    reference_his.faults.clear()
    flow.mark_paid(patient, [c.charge_id for c in charges], caught.value.transaction_id)
    flow.mark_paid(patient, [c.charge_id for c in charges], caught.value.transaction_id)
    assert all(c.paid for c in flow.charges(patient, reg))
    assert len(till.payments) == 1


def test_no_institution_code_is_a_clear_error(hcm_make_middleware: object) -> None:
    mw = hcm_make_middleware()  # type: ignore[operator]
    with pytest.raises(FlowInputError, match="institution code"):
        OutpatientFlow(mw, actor="kiosk")


def test_without_a_his_adapter_the_step_says_so(
    hcm_make_middleware: Any, card: EmulatedCard
) -> None:
    mw = hcm_make_middleware(
        middleware={"institution_code": HOSPITAL}, sam={"keys": str(TEST_ISSUER_KEYS)}
    )
    flow = OutpatientFlow(mw, actor="kiosk-01")
    who = flow.identify(card)
    with pytest.raises(NoHandlerError, match="hcm_his_register_patient"):
        flow.patient(who)
    assert mw.residents.index.hospital_id(who.resident.resident_id, HOSPITAL) is None


def test_face_check_refuses_a_photo_without_the_cardholder(
    hcm_make_middleware: Any, card: EmulatedCard
) -> None:
    pytest.importorskip("face_recognition")  # the built-in backend: the [face] extra
    mw = hcm_make_middleware(
        middleware={"institution_code": HOSPITAL}, sam={"keys": str(TEST_ISSUER_KEYS)}
    )
    flow = OutpatientFlow(mw, actor="kiosk-01")
    who = flow.identify(card)
    from hcmiddleware.face.samples import KIOSK_LIVE_PHOTO

    assert flow.check_face(who, KIOSK_LIVE_PHOTO.read_bytes(), transport=card).matched
    blank = io.BytesIO()
    Image.new("RGB", (320, 240), (200, 200, 200)).save(blank, "JPEG")
    with pytest.raises(FaceMismatchError) as caught:
        flow.check_face(who, blank.getvalue(), transport=card)
    assert caught.value.status != "matched"
    with pytest.raises(FlowInputError, match="without a card"):
        flow.check_face(replace(who, card=None), KIOSK_LIVE_PHOTO.read_bytes())


def test_failed_identification_is_audited_and_typed(
    hcm_make_middleware: Any, card: EmulatedCard
) -> None:
    mw = hcm_make_middleware(
        middleware={"institution_code": HOSPITAL}, sam={"keys": str(TEST_ISSUER_KEYS)}
    )
    recorder = HookRecorder(mw)
    flow = OutpatientFlow(mw, actor="kiosk-01")
    card.pull_after(3)
    with pytest.raises(CardAbsentError):
        flow.identify(card)
    event = recorder.last("hcm_audit_event").kwargs["event"]
    assert (event.action, event.outcome) == ("flow.outpatient.identify", "failed")
    assert mw.residents.index.count() == 0
    with pytest.raises(IdentityError):
        flow.identify_by(id_number="210102198503121238")  # wrong check digit
    event = recorder.last("hcm_audit_event").kwargs["event"]
    assert (event.action, event.outcome) == ("flow.outpatient.identify", "refused")
    assert "210102" not in str(event.details), "no ID number in the audit details"

"""The journeys as a caller runs them (``session.flows``), against the reference HIS.

Each step is checked against the caller's role before it starts, its answers are cut
to what the role may see (absent, not blanked), and every entry names the caller.
Over HL7 only: the adapters are the same either way, the roles are what is tested.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from hcm_his_reference import ReferenceHis

from hcmiddleware import (
    AccessDeniedError,
    Caller,
    FieldWithheldError,
    Middleware,
    NotIdentifiedHereError,
    Session,
)
from hcmiddleware.card.emulator import EmulatedCard
from hcmiddleware.card.filemap import CardPart
from hcmiddleware.flows.inpatient import InpatientFlow
from hcmiddleware.flows.outpatient import OutpatientFlow
from hcmiddleware.models import VisitSummary
from hcmiddleware.testing import HookRecorder

from .conftest import HOSPITAL, Till, count

SLOT = (datetime.now() + timedelta(days=1)).replace(hour=9, minute=0, second=0, microsecond=0)
CARD_PHONE = "13800000001"  # the sample card's first phone


@pytest.fixture
def protocol() -> str:
    """One adapter is enough here."""
    return "hl7"


def as_(mw: Middleware, role: str, terminal: str, user: str | None = None) -> Session:
    return mw.acting_as(Caller(user=user or f"{role}-1", role=role, terminal=terminal))


def test_the_kiosk_runs_its_journey_as_itself(
    mw: Middleware, card: EmulatedCard, reference_his: ReferenceHis
) -> None:
    # the registration desk enrolled the resident with the card's phone earlier
    as_(mw, "registration", "desk-1").flows.outpatient().identify(card)
    kiosk = as_(mw, "kiosk", "kiosk-3")
    flow = kiosk.flows.outpatient()
    assert isinstance(flow, OutpatientFlow)
    who = flow.identify(card)
    # the kiosk may not see contact data: the phones never left the card ...
    assert who.card is not None
    assert CardPart.PHONES not in who.card.parts
    # ... and the resident comes without them: absent, not blanked
    assert "phone" not in who.resident.model_dump()
    with pytest.raises(FieldWithheldError) as caught:
        who.resident.phone  # noqa: B018
    assert (caught.value.field, caught.value.category) == ("phone", "contact")
    # the HIS still gets the resident whole, from the index
    recorder = HookRecorder(mw)
    patient = flow.patient(who)
    assert patient.created
    sent = recorder.calls("hcm_his_register_patient")[0].kwargs["resident"]
    assert sent.phone == CARD_PHONE
    reg = flow.register(patient, department_code="NEI", slot_start=SLOT, fee="12.00")
    assert reg.fee == Decimal("12.00")  # a kiosk takes money: it sees the fee
    assert flow.queue(reg).queue_number == 1
    steps = mw.audit.entries(action="flow.outpatient.*")[-4:]
    assert [e.action for e in steps] == [
        f"flow.outpatient.{step}" for step in ("identify", "patient", "register", "queue")
    ]
    assert {(e.actor, e.user, e.role, e.terminal) for e in steps} == {
        ("kiosk-1", "kiosk-1", "kiosk", "kiosk-3")
    }
    # the doctor's desk is not the kiosk's: refused before the HIS is asked
    with pytest.raises(AccessDeniedError) as refused:
        flow.desk(who, patient, reg)
    assert (refused.value.operation, refused.value.reason) == ("his.orders", "operation")
    entry = mw.audit.entries(action="access.refused")[-1]
    assert (entry.user, entry.role, entry.terminal) == ("kiosk-1", "kiosk", "kiosk-3")
    assert entry.details["step"] == "flow.outpatient.desk"
    assert not recorder.calls("hcm_his_list_orders")


def test_the_registration_desk_registers_without_seeing_the_fee(
    mw: Middleware, card: EmulatedCard, reference_his: ReferenceHis
) -> None:
    flow = as_(mw, "registration", "desk-1").flows.outpatient()
    patient = flow.patient(flow.identify(card))
    reg = flow.register(patient, department_code="NEI", slot_start=SLOT, fee="12.00")
    assert reg.slot_start == SLOT
    dumped = reg.model_dump()
    assert "fee" not in dumped
    assert "fee" not in json.loads(reg.model_dump_json())
    with pytest.raises(FieldWithheldError) as caught:
        reg.fee  # noqa: B018
    assert caught.value.category == "money"
    # the HIS registered the visit with its fee: only the desk's view lacks it
    assert reference_his.store.visit(reg.registration_id)["fee"] == "12.00"


def test_a_step_the_role_may_not_take_moves_no_money(
    mw: Middleware, card: EmulatedCard, till: Till
) -> None:
    kiosk = as_(mw, "kiosk", "kiosk-3").flows.outpatient()
    patient = kiosk.patient(kiosk.identify(card))
    reg = kiosk.register(patient, department_code="NEI", slot_start=SLOT, fee="12.00")
    charges = kiosk.charges(patient, reg)
    assert charges
    desk = as_(mw, "registration", "desk-1").flows.outpatient()
    with pytest.raises(AccessDeniedError) as caught:
        desk.settle(patient, charges, pay=till)
    assert caught.value.operation == "his.charges_paid"
    assert till.payments == [], "refused before the payment, not between it and its record"
    # the kiosk may settle: paid once, marked paid
    settled = kiosk.settle(patient, charges, pay=till)
    assert settled.transaction_id == "T-0001"
    assert all(c.paid for c in kiosk.charges(patient, reg))


def test_the_doctor_sees_orders_only_after_identifying_the_patient_here(
    mw: Middleware, card: EmulatedCard, reference_his: ReferenceHis
) -> None:
    desk = as_(mw, "registration", "desk-1").flows.outpatient()
    who = desk.identify(card)
    patient = desk.patient(who)
    reg = desk.register(patient, department_code="NEI", slot_start=SLOT)
    doctor = as_(mw, "doctor", "room-4")
    flow = doctor.flows.outpatient()
    with pytest.raises(NotIdentifiedHereError) as caught:
        flow.desk(who, patient, reg)
    assert caught.value.category == "clinical"
    assert "open_with_reason" in (caught.value.hint or "")
    assert mw.audit.entries(action="access.refused")[-1].details["step"] == "flow.outpatient.desk"
    here = flow.identify(card)  # the card read at the doctor's desk identifies the patient
    view = flow.desk(here, patient, reg, card)
    assert {o.kind for o in view.orders} == {"lab", "drug"}
    assert all(o.name for o in view.orders)  # the doctor sees what the orders say
    assert view.previous_visits
    summary = VisitSummary(
        kind="outpatient", visited_at=datetime.now().replace(microsecond=0),
        institution_name="Test hospital", institution_code=HOSPITAL, department="内科",
        doctor="李医生", diagnosis_code="J06.9", diagnosis_name="急性上呼吸道感染",
    )  # fmt: skip
    assert flow.write_summary(here, summary, card) >= 0
    written = mw.audit.entries(action="card.write_visit")[-1]
    assert (written.user, written.role, written.outcome) == ("doctor-1", "doctor", "ok")
    # the registration desk writes nothing on the card
    with pytest.raises(AccessDeniedError) as refused:
        desk.write_summary(who, summary, card)
    assert refused.value.operation == "terminal.write_visit"
    assert len(mw.audit.entries(action="card.write_visit")) == 1


def test_an_inpatient_stay_admitted_at_the_desk_and_discharged_at_the_till(
    mw: Middleware, card: EmulatedCard, reference_his: ReferenceHis, till: Till
) -> None:
    desk = as_(mw, "registration", "admissions-1").flows.inpatient()
    assert isinstance(desk, InpatientFlow)
    patient = desk.patient(desk.identify(card))
    stay = desk.admit(patient, department_code="NEI", ward="5A", bed="12")
    assert "deposit_balance" not in stay.model_dump()  # money: not the desk's to see
    with pytest.raises(AccessDeniedError):
        desk.deposit(stay, "500.00", pay=till)
    assert till.payments == []
    cashier = as_(mw, "cashier", "till-2").flows.inpatient()
    # the desk's copy of the stay goes back to the HIS whole
    paid = cashier.deposit(stay, "500.00", pay=till)
    assert paid.deposit_balance == Decimal("500.00")
    done = cashier.discharge(paid)
    assert done.final_bill.balance <= 0
    assert count(reference_his, "admission") == 1
    entries = mw.audit.entries(action="flow.inpatient.*")
    assert {(e.role, e.action) for e in entries} >= {
        ("registration", "flow.inpatient.admit"),
        ("cashier", "flow.inpatient.deposit"),
        ("cashier", "flow.inpatient.discharge"),
    }


def test_a_journey_without_a_caller_is_refused_while_callers_are_required(
    hcm_make_middleware: object, card: EmulatedCard
) -> None:
    from hcmiddleware.sam.samples import TEST_ISSUER_KEYS

    make = hcm_make_middleware
    mw: Middleware = make(  # type: ignore[operator]
        middleware={"institution_code": HOSPITAL},
        sam={"keys": str(TEST_ISSUER_KEYS)},
        access={"require_caller": True},
    )
    flow = OutpatientFlow(mw, actor="kiosk-01")
    with pytest.raises(AccessDeniedError) as caught:
        flow.identify(card)
    assert caught.value.reason == "require_caller"
    # through a session the same step runs
    who = as_(mw, "registration", "desk-1").flows.outpatient().identify(card)
    assert who.resident.name

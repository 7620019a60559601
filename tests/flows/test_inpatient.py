"""The inpatient journey against the reference HIS (MLLP and FHIR)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest
from hcm_his_reference import ReferenceHis

from hcmiddleware import Middleware
from hcmiddleware.card.emulator import EmulatedCard
from hcmiddleware.errors import (
    DischargeRefusedError,
    FlowInputError,
    HisRejectedError,
    PaymentNotRecordedError,
)
from hcmiddleware.flows.inpatient import InpatientFlow
from hcmiddleware.models import Admission, HospitalPatient, VisitSummary

from .conftest import HOSPITAL, Till, count

ADMITTED = datetime.now().replace(hour=8, minute=0, second=0, microsecond=0)


@pytest.fixture
def stay(mw: Middleware, card: EmulatedCard) -> tuple[InpatientFlow, HospitalPatient, Admission]:
    flow = InpatientFlow(mw, actor="admissions-1")
    patient = flow.patient(flow.identify(card))
    admission = flow.admit(
        patient, department_code="NEI", ward="5A", bed="12", admitted_at=ADMITTED
    )
    return flow, patient, admission


def test_admission_deposit_bill_discharge_and_the_card(
    mw: Middleware, card: EmulatedCard, reference_his: ReferenceHis, till: Till
) -> None:
    flow = InpatientFlow(mw, actor="admissions-1")
    who = flow.identify(card)
    patient = flow.patient(who)
    stay = flow.admit(patient, department_code="NEI", ward="5A", bed="12", admitted_at=ADMITTED)
    again = flow.admit(patient, department_code="NEI", ward="5A", bed="12", admitted_at=ADMITTED)
    assert again.admission_id == stay.admission_id
    assert count(reference_his, "admission") == 1

    stay = flow.deposit(stay, "500.00", pay=till)
    stay = flow.deposit(stay, Decimal("100.00"), pay=till)  # a top-up
    assert stay.deposit_balance == Decimal("600.00")
    assert [amount for amount, _ in till.payments] == [Decimal("500.00"), Decimal("100.00")]

    # a week of bed and nursing fees, as the ward books them
    reference_his.store.add_charge(stay.admission_id, "BED", "床位费", Decimal("80.00"), Decimal(7))
    bill = flow.bill(stay)
    assert bill.balance == bill.total - Decimal("600.00") > 0
    with pytest.raises(DischargeRefusedError) as caught:
        flow.discharge(stay)
    assert caught.value.balance == bill.balance
    assert reference_his.store.admission(stay.admission_id)["discharged_at"] is None
    stay = flow.settle_bill(stay, pay=till)
    assert till.payments[-1][0] == bill.balance
    paid = len(till.payments)
    assert flow.settle_bill(stay, pay=till) == stay, "nothing owed, nothing paid"
    assert len(till.payments) == paid
    done = flow.discharge(stay)
    assert done.final_bill.balance == Decimal("0.00")

    slot = flow.write_summary(
        who,
        VisitSummary(
            kind="inpatient",
            visited_at=ADMITTED,
            institution_name="Test hospital",
            institution_code=HOSPITAL,
            department="内科",
            doctor="李医生",
            diagnosis_code="J18.9",
            diagnosis_name="肺炎",
            total_fee=bill.total,
        ),
        card,
    )
    inpatient = [v for v in mw.terminal.open(card).read_visits() if v.kind == "inpatient"]
    assert any(v.slot == slot and v.diagnosis_code == "J18.9" for v in inpatient)


def test_discharge_with_money_owed_is_refused_by_the_flow_and_by_the_his(
    mw: Middleware,
    stay: tuple[InpatientFlow, HospitalPatient, Admission],
    reference_his: ReferenceHis,
) -> None:
    flow, _patient, admission = stay
    reference_his.store.add_charge(
        admission.admission_id, "BED", "床位费", Decimal("80.00"), Decimal(2)
    )
    with pytest.raises(DischargeRefusedError, match="owes"):
        flow.discharge(admission)
    bill = flow.bill(admission)
    with pytest.raises(HisRejectedError):
        mw.hooks.hcm_his_discharge(admission=admission, bill=bill)
    assert reference_his.store.admission(admission.admission_id)["discharged_at"] is None


@pytest.mark.parametrize("amount", ["0", "-5.00", "1.005", "abc", "NaN"])
def test_bad_deposit_amount_pays_nothing(
    stay: tuple[InpatientFlow, HospitalPatient, Admission], till: Till, amount: str
) -> None:
    flow, _patient, admission = stay
    with pytest.raises(FlowInputError):
        flow.deposit(admission, amount, pay=till)
    assert till.payments == []


def test_deposit_the_his_missed_is_recorded_once_later(
    stay: tuple[InpatientFlow, HospitalPatient, Admission],
    reference_his: ReferenceHis,
    till: Till,
) -> None:
    flow, _patient, admission = stay
    reference_his.faults.set(drop="before")
    with pytest.raises(PaymentNotRecordedError) as caught:
        flow.deposit(admission, "300.00", pay=till)
    reference_his.faults.clear()
    tx = caught.value.transaction_id
    flow.record_deposit(admission, "300.00", tx)
    updated = flow.record_deposit(admission, "300.00", tx)
    assert updated.deposit_balance == Decimal("300.00")
    assert count(reference_his, "deposit") == 1
    assert len(till.payments) == 1

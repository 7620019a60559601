"""The e-card at the counter: the same journeys as the physical card (MLLP and FHIR)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hcm_his_reference import ReferenceHis

from hcmiddleware import Middleware
from hcmiddleware.card.emulator import EmulatedCard
from hcmiddleware.ehc import qr
from hcmiddleware.ehc.service import CardFactor, IdDigitsFactor
from hcmiddleware.errors import EhcReplayError, EhcSecondFactorError, FlowInputError
from hcmiddleware.flows.inpatient import InpatientFlow
from hcmiddleware.flows.outpatient import OutpatientFlow
from hcmiddleware.models import AuditEvent
from hcmiddleware.sam.samples import TEST_ISSUER_KEYS
from hcmiddleware.testing import HookRecorder, ehc_keys

from .conftest import HOSPITAL, Till, count, his_plugin

SLOT = (datetime.now() + timedelta(days=1)).replace(hour=10, minute=0, second=0, microsecond=0)


@pytest.fixture
def mw(
    reference_his: ReferenceHis, hcm_make_middleware: Any, protocol: str, tmp_path: Path
) -> Middleware:
    """A terminal with the reference HIS's adapter, the sample SAM keys and an SM2 issuer."""
    name, plugin, settings = his_plugin(protocol, reference_his)
    made: Middleware = hcm_make_middleware(
        plugins={name: plugin},
        settings={name: settings},
        middleware={"institution_code": HOSPITAL},
        sam={"keys": str(TEST_ISSUER_KEYS)},
        ehc=ehc_keys(tmp_path / "ehc", algorithm="sm2", terminal_id="kiosk-01"),
    )
    return made


def test_card_then_e_card_is_one_patient_through_the_outpatient_journey(
    mw: Middleware, card: EmulatedCard, reference_his: ReferenceHis, till: Till
) -> None:
    flow = OutpatientFlow(mw, actor="kiosk-01")
    first = flow.identify(card)
    by_card = flow.patient(first)
    ecard_id = mw.ehc.issue(first.resident.resident_id)

    recorder = HookRecorder(mw)
    code = mw.ehc.dynamic_code(ecard_id)
    who = flow.identify_ecard(code)
    assert (who.how, who.card) == ("ecard", None)
    assert who.ehc is not None
    assert who.ehc.kind == "dynamic"
    assert who.resident.resident_id == first.resident.resident_id
    assert who.card_number == first.card_number == "210000000012345678"
    patient = flow.patient(who)
    assert patient.patient_id == by_card.patient_id
    assert count(reference_his, "patient") == 1  # no second record

    reg = flow.register(patient, department_code="NEI", slot_start=SLOT)
    charges = flow.charges(patient, reg)
    # at the cashier the same code is shown again: another care step
    payer = OutpatientFlow(mw, actor="cashier-2").identify_ecard(code, care_step="payment")
    assert payer.resident.resident_id == who.resident.resident_id
    settled = flow.settle(patient, charges, pay=till)
    assert settled.transaction_id
    with pytest.raises(EhcReplayError):
        flow.identify_ecard(code)  # already used at this kiosk for registration
    assert flow.previous_visits(who) == []  # no card in hand: nothing to show from it
    with pytest.raises(FlowInputError):
        flow.check_face(who, b"live")

    steps = [
        (e.action, e.outcome, e.details.get("how"))
        for e in (c.kwargs["event"] for c in recorder.calls("hcm_audit_event"))
        if isinstance(e, AuditEvent) and e.action == "flow.outpatient.identify"
    ]
    assert steps == [
        ("flow.outpatient.identify", "ok", "ecard"),
        ("flow.outpatient.identify", "ok", "ecard"),
        ("flow.outpatient.identify", "refused", None),
    ]


def test_a_static_code_from_a_photo_with_the_card_as_second_factor(
    mw: Middleware, card: EmulatedCard
) -> None:
    flow = InpatientFlow(mw, actor="admissions-1")
    first = flow.identify(card)
    static = mw.ehc.static_code(mw.ehc.issue(first.resident.resident_id))
    picture = qr.render(static)
    with pytest.raises(EhcSecondFactorError):
        flow.identify_ecard(qr.decode_image(picture), care_step="admission")
    read = mw.terminal.read(card)
    who = flow.identify_ecard(qr.decode_image(picture), care_step="admission",
                              factor=CardFactor(read))  # fmt: skip
    assert who.resident.resident_id == first.resident.resident_id
    patient = flow.patient(who)
    stay = flow.admit(patient, department_code="NEI", ward="5A", bed="3",
                      admitted_at=datetime.now().replace(microsecond=0))  # fmt: skip
    assert stay.patient_id == patient.patient_id
    digits = IdDigitsFactor(read.cardholder.id_number[-6:])
    assert flow.identify_ecard(static, care_step="ward", factor=digits).ehc is not None

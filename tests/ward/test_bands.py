"""Wristbands: bind at admission, one per stay, rebind a lost band, release at discharge."""

from __future__ import annotations

from decimal import Decimal

import pytest
import sqlalchemy as sa

from hcmiddleware.errors import (
    ResidentNotFoundError,
    UnknownWristbandError,
    WristbandDeadError,
    WristbandError,
    WristbandInUseError,
    WristbandReleasedError,
)
from hcmiddleware.flows.inpatient import InpatientFlow
from hcmiddleware.testing import HookRecorder

from .conftest import Stay, admit


def test_bind_stores_the_binding_sealed_and_announces_it(stay: Stay) -> None:
    binding = stay.mw.ward.binding(stay.band)
    assert binding.admission_id == stay.admission.admission_id
    assert (binding.ward, binding.bed, binding.kind, binding.status) == (
        "5A",
        "12",
        "active",
        "active",
    )
    assert binding.card_number == stay.card_number
    assert binding.patient_id == stay.admission.patient_id
    # the card number is encrypted at rest
    with stay.mw.engine.connect() as conn:
        raw = conn.execute(sa.text("SELECT card_number FROM ward_wristbands")).scalar_one()
    assert stay.card_number.encode() not in raw
    # binding the same band to the same stay again is the first binding
    again = stay.mw.ward.bind(stay.band, stay.admission, card_number=stay.card_number)
    assert again.bound_at == binding.bound_at


def test_one_active_band_per_stay_and_per_band(stay: Stay) -> None:
    with pytest.raises(WristbandInUseError) as caught:
        stay.mw.ward.bind("WB-0002", stay.admission, card_number=stay.card_number)
    assert "rebind" in caught.value.hint
    other = stay.admission.model_copy(update={"admission_id": "OTHER-STAY"})
    with pytest.raises(WristbandInUseError):
        stay.mw.ward.bind(stay.band, other, card_number=stay.card_number)


def test_a_lost_band_is_dead_at_once_and_forever(stay: Stay) -> None:
    new = stay.mw.ward.rebind(stay.band, "WB-0002", reason="lost")
    assert new.admission_id == stay.admission.admission_id
    assert new.status == "active"
    with pytest.raises(WristbandDeadError) as caught:
        stay.mw.ward.binding(stay.band)
    assert caught.value.replaced_by == "WB-0002"
    assert "WB-0002" in caught.value.hint
    # never bound again, even to a later stay
    with pytest.raises(WristbandDeadError):
        stay.mw.ward.bind(stay.band, stay.admission, card_number=stay.card_number)
    with pytest.raises(WristbandDeadError):
        stay.mw.ward.rebind("WB-0002", stay.band)


def test_unknown_and_malformed_bands_are_refused(stay: Stay) -> None:
    with pytest.raises(UnknownWristbandError):
        stay.mw.ward.binding("WB-9999")
    with pytest.raises(WristbandError) as caught:
        stay.mw.ward.binding("x; drop table")
    assert not isinstance(caught.value, UnknownWristbandError)


def test_an_unknown_card_cannot_be_bound(stay: Stay) -> None:
    with pytest.raises(ResidentNotFoundError):
        stay.mw.ward.bind("WB-0003", stay.admission, card_number="0000000000000000")


def test_discharge_releases_the_band(stay: Stay) -> None:
    flow = InpatientFlow(stay.mw, actor="cashier-1")
    flow.record_deposit(stay.admission, Decimal("1000.00"), "T-0001")
    flow.discharge(stay.admission)
    with pytest.raises(WristbandReleasedError):
        stay.mw.ward.binding(stay.band)
    # an active band is reusable for a later stay once released
    later, card = admit(stay.mw, bed="14")
    assert later.admission_id != stay.admission.admission_id
    again = stay.mw.ward.bind(stay.band, later, card_number=card)
    assert again.bed == "14"


def test_rebind_is_audited_and_announced(stay: Stay) -> None:
    recorder = HookRecorder(stay.mw)
    try:
        stay.mw.ward.rebind(stay.band, "WB-0002", reason="broken", actor="nurse-7")
        audit = recorder.last("hcm_audit_event").kwargs["event"]
        bound = recorder.last("hcm_ward_wristband_bound").kwargs["binding"]
    finally:
        recorder.detach()
    assert (audit.action, audit.actor, audit.details["old_band"]) == (
        "ward.rebind",
        "nurse-7",
        stay.band,
    )
    assert bound.wristband_id == "WB-0002"
    assert stay.card_number not in repr(bound)

"""The inpatient kiosk: drugs, executions and payments by band or by card (R-WARD-4)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from hcmiddleware.errors import ResidentNotFoundError, WardError, WristbandDeadError
from hcmiddleware.models import BedsideScan

from .conftest import Stay


def test_by_band_and_by_card_the_same_stay(stay: Stay) -> None:
    stay.his.store.add_charge(
        stay.admission.admission_id, "BED", "床位费", Decimal("80.00"), Decimal(2)
    )
    by_band = stay.mw.ward.summary(wristband_id=stay.band)
    by_card = stay.mw.ward.summary(card_number=stay.card_number)
    assert by_band == by_card
    assert by_band.admission_id == stay.admission.admission_id
    assert [d.route for d in by_band.drugs] == ["IVGTT"]  # the nursing order is no drug
    assert any(c.item_code == "BED" for c in by_band.charges)
    assert by_band.bill is not None
    assert by_band.bill.total == sum(c.amount for c in by_band.charges)


def test_the_executions_show_once_done(stay: Stay) -> None:
    drip = stay.mw.ward.summary(wristband_id=stay.band).drugs[0]
    stay.mw.ward.execute(
        BedsideScan(
            wristband_id=stay.band,
            nurse_id="N-007",
            order_id=drip.order_id,
            bed="12",
            drug_code=drip.code,
            dose=drip.dose,
            concentration=drip.concentration,
            route=drip.route,
        )
    )
    after = stay.mw.ward.summary(wristband_id=stay.band)
    assert [(e.order_id, e.state) for e in after.executions] == [(drip.order_id, "done")]
    assert after.drugs == ()  # the HIS shows the drip done


def test_a_dead_band_an_outpatient_card_and_no_input_are_refused(stay: Stay) -> None:
    stay.mw.ward.rebind(stay.band, "WB-0002")
    with pytest.raises(WristbandDeadError):
        stay.mw.ward.summary(wristband_id=stay.band)
    stay.mw.ward.unbind("WB-0002")
    with pytest.raises(ResidentNotFoundError):
        stay.mw.ward.summary(card_number=stay.card_number)
    with pytest.raises(WardError):
        stay.mw.ward.summary()

"""The three checks and seven verifications against the reference HIS's orders."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hcmiddleware.errors import (
    AlreadyExecutedError,
    ExecutionStateError,
    OrderNotExecutableError,
    VerificationFailedError,
    WristbandDeadError,
    WristbandReleasedError,
)
from hcmiddleware.models import VERIFICATIONS, BedsideScan, Order

from .conftest import Stay, admit


def infusion(stay: Stay) -> Order:
    """The stay's saline drip (the reference HIS orders it at admission)."""
    orders = stay.mw.ward.orders(stay.band)
    return next(o for o in orders if o.route == "IVGTT")


def scan_for(stay: Stay, order: Order, **changes: object) -> BedsideScan:
    """What the handheld presents when everything is right, with ``changes``."""
    fields: dict[str, object] = {
        "wristband_id": stay.band,
        "nurse_id": "N-007",
        "order_id": order.order_id,
        "bed": "12",
        "drug_code": order.code,
        "dose": order.dose,
        "concentration": order.concentration,
        "route": order.route,
    }
    fields.update(changes)
    return BedsideScan.model_validate(fields)


def test_an_infusion_passes_the_three_checks_in_order_and_reaches_the_his(stay: Stay) -> None:
    order = infusion(stay)
    assert (order.dose, order.concentration, order.route) == ("250 ml", "0.9%", "IVGTT")
    scan = scan_for(stay, order)
    verdict = stay.mw.ward.verify(scan)
    assert verdict.ok
    assert verdict.order_type == "infusion"
    assert tuple(r.name for r in verdict.results) == VERIFICATIONS
    assert {r.outcome for r in verdict.results} == {"passed"}
    assert stay.his.store.executions(order.order_id) == []  # verifying executes nothing

    started = stay.mw.ward.begin(scan)
    assert started.state == "during"
    during = stay.mw.ward.check(started.execution_id, scan)
    assert during.state == "after"
    assert stay.his.store.executions(order.order_id) == []  # not before the last check
    done = stay.mw.ward.check(started.execution_id, scan)
    assert (done.state, done.his_state) == ("done", "recorded")
    assert all(done.checks[f"check.{c}"] for c in ("before", "during", "after"))
    assert all(done.checks[v] for v in VERIFICATIONS)
    recorded = stay.his.store.executions(order.order_id)
    assert [r["executed_by"] for r in recorded] == ["N-007"]
    assert stay.station.executed[-1].order_id == order.order_id
    assert stay.station.executed[-1].checks == done.checks
    # what was given goes to the HIS as a pharmacy administration (HL7 RAS^O17)
    assert (done.drug_code, done.dose, done.route) == ("NS250", "250 ml", "IVGTT")
    assert stay.station.executed[-1].patient_id == stay.admission.patient_id
    with pytest.raises(ExecutionStateError) as caught:
        stay.mw.ward.check(started.execution_id, scan)
    assert caught.value.state == "done"


def test_an_order_is_executed_once(stay: Stay) -> None:
    order = infusion(stay)
    done = stay.mw.ward.execute(scan_for(stay, order))
    assert done.state == "done"
    with pytest.raises(AlreadyExecutedError) as caught:
        stay.mw.ward.execute(scan_for(stay, order, nurse_id="N-008"))
    assert caught.value.execution_id == done.execution_id
    assert len(stay.his.store.executions(order.order_id)) == 1


def test_an_abandoned_execution_may_start_again_but_not_run_twice(stay: Stay) -> None:
    order = infusion(stay)
    first = stay.mw.ward.begin(scan_for(stay, order))
    with pytest.raises(AlreadyExecutedError):
        stay.mw.ward.begin(scan_for(stay, order))
    stay.mw.ward.abandon(first.execution_id, reason="patient asleep", actor="N-007")
    with pytest.raises(ExecutionStateError):
        stay.mw.ward.check(first.execution_id, scan_for(stay, order))
    again = stay.mw.ward.execute(scan_for(stay, order))
    assert again.state == "done"
    assert again.execution_id != first.execution_id


@pytest.mark.parametrize(
    ("changes", "failed"),
    [
        ({"bed": "14"}, "bed"),
        ({"bed": None}, "bed"),
        ({"drug_code": "GS500"}, "drug"),
        ({"dose": "250 mg"}, "dose"),  # a mass where a volume is ordered
        ({"dose": "25 ml"}, "dose"),
        ({"dose": "lots"}, "dose"),
        ({"concentration": "0.45%"}, "concentration"),
        ({"route": "PO"}, "route"),
        ({"route": "口服"}, "route"),
        ({"patient_name": "王小明"}, "name"),
    ],
)
def test_each_mismatch_refuses_naming_the_verification(
    stay: Stay, changes: dict[str, object], failed: str
) -> None:
    order = infusion(stay)
    with pytest.raises(VerificationFailedError) as caught:
        stay.mw.ward.begin(scan_for(stay, order, **changes))
    assert caught.value.failed == (failed,)
    assert caught.value.check == "before"
    assert failed in str(caught.value)
    assert stay.his.store.executions(order.order_id) == []
    assert stay.mw.ward.executions(stay.admission.admission_id) == []


def test_the_same_amount_in_other_units_and_spellings_passes(stay: Stay) -> None:
    order = infusion(stay)
    scan = scan_for(stay, order, dose="0.25 L", concentration="9 mg/ml", route="静滴")
    assert stay.mw.ward.verify(scan).ok


def test_the_name_the_patient_gives_is_compared_with_the_record(stay: Stay) -> None:
    order = infusion(stay)
    name = stay.mw.residents.get(stay.mw.ward.binding(stay.band).resident_id).name
    assert stay.mw.ward.verify(scan_for(stay, order, patient_name=f" {name} ")).ok


def test_a_scan_outside_the_time_window_is_refused(stay: Stay) -> None:
    order = infusion(stay)
    assert order.scheduled_at is not None
    late = scan_for(stay, order, scanned_at=order.scheduled_at + timedelta(minutes=31))
    with pytest.raises(VerificationFailedError) as caught:
        stay.mw.ward.begin(late)
    assert caught.value.failed == ("time",)
    assert "too late" in caught.value.reasons["time"]
    early = scan_for(stay, order, scanned_at=order.scheduled_at - timedelta(minutes=45))
    assert stay.mw.ward.verify(early).failed == ("time",)
    # the window per order type comes from [ward.rules]
    assert stay.mw.ward.rule(order).minutes_after == 30


def test_an_order_of_another_stay_fails_the_name(stay: Stay) -> None:
    other, _card = admit(stay.mw, bed="14")
    assert other.admission_id != stay.admission.admission_id
    foreign = stay.his.store.orders(other.patient_id, other.admission_id)[-1]["order_id"]
    scan = scan_for(stay, infusion(stay), order_id=foreign)
    with pytest.raises(VerificationFailedError) as caught:
        stay.mw.ward.begin(scan)
    assert caught.value.failed == ("name",)
    assert stay.his.store.executions(foreign) == []


def test_a_skin_test_needs_a_second_nurse(stay: Stay) -> None:
    order_id = stay.his.store.add_order(
        stay.admission.admission_id,
        "skin_test",
        "PNC-ST",
        "青霉素皮试 Penicillin skin test",
        scheduled_at=datetime.now().replace(second=0, microsecond=0),
        dose="0.1 ml",
        concentration="500 IU/ml",
        route="ID",
        ordered_by="D07",
    )
    order = next(o for o in stay.mw.ward.orders(stay.band) if o.order_id == order_id)
    assert (order.kind, order.ordered_by) == ("skin_test", "D07")
    scan = scan_for(stay, order, route="皮内")
    with pytest.raises(VerificationFailedError) as caught:
        stay.mw.ward.begin(scan)
    assert caught.value.failed == ("second_nurse",)
    with pytest.raises(VerificationFailedError):
        stay.mw.ward.begin(scan.model_copy(update={"second_nurse_id": "N-007"}))  # herself
    done = stay.mw.ward.execute(scan.model_copy(update={"second_nurse_id": "N-011"}))
    assert (done.state, done.second_nurse, done.order_type) == ("done", "N-011", "skin_test")


def test_a_specimen_checks_patient_bed_and_time_only(stay: Stay) -> None:
    order_id = stay.his.store.add_order(
        stay.admission.admission_id,
        "lab",
        "CBC",
        "血常规 Complete blood count",
        scheduled_at=datetime.now().replace(second=0, microsecond=0),
    )
    scan = BedsideScan(wristband_id=stay.band, nurse_id="N-007", order_id=order_id, bed="12")
    verdict = stay.mw.ward.verify(scan)
    assert verdict.ok
    assert verdict.order_type == "specimen"
    outcomes = {r.name: r.outcome for r in verdict.results}
    assert outcomes["drug"] == outcomes["dose"] == outcomes["route"] == "not_applicable"
    done = stay.mw.ward.execute(scan)
    assert "check.during" not in done.checks  # [ward.rules.specimen]: before and after
    assert done.drug_code is None  # no drug given: the order's completion (ORM^O01)
    assert len(stay.his.store.executions(order_id)) == 1


def test_a_cancelled_order_is_not_executed(stay: Stay) -> None:
    order = infusion(stay)
    stay.his.store.cancel_order(order.order_id)
    with pytest.raises(OrderNotExecutableError) as caught:
        stay.mw.ward.begin(scan_for(stay, order))
    assert caught.value.status == "cancelled"


def test_a_replaced_or_released_band_cannot_be_scanned(stay: Stay) -> None:
    order = infusion(stay)
    stay.mw.ward.rebind(stay.band, "WB-0002")
    with pytest.raises(WristbandDeadError):
        stay.mw.ward.begin(scan_for(stay, order))
    stay.mw.ward.unbind("WB-0002")
    with pytest.raises(WristbandReleasedError):
        stay.mw.ward.begin(scan_for(stay, order, wristband_id="WB-0002"))


def test_an_execution_the_his_refused_is_kept_and_sent_again(stay: Stay) -> None:
    order = infusion(stay)
    scan = scan_for(stay, order)
    started = stay.mw.ward.begin(scan)
    stay.mw.ward.check(started.execution_id, scan)
    # the after-check asks the HIS for the orders (1), then uploads (2): refuse the upload
    stay.his.faults.set(nak=None)
    done: Any = _check_with_upload_refused(stay, started.execution_id, scan)
    assert (done.state, done.his_state) == ("done", "failed")
    assert done.his_error
    assert stay.his.store.executions(order.order_id) == []
    resent = stay.mw.ward.resend()
    assert [(e.execution_id, e.his_state) for e in resent] == [(done.execution_id, "recorded")]
    assert len(stay.his.store.executions(order.order_id)) == 1
    assert stay.mw.ward.resend() == []


def test_configured_rules_apply(make_ward_mw: object, reference_his: object) -> None:
    mw = make_ward_mw(  # type: ignore[operator]
        ward={"rules": {"infusion": {"minutes_after": 5, "checks": ["before", "after"]}}}
    )
    admission, card = admit(mw)
    mw.ward.bind("WB-0100", admission, card_number=card)
    order = next(o for o in mw.ward.orders("WB-0100") if o.route == "IVGTT")
    assert order.scheduled_at is not None
    late = BedsideScan(
        wristband_id="WB-0100",
        nurse_id="N-1",
        order_id=order.order_id,
        bed="12",
        drug_code=order.code,
        dose=order.dose,
        concentration=order.concentration,
        route=order.route,
        scanned_at=order.scheduled_at + timedelta(minutes=6),
    )
    assert mw.ward.verify(late).failed == ("time",)
    done = mw.ward.execute(late.model_copy(update={"scanned_at": order.scheduled_at}))
    # the HIS's schedule is local wall time; the record keeps the same instant in UTC
    assert done.started_at == order.scheduled_at.astimezone(UTC)
    assert sorted(k for k in done.checks if k.startswith("check.")) == [
        "check.after",
        "check.before",
    ]


def _check_with_upload_refused(stay: Stay, execution_id: str, scan: BedsideScan) -> object:
    """The last check, with the HIS refusing the execution's upload (not the order query)."""
    real = stay.mw.his.order_executed

    def refused(execution: object) -> bool:
        stay.his.faults.set(nak="AE", times=1)
        return real(execution)  # type: ignore[arg-type]

    stay.mw.his.order_executed = refused  # type: ignore[method-assign]
    try:
        return stay.mw.ward.check(execution_id, scan)
    finally:
        del stay.mw.his.order_executed

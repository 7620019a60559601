"""The ward keeps the HIS's orders for the scans that follow a band scan; the check
before execution still asks the HIS, so a cancelled or completed order is refused."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from hcm_his_hl7 import Hl7His
from hcm_his_reference.hl7_front import Hl7Front

from hcmiddleware import Middleware
from hcmiddleware.errors import AlreadyExecutedError, OrderNotExecutableError
from hcmiddleware.models import BedsideScan, Order
from hcmiddleware.ward.orders import OrderStore

from .conftest import Stay, admit


def _count_fetches(mw: Middleware) -> list[str]:
    """Spy on the HIS's orders query: one entry per time the ward asks it."""
    asked: list[str] = []
    real: Callable[..., list[Order]] = mw.his.orders

    def counted(patient: Any, visit_id: str) -> list[Order]:
        asked.append(visit_id)
        return real(patient, visit_id)

    mw.his.orders = counted  # type: ignore[method-assign]
    return asked


def _drip(orders: list[Order]) -> Order:
    return next(o for o in orders if o.route == "IVGTT")


def _scan(stay: Stay, order: Order, **changes: Any) -> BedsideScan:
    values: dict[str, Any] = {
        "wristband_id": stay.band,
        "nurse_id": "N-007",
        "order_id": order.order_id,
        "bed": "12",
        "drug_code": order.code,
        "dose": order.dose,
        "concentration": order.concentration,
        "route": order.route,
    }
    values.update(changes)
    return BedsideScan(**values)


def test_the_scans_after_the_band_scan_reuse_its_orders(stay: Stay) -> None:
    asked = _count_fetches(stay.mw)
    order = _drip(stay.mw.ward.orders(stay.band))  # the band scan: the handheld's list
    assert len(asked) == 1
    scan = _scan(stay, order)
    for _ in range(3):
        assert stay.mw.ward.verify(scan).ok
    assert len(asked) == 1, "the label scans are checked against the orders just fetched"
    started = stay.mw.ward.begin(scan)
    assert len(asked) == 2, "the check before execution asks the HIS"
    during = stay.mw.ward.check(started.execution_id, scan)
    assert len(asked) == 2
    done = stay.mw.ward.check(during.execution_id, scan)
    assert (done.state, done.his_state) == ("done", "recorded")
    # executed: the HIS changed the order, the kept copy is gone, the next scan asks
    with pytest.raises(AlreadyExecutedError):
        stay.mw.ward.verify(scan)
    assert len(asked) == 3
    assert stay.his.store.order(order.order_id)["status"] == "done"


def test_an_order_cancelled_in_the_his_is_refused_before_execution(stay: Stay) -> None:
    asked = _count_fetches(stay.mw)
    order = _drip(stay.mw.ward.orders(stay.band))
    scan = _scan(stay, order)
    stay.his.store.cancel_order(order.order_id)
    # a verify in the next seconds still answers from what the HIS said at the band scan
    assert stay.mw.ward.verify(scan).ok
    assert len(asked) == 1
    with pytest.raises(OrderNotExecutableError) as caught:
        stay.mw.ward.begin(scan)
    assert caught.value.status == "cancelled"
    assert stay.mw.ward.executions(stay.admission.admission_id) == []
    assert stay.his.store.executions(order.order_id) == []
    # what begin learnt is kept: the next verify refuses without asking again
    with pytest.raises(OrderNotExecutableError):
        stay.mw.ward.verify(scan)
    assert len(asked) == 2


def test_an_order_completed_in_the_his_is_not_executed_again(stay: Stay) -> None:
    order = _drip(stay.mw.ward.orders(stay.band))
    scan = _scan(stay, order)
    assert stay.mw.ward.verify(scan).ok
    # another system (the HIS's own nursing module, say) records it as given
    stay.his.store.order_executed(order.order_id, datetime.now(), "N-OTHER")
    with pytest.raises(OrderNotExecutableError) as caught:
        stay.mw.ward.execute(scan)
    assert caught.value.status == "done"
    assert [r["executed_by"] for r in stay.his.store.executions(order.order_id)] == ["N-OTHER"]
    assert stay.mw.ward.executions(stay.admission.admission_id) == []


def test_an_order_begun_by_another_nurse_is_refused_at_verify(stay: Stay) -> None:
    order = _drip(stay.mw.ward.orders(stay.band))
    first = stay.mw.ward.begin(_scan(stay, order))
    with pytest.raises(AlreadyExecutedError) as caught:
        stay.mw.ward.verify(_scan(stay, order, nurse_id="N-008"))
    assert caught.value.execution_id == first.execution_id


def test_an_order_not_kept_is_fetched(stay: Stay) -> None:
    asked = _count_fetches(stay.mw)
    stay.mw.ward.orders(stay.band)
    later = stay.his.store.add_order(  # ordered after the band scan
        stay.admission.admission_id,
        "drug",
        "GS500",
        "5% 葡萄糖 Glucose",
        scheduled_at=datetime.now().replace(second=0, microsecond=0),
        dose="500 ml",
        concentration="5%",
        route="IVGTT",
    )
    scan = BedsideScan(
        wristband_id=stay.band,
        nurse_id="N-007",
        order_id=later,
        bed="12",
        drug_code="GS500",
        dose="500 ml",
        concentration="5%",
        route="IVGTT",
    )
    assert stay.mw.ward.verify(scan).ok
    assert asked == [stay.admission.admission_id] * 2


def test_orders_go_stale(make_ward_mw: Any) -> None:
    mw: Middleware = make_ward_mw({"orders_fresh_for": 0.05})
    admission, card = admit(mw)
    mw.ward.bind("WB-0002", admission, card_number=card)
    asked = _count_fetches(mw)
    order = _drip(mw.ward.orders("WB-0002"))
    time.sleep(0.1)
    scan = BedsideScan(
        wristband_id="WB-0002",
        nurse_id="N-1",
        order_id=order.order_id,
        bed="12",
        drug_code=order.code,
        dose=order.dose,
        concentration=order.concentration,
        route=order.route,
    )
    assert mw.ward.verify(scan).ok
    assert len(asked) == 2, "older than orders_fresh_for: asked again"


def test_no_store_asks_the_his_at_every_scan(make_ward_mw: Any) -> None:
    mw: Middleware = make_ward_mw({"orders_fresh_for": 0})
    admission, card = admit(mw)
    mw.ward.bind("WB-0003", admission, card_number=card)
    asked = _count_fetches(mw)
    order = _drip(mw.ward.orders("WB-0003"))
    scan = BedsideScan(
        wristband_id="WB-0003",
        nurse_id="N-1",
        order_id=order.order_id,
        bed="12",
        drug_code=order.code,
        dose=order.dose,
        concentration=order.concentration,
        route=order.route,
    )
    for _ in range(2):
        assert mw.ward.verify(scan).ok
    assert len(asked) == 3
    assert len(mw.ward.order_store) == 0
    assert mw.ward.receive_orders([order]) == 0


# -- orders the HIS pushes (RDE^O11) ---------------------------------------------------------


def _pushed(stay: Stay, order_id: str) -> list[Order]:
    """The order as the HIS pushes it, read by the HL7 adapter."""
    plugin = stay.mw.pm.get_plugin("his-hl7")
    assert isinstance(plugin, Hl7His)
    return plugin.orders_from_rde(Hl7Front(stay.his.store).rde_o11(order_id))


def test_a_pushed_order_is_checked_without_asking_the_his(stay: Stay) -> None:
    asked = _count_fetches(stay.mw)
    start = datetime.now().replace(second=0, microsecond=0)
    order_id = stay.his.store.add_order(
        stay.admission.admission_id,
        "drug",
        "CEF",
        "头孢曲松 Ceftriaxone",
        scheduled_at=None,
        dose="1 g",
        concentration="10 mg/ml",
        route="IVGTT",
        order_type="infusion",
        window_start=start,
        window_end=start + timedelta(hours=1),
    )
    pushed = _pushed(stay, order_id)
    assert stay.mw.ward.receive_orders(pushed) == 1
    assert stay.mw.ward.verify(_scan(stay, pushed[0], dose="1000 mg")).ok
    assert asked == []
    # the HIS pushes the order again, cancelled: the next verify refuses at once
    stay.his.store.cancel_order(order_id)
    stay.mw.ward.receive_orders(_pushed(stay, order_id))
    with pytest.raises(OrderNotExecutableError):
        stay.mw.ward.verify(_scan(stay, pushed[0]))
    assert asked == []


def test_a_pushed_order_of_another_patient_fails_the_name(stay: Stay) -> None:
    order = _drip(stay.mw.ward.orders(stay.band))
    forged = order.model_copy(update={"patient_id": "SOMEONE-ELSE"})
    stay.mw.ward.receive_orders([forged])
    verdict = stay.mw.ward.verify(_scan(stay, order))
    assert verdict.failed == ("name",)


# -- the store on its own ---------------------------------------------------------------------


def _order(order_id: str, visit_id: str = "A1", **changes: Any) -> Order:
    return Order(
        order_id=order_id,
        patient_id="P1",
        visit_id=visit_id,
        kind="drug",
        code="NS250",
        name="saline",
        **changes,
    )


def test_the_store_answers_only_while_fresh() -> None:
    now = [100.0]
    store = OrderStore(30.0, clock=lambda: now[0])
    store.fetched("A1", [_order("O1"), _order("O2"), _order("X9", visit_id="A2")])
    assert store.find("A1", "O1") == _order("O1")
    assert store.find("A2", "X9") is None, "a fetch keeps only the stay's own orders"
    now[0] += 29.9
    assert store.find("A1", "O2") is not None
    store.pushed([_order("O2", status="cancelled")])
    now[0] += 0.2
    assert store.find("A1", "O1") is None, "30 s after the fetch"
    found = store.find("A1", "O2")
    assert found is not None
    assert found.status == "cancelled", "the push is younger"
    store.fetched("A1", [_order("O1")])
    assert store.find("A1", "O2") is None, "a new fetch replaces the stay's list"
    store.forget("A1", "O1")
    assert store.find("A1", "O1") is None
    assert (store.hits, store.misses) == (3, 4)


def test_the_store_keeps_a_bounded_number_of_stays() -> None:
    now = [0.0]
    store = OrderStore(30.0, clock=lambda: now[0])
    store.MAX_STAYS = 3
    for n in range(5):
        store.fetched(f"A{n}", [_order("O1", visit_id=f"A{n}")])
    assert [store.find(f"A{n}", "O1") is not None for n in range(5)] == [
        False,
        False,
        True,
        True,
        True,
    ]
    now[0] += 31
    store.pushed([_order("O9", visit_id="B1")])
    assert len(store) == 1, "stale stays are dropped"

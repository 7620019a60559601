"""Orders from the HIS carry their ward order type and time window (HL7 RDE^O11, FHIR),
and the ward's rule of that type applies; an order feed the ward cannot use is refused."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from hcm_his_fhir import FhirHis
from hcm_his_hl7 import Hl7His
from hcm_his_reference import ReferenceHis
from hcm_his_reference.hl7_front import Hl7Front
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Group
from hl7apy.parser import parse_message

from hcmiddleware import Middleware
from hcmiddleware.errors import HisProtocolError, VerificationFailedError
from hcmiddleware.models import BedsideScan, Order
from hcmiddleware.sam.samples import TEST_ISSUER_KEYS

from .conftest import HOSPITAL, Stay, admit


def _now() -> datetime:
    return datetime.now().replace(second=0, microsecond=0)


def _penicillin_test(stay: Stay, **extra: Any) -> str:
    """A skin test the HIS types itself, with its own window (an hour from now)."""
    start = _now()
    return stay.his.store.add_order(
        stay.admission.admission_id,
        "drug",
        "PNC-ST",
        "青霉素皮试 Penicillin skin test",
        scheduled_at=None,
        dose="0.1 ml",
        concentration="500 U/ml",
        route="ID",
        frequency="ONCE",
        order_type="skin_test",
        window_start=start,
        window_end=start + timedelta(hours=1),
        **extra,
    )


def _order(stay: Stay, order_id: str) -> Order:
    return next(o for o in stay.mw.ward.orders(stay.band) if o.order_id == order_id)


def _scan(order: Order, **changes: Any) -> BedsideScan:
    values: dict[str, Any] = {
        "wristband_id": "WB-0001",
        "nurse_id": "N-001",
        "order_id": order.order_id,
        "bed": "12",
        "drug_code": order.code,
        "dose": order.dose,
        "concentration": order.concentration,
        "route": order.route,
    }
    values.update(changes)
    return BedsideScan(**values)


# -- HL7 v2: the order group of RDE^O11 --------------------------------------------------


def test_an_hl7_order_brings_its_type_and_window(stay: Stay) -> None:
    order_id = _penicillin_test(stay)
    order = _order(stay, order_id)
    assert order.order_type == "skin_test"
    assert order.kind == "skin_test"
    assert (order.dose, order.concentration, order.route) == ("0.1 ml", "500 U/ml", "ID")
    assert order.window_start is not None
    assert order.window_end is not None
    assert order.window_end - order.window_start == timedelta(hours=1)
    assert order.scheduled_at is None
    # the stay's drip: typed by the HIS, no window of its own
    drip = next(o for o in stay.mw.ward.orders(stay.band) if o.code == "NS250")
    assert (drip.order_type, drip.window_start, drip.frequency) == ("infusion", None, "QD")


def test_the_rule_of_the_his_type_applies(stay: Stay) -> None:
    # the same route (ID) is an injection by derivation; the HIS says skin test, so a
    # second nurse must sign (the skin test rule)
    order = _order(stay, _penicillin_test(stay))
    verdict = stay.mw.ward.verify(_scan(order))
    assert verdict.ok
    assert verdict.order_type == "skin_test"
    with pytest.raises(VerificationFailedError) as caught:
        stay.mw.ward.begin(_scan(order))
    assert caught.value.failed == ("second_nurse",)
    done = stay.mw.ward.execute(_scan(order, second_nurse_id="N-002"))
    assert (done.state, done.second_nurse) == ("done", "N-002")
    assert stay.his.store.executions(order.order_id)


def test_the_his_window_replaces_the_rules_minutes(stay: Stay) -> None:
    order = _order(stay, _penicillin_test(stay))
    assert order.window_start is not None
    assert order.window_end is not None
    # 50 minutes in: outside the skin test rule's 30 minutes, inside the HIS's hour
    inside = _scan(order, scanned_at=order.window_start + timedelta(minutes=50))
    assert stay.mw.ward.verify(inside).ok
    late = _scan(order, scanned_at=order.window_end + timedelta(minutes=1))
    verdict = stay.mw.ward.verify(late)
    assert verdict.failed == ("time",)
    early = _scan(order, scanned_at=order.window_start - timedelta(minutes=1))
    assert stay.mw.ward.verify(early).failed == ("time",)


def _strict_rde_o11(text: str) -> None:
    """hl7apy's strict v2.5 verdict on an RDE^O11.

    hl7apy's parser files the TQ1 after RXE under the TIMING group (the one before RXE
    has the same segment); it is moved to TIMING_ENCODED, where v2.5 puts it, before
    the structure is validated.
    """
    message = parse_message(text, validation_level=VALIDATION_LEVEL.STRICT)
    for order in (c for c in message.children if c.name == "RDE_O11_ORDER"):
        timing = [c for c in order.children if c.name == "RDE_O11_TIMING"]
        names = [c.name for c in order.children]
        if len(timing) == 2 and names.index("RXE") < order.children.index(timing[1]):
            encoded = Group(
                "RDE_O11_TIMING_ENCODED", version="2.5", validation_level=VALIDATION_LEVEL.STRICT
            )
            encoded.add(timing[1].children[0])
            order.children.remove(timing[1])
            order.add(encoded)
    message.validate()


def test_rde_o11_validates_and_the_adapter_reads_it(stay: Stay) -> None:
    order_id = _penicillin_test(stay, ordered_by="D-017")
    text = Hl7Front(stay.his.store).rde_o11(order_id)
    assert text.split("\r")[0].split("|")[8] == "RDE^O11^RDE_O11"
    _strict_rde_o11(text)
    adapter = _adapter(stay)
    pushed = adapter.orders_from_rde(text)
    assert pushed == [_order(stay, order_id)]
    assert pushed[0].ordered_by == "D-017"


def test_an_rde_o11_the_ward_cannot_use_is_refused(stay: Stay) -> None:
    order_id = _penicillin_test(stay)
    text = Hl7Front(stay.his.store).rde_o11(order_id)
    adapter = _adapter(stay)
    segments = text.split("\r")
    rxe = next(i for i, s in enumerate(segments) if s.startswith("RXE|"))
    broken = [*segments]
    fields = broken[rxe].split("|")
    fields[3] = "0,1"  # a decimal comma: not an HL7 number
    broken[rxe] = "|".join(fields)
    with pytest.raises(HisProtocolError) as caught:
        adapter.orders_from_rde("\r".join(broken))
    assert "not a number" in caught.value.message
    assert caught.value.hint
    no_rxe = "\r".join(s for s in segments if not s.startswith("RXE|"))
    with pytest.raises(HisProtocolError, match="neither RXE nor OBR"):
        adapter.orders_from_rde(no_rxe)
    no_pid = "\r".join(s for s in segments if not s.startswith("PID|"))
    with pytest.raises(HisProtocolError, match="PID-3"):
        adapter.orders_from_rde(no_pid)
    other = text.replace("RDE^O11^RDE_O11", "ORM^O01^ORM_O01", 1)
    with pytest.raises(HisProtocolError, match="RDE"):
        adapter.orders_from_rde(other)


def _adapter(stay: Stay) -> Hl7His:
    plugin = stay.mw.pm.get_plugin("his-hl7")
    assert isinstance(plugin, Hl7His)
    return plugin


def _spoil(stay: Stay, order_id: str, **values: str) -> None:
    """What a faulty HIS holds for an order (the store itself refuses these)."""
    with stay.his.store.transaction() as db:
        for column, value in values.items():
            db.execute(f"UPDATE orders SET {column} = ? WHERE order_id = ?", (value, order_id))


def test_a_window_that_ends_before_it_starts_is_refused_not_guessed(stay: Stay) -> None:
    order = _order(stay, _penicillin_test(stay))
    assert order.window_start is not None
    _spoil(stay, order.order_id, window_end=(order.window_start - timedelta(hours=1)).isoformat())
    with pytest.raises(HisProtocolError) as caught:
        # the check before execution asks the HIS afresh (a verify would reuse the good
        # copy fetched a moment ago: see test_order_store.py)
        stay.mw.ward.begin(_scan(order, second_nurse_id="N-002"))
    assert "ends" in caught.value.message
    assert caught.value.hint
    assert stay.mw.ward.executions(stay.admission.admission_id) == []
    assert stay.his.store.executions(order.order_id) == []


def test_an_unknown_order_type_is_refused(stay: Stay) -> None:
    order = _order(stay, _penicillin_test(stay))
    _spoil(stay, order.order_id, order_type="transfusion")
    with pytest.raises(HisProtocolError, match="transfusion"):
        stay.mw.ward.orders(stay.band)


def test_the_store_refuses_orders_the_ward_could_not_check(reference_his: ReferenceHis) -> None:
    from hcm_his_reference.store import HisFaultError

    store = reference_his.store
    patient, _ = store.register_patient(resident_id="R-1", name="测试")
    stay = store.admit(
        patient_id=patient["patient_id"],
        request_id="Q-1",
        department="NEI",
        ward="5A",
        bed="30",
        admitted_at=_now(),
    )
    start = _now()
    for bad in (
        {"order_type": "transfusion", "scheduled_at": start},
        {"scheduled_at": None},
        {"scheduled_at": None, "window_start": start, "window_end": start},
    ):
        with pytest.raises(HisFaultError, match="invalid-order"):
            store.add_order(stay["admission_id"], "drug", "X", "X", dose="1 ml", **bad)


# -- FHIR R4 -----------------------------------------------------------------------------------


@pytest.fixture
def fhir_mw(reference_his: ReferenceHis, hcm_make_middleware: Any) -> Middleware:
    mw: Middleware = hcm_make_middleware(
        plugins={"his-fhir": FhirHis()},
        settings={"his-fhir": {"base_url": reference_his.fhir_url, "timeout": 2.0}},
        middleware={"institution_code": HOSPITAL, "site_name": "Test hospital"},
        sam={"keys": str(TEST_ISSUER_KEYS)},
    )
    return mw


def _fhir_orders(mw: Middleware, admission_id: str, patient_id: str) -> list[Order]:
    from hcmiddleware.models import HospitalPatient

    patient = HospitalPatient(hospital_code=HOSPITAL, patient_id=patient_id, resident_id="-")
    return mw.his.orders(patient, admission_id)


def test_fhir_orders_bring_their_type_and_window(
    fhir_mw: Middleware, reference_his: ReferenceHis
) -> None:
    admission, _card = admit(fhir_mw)
    start = _now()
    store = reference_his.store
    skin = store.add_order(
        admission.admission_id,
        "skin_test",
        "PNC-ST",
        "青霉素皮试",
        scheduled_at=None,
        dose="0.1 ml",
        route="ID",
        window_start=start,
        window_end=start + timedelta(hours=1),
    )
    blood = store.add_order(
        admission.admission_id,
        "specimen",
        "BLD-CUL",
        "血培养 Blood culture",
        scheduled_at=None,
        order_type="specimen",
        window_start=start,
        window_end=start + timedelta(minutes=90),
    )
    orders = {
        o.order_id: o for o in _fhir_orders(fhir_mw, admission.admission_id, admission.patient_id)
    }
    assert (orders[skin].kind, orders[skin].order_type) == ("skin_test", "skin_test")
    assert orders[skin].window_end == start + timedelta(hours=1)
    assert orders[blood].order_type == "specimen"
    assert (orders[blood].window_start, orders[blood].window_end) == (
        start,
        start + timedelta(minutes=90),
    )
    drip = next(o for o in orders.values() if o.code == "NS250")
    assert (drip.order_type, drip.window_start) == ("infusion", None)


def test_fhir_orders_the_ward_cannot_use_are_refused(
    fhir_mw: Middleware, reference_his: ReferenceHis
) -> None:
    admission, _card = admit(fhir_mw)
    start = _now()
    store = reference_his.store
    order_id = store.add_order(
        admission.admission_id,
        "drug",
        "CEF",
        "头孢曲松 Ceftriaxone",
        scheduled_at=None,
        dose="1 g",
        route="IVGTT",
        order_type="infusion",
        window_start=start,
        window_end=start + timedelta(hours=1),
    )
    with store.transaction() as db:
        db.execute(
            "UPDATE orders SET window_end = ? WHERE order_id = ?",
            ((start - timedelta(minutes=5)).isoformat(), order_id),
        )
    with pytest.raises(HisProtocolError) as caught:
        _fhir_orders(fhir_mw, admission.admission_id, admission.patient_id)
    assert "ends" in caught.value.message
    assert caught.value.hint
    with store.transaction() as db:
        db.execute(
            "UPDATE orders SET window_end = ?, order_type = 'transfusion' WHERE order_id = ?",
            ((start + timedelta(hours=1)).isoformat(), order_id),
        )
    with pytest.raises(HisProtocolError, match="transfusion"):
        _fhir_orders(fhir_mw, admission.admission_id, admission.patient_id)


def test_fhir_order_resources_validate_as_r4(
    fhir_mw: Middleware, reference_his: ReferenceHis
) -> None:
    from fhir.resources.R4B import get_fhir_model_class

    admission, _card = admit(fhir_mw)
    start = _now()
    reference_his.store.add_order(
        admission.admission_id,
        "specimen",
        "BLD-CUL",
        "血培养",
        scheduled_at=None,
        order_type="specimen",
        window_start=start,
        window_end=start + timedelta(hours=1),
    )
    reference_his.store.add_order(
        admission.admission_id,
        "skin_test",
        "PNC-ST",
        "青霉素皮试",
        scheduled_at=start,
        dose="0.1 ml",
        route="ID",
        window_start=start,
        window_end=start + timedelta(hours=1),
    )
    from hcm_his_reference.fhir_resources import FhirRoutes

    routes = FhirRoutes(reference_his.store)
    for kind in ("ServiceRequest", "MedicationRequest"):
        found = routes.search(
            kind,
            {"subject": f"Patient/{admission.patient_id}", "encounter": admission.admission_id},
        )
        assert found["entry"]
        for entry in found["entry"]:
            get_fhir_model_class(kind).model_validate(entry["resource"])

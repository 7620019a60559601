"""A specimen collected at the bedside reaches a FHIR HIS as FHIR models it: a Specimen
whose ``request`` is the order's ServiceRequest, the Task completing the order with the
Specimen as its output, and the ServiceRequest listing it in ``specimen`` afterwards."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from hcm_his_fhir import FhirHis
from hcm_his_reference import ReferenceHis

from hcmiddleware import Middleware
from hcmiddleware.errors import HisRejectedError
from hcmiddleware.models import BedsideScan, OrderExecution
from hcmiddleware.sam.samples import TEST_ISSUER_KEYS

from .conftest import HOSPITAL, admit


@pytest.fixture
def fhir_ward(reference_his: ReferenceHis, hcm_make_middleware: Any) -> tuple[Middleware, Any]:
    """A Middleware on the reference HIS's FHIR side; the sample holder admitted, band
    WB-0001; and the stay."""
    mw: Middleware = hcm_make_middleware(
        plugins={"his-fhir": FhirHis()},
        settings={"his-fhir": {"base_url": reference_his.fhir_url, "timeout": 2.0}},
        middleware={"institution_code": HOSPITAL, "site_name": "Test hospital"},
        sam={"keys": str(TEST_ISSUER_KEYS)},
    )
    admission, card = admit(mw)
    mw.ward.bind("WB-0001", admission, card_number=card)
    return mw, admission


def _blood_culture(his: ReferenceHis, admission_id: str, kind: str = "specimen") -> str:
    start = datetime.now().replace(second=0, microsecond=0)
    return his.store.add_order(
        admission_id,
        kind,
        "BLD-CUL",
        "血培养 Blood culture",
        scheduled_at=None,
        order_type="specimen",
        window_start=start - timedelta(minutes=10),
        window_end=start + timedelta(hours=1),
    )


def _fhir(his: ReferenceHis, path: str) -> dict[str, Any]:
    answer = httpx.get(f"{his.fhir_url}/{path}", timeout=5)
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def _sent(mw: Middleware) -> list[tuple[str, str, dict[str, Any] | None]]:
    """Spy on the FHIR adapter's requests: ``(method, path, resource)`` each."""
    plugin = mw.pm.get_plugin("his-fhir")
    assert isinstance(plugin, FhirHis)
    assert plugin.client is not None
    client = plugin.client
    real = client.request
    sent: list[tuple[str, str, dict[str, Any] | None]] = []

    def spy(method: str, path: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
        sent.append((method, path, kwargs.get("resource")))
        return real(method, path, **kwargs)

    client.request = spy  # type: ignore[method-assign]
    return sent


def test_a_specimen_collected_at_the_bedside_is_a_fhir_specimen(
    fhir_ward: tuple[Middleware, Any], reference_his: ReferenceHis
) -> None:
    from fhir.resources import get_fhir_model_class as r5
    from fhir.resources.R4B import get_fhir_model_class as r4

    mw, admission = fhir_ward
    order_id = _blood_culture(reference_his, admission.admission_id)
    sent = _sent(mw)
    scan = BedsideScan(wristband_id="WB-0001", nurse_id="N-007", order_id=order_id, bed="12")
    done = mw.ward.execute(scan)
    assert (done.state, done.order_type, done.his_state) == ("done", "specimen", "recorded")

    posts = [(path, body) for method, path, body in sent if method == "POST"]
    assert [path for path, _ in posts] == ["Specimen", "Task"]
    specimen, task = posts[0][1], posts[1][1]
    assert specimen is not None
    assert task is not None
    assert specimen["request"][0]["reference"] == f"ServiceRequest/{order_id}"
    assert specimen["subject"] == {"reference": f"Patient/{admission.patient_id}"}
    assert specimen["collection"]["collector"]["identifier"]["value"] == "N-007"
    # what the HIS made, and the Task pointing at it, are FHIR R4 and R5 alike
    [made] = reference_his.store.specimens(order_id)
    assert task["output"] == [
        {
            "type": {"text": "specimen"},
            "valueReference": {"reference": f"Specimen/{made['specimen_id']}"},
        }
    ]
    assert made["collected_by"] == "N-007"
    stored = _fhir(reference_his, f"Specimen/{made['specimen_id']}")
    for resource in (specimen, task, stored):
        r4(resource["resourceType"]).model_validate(resource)
        r5(resource["resourceType"]).model_validate(resource)
    assert stored["request"] == [{"reference": f"ServiceRequest/{order_id}"}]
    # the order is done, and its ServiceRequest now carries the specimen
    assert [e["executed_by"] for e in reference_his.store.executions(order_id)] == ["N-007"]
    search = _fhir(
        reference_his,
        f"ServiceRequest?subject=Patient/{admission.patient_id}"
        f"&encounter=Encounter/{admission.admission_id}",
    )
    request = next(e["resource"] for e in search["entry"] if e["resource"]["id"] == order_id)
    assert request["status"] == "completed"
    assert request["specimen"] == [{"reference": f"Specimen/{made['specimen_id']}"}]
    # (the reference HIS speaks R4: R5 moved ServiceRequest.code to a CodeableReference,
    # while ``specimen`` is a Reference(Specimen) in both)
    r4("ServiceRequest").model_validate(request)


def test_a_resent_upload_makes_no_second_specimen(
    fhir_ward: tuple[Middleware, Any], reference_his: ReferenceHis
) -> None:
    mw, admission = fhir_ward
    order_id = _blood_culture(reference_his, admission.admission_id, kind="lab")
    execution = OrderExecution(
        order_id=order_id,
        admission_id=admission.admission_id,
        wristband_id="WB-0001",
        executed_by="N-007",
        executed_at=datetime.now().astimezone().replace(microsecond=0),
        checks={"check.before": True, "check.after": True},
        order_type="specimen",
        patient_id=admission.patient_id,
    )
    assert mw.his.order_executed(execution)
    assert mw.his.order_executed(execution)
    assert len(reference_his.store.specimens(order_id)) == 1
    assert len(reference_his.store.executions(order_id)) == 1


def test_a_specimen_for_an_order_that_takes_none_is_refused(
    fhir_ward: tuple[Middleware, Any], reference_his: ReferenceHis
) -> None:
    mw, admission = fhir_ward
    nursing = next(
        o
        for o in reference_his.store.orders(admission.patient_id, admission.admission_id)
        if o["kind"] == "nursing"
    )
    execution = OrderExecution(
        order_id=nursing["order_id"],
        admission_id=admission.admission_id,
        wristband_id="WB-0001",
        executed_by="N-007",
        executed_at=datetime.now().astimezone().replace(microsecond=0),
        checks={"check.before": True},
        order_type="specimen",  # what a mistyped order would make the ward send
        patient_id=admission.patient_id,
    )
    with pytest.raises(HisRejectedError) as caught:
        mw.his.order_executed(execution)
    assert caught.value.code == "not-a-specimen-order"
    assert reference_his.store.specimens(nursing["order_id"]) == []
    assert reference_his.store.executions(nursing["order_id"]) == []
    other = execution.model_copy(
        update={"order_id": _blood_culture(reference_his, admission.admission_id)}
    )
    with pytest.raises(HisRejectedError) as caught:
        mw.his.order_executed(other.model_copy(update={"patient_id": "SOMEONE-ELSE"}))
    assert caught.value.code == "wrong-patient"
    assert reference_his.store.specimens(other.order_id) == []

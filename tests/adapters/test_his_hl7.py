"""The HL7 v2.5 adapter against the reference HIS over real MLLP on loopback."""

from __future__ import annotations

import os
import re
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hcm_his_hl7 import Hl7His, MllpClient, RetryPolicy, messages, shapes
from hcm_his_reference import ReferenceHis

from hcmiddleware import Middleware
from hcmiddleware.errors import (
    HisError,
    HisProtocolError,
    HisRejectedError,
    HisUnavailableError,
)
from hcmiddleware.models import (
    Admission,
    AdmissionRequest,
    Deposit,
    HospitalPatient,
    OrderExecution,
    RegistrationRequest,
    Resident,
    Sex,
)
from hcmiddleware.registry import installed_plugins
from hcmiddleware.testing.conformance import HisConformance

HOSPITAL = "H0001"


@pytest.fixture
def reference_his(tmp_path: Any) -> Iterator[ReferenceHis]:
    with ReferenceHis(tmp_path / "his.db", hospital_code=HOSPITAL) as his:
        yield his


class TestHl7Conformance(HisConformance):
    plugin_name = "his-hl7"

    @pytest.fixture
    def plugin(self) -> object:
        return installed_plugins()["his-hl7"].entry_point.load()()

    @pytest.fixture
    def plugin_settings(self, reference_his: ReferenceHis) -> dict[str, Any]:
        host, port = reference_his.mllp_address
        return {
            "host": host,
            "port": port,
            "assigning_authority": HOSPITAL,
            "timeout": 0.5,
            "attempts": 2,
            "backoff": 0.01,
        }

    @pytest.fixture
    def his_faults(self, reference_his: ReferenceHis) -> ReferenceFaults:
        return ReferenceFaults(reference_his, slow=0.8)


class ReferenceFaults:
    """The HisFaults switches, on the reference HIS."""

    def __init__(self, his: ReferenceHis, slow: float) -> None:
        self.his = his
        self.delay = slow

    def refuse(self) -> None:
        self.his.faults.set(nak="AE")

    def down(self) -> None:
        self.his.faults.set(drop="before")

    def slow(self) -> None:
        self.his.faults.set(delay=self.delay)

    def garbage(self) -> None:
        self.his.faults.set(garbage=True)

    def lose_next_write_answer(self) -> None:
        self.his.faults.set(drop="after", writes_only=True, times=1)

    def clear(self) -> None:
        self.his.faults.clear()


# --- the adapter on its own: messages, retries, bad input -------------------------------

RESIDENT = Resident(
    resident_id="R-0001",
    name="欧阳娜娜",
    sex=Sex.FEMALE,
    birth_date=date(1992, 5, 17),
    id_number="110105199205170028",
)
NOW = datetime(2026, 11, 27, 9, 30, 0)


@pytest.fixture
def adapter(
    reference_his: ReferenceHis, hcm_make_middleware: Any
) -> Callable[..., tuple[Middleware, Hl7His]]:
    def make(**overrides: Any) -> tuple[Middleware, Hl7His]:
        host, port = reference_his.mllp_address
        settings = {
            "host": host,
            "port": port,
            "assigning_authority": HOSPITAL,
            "timeout": 0.5,
            "attempts": 3,
            "backoff": 0.01,
            **overrides,
        }
        plugin = Hl7His()
        mw = hcm_make_middleware(plugins={"his-hl7": plugin}, settings={"his-hl7": settings})
        return mw, plugin

    return make


def _sent(plugin: Hl7His) -> list[bytes]:
    """Record every MLLP payload the plugin's client puts on the wire."""
    client = plugin.client
    assert client is not None
    seen: list[bytes] = []
    original = client._send

    def spy(payload: bytes) -> bytes:
        seen.append(payload)
        return original(payload)

    client._send = spy  # type: ignore[method-assign]
    return seen


def _patients(his: ReferenceHis) -> int:
    return len(his.store._all("SELECT patient_id FROM patient"))


def _journey(mw: Middleware) -> None:
    """Every hook once: outpatient visit, payment, reports, a stay to discharge."""
    hooks = mw.hooks
    patient = hooks.hcm_his_register_patient(resident=RESIDENT, card=None, hospital_code=HOSPITAL)
    start = datetime.now().replace(microsecond=0, second=0) + timedelta(hours=2)
    for kind in ("registration", "appointment"):
        request = RegistrationRequest(
            kind=kind,
            department_code="NEI",
            doctor_code="D01",
            slot_start=start,
            slot_end=start + timedelta(minutes=30),
            fee=Decimal("12.00"),
            request_id=f"{kind}-{uuid.uuid4().hex[:8]}",
        )
        reg = hooks.hcm_his_register_visit(patient=patient, request=request)
    hooks.hcm_his_queue_position(registration=reg)
    visit_orders = hooks.hcm_his_list_orders(patient=patient, visit_id=reg.registration_id)
    assert {o.ordered_by for o in visit_orders} == {"D01"}, "the visit's doctor ordered them"
    charges = hooks.hcm_his_list_charges(patient=patient, visit_id=reg.registration_id)
    hooks.hcm_his_charges_paid(
        patient=patient, charge_ids=[c.charge_id for c in charges], transaction_id="T-1"
    )
    hooks.hcm_his_list_reports(patient=patient, visit_id=reg.registration_id)
    stay = hooks.hcm_his_admit(
        patient=patient,
        request=AdmissionRequest(
            department_code="NEI", ward="W3", bed="07", admitted_at=NOW, request_id="ADM-1"
        ),
    )
    orders = hooks.hcm_his_list_orders(patient=patient, visit_id=stay.admission_id)
    hooks.hcm_his_order_executed(  # the nursing order: ORM^O01
        execution=OrderExecution(
            order_id=orders[0].order_id,
            admission_id=stay.admission_id,
            wristband_id="WB-7",
            executed_by="N01",
            executed_at=NOW,
            checks={"name": True, "bed": True},
        )
    )
    drip = orders[-1]
    hooks.hcm_his_order_executed(  # the drug given: RAS^O17
        execution=OrderExecution(
            order_id=drip.order_id,
            admission_id=stay.admission_id,
            wristband_id="WB-7",
            executed_by="N01",
            executed_at=NOW,
            checks={"name": True, "drug": True, "dose": True},
            patient_id=patient.patient_id,
            drug_code=drip.code,
            dose=drip.dose,
            route=drip.route,
        )
    )
    bill = hooks.hcm_his_inpatient_bill(admission=stay)
    stay = hooks.hcm_his_record_deposit(
        admission=stay,
        deposit=Deposit(
            deposit_id="D-1",
            admission_id=stay.admission_id,
            amount=bill.total,
            paid_at=NOW,
            transaction_id="T-2",
        ),
    )
    hooks.hcm_his_discharge(admission=stay, bill=hooks.hcm_his_inpatient_bill(admission=stay))


def test_every_message_sent_validates_strictly_as_v25(adapter: Any) -> None:
    from hl7apy.consts import VALIDATION_LEVEL
    from hl7apy.parser import parse_message

    mw, plugin = adapter()
    sent = _sent(plugin)
    _journey(mw)
    kinds = set()
    for payload in sent:
        assert payload.startswith(b"\x0b")
        assert payload.endswith(b"\x1c\x0d")
        text = payload[1:-2].decode("utf-8")
        message = parse_message(text, validation_level=VALIDATION_LEVEL.STRICT)
        assert message.validate() is True
        kinds.add(text.split("|")[8])
    assert kinds >= {
        "ADT^A28^ADT_A05",
        "ADT^A04^ADT_A01",
        "SIU^S12^SIU_S12",
        "ADT^A01^ADT_A01",
        "ADT^A03^ADT_A03",
        "DFT^P03^DFT_P03",
        "ORM^O01^ORM_O01",
        "RAS^O17^RAS_O17",
        "QBP^Q23^QBP_Q21",
        "QBP^Z07^QBP_Q11",
    }


def test_journey_lands_in_the_his(adapter: Any, reference_his: ReferenceHis) -> None:
    mw, _plugin = adapter()
    _journey(mw)
    store = reference_his.store
    patient = store.find_patient(resident_id=RESIDENT.resident_id)
    assert patient is not None
    assert (patient["name"], patient["sex"], patient["birth_date"]) == (
        "欧阳娜娜",
        "F",
        "1992-05-17",
    )
    stay = store.admission_by_request("ADM-1")
    assert stay is not None
    assert stay["discharged_at"] is not None
    visits = store._all("SELECT kind, fee, doctor FROM visit ORDER BY rowid")
    assert visits == [
        {"kind": "registration", "fee": "12.00", "doctor": "D01"},
        {"kind": "appointment", "fee": "12.00", "doctor": "D01"},
    ]
    executed = store._all("SELECT order_id, executed_by FROM execution ORDER BY order_id")
    assert executed == [
        {"order_id": f"{stay['admission_id']}-O1", "executed_by": "N01"},  # ORM^O01
        {"order_id": f"{stay['admission_id']}-O2", "executed_by": "N01"},  # RAS^O17
    ]


def test_the_his_refuses_an_administration_of_another_drug(
    adapter: Any, reference_his: ReferenceHis
) -> None:
    mw, _plugin = adapter()
    hooks = mw.hooks
    patient = hooks.hcm_his_register_patient(resident=RESIDENT, card=None, hospital_code=HOSPITAL)
    stay = hooks.hcm_his_admit(
        patient=patient,
        request=AdmissionRequest(
            department_code="NEI", ward="W3", bed="07", admitted_at=NOW, request_id="ADM-9"
        ),
    )
    drip = hooks.hcm_his_list_orders(patient=patient, visit_id=stay.admission_id)[-1]
    given = OrderExecution(
        order_id=drip.order_id,
        admission_id=stay.admission_id,
        wristband_id="WB-7",
        executed_by="N01",
        executed_at=NOW,
        checks={"drug": True},
        patient_id=patient.patient_id,
        drug_code="GS500",
        dose="500 ml",
        route="IVGTT",
    )
    with pytest.raises(HisRejectedError) as caught:
        hooks.hcm_his_order_executed(execution=given)
    assert caught.value.code == "wrong-drug"
    assert reference_his.store.executions(drip.order_id) == []


GOLDEN = Path(__file__).parents[2] / "adapters" / "his" / "hl7" / "golden"
HEADER = messages.Header("HCM", "210100000001", "REFHIS", "H0001")
PATIENT = HospitalPatient(hospital_code="H0001", patient_id="H000100000001", resident_id="R-0001")
REQUEST = RegistrationRequest(
    department_code="NEI",
    doctor_code="D01",
    slot_start=NOW,
    slot_end=NOW + timedelta(minutes=30),
    fee=Decimal("12.00"),
    request_id="REQ-0001",
)
STAY = Admission(
    admission_id="A00000001", patient_id="H000100000001", ward="W3", bed="07", admitted_at=NOW
)
GOLDEN_MESSAGES: dict[str, Callable[[], str]] = {
    "adt_a28": lambda: messages.adt_a28(HEADER, "C0001", NOW, RESIDENT),
    "qbp_q23": lambda: messages.qbp_pix(HEADER, "C0002", NOW, "R-0001", "HCMEMPI", "PI"),
    "adt_a04": lambda: messages.adt_a04(HEADER, "C0003", NOW, PATIENT, "H0001", REQUEST),
    "siu_s12": lambda: messages.siu_s12(
        HEADER, "C0004", NOW, PATIENT, "H0001", REQUEST.model_copy(update={"kind": "appointment"})
    ),
    "qbp_z04": lambda: messages.qbp(HEADER, "C0005", NOW, "Z04", "H000100000001", "V1"),
    "dft_p03_pay": lambda: messages.dft_payment(
        HEADER, "C0006", NOW, PATIENT, "H0001", ["V1-C1", "V1-C2"], "T-1"
    ),
    "adt_a01": lambda: messages.adt_a01(
        HEADER,
        "C0007",
        NOW,
        PATIENT,
        "H0001",
        AdmissionRequest(
            department_code="NEI", ward="W3", bed="07", admitted_at=NOW, request_id="ADM-1"
        ),
    ),
    "dft_p03_deposit": lambda: messages.dft_deposit(
        HEADER,
        "C0008",
        NOW,
        STAY,
        "H0001",
        Deposit(
            deposit_id="D-1",
            admission_id="A00000001",
            amount=Decimal("500.00"),
            paid_at=NOW,
            transaction_id="T-2",
        ),
    ),
    "orm_o01": lambda: messages.orm_executed(
        HEADER,
        "C0009",
        NOW,
        OrderExecution(
            order_id="A00000001-O2",
            admission_id="A00000001",
            wristband_id="WB-7",
            executed_by="N01",
            executed_at=NOW,
            checks={"patient": True},
        ),
    ),
    "adt_a03": lambda: messages.adt_a03(HEADER, "C0010", NOW, STAY, "H0001", NOW),
    "ras_o17": lambda: messages.ras_administered(
        HEADER,
        "C0011",
        NOW,
        OrderExecution(
            order_id="A00000001-O3",
            admission_id="A00000001",
            wristband_id="WB-7",
            executed_by="N01",
            second_nurse="N02",
            started_at=NOW,
            executed_at=NOW + timedelta(minutes=2),
            checks={"dose": True},
            patient_id="H000100000001",
            drug_code="PNC-ST",
            dose="0.1 ml",
            route="ID",
        ),
    ),
}


def test_an_administration_without_a_route_sends_hl7s_null() -> None:
    """v2.5 requires RXR-1: a drug given whose route nobody recorded is sent with ``""``
    (HL7's null), not refused before it leaves as an empty RXR would be."""
    given = GOLDEN_MESSAGES["ras_o17"]().replace("RXR|ID", "RXR|")
    with pytest.raises(HisError):
        messages.validate(given)  # what was built before
    execution = OrderExecution(
        order_id="A00000001-O3",
        admission_id="A00000001",
        wristband_id="WB-7",
        executed_by="N01",
        executed_at=NOW,
        checks={"dose": True},
        drug_code="PNC-ST",
        dose="0.1 ml",
    )
    text = messages.ras_administered(HEADER, "C0012", NOW, execution)
    assert text.split("\r")[-1] == 'RXR|""'
    messages.validate(text)
    messages.StrictCheck(shapes.load())(text)


@pytest.mark.parametrize("name", sorted(GOLDEN_MESSAGES))
def test_messages_match_their_golden_files(name: str) -> None:
    text = GOLDEN_MESSAGES[name]()
    golden = GOLDEN / f"{name}.er7"
    if os.environ.get("HCM_REGEN_GOLDEN"):
        golden.write_text(text.replace("\r", "\n") + "\n", encoding="utf-8")
    assert text == golden.read_text(encoding="utf-8").rstrip("\n").replace("\n", "\r")
    messages.validate(text)


def _verdict(check: Callable[[str], None], text: str) -> str:
    try:
        check(text)
    except HisError as exc:
        return f"refused: {type(exc.__cause__).__name__}"
    return "valid"


def _replace(text: str, segment: int, field: int, value: str) -> str:
    """``text`` with the first value of one field replaced (MSH counted as HL7 does)."""
    lines = text.split("\r")
    fields = lines[segment].split("|")
    index = field - 1 if fields[0] == "MSH" else field
    first = re.match(r"[^~^&]*", fields[index])
    assert first is not None
    fields[index] = value + fields[index][first.end() :]
    lines[segment] = "|".join(fields)
    return "\r".join(lines)


#: values that hl7apy's strict datatypes refuse in some positions and accept in others
ODD_VALUES = (
    "9" * 300,
    "X" * 25,
    "欧" * 21,
    "A\\F\\B\\S\\" * 6,
    "20261399",
    "1.2.3",
    "20240229",
)


@pytest.mark.parametrize("name", ["adt_a28", "adt_a04", "qbp_q23", "dft_p03_deposit"])
def test_the_cached_check_gives_hl7apys_strict_verdict(name: str) -> None:
    original = GOLDEN_MESSAGES[name]()
    check = messages.StrictCheck()
    check(original)
    assert len(check) == 1, "the shape of a valid message is remembered"
    shape = messages._leaves(original)[0]
    cached: set[str] = set()  # the verdicts the remembered shape decided
    for segment, line in enumerate(original.split("\r")):
        fields = line.split("|")
        for field in range(2 if segment == 0 else 1, len(fields)):
            if not re.match(r"[^~^&]", fields[field]):
                continue  # empty: a value there changes the shape; MSH-2: the delimiters
            for value in ODD_VALUES:
                text = _replace(original, segment, field + (segment == 0), value)
                full = _verdict(messages.validate, text)
                assert _verdict(check, text) == full, (name, line[:3], field, value)
                if messages._leaves(text)[0] == shape:
                    cached.add(full)
    assert "valid" in cached
    assert any(v.startswith("refused") for v in cached)


def test_the_shipped_shapes_are_what_the_builders_and_hl7apy_give() -> None:
    made = shapes.table()  # a full parse of one message of every shape the builders make
    if os.environ.get("HCM_REGEN_GOLDEN"):
        shapes.dump(made)
    assert made == shapes.load(), "shapes.json is stale: run the tests with HCM_REGEN_GOLDEN=1"


@pytest.mark.parametrize("name", ["adt_a28", "adt_a04", "qbp_q23", "dft_p03_deposit"])
def test_a_shipped_shape_gives_hl7apys_verdict_from_the_first_message(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    check = messages.StrictCheck(shapes.load())
    original = GOLDEN_MESSAGES[name]()
    full_parses: list[str] = []
    strict = messages._strict
    monkeypatch.setattr(messages, "_strict", lambda text: full_parses.append(text) or strict(text))
    check(original)
    assert full_parses == [], "a shipped shape is not parsed in full"
    shape = messages._leaves(original)[0]
    decided: set[str] = set()  # verdicts given without a full parse
    for segment, line in enumerate(original.split("\r")):
        fields = line.split("|")
        for field in range(2 if segment == 0 else 1, len(fields)):
            if not re.match(r"[^~^&]", fields[field]):
                continue
            for value in ODD_VALUES[:5]:
                text = _replace(original, segment, field + (segment == 0), value)
                parses = len(full_parses)
                got = _verdict(check, text)
                if messages._leaves(text)[0] == shape:
                    assert len(full_parses) == parses, "decided without a full parse"
                    decided.add(got)
                assert got == _verdict(messages.validate, text), (name, line[:3], field, value)
    assert "valid" in decided
    assert any(v.startswith("refused") for v in decided)


def test_shapes_of_another_hl7apy_are_not_used(tmp_path: Path) -> None:
    stale = tmp_path / "shapes.json"
    shapes.dump(shapes.load(), stale)
    assert shapes.load(stale) == shapes.load()
    document = stale.read_text(encoding="utf-8").replace('"hl7apy":"', '"hl7apy":"0.0.0-', 1)
    stale.write_text(document, encoding="utf-8")
    assert shapes.load(stale) == {}
    assert shapes.load(tmp_path / "missing.json") == {}


def test_the_cached_check_refuses_what_the_full_check_refuses() -> None:
    check = messages.StrictCheck()
    check(GOLDEN_MESSAGES["adt_a04"]())
    too_long = REQUEST.model_copy(update={"department_code": "N" * 30})
    text = messages.adt_a04(HEADER, "C0011", NOW, PATIENT, "H0001", too_long)
    with pytest.raises(HisError, match=r"fails v2\.5 validation") as caught:
        check(text)
    assert type(caught.value.__cause__).__name__ == "MaxLengthReached"
    broken = GOLDEN_MESSAGES["adt_a04"]().replace("\rEVN|", "\rXYZ|")
    with pytest.raises(HisError, match=r"fails v2\.5 validation"):
        check(broken)


@pytest.mark.parametrize("cache", [True, False])
def test_every_journey_message_passes_the_adapters_check(adapter: Any, cache: bool) -> None:
    mw, plugin = adapter(validation_cache=cache)
    checked: list[str] = []
    inner = plugin._validate

    def spy(text: str) -> None:
        checked.append(text)
        inner(text)

    plugin._validate = spy
    sent = _sent(plugin)
    _journey(mw)
    assert len(checked) == len(sent) > 0, "every message sent was checked first"
    if cache:
        assert isinstance(inner, messages.StrictCheck)
        shipped = shapes.load()
        kinds = {messages._leaves(text)[0] for text in checked}
        assert len(kinds) < len(checked), "messages of one shape share the verdict"
        assert kinds <= set(inner._shapes), "each shape is remembered"
        assert kinds <= set(shipped), "the journey's shapes are all in shapes.json"
        assert len(inner) == len(shipped), "nothing to learn"
    else:
        assert inner is messages.validate


def test_values_with_delimiters_are_escaped() -> None:
    odd = RESIDENT.model_copy(update={"name": "A|B^C~D\\E&F"})
    text = messages.adt_a28(HEADER, "C1", NOW, odd)
    messages.validate(text)
    assert "A\\F\\B\\S\\C\\R\\D\\E\\E\\T\\F" in text


def test_nak_from_the_his_is_typed_with_its_code(adapter: Any) -> None:
    mw, _plugin = adapter()
    stranger = PATIENT.model_copy(update={"patient_id": "NOBODY"})
    with pytest.raises(HisRejectedError) as caught:
        mw.hooks.hcm_his_register_visit(patient=stranger, request=REQUEST)
    assert (caught.value.status, caught.value.code) == ("AE", "unknown-patient")
    assert caught.value.plugin == "his-hl7"  # type: ignore[attr-defined]
    assert "NOBODY" in caught.value.message


def test_refused_registration_leaves_no_patient(adapter: Any, reference_his: ReferenceHis) -> None:
    mw, plugin = adapter()
    reference_his.faults.set(nak="AR", writes_only=True)
    sent = _sent(plugin)
    with pytest.raises(HisRejectedError) as caught:
        mw.hooks.hcm_his_register_patient(resident=RESIDENT, card=None, hospital_code=HOSPITAL)
    assert caught.value.status == "AR"
    assert _patients(reference_his) == 0
    assert sum(b"ADT^A28" in p for p in sent) == 1, "a NAK is an answer: never resent"


def test_lost_ack_is_resent_with_the_same_control_id(
    adapter: Any, reference_his: ReferenceHis
) -> None:
    mw, plugin = adapter()
    reference_his.faults.set(drop="after", writes_only=True, times=1)
    sent = _sent(plugin)
    patient = mw.hooks.hcm_his_register_patient(
        resident=RESIDENT, card=None, hospital_code=HOSPITAL
    )
    assert patient.created is True
    a28 = [p for p in sent if b"ADT^A28" in p]
    assert len(a28) == 2
    assert a28[0] == a28[1], "the resend is byte for byte the first message"
    assert _patients(reference_his) == 1


def test_slow_ack_is_resent_and_counted_once(adapter: Any, reference_his: ReferenceHis) -> None:
    mw, _plugin = adapter(timeout=0.3)
    reference_his.faults.set(delay=0.5, writes_only=True, times=1)
    patient = mw.hooks.hcm_his_register_patient(
        resident=RESIDENT, card=None, hospital_code=HOSPITAL
    )
    reg = mw.hooks.hcm_his_register_visit(patient=patient, request=REQUEST)
    assert reg.fee == Decimal("12.00")
    assert _patients(reference_his) == 1


def test_retries_are_bounded(adapter: Any, reference_his: ReferenceHis) -> None:
    mw, _plugin = adapter(attempts=3)
    reference_his.faults.set(drop="before")
    before = reference_his.faults.requests
    with pytest.raises(HisUnavailableError) as caught:
        mw.hooks.hcm_his_lookup_patient(resident=RESIDENT, hospital_code=HOSPITAL)
    assert reference_his.faults.requests - before == 3
    assert "3 tries" in caught.value.message


def test_his_not_listening_is_unavailable(hcm_make_middleware: Any) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mw = hcm_make_middleware(
        plugins={"his-hl7": Hl7His()},
        settings={"his-hl7": {"port": port, "attempts": 2, "backoff": 0.01}},
    )
    with pytest.raises(HisUnavailableError) as caught:
        mw.hooks.hcm_his_lookup_patient(resident=RESIDENT, hospital_code=HOSPITAL)
    assert caught.value.plugin == "his-hl7"  # type: ignore[attr-defined]
    assert "cannot connect" in caught.value.message
    checks = {r.name: r.ok for name, r in mw.doctor() if name == "his-hl7"}
    assert checks == {"mllp": False, "retry budget": True}


@pytest.mark.parametrize(
    ("fault", "says"),
    [
        ({"truncate": True}, "truncated"),
        ({"garbage": True}, "not an HL7 message"),
        ({"mislabel": True}, "not valid UNICODE UTF-8"),
    ],
)
def test_malformed_answers_are_protocol_errors(
    adapter: Any, reference_his: ReferenceHis, fault: dict[str, Any], says: str
) -> None:
    mw, _plugin = adapter(attempts=2)
    mw.hooks.hcm_his_register_patient(resident=RESIDENT, card=None, hospital_code=HOSPITAL)
    reference_his.faults.set(**fault)
    with pytest.raises(HisProtocolError) as caught:
        mw.hooks.hcm_his_lookup_patient(resident=RESIDENT, hospital_code=HOSPITAL)
    assert says in caught.value.message
    assert caught.value.plugin == "his-hl7"  # type: ignore[attr-defined]


def test_gb18030_on_the_wire(adapter: Any, reference_his: ReferenceHis) -> None:
    mw, plugin = adapter(encoding="GB18030")
    sent = _sent(plugin)
    rare = RESIDENT.model_copy(update={"name": "龘𠀀张"})  # outside GBK's two-byte range too
    patient = mw.hooks.hcm_his_register_patient(resident=rare, card=None, hospital_code=HOSPITAL)
    a28 = next(p for p in sent if b"ADT^A28" in p)
    assert b"GB 18030-2000" in a28
    assert "龘𠀀张".encode("gb18030") in a28
    stored = reference_his.store.patient(patient.patient_id)
    assert stored["name"] == "龘𠀀张"


def test_his_refuses_text_not_in_the_declared_charset(reference_his: ReferenceHis) -> None:
    text = messages.adt_a28(HEADER, "C-GBK", NOW, RESIDENT)  # declares UTF-8 …
    client = MllpClient(*reference_his.mllp_address, RetryPolicy(attempts=1), codec="gbk")
    with pytest.raises(HisRejectedError) as caught:  # … but travels as GBK
        client.exchange(text, "C-GBK")
    assert (caught.value.status, caught.value.code) == ("AR", "encoding")
    assert _patients(reference_his) == 0


def test_control_id_mismatch_is_a_protocol_error(reference_his: ReferenceHis) -> None:
    text = messages.qbp_pix(HEADER, "C-1", NOW, "R-0001", "HCMEMPI", "PI")
    client = MllpClient(*reference_his.mllp_address, RetryPolicy(attempts=1))
    with pytest.raises(HisProtocolError, match="acknowledged control ID"):
        client.exchange(text, "C-2")


def test_a_visits_messages_share_one_connection(adapter: Any) -> None:
    mw, plugin = adapter()
    patient = mw.hooks.hcm_his_register_patient(
        resident=RESIDENT, card=None, hospital_code=HOSPITAL
    )
    registration = mw.hooks.hcm_his_register_visit(patient=patient, request=REQUEST)
    mw.hooks.hcm_his_queue_position(registration=registration)
    client = plugin.client
    assert client is not None
    assert client.sent >= 6  # PIX, A28, PIX; A04, Z01; Z02
    assert client.connections == 1


def test_keep_alive_zero_is_a_connection_per_message(adapter: Any) -> None:
    mw, plugin = adapter(keep_alive=0)
    mw.hooks.hcm_his_register_patient(resident=RESIDENT, card=None, hospital_code=HOSPITAL)
    assert plugin.client is not None
    assert plugin.client.connections == plugin.client.sent == 3


def test_a_connection_the_his_closed_or_kept_too_long_is_not_used(
    reference_his: ReferenceHis,
) -> None:
    text = messages.qbp_pix(HEADER, "C-1", NOW, "R-0001", "HCMEMPI", "PI")
    client = MllpClient(*reference_his.mllp_address, RetryPolicy(attempts=1), keep_alive=0.2)
    client.exchange(text, "C-1")
    reference_his._mllp._server.close_connections()  # the HIS ends idle connections
    client.exchange(text.replace("C-1", "C-2"), "C-2")  # one try: a new connection
    assert (client.sent, client.connections) == (2, 2)
    time.sleep(0.3)  # longer than keep_alive
    client.exchange(text.replace("C-1", "C-3"), "C-3")
    client.exchange(text.replace("C-1", "C-4"), "C-4")
    assert (client.sent, client.connections) == (4, 3)
    client.close()


def test_a_stopped_his_answers_nothing_on_a_kept_connection(tmp_path: Path) -> None:
    his = ReferenceHis(tmp_path / "h.db").start()
    text = messages.qbp_pix(HEADER, "C-1", NOW, "R-0001", "HCMEMPI", "PI")
    client = MllpClient(*his.mllp_address, RetryPolicy(attempts=2, timeout=0.5, backoff=0.01))
    client.exchange(text, "C-1")
    his.stop()
    with pytest.raises(HisUnavailableError):
        client.exchange(text.replace("C-1", "C-2"), "C-2")
    assert client.sent == 3


def test_simultaneous_registrations_of_one_resident_make_one_patient(
    adapter: Any, reference_his: ReferenceHis
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    mw, _plugin = adapter()
    with ThreadPoolExecutor(max_workers=5) as pool:
        made = list(
            pool.map(
                lambda _: mw.hooks.hcm_his_register_patient(
                    resident=RESIDENT, card=None, hospital_code="H0001"
                ),
                range(5),
            )
        )
    assert len({p.patient_id for p in made}) == 1
    assert _patients(reference_his) == 1


def test_a_retry_budget_beyond_the_runtime_timeout_is_flagged(
    adapter: Any, caplog: pytest.LogCaptureFixture
) -> None:
    mw, _plugin = adapter(attempts=6, timeout=2.0, backoff=0.5)
    assert "longer than the 10 s the runtime allows" in caplog.text
    checks = {r.name: r for name, r in mw.doctor() if name == "his-hl7"}
    assert checks["mllp"].ok is True
    assert checks["retry budget"].ok is False
    assert "27.5 s" in checks["retry budget"].detail  # 6 x 2 s + 0.5+1+2+4+8 s of pauses


def test_without_an_assigning_authority_the_institution_code_is_used(
    tmp_path: Any, hcm_make_middleware: Any
) -> None:
    code = "210100000001"
    with ReferenceHis(tmp_path / "h.db", hospital_code=code) as his:
        host, port = his.mllp_address
        mw = hcm_make_middleware(
            plugins={"his-hl7": Hl7His()},
            settings={"his-hl7": {"host": host, "port": port}},
            middleware={"institution_code": code},
        )
        hooks = mw.hooks
        patient = hooks.hcm_his_register_patient(resident=RESIDENT, card=None, hospital_code=code)
        assert patient.patient_id.startswith(code)
        stay = hooks.hcm_his_admit(
            patient=patient,
            request=AdmissionRequest(
                department_code="NEI", ward="W1", bed="01", admitted_at=NOW, request_id="A-1"
            ),
        )
        stay = hooks.hcm_his_record_deposit(
            admission=stay,
            deposit=Deposit(
                deposit_id="D-1",
                admission_id=stay.admission_id,
                amount=Decimal("1000.00"),
                paid_at=NOW,
                transaction_id="T-9",
            ),
        )
        assert stay.deposit_balance == Decimal("1000.00")
        done = hooks.hcm_his_discharge(
            admission=stay, bill=hooks.hcm_his_inpatient_bill(admission=stay)
        )
        assert done.final_bill.balance == Decimal("95.50") - Decimal("1000.00")

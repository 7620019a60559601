"""The HL7 v2.5 messages the adapter sends, one builder each (mapping: docs/his.md).

Builders are pure: the control ID and the time are arguments, so golden files can pin
every byte. :func:`validate` runs hl7apy's strict v2.5 validation; the adapter calls it
(or :class:`StrictCheck`, the same verdict with the structure checked once per message
shape) on every message before it leaves, so an invalid message is never sent.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from hcm_his_hl7.er7 import escape, segment, ts
from hcmiddleware.errors import HisError
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

__all__ = [
    "CHARSETS",
    "EMPI_AUTHORITY",
    "Header",
    "StrictCheck",
    "adt_a01",
    "adt_a03",
    "adt_a04",
    "adt_a28",
    "dft_deposit",
    "dft_payment",
    "orm_executed",
    "qbp",
    "qbp_pix",
    "ras_administered",
    "siu_s12",
    "validate",
]

#: Our ``encoding`` setting → MSH-18 (HL7 table 0211) and the Python codec.
CHARSETS = {"UTF-8": ("UNICODE UTF-8", "utf-8"), "GB18030": ("GB 18030-2000", "gb18030")}
#: Assigning authority of the resident index's IDs in PID-3.
EMPI_AUTHORITY = "HCMEMPI"
#: HL7 table 0001 administrative sex for GB/T 2261.1 codes.
SEX = {Sex.UNKNOWN: "U", Sex.MALE: "M", Sex.FEMALE: "F", Sex.UNSPECIFIED: "U"}
#: PID-5 when the message is about a known patient and carries no demographics.
UNNAMED = "^^^^^^U"


@dataclass(frozen=True)
class Header:
    """What every MSH says: who sends to whom, in which character set."""

    sending_application: str
    sending_facility: str
    receiving_application: str
    receiving_facility: str
    encoding: str = "UTF-8"
    processing_id: str = "P"

    def msh(self, message_type: str, control_id: str, now: datetime) -> str:
        """The MSH segment of one message."""
        return segment(
            "MSH",
            {
                3: escape(self.sending_application),
                4: escape(self.sending_facility),
                5: escape(self.receiving_application),
                6: escape(self.receiving_facility),
                7: ts(now),
                9: message_type,
                10: escape(control_id),
                11: self.processing_id,
                12: "2.5",
                15: "AL",
                16: "NE",
                18: CHARSETS[self.encoding][0],
            },
        )


def _join(*segments: str) -> str:
    return "\r".join(segments)


def _pid_for(patient: HospitalPatient, authority: str) -> str:
    return segment(
        "PID", {1: "1", 3: f"{escape(patient.patient_id)}^^^{escape(authority)}^PI", 5: UNNAMED}
    )


def _evn(now: datetime) -> str:
    return segment("EVN", {2: ts(now)})


def adt_a28(header: Header, control_id: str, now: datetime, resident: Resident) -> str:
    """ADT^A28 (add person information): create the patient for a resident."""
    ids = [f"{escape(resident.resident_id)}^^^{EMPI_AUTHORITY}^PI"]
    if resident.id_number:
        ids.append(f"{escape(resident.id_number)}^^^CHN^NNCHN")
    return _join(
        header.msh("ADT^A28^ADT_A05", control_id, now),
        _evn(now),
        segment(
            "PID",
            {
                1: "1",
                3: "~".join(ids),
                5: escape(resident.name),
                7: resident.birth_date.strftime("%Y%m%d") if resident.birth_date else "",
                8: SEX[resident.sex],
                11: escape(resident.address) if resident.address else "",
                13: escape(resident.phone) if resident.phone else "",
            },
        ),
        segment("PV1", {1: "1", 2: "N"}),
    )


def qbp_pix(
    header: Header, control_id: str, now: datetime, value: str, authority: str, type_code: str
) -> str:
    """QBP^Q23 (IHE PIX query): which hospital patient ID has this identifier."""
    return _join(
        header.msh("QBP^Q23^QBP_Q21", control_id, now),
        segment(
            "QPD",
            {
                1: "IHE PIX Query",
                2: escape(control_id),
                3: f"{escape(value)}^^^{escape(authority)}^{type_code}",
            },
        ),
        segment("RCP", {1: "I"}),
    )


QUERIES = {
    "Z01": "RegistrationByRequest",
    "Z02": "QueuePosition",
    "Z03": "Orders",
    "Z04": "Charges",
    "Z05": "Reports",
    "Z06": "Admission",
    "Z07": "InpatientBill",
}


def qbp(header: Header, control_id: str, now: datetime, query: str, *params: str) -> str:
    """QBP^Zxx: one of the HIS's named queries (:data:`QUERIES`), parameters in QPD-3."""
    return _join(
        header.msh(f"QBP^{query}^QBP_Q11", control_id, now),
        segment(
            "QPD",
            {
                1: f"{query}^{QUERIES[query]}^HCM",
                2: escape(control_id),
                3: "^".join(escape(p) for p in params),
            },
        ),
        segment("RCP", {1: "I"}),
    )


def _fee(fee: Decimal | None) -> list[str]:
    # ADT and SIU have no field for what the patient was quoted: a Z-segment carries it
    return [segment("ZRF", {1: str(fee)})] if fee is not None else []


def adt_a04(
    header: Header,
    control_id: str,
    now: datetime,
    patient: HospitalPatient,
    authority: str,
    request: RegistrationRequest,
) -> str:
    """ADT^A04 (register an outpatient): a registration (挂号) for a slot."""
    return _join(
        header.msh("ADT^A04^ADT_A01", control_id, now),
        _evn(now),
        _pid_for(patient, authority),
        segment(
            "PV1",
            {
                1: "1",
                2: "O",
                3: escape(request.department_code),
                7: escape(request.doctor_code) if request.doctor_code else "",
                44: ts(request.slot_start),
                45: ts(request.slot_end),
                50: escape(request.request_id),
            },
        ),
        *_fee(request.fee),
    )


def siu_s12(
    header: Header,
    control_id: str,
    now: datetime,
    patient: HospitalPatient,
    authority: str,
    request: RegistrationRequest,
) -> str:
    """SIU^S12 (new appointment booking): an appointment for a slot."""
    minutes = int((request.slot_end - request.slot_start).total_seconds() // 60)
    return _join(
        header.msh("SIU^S12^SIU_S12", control_id, now),
        segment(
            "SCH",
            {
                1: escape(request.request_id),
                6: "^Routine",
                9: str(minutes),
                10: "min",
                11: f"^^^{ts(request.slot_start)}^{ts(request.slot_end)}",
                16: escape(header.sending_application),
                20: escape(header.sending_application),
                25: "Booked",
            },
        ),
        _pid_for(patient, authority),
        segment("RGS", {1: "1"}),
        segment("AIL", {1: "1", 3: escape(request.department_code)}),
        *(
            [segment("AIP", {1: "1", 3: escape(request.doctor_code)})]
            if request.doctor_code
            else []
        ),
        *_fee(request.fee),
    )


def adt_a01(
    header: Header,
    control_id: str,
    now: datetime,
    patient: HospitalPatient,
    authority: str,
    request: AdmissionRequest,
) -> str:
    """ADT^A01 (admit): an inpatient admission to a ward and bed."""
    return _join(
        header.msh("ADT^A01^ADT_A01", control_id, now),
        _evn(now),
        _pid_for(patient, authority),
        segment(
            "PV1",
            {
                1: "1",
                2: "I",
                3: f"{escape(request.ward)}^^{escape(request.bed)}",
                10: escape(request.department_code),
                44: ts(request.admitted_at),
                50: escape(request.request_id),
            },
        ),
    )


def adt_a03(
    header: Header,
    control_id: str,
    now: datetime,
    admission: Admission,
    authority: str,
    at: datetime,
) -> str:
    """ADT^A03 (discharge): close a stay."""
    patient = HospitalPatient(
        hospital_code=authority, patient_id=admission.patient_id, resident_id="-"
    )
    return _join(
        header.msh("ADT^A03^ADT_A03", control_id, now),
        _evn(now),
        _pid_for(patient, authority),
        segment(
            "PV1",
            {
                1: "1",
                2: "I",
                3: f"{escape(admission.ward)}^^{escape(admission.bed)}",
                19: escape(admission.admission_id),
                45: ts(at),
            },
        ),
    )


def dft_payment(
    header: Header,
    control_id: str,
    now: datetime,
    patient: HospitalPatient,
    authority: str,
    charge_ids: list[str],
    transaction_id: str,
) -> str:
    """DFT^P03: the charges named were paid by one journal transaction (FT1-7 ``PAY``)."""
    lines = [
        segment(
            "FT1",
            {
                1: str(n),
                2: escape(c),
                3: escape(transaction_id),
                4: ts(now),
                6: "PY",
                7: "PAY^Payment^HCM",
            },
        )
        for n, c in enumerate(charge_ids, 1)
    ]
    return _join(
        header.msh("DFT^P03^DFT_P03", control_id, now),
        _evn(now),
        _pid_for(patient, authority),
        segment("PV1", {1: "1", 2: "O"}),
        *lines,
    )


def dft_deposit(
    header: Header,
    control_id: str,
    now: datetime,
    admission: Admission,
    authority: str,
    deposit: Deposit,
) -> str:
    """DFT^P03: a deposit or top-up on a stay (FT1-7 ``DEP``)."""
    patient = HospitalPatient(
        hospital_code=authority, patient_id=admission.patient_id, resident_id="-"
    )
    return _join(
        header.msh("DFT^P03^DFT_P03", control_id, now),
        _evn(now),
        _pid_for(patient, authority),
        segment("PV1", {1: "1", 2: "I", 19: escape(admission.admission_id)}),
        segment(
            "FT1",
            {
                1: "1",
                2: escape(deposit.deposit_id),
                3: escape(deposit.transaction_id),
                4: ts(deposit.paid_at),
                6: "PY",
                7: "DEP^Deposit^HCM",
                10: "1",
                11: str(deposit.amount),
            },
        ),
    )


def orm_executed(header: Header, control_id: str, now: datetime, execution: OrderExecution) -> str:
    """ORM^O01 with ORC-1 ``SC``/ORC-5 ``CM``: an order was carried out at the bedside."""
    return _join(
        header.msh("ORM^O01^ORM_O01", control_id, now),
        segment(
            "ORC",
            {
                1: "SC",
                2: escape(execution.order_id),
                5: "CM",
                9: ts(execution.executed_at),
                10: escape(execution.executed_by),
            },
        ),
    )


_AMOUNT = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(.*?)\s*$")


def ras_administered(
    header: Header, control_id: str, now: datetime, execution: OrderExecution
) -> str:
    """RAS^O17: a drug given at the bedside (the pharmacy administration message).

    ORC-1 ``RE``, ORC-2 the order; RXA-3/4 when it was given, RXA-5 the drug's code,
    RXA-6/7 the amount and unit given, RXA-10 the nurse (and the second nurse who
    signed the double check, repeated), RXA-20 ``CP`` (complete);
    RXR-1 the route — ``""``, HL7's null, when the execution has none: v2.5 requires
    RXR-1, and an empty one is refused.
    """
    amount, unit = "0", ""
    found = _AMOUNT.match(execution.dose or "")
    if found:
        amount, unit = found.groups()
    started = execution.started_at or execution.executed_at
    return _join(
        header.msh("RAS^O17^RAS_O17", control_id, now),
        _pid_for_stay(execution),
        segment(
            "ORC",
            {
                1: "RE",
                2: escape(execution.order_id),
                5: "CM",
                9: ts(execution.executed_at),
            },
        ),
        segment(
            "RXA",
            {
                1: "0",
                2: "1",
                3: ts(started),
                4: ts(execution.executed_at),
                5: f"{escape(execution.drug_code or '')}^^HCM",
                6: amount,
                7: escape(unit),
                10: "~".join(
                    escape(n) for n in (execution.executed_by, execution.second_nurse) if n
                ),
                20: "CP",
            },
        ),
        segment("RXR", {1: escape(execution.route) if execution.route else '""'}),
    )


def _pid_for_stay(execution: OrderExecution) -> str:
    return segment(
        "PID",
        {1: "1", 3: f"{escape(execution.patient_id or execution.admission_id)}^^^^PI", 5: UNNAMED},
    )


def _invalid(exc: Exception) -> HisError:
    return HisError(
        f"the adapter built an HL7 message that fails v2.5 validation: {type(exc).__name__}",
        hint="nothing was sent; report this with the message type to the adapter's maintainers",
    )


def _strict(text: str) -> Any:
    """hl7apy's strict parse and validation of ``text``; the parsed message."""
    from hl7apy.consts import VALIDATION_LEVEL
    from hl7apy.parser import parse_message

    try:
        message = parse_message(text, validation_level=VALIDATION_LEVEL.STRICT)
        message.validate()
    except Exception as exc:  # hl7apy raises many unrelated exception types
        raise _invalid(exc) from exc
    return message


def validate(text: str) -> None:
    """hl7apy's strict v2.5 validation; HisError (a fault of ours, not the HIS's) if invalid."""
    _strict(text)


#: Where a value sits: segment number, field, repetition, component, subcomponent.
Path = tuple[int, int, int, int, int]


def _leaves(text: str) -> tuple[tuple[object, ...], list[tuple[Path, str]]]:
    """The message's shape and its non-empty values, in order.

    The shape is what hl7apy's verdict depends on besides the values themselves: the
    segments in order, the message type and version (MSH-9, MSH-12: they choose the
    structure), the encoding characters (MSH-2), and which positions hold a value.
    Values are the raw (escaped) text between delimiters, as hl7apy's parser hands them
    to its datatypes.
    """
    names: list[str] = []
    leaves: list[tuple[Path, str]] = []
    delimiters = msh9 = msh12 = ""
    for s, line in enumerate(text.split("\r")):
        fields = line.split("|")
        names.append(fields[0])
        if fields[0] == "MSH":
            # MSH-1 is the "|" itself, MSH-2 the encoding characters: field n is fields[n-1]
            fields = ["MSH", "|", *fields[1:]]
            delimiters = fields[2] if len(fields) > 2 else ""
            msh9 = fields[9] if len(fields) > 9 else ""
            msh12 = fields[12] if len(fields) > 12 else ""
            first = 3
        else:
            first = 1
        for f in range(first, len(fields)):
            for r, rep in enumerate(fields[f].split("~")):
                for c, comp in enumerate(rep.split("^"), 1):
                    for b, value in enumerate(comp.split("&"), 1):
                        if value:
                            leaves.append(((s, f, r, c, b), value))
    shape = (msh9, msh12, tuple(names), tuple(path for path, _ in leaves), delimiters)
    return shape, leaves


def _position(name: str) -> int:
    """``PID_3`` → 3, ``CX_4`` → 4; a base datatype's own name (``ST``) → 1."""
    _, _, number = name.rpartition("_")
    return int(number) if number.isdigit() else 1


def _datatypes(message: Any, text_segments: tuple[str, ...]) -> dict[Path, str] | None:
    """The datatype hl7apy gave each value it parsed, by where the value sits in the text.

    ``None`` when hl7apy's segments cannot be matched to the text's in order (the
    verdict is then not reused).
    """

    def segments(element: Any) -> list[Any]:
        found: list[Any] = []
        for child in element.children:
            if child.classname == "Segment":
                found.append(child)
            else:
                found.extend(segments(child))
        return found

    types: dict[Path, str] = {}
    s = -1
    for parsed in segments(message):
        s += 1
        while s < len(text_segments) and text_segments[s] != parsed.name:
            s += 1  # a segment hl7apy left out of its tree (it checks nothing in it)
        if s == len(text_segments):
            return None
        repetitions: dict[int, int] = {}
        for field in parsed.children:
            f = _position(field.name)
            r = repetitions.get(f, 0)
            repetitions[f] = r + 1
            if field.name in ("MSH_1", "MSH_2"):
                continue
            for component in field.children:
                c = _position(component.name)
                for sub in component.children:
                    types[(s, f, r, c, _position(sub.name))] = sub.datatype
    return types


class StrictCheck:
    """hl7apy's strict v2.5 verdict, the structure checked once per message shape.

    The first message of a shape (see :func:`_leaves`) gets the full strict parse and
    validation. hl7apy's verdict on another message of the same shape can differ only
    through the values: its strict parse builds each one with its v2.5 datatype
    (lengths, numbers, dates), while the validator's own checks of values (tables,
    field lengths) only warn. So later messages of a shape have each value built with
    the datatype hl7apy gave it the first time, in strict mode — the same calls, the
    same errors — instead of the whole parse. :func:`validate` is the uncached check.
    """

    #: shapes remembered besides those it starts with; a few per message type in practice
    MAX_SHAPES = 1024

    def __init__(
        self, known: Mapping[tuple[object, ...], tuple[str | None, ...]] | None = None
    ) -> None:
        #: ``known``: shapes and their datatypes learned before, by a check with the
        #: same hl7apy (the adapter starts with those of :mod:`hcm_his_hl7.shapes`)
        self._shapes: dict[tuple[object, ...], tuple[str | None, ...]] = dict(known or {})
        self._limit = len(self._shapes) + self.MAX_SHAPES
        self._lock = threading.Lock()

    def __call__(self, text: str) -> None:
        """Raise :class:`HisError` if hl7apy's strict v2.5 validation would refuse ``text``."""
        from hl7apy.consts import VALIDATION_LEVEL
        from hl7apy.factories import datatype_factory

        shape, leaves = _leaves(text)
        types = self._shapes.get(shape)
        if types is None:
            message = _strict(text)
            by_path = _datatypes(message, shape[2])  # type: ignore[arg-type]
            if by_path is not None:
                with self._lock:
                    if len(self._shapes) < self._limit:
                        self._shapes[shape] = tuple(by_path.get(path) for path, _ in leaves)
            return
        version = str(shape[1])
        try:
            for (_, value), datatype in zip(leaves, types, strict=True):
                if datatype is not None:
                    datatype_factory(datatype, value, version, VALIDATION_LEVEL.STRICT)
        except Exception as exc:  # hl7apy raises many unrelated exception types
            raise _invalid(exc) from exc

    def __len__(self) -> int:
        return len(self._shapes)

"""hl7apy's verdict on the shapes of the adapter's own messages, worked out once, shipped.

:class:`~hcm_his_hl7.messages.StrictCheck` runs hl7apy's full strict parse (5–15 ms) on
the first message of each *shape* and remembers the datatype of each value; later
messages of the shape have their values checked with those datatypes (~0.2 ms). A
started adapter therefore paid the full parse on the first registration, the first
patient created, the first query of each kind … — some 30 ms on a patient's first visit
after every start, on every kiosk.

The shapes the builders of :mod:`hcm_his_hl7.messages` make are few: each builder with
its optional values present or absent (:func:`catalog`). ``shapes.json`` holds what
:class:`~hcm_his_hl7.messages.StrictCheck` learns from them, made with the hl7apy
version it names; the adapter starts with it (:func:`load`) when that version is the one
installed, so every message of a known shape — the first one too — is checked the way a
later one always was. A shape not in the file (an unusual header, a payment of many
charges) still gets the full parse, once. The tests check that the file is what the
builders and the installed hl7apy give; with ``HCM_REGEN_GOLDEN=1`` they write it again
(after a change to a builder, or another hl7apy), like the golden messages.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Mapping
from datetime import date, datetime, timedelta
from decimal import Decimal
from importlib.metadata import version
from pathlib import Path
from typing import Any

from hcm_his_hl7 import messages
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

__all__ = ["TABLE", "catalog", "dump", "load", "table"]

#: the shapes shipped with the adapter
TABLE = Path(__file__).with_name("shapes.json")

Shape = tuple[object, ...]
Known = dict[Shape, tuple[str | None, ...]]

_NOW = datetime(2026, 1, 2, 9, 30, 0)


def _headers() -> Iterator[messages.Header]:
    # MSH-6 (receiving facility) is empty by default and often set; the other MSH values
    # always hold something (their settings have defaults)
    for facility in ("", "H0001"):
        yield messages.Header("HCM", "210100000001", "HIS", facility)


def _residents() -> Iterator[Resident]:
    optional = ("birth_date", "id_number", "address", "phone")
    values = {
        "birth_date": date(1992, 5, 17),
        "id_number": "110105199205170028",
        "address": "沈阳市和平区南京北街1号",
        "phone": "13800000000",
    }
    for present in itertools.product((False, True), repeat=len(optional)):
        given = {k: values[k] for k, p in zip(optional, present, strict=True) if p}
        yield Resident(resident_id="R-0001", name="欧阳娜娜", sex=Sex.FEMALE, **given)


def _requests() -> Iterator[RegistrationRequest]:
    for kind, doctor, fee in itertools.product(
        ("registration", "appointment"), (None, "D01"), (None, Decimal("12.00"))
    ):
        yield RegistrationRequest(
            kind=kind,  # type: ignore[arg-type]
            department_code="NEI",
            doctor_code=doctor,
            slot_start=_NOW,
            slot_end=_NOW + timedelta(minutes=30),
            fee=fee,
            request_id="REQ-0001",
        )


def _executions() -> Iterator[OrderExecution]:
    # a drug given (RAS^O17: the adapter sends it when the drug's code was scanned;
    # without a route RXR-1 is HL7's null, "", a value like any other here)
    # (the stay's ID stands in PID-3 for a missing patient ID, the time given in RXA-3
    # for a missing start time, 0 in RXA-6 for a missing dose: the same shapes)
    for dose, second, route in itertools.product(("2", "250 ml"), (None, "N-0108"), ("IV", None)):
        yield OrderExecution(
            order_id="A00000001-O2",
            admission_id="A00000001",
            wristband_id="WB-1",
            checks={"bed": True},
            executed_by="N-0107",
            executed_at=_NOW,
            patient_id="H000100000001",
            started_at=_NOW - timedelta(minutes=20),
            drug_code="D-NS250",
            dose=dose,
            second_nurse=second,
            route=route,
        )


#: the named queries and how many parameters each is sent with
_QUERY_PARAMS = {"Z01": 1, "Z02": 1, "Z03": 2, "Z04": 2, "Z05": 2, "Z06": 2, "Z07": 1}
#: payments of up to this many charges at once are in the table
MAX_CHARGES = 8


def catalog() -> Iterator[str]:
    """One message of every shape the builders make: each builder, each header, each
    optional value present or absent (payments of 1 to :data:`MAX_CHARGES` charges)."""
    patient = HospitalPatient(
        hospital_code="H0001", patient_id="H000100000001", resident_id="R-0001"
    )
    stay = Admission(
        admission_id="A00000001", patient_id="H000100000001", ward="W3", bed="07", admitted_at=_NOW
    )
    deposit = Deposit(
        deposit_id="D-1",
        admission_id="A00000001",
        amount=Decimal("500.00"),
        paid_at=_NOW,
        transaction_id="T-2",
    )
    admission = AdmissionRequest(
        department_code="NEI", ward="W3", bed="07", admitted_at=_NOW, request_id="ADM-1"
    )
    for header in _headers():
        control = "0123456789abcdef0123"
        for resident in _residents():
            yield messages.adt_a28(header, control, _NOW, resident)
        yield messages.qbp_pix(header, control, _NOW, "R-0001", messages.EMPI_AUTHORITY, "PI")
        for query, count in _QUERY_PARAMS.items():
            yield messages.qbp(header, control, _NOW, query, *["P1"] * count)
        for request in _requests():
            build = messages.siu_s12 if request.kind == "appointment" else messages.adt_a04
            yield build(header, control, _NOW, patient, "H0001", request)
        yield messages.adt_a01(header, control, _NOW, patient, "H0001", admission)
        yield messages.adt_a03(header, control, _NOW, stay, "H0001", _NOW)
        for n in range(1, MAX_CHARGES + 1):
            charges = [f"V1-C{i}" for i in range(1, n + 1)]
            yield messages.dft_payment(header, control, _NOW, patient, "H0001", charges, "T-1")
        yield messages.dft_deposit(header, control, _NOW, stay, "H0001", deposit)
        executions = list(_executions())
        yield messages.orm_executed(header, control, _NOW, executions[0])
        for execution in executions:
            yield messages.ras_administered(header, control, _NOW, execution)


def table() -> Known:
    """What a :class:`~hcm_his_hl7.messages.StrictCheck` learns from :func:`catalog`
    with the installed hl7apy (a full parse of each shape: seconds)."""
    check = messages.StrictCheck()
    for text in catalog():
        check(text)  # each is valid: a refusal is a fault of the builders, raised here
    return dict(check._shapes)


def _hl7apy() -> str:
    return version("hl7apy")


def dump(known: Mapping[Shape, tuple[str | None, ...]], path: Path = TABLE) -> None:
    """Write ``known`` (from :func:`table`) to ``path``, with the hl7apy version."""
    rows = [
        [msh9, msh12, list(names), [list(p) for p in paths], delimiters, list(types)]
        for (msh9, msh12, names, paths, delimiters), types in sorted(
            known.items(), key=lambda item: repr(item[0])
        )
    ]
    document = {"hl7apy": _hl7apy(), "shapes": rows}
    path.write_text(json.dumps(document, separators=(",", ":")) + "\n", encoding="utf-8")


def load(path: Path = TABLE) -> Known:
    """The shipped shapes; none when they were made with another hl7apy than the one
    installed (its verdicts may differ), or the file is missing or unreadable."""
    try:
        document: Any = json.loads(path.read_text(encoding="utf-8"))
        if document.get("hl7apy") != _hl7apy():
            return {}
        known: Known = {}
        for msh9, msh12, names, paths, delimiters, types in document["shapes"]:
            shape = (msh9, msh12, tuple(names), tuple(tuple(p) for p in paths), delimiters)
            known[shape] = tuple(types)
        return known
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return {}

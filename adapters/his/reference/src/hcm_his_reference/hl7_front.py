"""The reference HIS's HL7 v2.5 front: what each message does to the store, and the answer.

Messages understood (see docs/his.md for the field mapping):

=================  =====================================================================
ADT^A28            create the patient (or find the resident's existing record)
ADT^A08            update the patient's name, sex, birth date
ADT^A04 / SIU^S12  register an outpatient visit / book an appointment (PV1-50 / SCH-1
                   carry the client's request ID)
ADT^A01 / ADT^A03  admit (PV1-50 request ID) / discharge (PV1-19 stay)
DFT^P03            FT1-7 ``PAY``: charges paid; ``DEP``: a deposit on a stay
ORM^O01            ORC-1 ``SC`` + ORC-5 ``CM``: an order was executed at the bedside
RAS^O17            RXA: a drug was given at the bedside (RXA-5 must be the order's drug)
QBP^Q23            PIX query: the hospital ID of a resident (RSP^K23 with PID)
QBP^Z01..Z07       registration, queue, orders, charges, reports, stay, bill (RSP^Zxx);
                   an order is its order group (a drug: RDE^O11's ORC/RXE/TQ1/RXR)
=================  =====================================================================

Every message is checked with hl7apy's strict v2.5 validation; one that fails is
refused with ``AR``. The structure of a message (type, version, segments, the positions
holding values) is parsed in full once; later messages of that structure have their
values checked with the datatypes found then; the structures of the messages the HL7
adapter sends are known from the start (see :mod:`hcm_his_reference.validation`;
``validation_cache=False`` parses every message in full). A message whose control ID
(MSH-10) was seen before from the same sender gets the answer it got the first time and
is not carried out again.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from hcm_his_reference.faults import Fault
from hcm_his_reference.store import HisFaultError, Row, Store
from hcm_his_reference.validation import StructureCheck, strict_problem
from hcm_his_reference.validation import load as load_structures

__all__ = ["CHARSETS", "Hl7Front", "order_group"]

#: MSH-18 values (HL7 table 0211) and the Python codec of each.
CHARSETS = {"": "utf-8", "UNICODE UTF-8": "utf-8", "GB 18030-2000": "gb18030"}

#: HIS fault codes → HL7 table 0357 error codes for ERR-3.
ERROR_CODES = {
    "required-field-missing": "101",
    "invalid-slot": "102",
    "invalid-amount": "102",
    "invalid-order": "102",
    "encoding": "102",
    "unsupported-message": "200",
    "unknown-patient": "204",
    "unknown-visit": "204",
    "unknown-order": "204",
    "unknown-charge": "204",
    "unknown-admission": "204",
    "already-paid": "205",
    "duplicate-transaction": "205",
    "bed-occupied": "206",
    "discharged": "207",
    "bill-unsettled": "207",
}

ORDER_STATUS = {"ordered": "SC", "in_progress": "IP", "done": "CM", "cancelled": "CA"}
REPORT_STATUS = {"pending": "I", "preliminary": "P", "final": "F", "amended": "C"}
SEX = {"M": "1", "F": "2", "U": "0", "O": "9"}


def escape(text: object) -> str:
    """ER7 escaping of a value for the default delimiters ``|^~\\&``."""
    value = "" if text is None else str(text)
    return (
        value.replace("\\", "\\E\\")
        .replace("|", "\\F\\")
        .replace("^", "\\S\\")
        .replace("~", "\\R\\")
        .replace("&", "\\T\\")
        .replace("\r", "\\X0D\\")
        .replace("\n", "\\X0A\\")
    )


def unescape(text: str) -> str:
    """The inverse of :func:`escape`."""
    return (
        text.replace("\\F\\", "|")
        .replace("\\S\\", "^")
        .replace("\\R\\", "~")
        .replace("\\T\\", "&")
        .replace("\\X0D\\", "\r")
        .replace("\\X0A\\", "\n")
        .replace("\\E\\", "\\")
    )


def segment(name: str, fields: dict[int, object]) -> str:
    """A segment from ``{field number: already-composed ER7 value}``."""
    top = max(fields, default=0)
    return "|".join(
        [name] + ["" if fields.get(i) is None else str(fields[i]) for i in range(1, top + 1)]
    )


def ts(value: str | datetime | None) -> str:
    """An HL7 TS (``YYYYMMDDHHMMSS``) from an ISO text or datetime."""
    if value is None or value == "":
        return ""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return moment.strftime("%Y%m%d%H%M%S")


def parse_ts(value: str) -> datetime:
    """A datetime from an HL7 TS (date, minutes or seconds precision)."""
    digits = value.split("+")[0].split("-")[0].split(".")[0]
    for fmt in ("%Y%m%d%H%M%S", "%Y%m%d%H%M", "%Y%m%d"):
        try:
            return datetime.strptime(digits, fmt)
        except ValueError:
            continue
    raise HisFaultError("required-field-missing", f"not an HL7 date/time: {value!r}")


_AMOUNT = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(\S.*?)\s*$")
#: how a ward order type is named in RXE-7 (coding system HCMWOT)
ORDER_TYPE_TEXT = {
    "skin_test": "皮试",
    "specimen": "标本",
    "infusion": "静滴",
    "injection": "注射",
    "oral": "口服",
    "other": "其他",
}


def drug_encoded(o: Row) -> bool:
    """Is the order sent as a pharmacy/treatment encoded order (RXE), not an OBR?

    A drug or skin-test order whose dose is an amount with its unit.
    """
    return o["kind"] in ("drug", "skin_test") and bool(_AMOUNT.match(o["dose"] or ""))


def order_group(o: Row, control: str) -> list[str]:
    """One order as the segments of an order group.

    A drug: the ORDER group of RDE^O11 — ORC, RXE (RXE-2 drug, RXE-3/5 amount and unit,
    RXE-7 the ward's order type, coding system ``HCMWOT``, RXE-25/26 strength = the
    concentration), TQ1 (TQ1-3 frequency, TQ1-7/8 the window to carry it out), RXR
    (RXR-1 route). Anything else: ORC, TQ1, OBR (OBR-24 the kind).
    """
    orc = segment(
        "ORC",
        {
            1: control,
            2: escape(o["order_id"]),
            5: ORDER_STATUS[o["status"]],
            9: ts(o["scheduled_at"]),
            12: escape(o["ordered_by"] or ""),
        },
    )
    tq1 = segment(
        "TQ1",
        {
            1: "1",
            3: escape(o["frequency"] or ""),
            7: ts(o["window_start"]),
            8: ts(o["window_end"]),
        },
    )
    if not drug_encoded(o):
        obr = segment(
            "OBR",
            {
                1: "1",
                2: escape(o["order_id"]),
                4: f"{escape(o['code'])}^{escape(o['name'])}^L",
                24: o["kind"].upper(),
                36: ts(o["scheduled_at"]),
            },
        )
        return [orc, tq1, obr]
    amount, unit = _AMOUNT.match(o["dose"]).groups()  # type: ignore[union-attr]
    strength = _AMOUNT.match(o["concentration"] or "")
    kind = o["order_type"] or ("skin_test" if o["kind"] == "skin_test" else "")
    rxe = segment(
        "RXE",
        {
            2: f"{escape(o['code'])}^{escape(o['name'])}^HCM",
            3: amount,
            5: escape(unit),
            7: f"{kind}^{ORDER_TYPE_TEXT.get(kind, kind)}^HCMWOT" if kind else "",
            25: strength.group(1) if strength else "",
            26: escape(strength.group(2)) if strength else "",
        },
    )
    rxr = segment("RXR", {1: f"{escape(o['route'] or '')}^^HCMROUTE"})
    # TQ1 twice: the timing as ordered (before RXE) and as encoded (after it)
    return [orc, tq1, rxe, tq1, rxr]


class _Message:
    """Field access on a decoded ER7 message (components split, unescaped)."""

    def __init__(self, text: str) -> None:
        self.segments = [s for s in text.replace("\n", "\r").split("\r") if s]

    def all(self, name: str) -> list[list[str]]:
        out = []
        for seg in self.segments:
            fields = seg.split("|")
            if fields[0] == name:
                # MSH-1 is the separator itself: shift so that index n is MSH-n
                out.append(["MSH", "|", *fields[1:]] if name == "MSH" else fields)
        return out

    def get(
        self, name: str, field: int, component: int = 1, repetition: int = 0, nth: int = 0
    ) -> str:
        found = self.all(name)
        if len(found) <= nth or len(found[nth]) <= field:
            return ""
        reps = found[nth][field].split("~")
        if len(reps) <= repetition:
            return ""
        comps = reps[repetition].split("^")
        return unescape(comps[component - 1]) if len(comps) >= component else ""

    def repetitions(self, name: str, field: int, nth: int = 0) -> list[list[str]]:
        found = self.all(name)
        if len(found) <= nth or len(found[nth]) <= field or not found[nth][field]:
            return []
        return [[unescape(c) for c in rep.split("^")] for rep in found[nth][field].split("~")]


def _pid_identifiers(msg: _Message) -> dict[str, str]:
    """PID-3 repetitions by assigning authority (HCMEMPI, CHN, the hospital code)."""
    out = {}
    for rep in msg.repetitions("PID", 3):
        if rep and rep[0]:
            authority = rep[3] if len(rep) > 3 else ""
            out[authority] = rep[0]
    return out


def _money(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except (InvalidOperation, ValueError):
        raise HisFaultError("invalid-amount", f"not an amount: {text!r}") from None
    return value


class Hl7Front:
    """Turns one inbound HL7 message into store work and an ER7 answer."""

    def __init__(
        self,
        store: Store,
        *,
        application: str = "REFHIS",
        strict: bool = True,
        validation_cache: bool = True,
    ) -> None:
        self.store = store
        self.application = application
        self.strict = strict
        #: the strict check: once per message structure (those the HL7 adapter sends
        #: known from the start), or every message in full
        self.check: Callable[[str], str | None] = (
            StructureCheck(load_structures()) if validation_cache else strict_problem
        )
        self._counter = itertools.count(1)
        self._routes: dict[str, Callable[[_Message], list[str]]] = {
            "ADT^A28": self._a28,
            "ADT^A08": self._a08,
            "ADT^A04": self._a04,
            "SIU^S12": self._s12,
            "ADT^A01": self._a01,
            "ADT^A03": self._a03,
            "DFT^P03": self._p03,
            "ORM^O01": self._o01,
            "RAS^O17": self._o17,
            "QBP^Q23": self._q23,
            "QBP^Z01": self._z01,
            "QBP^Z02": self._z02,
            "QBP^Z03": self._z03,
            "QBP^Z04": self._z04,
            "QBP^Z05": self._z05,
            "QBP^Z06": self._z06,
            "QBP^Z07": self._z07,
        }

    # -- framing and answers ------------------------------------------------------------

    def handle(self, raw: bytes, fault: Fault | None = None) -> bytes:
        """Carry out one message (unless refused) and return the encoded answer."""
        header = raw.split(b"\r", 1)[0].decode("latin-1")
        fields = header.split("|")
        if not header.startswith("MSH") or len(fields) < 12:
            return self._encode(
                self._ack_text("", "", "", "AR", "100", "garbage", "not an HL7 message"), ""
            )
        charset = fields[17].strip() if len(fields) > 17 else ""
        control_id = fields[9]
        sender = fields[2]
        key = f"{sender}|{control_id}"
        if control_id and (seen := self.store.answered(key)) is not None:
            return seen
        codec = CHARSETS.get(charset)
        if codec is None:
            text = self._ack_text(
                header,
                control_id,
                fields[8],
                "AR",
                "102",
                "encoding",
                f"unsupported charset {charset!r}",
            )
            return self._encode(text, "")
        try:
            text = raw.decode(codec)
        except UnicodeDecodeError:
            answer = self._ack_text(
                header,
                control_id,
                fields[8],
                "AR",
                "102",
                "encoding",
                f"the message is not valid {charset or 'UTF-8'}",
            )
            return self._encode(answer, charset)
        if fault is not None and fault.nak:
            answer = self._ack_text(
                header,
                control_id,
                fields[8],
                fault.nak,
                "207",
                "refused",
                "refused by fault switch",
            )
            return self._encode(answer, charset)
        msg = _Message(text)
        if self.strict:
            problem = self.check(text)
            if problem:
                answer = self._ack_text(
                    header, control_id, fields[8], "AR", "101", "invalid-message", problem
                )
                return self._encode(answer, charset)
        kind = "^".join(fields[8].split("^")[:2])
        route = self._routes.get(kind)
        if route is None:
            answer = self._ack_text(
                header,
                control_id,
                fields[8],
                "AR",
                "200",
                "unsupported-message",
                f"{kind} is not handled",
            )
            return self._encode(answer, charset)
        try:
            body = route(msg)
        except HisFaultError as exc:
            answer = self._ack_text(
                header,
                control_id,
                fields[8],
                "AE",
                ERROR_CODES.get(exc.code, "207"),
                exc.code,
                exc.text,
            )
        else:
            answer = "\r".join([self._msh(kind, fields[8], charset), *body]).replace(
                "{CTRL}", escape(control_id)
            )
        encoded = self._encode(answer, "GB 18030-2000" if fault and fault.mislabel else charset)
        if control_id:
            self.store.remember_answer(key, encoded)
        return encoded

    @staticmethod
    def _encode(text: str, charset: str) -> bytes:
        return (text + "\r").encode(CHARSETS.get(charset, "utf-8"))

    def _msh(self, kind: str, inbound_type: str, charset: str) -> str:
        count = next(self._counter)
        if kind.startswith("QBP^"):
            event = "K23" if kind == "QBP^Q23" else kind[4:]
            structure = "RSP_K23" if kind == "QBP^Q23" else "RSP_K11"
            msg_type = f"RSP^{event}^{structure}"
        else:
            msg_type = f"ACK^{inbound_type.split('^')[1] if '^' in inbound_type else ''}^ACK"
        return segment(
            "MSH",
            {
                1: "^~\\&",
                2: self.application,
                3: self.store.hospital_code,
                4: "HCM",
                5: "",
                6: ts(datetime.now()),
                8: msg_type,
                9: f"{self.application}{datetime.now():%H%M%S}{count:06d}",
                10: "P",
                11: "2.5",
                17: charset,
            },
        )

    def _ack_text(
        self,
        header: str,
        control_id: str,
        inbound_type: str,
        code: str,
        hl7_code: str,
        his_code: str,
        text: str,
    ) -> str:
        charset = ""
        parts = header.split("|")
        if len(parts) > 17:
            charset = parts[17]
        count = next(self._counter)
        event = inbound_type.split("^")[1] if inbound_type.count("^") else ""
        msh = segment(
            "MSH",
            {
                1: "^~\\&",
                2: self.application,
                3: self.store.hospital_code,
                4: "HCM",
                6: ts(datetime.now()),
                8: f"ACK^{event}^ACK",
                9: f"{self.application}{count:06d}",
                10: "P",
                11: "2.5",
                17: charset,
            },
        )
        msa = segment("MSA", {1: code, 2: escape(control_id), 3: escape(text)})
        err = segment(
            "ERR",
            {
                3: f"{hl7_code}^^HL70357",
                4: "E",
                5: f"{escape(his_code)}^{escape(text)}^HCMREF",
                8: escape(text),
            },
        )
        return "\r".join([msh, msa, err])

    @staticmethod
    def _ok(extra: Sequence[str] = ()) -> list[str]:
        return [segment("MSA", {1: "AA", 2: "{CTRL}"}), *extra]

    @staticmethod
    def _rsp(msg: _Message, rows: Sequence[str]) -> list[str]:
        tag = msg.get("QPD", 2)
        status = "OK" if rows else "NF"
        qpd = "|".join(msg.all("QPD")[0]) if msg.all("QPD") else "QPD"
        return [
            segment("MSA", {1: "AA", 2: "{CTRL}"}),
            segment("QAK", {1: escape(tag), 2: status}),
            qpd,
            *rows,
        ]

    # -- patients -------------------------------------------------------------------------

    def _pid(self, patient: Row) -> str:
        ids = [f"{escape(patient['patient_id'])}^^^{self.store.hospital_code}^PI"]
        ids.append(f"{escape(patient['resident_id'])}^^^HCMEMPI^PI")
        if patient.get("id_number"):
            ids.append(f"{escape(patient['id_number'])}^^^CHN^NNCHN")
        family, _, given = str(patient["name"]).partition("^")
        return segment(
            "PID",
            {
                1: "1",
                3: "~".join(ids),
                5: f"{escape(family)}^{escape(given)}" if given else escape(family),
                7: (patient.get("birth_date") or "").replace("-", ""),
                8: patient["sex"],
            },
        )

    def _demographics(self, msg: _Message) -> dict[str, Any]:
        ids = _pid_identifiers(msg)
        family = msg.get("PID", 5, 1)
        given = msg.get("PID", 5, 2)
        birth = msg.get("PID", 7)
        return {
            "resident_id": ids.get("HCMEMPI", ""),
            "id_number": ids.get("CHN") or None,
            "name": f"{family}^{given}" if given else family,
            "sex": msg.get("PID", 8) or "U",
            "birth_date": f"{birth[:4]}-{birth[4:6]}-{birth[6:8]}" if len(birth) >= 8 else None,
        }

    def _a28(self, msg: _Message) -> list[str]:
        self.store.register_patient(**self._demographics(msg))
        return self._ok()

    def _a08(self, msg: _Message) -> list[str]:
        data = self._demographics(msg)
        patient = self.store.find_patient(resident_id=data["resident_id"])
        if patient is None:
            raise HisFaultError("unknown-patient", "no patient for this resident", status=404)
        with self.store.transaction() as db:
            db.execute(
                "UPDATE patient SET name = ?, sex = ?, birth_date = ? WHERE patient_id = ?",
                (
                    data["name"] or patient["name"],
                    data["sex"],
                    data["birth_date"],
                    patient["patient_id"],
                ),
            )
        return self._ok()

    def _patient_id(self, msg: _Message) -> str:
        ids = _pid_identifiers(msg)
        patient_id = ids.get(self.store.hospital_code, "")
        if not patient_id:
            raise HisFaultError(
                "required-field-missing", f"PID-3 carries no {self.store.hospital_code} patient ID"
            )
        return patient_id

    def _q23(self, msg: _Message) -> list[str]:
        resident_id = msg.get("QPD", 3, 1)
        authority = msg.get("QPD", 3, 4)
        patient: Row | None
        if authority == self.store.hospital_code:
            try:
                patient = self.store.patient(resident_id)
            except HisFaultError:
                patient = None
        elif authority == "HCMEMPI":
            patient = self.store.find_patient(resident_id=resident_id)
        else:
            patient = self.store.find_patient(id_number=resident_id)
        return self._rsp(msg, [self._pid(patient)] if patient else [])

    # -- outpatient -------------------------------------------------------------------------

    def _a04(self, msg: _Message) -> list[str]:
        fee = msg.get("ZRF", 1)
        self.store.register_visit(
            patient_id=self._patient_id(msg),
            request_id=msg.get("PV1", 50),
            department=msg.get("PV1", 3),
            doctor=msg.get("PV1", 7) or None,
            slot_start=parse_ts(msg.get("PV1", 44)),
            slot_end=parse_ts(msg.get("PV1", 45)),
            fee=_money(fee) if fee else None,
        )
        return self._ok()

    def _s12(self, msg: _Message) -> list[str]:
        fee = msg.get("ZRF", 1)
        self.store.register_visit(
            patient_id=self._patient_id(msg),
            request_id=msg.get("SCH", 1),
            department=msg.get("AIL", 3),
            doctor=msg.get("AIP", 3) or None,
            slot_start=parse_ts(msg.get("SCH", 11, 4)),
            slot_end=parse_ts(msg.get("SCH", 11, 5)),
            fee=_money(fee) if fee else None,
            kind="appointment",
        )
        return self._ok()

    def _zrg(self, visit: Row) -> str:
        number, ahead = self.store.queue(str(visit["visit_id"]))
        return segment(
            "ZRG",
            {
                1: escape(visit["visit_id"]),
                2: escape(visit["patient_id"]),
                3: escape(visit["department"]),
                4: escape(visit["doctor"]),
                5: ts(visit["slot_start"]),
                6: ts(visit["slot_end"]),
                7: number,
                8: visit["fee"] or "",
                9: ahead,
                10: visit["kind"],
            },
        )

    def _z01(self, msg: _Message) -> list[str]:
        visit = self.store.visit_by_request(msg.get("QPD", 3, 1))
        return self._rsp(msg, [self._zrg(visit)] if visit else [])

    def _z02(self, msg: _Message) -> list[str]:
        return self._rsp(msg, [self._zrg(self.store.visit(msg.get("QPD", 3, 1)))])

    def _z03(self, msg: _Message) -> list[str]:
        rows: list[str] = []
        for o in self.store.orders(msg.get("QPD", 3, 1), msg.get("QPD", 3, 2)):
            rows.extend(order_group(o, "OK"))
        return self._rsp(msg, rows)

    def rde_o11(self, order_id: str, *, control_id: str = "RDE1") -> str:
        """An order as the HIS pushes it to a ward system: RDE^O11 (pharmacy/treatment
        encoded order) for a drug, with PID, PV1 and the order group of :func:`order_group`.
        """
        o = self.store.order(order_id)
        if not drug_encoded(o):
            raise HisFaultError("unsupported-message", f"order {order_id} is not a drug order")
        patient = self.store.patient(str(o["patient_id"]))
        msh = segment(
            "MSH",
            {
                1: "^~\\&",
                2: self.application,
                3: self.store.hospital_code,
                4: "HCM",
                6: ts(datetime.now()),
                8: "RDE^O11^RDE_O11",
                9: escape(control_id),
                10: "P",
                11: "2.5",
                17: "UNICODE UTF-8",
            },
        )
        pv1 = segment("PV1", {1: "1", 2: "I", 19: escape(o["visit_id"])})
        return "\r".join([msh, self._pid(patient), pv1, *order_group(o, "NW")])

    @staticmethod
    def _ft1(n: int, c: Row) -> str:
        return segment(
            "FT1",
            {
                1: n,
                2: escape(c["charge_id"]),
                3: escape(c["paid_by"]),
                6: "CG",
                7: f"{escape(c['item_code'])}^{escape(c['item_name'])}^HCM",
                10: c["quantity"],
                11: c["amount"],
                12: c["unit_price"],
                14: c["category"] or "",
            },
        )

    def _z04(self, msg: _Message) -> list[str]:
        charges = self.store.charges(msg.get("QPD", 3, 1), msg.get("QPD", 3, 2))
        return self._rsp(msg, [self._ft1(i, c) for i, c in enumerate(charges, 1)])

    def _z05(self, msg: _Message) -> list[str]:
        rows: list[str] = []
        for r in self.store.reports(msg.get("QPD", 3, 1), msg.get("QPD", 3, 2)):
            rows.append(
                segment(
                    "OBR",
                    {
                        1: "1",
                        3: escape(r["report_id"]),
                        4: f"{escape(r['report_id'])}^{escape(r['title'])}^L",
                        22: ts(r["issued_at"]),
                        24: r["kind"].upper(),
                        25: REPORT_STATUS[r["status"]],
                    },
                )
            )
            if r["summary"]:
                rows.append(
                    segment(
                        "OBX",
                        {
                            1: "1",
                            2: "TX",
                            3: "SUMMARY^Summary^L",
                            5: escape(r["summary"]),
                            11: REPORT_STATUS[r["status"]],
                        },
                    )
                )
        return self._rsp(msg, rows)

    # -- inpatient --------------------------------------------------------------------------

    def _pv1_stay(self, stay: Row) -> list[str]:
        return [
            segment(
                "PV1",
                {
                    1: "1",
                    2: "I",
                    3: f"{escape(stay['ward'])}^^{escape(stay['bed'])}",
                    10: escape(stay["department"]),
                    19: escape(stay["admission_id"]),
                    44: ts(stay["admitted_at"]),
                    45: ts(stay["discharged_at"]),
                    50: escape(stay["request_id"]),
                },
            ),
            segment("ZDP", {1: stay["deposits"], 2: escape(stay["patient_id"])}),
        ]

    def _a01(self, msg: _Message) -> list[str]:
        self.store.admit(
            patient_id=self._patient_id(msg),
            request_id=msg.get("PV1", 50),
            department=msg.get("PV1", 10),
            ward=msg.get("PV1", 3, 1),
            bed=msg.get("PV1", 3, 3),
            admitted_at=parse_ts(msg.get("PV1", 44)),
        )
        return self._ok()

    def _a03(self, msg: _Message) -> list[str]:
        self.store.discharge(msg.get("PV1", 19), parse_ts(msg.get("PV1", 45)))
        return self._ok()

    def _z06(self, msg: _Message) -> list[str]:
        key = msg.get("QPD", 3, 1)
        stay = (
            self.store.admission_by_request(key)
            if msg.get("QPD", 3, 2) == "REQUEST"
            else self.store.admission(key)
        )
        return self._rsp(msg, self._pv1_stay(stay) if stay else [])

    def _z07(self, msg: _Message) -> list[str]:
        stay, items, _total, _paid, _deposits = self.store.bill(msg.get("QPD", 3, 1))
        rows = self._pv1_stay(stay) + [self._ft1(i, c) for i, c in enumerate(items, 1)]
        for n, d in enumerate(self.store.deposits(str(stay["admission_id"])), len(items) + 1):
            rows.append(
                segment(
                    "FT1",
                    {
                        1: n,
                        2: escape(d["deposit_id"]),
                        3: escape(d["transaction_id"]),
                        4: ts(d["paid_at"]),
                        6: "PY",
                        7: "DEP^预交金 Deposit^HCM",
                        10: "1",
                        11: d["amount"],
                    },
                )
            )
        return self._rsp(msg, rows)

    # -- money and ward ------------------------------------------------------------------------

    def _p03(self, msg: _Message) -> list[str]:
        lines = msg.all("FT1")
        if not lines:
            raise HisFaultError("required-field-missing", "DFT^P03 without FT1")
        codes = {msg.get("FT1", 7, nth=i) for i in range(len(lines))}
        if codes == {"DEP"}:
            for i in range(len(lines)):
                self.store.record_deposit(
                    admission_id=msg.get("PV1", 19),
                    deposit_id=msg.get("FT1", 2, nth=i),
                    transaction_id=msg.get("FT1", 3, nth=i),
                    amount=_money(msg.get("FT1", 11, nth=i)),
                    paid_at=parse_ts(msg.get("FT1", 4, nth=i)),
                )
            return self._ok()
        if codes == {"PAY"}:
            transactions = {msg.get("FT1", 3, nth=i) for i in range(len(lines))}
            if len(transactions) != 1:
                raise HisFaultError(
                    "required-field-missing",
                    "all FT1 of a payment carry one transaction ID (FT1-3)",
                )
            self.store.pay_charges(
                self._patient_id(msg),
                [msg.get("FT1", 2, nth=i) for i in range(len(lines))],
                transactions.pop(),
            )
            return self._ok()
        raise HisFaultError(
            "unsupported-message", f"FT1-7 codes {sorted(codes)} are not PAY or DEP"
        )

    def _o17(self, msg: _Message) -> list[str]:
        order_id = msg.get("ORC", 2)
        order = self.store.order(order_id)
        given = msg.get("RXA", 5, 1)
        if given != order["code"]:
            raise HisFaultError(
                "wrong-drug", f"order {order_id} is for {order['code']}, not {given or '?'}"
            )
        self.store.order_executed(order_id, parse_ts(msg.get("RXA", 4)), msg.get("RXA", 10) or "?")
        return self._ok()

    def _o01(self, msg: _Message) -> list[str]:
        if msg.get("ORC", 1) != "SC" or msg.get("ORC", 5) != "CM":
            raise HisFaultError(
                "unsupported-message", "only ORC-1 SC / ORC-5 CM (executed) is accepted"
            )
        self.store.order_executed(
            msg.get("ORC", 2), parse_ts(msg.get("ORC", 9)), msg.get("ORC", 10) or "?"
        )
        return self._ok()

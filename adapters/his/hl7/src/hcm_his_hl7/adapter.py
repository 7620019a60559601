"""The HL7 v2.5 HIS adapter: every HIS hook as an HL7 message over MLLP.

Writes are messages the HIS acknowledges (ADT, SIU, DFT, ORM); what a write created
(the patient ID, the registration, the stay) is then read back with a query (QBP → RSP),
keyed by the identifier the adapter sent, so a retried hook finds what the first call
made. Every message is validated strictly as HL7 v2.5 before it is sent (setting
``validate_outbound``; the tests check every message of a journey either way), with
hl7apy's structural verdict reused per message shape (setting ``validation_cache``).
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Literal, get_args

from pydantic import Field

from hcm_his_hl7 import messages, shapes
from hcm_his_hl7.client import MllpClient, RetryPolicy
from hcm_his_hl7.er7 import Er7Message, parse_ts
from hcmiddleware import Middleware, SettingsModel, hookimpl
from hcmiddleware.errors import HisError, HisProtocolError, HisRejectedError
from hcmiddleware.models import (
    Admission,
    AdmissionRequest,
    Bill,
    Charge,
    CheckResult,
    Deposit,
    Discharge,
    HospitalPatient,
    IdentifierKind,
    Order,
    OrderExecution,
    QueuePosition,
    Registration,
    RegistrationRequest,
    Report,
    Resident,
    WardOrderType,
)

log = logging.getLogger(__name__)

__all__ = ["NAME", "Hl7His", "Hl7HisSettings", "read_orders"]

NAME = "his-hl7"

ORDER_STATUS = {
    "SC": "ordered",
    "IP": "in_progress",
    "CM": "done",
    "CA": "cancelled",
    "DC": "cancelled",
}
ORDER_KINDS = {"drug", "lab", "exam", "treatment", "nursing", "skin_test", "specimen"}
#: the ward's order types (RXE-7, coding system HCMWOT)
WARD_ORDER_TYPES = set(get_args(WardOrderType))
_NUMBER = re.compile(r"^-?[0-9]+(?:\.[0-9]+)?$")
REPORT_STATUS = {
    "I": "pending",
    "O": "pending",
    "S": "pending",
    "P": "preliminary",
    "A": "preliminary",
    "F": "final",
    "C": "amended",
    "R": "preliminary",
}
REPORT_KINDS = {
    "LAB": "lab",
    "EXAM": "exam",
    "RAD": "exam",
    "PATHOLOGY": "pathology",
    "PAT": "pathology",
}


def _window_time(
    answer: Er7Message, fields: list[str], number: int, order_id: str
) -> datetime | None:
    try:
        return parse_ts(answer.field(fields, number))
    except HisProtocolError:
        raise HisProtocolError(
            f"order {order_id}: TQ1-{number} is not an HL7 date/time",
            hint="the HIS's order feed sends a malformed time window; report it to the HIS",
        ) from None


def _quantity(amount: str, unit: str) -> str | None:
    """``250`` and ``ml`` → ``250 ml``; a percentage without the space (``0.9%``)."""
    if not amount:
        return None
    return f"{amount}{unit}" if unit == "%" else f"{amount} {unit}".strip()


def read_orders(answer: Er7Message, patient_id: str, visit_id: str) -> list[Order]:
    """The orders of an answer or message, one per order group.

    A group starts at ORC (ORC-2 order, ORC-5 status, ORC-9 scheduled, ORC-12 doctor).
    A drug is RDE^O11's group: RXE-2 drug, RXE-3/5 amount and unit, RXE-7 the ward's
    order type (coding system ``HCMWOT``), RXE-25/26 strength (the concentration),
    RXR-1 route; anything else an OBR (OBR-4 code^name, OBR-24 kind). TQ1-3 is the
    frequency, TQ1-7/8 the window to carry the order out.

    :raises HisProtocolError: an order the ward cannot use (a window that ends before it
        starts, an unknown order type, an amount that is not a number).
    """
    orders: list[Order] = []
    current: dict[str, object] | None = None

    def done() -> None:
        if current is None:
            return
        start, end = current.get("window_start"), current.get("window_end")
        if isinstance(start, datetime) and isinstance(end, datetime) and end <= start:
            raise HisProtocolError(
                f"order {current['order_id']}: its window ends ({end:%Y-%m-%d %H:%M}) "
                f"before it starts ({start:%Y-%m-%d %H:%M})",
                hint="the order cannot be checked at the bedside; ask the HIS to correct it",
            )
        if "code" not in current:
            raise HisProtocolError(
                f"order {current['order_id']} has neither RXE nor OBR: no drug or item",
                hint="the HIS's order feed is incomplete; report it to the HIS",
            )
        orders.append(Order(**current))

    for fields in answer.segments:
        name = fields[0]
        if name == "ORC":
            done()
            current = {
                "order_id": answer.field(fields, 2),
                "patient_id": patient_id,
                "visit_id": visit_id,
                "status": ORDER_STATUS.get(answer.field(fields, 5), "ordered"),
                "scheduled_at": parse_ts(answer.field(fields, 9)),
                "ordered_by": answer.field(fields, 12) or None,
            }
        elif current is None:
            continue
        elif name == "OBR":
            kind = answer.field(fields, 24).lower()
            current.update(
                code=answer.field(fields, 4, 1),
                name=answer.field(fields, 4, 2),
                kind=kind if kind in ORDER_KINDS else "treatment",
            )
        elif name == "TQ1":
            order_id = str(current["order_id"])
            current["frequency"] = answer.field(fields, 3) or current.get("frequency")
            current["window_start"] = _window_time(answer, fields, 7, order_id)
            current["window_end"] = _window_time(answer, fields, 8, order_id)
        elif name == "RXE":
            amount = answer.field(fields, 3)
            strength = answer.field(fields, 25)
            for what, number in (("amount", amount), ("strength", strength)):
                if number and not _NUMBER.match(number):
                    raise HisProtocolError(
                        f"order {current['order_id']}: the {what} {number[:20]!r} is not a number",
                        hint="the HIS's order feed is malformed; report it to the HIS",
                    )
            order_type = answer.field(fields, 7) or None
            if order_type is not None and order_type not in WARD_ORDER_TYPES:
                raise HisProtocolError(
                    f"order {current['order_id']}: RXE-7 order type {order_type[:20]!r} is "
                    f"not one of {', '.join(sorted(WARD_ORDER_TYPES))}",
                    hint="map the HIS's order types to the ward's (coding system HCMWOT)",
                )
            current.update(
                code=answer.field(fields, 2, 1),
                name=answer.field(fields, 2, 2),
                kind="skin_test" if order_type == "skin_test" else "drug",
                dose=_quantity(amount, answer.field(fields, 5)),
                concentration=_quantity(strength, answer.field(fields, 26)),
                order_type=order_type,
            )
            if not current["code"]:
                raise HisProtocolError(
                    f"order {current['order_id']}: RXE-2 names no drug",
                    hint="the HIS's order feed is malformed; report it to the HIS",
                )
        elif name == "RXR":
            current["route"] = answer.field(fields, 1) or None
    done()
    return orders


class Hl7HisSettings(SettingsModel):
    """``[plugins.his-hl7]``: where the HIS listens and how to talk to it."""

    host: str = Field("127.0.0.1", description="the HIS's MLLP listener")
    port: int = Field(2575, ge=1, le=65535)
    sending_application: str = Field("HCM", max_length=20, description="MSH-3")
    sending_facility: str | None = Field(
        None, max_length=20, description="MSH-4; default the institution code"
    )
    receiving_application: str = Field("HIS", max_length=20, description="MSH-5")
    receiving_facility: str = Field("", max_length=20, description="MSH-6")
    assigning_authority: str | None = Field(
        None,
        max_length=20,
        description="PID-3.4 of the HIS's patient IDs; default the hospital code",
    )
    encoding: Literal["UTF-8", "GB18030"] = Field(
        "UTF-8", description="MSH-18 and the bytes on the wire"
    )
    validate_outbound: bool = Field(
        True, description="validate every message strictly as v2.5 before sending"
    )
    validation_cache: bool = Field(
        True,
        description="hl7apy's full strict parse once per message shape, then each value "
        "checked with its v2.5 datatype (~0.1-0.2 ms); false: the full parse of every "
        "message (~5-10 ms each)",
    )
    timeout: float = Field(2.0, gt=0, le=60, description="seconds to wait for one acknowledgment")
    keep_alive: float = Field(
        30.0,
        ge=0,
        le=3600,
        description="seconds an idle connection is kept for the next message; 0: one "
        "connection per message",
    )
    attempts: int = Field(3, ge=1, le=10, description="tries per message, resends included")
    backoff: float = Field(0.2, ge=0, le=10, description="pause before the first resend; doubles")
    minutes_per_patient: int = Field(
        8, ge=1, le=120, description="for the queue's waiting estimate"
    )


def _money(text: str, what: str) -> Decimal:
    try:
        return Decimal(text)
    except (InvalidOperation, ValueError):
        raise HisProtocolError(
            f"the HIS sent {what} that is not an amount: {text[:20]!r}"
        ) from None


class Hl7His:
    """The plugin object (the entry point names this class; created with no arguments)."""

    hcm_plugin_name = NAME

    def __init__(self) -> None:
        self.settings = Hl7HisSettings()
        self.header = messages.Header("HCM", "", "HIS", "")
        self.client: MllpClient | None = None
        self._validate: Callable[[str], None] = messages.StrictCheck()
        self._hospital_code = ""
        #: (longest a call can take with retries, what the runtime allows), seconds
        self._budget = (0.0, 0.0)

    # -- setup ------------------------------------------------------------------------

    @hookimpl
    def hcm_add_config(self, settings: object) -> None:
        settings.add(NAME, Hl7HisSettings)  # type: ignore[attr-defined]

    @hookimpl
    def hcm_configure(self, middleware: Middleware) -> None:
        settings = middleware.plugin_settings(NAME)
        if isinstance(settings, Hl7HisSettings):
            self.settings = settings
        s = self.settings
        self._hospital_code = middleware.config.middleware.institution_code
        self.header = messages.Header(
            s.sending_application,
            s.sending_facility or middleware.config.middleware.institution_code[:20],
            s.receiving_application,
            s.receiving_facility,
            s.encoding,
        )
        policy = RetryPolicy(attempts=s.attempts, timeout=s.timeout, backoff=s.backoff)
        self._budget = (policy.worst_case(), middleware.dispatcher.timeout_for(NAME))
        if self._budget[0] > self._budget[1]:
            log.warning(
                "%s: %d tries of %g s (with pauses) can take %.1f s, longer than the %g s "
                "the runtime allows a call; lower attempts/timeout or raise [plugins] timeouts",
                NAME,
                s.attempts,
                s.timeout,
                *self._budget,
            )
        if self.client is not None:
            self.client.close()
        self.client = MllpClient(
            s.host, s.port, policy, messages.CHARSETS[s.encoding][1], keep_alive=s.keep_alive
        )
        if s.validation_cache:
            # the shapes of the adapter's own messages, checked when it was built: the
            # first message of each is not parsed in full at every start
            self._validate = messages.StrictCheck(shapes.load())
        else:
            self._validate = messages.validate

    @hookimpl
    def hcm_unconfigure(self) -> None:
        if self.client is not None:
            self.client.close()
        self.client = None

    @hookimpl
    def hcm_doctor_checks(self) -> list[CheckResult]:
        return [*self._reachable(), self._retry_budget()]

    def _retry_budget(self) -> CheckResult:
        worst, allowed = self._budget
        return CheckResult(
            name="retry budget",
            ok=worst <= allowed,
            detail=f"a call takes at most {worst:.1f} s; the runtime allows {allowed:g} s",
            hint=""
            if worst <= allowed
            else "lower attempts or timeout, or raise [plugins] timeouts",
        )

    def _reachable(self) -> list[CheckResult]:
        where = f"{self.settings.host}:{self.settings.port}"
        try:
            self._query("Z02", "-")
        except HisRejectedError:
            # a refusal of the probe query still proves the HIS reads HL7
            return [CheckResult(name="mllp", ok=True, detail=f"{where} answers HL7")]
        except HisError as exc:
            return [CheckResult(name="mllp", ok=False, detail=exc.message, hint=exc.hint)]
        return [CheckResult(name="mllp", ok=True, detail=f"{where} answers HL7")]

    # -- plumbing -------------------------------------------------------------------------

    def _send(self, build: Callable[..., str], *args: object) -> Er7Message:
        if self.client is None:
            raise HisError("the HL7 adapter is not configured", hint="start the Middleware first")
        control_id = uuid.uuid4().hex[:20]
        text = build(self.header, control_id, datetime.now().replace(microsecond=0), *args)
        if self.settings.validate_outbound:
            self._validate(text)
        return self.client.exchange(text, control_id)

    def _query(self, query: str, *params: str) -> Er7Message:
        return self._send(messages.qbp, query, *params)

    def _authority(self, hospital_code: str) -> str:
        return self.settings.assigning_authority or hospital_code

    # -- patients -------------------------------------------------------------------------

    def _pix(self, value: str, authority: str, type_code: str, hospital_code: str) -> str | None:
        answer = self._send(messages.qbp_pix, value, authority, type_code)
        wanted = self._authority(hospital_code)
        for pid in answer.named("PID"):
            for rep in answer.repetitions(pid, 3):
                if len(rep) > 3 and rep[3] == wanted and rep[0]:
                    return rep[0]
        return None

    @hookimpl
    def hcm_his_lookup_patient(
        self, resident: Resident, hospital_code: str
    ) -> HospitalPatient | None:
        # Identity matching (ID number, name, birth date) is the resident index's job:
        # the HIS is asked only for IDs the index already links to this person.
        authority = self._authority(hospital_code)
        known = resident.identifier(IdentifierKind.HOSPITAL_PATIENT_ID, hospital_code)
        patient_id = self._pix(known, authority, "PI", hospital_code) if known else None
        if patient_id is None:
            patient_id = self._pix(
                resident.resident_id, messages.EMPI_AUTHORITY, "PI", hospital_code
            )
        if patient_id is None:
            return None
        return HospitalPatient(
            hospital_code=hospital_code, patient_id=patient_id, resident_id=resident.resident_id
        )

    @hookimpl
    def hcm_his_register_patient(
        self, resident: Resident, hospital_code: str
    ) -> HospitalPatient | None:
        found = self.hcm_his_lookup_patient(resident, hospital_code)
        if found is not None:
            return found
        self._send(messages.adt_a28, resident)
        made = self.hcm_his_lookup_patient(resident, hospital_code)
        if made is None:
            raise HisProtocolError(
                "the HIS acknowledged the new patient but does not find it by the resident's ID",
                hint="check that the HIS keeps PID-3 identifiers with authority HCMEMPI",
            )
        return made.model_copy(update={"created": True})

    # -- outpatient ---------------------------------------------------------------------------

    def _registration(self, answer: Er7Message) -> tuple[Registration, int] | None:
        rows = answer.named("ZRG")
        if not rows:
            return None
        f = rows[0]
        start, end = parse_ts(answer.field(f, 5)), parse_ts(answer.field(f, 6))
        if start is None or end is None:
            raise HisProtocolError("the HIS sent a registration without its slot")
        fee = answer.field(f, 8)
        number = answer.field(f, 7)
        ahead = answer.field(f, 9)
        if not number.isdigit() or not ahead.isdigit():
            raise HisProtocolError("the HIS sent a queue number that is not a number")
        reg = Registration(
            registration_id=answer.field(f, 1),
            patient_id=answer.field(f, 2),
            department_code=answer.field(f, 3),
            doctor_code=answer.field(f, 4) or None,
            slot_start=start,
            slot_end=end,
            queue_number=int(number),
            fee=_money(fee, "a fee") if fee else None,
        )
        return reg, int(ahead)

    @hookimpl
    def hcm_his_register_visit(
        self, patient: HospitalPatient, request: RegistrationRequest
    ) -> Registration | None:
        # no query first: the HIS registers once per request ID (PV1-50 / SCH-1) and
        # acknowledges a repeat without registering again
        build = messages.siu_s12 if request.kind == "appointment" else messages.adt_a04
        self._send(build, patient, self._authority(patient.hospital_code), request)
        made = self._registration(self._query("Z01", request.request_id))
        if made is None:
            raise HisProtocolError(
                "the HIS acknowledged the registration but does not find it by request ID"
            )
        return made[0]

    @hookimpl
    def hcm_his_queue_position(self, registration: Registration) -> QueuePosition | None:
        found = self._registration(self._query("Z02", registration.registration_id))
        if found is None:
            return None
        reg, ahead = found
        return QueuePosition(
            registration_id=reg.registration_id,
            queue_number=reg.queue_number or 0,
            ahead=ahead,
            estimated_wait_minutes=ahead * self.settings.minutes_per_patient,
        )

    @hookimpl
    def hcm_his_list_orders(self, patient: HospitalPatient, visit_id: str) -> list[Order] | None:
        answer = self._query("Z03", patient.patient_id, visit_id)
        return read_orders(answer, patient.patient_id, visit_id)

    def orders_from_rde(self, text: str) -> list[Order]:
        """The orders of an RDE^O11 (pharmacy/treatment encoded order) the HIS pushed.

        PID-3 names the patient (under ``assigning_authority``), PV1-19 the stay.

        :raises HisProtocolError: not an RDE^O11, or an order the ward cannot use.
        """
        message = Er7Message(text)
        kind = "^".join(message.get("MSH", 9, c) for c in (1, 2))
        if kind != "RDE^O11":
            raise HisProtocolError(
                f"expected an RDE^O11 order message, not {kind[:20]!r}",
                hint="only pharmacy/treatment encoded orders (RDE^O11) carry drug orders",
            )
        wanted = self._authority(self._hospital_code)
        patient_id = ""
        for pid in message.named("PID"):
            for rep in message.repetitions(pid, 3):
                if len(rep) > 3 and rep[3] == wanted and rep[0]:
                    patient_id = rep[0]
        visit_id = message.get("PV1", 19)
        if not patient_id or not visit_id:
            raise HisProtocolError(
                "the RDE^O11 does not name the patient (PID-3) and the stay (PV1-19)",
                hint=f"the HIS must send PID-3 under authority {wanted} and PV1-19",
            )
        return read_orders(message, patient_id, visit_id)

    def _charges(
        self, answer: Er7Message, patient_id: str, visit_id: str
    ) -> tuple[list[Charge], Decimal]:
        charges: list[Charge] = []
        deposits = Decimal("0.00")
        for f in answer.named("FT1"):
            if answer.field(f, 7) == "DEP":
                deposits += _money(answer.field(f, 11), "a deposit")
                continue
            category = answer.field(f, 14)
            charges.append(
                Charge(
                    charge_id=answer.field(f, 2),
                    patient_id=patient_id,
                    visit_id=visit_id,
                    item_code=answer.field(f, 7, 1),
                    item_name=answer.field(f, 7, 2),
                    quantity=_money(answer.field(f, 10), "a quantity"),
                    unit_price=_money(answer.field(f, 12), "a price"),
                    amount=_money(answer.field(f, 11), "an amount"),
                    insurance_category=category if category in ("A", "B", "C") else None,
                    paid=bool(answer.field(f, 3)),
                )
            )
        return charges, deposits

    @hookimpl
    def hcm_his_list_charges(self, patient: HospitalPatient, visit_id: str) -> list[Charge] | None:
        answer = self._query("Z04", patient.patient_id, visit_id)
        return self._charges(answer, patient.patient_id, visit_id)[0]

    @hookimpl
    def hcm_his_charges_paid(
        self, patient: HospitalPatient, charge_ids: list[str], transaction_id: str
    ) -> bool | None:
        self._send(
            messages.dft_payment,
            patient,
            self._authority(patient.hospital_code),
            charge_ids,
            transaction_id,
        )
        return True

    @hookimpl
    def hcm_his_list_reports(self, patient: HospitalPatient, visit_id: str) -> list[Report] | None:
        answer = self._query("Z05", patient.patient_id, visit_id)
        reports: list[Report] = []
        for fields in answer.segments:
            if fields[0] == "OBR":
                reports.append(
                    Report(
                        report_id=answer.field(fields, 3),
                        patient_id=patient.patient_id,
                        visit_id=visit_id,
                        kind=REPORT_KINDS.get(answer.field(fields, 24), "other"),
                        title=answer.field(fields, 4, 2) or answer.field(fields, 4, 1),
                        issued_at=parse_ts(answer.field(fields, 22)),
                        status=REPORT_STATUS.get(answer.field(fields, 25), "pending"),
                    )
                )
            elif fields[0] == "OBX" and reports and answer.field(fields, 2) in ("TX", "ST", "FT"):
                text = answer.field(fields, 5)
                last = reports[-1]
                summary = f"{last.summary}\n{text}" if last.summary else text
                reports[-1] = last.model_copy(update={"summary": summary})
        return reports

    # -- inpatient ----------------------------------------------------------------------------

    def _admission(self, answer: Er7Message) -> Admission | None:
        rows = answer.named("PV1")
        if not rows:
            return None
        f = rows[0]
        admitted = parse_ts(answer.field(f, 44))
        if admitted is None:
            raise HisProtocolError("the HIS sent a stay without its admission time")
        deposits = answer.get("ZDP", 1)
        return Admission(
            admission_id=answer.field(f, 19),
            patient_id=answer.get("ZDP", 2),
            ward=answer.field(f, 3, 1),
            bed=answer.field(f, 3, 3),
            admitted_at=admitted,
            discharged_at=parse_ts(answer.field(f, 45)),
            deposit_balance=_money(deposits, "a deposit balance") if deposits else Decimal("0.00"),
        )

    @hookimpl
    def hcm_his_admit(
        self, patient: HospitalPatient, request: AdmissionRequest
    ) -> Admission | None:
        self._send(messages.adt_a01, patient, self._authority(patient.hospital_code), request)
        made = self._admission(self._query("Z06", request.request_id, "REQUEST"))
        if made is None:
            raise HisProtocolError(
                "the HIS acknowledged the admission but does not find it by request ID"
            )
        return made

    def _stay(self, admission_id: str) -> Admission:
        stay = self._admission(self._query("Z06", admission_id, "ID"))
        if stay is None:
            raise HisProtocolError(f"the HIS does not find stay {admission_id} it acknowledged")
        return stay

    @hookimpl
    def hcm_his_record_deposit(self, admission: Admission, deposit: Deposit) -> Admission | None:
        self._send(messages.dft_deposit, admission, self._authority_of(admission), deposit)
        return self._stay(admission.admission_id)

    def _authority_of(self, admission: Admission) -> str:
        # a stay carries no hospital code: use the one the flows pass (the institution's)
        return self._authority(self._hospital_code)

    @hookimpl
    def hcm_his_inpatient_bill(self, admission: Admission) -> Bill | None:
        answer = self._query("Z07", admission.admission_id)
        stay = self._admission(answer)
        patient_id = stay.patient_id if stay else admission.patient_id
        items, deposits = self._charges(answer, patient_id, admission.admission_id)
        total = sum((c.amount for c in items), Decimal("0.00"))
        paid = sum((c.amount for c in items if c.paid), Decimal("0.00"))
        return Bill(
            patient_id=patient_id,
            admission_id=admission.admission_id,
            items=tuple(items),
            total=total,
            deposits=deposits,
            balance=total - paid - deposits,
        )

    @hookimpl
    def hcm_his_discharge(self, admission: Admission, bill: Bill) -> Discharge | None:
        at = datetime.now().replace(microsecond=0)
        self._send(messages.adt_a03, admission, self._authority_of(admission), at)
        stay = self._stay(admission.admission_id)
        final = self.hcm_his_inpatient_bill(stay) or bill
        return Discharge(
            admission_id=stay.admission_id, discharged_at=stay.discharged_at or at, final_bill=final
        )

    @hookimpl
    def hcm_his_order_executed(self, execution: OrderExecution) -> bool | None:
        # a drug given (its label scanned) is a pharmacy administration; anything else
        # (a specimen, a nursing task) the order's completion
        if execution.drug_code:
            self._send(messages.ras_administered, execution)
        else:
            self._send(messages.orm_executed, execution)
        return True

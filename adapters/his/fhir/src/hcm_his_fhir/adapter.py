"""The FHIR R4 HIS adapter: every HIS hook as FHIR REST on the hospital's server.

==============================  ===========================================================
hook                            FHIR
==============================  ===========================================================
lookup / register patient       ``GET Patient?identifier=`` / conditional ``POST Patient``
register visit                  conditional ``POST Encounter`` (AMB) or ``Appointment``
queue position                  ``GET Encounter/{id}`` (queue extensions)
orders                          ``GET ServiceRequest`` + ``GET MedicationRequest``
charges / charges paid          ``GET ChargeItem`` / ``POST ChargeItem/$pay``
reports                         ``GET DiagnosticReport``
admit / deposit                 conditional ``POST Encounter`` (IMP) / ``$deposit``
inpatient bill                  ``GET ChargeItem?context=`` + the stay's deposit extension
discharge                       ``PUT Encounter/{id}`` with ``status = finished``
order executed                  conditional ``POST Task`` (completed, focus = the order);
                                a drug given: ``MedicationAdministration``; a specimen
                                collected: conditional ``POST Specimen`` (request = the
                                ServiceRequest), then the Task with it as ``output``
==============================  ===========================================================

The HIS's logical IDs are the hospital's IDs: ``Patient.id`` is the patient ID,
``Encounter.id`` the registration or stay. Times travel with the hospital's offset
(setting ``timezone``) and come back as naive local times, as the models hold them.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, cast, get_args
from zoneinfo import ZoneInfo

from pydantic import Field

from hcm_his_fhir.client import FhirClient, RetryPolicy
from hcmiddleware import Middleware, Secret, SettingsModel, hookimpl
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
    Sex,
    WardOrderType,
)

log = logging.getLogger(__name__)

__all__ = ["NAME", "FhirHis", "FhirHisSettings"]

NAME = "his-fhir"

ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
GENDER = {
    Sex.MALE: "male",
    Sex.FEMALE: "female",
    Sex.UNKNOWN: "unknown",
    Sex.UNSPECIFIED: "unknown",
}
ORDER_STATUS = {
    "active": "ordered",
    "draft": "ordered",
    "on-hold": "ordered",
    "completed": "done",
    "revoked": "cancelled",
    "stopped": "cancelled",
    "cancelled": "cancelled",
    "entered-in-error": "cancelled",
}
ORDER_KINDS = {"drug", "lab", "exam", "treatment", "nursing", "skin_test", "specimen"}
#: the ward's order types (a category in ``systems.order_type``)
WARD_ORDER_TYPES = set(get_args(WardOrderType))


def _requester(request: dict[str, Any]) -> str | None:
    """The ordering doctor's identifier of a ServiceRequest or MedicationRequest."""
    value = ((request.get("requester") or {}).get("identifier") or {}).get("value")
    return str(value) if value else None


#: a dose as the ward records it: an amount, then its unit ("250 ml")
_AMOUNT = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(\S.*?)\s*$")
REPORT_STATUS = {
    "registered": "pending",
    "partial": "preliminary",
    "preliminary": "preliminary",
    "final": "final",
    "amended": "amended",
    "corrected": "amended",
    "appended": "amended",
}
REPORT_KINDS = {"lab", "exam", "pathology"}


class FhirSystems(SettingsModel):
    """Identifier systems and extension URLs the HIS uses (``[plugins.his-fhir.systems]``)."""

    resident: str = "urn:hcm:empi"
    id_number: str = "urn:hcm:cn-id-number"
    request: str = "urn:hcm:request"
    department: str = "urn:hcm:department"
    ward: str = "urn:hcm:ward"
    bed: str = "urn:hcm:bed"
    order: str = "urn:hcm:order"
    practitioner: str = "urn:hcm:practitioner"
    drug: str = "urn:hcm:charge-item"
    execution: str = "urn:hcm:execution"
    fee: str = "urn:hcm:fhir:registration-fee"
    queue: str = "urn:hcm:fhir:queue-number"
    ahead: str = "urn:hcm:fhir:queue-ahead"
    deposits: str = "urn:hcm:fhir:deposit-balance"
    unit_price: str = "urn:hcm:fhir:unit-price"
    category: str = "urn:hcm:fhir:insurance-category"
    concentration: str = "urn:hcm:fhir:concentration"
    order_type: str = "urn:hcm:ward-order-type"


class FhirHisSettings(SettingsModel):
    """``[plugins.his-fhir]``: where the FHIR server is and how to talk to it."""

    base_url: str = Field("http://127.0.0.1:8080/fhir", description="the FHIR base URL")
    token: Secret | None = Field(None, description="bearer token, if the server wants one")
    timezone: str = Field("Asia/Shanghai", description="the HIS's local time zone")
    timeout: float = Field(2.0, gt=0, le=60, description="seconds to wait for one answer")
    attempts: int = Field(3, ge=1, le=10, description="tries per request, resends included")
    backoff: float = Field(0.2, ge=0, le=10, description="pause before the first resend; doubles")
    minutes_per_patient: int = Field(8, ge=1, le=120, description="for the queue's estimate")
    systems: FhirSystems = Field(default_factory=FhirSystems)


def _decimal(value: Any, what: str) -> Decimal:
    try:
        return Decimal(str(value)).quantize(Decimal("0.01"))
    except (InvalidOperation, ValueError):
        raise HisProtocolError(f"the HIS sent {what} that is not an amount") from None


def _entries(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    if bundle.get("resourceType") != "Bundle":
        raise HisProtocolError(f"a search answered {bundle.get('resourceType')}, not a Bundle")
    return [e["resource"] for e in bundle.get("entry") or [] if "resource" in e]


def _coding(concept: dict[str, Any] | None) -> dict[str, Any]:
    return dict(((concept or {}).get("coding") or [{}])[0])


class FhirHis:
    """The plugin object (the entry point names this class; created with no arguments)."""

    hcm_plugin_name = NAME

    def __init__(self) -> None:
        self.settings = FhirHisSettings()
        self.client: FhirClient | None = None
        #: (longest a call can take with retries, what the runtime allows), seconds
        self._budget = (0.0, 0.0)
        self.tz = ZoneInfo(self.settings.timezone)

    # -- setup ------------------------------------------------------------------------

    @hookimpl
    def hcm_add_config(self, settings: object) -> None:
        settings.add(NAME, FhirHisSettings)  # type: ignore[attr-defined]

    @hookimpl
    def hcm_configure(self, middleware: Middleware) -> None:
        settings = middleware.plugin_settings(NAME)
        if isinstance(settings, FhirHisSettings):
            self.settings = settings
        s = self.settings
        self.tz = ZoneInfo(s.timezone)
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
        token = s.token.get_secret_value() if s.token else None
        self.client = FhirClient(s.base_url, policy, token)

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
        try:
            _status, meta = self._call("GET", "metadata")
        except HisError as exc:
            return [CheckResult(name="fhir", ok=False, detail=exc.message, hint=exc.hint)]
        version = meta.get("fhirVersion", "?")
        ok = str(version).startswith("4.0")
        return [
            CheckResult(
                name="fhir",
                ok=ok,
                detail=f"{self.settings.base_url} FHIR {version}",
                hint="" if ok else "the server is not FHIR R4 (4.0.x)",
            )
        ]

    # -- plumbing -------------------------------------------------------------------------

    def _call(self, method: str, path: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
        if self.client is None:
            raise HisError("the FHIR adapter is not configured", hint="start the Middleware first")
        return self.client.request(method, path, **kwargs)

    def _search(self, kind: str, **params: str) -> list[dict[str, Any]]:
        return _entries(self._call("GET", kind, params=params)[1])

    def _when(self, moment: datetime) -> str:
        aware = moment if moment.tzinfo else moment.replace(tzinfo=self.tz)
        return aware.isoformat()

    def _local(self, value: str | None) -> datetime | None:
        if not value:
            return None
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise HisProtocolError(
                f"the HIS sent a date/time that is not FHIR: {value[:30]!r}"
            ) from None
        if moment.tzinfo is not None:
            moment = moment.astimezone(self.tz).replace(tzinfo=None)
        return moment

    def _ext(self, resource: dict[str, Any], url: str) -> dict[str, Any] | None:
        for ext in resource.get("extension") or []:
            if ext.get("url") == url:
                return dict(ext)
        return None

    def _sys(self) -> FhirSystems:
        return self.settings.systems

    # -- patients -------------------------------------------------------------------------

    @hookimpl
    def hcm_his_lookup_patient(
        self, resident: Resident, hospital_code: str
    ) -> HospitalPatient | None:
        # identity matching is the resident index's job: ask only by IDs it already holds
        known = resident.identifier(IdentifierKind.HOSPITAL_PATIENT_ID, hospital_code)
        if known:
            try:
                _status, found = self._call("GET", f"Patient/{known}")
            except HisRejectedError as exc:
                if exc.status != "404":
                    raise
            else:
                return HospitalPatient(
                    hospital_code=hospital_code,
                    patient_id=str(found["id"]),
                    resident_id=resident.resident_id,
                )
        hits = self._search("Patient", identifier=f"{self._sys().resident}|{resident.resident_id}")
        if not hits:
            return None
        if len(hits) > 1:
            raise HisProtocolError(
                f"the HIS holds {len(hits)} patients for one resident",
                hint="ask the HIS administrators to merge the duplicate patient records",
            )
        return HospitalPatient(
            hospital_code=hospital_code,
            patient_id=str(hits[0]["id"]),
            resident_id=resident.resident_id,
        )

    @hookimpl
    def hcm_his_register_patient(
        self, resident: Resident, hospital_code: str
    ) -> HospitalPatient | None:
        identifiers = [{"system": self._sys().resident, "value": resident.resident_id}]
        if resident.id_number:
            identifiers.append({"system": self._sys().id_number, "value": resident.id_number})
        patient: dict[str, Any] = {
            "resourceType": "Patient",
            "identifier": identifiers,
            "name": [{"text": resident.name}],
            "gender": GENDER[resident.sex],
        }
        if resident.birth_date:
            patient["birthDate"] = resident.birth_date.isoformat()
        if resident.phone:
            patient["telecom"] = [{"system": "phone", "value": resident.phone}]
        if resident.address:
            patient["address"] = [{"text": resident.address}]
        status, made = self._call(
            "POST",
            "Patient",
            resource=patient,
            headers={"If-None-Exist": f"identifier={self._sys().resident}|{resident.resident_id}"},
        )
        return HospitalPatient(
            hospital_code=hospital_code,
            patient_id=str(made["id"]),
            resident_id=resident.resident_id,
            created=status == 201,
        )

    # -- outpatient ---------------------------------------------------------------------------

    def _registration(self, resource: dict[str, Any]) -> tuple[Registration, int]:
        s = self._sys()
        queue = self._ext(resource, s.queue)
        ahead = self._ext(resource, s.ahead)
        fee = self._ext(resource, s.fee)
        if resource["resourceType"] == "Appointment":
            start, end = resource.get("start"), resource.get("end")
            department = _coding((resource.get("serviceType") or [{}])[0]).get("code", "")
            doctors = [
                p["actor"]["identifier"]["value"]
                for p in resource.get("participant") or []
                if "identifier" in (p.get("actor") or {})
            ]
            patients = [
                p["actor"]["reference"]
                for p in resource.get("participant") or []
                if str((p.get("actor") or {}).get("reference", "")).startswith("Patient/")
            ]
            patient = patients[0] if patients else ""
        else:
            start, end = (
                (resource.get("period") or {}).get("start"),
                (resource.get("period") or {}).get("end"),
            )
            department = _coding(resource.get("serviceType")).get("code", "")
            doctors = [
                p["individual"]["identifier"]["value"]
                for p in resource.get("participant") or []
                if "identifier" in (p.get("individual") or {})
            ]
            patient = (resource.get("subject") or {}).get("reference", "")
        slot_start, slot_end = self._local(start), self._local(end)
        if slot_start is None or slot_end is None or queue is None:
            raise HisProtocolError("the HIS sent a registration without its slot or queue number")
        reg = Registration(
            registration_id=str(resource["id"]),
            patient_id=str(patient).removeprefix("Patient/"),
            department_code=department,
            doctor_code=doctors[0] if doctors else None,
            slot_start=slot_start,
            slot_end=slot_end,
            queue_number=int(queue["valueInteger"]),
            fee=_decimal(fee["valueMoney"]["value"], "a fee") if fee else None,
        )
        return reg, int(ahead["valueInteger"]) if ahead else 0

    @hookimpl
    def hcm_his_register_visit(
        self, patient: HospitalPatient, request: RegistrationRequest
    ) -> Registration | None:
        s = self._sys()
        ext = []
        if request.fee is not None:
            ext.append(
                {"url": s.fee, "valueMoney": {"value": float(request.fee), "currency": "CNY"}}
            )
        service = {"coding": [{"system": s.department, "code": request.department_code}]}
        ident = [{"system": s.request, "value": request.request_id}]
        resource: dict[str, Any]
        if request.kind == "appointment":
            participants: list[dict[str, Any]] = [
                {"actor": {"reference": f"Patient/{patient.patient_id}"}, "status": "accepted"}
            ]
            if request.doctor_code:
                participants.append(
                    {
                        "actor": {
                            "identifier": {"system": s.practitioner, "value": request.doctor_code}
                        },
                        "status": "accepted",
                    }
                )
            resource = {
                "resourceType": "Appointment",
                "identifier": ident,
                "status": "booked",
                "serviceType": [service],
                "start": self._when(request.slot_start),
                "end": self._when(request.slot_end),
                "participant": participants,
            }
        else:
            resource = {
                "resourceType": "Encounter",
                "identifier": ident,
                "status": "planned",
                "class": {"system": ACT_CODE, "code": "AMB"},
                "serviceType": service,
                "subject": {"reference": f"Patient/{patient.patient_id}"},
                "period": {
                    "start": self._when(request.slot_start),
                    "end": self._when(request.slot_end),
                },
            }
            if request.doctor_code:
                resource["participant"] = [
                    {
                        "individual": {
                            "identifier": {"system": s.practitioner, "value": request.doctor_code}
                        }
                    }
                ]
        if ext:
            resource["extension"] = ext
        _status, made = self._call(
            "POST",
            resource["resourceType"],
            resource=resource,
            headers={"If-None-Exist": f"identifier={s.request}|{request.request_id}"},
        )
        return self._registration(made)[0]

    @hookimpl
    def hcm_his_queue_position(self, registration: Registration) -> QueuePosition | None:
        # a registration is an Encounter, an appointment an Appointment; the Registration
        # model does not say which, so the second is asked when the first is not found
        try:
            _status, found = self._call("GET", f"Encounter/{registration.registration_id}")
        except HisRejectedError as exc:
            if exc.status != "404":
                raise
            _status, found = self._call("GET", f"Appointment/{registration.registration_id}")
        reg, ahead = self._registration(found)
        return QueuePosition(
            registration_id=reg.registration_id,
            queue_number=reg.queue_number or 0,
            ahead=ahead,
            estimated_wait_minutes=ahead * self.settings.minutes_per_patient,
        )

    def _order_type(self, resource: dict[str, Any]) -> WardOrderType | None:
        """The ward's order type from a category coded in ``systems.order_type``."""
        for concept in resource.get("category") or []:
            for coding in (concept or {}).get("coding") or []:
                if coding.get("system") == self._sys().order_type:
                    code = str(coding.get("code", ""))
                    if code not in WARD_ORDER_TYPES:
                        raise HisProtocolError(
                            f"order {resource.get('id')}: order type {code[:20]!r} is not one "
                            f"of {', '.join(sorted(WARD_ORDER_TYPES))}",
                            hint="map the HIS's order types to the ward's "
                            f"({self._sys().order_type})",
                        )
                    return cast("WardOrderType", code)
        return None

    def _window(
        self, resource: dict[str, Any], period: dict[str, Any] | None
    ) -> tuple[datetime | None, datetime | None]:
        """A Period as the window to carry the order out; refused if it ends first."""
        if not period:
            return None, None
        start, end = self._local(period.get("start")), self._local(period.get("end"))
        if start is not None and end is not None and end <= start:
            raise HisProtocolError(
                f"order {resource.get('id')}: its window ends ({end:%Y-%m-%d %H:%M}) before "
                f"it starts ({start:%Y-%m-%d %H:%M})",
                hint="the order cannot be checked at the bedside; ask the HIS to correct it",
            )
        return start, end

    @hookimpl
    def hcm_his_list_orders(self, patient: HospitalPatient, visit_id: str) -> list[Order] | None:
        where = {"subject": f"Patient/{patient.patient_id}", "encounter": f"Encounter/{visit_id}"}
        orders: list[Order] = []
        for sr in self._search("ServiceRequest", **where):
            kind = _coding((sr.get("category") or [{}])[0]).get("code", "")
            code = _coding(sr.get("code"))
            start, end = self._window(sr, sr.get("occurrencePeriod"))
            orders.append(
                Order(
                    order_id=str(sr["id"]),
                    patient_id=patient.patient_id,
                    visit_id=visit_id,
                    kind=kind if kind in ORDER_KINDS else "treatment",
                    code=code.get("code", ""),
                    name=code.get("display") or (sr.get("code") or {}).get("text", ""),
                    scheduled_at=self._local(sr.get("occurrenceDateTime")),
                    status=ORDER_STATUS.get(sr.get("status", ""), "ordered"),
                    ordered_by=_requester(sr),
                    order_type=self._order_type(sr),
                    window_start=start,
                    window_end=end,
                )
            )
        for mr in self._search("MedicationRequest", **where):
            code = _coding(mr.get("medicationCodeableConcept"))
            dosage = (mr.get("dosageInstruction") or [{}])[0]
            concentration = self._ext(dosage, self._sys().concentration)
            timing = dosage.get("timing") or {}
            start, end = self._window(mr, (timing.get("repeat") or {}).get("boundsPeriod"))
            order_type = self._order_type(mr)
            orders.append(
                Order(
                    order_id=str(mr["id"]),
                    patient_id=patient.patient_id,
                    visit_id=visit_id,
                    kind="skin_test" if order_type == "skin_test" else "drug",
                    code=code.get("code", ""),
                    name=code.get("display", ""),
                    dose=dosage.get("text"),
                    concentration=concentration.get("valueString") if concentration else None,
                    route=(dosage.get("route") or {}).get("text"),
                    frequency=(timing.get("code") or {}).get("text"),
                    scheduled_at=self._local(mr.get("authoredOn")),
                    status=ORDER_STATUS.get(mr.get("status", ""), "ordered"),
                    ordered_by=_requester(mr),
                    order_type=order_type,
                    window_start=start,
                    window_end=end,
                )
            )
        return orders

    def _charge(self, item: dict[str, Any], patient_id: str, visit_id: str) -> Charge:
        s = self._sys()
        code = _coding(item.get("code"))
        amount = _decimal((item.get("priceOverride") or {}).get("value"), "an amount")
        quantity = Decimal(str((item.get("quantity") or {}).get("value", 1)))
        unit = self._ext(item, s.unit_price)
        category = self._ext(item, s.category)
        cat = category.get("valueCode") if category else None
        return Charge(
            charge_id=str(item["id"]),
            patient_id=patient_id,
            visit_id=visit_id,
            item_code=code.get("code", ""),
            item_name=code.get("display", ""),
            quantity=quantity,
            unit_price=_decimal(unit["valueMoney"]["value"], "a price")
            if unit
            else amount / quantity,
            amount=amount,
            insurance_category=cat if cat in ("A", "B", "C") else None,
            paid=item.get("status") == "billed",
        )

    @hookimpl
    def hcm_his_list_charges(self, patient: HospitalPatient, visit_id: str) -> list[Charge] | None:
        items = self._search(
            "ChargeItem", subject=f"Patient/{patient.patient_id}", context=f"Encounter/{visit_id}"
        )
        return [self._charge(i, patient.patient_id, visit_id) for i in items]

    @hookimpl
    def hcm_his_charges_paid(
        self, patient: HospitalPatient, charge_ids: list[str], transaction_id: str
    ) -> bool | None:
        parameters = {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "transaction", "valueString": transaction_id},
                {
                    "name": "patient",
                    "valueReference": {"reference": f"Patient/{patient.patient_id}"},
                },
                *(
                    {"name": "chargeItem", "valueReference": {"reference": f"ChargeItem/{c}"}}
                    for c in charge_ids
                ),
            ],
        }
        self._call("POST", "ChargeItem/$pay", resource=parameters)
        return True

    @hookimpl
    def hcm_his_list_reports(self, patient: HospitalPatient, visit_id: str) -> list[Report] | None:
        found = self._search(
            "DiagnosticReport",
            subject=f"Patient/{patient.patient_id}",
            encounter=f"Encounter/{visit_id}",
        )
        reports = []
        for r in found:
            kind = _coding((r.get("category") or [{}])[0]).get("code", "")
            reports.append(
                Report(
                    report_id=str(r["id"]),
                    patient_id=patient.patient_id,
                    visit_id=visit_id,
                    kind=kind if kind in REPORT_KINDS else "other",
                    title=(r.get("code") or {}).get("text")
                    or _coding(r.get("code")).get("display", ""),
                    issued_at=self._local(r.get("issued")),
                    status=REPORT_STATUS.get(r.get("status", ""), "pending"),
                    summary=r.get("conclusion"),
                )
            )
        return reports

    # -- inpatient ----------------------------------------------------------------------------

    def _admission(self, stay: dict[str, Any]) -> Admission:
        s = self._sys()
        places = {}
        for loc in stay.get("location") or []:
            ident = (loc.get("location") or {}).get("identifier") or {}
            places[ident.get("system")] = ident.get("value", "")
        deposits = self._ext(stay, s.deposits)
        admitted = self._local((stay.get("period") or {}).get("start"))
        if admitted is None:
            raise HisProtocolError("the HIS sent a stay without its admission time")
        return Admission(
            admission_id=str(stay["id"]),
            patient_id=str((stay.get("subject") or {}).get("reference", "")).removeprefix(
                "Patient/"
            ),
            ward=places.get(s.ward, ""),
            bed=places.get(s.bed, ""),
            admitted_at=admitted,
            discharged_at=self._local((stay.get("period") or {}).get("end")),
            deposit_balance=_decimal(deposits["valueMoney"]["value"], "a deposit")
            if deposits
            else Decimal("0.00"),
        )

    @hookimpl
    def hcm_his_admit(
        self, patient: HospitalPatient, request: AdmissionRequest
    ) -> Admission | None:
        s = self._sys()
        encounter = {
            "resourceType": "Encounter",
            "identifier": [{"system": s.request, "value": request.request_id}],
            "status": "in-progress",
            "class": {"system": ACT_CODE, "code": "IMP"},
            "serviceType": {"coding": [{"system": s.department, "code": request.department_code}]},
            "subject": {"reference": f"Patient/{patient.patient_id}"},
            "period": {"start": self._when(request.admitted_at)},
            "location": [
                {"location": {"identifier": {"system": s.ward, "value": request.ward}}},
                {"location": {"identifier": {"system": s.bed, "value": request.bed}}},
            ],
        }
        _status, made = self._call(
            "POST",
            "Encounter",
            resource=encounter,
            headers={"If-None-Exist": f"identifier={s.request}|{request.request_id}"},
        )
        return self._admission(made)

    @hookimpl
    def hcm_his_record_deposit(self, admission: Admission, deposit: Deposit) -> Admission | None:
        parameters = {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "deposit", "valueString": deposit.deposit_id},
                {"name": "transaction", "valueString": deposit.transaction_id},
                {
                    "name": "amount",
                    "valueMoney": {"value": float(deposit.amount), "currency": "CNY"},
                },
                {"name": "paid", "valueDateTime": self._when(deposit.paid_at)},
            ],
        }
        _status, stay = self._call(
            "POST", f"Encounter/{admission.admission_id}/$deposit", resource=parameters
        )
        return self._admission(stay)

    @hookimpl
    def hcm_his_inpatient_bill(self, admission: Admission) -> Bill | None:
        _status, found = self._call("GET", f"Encounter/{admission.admission_id}")
        stay = self._admission(found)
        items = [
            self._charge(i, stay.patient_id, stay.admission_id)
            for i in self._search("ChargeItem", context=f"Encounter/{stay.admission_id}")
        ]
        total = sum((c.amount for c in items), Decimal("0.00"))
        paid = sum((c.amount for c in items if c.paid), Decimal("0.00"))
        return Bill(
            patient_id=stay.patient_id,
            admission_id=stay.admission_id,
            items=tuple(items),
            total=total,
            deposits=stay.deposit_balance,
            balance=total - paid - stay.deposit_balance,
        )

    @hookimpl
    def hcm_his_discharge(self, admission: Admission, bill: Bill) -> Discharge | None:
        _status, current = self._call("GET", f"Encounter/{admission.admission_id}")
        period = dict(current.get("period") or {})
        period.setdefault("end", self._when(datetime.now().replace(microsecond=0)))
        finished = {**current, "status": "finished", "period": period}
        _status, stay_json = self._call(
            "PUT", f"Encounter/{admission.admission_id}", resource=finished
        )
        stay = self._admission(stay_json)
        final = self.hcm_his_inpatient_bill(stay) or bill
        return Discharge(
            admission_id=stay.admission_id,
            discharged_at=stay.discharged_at or datetime.now().replace(microsecond=0),
            final_bill=final,
        )

    @hookimpl
    def hcm_his_order_executed(self, execution: OrderExecution) -> bool | None:
        s = self._sys()
        key = f"{execution.order_id}@{execution.executed_at.isoformat()}"
        if execution.drug_code and execution.patient_id:
            # a drug given (its label scanned): a MedicationAdministration
            kind, resource = "MedicationAdministration", self._administration(execution, key)
        else:
            kind, resource = "Task", self._task(execution, key)
            if execution.order_type == "specimen":
                # a specimen collected: the Specimen first, then the Task that says so
                specimen_id = self._collected(execution, key)
                resource["output"] = [
                    {
                        "type": {"text": "specimen"},
                        "valueReference": {"reference": f"Specimen/{specimen_id}"},
                    }
                ]
        self._call(
            "POST",
            kind,
            resource=resource,
            headers={"If-None-Exist": f"identifier={s.execution}|{key}"},
        )
        return True

    def _collected(self, execution: OrderExecution, key: str) -> str:
        """POST the Specimen a specimen order's execution collected; the HIS's ID of it.

        ``request`` is the order's ServiceRequest, ``collection`` who collected it and
        when; made once per execution (conditional create on its identifier), so a
        resent upload finds the Specimen made the first time.
        """
        s = self._sys()
        specimen: dict[str, Any] = {
            "resourceType": "Specimen",
            "identifier": [{"system": s.execution, "value": key}],
            "status": "available",
            "request": [
                {
                    "reference": f"ServiceRequest/{execution.order_id}",
                    "identifier": {"system": s.order, "value": execution.order_id},
                }
            ],
            "collection": {
                "collector": {
                    "identifier": {"system": s.practitioner, "value": execution.executed_by}
                },
                "collectedDateTime": self._when(execution.executed_at),
            },
        }
        if execution.patient_id:
            specimen["subject"] = {"reference": f"Patient/{execution.patient_id}"}
        _status, made = self._call(
            "POST",
            "Specimen",
            resource=specimen,
            headers={"If-None-Exist": f"identifier={s.execution}|{key}"},
        )
        if made.get("resourceType") != "Specimen" or not made.get("id"):
            raise HisProtocolError("the HIS answered a Specimen it made without its ID")
        return str(made["id"])

    def _task(self, execution: OrderExecution, key: str) -> dict[str, Any]:
        s = self._sys()
        return {
            "resourceType": "Task",
            "identifier": [{"system": s.execution, "value": key}],
            "status": "completed",
            "intent": "order",
            "focus": {"identifier": {"system": s.order, "value": execution.order_id}},
            "executionPeriod": {"start": self._when(execution.executed_at)},
            "owner": {"identifier": {"system": s.practitioner, "value": execution.executed_by}},
            "input": [
                {"type": {"text": check}, "valueBoolean": passed}
                for check, passed in sorted(execution.checks.items())
            ],
        }

    def _administration(self, execution: OrderExecution, key: str) -> dict[str, Any]:
        s = self._sys()
        nurses = [n for n in (execution.executed_by, execution.second_nurse) if n]
        dosage: dict[str, Any] = {}
        if execution.route:
            dosage["route"] = {"text": execution.route}
        amount = _AMOUNT.match(execution.dose or "")
        if amount:
            dosage["dose"] = {"value": float(amount.group(1)), "unit": amount.group(2)}
        elif execution.dose:
            dosage["text"] = execution.dose
        return {
            "resourceType": "MedicationAdministration",
            "identifier": [{"system": s.execution, "value": key}],
            "status": "completed",
            "medicationCodeableConcept": {
                "coding": [{"system": s.drug, "code": execution.drug_code}]
            },
            "subject": {"reference": f"Patient/{execution.patient_id}"},
            "context": {"reference": f"Encounter/{execution.admission_id}"},
            "effectivePeriod": {
                "start": self._when(execution.started_at or execution.executed_at),
                "end": self._when(execution.executed_at),
            },
            "performer": [
                {"actor": {"identifier": {"system": s.practitioner, "value": n}}} for n in nurses
            ],
            "request": {"identifier": {"system": s.order, "value": execution.order_id}},
            **({"dosage": dosage} if dosage else {}),
        }

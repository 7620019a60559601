"""FHIR R4 resources of the reference HIS: the store's records as JSON, and back.

=========================================  =============================================
``GET  Patient?identifier=sys|value``       search (Bundle); ``GET Patient/{id}``
``POST Patient`` + ``If-None-Exist``        conditional create (201 new, 200 existing)
``POST Encounter`` / ``POST Appointment``   registration / appointment / admission, made
                                            once per ``identifier`` (the request ID)
``GET  Encounter/{id}`` ``Appointment/{id}`` with the queue and deposit extensions
``PUT  Encounter/{id}`` status finished     discharge
``GET  ServiceRequest`` ``MedicationRequest`` ``ChargeItem`` ``DiagnosticReport``
                                            ``?subject=Patient/x&encounter=Encounter/y``
                                            (``context=`` for ChargeItem)
``POST ChargeItem/$pay``                    Parameters: transaction + chargeItem refs
``POST Encounter/{id}/$deposit``            Parameters: deposit, transaction, amount, paid
``POST Task`` + ``If-None-Exist``           a bedside execution of an order
``POST MedicationAdministration``           a drug given at the bedside (its code must be the
                                            order's)
``POST Specimen`` + ``If-None-Exist``       a specimen collected for a specimen order
                                            (``request`` the ServiceRequest); the order's
                                            ServiceRequest then lists it in ``specimen``;
                                            ``GET Specimen/{id}``
=========================================  =============================================

Every resource received is validated with fhir.resources (R4B, whose definitions of
these resources are R4's); an invalid one is refused with an OperationOutcome.
Times are the hospital's local time (Asia/Shanghai) on the wire with their offset.
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from email.message import Message
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit
from zoneinfo import ZoneInfo

from hcm_his_reference.store import HisFaultError, Row, Store

__all__ = ["EXT", "SYSTEMS", "FhirRoutes"]

TZ = ZoneInfo("Asia/Shanghai")

#: Identifier systems of the reference HIS (an adapter's settings must match them).
SYSTEMS = {
    "resident": "urn:hcm:empi",
    "id_number": "urn:hcm:cn-id-number",
    "request": "urn:hcm:request",
    "department": "urn:hcm:department",
    "ward": "urn:hcm:ward",
    "bed": "urn:hcm:bed",
    "order": "urn:hcm:order",
    "item": "urn:hcm:charge-item",
    "practitioner": "urn:hcm:practitioner",
    "order_type": "urn:hcm:ward-order-type",
}
#: Extension URLs for what FHIR R4 has no element for.
EXT = {
    "fee": "urn:hcm:fhir:registration-fee",
    "queue": "urn:hcm:fhir:queue-number",
    "ahead": "urn:hcm:fhir:queue-ahead",
    "deposits": "urn:hcm:fhir:deposit-balance",
    "unit_price": "urn:hcm:fhir:unit-price",
    "category": "urn:hcm:fhir:insurance-category",
    "paid_by": "urn:hcm:fhir:paid-by-transaction",
    "concentration": "urn:hcm:fhir:concentration",
}
#: order kinds served as MedicationRequest (the others as ServiceRequest)
DRUG_KINDS = ("drug", "skin_test")
GENDER = {"M": "male", "F": "female", "O": "other", "U": "unknown"}
SEX = {v: k for k, v in GENDER.items()}
ORDER_STATUS = {
    "ordered": "active",
    "in_progress": "active",
    "done": "completed",
    "cancelled": "revoked",
}
REPORT_STATUS = {
    "pending": "registered",
    "preliminary": "preliminary",
    "final": "final",
    "amended": "amended",
}


def when(value: str | None) -> str | None:
    """A stored local time as a FHIR dateTime with its offset."""
    if not value:
        return None
    return datetime.fromisoformat(value).replace(tzinfo=TZ).isoformat()


def local(value: str | None) -> datetime:
    """A FHIR dateTime as the hospital's naive local time."""
    if not value:
        raise HisFaultError("required-field-missing", "a date/time is missing", status=400)
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is not None:
        moment = moment.astimezone(TZ).replace(tzinfo=None)
    return moment


def money(value: str | Decimal) -> dict[str, Any]:
    """A FHIR Money in CNY."""
    return {"value": float(Decimal(value)), "currency": "CNY"}


def _ident(resource: dict[str, Any], system: str) -> str | None:
    for ident in resource.get("identifier") or []:
        if ident.get("system") == system and ident.get("value"):
            return str(ident["value"])
    return None


def _ext(resource: dict[str, Any], url: str) -> dict[str, Any] | None:
    for ext in resource.get("extension") or []:
        if ext.get("url") == url:
            return dict(ext)
    return None


def _validate(resource: dict[str, Any]) -> None:
    from fhir.resources.R4B import get_fhir_model_class

    kind = resource.get("resourceType")
    if not isinstance(kind, str):
        raise HisFaultError("invalid-resource", "no resourceType", status=400)
    try:
        get_fhir_model_class(kind).model_validate(resource)
    except Exception as exc:  # pydantic's ValidationError and unknown types alike
        raise HisFaultError(
            "invalid-resource", f"{kind} is not valid FHIR: {exc}"[:300], status=400
        ) from None


def _requester(o: Row) -> dict[str, Any]:
    """The ordering doctor of an order, by identifier."""
    if not o.get("ordered_by"):
        return {}
    return {
        "requester": {"identifier": {"system": SYSTEMS["practitioner"], "value": o["ordered_by"]}}
    }


def _order_type(o: Row) -> list[dict[str, Any]]:
    """The ward's order type as a category, if the HIS gives the order one."""
    # a skin test is a drug order whose type says so
    kind = o["order_type"] or ("skin_test" if o["kind"] == "skin_test" else None)
    if not kind:
        return []
    return [{"coding": [{"system": SYSTEMS["order_type"], "code": kind}]}]


def bundle(resources: list[dict[str, Any]]) -> dict[str, Any]:
    """A searchset Bundle."""
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [{"resource": r} for r in resources],
    }


class FhirRoutes:
    """Routes FHIR REST requests to the store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- routing -------------------------------------------------------------------------

    def route(
        self, method: str, path: str, headers: Message, body: bytes
    ) -> tuple[int, dict[str, Any]]:
        """``(HTTP status, JSON body)`` for one request."""
        url = urlsplit(path)
        parts = [unquote(p) for p in url.path.split("/") if p]
        if parts[:1] == ["fhir"]:
            parts = parts[1:]
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        resource: dict[str, Any] = {}
        if body:
            try:
                resource = json.loads(body.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                raise HisFaultError(
                    "invalid-resource", "the body is not JSON in UTF-8", status=400
                ) from None
            if not isinstance(resource, dict):
                raise HisFaultError("invalid-resource", "the body is not a JSON object", status=400)
            _validate(resource)
        key = (method, *parts)
        if key == ("GET", "metadata"):
            return 200, self.capability()
        if method == "GET" and len(parts) == 1:
            return 200, self.search(parts[0], query)
        if method == "GET" and len(parts) == 2:
            return 200, self.read(parts[0], parts[1])
        if key == ("POST", "Patient"):
            return self.create_patient(resource, headers)
        if key in (("POST", "Encounter"), ("POST", "Appointment")):
            return self.create_visit(resource)
        if method == "PUT" and parts[:1] == ["Encounter"] and len(parts) == 2:
            return self.update_encounter(parts[1], resource)
        if key == ("POST", "ChargeItem", "$pay"):
            return self.pay(resource)
        if (
            method == "POST"
            and len(parts) == 3
            and parts[0] == "Encounter"
            and parts[2] == "$deposit"
        ):
            return self.deposit(parts[1], resource)
        if key == ("POST", "Task"):
            return self.task(resource)
        if key == ("POST", "MedicationAdministration"):
            return self.administration(resource)
        if key == ("POST", "Specimen"):
            return self.create_specimen(resource, headers)
        raise HisFaultError("not-supported", f"{method} {url.path} is not supported", status=404)

    @staticmethod
    def capability() -> dict[str, Any]:
        """The CapabilityStatement (what ``/metadata`` answers)."""
        kinds = [
            "Patient",
            "Encounter",
            "Appointment",
            "ServiceRequest",
            "MedicationRequest",
            "ChargeItem",
            "DiagnosticReport",
            "Task",
            "MedicationAdministration",
            "Specimen",
        ]
        return {
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": "2026-01-01",
            "kind": "instance",
            "fhirVersion": "4.0.1",
            "format": ["json"],
            "rest": [{"mode": "server", "resource": [{"type": k} for k in kinds]}],
        }

    # -- reads ---------------------------------------------------------------------------

    def read(self, kind: str, ident: str) -> dict[str, Any]:
        """One resource by its logical ID."""
        if kind == "Patient":
            return self.patient(self.store.patient(ident))
        if kind == "Encounter":
            visit = self.store._one("SELECT * FROM visit WHERE visit_id = ?", ident)
            if visit is not None and visit["kind"] == "appointment":
                raise HisFaultError("unknown-visit", f"{ident} is an Appointment", status=404)
            return self.encounter(visit) if visit else self.stay(self.store.admission(ident))
        if kind == "Appointment":
            visit = self.store.visit(ident)
            if visit["kind"] != "appointment":
                raise HisFaultError("unknown-visit", f"{ident} is an Encounter", status=404)
            return self.appointment(visit)
        if kind == "Specimen":
            return self.specimen(self.store.specimen(ident))
        raise HisFaultError("not-supported", f"no read of {kind}", status=404)

    def search(self, kind: str, query: dict[str, str]) -> dict[str, Any]:
        """A search; the parameters each kind understands are in the module's table."""
        subject = query.get("subject", "").removeprefix("Patient/")
        context = (query.get("encounter") or query.get("context") or "").removeprefix("Encounter/")
        if kind == "Patient":
            system, _, value = query.get("identifier", "").rpartition("|")
            found = None
            if system == SYSTEMS["resident"]:
                found = self.store.find_patient(resident_id=value)
            elif system == SYSTEMS["id_number"]:
                found = self.store.find_patient(id_number=value)
            return bundle([self.patient(found)] if found else [])
        if kind in ("Encounter", "Appointment"):
            _system, _, value = query.get("identifier", "").rpartition("|")
            visit = self.store.visit_by_request(value)
            if visit is not None:
                wanted = "Appointment" if visit["kind"] == "appointment" else "Encounter"
                return bundle([self.read(wanted, str(visit["visit_id"]))] if wanted == kind else [])
            stay = self.store.admission_by_request(value)
            return bundle([self.stay(stay)] if stay is not None and kind == "Encounter" else [])
        if not context:
            raise HisFaultError("required-field-missing", f"search {kind} by encounter", status=400)
        patient_id = subject or self.store._patient_of(context)
        orders = self.store.orders
        if kind == "ServiceRequest":
            rows = [o for o in orders(patient_id, context) if o["kind"] not in DRUG_KINDS]
            return bundle(
                [self.service_request(o, self.store.specimens(o["order_id"])) for o in rows]
            )
        if kind == "MedicationRequest":
            rows = [o for o in self.store.orders(patient_id, context) if o["kind"] in DRUG_KINDS]
            return bundle([self.medication_request(o) for o in rows])
        if kind == "ChargeItem":
            return bundle([self.charge_item(c) for c in self.store.charges(patient_id, context)])
        if kind == "DiagnosticReport":
            return bundle(
                [self.diagnostic_report(r) for r in self.store.reports(patient_id, context)]
            )
        raise HisFaultError("not-supported", f"no search of {kind}", status=404)

    # -- resources from rows ------------------------------------------------------------------

    def patient(self, row: Row) -> dict[str, Any]:
        """Patient."""
        identifiers = [{"system": SYSTEMS["resident"], "value": row["resident_id"]}]
        if row.get("id_number"):
            identifiers.append({"system": SYSTEMS["id_number"], "value": row["id_number"]})
        out: dict[str, Any] = {
            "resourceType": "Patient",
            "id": row["patient_id"],
            "identifier": identifiers,
            "name": [{"text": row["name"]}],
            "gender": GENDER.get(row["sex"], "unknown"),
        }
        if row.get("birth_date"):
            out["birthDate"] = row["birth_date"]
        return out

    def _queue_ext(self, visit: Row) -> list[dict[str, Any]]:
        number, ahead = self.store.queue(str(visit["visit_id"]))
        ext = [
            {"url": EXT["queue"], "valueInteger": number},
            {"url": EXT["ahead"], "valueInteger": ahead},
        ]
        if visit["fee"]:
            ext.append({"url": EXT["fee"], "valueMoney": money(visit["fee"])})
        return ext

    def encounter(self, visit: Row) -> dict[str, Any]:
        """Encounter (class AMB) of a registration."""
        out: dict[str, Any] = {
            "resourceType": "Encounter",
            "id": visit["visit_id"],
            "extension": self._queue_ext(visit),
            "identifier": [{"system": SYSTEMS["request"], "value": visit["request_id"]}],
            "status": "planned",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "serviceType": {
                "coding": [{"system": SYSTEMS["department"], "code": visit["department"]}]
            },
            "subject": {"reference": f"Patient/{visit['patient_id']}"},
            "period": {"start": when(visit["slot_start"]), "end": when(visit["slot_end"])},
        }
        if visit["doctor"]:
            out["participant"] = [
                {
                    "individual": {
                        "identifier": {"system": SYSTEMS["practitioner"], "value": visit["doctor"]}
                    }
                }
            ]
        return out

    def appointment(self, visit: Row) -> dict[str, Any]:
        """Appointment of a booking."""
        participants: list[dict[str, Any]] = [
            {"actor": {"reference": f"Patient/{visit['patient_id']}"}, "status": "accepted"}
        ]
        if visit["doctor"]:
            participants.append(
                {
                    "actor": {
                        "identifier": {"system": SYSTEMS["practitioner"], "value": visit["doctor"]}
                    },
                    "status": "accepted",
                }
            )
        return {
            "resourceType": "Appointment",
            "id": visit["visit_id"],
            "extension": self._queue_ext(visit),
            "identifier": [{"system": SYSTEMS["request"], "value": visit["request_id"]}],
            "status": "booked",
            "serviceType": [
                {"coding": [{"system": SYSTEMS["department"], "code": visit["department"]}]}
            ],
            "start": when(visit["slot_start"]),
            "end": when(visit["slot_end"]),
            "participant": participants,
        }

    def stay(self, row: Row) -> dict[str, Any]:
        """Encounter (class IMP) of an admission."""
        period = {"start": when(row["admitted_at"])}
        if row["discharged_at"]:
            period["end"] = when(row["discharged_at"])
        return {
            "resourceType": "Encounter",
            "id": row["admission_id"],
            "extension": [{"url": EXT["deposits"], "valueMoney": money(row["deposits"])}],
            "identifier": [{"system": SYSTEMS["request"], "value": row["request_id"]}],
            "status": "finished" if row["discharged_at"] else "in-progress",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
            "serviceType": {
                "coding": [{"system": SYSTEMS["department"], "code": row["department"]}]
            },
            "subject": {"reference": f"Patient/{row['patient_id']}"},
            "period": period,
            "location": [
                {"location": {"identifier": {"system": SYSTEMS["ward"], "value": row["ward"]}}},
                {"location": {"identifier": {"system": SYSTEMS["bed"], "value": row["bed"]}}},
            ],
        }

    @staticmethod
    def service_request(o: Row, specimens: list[Row] | None = None) -> dict[str, Any]:
        """ServiceRequest (lab, exam, treatment, nursing, specimen …).

        ``category``: the kind, and the ward's order type when the HIS gives one;
        ``occurrencePeriod`` the window to carry it out, else ``occurrenceDateTime``;
        ``specimen`` the specimens collected for it.
        """
        occurrence: dict[str, Any] = {}
        if o["window_start"] and o["window_end"]:
            occurrence["occurrencePeriod"] = {
                "start": when(o["window_start"]),
                "end": when(o["window_end"]),
            }
        elif o["scheduled_at"]:
            occurrence["occurrenceDateTime"] = when(o["scheduled_at"])
        return {
            "resourceType": "ServiceRequest",
            "id": o["order_id"],
            "status": ORDER_STATUS[o["status"]],
            "intent": "order",
            "category": [
                {"coding": [{"system": "urn:hcm:order-kind", "code": o["kind"]}]},
                *_order_type(o),
            ],
            "code": {
                "coding": [{"system": SYSTEMS["item"], "code": o["code"], "display": o["name"]}]
            },
            "subject": {"reference": f"Patient/{o['patient_id']}"},
            "encounter": {"reference": f"Encounter/{o['visit_id']}"},
            **occurrence,
            **_requester(o),
            **(
                {"specimen": [{"reference": f"Specimen/{x['specimen_id']}"} for x in specimens]}
                if specimens
                else {}
            ),
        }

    def specimen(self, x: Row) -> dict[str, Any]:
        """Specimen: what was collected for a specimen order, by whom and when."""
        order = self.store.order(str(x["order_id"]))
        system, _, value = str(x["client_key"]).rpartition("|")
        return {
            "resourceType": "Specimen",
            "id": x["specimen_id"],
            "identifier": [{"system": system, "value": value}],
            "status": "available",
            "subject": {"reference": f"Patient/{order['patient_id']}"},
            "request": [{"reference": f"ServiceRequest/{x['order_id']}"}],
            "collection": {
                "collector": {
                    "identifier": {"system": SYSTEMS["practitioner"], "value": x["collected_by"]}
                },
                "collectedDateTime": when(x["collected_at"]),
            },
        }

    @staticmethod
    def medication_request(o: Row) -> dict[str, Any]:
        """MedicationRequest (a drug order).

        ``category`` the ward's order type when the HIS gives one;
        ``dosageInstruction[0].timing.repeat.boundsPeriod`` the window to give it in.
        """
        dosage: dict[str, Any] = {}
        if o["dose"]:
            dosage["text"] = o["dose"]
        if o["route"]:
            dosage["route"] = {"text": o["route"]}
        timing: dict[str, Any] = {}
        if o["frequency"]:
            timing["code"] = {"text": o["frequency"]}
        if o["window_start"] and o["window_end"]:
            timing["repeat"] = {
                "boundsPeriod": {"start": when(o["window_start"]), "end": when(o["window_end"])}
            }
        if timing:
            dosage["timing"] = timing
        if o["concentration"]:
            dosage["extension"] = [{"url": EXT["concentration"], "valueString": o["concentration"]}]
        category = _order_type(o)
        return {
            "resourceType": "MedicationRequest",
            "id": o["order_id"],
            "status": ORDER_STATUS[o["status"]],
            "intent": "order",
            **({"category": category} if category else {}),
            "medicationCodeableConcept": {
                "coding": [{"system": SYSTEMS["item"], "code": o["code"], "display": o["name"]}]
            },
            "subject": {"reference": f"Patient/{o['patient_id']}"},
            "encounter": {"reference": f"Encounter/{o['visit_id']}"},
            **({"authoredOn": when(o["scheduled_at"])} if o["scheduled_at"] else {}),
            **({"dosageInstruction": [dosage]} if dosage else {}),
            **_requester(o),
        }

    @staticmethod
    def charge_item(c: Row) -> dict[str, Any]:
        """ChargeItem: billable until paid, then billed."""
        ext: list[dict[str, Any]] = [
            {"url": EXT["unit_price"], "valueMoney": money(c["unit_price"])}
        ]
        if c["category"]:
            ext.append({"url": EXT["category"], "valueCode": c["category"]})
        if c["paid_by"]:
            ext.append({"url": EXT["paid_by"], "valueString": c["paid_by"]})
        return {
            "resourceType": "ChargeItem",
            "id": c["charge_id"],
            "extension": ext,
            "status": "billed" if c["paid_by"] else "billable",
            "code": {
                "coding": [
                    {"system": SYSTEMS["item"], "code": c["item_code"], "display": c["item_name"]}
                ]
            },
            "subject": {"reference": f"Patient/{c['patient_id']}"},
            "context": {"reference": f"Encounter/{c['visit_id']}"},
            "quantity": {"value": float(Decimal(c["quantity"]))},
            "priceOverride": money(c["amount"]),
        }

    @staticmethod
    def diagnostic_report(r: Row) -> dict[str, Any]:
        """DiagnosticReport."""
        out: dict[str, Any] = {
            "resourceType": "DiagnosticReport",
            "id": r["report_id"],
            "status": REPORT_STATUS[r["status"]],
            "category": [{"coding": [{"system": "urn:hcm:report-kind", "code": r["kind"]}]}],
            "code": {"text": r["title"]},
            "subject": {"reference": f"Patient/{r['patient_id']}"},
            "encounter": {"reference": f"Encounter/{r['visit_id']}"},
        }
        if r["issued_at"]:
            out["issued"] = when(r["issued_at"])
        if r["summary"]:
            out["conclusion"] = r["summary"]
        return out

    # -- writes ------------------------------------------------------------------------------

    def create_patient(
        self, resource: dict[str, Any], headers: Message
    ) -> tuple[int, dict[str, Any]]:
        """Conditional create of a Patient by its resident identifier."""
        resident_id = _ident(resource, SYSTEMS["resident"])
        if not resident_id:
            raise HisFaultError(
                "required-field-missing", f"Patient needs an identifier of {SYSTEMS['resident']}"
            )
        condition = headers.get("If-None-Exist") or ""
        if condition and condition != f"identifier={SYSTEMS['resident']}|{resident_id}":
            raise HisFaultError(
                "not-supported", "If-None-Exist must name the resident identifier", status=400
            )
        names = resource.get("name") or [{}]
        birth = resource.get("birthDate")
        row, created = self.store.register_patient(
            resident_id=resident_id,
            name=str(names[0].get("text") or "".join(names[0].get("family", ""))),
            sex=SEX.get(resource.get("gender", "unknown"), "U"),
            birth_date=birth,
            id_number=_ident(resource, SYSTEMS["id_number"]),
        )
        return (201 if created else 200), self.patient(row)

    def create_visit(self, resource: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """A registration (Encounter AMB), an appointment, or an admission (Encounter IMP)."""
        request_id = _ident(resource, SYSTEMS["request"])
        if not request_id:
            raise HisFaultError(
                "required-field-missing",
                f"the request identifier ({SYSTEMS['request']}) is missing",
            )
        kind = resource["resourceType"]
        if kind == "Encounter" and resource.get("class", {}).get("code") == "IMP":
            return self._admit(resource, request_id)
        existing = self.store.visit_by_request(request_id)
        fee_ext = _ext(resource, EXT["fee"])
        fee = (
            Decimal(str(fee_ext["valueMoney"]["value"])).quantize(Decimal("0.01"))
            if fee_ext
            else None
        )
        if kind == "Appointment":
            patient = next(
                (
                    p["actor"]["reference"]
                    for p in resource.get("participant", [])
                    if "reference" in p.get("actor", {})
                ),
                "",
            )
            doctor = next(
                (
                    p["actor"]["identifier"]["value"]
                    for p in resource.get("participant", [])
                    if "identifier" in p.get("actor", {})
                ),
                None,
            )
            department = resource.get("serviceType", [{}])[0].get("coding", [{}])[0].get("code", "")
            start, end = resource.get("start"), resource.get("end")
        else:
            patient = resource.get("subject", {}).get("reference", "")
            doctor = next(
                (
                    p["individual"]["identifier"]["value"]
                    for p in resource.get("participant", [])
                    if "individual" in p
                ),
                None,
            )
            department = resource.get("serviceType", {}).get("coding", [{}])[0].get("code", "")
            start, end = (
                resource.get("period", {}).get("start"),
                resource.get("period", {}).get("end"),
            )
        visit = self.store.register_visit(
            patient_id=patient.removeprefix("Patient/"),
            request_id=request_id,
            department=department,
            doctor=doctor,
            slot_start=local(start),
            slot_end=local(end),
            fee=fee,
            kind="appointment" if kind == "Appointment" else "registration",
        )
        body = self.appointment(visit) if kind == "Appointment" else self.encounter(visit)
        return (200 if existing else 201), body

    def _admit(self, resource: dict[str, Any], request_id: str) -> tuple[int, dict[str, Any]]:
        existing = self.store.admission_by_request(request_id)
        places = {}
        for loc in resource.get("location", []):
            ident = loc.get("location", {}).get("identifier", {})
            places[ident.get("system")] = ident.get("value", "")
        stay = self.store.admit(
            patient_id=resource.get("subject", {}).get("reference", "").removeprefix("Patient/"),
            request_id=request_id,
            department=resource.get("serviceType", {}).get("coding", [{}])[0].get("code", ""),
            ward=places.get(SYSTEMS["ward"], ""),
            bed=places.get(SYSTEMS["bed"], ""),
            admitted_at=local(resource.get("period", {}).get("start")),
        )
        return (200 if existing else 201), self.stay(stay)

    def update_encounter(self, ident: str, resource: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """PUT of a stay's Encounter: only ``status = finished`` (discharge) is acted on."""
        if resource.get("id") != ident:
            raise HisFaultError(
                "invalid-resource", "the resource's id differs from the URL's", status=400
            )
        if resource.get("status") != "finished":
            raise HisFaultError(
                "not-supported", "only a discharge (status finished) is accepted", status=422
            )
        stay = self.store.discharge(ident, local(resource.get("period", {}).get("end")))
        return 200, self.stay(stay)

    @staticmethod
    def _params(resource: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        if resource.get("resourceType") != "Parameters":
            raise HisFaultError(
                "invalid-resource", "an operation takes a Parameters resource", status=400
            )
        out: dict[str, list[dict[str, Any]]] = {}
        for p in resource.get("parameter", []):
            out.setdefault(p["name"], []).append(p)
        return out

    def pay(self, resource: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """``ChargeItem/$pay``: mark charges paid by one transaction."""
        params = self._params(resource)
        refs = [
            p["valueReference"]["reference"].removeprefix("ChargeItem/")
            for p in params.get("chargeItem", [])
        ]
        transaction = params.get("transaction", [{}])[0].get("valueString", "")
        patient = params.get("patient", [{}])[0].get("valueReference", {}).get("reference", "")
        self.store.pay_charges(patient.removeprefix("Patient/"), refs, transaction)
        return 200, bundle([self.charge_item(self.store.charge(r)) for r in refs])

    def deposit(self, ident: str, resource: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """``Encounter/{id}/$deposit``: record a deposit on a stay."""
        params = self._params(resource)

        def value(name: str, kind: str) -> Any:
            found = params.get(name)
            if not found or kind not in found[0]:
                raise HisFaultError("required-field-missing", f"$deposit needs {name}", status=400)
            return found[0][kind]

        stay = self.store.record_deposit(
            admission_id=ident,
            deposit_id=value("deposit", "valueString"),
            transaction_id=value("transaction", "valueString"),
            amount=Decimal(str(value("amount", "valueMoney")["value"])).quantize(Decimal("0.01")),
            paid_at=local(value("paid", "valueDateTime")),
        )
        return 200, self.stay(stay)

    def administration(self, resource: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """A completed MedicationAdministration of an order: a drug given at the bedside."""
        request = resource.get("request", {}).get("identifier", {})
        if request.get("system") != SYSTEMS["order"] or resource.get("status") != "completed":
            raise HisFaultError(
                "not-supported",
                "a MedicationAdministration must be completed and name its order",
                status=422,
            )
        order = self.store.order(request["value"])
        codes = resource.get("medicationCodeableConcept", {}).get("coding") or [{}]
        given = codes[0].get("code")
        if given != order["code"]:
            raise HisFaultError(
                "wrong-drug", f"order {order['order_id']} is for {order['code']}, not {given}"
            )
        performers = resource.get("performer") or [{}]
        nurse = performers[0].get("actor", {}).get("identifier", {}).get("value", "?")
        period = resource.get("effectivePeriod", {})
        at = local(period.get("end") or period.get("start"))
        known = self.store.executions(order["order_id"])
        self.store.order_executed(order["order_id"], at, nurse)
        created = at.isoformat() not in {e["executed_at"] for e in known}
        return (201 if created else 200), {
            **resource,
            "id": f"{order['order_id']}-{at:%Y%m%d%H%M%S}",
        }

    def create_specimen(
        self, resource: dict[str, Any], headers: Message
    ) -> tuple[int, dict[str, Any]]:
        """Conditional create of a Specimen collected for an order, by its identifier.

        ``request`` names the order's ServiceRequest (a reference, or the order
        identifier); ``collection`` says who collected it and when; a ``subject`` must be
        the order's patient.
        """
        identifiers = resource.get("identifier") or [{}]
        system, value = identifiers[0].get("system"), identifiers[0].get("value")
        if not system or not value:
            raise HisFaultError(
                "required-field-missing", "a Specimen needs an identifier (system and value)"
            )
        condition = headers.get("If-None-Exist") or ""
        if condition and condition != f"identifier={system}|{value}":
            raise HisFaultError(
                "not-supported", "If-None-Exist must name the Specimen's identifier", status=400
            )
        orders = []
        for ref in resource.get("request") or []:
            if str(ref.get("reference", "")).startswith("ServiceRequest/"):
                orders.append(str(ref["reference"]).removeprefix("ServiceRequest/"))
            elif (ref.get("identifier") or {}).get("system") == SYSTEMS["order"]:
                orders.append(str(ref["identifier"].get("value", "")))
        if len(orders) != 1:
            raise HisFaultError(
                "required-field-missing", "a Specimen names one order in request", status=422
            )
        order = self.store.order(orders[0])
        subject = (resource.get("subject") or {}).get("reference")
        if subject is not None and subject != f"Patient/{order['patient_id']}":
            raise HisFaultError(
                "wrong-patient", f"order {order['order_id']} is not {subject}'s", status=422
            )
        collection = resource.get("collection") or {}
        collector = (collection.get("collector") or {}).get("identifier", {}).get("value")
        if not collector:
            raise HisFaultError(
                "required-field-missing", "collection.collector names who collected it"
            )
        row, created = self.store.record_specimen(
            order["order_id"],
            f"{system}|{value}",
            local(collection.get("collectedDateTime")),
            str(collector),
        )
        return (201 if created else 200), self.specimen(row)

    def task(self, resource: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """A completed Task whose focus is an order: a bedside execution.

        An ``output`` referring to a Specimen (what the execution collected) must be a
        specimen of that order.
        """
        focus = resource.get("focus", {}).get("identifier", {})
        if focus.get("system") != SYSTEMS["order"] or resource.get("status") != "completed":
            raise HisFaultError(
                "not-supported", "a Task must be completed and focus on an order", status=422
            )
        for output in resource.get("output") or []:
            ref = str((output.get("valueReference") or {}).get("reference", ""))
            if ref.startswith("Specimen/"):
                found = self.store.specimen(ref.removeprefix("Specimen/"))
                if found["order_id"] != focus.get("value"):
                    raise HisFaultError(
                        "invalid-resource",
                        f"{ref} was collected for another order than {focus.get('value')}",
                        status=422,
                    )
        owner = resource.get("owner", {}).get("identifier", {}).get("value", "?")
        at = local(resource.get("executionPeriod", {}).get("start"))
        known = self.store.executions(focus["value"])
        self.store.order_executed(focus["value"], at, owner)
        created = at.isoformat() not in {e["executed_at"] for e in known}
        return (201 if created else 200), {**resource, "id": f"{focus['value']}-{at:%Y%m%d%H%M%S}"}

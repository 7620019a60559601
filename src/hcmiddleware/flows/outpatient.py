"""The outpatient journey (R-HIS-1), as steps the HIS's screens call one at a time.

The kiosk and the registration desk call the first steps, the doctor's desk the
middle ones, the cashier ``settle``; each screen builds its own
:class:`OutpatientFlow` and passes on what the earlier step returned::

    flow = OutpatientFlow(mw.acting_as(kiosk))  # the caller: Caller(user, role, terminal)
    who = flow.identify()                       # card → resident in the index
    patient = flow.patient(who)                 # hospital patient ID (index, else HIS)
    flow.check_face(who, live_jpeg)             # optional, at kiosks (reads the photo)
    reg = flow.register(patient, department_code="NEI", slot_start=nine_o_clock)
    pos = flow.queue(reg)

    desk = flow.desk(who, patient, reg)         # the card's visits (read now) + orders
    paid = flow.settle(patient, flow.charges(patient, reg), pay=journal_payment)
    flow.reports(patient, reg)
    flow.write_summary(who, summary)            # tear-safe write to the card

Made with a session (above, or ``session.flows.outpatient()``), each step runs as the
session's caller: refused before it starts unless the role grants what it uses, its
answers cut to what the role may see (``docs/access.md``). ``OutpatientFlow(mw,
actor="kiosk-03")`` is the embedding process's own, trusted journey.

The flow calls hooks and runtime services only; every HIS, bank and insurer lives in
a plugin. Every step is audited; every failure is a typed error (the adapter's own
``HisError`` / ``PluginError``, carrying its name, or a :class:`FlowError`) and leaves
nothing half-done that a retry would duplicate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from hcmiddleware.card.filemap import CardPart
from hcmiddleware.errors import (
    FaceMismatchError,
    FlowInputError,
    HcmError,
    PaymentNotRecordedError,
)
from hcmiddleware.flows.journey import Identified, Journey, Pay, audited_together, request_key
from hcmiddleware.models import (
    MAX_SLOT,
    Charge,
    HospitalPatient,
    Order,
    QueuePosition,
    Registration,
    RegistrationRequest,
    Report,
)

if TYPE_CHECKING:
    from hcmiddleware.card.data import VisitRecord
    from hcmiddleware.card.transport import Transport
    from hcmiddleware.face.verify import FaceVerification

__all__ = ["MAX_SLOT", "DeskView", "OutpatientFlow", "Settled"]


@dataclass(frozen=True)
class DeskView:
    """What the doctor's desk shows: the card's previous visits and this visit's orders."""

    previous_visits: list[VisitRecord]
    orders: list[Order]


@dataclass(frozen=True)
class Settled:
    """The outcome of :meth:`OutpatientFlow.settle`."""

    transaction_id: str | None
    charge_ids: list[str]
    amount: Decimal


class OutpatientFlow(Journey):
    """The outpatient journey's steps; see the module docstring for the order."""

    name = "outpatient"

    def check_face(
        self,
        who: Identified,
        live: bytes,
        *,
        context: str | None = None,
        transport: Transport | None = None,
    ) -> FaceVerification:
        """Is the person at the kiosk the cardholder? Stops ticket touts (R-FACE-1).

        The card's photo is read from the card in the reader (``transport``) unless
        the identifying read took it.

        :raises FaceMismatchError: the check did not pass (the verdict says why).
        :raises FlowInputError: there is no card photo to compare with.
        """
        rid = who.resident.resident_id
        self._require("check_face", "faces.verify_card", subject=rid)
        if who.card is None:
            raise FlowInputError(
                "the face check needs the card's photo; the patient was identified without a card",
                step="check_face",
                hint="read the health card, or skip the face check for e-card visits",
            )
        card = self.card_with(who, CardPart.PHOTO, transport=transport, step="check_face")
        try:
            result = self.services.faces.verify_card(
                live, card, resident_id=rid, context=context or self.actor
            )
        except BaseException as exc:
            self._failed("check_face", rid, exc)
            raise
        if not result.matched:
            # verify_card has audited the refusal itself
            raise FaceMismatchError(
                f"the face check did not pass ({result.status})",
                step="check_face",
                status=str(result.status),
            )
        return result

    def register(
        self,
        patient: HospitalPatient,
        *,
        department_code: str,
        slot_start: datetime,
        slot_end: datetime | None = None,
        doctor_code: str | None = None,
        fee: Decimal | str | None = None,
        kind: str = "registration",
        request_id: str | None = None,
    ) -> Registration:
        """Register the visit (挂号) or book an appointment; once per request.

        ``slot_end`` defaults to half an hour after ``slot_start``; a slot lasts at most
        an hour. ``request_id`` is the idempotency key; by default it is derived from the
        patient, department, doctor, kind and slot, so a retried step — or the whole
        flow retried after a crash — registers once: the HIS answers the first
        registration again.

        :raises FlowInputError: the slot is empty, reversed or longer than an hour.
        """
        end = slot_end if slot_end is not None else slot_start + timedelta(minutes=30)
        if end <= slot_start or end - slot_start > MAX_SLOT:
            raise FlowInputError(
                f"a slot must end after it starts and last at most an hour "
                f"({slot_start:%H:%M}–{end:%H:%M} given)",
                step="register",
                hint="choose a slot of one hour or less",
            )
        if kind not in {"registration", "appointment"}:
            raise FlowInputError(
                f"kind must be 'registration' or 'appointment', not {kind!r}", step="register"
            )
        key = request_id or request_key(
            self.hospital_code,
            patient.patient_id,
            kind,
            department_code,
            doctor_code,
            slot_start.isoformat(),
        )
        try:
            request = RegistrationRequest(
                kind=kind,
                department_code=department_code,
                doctor_code=doctor_code,
                slot_start=slot_start,
                slot_end=end,
                fee=fee,
                request_id=key,
            )
        except ValueError as exc:
            raise FlowInputError(f"the registration is not valid: {exc}", step="register") from None
        self._require("register", "his.register_visit", subject=patient.resident_id)
        registration = self._step(
            "register",
            patient.resident_id,
            lambda: self.services.his.register_visit(patient, request),
        )
        self._audit(
            "register",
            patient.resident_id,
            registration=registration.registration_id,
            department=department_code,
        )
        return registration

    def queue(self, registration: Registration) -> QueuePosition:
        """Where the patient stands in the department's queue."""
        self._require("queue", "his.queue_position")
        position = self._step("queue", None, lambda: self.services.his.queue_position(registration))
        self._audit(
            "queue",
            None,
            registration=registration.registration_id,
            queue_number=str(position.queue_number),
        )
        return position

    @audited_together
    def desk(
        self,
        who: Identified,
        patient: HospitalPatient,
        registration: Registration | str,
        transport: Transport | None = None,
    ) -> DeskView:
        """The doctor's desk: the previous visits on the card and the visit's orders.

        The visits are read from the card in the desk's reader (``transport``) unless
        the identifying read took them.
        """
        visit_id = _visit_id(registration)
        self._require("desk", "his.orders", subject=patient.resident_id)
        orders = self._step(
            "desk", patient.resident_id, lambda: self.services.his.orders(patient, visit_id)
        )
        visits = self.previous_visits(who, transport)
        self._audit("desk", patient.resident_id, visit=visit_id, previous=str(len(visits)))
        return DeskView(previous_visits=visits, orders=list(orders))

    def charges(self, patient: HospitalPatient, registration: Registration | str) -> list[Charge]:
        """The visit's charges, paid and unpaid."""
        visit_id = _visit_id(registration)
        self._require("charges", "his.charges", subject=patient.resident_id)
        charges = self._step(
            "charges", patient.resident_id, lambda: self.services.his.charges(patient, visit_id)
        )
        self._audit("charges", patient.resident_id, visit=visit_id, count=str(len(charges)))
        return list(charges)

    def settle(self, patient: HospitalPatient, charges: list[Charge], *, pay: Pay) -> Settled:
        """Pay the unpaid ``charges`` through ``pay`` and mark them paid in the HIS.

        ``pay(amount, charges)`` moves the money and returns the confirmed transaction
        ID (the journal's payment flow plugs in here); if it raises, nothing is marked
        and the error reaches the caller. When the money moved but the HIS does not
        record it, :class:`PaymentNotRecordedError` carries the transaction ID: call
        :meth:`mark_paid` with it — never ``pay`` again.
        """
        # refused before any money moves, never between the payment and its record
        self._require("settle", "his.charges_paid", subject=patient.resident_id)
        unpaid = [c for c in charges if not c.paid]
        if any(c.patient_id != patient.patient_id for c in unpaid):
            raise FlowInputError("a charge belongs to another patient", step="settle")
        if not unpaid:
            self._audit("settle", patient.resident_id, amount="0.00")
            return Settled(transaction_id=None, charge_ids=[], amount=Decimal("0.00"))
        amount = sum((c.amount for c in unpaid), Decimal("0.00"))
        try:
            transaction_id = pay(amount, unpaid)
        except BaseException as exc:
            self._failed("settle", patient.resident_id, exc)
            raise
        if not transaction_id:
            raise FlowInputError(
                "the payment returned no transaction ID",
                step="settle",
                hint="the payment callable must return the confirmed transaction ID or raise",
            )
        ids = [c.charge_id for c in unpaid]
        self.mark_paid(patient, ids, transaction_id)
        return Settled(transaction_id=transaction_id, charge_ids=ids, amount=amount)

    def mark_paid(
        self, patient: HospitalPatient, charge_ids: list[str], transaction_id: str
    ) -> None:
        """Tell the HIS the charges are paid by ``transaction_id`` (idempotent per ID).

        :raises PaymentNotRecordedError: the HIS did not record it; the money has moved.
        """
        self._require("settle", "his.charges_paid", subject=patient.resident_id)
        try:
            self._step(
                "settle",
                patient.resident_id,
                lambda: self.services.his.charges_paid(patient, charge_ids, transaction_id),
            )
        except HcmError as exc:
            raise PaymentNotRecordedError(
                f"payment {transaction_id} was confirmed but the hospital system did not "
                f"record it: {exc.message}",
                step="settle",
                transaction_id=transaction_id,
                plugin=str(getattr(exc, "plugin", "")),
            ) from exc
        self._audit(
            "settle", patient.resident_id, transaction=transaction_id, charges=str(len(charge_ids))
        )

    def reports(self, patient: HospitalPatient, registration: Registration | str) -> list[Report]:
        """The visit's lab and exam reports (pending ones included)."""
        visit_id = _visit_id(registration)
        self._require("reports", "his.reports", subject=patient.resident_id)
        reports = self._step(
            "reports", patient.resident_id, lambda: self.services.his.reports(patient, visit_id)
        )
        self._audit("reports", patient.resident_id, visit=visit_id, count=str(len(reports)))
        return list(reports)


def _visit_id(registration: Registration | str) -> str:
    return registration if isinstance(registration, str) else registration.registration_id

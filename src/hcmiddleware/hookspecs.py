"""Every hook of hcmiddleware: the whole surface an adapter or a plugin can implement.

How to read a spec:

* **Who calls** it and **when**: the part of the core (or the flow) that calls it.
* **Parameters**: implement only the ones you need — pluggy passes arguments by name,
  so ``def hcm_card_removed(self, reader)`` is a valid implementation.
* **Returns**: ``firstresult`` hooks stop at the first plugin that returns something
  other than ``None`` ("first non-None result wins"): they answer "who handles this".
  Other hooks collect every plugin's non-``None`` result into a list, or are
  notifications whose results are ignored.

Failures are contained by the runtime (see ``hcmiddleware.dispatch``): an exception or
a timeout in a ``firstresult`` hook stops the operation with a
:class:`~hcmiddleware.errors.PluginCallError` naming the plugin; in a notification or
collecting hook it is logged, counted against the plugin (``hcm doctor`` shows it) and
the other plugins still run.

Money hooks receive the journal's ``transaction_id``; an adapter must treat a repeated
call with the same ID as the same request (idempotency), never as a new one.

Signatures may grow new parameters in later versions; an implementation that names
only what it uses keeps working.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from hcmiddleware.models import (
        Admission,
        AdmissionRequest,
        AuditEvent,
        BankBinding,
        Bill,
        BlacklistEntry,
        Charge,
        CheckResult,
        Deposit,
        Discharge,
        EmergencyCall,
        HospitalPatient,
        LivenessResult,
        LocationReport,
        Order,
        OrderExecution,
        PaymentRequest,
        PaymentResult,
        QueuePosition,
        Registration,
        RegistrationRequest,
        Report,
        Resident,
        Settlement,
        SettlementRequest,
        Statement,
        WristbandBinding,
    )
    from hcmiddleware.registry import SettingsRegistry
    from hcmiddleware.runtime import Middleware

PROJECT = "hcmiddleware"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# =====================================================================================
# Setup
# =====================================================================================


@hookspec(historic=True)
def hcm_add_config(settings: SettingsRegistry) -> None:
    """Declare the plugin's settings model for its ``[plugins.<name>]`` section.

    Called by the runtime once per plugin, right after the plugin is registered and
    before any other hook, also for plugins registered later (historic).

    :param settings: call ``settings.add("<your plugin name>", YourSettings)`` where
        ``YourSettings`` subclasses :class:`hcmiddleware.config.SettingsModel`. The
        runtime validates the section against it and hands the validated object back
        through ``middleware.plugin_settings("<name>")``.
    :return: nothing.
    """


@hookspec(historic=True)
def hcm_configure(middleware: Middleware) -> None:
    """Set the plugin up: open connections, read its settings, start threads.

    Called by the runtime once per plugin after every enabled plugin is registered and
    its settings are validated (historic: also for plugins registered later).

    :param middleware: the running :class:`~hcmiddleware.runtime.Middleware`; the
        plugin's settings are ``middleware.plugin_settings(name)``.
    :return: nothing. Raising stops start-up with a PluginCallError naming the plugin.
    """


@hookspec
def hcm_unconfigure(middleware: Middleware) -> None:
    """Release what ``hcm_configure`` opened.

    Called by the runtime once when it closes, and when start-up failed after
    ``hcm_configure`` began (so release only what you actually opened). Failures are
    logged and do not stop the others.

    :param middleware: the closing Middleware.
    :return: nothing.
    """


@hookspec
def hcm_doctor_checks(middleware: Middleware) -> list[CheckResult]:
    """Check that what the plugin depends on works (``hcm doctor``).

    Called by ``hcm doctor`` and ``Middleware.doctor()`` for every enabled plugin.

    :param middleware: the running Middleware.
    :return: a list of :class:`~hcmiddleware.models.CheckResult`, one per thing checked
        (connection to the HIS, certificate validity …); results of all plugins are
        collected.
    """


@hookspec
def hcm_plugin_failed(plugin: str, hook: str, error: str) -> None:
    """Be told that a plugin failed in a contained call.

    Called by the runtime when a notification or collecting hook of another plugin
    raised or timed out. Use it to alert operations staff. Failures of this hook itself
    are only logged.

    :param plugin: name of the failing plugin.
    :param hook: the hook it failed in.
    :param error: the error's type and message (no traceback, no personal data).
    :return: nothing.
    """


# =====================================================================================
# Card (R-CARD)
# =====================================================================================


@hookspec
def hcm_card_inserted(reader: str, atr: bytes) -> None:
    """A card was inserted into a reader.

    Called by the card monitor (``hcmiddleware.card.monitor``) when PC/SC reports a
    new card. Notification; results are ignored.

    :param reader: the PC/SC reader name, e.g. ``"Virtual PCD 00 00"``.
    :param atr: the card's answer-to-reset.
    :return: nothing.
    """


@hookspec
def hcm_card_removed(reader: str) -> None:
    """A card was removed from a reader.

    Called by the card monitor when PC/SC reports the card gone. Notification.

    :param reader: the PC/SC reader name.
    :return: nothing.
    """


@hookspec
def hcm_card_read(reader: str, card: Any) -> None:
    """A health card was read and authenticated.

    Called by the runtime after a successful read, before any flow uses the data.
    Notification (e.g. a kiosk plugin shows the name).

    :param reader: the reader the card was read in.
    :param card: the :class:`hcmiddleware.card.data.CardRead` with everything read.
    :return: nothing.
    """


@hookspec
def hcm_card_blacklist_updates(since: date | None) -> list[BlacklistEntry]:
    """Fetch blacklist entries (lost / cancelled cards) from an issuer or a bank.

    Called by the blacklist sync (``hcm`` scheduler or ``Middleware.sync_blacklist()``)
    periodically; the result is stored locally so that cards are refused offline.

    :param since: the date of the last successful sync, or ``None`` for a full list.
    :return: a list of :class:`~hcmiddleware.models.BlacklistEntry`; lists of all
        plugins are merged.
    """


# =====================================================================================
# SAM (R-SAM)
# =====================================================================================


@hookspec(firstresult=True)
def hcm_sam_provider(middleware: Middleware) -> Any:
    """Provide the SAM the terminal authenticates cards with.

    Called by the runtime once, when the first card is read. The built-in providers
    (software SAM from a key set, PC/SC SAM in the second slot) are ``trylast``, so a
    site plugin (e.g. a network HSM) wins. First non-None result wins.

    :param middleware: the running Middleware (for settings and reader names).
    :return: an object implementing ``hcmiddleware.sam.base.Sam``, or ``None`` to let
        another plugin provide it.
    """


# =====================================================================================
# Resident index (R-EMPI)
# =====================================================================================


@hookspec
def hcm_empi_resident_enrolled(resident: Resident) -> None:
    """A new resident was enrolled in the index.

    Called by the resident index after the enrolment committed. Notification (e.g. a
    regional-index adapter forwards it).

    :param resident: the enrolled :class:`~hcmiddleware.models.Resident`.
    :return: nothing.
    """


@hookspec
def hcm_empi_residents_merged(survivor: Resident, merged: Resident, reason: str) -> None:
    """Two records of one person were merged.

    Called by the resident index after a merge committed. Notification: a HIS adapter
    sends its merge message (e.g. HL7 ADT^A40).

    :param survivor: the record that remains.
    :param merged: the record folded into it (now inactive).
    :param reason: why, as entered by the operator.
    :return: nothing.
    """


@hookspec
def hcm_empi_resident_unmerged(survivor: Resident, restored: Resident, reason: str) -> None:
    """A merge was undone.

    Called by the resident index after an unmerge committed. Notification.

    :param survivor: the record the other had been merged into.
    :param restored: the record made active again.
    :param reason: why, as entered by the operator.
    :return: nothing.
    """


@hookspec
def hcm_empi_remote_lookup(kind: str, value: str) -> list[Resident]:
    """Look a resident up in a regional or national index.

    Called by the resident index when a local exact lookup finds nothing and remote
    lookup is enabled. Results of all plugins are collected.

    :param kind: an :class:`~hcmiddleware.models.IdentifierKind` value.
    :param value: the identifier's value.
    :return: a list of residents found (empty when none).
    """


# =====================================================================================
# Face (R-FACE)
# =====================================================================================


@hookspec(firstresult=True)
def hcm_face_backend(name: str) -> Any:
    """Provide a face backend (detect, encode, compare).

    Called by the face service at start with the backend name from config. The
    built-in ``face_recognition`` backend is ``trylast``. First non-None result wins.

    :param name: the backend name configured, e.g. ``"face_recognition"``.
    :return: an object implementing ``hcmiddleware.face.backend.FaceBackend`` if this
        plugin provides ``name``, else ``None``.
    """


@hookspec(firstresult=True)
def hcm_face_liveness(image: bytes, context: str) -> LivenessResult | None:
    """Judge whether a live photo shows a live person (anti-spoofing).

    Called by the face service before a 1:1 verification at a kiosk. When a plugin
    answers ``live=False`` the verification is refused. First non-None result wins;
    with no liveness plugin the check is skipped and the answer says so.

    :param image: the live photo, encoded (JPEG or PNG).
    :param context: where it was taken, e.g. ``"kiosk:K07"``.
    :return: a :class:`~hcmiddleware.models.LivenessResult`, or ``None``.
    """


@hookspec
def hcm_face_verified(resident_id: str, result: Any) -> None:
    """A 1:1 face verification was made.

    Called by the face service after each verification, pass or fail. Notification
    (kiosk display, audit).

    :param resident_id: who was claimed.
    :param result: the ``hcmiddleware.face`` verification result (match, distance,
        threshold, reason).
    :return: nothing.
    """


@hookspec
def hcm_face_duplicates_found(resident_id: str, candidates: list[tuple[str, float]]) -> None:
    """A 1:N search at enrolment found faces close to the new one.

    Called by the enrolment flow when the new face matches enrolled ones. Notification
    (review queue, alert).

    :param resident_id: the resident being enrolled.
    :param candidates: ``(resident_id, distance)`` pairs under the threshold.
    :return: nothing.
    """


# =====================================================================================
# Hospital information system (R-HIS)
# =====================================================================================


@hookspec(firstresult=True)
def hcm_his_lookup_patient(resident: Resident, hospital_code: str) -> HospitalPatient | None:
    """Find the hospital's own patient record for a resident.

    Called by the outpatient and inpatient flows after the resident is known, when the
    index links no hospital patient ID (not when the one plugin implementing it also
    implements ``hcm_his_register_patient``, which then finds or creates). First
    non-None result wins.

    :param resident: the resident from the index (identifiers include any known
        hospital patient IDs).
    :param hospital_code: this hospital's code (``[middleware] institution_code``).
    :return: the :class:`~hcmiddleware.models.HospitalPatient`, or ``None`` when the
        HIS does not know the resident.
    """


@hookspec(firstresult=True)
def hcm_his_register_patient(
    resident: Resident, card: Any, hospital_code: str
) -> HospitalPatient | None:
    """Create the hospital's patient record on a first visit.

    Called by the flows when ``hcm_his_lookup_patient`` found nothing — or, when one
    plugin alone implements both hooks, instead of it: find or create. Must be
    idempotent for the same resident: calling it twice, or for a resident the HIS
    already knows, returns the same patient ID. First non-None result wins.

    :param resident: the resident from the index.
    :param card: the ``CardRead`` the visit started with, or ``None`` (e-card, manual).
    :param hospital_code: this hospital's code.
    :return: the new :class:`~hcmiddleware.models.HospitalPatient` with
        ``created=True`` (or the existing one, ``created=False``).
    """


@hookspec(firstresult=True)
def hcm_his_register_visit(
    patient: HospitalPatient, request: RegistrationRequest
) -> Registration | None:
    """Register an outpatient visit (挂号) or book an appointment.

    Called by the outpatient flow. ``request.request_id`` is an idempotency key: the
    same ID twice registers once. First non-None result wins.

    :param patient: the hospital patient.
    :param request: department, doctor, slot (at most one hour), fee.
    :return: the :class:`~hcmiddleware.models.Registration`.
    """


@hookspec(firstresult=True)
def hcm_his_queue_position(registration: Registration) -> QueuePosition | None:
    """Tell where a registered patient stands in the queue.

    Called by kiosks and the outpatient flow after registration. First non-None result
    wins.

    :param registration: the registration.
    :return: a :class:`~hcmiddleware.models.QueuePosition`.
    """


@hookspec(firstresult=True)
def hcm_his_list_orders(patient: HospitalPatient, visit_id: str) -> list[Order] | None:
    """List the doctor's orders of a visit or stay.

    Called by the doctor's desk, the cashier and nurse handhelds. First non-None result
    wins.

    :param patient: the hospital patient.
    :param visit_id: the registration or admission ID.
    :return: a list of :class:`~hcmiddleware.models.Order` (empty when none).
    """


@hookspec(firstresult=True)
def hcm_his_list_charges(patient: HospitalPatient, visit_id: str) -> list[Charge] | None:
    """List the charges of a visit or stay, paid and unpaid.

    Called by the cashier flow and kiosks. First non-None result wins.

    :param patient: the hospital patient.
    :param visit_id: the registration or admission ID.
    :return: a list of :class:`~hcmiddleware.models.Charge`.
    """


@hookspec(firstresult=True)
def hcm_his_charges_paid(
    patient: HospitalPatient, charge_ids: list[str], transaction_id: str
) -> bool | None:
    """Tell the HIS that charges were paid.

    Called by the payment flow after the journal confirmed the money movement.
    Idempotent per ``transaction_id``. First non-None result wins.

    :param patient: the hospital patient.
    :param charge_ids: the charges settled.
    :param transaction_id: the journal's transaction ID.
    :return: ``True`` when the HIS recorded it.
    """


@hookspec(firstresult=True)
def hcm_his_list_reports(patient: HospitalPatient, visit_id: str) -> list[Report] | None:
    """List lab and exam reports of a visit.

    Called by the doctor's desk and report kiosks. First non-None result wins.

    :param patient: the hospital patient.
    :param visit_id: the registration or admission ID.
    :return: a list of :class:`~hcmiddleware.models.Report`.
    """


@hookspec(firstresult=True)
def hcm_his_admit(patient: HospitalPatient, request: AdmissionRequest) -> Admission | None:
    """Admit a patient (inpatient).

    Called by the inpatient flow. Idempotent per ``request.request_id``. First non-None
    result wins.

    :param patient: the hospital patient.
    :param request: ward, bed, department, time.
    :return: the :class:`~hcmiddleware.models.Admission`.
    """


@hookspec(firstresult=True)
def hcm_his_record_deposit(admission: Admission, deposit: Deposit) -> Admission | None:
    """Record a deposit or top-up the journal has confirmed.

    Called by the inpatient flow. Idempotent per ``deposit.transaction_id``. First
    non-None result wins.

    :param admission: the stay.
    :param deposit: the confirmed deposit.
    :return: the admission with its new deposit balance.
    """


@hookspec(firstresult=True)
def hcm_his_inpatient_bill(admission: Admission) -> Bill | None:
    """Produce the current inpatient bill.

    Called by the inpatient flow, kiosks and the cashier. First non-None result wins.

    :param admission: the stay.
    :return: the :class:`~hcmiddleware.models.Bill`.
    """


@hookspec(firstresult=True)
def hcm_his_discharge(admission: Admission, bill: Bill) -> Discharge | None:
    """Discharge a patient once the bill is settled.

    Called by the inpatient flow after final settlement. First non-None result wins.

    :param admission: the stay.
    :param bill: the settled final bill.
    :return: the :class:`~hcmiddleware.models.Discharge`.
    """


@hookspec(firstresult=True)
def hcm_his_order_executed(execution: OrderExecution) -> bool | None:
    """Upload a bedside order execution to the HIS.

    Called by the ward flow after the checks passed and the order was carried out.
    Idempotent per ``(order_id, executed_at)``. First non-None result wins.

    :param execution: what was done, by whom, with each check's outcome.
    :return: ``True`` when the HIS recorded it.
    """


# =====================================================================================
# Bank (R-PAY-1) — SOAP adapters
# =====================================================================================


@hookspec(firstresult=True)
def hcm_bank_bind(card_number: str, bank_card_number: str, id_number: str) -> BankBinding | None:
    """Bind a bank card to the health card's account.

    Called by the account flow at the counter, after the identity document was
    checked. First non-None result wins.

    :param card_number: the health card number.
    :param bank_card_number: the bank card to bind.
    :param id_number: the holder's ID number, as the bank requires.
    :return: the :class:`~hcmiddleware.models.BankBinding`.
    """


@hookspec(firstresult=True)
def hcm_bank_unbind(card_number: str, id_number: str) -> bool | None:
    """Unbind the bank card from the health card's account.

    Called by the account flow at the counter. First non-None result wins.

    :param card_number: the health card number.
    :param id_number: the holder's ID number.
    :return: ``True`` when unbound.
    """


@hookspec(firstresult=True)
def hcm_bank_top_up(request: PaymentRequest) -> PaymentResult | None:
    """Top up the card's account.

    Called by the journal after the request was written (state ``pending``). A timeout
    or a dropped connection is an unknown outcome, resolved by ``hcm_bank_query``.
    Idempotent per ``request.transaction_id``. First non-None result wins.

    :param request: the journalled request (kind ``top_up``).
    :return: the bank's :class:`~hcmiddleware.models.PaymentResult`.
    """


@hookspec(firstresult=True)
def hcm_bank_pay(request: PaymentRequest) -> PaymentResult | None:
    """Pay from the card's account (consultation desk or kiosk).

    Called by the journal, as for ``hcm_bank_top_up``. First non-None result wins.

    :param request: the journalled request (kind ``pay``).
    :return: the bank's :class:`~hcmiddleware.models.PaymentResult`.
    """


@hookspec(firstresult=True)
def hcm_bank_refund(request: PaymentRequest) -> PaymentResult | None:
    """Refund to the card's account, after the identity document was checked.

    Called by the journal, as for ``hcm_bank_top_up``; ``original_transaction_id`` is
    the payment refunded. First non-None result wins.

    :param request: the journalled request (kind ``refund``).
    :return: the bank's :class:`~hcmiddleware.models.PaymentResult`.
    """


@hookspec(firstresult=True)
def hcm_bank_query(transaction_id: str) -> PaymentResult | None:
    """Ask the bank what became of a transaction whose outcome is unknown.

    Called by the journal's recovery (after a timeout, a dropped connection, or a
    restart with transactions in flight). First non-None result wins.

    :param transaction_id: the journal's transaction ID.
    :return: the :class:`~hcmiddleware.models.PaymentResult` if the bank knows it;
        ``None`` if the bank has no record (never received).
    """


@hookspec(firstresult=True)
def hcm_bank_reverse(transaction_id: str) -> bool | None:
    """Reverse (冲正) a transaction whose outcome could not be established.

    Called by the journal's recovery when a query cannot settle the outcome in time.
    Idempotent. First non-None result wins.

    :param transaction_id: the journal's transaction ID.
    :return: ``True`` when the bank confirmed the reversal.
    """


@hookspec(firstresult=True)
def hcm_bank_statement(day: date) -> Statement | None:
    """Fetch the bank's statement for one day, for reconciliation.

    Called by ``hcm journal reconcile``. First non-None result wins.

    :param day: the business day.
    :return: the bank's :class:`~hcmiddleware.models.Statement`.
    """


# =====================================================================================
# Medical insurance (R-PAY-2) — SOAP adapters
# =====================================================================================


@hookspec(firstresult=True)
def hcm_insurance_pre_settle(request: SettlementRequest) -> Settlement | None:
    """Pre-settle (预结算): ask the insurer how a bill would be split; nothing is paid.

    Called by the cashier and inpatient flows before the patient confirms. First
    non-None result wins.

    :param request: the bill, the scheme (basic / rural) and the insured person.
    :return: a :class:`~hcmiddleware.models.Settlement` with status ``pre_settled``.
    """


@hookspec(firstresult=True)
def hcm_insurance_settle(request: SettlementRequest) -> Settlement | None:
    """Settle (结算): the fund's part is paid; the bank-advanced part is returned.

    Called by the journal after the settlement was written. Idempotent per
    ``request.message_id``. First non-None result wins.

    :param request: as pre-settled, with a new message ID.
    :return: the :class:`~hcmiddleware.models.Settlement` with status ``settled``.
    """


@hookspec(firstresult=True)
def hcm_insurance_cancel(settlement_id: str, message_id: str) -> Settlement | None:
    """Cancel a completed settlement (e.g. the patient returns the drugs).

    Called by the cashier flow. First non-None result wins.

    :param settlement_id: the insurer's settlement ID.
    :param message_id: a new message ID for the cancellation.
    :return: the :class:`~hcmiddleware.models.Settlement` with status ``cancelled``.
    """


@hookspec(firstresult=True)
def hcm_insurance_reverse(original_message_id: str, message_id: str) -> bool | None:
    """Reverse (冲正) a message whose outcome is unknown, by its original message ID.

    Called by the journal's recovery. Idempotent. First non-None result wins.

    :param original_message_id: the message to reverse.
    :param message_id: a new message ID for the reversal.
    :return: ``True`` when the insurer confirmed the reversal.
    """


@hookspec(firstresult=True)
def hcm_insurance_reconcile(date_from: date, date_to: date) -> Statement | None:
    """Fetch the insurer's detailed statement for reconciliation.

    Called by ``hcm journal reconcile``. First non-None result wins.

    :param date_from: first day, inclusive.
    :param date_to: last day, inclusive.
    :return: the insurer's :class:`~hcmiddleware.models.Statement`.
    """


# =====================================================================================
# Ward devices (R-WARD)
# =====================================================================================


@hookspec
def hcm_ward_wristband_bound(binding: WristbandBinding) -> None:
    """A wristband was bound to a health card at admission.

    Called by the inpatient flow. Notification: device plugins program or register the
    band.

    :param binding: the binding.
    :return: nothing.
    """


@hookspec
def hcm_ward_order_executed(execution: OrderExecution) -> None:
    """An order was executed at the bedside after the checks passed.

    Called by the ward flow, after ``hcm_his_order_executed``. Notification for device
    plugins (e.g. the handheld's confirmation).

    :param execution: what was done.
    :return: nothing.
    """


@hookspec
def hcm_ward_emergency_call(call: EmergencyCall) -> None:
    """An emergency call was raised from a wristband or a call button.

    Called by device plugins through ``Middleware.raise_emergency()``. Notification:
    nurse-station plugins show and sound the alarm.

    :param call: who, where, when.
    :return: nothing.
    """


@hookspec
def hcm_ward_location(report: LocationReport) -> None:
    """An active wristband reported where it is.

    Called by device plugins through the runtime. Notification.

    :param report: the wristband and its location.
    :return: nothing.
    """


# =====================================================================================
# Audit (R-SEC-1)
# =====================================================================================


@hookspec
def hcm_audit_event(event: AuditEvent) -> None:
    """Record an audited action (a read of personal health data, a money movement).

    Called by the runtime and the flows for every audited action. Every plugin
    receives every event (audit sinks: the tamper-evident log, a SIEM forwarder).

    :param event: the event; its ``subject`` is an opaque ID, never a name.
    :return: nothing.
    """

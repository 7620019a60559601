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
        Alarm,
        AuditCheckpoint,
        AuditEvent,
        BankBinding,
        Bill,
        BlacklistUpdate,
        Charge,
        CheckResult,
        Deposit,
        Discharge,
        EhcOnlineVerdict,
        EhcRevocationList,
        EhcVerification,
        EmergencyCall,
        HospitalPatient,
        LivenessResult,
        LocationReport,
        LossReport,
        Order,
        OrderExecution,
        PaymentRequest,
        PaymentResult,
        PrintDocument,
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

    Example::

        from hcmiddleware import Secret, SettingsModel, hookimpl


        class Settings(SettingsModel):
            url: str = "postgresql+psycopg://hcm@his-db/his"
            password: Secret | None = None  # {env = "..."} or {file = "..."} in the config
            timeout: float = 5.0


        class ViewHis:
            @hookimpl
            def hcm_add_config(self, settings) -> None:
                settings.add("view-his", Settings)
    """


@hookspec(historic=True)
def hcm_configure(middleware: Middleware) -> None:
    """Set the plugin up: open connections, read its settings, start threads.

    Called by the runtime once per plugin after every enabled plugin is registered and
    its settings are validated (historic: also for plugins registered later).

    :param middleware: the running :class:`~hcmiddleware.runtime.Middleware`; the
        plugin's settings are ``middleware.plugin_settings(name)``.
    :return: nothing. Raising stops start-up with a PluginCallError naming the plugin.

    Example::

        import sqlalchemy

        from hcmiddleware import Middleware, hookimpl


        class ViewHis:
            @hookimpl
            def hcm_configure(self, middleware: Middleware) -> None:
                settings = middleware.plugin_settings("view-his")
                self.engine = sqlalchemy.create_engine(settings.url, pool_pre_ping=True)
    """


@hookspec
def hcm_unconfigure(middleware: Middleware) -> None:
    """Release what ``hcm_configure`` opened.

    Called by the runtime once when it closes, and when start-up failed after
    ``hcm_configure`` began (so release only what you actually opened). Failures are
    logged and do not stop the others.

    :param middleware: the closing Middleware.
    :return: nothing.

    Example::

        from hcmiddleware import hookimpl


        class ViewHis:
            engine = None

            @hookimpl
            def hcm_unconfigure(self) -> None:  # the middleware argument is not needed here
                if self.engine is not None:  # start-up may have failed before hcm_configure
                    self.engine.dispose()
    """


@hookspec
def hcm_doctor_checks(middleware: Middleware) -> list[CheckResult]:
    """Check that what the plugin depends on works (``hcm doctor``).

    Called by ``hcm doctor`` and ``Middleware.doctor()`` for every enabled plugin.

    :param middleware: the running Middleware.
    :return: a list of :class:`~hcmiddleware.models.CheckResult`, one per thing checked
        (connection to the HIS, certificate validity …); results of all plugins are
        collected.

    Example::

        import sqlalchemy

        from hcmiddleware import Middleware, hookimpl
        from hcmiddleware.models import CheckResult


        class ViewHis:
            @hookimpl
            def hcm_doctor_checks(self, middleware: Middleware) -> list[CheckResult]:
                try:
                    with self.engine.connect() as conn:
                        conn.execute(sqlalchemy.text("SELECT 1"))
                except sqlalchemy.exc.SQLAlchemyError as exc:
                    return [
                        CheckResult(
                            name="HIS database",
                            ok=False,
                            detail=type(exc).__name__,
                            hint="check [plugins.view-his] url and that the HIS database is up",
                        )
                    ]
                return [CheckResult(name="HIS database", ok=True)]
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

    Example::

        import logging

        from hcmiddleware import hookimpl

        alerts = logging.getLogger("hospital.it.alerts")


        class ItAlerts:
            @hookimpl
            def hcm_plugin_failed(self, plugin: str, hook: str, error: str) -> None:
                alerts.error("adapter %s failed in %s: %s", plugin, hook, error)
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

    Example::

        from hcmiddleware import hookimpl


        class KioskScreen:
            screen = "welcome"

            @hookimpl
            def hcm_card_inserted(self, reader: str, atr: bytes) -> None:
                self.screen = "reading"  # "please wait, reading your card"
    """


@hookspec
def hcm_card_removed(reader: str) -> None:
    """A card was removed from a reader.

    Called by the card monitor when PC/SC reports the card gone. Notification.

    :param reader: the PC/SC reader name.
    :return: nothing.

    Example::

        from hcmiddleware import hookimpl


        class KioskScreen:
            screen = "welcome"

            @hookimpl
            def hcm_card_removed(self, reader: str) -> None:
                self.screen = "welcome"
    """


@hookspec
def hcm_card_read(reader: str, card: Any) -> None:
    """A health card was read and authenticated.

    Called by the runtime after a successful read, before any flow uses the data.
    Notification (e.g. a kiosk plugin shows the name).

    :param reader: the reader the card was read in.
    :param card: the :class:`hcmiddleware.card.data.CardRead`; ``card.parts`` says
        which parts were read (a registration reads a few, see docs/card.md "Parts"),
        and a field of an unread part raises ``CardPartNotReadError``.
    :return: nothing.

    Example::

        from hcmiddleware import hookimpl


        class KioskScreen:
            greeting = ""

            @hookimpl
            def hcm_card_read(self, reader: str, card) -> None:
                self.greeting = f"您好，{card.cardholder.name}"
    """


@hookspec
def hcm_card_blacklist_updates(since: dict[str, int]) -> list[BlacklistUpdate]:
    """Fetch signed updates of the lists of refused cards, from an issuer or a bank.

    Called by ``Middleware.cards.sync()`` (``hcm cards sync``, run periodically).
    Each update is checked against its source's public key (``[cards] list_keys``) and
    applied atomically; a bad one is refused and leaves the previous list in force.

    :param since: the version held per source (a source not in it: send a full list).
    :return: the updates newer than ``since`` — per source a full list or deltas in
        order; the lists of all plugins are merged (one plugin per source).

    Example::

        import base64

        from hcmiddleware import hookimpl
        from hcmiddleware.models import BlacklistUpdate


        class IssuerFeed:
            @hookimpl
            def hcm_card_blacklist_updates(self, since: dict[str, int]) -> list[BlacklistUpdate]:
                held = since.get("issuer:2101")
                feed = self.issuer.updates(after=held)  # the issuer's signed list service
                return [BlacklistUpdate.model_validate(item) for item in feed]
    """


@hookspec(firstresult=True)
def hcm_card_report_loss(report: LossReport) -> str | None:
    """Tell the card's issuer that the cardholder reported the card lost.

    Called by ``Middleware.cards.report_loss()`` after the cardholder was identified;
    the terminal refuses the card at once, before the issuer's list says so. First
    non-None result wins.

    :param report: the card, the resident's index ID, how they were identified.
    :return: the issuer's reference for the report, or ``None`` to leave it to
        another plugin.

    Example::

        from hcmiddleware import hookimpl
        from hcmiddleware.models import LossReport


        class IssuerCounter:
            @hookimpl
            def hcm_card_report_loss(self, report: LossReport) -> str | None:
                answer = self.issuer.report_lost(report.card_number, at=report.reported_at)
                return str(answer["reference"])
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

    Example::

        from hcmiddleware import Middleware, hookimpl


        class HsmSamProvider:
            @hookimpl
            def hcm_sam_provider(self, middleware: Middleware):
                settings = middleware.plugin_settings("hsm-sam")
                # HsmSam: the site's own implementation of hcmiddleware.sam.base.Sam
                return HsmSam(settings.host, settings.slot)
    """


# =====================================================================================
# Electronic health card (R-CARD-5)
# =====================================================================================


@hookspec(firstresult=True)
def hcm_ehc_register(resident: Resident, card_number: str | None) -> str | None:
    """Open an electronic health card for a resident at the e-card platform.

    Called by ``Middleware.ehc.issue(resident_id)`` (``hcm ehc issue``) for a resident
    who has no e-card yet; the ID returned is bound to the resident in the index.
    Registering is idempotent per person: the same resident gets the same ID again.
    First non-None result wins.

    :param resident: the resident (name, ID number) as the index holds them.
    :param card_number: the resident's physical health card number, if known, so the
        platform links both cards to one person.
    :return: the e-card ID (64 hex digits), or ``None`` if this plugin does not issue.

    Example::

        from hcmiddleware import hookimpl
        from hcmiddleware.models import Resident


        class ProvincePlatform:
            @hookimpl
            def hcm_ehc_register(self, resident: Resident, card_number: str | None) -> str:
                answer = self.platform.call(
                    "register",
                    {"id_number": resident.id_number, "name": resident.name,
                     "card_number": card_number or ""},
                )
                return answer["ecard_id"]
    """


@hookspec(firstresult=True)
def hcm_ehc_generate_code(ecard_id: str) -> str | None:
    """Have the e-card platform sign a fresh dynamic code for an e-card.

    Called by ``Middleware.ehc.dynamic_code(ecard_id)`` (``hcm ehc issue --dynamic``):
    the issuer's side, for a kiosk that shows a code, the demo and the tests. First
    non-None result wins.

    :param ecard_id: the e-card ID (64 upper-case hex digits).
    :return: the code's text (``<ID>:2:…``, see ``docs/ehc.md``), or ``None``.

    Example::

        from hcmiddleware import hookimpl


        class ProvincePlatform:
            @hookimpl
            def hcm_ehc_generate_code(self, ecard_id: str) -> str:
                return self.platform.call("generate_code", {"ecard_id": ecard_id})["code"]
    """


@hookspec(firstresult=True)
def hcm_ehc_verify_online(text: str, terminal_id: str, care_step: str) -> EhcOnlineVerdict | None:
    """Ask the e-card platform whether a scanned code is good at this terminal and step.

    Called by ``Middleware.ehc.verify(...)`` before its offline checks, unless
    ``[ehc] online = "off"``. An answer decides: accepted (the revocation lists, the
    index and, for a static code, the second factor are still checked here) or refused
    with its reason. Raising (the platform is unreachable) falls back to the offline
    check, or refuses when ``[ehc] online = "required"``. First non-None result wins.

    :param text: the code as scanned (static or dynamic).
    :param terminal_id: this terminal's ID (``[ehc] terminal_id``).
    :param care_step: what the code is used for (``registration``, ``payment`` …).
    :return: an :class:`~hcmiddleware.models.EhcOnlineVerdict`, or ``None`` for no
        opinion (the offline checks decide).

    Example::

        from hcmiddleware import hookimpl
        from hcmiddleware.models import EhcOnlineVerdict


        class ProvincePlatform:
            @hookimpl
            def hcm_ehc_verify_online(
                self, text: str, terminal_id: str, care_step: str
            ) -> EhcOnlineVerdict:
                answer = self.platform.call(
                    "verify_code", {"code": text, "terminal_id": terminal_id, "step": care_step}
                )
                if answer["ok"]:
                    return EhcOnlineVerdict(accepted=True, ecard_id=answer["ecard_id"])
                return EhcOnlineVerdict(accepted=False, reason=answer["reason"])
    """


@hookspec(firstresult=True)
def hcm_ehc_revocations(issuer: str, since_version: int | None) -> EhcRevocationList | None:
    """Fetch an issuer's list of closed e-cards, or what changed since a version.

    Called by ``Middleware.ehc.sync_revocations()`` (``hcm ehc sync``) once per issuer
    with a key in ``[ehc.keys]``. The answer is applied only if the issuer's signature
    verifies and its version follows the list held (a delta from another version is
    refused and the list in force stays). First non-None result wins.

    :param issuer: the issuer's code, as in ``[ehc.keys.<KEY ID>] issuer``.
    :param since_version: the version held here, or ``None`` for a full list.
    :return: a signed :class:`~hcmiddleware.models.EhcRevocationList` (full, or a delta
        with ``base_version == since_version``), or ``None`` when nothing changed.

    Example::

        from hcmiddleware import hookimpl
        from hcmiddleware.models import EhcRevocationList


        class ProvincePlatform:
            @hookimpl
            def hcm_ehc_revocations(
                self, issuer: str, since_version: int | None
            ) -> EhcRevocationList | None:
                if issuer != "LN":
                    return None  # another platform's issuer
                answer = self.platform.call("revocations", {"since_version": since_version})
                return EhcRevocationList.model_validate(answer) if answer else None
    """


@hookspec
def hcm_ehc_verified(result: EhcVerification) -> None:
    """An e-card code was accepted at a terminal.

    Called by ``Middleware.ehc.verify(...)`` after every check passed and a dynamic
    code's use was recorded. Notification (a kiosk screen, statistics); refusals are
    audited, not announced.

    :param result: the :class:`~hcmiddleware.models.EhcVerification`: the resident,
        the code's kind, how it was checked, the terminal and the care step.
    :return: nothing.

    Example::

        from hcmiddleware import hookimpl
        from hcmiddleware.models import EhcVerification


        class KioskScreen:
            greeting = ""

            @hookimpl
            def hcm_ehc_verified(self, result: EhcVerification) -> None:
                self.greeting = f"您好，{result.resident.name}"
    """


# =====================================================================================
# Resident index (R-EMPI)
# =====================================================================================


@hookspec
def hcm_empi_resident_enrolled(resident: Resident) -> None:
    """A new resident was enrolled in the index.

    Called by ``Middleware.residents`` after the enrolment committed (from a card, a
    desk, an import or a regional lookup). Notification (e.g. a
    regional-index adapter forwards it).

    :param resident: the enrolled :class:`~hcmiddleware.models.Resident`.
    :return: nothing.

    Example::

        from hcmiddleware import hookimpl
        from hcmiddleware.models import Resident


        class RegionalIndex:
            @hookimpl
            def hcm_empi_resident_enrolled(self, resident: Resident) -> None:
                self.regional.post("/residents", json=resident.model_dump(mode="json"))
    """


@hookspec
def hcm_empi_residents_merged(survivor: Resident, merged: Resident, reason: str) -> None:
    """Two records of one person were merged.

    Called by ``Middleware.residents.merge`` (also ``hcm empi merge``) after the merge
    committed. Notification: a HIS adapter
    sends its merge message (e.g. HL7 ADT^A40).

    :param survivor: the record that remains.
    :param merged: the record folded into it (now inactive).
    :param reason: why, as entered by the operator.
    :return: nothing.

    Example::

        from hcmiddleware import hookimpl
        from hcmiddleware.models import Resident


        class SampleHis:
            @hookimpl
            def hcm_empi_residents_merged(
                self, survivor: Resident, merged: Resident, reason: str
            ) -> None:
                # the HIS's "merge patient" call (HL7 ADT^A40 for an HL7 HIS)
                self.his.merge_patients(
                    keep=survivor.resident_id, retire=merged.resident_id, note=reason
                )
    """


@hookspec
def hcm_empi_resident_unmerged(survivor: Resident, restored: Resident, reason: str) -> None:
    """A merge was undone.

    Called by ``Middleware.residents.unmerge`` (also ``hcm empi unmerge``) after the
    unmerge committed. Notification.

    :param survivor: the record the other had been merged into.
    :param restored: the record made active again.
    :param reason: why, as entered by the operator.
    :return: nothing.

    Example::

        from hcmiddleware import hookimpl
        from hcmiddleware.models import Resident


        class SampleHis:
            @hookimpl
            def hcm_empi_resident_unmerged(
                self, survivor: Resident, restored: Resident, reason: str
            ) -> None:
                self.his.unmerge_patients(keep=survivor.resident_id, restore=restored.resident_id)
    """


@hookspec
def hcm_empi_remote_lookup(kind: str, value: str) -> list[Resident]:
    """Look a resident up in a regional or national index.

    Called by ``Middleware.residents.lookup(..., remote=True)`` when the local index does
    not hold the identifier. Results of all plugins are collected; when they name one
    person, that resident is enrolled locally and linked to each plugin's ID for it.

    :param kind: an :class:`~hcmiddleware.models.IdentifierKind` value.
    :param value: the identifier's value.
    :return: a list of residents found (empty when none).

    Example::

        from hcmiddleware import hookimpl
        from hcmiddleware.models import IdentifierKind, Resident


        class RegionalIndex:
            @hookimpl
            def hcm_empi_remote_lookup(self, kind: str, value: str) -> list[Resident]:
                if kind != IdentifierKind.ID_NUMBER:
                    return []  # the regional index is searched by ID number only
                found = self.regional.get("/residents", params={"id_number": value}).json()
                return [Resident.model_validate(row) for row in found]
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

    Example::

        from hcmiddleware import hookimpl


        class ArcFacePlugin:
            @hookimpl
            def hcm_face_backend(self, name: str):
                if name != "arcface":
                    return None  # another plugin (or the built-in one) provides it
                # ArcFaceBackend: detect, encode, compare, as hcmiddleware.face.backend.FaceBackend
                return ArcFaceBackend(model_dir="/opt/hcm/models/arcface")
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

    Example::

        from hcmiddleware import hookimpl
        from hcmiddleware.models import LivenessResult


        class InfraredLiveness:
            @hookimpl
            def hcm_face_liveness(self, image: bytes, context: str) -> LivenessResult | None:
                if not context.startswith("kiosk:"):
                    return None  # no opinion: only the kiosks have the infrared camera
                score = self.camera.liveness_score(image)
                if score < 0.9:
                    return LivenessResult(live=False, score=score, reason="print or screen")
                return LivenessResult(live=True, score=score)
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

    Example::

        from hcmiddleware import hookimpl


        class KioskScreen:
            screen = "welcome"

            @hookimpl
            def hcm_face_verified(self, resident_id: str, result) -> None:
                self.screen = "continue" if result.matched else "please see the registration desk"
    """


@hookspec
def hcm_face_duplicates_found(resident_id: str, candidates: list[tuple[str, float]]) -> None:
    """A 1:N search at enrolment found faces close to the new one.

    Called by the enrolment flow when the new face matches enrolled ones. Notification
    (review queue, alert).

    :param resident_id: the resident being enrolled.
    :param candidates: ``(resident_id, distance)`` pairs under the threshold.
    :return: nothing.

    Example::

        from hcmiddleware import hookimpl


        class ReviewQueue:
            def __init__(self) -> None:
                self.pending: list[tuple[str, str, float]] = []

            @hookimpl
            def hcm_face_duplicates_found(
                self, resident_id: str, candidates: list[tuple[str, float]]
            ) -> None:
                for other, distance in candidates:
                    self.pending.append((resident_id, other, distance))  # for the records office
    """


# =====================================================================================
# Hospital information system (R-HIS)
# =====================================================================================


@hookspec(firstresult=True)
def hcm_his_lookup_patient(resident: Resident, hospital_code: str) -> HospitalPatient | None:
    """Find the hospital's own patient record for a resident.

    Called by ``Middleware.his.find`` / ``find_or_register`` (the outpatient and
    inpatient flows use them) after the resident is known, when the index links no
    hospital patient ID (not when the one plugin implementing it also implements
    ``hcm_his_register_patient``, which then finds or creates). First non-None result
    wins.

    :param resident: the resident from the index (identifiers include any known
        hospital patient IDs).
    :param hospital_code: this hospital's code (``[middleware] institution_code``).
    :return: the :class:`~hcmiddleware.models.HospitalPatient`, or ``None`` when the
        HIS does not know the resident.

    Example::

        from hcmiddleware import hookimpl
        from hcmiddleware.models import HospitalPatient, Resident


        class SampleHis:
            @hookimpl
            def hcm_his_lookup_patient(
                self, resident: Resident, hospital_code: str
            ) -> HospitalPatient | None:
                row = self.his.find_patient(id_number=resident.id_number)
                if row is None:
                    return None
                return HospitalPatient(
                    hospital_code=hospital_code,
                    patient_id=row["patient_no"],
                    resident_id=resident.resident_id,
                )
    """


@hookspec(firstresult=True)
def hcm_his_register_patient(
    resident: Resident, card: Any, hospital_code: str
) -> HospitalPatient | None:
    """Create the hospital's patient record on a first visit.

    Called by ``Middleware.his.register`` / ``find_or_register`` when
    ``hcm_his_lookup_patient`` found nothing — or, when one plugin alone implements both
    hooks, instead of it: find or create. Must be
    idempotent for the same resident: calling it twice, or for a resident the HIS
    already knows, returns the same patient ID. First non-None result wins.

    :param resident: the resident from the index.
    :param card: the ``CardRead`` the visit started with, or ``None`` (e-card, manual);
        the outpatient flow reads the parts ``identity``, ``insurance`` and ``phones``
        (``card.parts``), and a field of another part raises ``CardPartNotReadError``.
    :param hospital_code: this hospital's code.
    :return: the new :class:`~hcmiddleware.models.HospitalPatient` with
        ``created=True`` (or the existing one, ``created=False``).

    Example::

        from hcmiddleware import hookimpl
        from hcmiddleware.models import HospitalPatient, Resident


        class SampleHis:
            @hookimpl
            def hcm_his_register_patient(
                self, resident: Resident, card, hospital_code: str
            ) -> HospitalPatient | None:
                # the HIS answers the existing patient number when it already knows the resident
                patient_no, created = self.his.find_or_create_patient(
                    external_id=resident.resident_id,
                    name=resident.name,
                    sex=int(resident.sex),
                    birth_date=resident.birth_date,
                    id_number=resident.id_number,
                )
                return HospitalPatient(
                    hospital_code=hospital_code,
                    patient_id=patient_no,
                    resident_id=resident.resident_id,
                    created=created,
                )
    """


@hookspec(firstresult=True)
def hcm_his_register_visit(
    patient: HospitalPatient, request: RegistrationRequest
) -> Registration | None:
    """Register an outpatient visit (挂号) or book an appointment.

    Called by ``Middleware.his.register_visit`` (the outpatient flow's
    ``register``). ``request.request_id`` is an idempotency key: the
    same ID twice registers once. First non-None result wins.

    :param patient: the hospital patient.
    :param request: department, doctor, slot (at most one hour), fee.
    :return: the :class:`~hcmiddleware.models.Registration`.

    Example::

        from hcmiddleware import hookimpl
        from hcmiddleware.models import HospitalPatient, Registration, RegistrationRequest


        class SampleHis:
            @hookimpl
            def hcm_his_register_visit(
                self, patient: HospitalPatient, request: RegistrationRequest
            ) -> Registration | None:
                row = self.his.register(
                    patient_no=patient.patient_id,
                    department=request.department_code,
                    doctor=request.doctor_code,
                    start=request.slot_start,
                    end=request.slot_end,
                    client_key=request.request_id,  # the HIS registers a repeated key once
                )
                return Registration(
                    registration_id=row["reg_no"],
                    patient_id=patient.patient_id,
                    department_code=request.department_code,
                    doctor_code=request.doctor_code,
                    slot_start=request.slot_start,
                    slot_end=request.slot_end,
                    queue_number=row["queue_no"],
                    fee=request.fee,
                )
    """


@hookspec(firstresult=True)
def hcm_his_queue_position(registration: Registration) -> QueuePosition | None:
    """Tell where a registered patient stands in the queue.

    Called by ``Middleware.his.queue_position``, by kiosks and the outpatient flow
    after registration. First non-None result
    wins.

    :param registration: the registration.
    :return: a :class:`~hcmiddleware.models.QueuePosition`.

    Example::

        from hcmiddleware import hookimpl
        from hcmiddleware.models import QueuePosition, Registration


        class SampleHis:
            @hookimpl
            def hcm_his_queue_position(self, registration: Registration) -> QueuePosition | None:
                row = self.his.queue(registration.registration_id)
                return QueuePosition(
                    registration_id=registration.registration_id,
                    queue_number=row["number"],
                    ahead=row["waiting_before"],
                    estimated_wait_minutes=row["waiting_before"] * 6,
                )
    """


@hookspec(firstresult=True)
def hcm_his_list_orders(patient: HospitalPatient, visit_id: str) -> list[Order] | None:
    """List the doctor's orders of a visit or stay.

    Called by ``Middleware.his.orders``: the doctor's desk, the cashier and nurse
    handhelds. First non-None result
    wins.

    :param patient: the hospital patient.
    :param visit_id: the registration or admission ID.
    :return: a list of :class:`~hcmiddleware.models.Order` (empty when none).

    Example::

        from hcmiddleware import hookimpl
        from hcmiddleware.models import HospitalPatient, Order


        class SampleHis:
            @hookimpl
            def hcm_his_list_orders(
                self, patient: HospitalPatient, visit_id: str
            ) -> list[Order] | None:
                return [
                    Order(
                        order_id=row["order_no"],
                        patient_id=patient.patient_id,
                        visit_id=visit_id,
                        kind="drug" if row["category"] == "W" else "lab",
                        code=row["item_code"],
                        name=row["item_name"],
                        dose=row["dose"],
                        route=row["route"],
                    )
                    for row in self.his.orders(patient.patient_id, visit_id)
                ]
    """


@hookspec(firstresult=True)
def hcm_his_list_charges(patient: HospitalPatient, visit_id: str) -> list[Charge] | None:
    """List the charges of a visit or stay, paid and unpaid.

    Called by ``Middleware.his.charges``: the cashier flow and kiosks. First non-None result wins.

    :param patient: the hospital patient.
    :param visit_id: the registration or admission ID.
    :return: a list of :class:`~hcmiddleware.models.Charge`.

    Example::

        from decimal import Decimal

        from hcmiddleware import hookimpl
        from hcmiddleware.models import Charge, HospitalPatient


        class SampleHis:
            @hookimpl
            def hcm_his_list_charges(
                self, patient: HospitalPatient, visit_id: str
            ) -> list[Charge] | None:
                return [
                    Charge(
                        charge_id=row["fee_no"],
                        patient_id=patient.patient_id,
                        visit_id=visit_id,
                        item_code=row["item_code"],
                        item_name=row["item_name"],
                        quantity=Decimal(row["qty"]),
                        unit_price=Decimal(row["price"]),
                        amount=Decimal(row["amount"]),
                        paid=row["state"] == "PAID",
                    )
                    for row in self.his.fees(patient.patient_id, visit_id)
                ]
    """


@hookspec(firstresult=True)
def hcm_his_charges_paid(
    patient: HospitalPatient, charge_ids: list[str], transaction_id: str
) -> bool | None:
    """Tell the HIS that charges were paid.

    Called by ``Middleware.his.charges_paid`` after the journal confirmed the money
    movement.
    Idempotent per ``transaction_id``. First non-None result wins.

    :param patient: the hospital patient.
    :param charge_ids: the charges settled.
    :param transaction_id: the journal's transaction ID.
    :return: ``True`` when the HIS recorded it.

    Example::

        from hcmiddleware import hookimpl
        from hcmiddleware.models import HospitalPatient


        class SampleHis:
            @hookimpl
            def hcm_his_charges_paid(
                self, patient: HospitalPatient, charge_ids: list[str], transaction_id: str
            ) -> bool | None:
                # the transaction ID is the HIS's payment reference: a repeat changes nothing
                self.his.mark_paid(patient.patient_id, charge_ids, reference=transaction_id)
                return True
    """


@hookspec(firstresult=True)
def hcm_his_list_reports(patient: HospitalPatient, visit_id: str) -> list[Report] | None:
    """List lab and exam reports of a visit.

    Called by ``Middleware.his.reports``: the doctor's desk and report kiosks. First
    non-None result wins.

    :param patient: the hospital patient.
    :param visit_id: the registration or admission ID.
    :return: a list of :class:`~hcmiddleware.models.Report`.

    Example::

        from hcmiddleware import hookimpl
        from hcmiddleware.models import HospitalPatient, Report


        class SampleHis:
            @hookimpl
            def hcm_his_list_reports(
                self, patient: HospitalPatient, visit_id: str
            ) -> list[Report] | None:
                return [
                    Report(
                        report_id=row["report_no"],
                        patient_id=patient.patient_id,
                        visit_id=visit_id,
                        kind="lab",
                        title=row["title"],
                        issued_at=row["issued_at"],
                        status="final" if row["audited"] else "preliminary",
                    )
                    for row in self.his.lab_reports(patient.patient_id, visit_id)
                ]
    """


@hookspec(firstresult=True)
def hcm_his_admit(patient: HospitalPatient, request: AdmissionRequest) -> Admission | None:
    """Admit a patient (inpatient).

    Called by ``Middleware.his.admit`` (the inpatient flow). Idempotent per
    ``request.request_id``. First non-None
    result wins.

    :param patient: the hospital patient.
    :param request: ward, bed, department, time.
    :return: the :class:`~hcmiddleware.models.Admission`.

    Example::

        from hcmiddleware import hookimpl
        from hcmiddleware.models import Admission, AdmissionRequest, HospitalPatient


        class SampleHis:
            @hookimpl
            def hcm_his_admit(
                self, patient: HospitalPatient, request: AdmissionRequest
            ) -> Admission | None:
                admission_no = self.his.admit(
                    patient_no=patient.patient_id,
                    ward=request.ward,
                    bed=request.bed,
                    at=request.admitted_at,
                    client_key=request.request_id,
                )
                return Admission(
                    admission_id=admission_no,
                    patient_id=patient.patient_id,
                    ward=request.ward,
                    bed=request.bed,
                    admitted_at=request.admitted_at,
                )
    """


@hookspec(firstresult=True)
def hcm_his_record_deposit(admission: Admission, deposit: Deposit) -> Admission | None:
    """Record a deposit or top-up the journal has confirmed.

    Called by ``Middleware.his.record_deposit`` (the inpatient flow). Idempotent per
    ``deposit.transaction_id``. First
    non-None result wins.

    :param admission: the stay.
    :param deposit: the confirmed deposit.
    :return: the admission with its new deposit balance.

    Example::

        from decimal import Decimal

        from hcmiddleware import hookimpl
        from hcmiddleware.models import Admission, Deposit


        class SampleHis:
            @hookimpl
            def hcm_his_record_deposit(
                self, admission: Admission, deposit: Deposit
            ) -> Admission | None:
                balance = self.his.add_deposit(
                    admission.admission_id, deposit.amount, reference=deposit.transaction_id
                )
                return admission.model_copy(update={"deposit_balance": Decimal(balance)})
    """


@hookspec(firstresult=True)
def hcm_his_inpatient_bill(admission: Admission) -> Bill | None:
    """Produce the current inpatient bill.

    Called by ``Middleware.his.bill``: the inpatient flow, kiosks and the cashier. First
    non-None result wins.

    :param admission: the stay.
    :return: the :class:`~hcmiddleware.models.Bill`.

    Example::

        from decimal import Decimal

        from hcmiddleware import hookimpl
        from hcmiddleware.models import Admission, Bill


        class SampleHis:
            @hookimpl
            def hcm_his_inpatient_bill(self, admission: Admission) -> Bill | None:
                row = self.his.inpatient_bill(admission.admission_id)
                total, deposits = Decimal(row["total"]), admission.deposit_balance
                return Bill(
                    patient_id=admission.patient_id,
                    admission_id=admission.admission_id,
                    total=total,
                    deposits=deposits,
                    balance=total - deposits,
                )
    """


@hookspec(firstresult=True)
def hcm_his_discharge(admission: Admission, bill: Bill) -> Discharge | None:
    """Discharge a patient once the bill is settled.

    Called by ``Middleware.his.discharge`` (the inpatient flow) after final
    settlement. First non-None result wins.

    :param admission: the stay.
    :param bill: the settled final bill.
    :return: the :class:`~hcmiddleware.models.Discharge`.

    Example::

        from datetime import UTC, datetime

        from hcmiddleware import hookimpl
        from hcmiddleware.models import Admission, Bill, Discharge


        class SampleHis:
            @hookimpl
            def hcm_his_discharge(self, admission: Admission, bill: Bill) -> Discharge | None:
                self.his.discharge(admission.admission_id)
                return Discharge(
                    admission_id=admission.admission_id,
                    discharged_at=datetime.now(UTC),
                    final_bill=bill,
                )
    """


@hookspec(firstresult=True)
def hcm_his_order_executed(execution: OrderExecution) -> bool | None:
    """Upload a bedside order execution to the HIS.

    Called by ``Middleware.his.order_executed`` (the ward flow) after the checks
    passed and the order was carried out.
    Idempotent per ``(order_id, executed_at)``. First non-None result wins.

    :param execution: what was done, by whom, with each check's outcome.
    :return: ``True`` when the HIS recorded it.

    Example::

        from hcmiddleware import hookimpl
        from hcmiddleware.models import OrderExecution


        class SampleHis:
            @hookimpl
            def hcm_his_order_executed(self, execution: OrderExecution) -> bool | None:
                self.his.record_execution(
                    order_no=execution.order_id,
                    nurse=execution.executed_by,
                    at=execution.executed_at,  # with order_no, the key the HIS deduplicates on
                    checks=execution.checks,
                )
                return True
    """


# =====================================================================================
# Bank (R-PAY-1) — SOAP adapters
# =====================================================================================


@hookspec(firstresult=True)
def hcm_bank_bind(card_number: str, bank_card_number: str, id_number: str) -> BankBinding | None:
    """Bind a bank card to the health card's account.

    Called by ``flows.payment.bind_bank_card`` at the counter, after the identity
    document was checked. First non-None result wins.

    :param card_number: the health card number.
    :param bank_card_number: the bank card to bind.
    :param id_number: the holder's ID number, as the bank requires.
    :return: the :class:`~hcmiddleware.models.BankBinding`.

    Example::

        from datetime import UTC, datetime

        from hcmiddleware import hookimpl
        from hcmiddleware.errors import RemoteFaultError
        from hcmiddleware.models import BankBinding


        class CityBank:
            @hookimpl
            def hcm_bank_bind(
                self, card_number: str, bank_card_number: str, id_number: str
            ) -> BankBinding | None:
                answer = self.soap.service.BindCard(
                    healthCardNo=card_number, bankCardNo=bank_card_number, idNo=id_number
                )
                if answer.retCode != "0000":
                    raise RemoteFaultError(
                        f"the bank refused the binding: {answer.retMsg}", fault_code=answer.retCode
                    )
                return BankBinding(
                    card_number=card_number,
                    bank_account_masked=f"{bank_card_number[:4]} **** {bank_card_number[-4:]}",
                    bound_at=datetime.now(UTC),
                )
    """


@hookspec(firstresult=True)
def hcm_bank_unbind(card_number: str, id_number: str) -> bool | None:
    """Unbind the bank card from the health card's account.

    Called by ``flows.payment.unbind_bank_card`` at the counter, after the identity
    document was checked. First non-None result wins.

    :param card_number: the health card number.
    :param id_number: the holder's ID number.
    :return: ``True`` when unbound.

    Example::

        from hcmiddleware import hookimpl


        class CityBank:
            @hookimpl
            def hcm_bank_unbind(self, card_number: str, id_number: str) -> bool | None:
                answer = self.soap.service.UnbindCard(healthCardNo=card_number, idNo=id_number)
                return answer.retCode == "0000"
    """


@hookspec(firstresult=True)
def hcm_bank_top_up(request: PaymentRequest) -> PaymentResult | None:
    """Top up the card's account.

    Called by the journal after the request was written (state ``pending``). A timeout
    or a dropped connection is an unknown outcome, resolved by ``hcm_bank_query``.
    Idempotent per ``request.transaction_id``. First non-None result wins.

    :param request: the journalled request (kind ``top_up``).
    :return: the bank's :class:`~hcmiddleware.models.PaymentResult`.

    Example::

        from datetime import UTC, datetime

        from hcmiddleware import hookimpl
        from hcmiddleware.models import PaymentRequest, PaymentResult, PaymentStatus


        class CityBank:
            @hookimpl
            def hcm_bank_top_up(self, request: PaymentRequest) -> PaymentResult | None:
                answer = self.soap.service.TopUp(
                    serialNo=request.transaction_id,  # the bank answers a repeated serial once
                    healthCardNo=request.card_number,
                    amount=str(request.amount),
                )
                ok = answer.retCode == "0000"
                return PaymentResult(
                    transaction_id=request.transaction_id,
                    status=PaymentStatus.CONFIRMED if ok else PaymentStatus.FAILED,
                    bank_reference=answer.bankSerial,
                    balance_after=answer.balance if ok else None,
                    completed_at=datetime.now(UTC),
                    reason=None if ok else answer.retMsg,
                )
    """


@hookspec(firstresult=True)
def hcm_bank_pay(request: PaymentRequest) -> PaymentResult | None:
    """Pay from the card's account (consultation desk or kiosk).

    Called by the journal, as for ``hcm_bank_top_up``. First non-None result wins.

    :param request: the journalled request (kind ``pay``).
    :return: the bank's :class:`~hcmiddleware.models.PaymentResult`.

    Example::

        from datetime import UTC, datetime

        from hcmiddleware import hookimpl
        from hcmiddleware.models import PaymentRequest, PaymentResult, PaymentStatus


        class CityBank:
            @hookimpl
            def hcm_bank_pay(self, request: PaymentRequest) -> PaymentResult | None:
                answer = self.soap.service.Pay(
                    serialNo=request.transaction_id,  # the bank answers a repeated serial once
                    healthCardNo=request.card_number,
                    amount=str(request.amount),
                )
                ok = answer.retCode == "0000"
                return PaymentResult(
                    transaction_id=request.transaction_id,
                    status=PaymentStatus.CONFIRMED if ok else PaymentStatus.FAILED,
                    bank_reference=answer.bankSerial,
                    balance_after=answer.balance if ok else None,
                    completed_at=datetime.now(UTC),
                    reason=None if ok else answer.retMsg,
                )
    """


@hookspec(firstresult=True)
def hcm_bank_refund(request: PaymentRequest) -> PaymentResult | None:
    """Refund to the card's account, after the identity document was checked.

    Called by the journal, as for ``hcm_bank_top_up``; ``original_transaction_id`` is
    the payment refunded. First non-None result wins.

    :param request: the journalled request (kind ``refund``).
    :return: the bank's :class:`~hcmiddleware.models.PaymentResult`.

    Example::

        from datetime import UTC, datetime

        from hcmiddleware import hookimpl
        from hcmiddleware.models import PaymentRequest, PaymentResult, PaymentStatus


        class CityBank:
            @hookimpl
            def hcm_bank_refund(self, request: PaymentRequest) -> PaymentResult | None:
                answer = self.soap.service.Refund(
                    serialNo=request.transaction_id,  # the bank answers a repeated serial once
                    originalSerialNo=request.original_transaction_id,
                    healthCardNo=request.card_number,
                    amount=str(request.amount),
                )
                ok = answer.retCode == "0000"
                return PaymentResult(
                    transaction_id=request.transaction_id,
                    status=PaymentStatus.CONFIRMED if ok else PaymentStatus.FAILED,
                    bank_reference=answer.bankSerial,
                    balance_after=answer.balance if ok else None,
                    completed_at=datetime.now(UTC),
                    reason=None if ok else answer.retMsg,
                )
    """


@hookspec(firstresult=True)
def hcm_bank_query(transaction_id: str) -> PaymentResult | None:
    """Ask the bank what became of a transaction whose outcome is unknown.

    Called by the journal's recovery (after a timeout, a dropped connection, or a
    restart with transactions in flight). First non-None result wins.

    :param transaction_id: the journal's transaction ID.
    :return: the :class:`~hcmiddleware.models.PaymentResult` if the bank knows it;
        ``None`` if the bank has no record (never received).

    Example::

        from hcmiddleware import hookimpl
        from hcmiddleware.models import PaymentResult, PaymentStatus


        class CityBank:
            @hookimpl
            def hcm_bank_query(self, transaction_id: str) -> PaymentResult | None:
                answer = self.soap.service.QueryTrans(serialNo=transaction_id)
                if answer.retCode == "NOT_FOUND":
                    return None  # never received: the journal may send it again or give up
                ok = answer.transState == "SUCCESS"
                return PaymentResult(
                    transaction_id=transaction_id,
                    status=PaymentStatus.CONFIRMED if ok else PaymentStatus.FAILED,
                    bank_reference=answer.bankSerial,
                    completed_at=answer.transTime,
                    reason=None if ok else answer.retMsg,
                )
    """


@hookspec(firstresult=True)
def hcm_bank_reverse(transaction_id: str) -> bool | None:
    """Reverse (冲正) a transaction whose outcome could not be established.

    Called by the journal's recovery when a query cannot settle the outcome in time.
    Idempotent. First non-None result wins.

    :param transaction_id: the journal's transaction ID.
    :return: ``True`` when the bank confirmed the reversal.

    Example::

        from hcmiddleware import hookimpl


        class CityBank:
            @hookimpl
            def hcm_bank_reverse(self, transaction_id: str) -> bool | None:
                answer = self.soap.service.Reverse(originalSerialNo=transaction_id)
                return answer.retCode in ("0000", "ALREADY_REVERSED")  # reversing twice is fine
    """


@hookspec(firstresult=True)
def hcm_bank_statement(day: date) -> Statement | None:
    """Fetch the bank's statement for one day, for reconciliation.

    Called by ``hcm journal reconcile``. First non-None result wins.

    :param day: the business day.
    :return: the bank's :class:`~hcmiddleware.models.Statement`.

    Example::

        from datetime import date

        from hcmiddleware import hookimpl
        from hcmiddleware.models import Statement, StatementLine


        class CityBank:
            @hookimpl
            def hcm_bank_statement(self, day: date) -> Statement | None:
                answer = self.soap.service.DailyStatement(date=day.strftime("%Y%m%d"))
                return Statement(
                    source="bank",
                    date_from=day,
                    date_to=day,
                    lines=tuple(
                        StatementLine(
                            transaction_id=item.serialNo,
                            reference=item.bankSerial,
                            kind=item.transType,
                            amount=item.amount,
                            occurred_at=item.transTime,
                        )
                        for item in answer.items
                    ),
                )
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

    Example::

        from decimal import Decimal

        from hcmiddleware import hookimpl
        from hcmiddleware.models import Settlement, SettlementRequest


        class ProvinceInsurer:
            @hookimpl
            def hcm_insurance_pre_settle(self, request: SettlementRequest) -> Settlement | None:
                answer = self.soap.service.PreSettle(
                    msgId=request.message_id,
                    insuredId=request.insured_id,
                    scheme=request.scheme,
                    items=[(c.item_code, str(c.quantity), str(c.amount)) for c in request.charges],
                )
                return Settlement(
                    message_id=request.message_id,
                    settlement_id=answer.settleId,
                    total=request.total,
                    fund_paid=Decimal(answer.fundPay),
                    account_paid=Decimal(answer.accountPay),
                    patient_paid=Decimal(answer.cashPay),
                    status="pre_settled",
                )
    """


@hookspec(firstresult=True)
def hcm_insurance_settle(request: SettlementRequest) -> Settlement | None:
    """Settle (结算): the fund's part is paid; the bank-advanced part is returned.

    Called by the journal after the settlement was written. Idempotent per
    ``request.message_id``. First non-None result wins.

    :param request: as pre-settled, with a new message ID.
    :return: the :class:`~hcmiddleware.models.Settlement` with status ``settled``.

    Example::

        from decimal import Decimal

        from hcmiddleware import hookimpl
        from hcmiddleware.models import Settlement, SettlementRequest


        class ProvinceInsurer:
            @hookimpl
            def hcm_insurance_settle(self, request: SettlementRequest) -> Settlement | None:
                answer = self.soap.service.Settle(
                    msgId=request.message_id,  # the insurer settles a repeated message ID once
                    insuredId=request.insured_id,
                    scheme=request.scheme,
                    items=[(c.item_code, str(c.quantity), str(c.amount)) for c in request.charges],
                )
                return Settlement(
                    message_id=request.message_id,
                    settlement_id=answer.settleId,
                    total=request.total,
                    fund_paid=Decimal(answer.fundPay),
                    account_paid=Decimal(answer.accountPay),
                    patient_paid=Decimal(answer.cashPay),
                    status="settled",
                )
    """


@hookspec(firstresult=True)
def hcm_insurance_cancel(settlement_id: str, message_id: str) -> Settlement | None:
    """Cancel a completed settlement (e.g. the patient returns the drugs).

    Called by the cashier flow. First non-None result wins.

    :param settlement_id: the insurer's settlement ID.
    :param message_id: a new message ID for the cancellation.
    :return: the :class:`~hcmiddleware.models.Settlement` with status ``cancelled``.

    Example::

        from decimal import Decimal

        from hcmiddleware import hookimpl
        from hcmiddleware.models import Settlement


        class ProvinceInsurer:
            @hookimpl
            def hcm_insurance_cancel(
                self, settlement_id: str, message_id: str
            ) -> Settlement | None:
                answer = self.soap.service.CancelSettle(settleId=settlement_id, msgId=message_id)
                return Settlement(
                    message_id=message_id,
                    settlement_id=settlement_id,
                    total=Decimal(answer.total),
                    fund_paid=Decimal(answer.fundPay),
                    account_paid=Decimal(answer.accountPay),
                    patient_paid=Decimal(answer.cashPay),
                    status="cancelled",
                )
    """


@hookspec(firstresult=True)
def hcm_insurance_reverse(original_message_id: str, message_id: str) -> bool | None:
    """Reverse (冲正) a message whose outcome is unknown, by its original message ID.

    Called by the journal's recovery. Idempotent. First non-None result wins.

    :param original_message_id: the message to reverse.
    :param message_id: a new message ID for the reversal.
    :return: ``True`` when the insurer confirmed the reversal.

    Example::

        from hcmiddleware import hookimpl


        class ProvinceInsurer:
            @hookimpl
            def hcm_insurance_reverse(
                self, original_message_id: str, message_id: str
            ) -> bool | None:
                answer = self.soap.service.Reverse(
                    originalMsgId=original_message_id, msgId=message_id
                )
                return answer.retCode in ("0", "ALREADY_REVERSED")
    """


@hookspec(firstresult=True)
def hcm_insurance_reconcile(date_from: date, date_to: date) -> Statement | None:
    """Fetch the insurer's detailed statement for reconciliation.

    Called by ``hcm journal reconcile``. First non-None result wins.

    :param date_from: first day, inclusive.
    :param date_to: last day, inclusive.
    :return: the insurer's :class:`~hcmiddleware.models.Statement`.

    Example::

        from datetime import date

        from hcmiddleware import hookimpl
        from hcmiddleware.models import Statement, StatementLine


        class ProvinceInsurer:
            @hookimpl
            def hcm_insurance_reconcile(self, date_from: date, date_to: date) -> Statement | None:
                answer = self.soap.service.Reconcile(
                    start=date_from.isoformat(), end=date_to.isoformat()
                )
                return Statement(
                    source="insurer",
                    date_from=date_from,
                    date_to=date_to,
                    lines=tuple(
                        StatementLine(
                            transaction_id=row.msgId,
                            reference=row.settleId,
                            kind=row.type,
                            amount=row.fundPay,
                            occurred_at=row.time,
                        )
                        for row in answer.rows
                    ),
                )
    """


# =====================================================================================
# Ward devices (R-WARD)
# =====================================================================================


@hookspec
def hcm_ward_wristband_bound(binding: WristbandBinding) -> None:
    """A wristband was bound to a health card at admission, or replaced a lost one.

    Called by ``Middleware.ward.bind`` and ``Middleware.ward.rebind``. Notification:
    device plugins program or register the band.

    :param binding: the binding.
    :return: nothing.

    Example::

        from hcmiddleware import hookimpl
        from hcmiddleware.models import WristbandBinding


        class WristbandGateway:
            @hookimpl
            def hcm_ward_wristband_bound(self, binding: WristbandBinding) -> None:
                # the gateway prints the band's label and starts listening for it
                self.gateway.register_band(binding.wristband_id, admission=binding.admission_id)
    """


@hookspec
def hcm_ward_order_executed(execution: OrderExecution) -> None:
    """An order was executed at the bedside after the checks passed.

    Called by ``Middleware.ward`` when the last of the order's checks passed, after
    ``hcm_his_order_executed`` was asked (whether or not the HIS recorded it).
    Notification for device plugins (e.g. the handheld's confirmation).

    :param execution: what was done.
    :return: nothing.

    Example::

        from hcmiddleware import hookimpl
        from hcmiddleware.models import OrderExecution


        class NurseHandheld:
            @hookimpl
            def hcm_ward_order_executed(self, execution: OrderExecution) -> None:
                self.handhelds.confirm(execution.executed_by, order=execution.order_id)
    """


@hookspec
def hcm_ward_emergency_call(call: EmergencyCall) -> None:
    """An emergency call was raised from a wristband or a call button.

    Called by ``Middleware.ward.receive`` once per new emergency alarm, after it is
    stored (further calls from the same band fold into the open alarm and are not
    announced again). Notification: nurse-station plugins show and sound the alarm;
    ``hcm_ward_alarm`` carries the alarm's later changes.

    :param call: who, where, when.
    :return: nothing.

    Example::

        from hcmiddleware import hookimpl
        from hcmiddleware.models import EmergencyCall


        class NurseStation:
            @hookimpl
            def hcm_ward_emergency_call(self, call: EmergencyCall) -> None:
                where = call.location or "location unknown"
                self.board.alarm(f"emergency: band {call.wristband_id}, {where}", sound=True)
    """


@hookspec
def hcm_ward_location(report: LocationReport) -> None:
    """An active wristband reported where it is.

    Called by ``Middleware.ward.receive`` when a band reports a location other than
    its last known one, after it is stored. Notification.

    :param report: the wristband and its location.
    :return: nothing.

    Example::

        from hcmiddleware import hookimpl
        from hcmiddleware.models import LocationReport


        class NurseStation:
            def __init__(self) -> None:
                self.last_seen: dict[str, str] = {}

            @hookimpl
            def hcm_ward_location(self, report: LocationReport) -> None:
                self.last_seen[report.wristband_id] = report.location
    """


@hookspec
def hcm_ward_alarm(alarm: Alarm, change: str) -> None:
    """An alarm at the nurse station was raised, escalated or acknowledged.

    Called by ``Middleware.ward``: ``raised`` when a band event opens an alarm (after it
    is stored, before the device is acknowledged), ``escalated`` when nobody
    acknowledged it within ``[ward.alarms] escalate_after`` (and again every
    ``repeat_every``, up to ``max_level``), ``acknowledged`` when a nurse took it.
    Notification: the nurse station routes it (screen, sound, the charge nurse's
    phone on escalation); a device plugin tells the band its call was answered.

    :param alarm: the alarm as it is now (``level`` counts escalations).
    :param change: ``raised``, ``escalated`` or ``acknowledged``.
    :return: nothing.

    Example::

        from hcmiddleware import hookimpl
        from hcmiddleware.models import Alarm


        class NurseStation:
            def __init__(self) -> None:
                self.board: dict[str, str] = {}

            @hookimpl
            def hcm_ward_alarm(self, alarm: Alarm, change: str) -> None:
                where = alarm.bed or alarm.location or "location unknown"
                self.board[alarm.alarm_id] = f"{alarm.kind} at {where}: {change}"
    """


# =====================================================================================
# Printing (receipts and reports)
# =====================================================================================


@hookspec(firstresult=True)
def hcm_print(document: PrintDocument) -> str | None:
    """Print a receipt, a list, a bill or a report on this plugin's printer.

    Called by ``Middleware.receipts`` (``print``, ``movement``, ``reprint``, ``bill``,
    ``report``), and by the payment flows after each confirmed movement when
    ``[printing] receipts`` is on. First non-None result wins: a printer that does not
    take this kind of document (``document.medium`` is ``"receipt"`` for the thermal
    printer, ``"page"`` for the page printer) returns ``None``.

    A failure is raised, never returned: the caller records it against the document and
    the transaction it belongs to stands (the journal's movement is never undone by a
    printer). The built-in printers — ESC/POS and PDF — are set up from ``[printing]``.

    :param document: the :class:`~hcmiddleware.models.PrintDocument`, laid out by the
        printer for its paper; ``document.reprint`` asks for the copy mark.
    :return: the printer's reference for the job (a spool ID, a file path).

    Example::

        from hcmiddleware import hookimpl
        from hcmiddleware.models import PrintDocument
        from hcmiddleware.printing import escpos_bytes


        class NetworkReceiptPrinter:
            @hookimpl
            def hcm_print(self, document: PrintDocument) -> str | None:
                if document.medium != "receipt":
                    return None  # pages go to another printer
                data = escpos_bytes(document, width=48)
                self.socket.sendall(data)  # raise on failure: it is recorded
                return f"{self.host}:{len(data)}"
    """


# =====================================================================================
# Audit (R-SEC-1)
# =====================================================================================


@hookspec
def hcm_audit_event(event: AuditEvent) -> None:
    """Record an audited action (a read of personal health data, a money movement).

    Called by ``middleware.audit`` once the action's entry is committed to the
    tamper-evident log (``docs/audit.md``). Notification: every plugin receives every
    event (a SIEM forwarder, a log shipper); the built-in sink logs it to the
    ``hcmiddleware.audit`` logger.

    :param event: the entry as the log holds it (an :class:`~hcmiddleware.models.AuditEntry`
        with ``seq`` and ``hash``); its ``subject`` is an opaque ID, never a name.
    :return: nothing.

    Example::

        import json
        import logging

        from hcmiddleware import hookimpl
        from hcmiddleware.models import AuditEvent

        siem = logging.getLogger("hospital.siem")


        class SiemForwarder:
            @hookimpl
            def hcm_audit_event(self, event: AuditEvent) -> None:
                siem.info(json.dumps(event.model_dump(mode="json"), ensure_ascii=False))
    """


@hookspec
def hcm_audit_checkpoint(checkpoint: AuditCheckpoint) -> None:
    """A checkpoint of the audit chain was made: push it out of the database's reach.

    Called by ``middleware.audit`` every ``[audit] checkpoint_every`` entries or
    ``checkpoint_minutes`` minutes, when the Middleware closes and on
    ``hcm audit checkpoint``, after the checkpoint is committed. Notification: a plugin keeps the
    checkpoint somewhere an intruder in the database cannot rewrite (the HIS, a syslog
    server, another machine), so ``hcm audit verify`` can prove the log against it. The
    built-in sink appends it to ``[audit] checkpoint_file``. A failing sink is logged;
    the checkpoint stays in the database.

    :param checkpoint: the last entry's number and hash, signed with the terminal's key
        (``signature`` is ``None`` when no ``[audit] signing_key`` is configured).
    :return: nothing.

    Example::

        import urllib.request

        from hcmiddleware import hookimpl
        from hcmiddleware.models import AuditCheckpoint


        class CheckpointsToTheRecordsOffice:
            url = "https://records.example/audit-checkpoints"

            @hookimpl
            def hcm_audit_checkpoint(self, checkpoint: AuditCheckpoint) -> None:
                body = checkpoint.model_dump_json().encode()
                request = urllib.request.Request(self.url, data=body, method="POST")
                urllib.request.urlopen(request, timeout=5).close()
    """

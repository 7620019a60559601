"""The ward as a typed service (``middleware.ward``): bands, bedside checks, alarms.

Everything the ward does goes through here — a HIS, a device plugin, ``hcm ward`` —
so that each act is audited and the ``hcm_ward_*`` hooks fire wherever it comes from.
See ``docs/ward.md`` for the story and ``docs/configuration.md`` for ``[ward]``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from hcmiddleware import storage
from hcmiddleware._optional import needs_extra
from hcmiddleware.errors import (
    HcmError,
    OrderNotExecutableError,
    ResidentNotFoundError,
    VerificationFailedError,
    WardError,
)
from hcmiddleware.models import (
    Admission,
    Alarm,
    BandEvent,
    BedsideExecution,
    BedsideScan,
    EmergencyCall,
    HospitalPatient,
    IdentifierKind,
    LocationReport,
    Order,
    OrderExecution,
    Verdict,
    WardSummary,
    WristbandBinding,
)
from hcmiddleware.ward.alarms import AlarmDesk, Received, Reject
from hcmiddleware.ward.bands import Audited, BandStore
from hcmiddleware.ward.executions import ExecutionStore
from hcmiddleware.ward.orders import OrderStore
from hcmiddleware.ward.settings import OrderRule, WardSettings
from hcmiddleware.ward.verification import order_type_of, verify

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from hcmiddleware.runtime import Middleware

__all__ = ["Ward"]

log = logging.getLogger("hcmiddleware.ward")

SCOPE = "ward_wristbands"
_DRUG_KINDS = {"drug", "skin_test"}


class Ward:
    """Wristbands, the three checks and seven verifications, alarms and locations.

    Built by the Middleware; the database is migrated and the keys bound on first use.
    """

    def __init__(self, middleware: Middleware) -> None:
        self._mw = middleware
        self._lock = threading.Lock()
        self._bands: BandStore | None = None
        self._executions: ExecutionStore | None = None
        self._desk: AlarmDesk | None = None
        self._orders: OrderStore | None = None
        self._escalator: threading.Thread | None = None
        self._stop = threading.Event()
        #: writes the positions noted by receive (see AlarmDesk.write_locations)
        self._locator: threading.Thread | None = None
        self._stop_locating = threading.Event()
        self._closed = False

    # -- set-up ---------------------------------------------------------------------------

    @property
    def settings(self) -> WardSettings:
        """The ``[ward]`` section."""
        return self._mw.config.ward

    def _together(self) -> bool:
        """Whether an act's audit entry commits in the act's own transaction: the audit
        log keeps the ward's database (always, but for a log given an engine of its own)."""
        return self._mw.audit.engine is self._mw.engine

    def _entry(
        self,
        action: str,
        *,
        actor: str,
        outcome: str = "ok",
        subject: str | None = None,
        **details: str,
    ) -> Audited | None:
        """The act's audit entry, to be written in the act's own transaction by the store
        (``audited(conn, found)``: about ``subject`` if given, else about what the store
        found — the band's resident); ``None`` when the audit log keeps another database
        than the ward's (then the service writes it once the act has committed)."""
        audit = self._mw.audit
        if not self._together():
            return None

        def audited(conn: Connection, found: str) -> None:
            audit.record(
                action,
                actor=actor,
                subject=subject or found,
                outcome=outcome,  # type: ignore[arg-type]
                details=details,
                connection=conn,
            )

        return audited

    def _ready(self) -> tuple[BandStore, ExecutionStore, AlarmDesk]:
        with self._lock:
            if self._bands is None or self._executions is None or self._desk is None:
                protector = self._mw.residents.index.protector  # migrates, binds the keys
                engine = self._mw.engine
                protector.bind(engine, [SCOPE])
                self._bands = BandStore(
                    engine,
                    pattern=self.settings.band_id_pattern,
                    seal=lambda data: protector.encrypt(SCOPE, data, "ward_wristbands.card"),
                    unseal=lambda data: protector.decrypt(data, "ward_wristbands.card"),
                )
                self._executions = ExecutionStore(engine)
                self._desk = AlarmDesk(engine, self.settings.alarms)
            return self._bands, self._executions, self._desk

    @property
    def bands(self) -> BandStore:
        """The wristband bindings' store."""
        return self._ready()[0]

    @property
    def order_store(self) -> OrderStore:
        """The stays' orders as the HIS last gave them (``[ward] orders_fresh_for``)."""
        with self._lock:
            if self._orders is None:
                self._orders = OrderStore(self.settings.orders_fresh_for)
            return self._orders

    @property
    def desk(self) -> AlarmDesk:
        """The alarms' and locations' store."""
        return self._ready()[2]

    def close(self) -> None:
        """Stop the escalation thread and write the positions not written yet (the
        Middleware calls this when it closes); positions received later are written as
        they come."""
        self._stop.set()
        thread = self._escalator
        if thread is not None:
            thread.join(timeout=5)
        self._escalator = None
        with self._lock:
            self._closed = True
            locator, self._locator = self._locator, None
        self._stop_locating.set()
        if locator is not None:
            locator.join(timeout=5)
        self._write_locations()

    # -- wristbands -------------------------------------------------------------------------

    def bind(
        self,
        wristband_id: str,
        admission: Admission,
        *,
        card_number: str,
        resident_id: str | None = None,
        kind: str = "passive",
        actor: str = "admissions",
    ) -> WristbandBinding:
        """Bind a band to the stay of the health card's holder (at admission).

        The same band bound to the same stay again answers the first binding.

        :raises ResidentNotFoundError: no resident holds this card number.
        :raises WristbandInUseError: the band is another stay's, or the stay has a band.
        :raises WristbandDeadError: the band was replaced once; it is never bound again.
        """
        if kind not in {"passive", "active"}:
            raise WardError(
                f"no band kind {kind!r}", hint="a band is 'passive' (label) or 'active'"
            )
        if resident_id is None:
            resident = self._mw.residents.lookup(IdentifierKind.CARD_NUMBER, card_number)
            if resident is None:
                raise ResidentNotFoundError(
                    "no resident holds this health card",
                    hint="read the card at the admissions desk first (it enrols the holder)",
                )
            resident_id = resident.resident_id
        details = {"band": wristband_id, "admission": admission.admission_id}
        audited = self._entry("ward.bind", actor=actor, **details)
        binding, new = self.bands.bind(
            wristband_id,
            admission,
            resident_id=resident_id,
            card_number=card_number,
            kind=kind,
            actor=actor,
            audited=audited,
        )
        self._mw.audit.flush()  # announce the entry committed with the binding
        if new:
            self._mw.hooks.hcm_ward_wristband_bound(binding=binding)
        if not new or audited is None:  # the same binding asked for again is audited too
            self._mw.audit.record("ward.bind", actor=actor, subject=resident_id, details=details)
        return binding

    def rebind(
        self,
        old_wristband_id: str,
        new_wristband_id: str,
        *,
        reason: str = "lost",
        kind: str | None = None,
        actor: str = "ward",
    ) -> WristbandBinding:
        """Replace a lost or broken band: the old one is dead at once, the new one active."""
        details = {"band": new_wristband_id, "old_band": old_wristband_id, "reason": reason}
        audited = self._entry("ward.rebind", actor=actor, **details)
        _dead, made = self.bands.rebind(
            old_wristband_id,
            new_wristband_id,
            reason=reason,
            kind=kind,
            actor=actor,
            audited=audited,
        )
        self._mw.audit.flush()
        self._mw.hooks.hcm_ward_wristband_bound(binding=made)
        if audited is None:
            self._mw.audit.record(
                "ward.rebind", actor=actor, subject=made.resident_id, details=details
            )
        return made

    def unbind(
        self, wristband_id: str, *, reason: str = "discharged", actor: str = "ward"
    ) -> WristbandBinding:
        """End the band's binding (discharge); it identifies nobody from now on."""
        details = {"band": wristband_id, "reason": reason}
        audited = self._entry("ward.unbind", actor=actor, **details)
        done = self.bands.release(wristband_id, reason=reason, audited=audited)
        self._mw.audit.flush()
        if audited is None:
            self._mw.audit.record(
                "ward.unbind", actor=actor, subject=done.resident_id, details=details
            )
        return done

    def release_stay(self, admission_id: str, *, actor: str = "ward") -> WristbandBinding | None:
        """Unbind the stay's band, if it has one (the inpatient flow calls it at discharge)."""
        current = self.bands.of_stay(admission_id)
        if current is None:
            return None
        return self.unbind(current.wristband_id, reason="discharged", actor=actor)

    def binding(self, wristband_id: str) -> WristbandBinding:
        """The band's active binding.

        :raises UnknownWristbandError: never bound here.
        :raises WristbandDeadError: replaced; ``replaced_by`` names the new band.
        :raises WristbandReleasedError: the stay ended (discharge).
        """
        return self.bands.active(wristband_id)

    def band_of_card(self, card_number: str) -> WristbandBinding:
        """The active band of the health card's holder (the kiosk's "card" path)."""
        resident = self._mw.residents.lookup(IdentifierKind.CARD_NUMBER, card_number)
        found = self.bands.of_resident(resident.resident_id) if resident else None
        if found is None:
            raise ResidentNotFoundError(
                "this card's holder has no stay in the ward",
                hint="inpatients only: an outpatient uses the outpatient kiosk",
            )
        return found

    def move(self, wristband_id: str, *, ward: str, bed: str, actor: str = "ward") -> None:
        """The patient changed bed: the binding follows (the bed check uses it)."""
        audited = self._entry("ward.move", actor=actor, band=wristband_id)
        moved = self.bands.move(wristband_id, ward=ward, bed=bed, audited=audited)
        self._mw.audit.flush()
        if audited is None:
            self._mw.audit("ward.move", actor=actor, subject=moved.resident_id, band=wristband_id)

    def label(self, wristband_id: str, *, kind: str = "zpl", actor: str = "admissions") -> bytes:
        """The band's printable label: ``zpl`` (ZPL II text, UTF-8) or ``png``.

        :raises LabelError: no font for the PNG label, or the text does not fit.
        """
        from hcmiddleware.ward.labels import label_fields, png_label, zpl_label

        if kind not in {"zpl", "png"}:
            raise WardError(f"no label format {kind!r}", hint="ask for 'zpl' or 'png'")
        binding = self.binding(wristband_id)
        resident = self._mw.residents.get(binding.resident_id)
        fields = label_fields(binding, resident, datetime.now().date())
        settings = self.settings.labels
        if kind == "zpl":
            made = zpl_label(fields, settings).encode("utf-8")
        else:
            with needs_extra("PNG band labels"):
                made = png_label(fields, settings)
        self._mw.audit(
            "ward.label", actor=actor, subject=binding.resident_id, band=wristband_id, kind=kind
        )
        return made

    # -- orders and the bedside checks --------------------------------------------------------

    @staticmethod
    def _patient(binding: WristbandBinding, hospital_code: str) -> HospitalPatient:
        return HospitalPatient(
            hospital_code=hospital_code,
            patient_id=binding.patient_id or "",
            resident_id=binding.resident_id,
        )

    def orders(self, wristband_id: str, *, actor: str = "handheld") -> list[Order]:
        """The stay's orders from the HIS, for the handheld that scanned the band.

        Always asked of the HIS; the answer is kept for the scans that follow (see
        ``[ward] orders_fresh_for``).
        """
        binding = self.binding(wristband_id)
        orders = self._fetch(binding)
        self._mw.audit("ward.orders", actor=actor, subject=binding.resident_id, band=wristband_id)
        return orders

    def receive_orders(self, orders: Iterable[Order]) -> int:
        """Orders the HIS pushed (an RDE^O11 read by the HL7 adapter, say).

        Each replaces the copy the ward keeps of it, so the scans that follow see it
        without asking the HIS; nothing else is done with them. Returns how many were
        kept (none when ``[ward] orders_fresh_for`` is 0).
        """
        return self.order_store.pushed(orders)

    def _fetch(self, binding: WristbandBinding) -> list[Order]:
        """The stay's orders from the HIS, kept in the order store."""
        orders = self._mw.his.orders(
            self._patient(binding, self._mw.his.hospital_code), binding.admission_id
        )
        self.order_store.fetched(binding.admission_id, orders)
        return orders

    def _order_for(
        self, scan: BedsideScan, binding: WristbandBinding, *, fresh: bool = False
    ) -> Order | None:
        """The scanned order of the band's stay: from the order store while the HIS's
        word on it is fresh, else (or when ``fresh``) from the HIS."""
        if not fresh:
            kept = self.order_store.find(binding.admission_id, scan.order_id)
            if kept is not None:
                return kept
        orders = self._fetch(binding)
        return next((o for o in orders if o.order_id == scan.order_id), None)

    def _executable(
        self, scan: BedsideScan, binding: WristbandBinding, order: Order, executions: ExecutionStore
    ) -> None:
        """Refuse an order executed here already, or one the HIS shows cancelled or done."""
        existing = executions.live(order)
        if existing is not None:
            self._refused(scan, binding, ("executed",), "before")
            raise executions.already(order, existing)
        if order.status in {"cancelled", "done"}:
            self._refused(scan, binding, ("status",), "before")
            raise OrderNotExecutableError(
                f"order {order.order_id} is {order.status} in the hospital system",
                order_id=order.order_id,
                status=order.status,
            )

    def rule(self, order: Order) -> OrderRule:
        """The ``[ward.rules]`` entry that applies to ``order``."""
        return self.settings.rule(order_type_of(order))

    def _verdict(
        self, scan: BedsideScan, binding: WristbandBinding, order: Order, rule: OrderRule
    ) -> Verdict:
        name = None
        if scan.patient_name is not None:
            name = self._mw.residents.get(binding.resident_id).name
        at = scan.scanned_at or datetime.now().astimezone()
        return verify(scan, order, binding, rule, at=at, patient_name=name)

    def _not_this_patients(self, scan: BedsideScan) -> VerificationFailedError:
        reason = (
            f"order {scan.order_id} is not among the orders of the patient wearing band "
            f"{scan.wristband_id}"
        )
        return VerificationFailedError(
            f"refused: name — {reason}",
            order_id=scan.order_id,
            failed=("name",),
            reasons={"name": reason},
        )

    def verify(self, scan: BedsideScan) -> Verdict:
        """The seven verifications of ``scan``, without executing anything.

        The order comes from the order store while the HIS's word on it is fresh
        (``[ward] orders_fresh_for``), else from the HIS; :meth:`begin` asks the HIS
        afresh before anything is executed.

        :raises WristbandError: the band is unknown, replaced or released.
        :raises VerificationFailedError: the order is not this patient's at all.
        :raises AlreadyExecutedError: this occurrence of the order was executed already.
        :raises OrderNotExecutableError: the HIS showed it cancelled or done.
        """
        binding = self.binding(scan.wristband_id)
        order = self._order_for(scan, binding)
        if order is None:
            self._refused(scan, binding, ("name",), "before")
            raise self._not_this_patients(scan)
        self._executable(scan, binding, order, self._ready()[1])
        verdict = self._verdict(scan, binding, order, self.rule(order))
        self._mw.audit(
            "ward.verify",
            actor=scan.nurse_id,
            subject=binding.resident_id,
            outcome="ok" if verdict.ok else "refused",
            order=order.order_id,
            failed=",".join(verdict.failed),
        )
        return verdict

    def _refused(
        self, scan: BedsideScan, binding: WristbandBinding, failed: tuple[str, ...], check: str
    ) -> None:
        self._mw.audit(
            "ward.check",
            actor=scan.nurse_id,
            subject=binding.resident_id,
            outcome="refused",
            order=scan.order_id,
            check=check,
            failed=",".join(failed),
        )

    def _raise_failed(self, verdict: Verdict, check: str) -> None:
        reasons = {r.name: r.reason for r in verdict.results if r.outcome == "failed"}
        first = verdict.failed[0]
        raise VerificationFailedError(
            f"refused at the check {check} execution: {', '.join(verdict.failed)} — "
            f"{reasons[first]}",
            order_id=verdict.order_id,
            failed=verdict.failed,
            reasons=reasons,
            check=check,
        )

    def begin(self, scan: BedsideScan) -> BedsideExecution:
        """The check before execution (操作前查): the seven verifications, then recorded.

        Refused when any verification fails, when the rule asks for a second nurse and
        none (or the same nurse) signed, or when the order was executed already.
        The order is always asked of the HIS here (never taken from the order store), so
        one cancelled or completed there a moment ago is refused.
        An order whose rule has no further checks is done (and uploaded) at once.

        :raises VerificationFailedError: naming each verification that failed.
        :raises AlreadyExecutedError: this occurrence of the order was executed already.
        :raises OrderNotExecutableError: the HIS shows it cancelled or done.
        """
        _bands, executions, _desk = self._ready()
        binding = self.binding(scan.wristband_id)
        order = self._order_for(scan, binding, fresh=True)
        if order is None:
            self._refused(scan, binding, ("name",), "before")
            raise self._not_this_patients(scan)
        self._executable(scan, binding, order, executions)
        rule = self.rule(order)
        verdict = self._verdict(scan, binding, order, rule)
        if not verdict.ok:
            self._refused(scan, binding, verdict.failed, "before")
            self._raise_failed(verdict, "before")
        if rule.second_nurse and (
            not scan.second_nurse_id or scan.second_nurse_id == scan.nurse_id
        ):
            reason = f"{verdict.order_type} orders need a second nurse's signature"
            self._refused(scan, binding, ("second_nurse",), "before")
            raise VerificationFailedError(
                f"refused at the check before execution: second_nurse — {reason}",
                order_id=order.order_id,
                failed=("second_nurse",),
                reasons={"second_nurse": reason},
                hint="a second nurse scans their badge to sign the double check",
            )
        checks = {
            r.name: r.outcome == "passed" for r in verdict.results if r.outcome != "not_applicable"
        }
        checks["check.before"] = True
        next_state = _next(rule, "before")
        at = scan.scanned_at or datetime.now(UTC)
        resident_id = binding.resident_id
        together = self._together()

        def entry(execution_id: str) -> dict[str, Any]:  # about the resident
            return {
                "actor": scan.nurse_id,
                "subject": resident_id,
                "details": {"order": order.order_id, "check": "before", "execution": execution_id},
            }

        def audited(conn: Connection, execution_id: str) -> None:
            self._mw.audit.record("ward.check", connection=conn, **entry(execution_id))

        started = executions.start(
            order,
            admission_id=binding.admission_id,
            wristband_id=binding.wristband_id,
            nurse_id=scan.nurse_id,
            second_nurse=scan.second_nurse_id if rule.second_nurse else None,
            order_type=verdict.order_type,
            checks=checks,
            next_state=next_state,
            at=at,
            given=scan if order.kind in _DRUG_KINDS else None,
            patient_id=binding.patient_id,
            audited=audited if together else None,
        )
        self._mw.audit.flush()
        if not together:
            self._mw.audit.record("ward.check", **entry(started.execution_id))
        if next_state == "done":
            return self._upload(started)
        return started

    def check(self, execution_id: str, scan: BedsideScan) -> BedsideExecution:
        """The next check due (操作中查 during, 操作后查 after) of a started execution.

        The band and the label are verified again (the time window was checked before);
        the last check completes the execution and uploads it to the HIS.

        :raises ExecutionStateError: the execution is done, abandoned or not yet there.
        :raises VerificationFailedError: a verification failed (the execution stays at
            this check: scan again when it is corrected).
        """
        _bands, executions, _desk = self._ready()
        current = executions.get(execution_id)
        stage = current.state
        if stage not in {"during", "after"}:
            raise _state_error(current)
        binding = self.binding(scan.wristband_id)
        if scan.wristband_id != current.wristband_id or scan.order_id != current.order_id:
            reason = "the band or order scanned is not the one this execution started with"
            self._refused(scan, binding, ("name",), stage)
            raise VerificationFailedError(
                f"refused at the check {stage} execution: name — {reason}",
                order_id=current.order_id,
                failed=("name",),
                reasons={"name": reason},
                check=stage,
            )
        order = self._order_for(scan, binding)
        if order is None:
            self._refused(scan, binding, ("name",), stage)
            raise self._not_this_patients(scan)
        rule = self.rule(order)
        again = rule.model_copy(
            update={"verifications": tuple(v for v in rule.verifications if v != "time")}
        )
        verdict = self._verdict(scan, binding, order, again)
        if not verdict.ok:
            self._refused(scan, binding, verdict.failed, stage)
            self._raise_failed(verdict, stage)
        checks = dict(current.checks)
        checks[f"check.{stage}"] = True
        next_state = _next(rule, stage)
        when = scan.scanned_at or datetime.now(UTC)
        executed_at = None
        if next_state == "done":
            executed_at = current.executed_at or current.started_at
        elif stage == "during":
            executed_at = when
        details = {"order": order.order_id, "check": stage, "execution": execution_id}
        audited = self._entry(
            "ward.check", actor=scan.nurse_id, subject=binding.resident_id, **details
        )
        moved = executions.advance(
            execution_id,
            expected=stage,
            next_state=next_state,
            checks=checks,
            executed_at=executed_at,
            audited=audited,
        )
        self._mw.audit.flush()
        if audited is None:
            self._mw.audit.record(
                "ward.check", actor=scan.nurse_id, subject=binding.resident_id, details=details
            )
        if next_state == "done":
            return self._upload(moved)
        return moved

    def execute(self, scan: BedsideScan) -> BedsideExecution:
        """Every check the order's rule asks for, in order, with the one scan.

        For a handheld that confirms an order in one step; the execution still passes
        through each check's state, and a failure leaves it at that check.
        """
        execution = self.begin(scan)
        while execution.state in {"during", "after"}:
            execution = self.check(execution.execution_id, scan)
        return execution

    def abandon(self, execution_id: str, *, reason: str, actor: str) -> BedsideExecution:
        """Give up a started execution (the patient refused, the drip was not hung)."""
        _bands, executions, _desk = self._ready()
        current = executions.get(execution_id)
        details = {"order": current.order_id, "reason": reason[:80]}
        audited = self._entry("ward.abandon", actor=actor, subject=current.admission_id, **details)
        done = executions.abandon(
            execution_id,
            audited=audited,
        )
        self._mw.audit.flush()
        if audited is None:
            self._mw.audit.record(
                "ward.abandon", actor=actor, subject=done.admission_id, details=details
            )
        return done

    def _upload(self, execution: BedsideExecution) -> BedsideExecution:
        _bands, executions, _desk = self._ready()
        executed_at = execution.executed_at or execution.started_at
        record = OrderExecution(
            order_id=execution.order_id,
            admission_id=execution.admission_id,
            wristband_id=execution.wristband_id,
            executed_by=execution.nurse_id,
            executed_at=executed_at,
            checks=execution.checks,
            second_nurse=execution.second_nurse,
            order_type=execution.order_type,
            started_at=execution.started_at,
            patient_id=execution.patient_id,
            drug_code=execution.drug_code,
            dose=execution.dose,
            route=execution.route,
        )
        try:
            ok = self._mw.his.order_executed(record)
            error = None if ok else "the hospital system did not confirm the execution"
        except HcmError as exc:
            ok, error = False, exc.message
            log.warning("execution %s not recorded by the HIS: %s", execution.execution_id, error)
        details = {
            "order": execution.order_id,
            "execution": execution.execution_id,
            "his": "recorded" if ok else "failed",
        }
        outcome = "ok" if ok else "failed"
        audited = self._entry(
            "ward.execute",
            actor=execution.nurse_id,
            outcome=outcome,
            subject=execution.admission_id,
            **details,
        )
        updated = executions.uploaded(
            execution.execution_id,
            ok=bool(ok),
            error=error,
            audited=audited,
        )
        self._mw.audit.flush()
        # the HIS changes an executed order (done, or its next occurrence): ask it next time
        self.order_store.forget(execution.admission_id, execution.order_id)
        self._mw.hooks.hcm_ward_order_executed(execution=record)
        if audited is None:
            self._mw.audit(
                "ward.execute",
                actor=execution.nurse_id,
                subject=execution.admission_id,
                outcome=outcome,  # type: ignore[arg-type]
                **details,
            )
        return updated

    def resend(self) -> list[BedsideExecution]:
        """Upload again every done execution the HIS has not recorded; the results."""
        _bands, executions, _desk = self._ready()
        return [self._upload(e) for e in executions.pending_uploads()]

    def executions(self, admission_id: str) -> list[BedsideExecution]:
        """The stay's bedside executions, oldest first."""
        return self._ready()[1].of_stay(admission_id)

    def execution(self, execution_id: str) -> BedsideExecution:
        """One execution."""
        return self._ready()[1].get(execution_id)

    # -- alarms and locations -----------------------------------------------------------------

    def receive(self, events: Iterable[BandEvent]) -> Received:
        """Take device events: the alarms stored in one transaction, then announced.

        Returns once the alarm events are committed; a device plugin acknowledges them
        to the device only then. New alarms go to ``hcm_ward_alarm`` (``raised``) and,
        for an emergency, ``hcm_ward_emergency_call``; a band that moved goes to
        ``hcm_ward_location``. The escalation thread starts with the first alarm.

        Positions are noted (the newest per band, :meth:`location` answers from it at
        once) and written to the database by a thread of their own every
        ``[ward.alarms] locations_every`` seconds, and when the Middleware closes.
        """
        audit = self._mw.audit
        together = audit.engine is self._mw.engine

        def audited(conn: Connection, alarm: Alarm) -> None:
            audit.record("ward.alarm", connection=conn, **_alarm_entry(alarm))

        batch = list(events)
        # positions are noted, and written by a thread of their own, a few bands per
        # transaction: a stream of them never holds an alarm's commit for long
        deferred = any(e.location for e in batch) and self._start_locating()
        # the alarm and its audit entry commit together (one durable commit), and the
        # nurse station hears of every new alarm of the batch before anything else runs
        done = self.desk.receive(
            batch, on_raised=audited if together else None, defer_locations=deferred
        )
        if deferred and self._closed:  # closed meanwhile: its last write may be past
            self._write_locations()
        for alarm in done.raised:
            self._announce(alarm, "raised")
        for alarm in done.raised:
            if alarm.kind == "emergency":
                self._mw.hooks.hcm_ward_emergency_call(
                    call=EmergencyCall(
                        wristband_id=alarm.wristband_id,
                        admission_id=alarm.admission_id,
                        raised_at=alarm.raised_at,
                        location=alarm.location,
                        alarm_id=alarm.alarm_id,
                        ward=alarm.ward,
                        bed=alarm.bed,
                    )
                )
        if together:
            # a checkpoint that falls due is made by the escalation thread, not here:
            # the next call waits for this thread
            audit.flush(checkpoint=False)
        else:
            for alarm in done.raised:
                audit.record("ward.alarm", **_alarm_entry(alarm))
        # a move is announced only to plugins that listen (a stream of positions would
        # otherwise cost a hook call per band per fix)
        if done.moved and self._mw.dispatcher.implementers("hcm_ward_location"):
            for report in done.moved:
                self._mw.hooks.hcm_ward_location(report=report)
        if done.raised:
            self.start_escalation()
        return done

    def _announce(self, alarm: Alarm, change: str) -> None:
        self._mw.hooks.hcm_ward_alarm(alarm=alarm, change=change)

    def reject(self, source: str, payload: bytes, reason: str) -> Reject:
        """Keep a device message that could not be read (a plugin calls this)."""
        kept = self.desk.reject(source, payload, reason)
        self._mw.audit("ward.reject", actor=source[:40], outcome="refused", reason=reason[:80])
        return kept

    def rejects(self, *, limit: int = 100) -> list[Reject]:
        """The device messages kept as unreadable, newest first."""
        return self.desk.rejects(limit=limit)

    def alarms(self, *, open_only: bool = True, limit: int = 200) -> list[Alarm]:
        """Alarms, newest first (only those not acknowledged by default)."""
        return self.desk.alarms(open_only=open_only, limit=limit)

    def alarm(self, alarm_id: str) -> Alarm:
        """One alarm. :raises UnknownAlarmError: no such alarm."""
        return self.desk.get(alarm_id)

    def acknowledge(self, alarm_id: str, nurse_id: str) -> Alarm:
        """A nurse took the alarm; announced as ``acknowledged`` (the band is told)."""
        audited = self._entry("ward.acknowledge", actor=nurse_id, alarm=alarm_id)
        alarm, changed = self.desk.acknowledge(alarm_id, nurse_id, audited=audited)
        self._mw.audit.flush()
        if changed:
            self._announce(alarm, "acknowledged")
            if audited is None:
                self._mw.audit(
                    "ward.acknowledge", actor=nurse_id, subject=alarm.admission_id, alarm=alarm_id
                )
        return alarm

    def escalate_due(self, now: datetime | None = None) -> list[Alarm]:
        """Escalate the alarms nobody acknowledged in time (the thread calls this)."""
        audit = self._mw.audit
        together = self._together()

        def audited(conn: Connection, alarm: Alarm) -> None:
            audit.record("ward.escalate", connection=conn, **_escalation_entry(alarm))

        escalated = self.desk.escalate_due(now, audited=audited if together else None)
        if escalated:
            audit.flush()
        for alarm in escalated:
            self._announce(alarm, "escalated")
            if not together:
                audit.record("ward.escalate", **_escalation_entry(alarm))
        return escalated

    def _start_locating(self) -> bool:
        """Start the thread that writes the noted positions, unless the ward is closed
        (then False: they are written as they come)."""
        with self._lock:
            if self._closed:
                return False
            if self._locator is None or not self._locator.is_alive():
                self._stop_locating.clear()
                thread = threading.Thread(target=self._locate_loop, name="hcm-ward-locations")
                thread.daemon = True
                self._locator = thread
                thread.start()
        return True

    def _locate_loop(self) -> None:
        from hcmiddleware.access.context import system

        with system():  # the core's own work, not a caller's
            while not self._stop_locating.wait(self.settings.alarms.locations_every):
                self._write_locations()
                self._fold_log()

    def _fold_log(self) -> None:
        """Checkpoint the database here, outside the writers' turn: an alarm's commit
        leaves it to others (see storage.begin_write, urgent)."""
        try:
            storage.fold_log(self._mw.engine)
        except Exception:
            log.exception("checkpointing the database failed; trying again")

    def _write_locations(self) -> None:
        desk = self._desk  # None: the ward was never used, nothing was noted
        if desk is None:
            return
        try:
            desk.write_locations()
        except Exception:  # kept for the next write
            log.exception("writing the bands' positions failed; trying again")

    def start_escalation(self) -> None:
        """Start the thread that escalates unacknowledged alarms (idempotent)."""
        with self._lock:
            if self._escalator is not None and self._escalator.is_alive():
                return
            self._stop.clear()
            thread = threading.Thread(target=self._escalate_loop, name="hcm-ward-escalation")
            thread.daemon = True
            self._escalator = thread
        thread.start()

    def _escalate_loop(self) -> None:
        from hcmiddleware.access.context import system

        with system():  # the core's own work, not a caller's
            self._escalate_until_stopped()

    def _escalate_until_stopped(self) -> None:
        while not self._stop.wait(self.settings.alarms.check_every):
            try:
                self.escalate_due()
                self._mw.audit.flush()  # the checkpoint receive left, if one is due
            except Exception:
                log.exception("escalating alarms failed; trying again")
            self._fold_log()

    def location(self, wristband_id: str) -> LocationReport | None:
        """The band's last known location, or ``None`` if it never sent one."""
        return self.desk.location(wristband_id)

    # -- the kiosk ---------------------------------------------------------------------------

    def summary(
        self,
        *,
        wristband_id: str | None = None,
        card_number: str | None = None,
        actor: str = "kiosk",
    ) -> WardSummary:
        """What an inpatient sees at the kiosk: current drugs, executions, payments.

        Give the band's ID or the health card's number.
        """
        if (wristband_id is None) == (card_number is None):
            raise WardError(
                "give the band or the card, one of them",
                hint="scan the wristband, or insert the health card",
            )
        binding = (
            self.binding(wristband_id)
            if wristband_id is not None
            else self.band_of_card(card_number or "")
        )
        patient = self._patient(binding, self._mw.his.hospital_code)
        orders = self._fetch(binding)
        drugs = tuple(
            o for o in orders if o.kind in _DRUG_KINDS and o.status in {"ordered", "in_progress"}
        )
        charges = tuple(self._mw.his.charges(patient, binding.admission_id))
        bill = None
        if self._mw.his.provides("his.inpatient"):
            stay = Admission(
                admission_id=binding.admission_id,
                patient_id=binding.patient_id or "",
                ward=binding.ward or "",
                bed=binding.bed or "",
                admitted_at=binding.admitted_at or binding.bound_at,
            )
            bill = self._mw.his.bill(stay)
        self._mw.audit(
            "ward.kiosk",
            actor=actor,
            subject=binding.resident_id,
            by="band" if wristband_id is not None else "card",
        )
        return WardSummary(
            wristband_id=binding.wristband_id,
            admission_id=binding.admission_id,
            ward=binding.ward,
            bed=binding.bed,
            drugs=drugs,
            executions=tuple(self.executions(binding.admission_id)),
            charges=charges,
            bill=bill,
        )


def _alarm_entry(alarm: Alarm) -> dict[str, Any]:
    """The audit entry of a new alarm (``record``'s keyword arguments)."""
    return {
        "actor": alarm.wristband_id,
        "subject": alarm.admission_id,
        "details": {"kind": alarm.kind, "alarm": alarm.alarm_id},
    }


def _escalation_entry(alarm: Alarm) -> dict[str, Any]:
    """The audit entry of an escalation (``record``'s keyword arguments)."""
    return {
        "actor": "ward",
        "subject": alarm.admission_id,
        "details": {"alarm": alarm.alarm_id, "level": str(alarm.level)},
    }


def _next(rule: OrderRule, stage: str) -> str:
    """The check after ``stage`` in the rule's checks, or ``done``."""
    checks = list(rule.checks)
    position = checks.index(stage) if stage in checks else -1
    return checks[position + 1] if position + 1 < len(checks) else "done"


def _state_error(current: BedsideExecution) -> HcmError:
    from hcmiddleware.errors import ExecutionStateError

    if current.state == "done":
        return ExecutionStateError(
            f"execution {current.execution_id} is done",
            execution_id=current.execution_id,
            state=current.state,
            hint="the order was executed; nothing is left to check",
        )
    if current.state == "abandoned":
        return ExecutionStateError(
            f"execution {current.execution_id} was abandoned",
            execution_id=current.execution_id,
            state=current.state,
            hint="start the order again with a new scan",
        )
    return ExecutionStateError(
        f"execution {current.execution_id} is at the check {current.state}",
        execution_id=current.execution_id,
        state=current.state,
    )

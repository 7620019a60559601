"""The hospital's information system as a typed service (``middleware.his``).

A HIS vendor calls these methods instead of the ``hcm_his_*`` hooks. Each one:

* asks the enabled HIS adapters through the runtime's containment (timeouts, failures
  become :class:`~hcmiddleware.errors.PluginCallError` naming the adapter);
* raises :class:`~hcmiddleware.errors.NoAdapterError` naming the capability when no
  enabled adapter provides it — never ``None``, which would read as "not found";
* checks the answer's type and raises :class:`~hcmiddleware.errors.PluginResultError`
  naming the adapter when it is not what the hook promises;
* returns the domain model (``HospitalPatient``, ``Registration``, ``list[Order]`` …).

Only :meth:`His.find` can answer "not found" (``None``). The hooks themselves stay for
plugins and tests (``middleware.hooks``).

A *capability* is a set of hooks that only make sense together: an adapter that looks
patients up but cannot register them provides half of ``his.patients``, and
:meth:`His.check` (run by ``hcm doctor``) says so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from hcmiddleware.config import UNSET_INSTITUTION
from hcmiddleware.errors import FlowInputError, PluginResultError
from hcmiddleware.models import (
    Admission,
    AdmissionRequest,
    Bill,
    Charge,
    CheckResult,
    Deposit,
    Discharge,
    HospitalPatient,
    Order,
    OrderExecution,
    QueuePosition,
    Registration,
    RegistrationRequest,
    Report,
    Resident,
)
from hcmiddleware.typed import ask, ask_many, ask_one, checked

if TYPE_CHECKING:
    from hcmiddleware.card.data import CardRead
    from hcmiddleware.runtime import Middleware

__all__ = ["CAPABILITIES", "His"]

T = TypeVar("T")

#: Each HIS capability and the hooks an adapter implements to provide it.
CAPABILITIES: dict[str, tuple[str, ...]] = {
    "his.patients": ("hcm_his_lookup_patient", "hcm_his_register_patient"),
    "his.visits": ("hcm_his_register_visit", "hcm_his_queue_position"),
    "his.orders": ("hcm_his_list_orders",),
    "his.charges": ("hcm_his_list_charges", "hcm_his_charges_paid"),
    "his.reports": ("hcm_his_list_reports",),
    "his.inpatient": (
        "hcm_his_admit",
        "hcm_his_record_deposit",
        "hcm_his_inpatient_bill",
        "hcm_his_discharge",
    ),
    "his.order_execution": ("hcm_his_order_executed",),
}

_CAPABILITY_OF = {hook: cap for cap, hooks in CAPABILITIES.items() for hook in hooks}


class His:
    """The HIS adapters of one Middleware, behind typed calls."""

    def __init__(self, middleware: Middleware) -> None:
        self._mw = middleware

    # -- what is there ------------------------------------------------------------------

    @property
    def hospital_code(self) -> str:
        """This hospital's code (``[middleware] institution_code``)."""
        return self._mw.config.middleware.institution_code

    def _code(self, hospital_code: str | None) -> str:
        code = hospital_code or self.hospital_code
        if not code or code == UNSET_INSTITUTION:
            raise FlowInputError(
                "this hospital has no institution code",
                step="his",
                hint="set [middleware] institution_code in the config file",
            )
        return code

    def provides(self, capability: str) -> bool:
        """Does an enabled adapter provide every hook of ``capability``?"""
        hooks = CAPABILITIES[capability]
        return all(self._mw.dispatcher.implementers(h) for h in hooks)

    def _partial(self, hook: str) -> tuple[str, ...]:
        """Plugins that implement other hooks of ``hook``'s capability but not it."""
        siblings = CAPABILITIES[_CAPABILITY_OF[hook]]
        names: list[str] = []
        for other in siblings:
            for name in self._mw.dispatcher.implementers(other):
                if name not in names:
                    names.append(name)
        return tuple(names)

    def check(self) -> list[CheckResult]:
        """One result per capability some plugin provides only in part (for ``hcm doctor``)."""
        results: list[CheckResult] = []
        dispatcher = self._mw.dispatcher
        for capability, hooks in CAPABILITIES.items():
            by_plugin: dict[str, set[str]] = {}
            for hook in hooks:
                for name in dispatcher.implementers(hook):
                    by_plugin.setdefault(name, set()).add(hook)
            for name, has in sorted(by_plugin.items()):
                missing = [h for h in hooks if h not in has]
                if missing and not all(dispatcher.implementers(h) for h in missing):
                    results.append(
                        CheckResult(
                            name=capability,
                            ok=False,
                            detail=f"{name} implements {capability} only in part: "
                            f"missing {', '.join(missing)}",
                            hint=f"update {name}, or enable an adapter that implements "
                            f"{', '.join(missing)}",
                        )
                    )
        return results

    # -- calling ------------------------------------------------------------------------

    def _ask(self, hook: str, **kwargs: Any) -> tuple[str | None, Any]:
        return ask(
            self._mw, hook, capability=_CAPABILITY_OF[hook], partial=self._partial(hook), **kwargs
        )

    def _one(self, hook: str, kind: type[T], **kwargs: Any) -> T:
        return ask_one(
            self._mw,
            hook,
            kind,
            capability=_CAPABILITY_OF[hook],
            partial=self._partial(hook),
            **kwargs,
        )

    def _many(self, hook: str, kind: type[T], **kwargs: Any) -> list[T]:
        return ask_many(
            self._mw,
            hook,
            kind,
            capability=_CAPABILITY_OF[hook],
            partial=self._partial(hook),
            **kwargs,
        )

    # -- patients -----------------------------------------------------------------------

    def find(
        self, resident: Resident, *, hospital_code: str | None = None
    ) -> HospitalPatient | None:
        """The hospital's patient record for ``resident``, or ``None`` when the HIS has none.

        :raises NoAdapterError: no enabled adapter looks patients up.
        """
        plugin, value = self._ask(
            "hcm_his_lookup_patient", resident=resident, hospital_code=self._code(hospital_code)
        )
        if value is None:
            return None
        return checked("hcm_his_lookup_patient", plugin, value, HospitalPatient)

    def register(
        self,
        resident: Resident,
        *,
        card: CardRead | None = None,
        hospital_code: str | None = None,
    ) -> HospitalPatient:
        """Create the patient record in the HIS (or get the existing one; idempotent)."""
        return self._one(
            "hcm_his_register_patient",
            HospitalPatient,
            resident=resident,
            card=card,
            hospital_code=self._code(hospital_code),
        )

    def find_or_register(
        self,
        resident: Resident,
        *,
        card: CardRead | None = None,
        hospital_code: str | None = None,
    ) -> HospitalPatient:
        """The patient record: the index's link first, then the HIS, created if new.

        The HIS's answer is linked in the resident index, so the next visit does not
        ask again. Safe to retry: registering is idempotent per resident in every
        adapter. When one adapter both finds and registers patients, only its
        ``hcm_his_register_patient`` (find or create) is asked.
        """
        return self.resolve(resident, card=card, hospital_code=hospital_code)[0]

    def resolve(
        self,
        resident: Resident,
        *,
        card: CardRead | None = None,
        hospital_code: str | None = None,
    ) -> tuple[HospitalPatient, str]:
        """:meth:`find_or_register`, also saying where the answer came from.

        The second item is ``index`` (linked before), ``his`` (the HIS knew the
        patient) or ``his-created`` (registered just now).
        """
        code = self._code(hospital_code)
        rid = resident.resident_id
        residents = self._mw.residents
        known = residents.hospital_id(rid, code)
        if known is not None:
            return HospitalPatient(hospital_code=code, patient_id=known, resident_id=rid), "index"
        patient: HospitalPatient | None = None
        if not self._one_finds_and_creates():
            patient = self.find(resident, hospital_code=code)
        source = "his"
        if patient is None:
            patient = self.register(resident, card=card, hospital_code=code)
            source = "his-created" if patient.created else "his"
        # the link remembers what the HIS answers again (find and register are idempotent
        # per resident): it need not wait for the disk. The caller's next durable commit
        # (the flow's audit entry) carries it there; a power cut before then costs one
        # more question to the HIS at the next visit.
        residents.link_hospital_id(rid, code, patient.patient_id, durable=False)
        return patient, source

    def _one_finds_and_creates(self) -> bool:
        dispatcher = self._mw.dispatcher
        finders = dispatcher.implementers("hcm_his_lookup_patient")
        if not finders:
            return True  # nobody to ask but the registrar
        return len(finders) == 1 and finders == dispatcher.implementers("hcm_his_register_patient")

    # -- outpatient ---------------------------------------------------------------------

    def register_visit(
        self, patient: HospitalPatient, request: RegistrationRequest
    ) -> Registration:
        """Register the visit or book the appointment; once per ``request.request_id``."""
        return self._one("hcm_his_register_visit", Registration, patient=patient, request=request)

    def queue_position(self, registration: Registration) -> QueuePosition:
        """Where the patient stands in the department's queue."""
        return self._one("hcm_his_queue_position", QueuePosition, registration=registration)

    def orders(self, patient: HospitalPatient, visit_id: str) -> list[Order]:
        """The visit's orders."""
        return self._many("hcm_his_list_orders", Order, patient=patient, visit_id=visit_id)

    def charges(self, patient: HospitalPatient, visit_id: str) -> list[Charge]:
        """The visit's charges, paid and unpaid."""
        return self._many("hcm_his_list_charges", Charge, patient=patient, visit_id=visit_id)

    def charges_paid(
        self, patient: HospitalPatient, charge_ids: list[str], transaction_id: str
    ) -> None:
        """Tell the HIS the charges are paid by ``transaction_id`` (idempotent per ID).

        :raises PluginResultError: the adapter did not confirm it recorded the payment.
        """
        recorded = self._one(
            "hcm_his_charges_paid",
            bool,
            patient=patient,
            charge_ids=charge_ids,
            transaction_id=transaction_id,
        )
        if not recorded:
            raise PluginResultError(
                f"the hospital system did not record payment {transaction_id}",
                plugin=", ".join(self._mw.dispatcher.implementers("hcm_his_charges_paid")),
                hook="hcm_his_charges_paid",
                hint="mark the charges paid again with the same transaction ID; "
                "never pay them again",
            )

    def reports(self, patient: HospitalPatient, visit_id: str) -> list[Report]:
        """The visit's lab and exam reports (pending ones included)."""
        return self._many("hcm_his_list_reports", Report, patient=patient, visit_id=visit_id)

    # -- inpatient ----------------------------------------------------------------------

    def admit(self, patient: HospitalPatient, request: AdmissionRequest) -> Admission:
        """Admit the patient (idempotent per ``request.request_id``)."""
        return self._one("hcm_his_admit", Admission, patient=patient, request=request)

    def record_deposit(self, admission: Admission, deposit: Deposit) -> Admission:
        """Record a deposit the journal confirmed; the stay with its new balance."""
        return self._one("hcm_his_record_deposit", Admission, admission=admission, deposit=deposit)

    def bill(self, admission: Admission) -> Bill:
        """The stay's bill: charges, insured part, deposits, balance."""
        return self._one("hcm_his_inpatient_bill", Bill, admission=admission)

    def discharge(self, admission: Admission, bill: Bill) -> Discharge:
        """Discharge the patient against the settled bill."""
        return self._one("hcm_his_discharge", Discharge, admission=admission, bill=bill)

    def order_executed(self, execution: OrderExecution) -> bool:
        """Upload a bedside order execution; ``True`` when the HIS recorded it."""
        return self._one("hcm_his_order_executed", bool, execution=execution)

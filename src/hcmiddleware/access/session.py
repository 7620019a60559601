"""``mw.acting_as(caller)``: the Middleware's services as one caller may use them.

A :class:`Session` has the services of the Middleware under the same names
(``session.terminal``, ``.residents``, ``.faces``, ``.his``, ``.cards``, ``.ehc``,
``.ward``, ``.journal``, ``.receipts``, ``.audit``) with the same methods. Each call:

1. is refused unless the caller's role grants the operation (``terminal.read``);
2. is refused when its answer would show a category the role may not see (a
   cashier's ``his.orders``), or step-by-step data of a resident not identified at
   the caller's terminal in this visit, or — for a kiosk — anyone not identified there;
3. runs with the caller's identity in every audit entry it writes (user, role,
   terminal; the break-glass grant or the reason it used, if any);
4. answers only what the role may see: a card read takes only the parts of the role's
   categories; a resident, an order, a report, a registration or an admission comes
   without the fields of other categories (absent from dumps,
   :class:`~hcmiddleware.errors.FieldWithheldError` when read), a list without the
   orders or reports of a kind wholly of another category.

A resident the session handed out, given back to a service (``his.resolve(resident)``),
reaches the service whole, from the index: the HIS registers the patient with the
phone number a kiosk may not see. ``session.flows`` runs the patient journeys and the
money flows the same way (``hcmiddleware.flows.acting``).

A refusal is audited (``access.refused``, outcome ``refused``) and raised as
:class:`~hcmiddleware.errors.AccessDeniedError`.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from hcmiddleware.access import context
from hcmiddleware.access.caller import Caller
from hcmiddleware.access.policy import CARD_PART_CATEGORY, OPERATIONS, Category, RoleGrant
from hcmiddleware.access.scoping import original_of
from hcmiddleware.errors import AccessDeniedError, HcmError, NotIdentifiedHereError
from hcmiddleware.models import EhcVerification, HospitalPatient, Resident

if TYPE_CHECKING:
    from hcmiddleware.access.service import Access, Grant, Method
    from hcmiddleware.audit import Audit
    from hcmiddleware.cards import Cards
    from hcmiddleware.ehc.service import Ehc
    from hcmiddleware.faces import Faces
    from hcmiddleware.flows.acting import Flows
    from hcmiddleware.his import His
    from hcmiddleware.journal import Journal
    from hcmiddleware.printing import Receipts
    from hcmiddleware.residents import Residents
    from hcmiddleware.runtime import Middleware
    from hcmiddleware.terminal import Terminal
    from hcmiddleware.ward.service import Ward

__all__ = ["Session"]

_OPERATIONS = frozenset(OPERATIONS)
#: a session records the same resident's identification at most once in this time
_REIDENTIFY_SECONDS = 60.0

#: operations that show no personal data and change nothing: not audited
_UNAUDITED = frozenset(
    {
        "his.provides", "his.check", "residents.stats", "residents.count", "audit.head",
        "receipts.available",
    }
)  # fmt: skip

#: operations that identify a resident at the caller's terminal, and how
_IDENTIFIES: Mapping[str, Method] = {
    "terminal.read": "card",
    "residents.enrol_from_card": "card",
    "residents.lookup": "card",
    "ehc.verify": "ecard",
    "ehc.verify_image": "ecard",
    "faces.verify_card": "face",
    "faces.verify": "face",
}

#: categories an operation's answer shows as a whole (refused without them)
_NEEDS: Mapping[str, frozenset[Category]] = {
    "his.orders": frozenset({Category.CLINICAL}),
    "his.reports": frozenset({Category.CLINICAL}),
    "his.order_executed": frozenset({Category.CLINICAL}),
    "his.charges": frozenset({Category.MONEY}),
    "his.charges_paid": frozenset({Category.MONEY}),
    "his.record_deposit": frozenset({Category.MONEY}),
    "his.bill": frozenset({Category.MONEY}),
    "his.discharge": frozenset({Category.MONEY}),
    "ward.orders": frozenset({Category.CLINICAL}),
    "ward.verify": frozenset({Category.CLINICAL}),
    "ward.begin": frozenset({Category.CLINICAL}),
    "ward.check": frozenset({Category.CLINICAL}),
    "ward.execute": frozenset({Category.CLINICAL}),
    "terminal.write_visit": frozenset({Category.VISITS}),
    "bank.bind": frozenset({Category.MONEY}),
    "bank.unbind": frozenset({Category.MONEY}),
    "faces.enrol": frozenset({Category.FACE}),
    "faces.search": frozenset({Category.FACE}),
    "faces.remove": frozenset({Category.FACE}),
    **{
        f"journal.{m}": frozenset({Category.MONEY})
        for m in (
            "top_up", "pay", "refund", "settle", "cancel_settlement", "resolve", "recover",
            "get", "by_key", "entries", "history", "refundable",
        )
    },
    # a receipt, a payment list, a bill shows money; a report, clinical data; the print
    # log names the transactions and reports printed
    **{
        f"receipts.{m}": frozenset({Category.MONEY})
        for m in ("movement", "bill", "reprint", "document", "jobs", "unprinted")
    },
    "receipts.report": frozenset({Category.CLINICAL}),
    "receipts.reports": frozenset({Category.CLINICAL}),
}  # fmt: skip


def _patient_resident(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    patient = kwargs.get("patient", args[0] if args else None)
    return patient.resident_id if isinstance(patient, HospitalPatient) else None


def _resident_arg(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    value = kwargs.get("resident", kwargs.get("resident_id", args[0] if args else None))
    if isinstance(value, Resident):
        return value.resident_id
    return value if isinstance(value, str) else None


#: how to find whose data an operation touches (step by step, own only)
_SUBJECT: Mapping[str, Callable[[tuple[Any, ...], dict[str, Any]], str | None]] = {
    "his.orders": _patient_resident,
    "his.reports": _patient_resident,
    "receipts.reports": _patient_resident,
    "his.charges": _patient_resident,
    "his.charges_paid": _patient_resident,
    "his.register_visit": _patient_resident,
    "his.find": _resident_arg,
    "his.find_or_register": _resident_arg,
    "his.resolve": _resident_arg,
    "residents.get": _resident_arg,
    "residents.history": _resident_arg,
    "residents.hospital_id": _resident_arg,
}


@dataclass(frozen=True)
class _Call:
    """What one call may see, worked out before it runs."""

    operation: str
    visible: frozenset[Category]
    grant: str | None
    subject: str | None
    grant_kind: str = "break_glass"


class _View:
    """One service as the session's caller may use it (typed as the service itself)."""

    def __init__(self, session: Session, name: str, target: Callable[[], object]) -> None:
        self._session = session
        self._name = name
        self._target = target

    def __getattr__(self, attr: str) -> Any:
        operation = f"{self._name}.{attr}"
        if attr.startswith("_") or operation not in _OPERATIONS:
            self._session._refuse(
                operation,
                "operation",
                f"{operation} is not offered through a session",
                hint="use the operations listed in docs/access.md",
            )
        method = getattr(self._target(), attr)
        session = self._session

        @functools.wraps(method)
        def call(*args: Any, **kwargs: Any) -> Any:
            return session._call(operation, method, args, kwargs)

        return call

    def __repr__(self) -> str:
        return f"<{self._name} as {self._session.caller}>"


class Session:
    """The Middleware's services bound to one :class:`Caller` (``mw.acting_as(caller)``).

    Cheap to make: make one per request, or keep one per signed-in user and terminal.
    See the module docstring for what each call checks.
    """

    def __init__(self, middleware: Middleware, caller: Caller, grant: RoleGrant) -> None:
        self._mw = middleware
        self.caller = caller
        #: what the caller's role may do and see
        self.role = grant
        self._access: Access = middleware.access
        raw = middleware._raw
        self.terminal = cast("Terminal", _View(self, "terminal", lambda: raw("terminal")))
        self.residents = cast("Residents", _View(self, "residents", lambda: raw("residents")))
        self.faces = cast("Faces", _View(self, "faces", lambda: raw("faces")))
        self.his = cast("His", _View(self, "his", lambda: raw("his")))
        self.cards = cast("Cards", _View(self, "cards", lambda: raw("cards")))
        self.ehc = cast("Ehc", _View(self, "ehc", lambda: raw("ehc")))
        self.ward = cast("Ward", _View(self, "ward", lambda: raw("ward")))
        self.journal = cast("Journal", _View(self, "journal", lambda: raw("journal")))
        self.receipts = cast("Receipts", _View(self, "receipts", lambda: raw("receipts")))
        self.audit = cast("Audit", _View(self, "audit", lambda: raw("audit")))
        #: card numbers read through this session (a lookup of one identifies)
        self._cards_read: set[str] = set()
        #: residents this session recorded as identified, and when (monotonic)
        self._identified: dict[str, float] = {}

    def __repr__(self) -> str:
        return f"<Session {self.caller}>"

    # -- what the caller may see --------------------------------------------------------

    def may(self, operation: str) -> bool:
        """True when the caller's role grants ``operation`` (``terminal.read``)."""
        return operation in self.role.operations

    def visible(self, resident_id: str | None = None) -> frozenset[Category]:
        """The categories the caller sees now (of ``resident_id``: step by step, with
        the reasons and emergency grants open for them)."""
        if (
            resident_id is not None
            and self.role.own_only
            and not self._access.is_identified(resident_id, self.caller.terminal)
        ):
            return frozenset()
        return self._open(resident_id, frozenset(self.role.categories))[0]

    def _open(
        self, subject: str | None, needs: frozenset[Category]
    ) -> tuple[frozenset[Category], Grant | None]:
        """What the caller sees of ``subject`` for an answer of ``needs``, and the grant
        (a reason, or break glass) it relies on."""
        role = self.role
        visible = set(role.categories)
        grant: Grant | None = None
        # step by step: about a known resident, only after their identification here (a
        # card read or a band scan identifies the person it answers about by itself)
        if (
            subject is not None
            and needs & role.step_by_step
            and not self._access.is_identified(subject, self.caller.terminal)
        ):
            visible -= role.step_by_step
            if role.by_reason:
                # the level below break glass: a reason given for this one resident
                for candidate in self._access.active_grants(self.caller, subject, kind="reason"):
                    if candidate.resident_id == subject:
                        visible |= candidate.categories & role.step_by_step & role.categories
                        grant = candidate
                        break
        if needs - visible and role.break_glass:
            # emergency access: the caller's grants not yet expired (for this resident)
            for candidate in self._access.active_grants(self.caller, subject):
                opened = candidate.categories & role.break_glass
                if opened & (needs - visible):
                    visible |= opened
                    grant = candidate
        return frozenset(visible), grant

    def _plan(
        self,
        operation: str,
        subject: str | None,
        needs: frozenset[Category],
        *,
        step: str | None = None,
    ) -> _Call:
        role = self.role
        if (
            subject is not None
            and role.own_only
            and not self._access.is_identified(subject, self.caller.terminal)
        ):
            self._refuse(
                operation or "read",
                "own_only",
                f"{self.caller.role} shows only the resident identified at this terminal",
                subject=subject,
                step=step,
            )
        visible, grant = self._open(subject, needs)
        missing = needs - visible
        if missing:
            category = sorted(missing)[0]
            if category in role.step_by_step and category in role.categories:
                self._refuse(
                    operation,
                    "not_identified",
                    f"{category} data of a resident not identified at this terminal in this visit",
                    subject=subject,
                    category=category,
                    step=step,
                    hint=self._not_identified_hint(),
                )
            self._refuse(
                operation,
                "category",
                f"{operation}'s answer holds {category} data, which {self.caller.role} may not see",
                subject=subject,
                category=category,
                step=step,
            )
        return _Call(
            operation,
            visible,
            grant.grant_id if grant else None,
            subject,
            grant.kind if grant else "break_glass",
        )

    def _not_identified_hint(self) -> str:
        ways = ["identify the resident at this terminal (card, e-card code or face check)"]
        if self.role.by_reason:
            ways.append("give a reason: session.open_with_reason(resident_id, reason)")
        if self.role.break_glass:
            ways.append("in an emergency, session.break_glass(reason)")
        return "; or ".join(ways)

    def require(self, step: str, operations: Iterable[str], *, subject: str | None = None) -> None:
        """Refuse ``step`` (a flow's step, ``flow.outpatient.settle``) before it starts
        unless the role grants every operation it uses and may see what they answer
        (about ``subject``), so that a refusal never leaves a step half done.

        :raises AccessDeniedError: the first operation the role lacks (audited, with the
            detail ``step``); :class:`~hcmiddleware.errors.NotIdentifiedHereError` for
            step-by-step data of a resident not identified here.
        """
        for operation in operations:
            if operation not in self.role.operations:
                self._refuse(
                    operation,
                    "operation",
                    f"{step} needs {operation}, which {self.caller.role} may not perform",
                    subject=subject,
                    step=step,
                    hint=f"let a role that may do {operation} take this step, or grant it "
                    f"in [access.roles.{self.caller.role}] (docs/access.md)",
                )
            self._plan(operation, subject, _NEEDS.get(operation, frozenset()), step=step)

    # -- calling ---------------------------------------------------------------------------

    def _call(
        self,
        operation: str,
        method: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        if operation not in self.role.operations:
            self._refuse(
                operation,
                "operation",
                f"{self.caller.role} may not perform {operation}",
            )
        subject_of = _SUBJECT.get(operation)
        subject = subject_of(args, kwargs) if subject_of is not None else None
        plan = self._plan(operation, subject, _NEEDS.get(operation, frozenset()))
        if operation == "terminal.read":
            kwargs = self._card_parts(plan, kwargs)
        if "actor" not in kwargs and _takes_actor(method):
            kwargs["actor"] = self.caller.user
        args, kwargs = self._whole(args, kwargs)
        # the session writes an entry of its own for the act only when the service wrote
        # none (the card read, the band bound, the payment's states are the act's own
        # entries) — none naming the resident the call is about, if it is about one —
        # and no journey's step writes it
        audits = operation not in _UNAUDITED and not context.in_step()
        with context.acting(self.caller, plan.grant, plan.grant_kind) as acting:
            result = method(*args, **kwargs)
            if isinstance(result, Iterator):  # streamed: read in the caller's name too
                return self._streamed(plan, acting, result, audits=audits)
            if operation in _IDENTIFIES:
                self._identify(operation, args, kwargs, result)
            audited = _audited(plan, acting)
            result = self._answer(plan, result)
            if audits and not audited:
                self._audit_call(plan, result)
        return result

    def _audit_call(self, plan: _Call, result: Any) -> None:
        self._mw._raw("audit").record(
            plan.operation, actor=self.caller.user, subject=plan.subject or _subject_of(result)
        )

    def _streamed(
        self, plan: _Call, acting: context.Acting, items: Iterator[Any], *, audits: bool
    ) -> Iterator[Any]:
        """A streamed answer (an export, the linkage table), produced in the caller's name
        and cut item by item; audited once read (or given up), as a call is."""
        try:
            while True:
                with context.within(acting):
                    try:
                        item = next(items)
                    except StopIteration:
                        return
                    item = self._answer(plan, item)
                yield item
        finally:
            with context.within(acting):
                close = getattr(items, "close", None)
                if close is not None:
                    close()
                if audits and not _audited(plan, acting):
                    self._audit_call(plan, None)

    def _whole(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """An answer handed out with fields withheld goes back to a service whole (the
        HIS registers the patient with the phone a kiosk may not see); the caller's
        answer is cut again."""
        if not any(_withheld(a) for a in args) and not any(_withheld(v) for v in kwargs.values()):
            return args, kwargs
        return (
            tuple(self._stored(a) for a in args),
            {k: self._stored(v) for k, v in kwargs.items()},
        )

    def _stored(self, value: Any) -> Any:
        if not _withheld(value):
            return value
        original = original_of(value)
        if original is not None:
            return original
        if isinstance(value, Resident):
            try:  # a copy made elsewhere: the index holds the resident
                return self._mw._raw("residents").index.get(value.resident_id)
            except HcmError:
                pass
        return value

    def _card_parts(self, plan: _Call, kwargs: dict[str, Any]) -> dict[str, Any]:
        """A read takes only the parts the caller may see; naming another is refused."""
        from hcmiddleware.card.filemap import ALL_PARTS, parse_parts

        allowed = frozenset(p for p in ALL_PARTS if CARD_PART_CATEGORY[p.value] in plan.visible)
        asked = kwargs.get("parts")
        if asked is None:
            wanted = allowed
        else:
            wanted = parse_parts(asked)
            refused = sorted(p.value for p in wanted - allowed)
            if refused:
                category = CARD_PART_CATEGORY[refused[0]]
                self._refuse(
                    plan.operation,
                    "category",
                    f"part {refused[0]!r} holds {category} data, which {self.caller.role} "
                    "may not see",
                    category=category,
                )
        return {**kwargs, "parts": sorted(p.value for p in wanted)}

    def _answer(self, plan: _Call, result: Any) -> Any:
        """The answer cut to what the caller may see (a kiosk: only whom it identified)."""
        if self.role.own_only:
            for resident_id in _residents_in(result):
                if resident_id != plan.subject and not self._access.is_identified(
                    resident_id, self.caller.terminal
                ):
                    self._refuse(
                        plan.operation,
                        "own_only",
                        f"{self.caller.role} shows only the resident identified at this terminal",
                        subject=resident_id,
                    )
        return self._cut(result, plan.visible)

    def _cut(self, result: Any, visible: frozenset[Category]) -> Any:
        """Withhold what ``visible`` does not cover, in the answers that hold personal data."""
        scope = self._access.scope
        if isinstance(result, list):
            return [self._cut(item, visible) for item in result if scope.shown(item, visible)]
        if type(result) is tuple:  # his.resolve: (patient, source)
            return tuple(self._cut(item, visible) for item in result)
        if isinstance(result, EhcVerification):
            return result.model_copy(update={"resident": scope.cut(result.resident, visible)})
        from hcmiddleware.empi.records import Candidate

        if isinstance(result, Candidate):
            return result.model_copy(update={"resident": scope.cut(result.resident, visible)})
        return scope.cut(result, visible)

    # -- identifications ------------------------------------------------------------------

    def _identify(
        self, operation: str, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any
    ) -> None:
        """Record who a card read, e-card code or face check identified at this terminal."""
        from hcmiddleware.models import IdentifierKind

        method = _IDENTIFIES[operation]
        resident_id: str | None = None
        if operation == "terminal.read":
            number = result.issuer.card_number
            self._cards_read.add(number)
            try:
                found = self._mw._raw("residents").index.lookup(IdentifierKind.CARD_NUMBER, number)
            except HcmError:  # no index here (no keys): identified once it is enrolled
                found = None
            resident_id = found.resident_id if found is not None else None
        elif operation == "residents.enrol_from_card":
            card = kwargs.get("card", args[0] if args else None)
            number = getattr(getattr(card, "issuer", None), "card_number", None)
            if number in self._cards_read and isinstance(result, Resident):
                resident_id = result.resident_id
        elif operation == "residents.lookup":
            kind = kwargs.get("kind", args[0] if args else None)
            value = kwargs.get("value", args[1] if len(args) > 1 else None)
            if (
                kind == IdentifierKind.CARD_NUMBER
                and value in self._cards_read
                and isinstance(result, Resident)
            ):
                resident_id = result.resident_id
        elif isinstance(result, EhcVerification):
            resident_id = result.resident.resident_id
        elif getattr(result, "matched", False):
            resident_id = kwargs.get("resident_id")
        if resident_id is None:
            return
        # the same identification again within a minute adds nothing to the window
        now = time.monotonic()
        last = self._identified.get(resident_id)
        if last is not None and now - last < _REIDENTIFY_SECONDS:
            return
        self._access.identify(resident_id, self.caller.terminal, method, caller=self.caller)
        self._identified[resident_id] = now

    # -- refusing ------------------------------------------------------------------------

    def _refuse(
        self,
        operation: str,
        reason: str,
        message: str,
        *,
        subject: str | None = None,
        category: str | None = None,
        hint: str | None = None,
        step: str | None = None,
    ) -> None:
        details = {"operation": operation[:64], "reason": reason}
        if category is not None:
            details["category"] = str(category)
        if step is not None:
            details["step"] = step[:64]
        self._access.audit_refusal(self.caller, details, subject=subject)
        if reason == "not_identified":
            raise NotIdentifiedHereError(
                message,
                category=str(category),
                role=self.caller.role,
                operation=operation,
                hint=hint,
            )
        raise AccessDeniedError(
            message, role=self.caller.role, operation=operation, reason=reason, hint=hint
        )

    # -- emergency access and visits ------------------------------------------------------

    def break_glass(
        self,
        reason: str,
        *,
        minutes: float | None = None,
        categories: Iterable[Category | str] | None = None,
        resident_id: str | None = None,
    ) -> Grant:
        """Open more categories in an emergency: a reason, for at most ``[access]
        break_glass_max_minutes``; every entry made under it is marked for review.

        :param categories: default: every category the role may open this way.
        :param resident_id: for this resident only (default: any).
        :raises BreakGlassError: the role may not, no reason, too long, a category it
            may not open.
        """
        return self._access.break_glass(
            self.caller,
            self.role,
            reason,
            minutes=minutes,
            categories=categories,
            resident_id=resident_id,
        )

    def open_with_reason(
        self, resident_id: str, reason: str, *, minutes: float | None = None
    ) -> Grant:
        """Open the role's step-by-step categories of one resident who was not
        identified at this terminal, with a reason (a result to follow up, a colleague's
        patient): the level below break glass.

        Only what the role sees after an identification, only this resident, only this
        user at this terminal, for at most ``[access] reason_minutes``; audited as
        ``access.reason``, and every entry made under it carries the detail
        ``reason_grant``.

        :raises BreakGlassError: the role may not (``by_reason``), no reason, too long.
        """
        return self._access.open_with_reason(
            self.caller, self.role, resident_id, reason, minutes=minutes
        )

    @functools.cached_property
    def flows(self) -> Flows:
        """The patient journeys and money flows as this caller may run them
        (``session.flows.outpatient()``, ``session.flows.pay(…)``)."""
        from hcmiddleware.flows.acting import Flows

        return Flows(self)

    def identified(self, resident_id: str) -> bool:
        """True when the resident was identified at this terminal in the current visit."""
        return self._access.is_identified(resident_id, self.caller.terminal)

    def end_visit(self, resident_id: str) -> int:
        """Close the resident's visit at this terminal: step-by-step data closes again."""
        self._identified.pop(resident_id, None)
        return self._access.end_visit(resident_id, self.caller.terminal, caller=self.caller)


def _audited(plan: _Call, acting: context.Acting) -> bool:
    """Did the service audit the call itself (about its resident, if it names one)?"""
    if plan.subject is not None:
        return plan.subject in acting.subjects
    return acting.entries > 0


def _withheld(value: Any) -> bool:
    return bool(getattr(type(value), "WITHHELD", None))


def _residents_in(result: Any) -> list[str]:
    from hcmiddleware.empi.records import Candidate

    if isinstance(result, Resident | HospitalPatient):
        return [result.resident_id]
    if isinstance(result, EhcVerification | Candidate):
        return [result.resident.resident_id]
    if isinstance(result, list):
        return [r for item in result for r in _residents_in(item)]
    return []


def _subject_of(result: Any) -> str | None:
    if isinstance(result, Resident | HospitalPatient):
        return result.resident_id
    return None


@functools.cache
def _takes_actor_of(function: Callable[..., Any]) -> bool:
    try:
        return "actor" in inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False


def _takes_actor(method: Callable[..., Any]) -> bool:
    return _takes_actor_of(getattr(method, "__func__", method))

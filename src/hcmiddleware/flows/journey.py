"""What the outpatient and inpatient journeys share: identifying the patient.

A journey starts the same way at every counter: the card is read through the
terminal (or an e-card QR code is checked by ``Middleware.ehc``, or an e-card ID / ID
number is looked up in the index), the resident is
found in the index (enrolled from the card on a first visit), and the hospital's own
patient ID is found — in the index first, then by asking the HIS, which creates it on
a first visit. The ID is remembered in the index, so the next visit does not ask.

Every step is audited (``flow.<journey>.<step>``). A step that fails raises a typed
error and changes nothing the next attempt would trip over: the HIS hooks are
idempotent per resident and per request ID, and the index link is idempotent too.

A journey made with a session (``session.flows.outpatient()``, or
``OutpatientFlow(mw.acting_as(caller))``) runs as that caller: before a step starts,
the caller's role must grant every operation the step uses (else
:class:`~hcmiddleware.errors.AccessDeniedError`, audited, and nothing done); every
service call goes through the session, so it is checked, cut to what the role may see
and audited with the caller's user, role and terminal, as are the step's own entries.
Made with the Middleware itself, a journey is the embedding process's own work (the
system caller), refused while ``[access] require_caller`` is on.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Concatenate, ParamSpec, Protocol, TypeVar

from hcmiddleware.access import context
from hcmiddleware.access.policy import CARD_PART_CATEGORY
from hcmiddleware.access.session import Session
from hcmiddleware.card.filemap import CardPart, parse_parts
from hcmiddleware.config import UNSET_INSTITUTION
from hcmiddleware.errors import (
    AccessDeniedError,
    CardRefusedError,
    DischargeRefusedError,
    EhcFormatError,
    EhcRefusedError,
    FaceMismatchError,
    FlowInputError,
    HisRejectedError,
    IdentityError,
    NotIdentifiedError,
    WrongCardError,
)
from hcmiddleware.models import Charge, HospitalPatient, IdentifierKind, Resident, VisitSummary

T = TypeVar("T")
J = TypeVar("J", bound="Journey")
A = ParamSpec("A")

if TYPE_CHECKING:
    from hcmiddleware.card.data import CardRead, VisitRecord
    from hcmiddleware.card.transport import Transport
    from hcmiddleware.ehc.service import Ehc, SecondFactor
    from hcmiddleware.faces import Faces
    from hcmiddleware.his import His
    from hcmiddleware.models import EhcVerification
    from hcmiddleware.residents import Residents
    from hcmiddleware.runtime import Middleware
    from hcmiddleware.terminal import Terminal
    from hcmiddleware.ward.service import Ward

__all__ = [
    "REFUSALS",
    "UNSET_INSTITUTION",
    "Identified",
    "Journey",
    "Pay",
    "Services",
    "audited_together",
    "request_key",
    "visit_record",
]

#: Errors that are a deliberate "no" (audited as ``refused``); anything else is ``failed``.
REFUSALS: tuple[type[Exception], ...] = (
    AccessDeniedError,
    CardRefusedError,
    DischargeRefusedError,
    EhcFormatError,
    EhcRefusedError,
    FaceMismatchError,
    HisRejectedError,
    IdentityError,
    NotIdentifiedError,
)

#: The payment seam: given the amount and the charges it covers (empty for a deposit),
#: move the money and return the confirmed transaction ID, or raise. The journal's
#: payment flow (bank or insurer, journalled, reversed when unknown) plugs in here.
Pay = Callable[[Decimal, list[Charge]], str]


class Services(Protocol):
    """The services a journey calls: the Middleware's own, or a session's (the same
    methods, checked against the caller's role)."""

    @property
    def terminal(self) -> Terminal: ...
    @property
    def residents(self) -> Residents: ...
    @property
    def his(self) -> His: ...
    @property
    def faces(self) -> Faces: ...
    @property
    def ehc(self) -> Ehc: ...
    @property
    def ward(self) -> Ward: ...


@dataclass(frozen=True)
class Identified:
    """Who is at the counter: the resident, and the card when one was read.

    ``how`` is ``card``, ``ecard`` (a QR code; ``ehc`` holds the check's result),
    ``ecard_id`` or ``id_number``. The same resident is found whichever was used: the
    e-card is bound to the resident who holds the physical card.
    """

    resident: Resident
    card: CardRead | None = None
    how: str = "card"
    ehc: EhcVerification | None = None

    @property
    def card_number(self) -> str | None:
        """The physical card's number: the one read, else the one the index holds."""
        if self.card is not None:
            return self.card.issuer.card_number
        return self.resident.identifier(IdentifierKind.CARD_NUMBER)


def audited_together(step: Callable[Concatenate[J, A], T]) -> Callable[Concatenate[J, A], T]:
    """A step whose audit entries are committed together when it ends: one commit for
    the card read and the identification it makes, the card written and the visit's
    entry (:meth:`~hcmiddleware.audit.Audit.grouped`). Only for steps with nothing
    slow (no remote call) after their first entry."""

    @functools.wraps(step)
    def run(self: J, /, *args: A.args, **kwargs: A.kwargs) -> T:
        with self.mw._raw("audit").grouped():
            return step(self, *args, **kwargs)

    return run


def request_key(*parts: object) -> str:
    """A stable idempotency key from what makes a request the same request.

    A retried flow — even from a fresh process after a crash — rebuilds the same key,
    so the HIS answers the first registration instead of making a second one.
    """
    text = "\x1f".join("" if p is None else str(p) for p in parts)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def visit_record(summary: VisitSummary) -> VisitRecord:
    """The card's visit record (DF03) for a visit summary."""
    from hcmiddleware.card.data import VisitRecord

    fee = "" if summary.total_fee is None else f"{summary.total_fee:.2f}"
    return VisitRecord(
        kind=summary.kind,
        visited_at=summary.visited_at.replace(microsecond=0),
        institution_name=summary.institution_name,
        institution_code=summary.institution_code,
        department=summary.department,
        doctor=summary.doctor,
        diagnosis_code=summary.diagnosis_code,
        diagnosis_name=summary.diagnosis_name,
        treatment=summary.treatment,
        total_fee=fee,
    )


class Journey:
    """The steps every journey shares; subclasses add their own.

    :param middleware: a session (``mw.acting_as(caller)``): the journey runs as its
        caller; or the started :class:`~hcmiddleware.runtime.Middleware`: the embedding
        process's own work (refused while ``[access] require_caller``).
    :param actor: the terminal or operator the audit log names (``kiosk-03``,
        ``desk-12``); with a session, default the caller's user.
    :param hospital_code: this hospital's code; default ``[middleware]
        institution_code``.
    """

    #: the audit namespace: ``flow.<name>.<step>``
    name = "journey"
    #: What :meth:`identify` reads from the card: who the holder is (name, sex, birth
    #: date, ID number), how the visit is paid (expiry, insurance types) and the phone
    #: numbers the index keeps. A step that needs more (the photo, the visits) reads it
    #: when it comes (:meth:`card_with`).
    identify_parts: frozenset[CardPart] = frozenset(
        {CardPart.IDENTITY, CardPart.INSURANCE, CardPart.PHONES}
    )

    def __init__(
        self,
        middleware: Middleware | Session,
        *,
        actor: str | None = None,
        hospital_code: str | None = None,
    ) -> None:
        #: the session the journey runs in (None: the embedding process's own)
        self.session: Session | None = None
        #: the services it calls: the session's, or the Middleware's own
        self.services: Services
        if isinstance(middleware, Session):
            self.session = middleware
            self.mw: Middleware = middleware._mw
            self.services = middleware
            actor = actor or middleware.caller.user
        else:
            self.mw = middleware
            self.services = middleware
        if not actor:
            raise FlowInputError(
                "a journey made without a session needs an actor for the audit log",
                step="start",
                hint="pass actor='kiosk-03', or make it with mw.acting_as(caller)",
            )
        self.actor = actor
        self.hospital_code = hospital_code or self.mw.config.middleware.institution_code
        if not self.hospital_code or self.hospital_code == UNSET_INSTITUTION:
            raise FlowInputError(
                "this hospital has no institution code",
                step="start",
                hint="set [middleware] institution_code in the config file",
            )

    # -- plumbing ---------------------------------------------------------------------

    def _audit(self, step: str, subject: str | None, outcome: str = "ok", **details: str) -> None:
        if self.session is None:
            self.mw.audit(
                f"flow.{self.name}.{step}",
                actor=self.actor,
                subject=subject,
                outcome=outcome,  # type: ignore[arg-type]
                **details,
            )
            return
        caller = self.session.caller
        self.mw._raw("audit").record(
            f"flow.{self.name}.{step}",
            actor=self.actor,
            subject=subject,
            outcome=outcome,
            details=details,
            user=caller.user,
            role=caller.role,
            terminal=caller.terminal,
        )

    def _require(self, step: str, *operations: str, subject: str | None = None) -> None:
        """With a session: refuse the step before it starts unless the caller's role
        grants every operation it uses (audited; nothing is done)."""
        if self.session is not None:
            self.session.require(f"flow.{self.name}.{step}", operations, subject=subject)

    def _readable(self, parts: Iterable[str | CardPart]) -> frozenset[CardPart]:
        """``parts``, less those the session's role may not see (all without a session)."""
        wanted = parse_parts(parts)
        if self.session is None:
            return wanted
        visible = self.session.visible()
        return frozenset(p for p in wanted if CARD_PART_CATEGORY[p.value] in visible)

    def _failed(self, step: str, subject: str | None, exc: BaseException) -> None:
        details = {"error": type(exc).__name__}
        plugin = getattr(exc, "plugin", "")
        if plugin:
            details["plugin"] = str(plugin)
        refused = isinstance(exc, REFUSALS)
        self._audit(step, subject, "refused" if refused else "failed", **details)

    def _step(self, step: str, subject: str | None, call: Callable[[], T]) -> T:
        """Run one service call of ``step``; a failure is audited and raised as it is.

        The step's own entry records the call (the caller writes it once the step is
        done; :meth:`_failed` when it fails): a session adds none of its own for it.
        """
        try:
            with context.step():
                return call()
        except BaseException as exc:
            self._failed(step, subject, exc)
            raise

    # -- identify ---------------------------------------------------------------------

    @audited_together
    def identify(
        self,
        transport: Transport | None = None,
        *,
        parts: str | Iterable[str | CardPart] | None = None,
    ) -> Identified:
        """Read the card through the terminal; find or enrol its holder in the index.

        Only :attr:`identify_parts` are read unless ``parts`` names others (``"all"``
        for everything): the short read a counter needs.

        :param transport: the card (default: the ``[readers] user`` PC/SC reader).
        :raises CardError: the card could not be read or authenticated.
        """
        self._require("identify", "terminal.read", "residents.enrol_from_card")
        # the short read, of the parts the caller may see; parts named are read or refused
        wanted = self._readable(self.identify_parts) if parts is None else parts
        try:
            with context.step():
                card = self.services.terminal.read(transport, actor=self.actor, parts=wanted)
                resident = self.services.residents.enrol_from_card(card)
        except BaseException as exc:
            self._failed("identify", None, exc)
            raise
        self._audit("identify", resident.resident_id, how="card")
        return Identified(resident=resident, card=card, how="card")

    @audited_together
    def identify_ecard(
        self,
        text: str | bytes,
        *,
        care_step: str = "registration",
        factor: SecondFactor | None = None,
        terminal_id: str | None = None,
    ) -> Identified:
        """Identify the patient by the e-card QR code scanned at this terminal.

        The code is checked by ``Middleware.ehc.verify`` (signature, expiry,
        revocation, once per terminal and care step; a static code needs ``factor``).
        The answer has the same shape as :meth:`identify`'s, without a card: the
        following steps (patient, register, settle, admit) are the same.

        :param care_step: what the code is used for here (``registration``,
            ``payment``, ``admission``, ``ward`` …).
        :param terminal_id: default ``[ehc] terminal_id``.
        :raises EhcFormatError: the text is not an e-card code.
        :raises EhcRefusedError: the code was refused; its ``reason`` says why.
        """
        self._require("identify", "ehc.verify")
        result = self._step(
            "identify",
            None,
            lambda: self.services.ehc.verify(
                text,
                care_step=care_step,
                terminal_id=terminal_id,
                factor=factor,
                actor=self.actor,
            ),
        )
        rid = result.resident.resident_id
        self._audit("identify", rid, how="ecard", kind=result.kind, checked=result.checked)
        return Identified(resident=result.resident, card=None, how="ecard", ehc=result)

    def identify_by(
        self, *, ecard_id: str | None = None, id_number: str | None = None
    ) -> Identified:
        """Find the resident by an e-card ID or an ID number (no card in hand).

        :raises FlowInputError: neither or both were given.
        :raises NotIdentifiedError: nobody in the index holds it.
        :raises IdentityError: the ID number itself is invalid (check digit …).
        """
        given = [
            (k, v)
            for k, v in ((IdentifierKind.ECARD_ID, ecard_id), (IdentifierKind.ID_NUMBER, id_number))
            if v
        ]
        if len(given) != 1:
            raise FlowInputError("give one of an e-card ID or an ID number", step="identify")
        kind, value = given[0]
        self._require("identify", "residents.lookup")
        resident = self._step("identify", None, lambda: self.services.residents.lookup(kind, value))
        if resident is None:
            unknown = NotIdentifiedError(f"no resident holds this {kind.value}", step="identify")
            self._failed("identify", None, unknown)
            raise unknown
        self._audit("identify", resident.resident_id, how=kind.value)
        return Identified(resident=resident, card=None, how=kind.value)

    def patient(self, who: Identified) -> HospitalPatient:
        """The hospital's patient record: the index first, then the HIS (created if new).

        See :meth:`hcmiddleware.his.His.find_or_register`: the HIS's answer is linked in
        the index, so the next visit does not ask again, and a retry after a lost
        answer finds the same patient instead of making a second.
        """
        rid = who.resident.resident_id
        self._require("patient", "his.resolve", subject=rid)
        patient, source = self._step(
            "patient",
            rid,
            lambda: self.services.his.resolve(
                who.resident, card=who.card, hospital_code=self.hospital_code
            ),
        )
        self._audit("patient", rid, source=source)
        return patient

    # -- the card ---------------------------------------------------------------------

    def card_with(
        self,
        who: Identified,
        *parts: CardPart,
        transport: Transport | None = None,
        step: str = "card",
    ) -> CardRead:
        """A read of the patient's card that holds ``parts``.

        ``who.card`` when it already holds them; otherwise they are read now from the
        card in the reader (``transport``, default the ``[readers] user`` reader), which
        must be the card the visit began with.

        :raises FlowInputError: no card was read for this visit, or the card in the
            reader is another.
        :raises CardError: the card could not be read.
        """
        card = who.card
        if card is None:
            raise FlowInputError(
                "the patient was identified without a card",
                step=step,
                hint="read the health card first",
            )
        if card.has(*parts):
            return card
        rid = who.resident.resident_id
        self._require(step, "terminal.read")
        more = self._step(
            step, rid, lambda: self.services.terminal.read(transport, actor=self.actor, parts=parts)
        )
        if more.issuer.card_number != card.issuer.card_number:
            wrong = FlowInputError(
                "the card in the reader is not the card this visit began with",
                step=step,
                hint="insert the patient's own card",
            )
            self._failed(step, rid, wrong)
            raise wrong
        return more

    def previous_visits(
        self, who: Identified, transport: Transport | None = None
    ) -> list[VisitRecord]:
        """The visit records the card carries (newest first); empty without a card.

        Read from the card in the reader (``transport``) unless the identifying read
        took them.
        """
        if who.card is None:
            return []
        card = self.card_with(who, CardPart.VISITS, transport=transport, step="visits")
        return sorted(card.visits, key=lambda v: v.visited_at, reverse=True)

    @audited_together
    def write_summary(
        self, who: Identified, summary: VisitSummary, transport: Transport | None = None
    ) -> int:
        """Write the visit summary to the card (tear-safe); returns the slot written.

        A card pulled mid-write leaves the card's earlier records intact and raises
        :class:`~hcmiddleware.errors.CardAbsentError`; write again when it is back.
        """
        if who.card is None:
            raise FlowInputError(
                "there is no card to write to (identified without one)",
                step="write_summary",
                hint="insert the patient's health card and read it first",
            )
        record = visit_record(summary)
        rid = who.resident.resident_id
        self._require("write_summary", "terminal.write_visit", subject=rid)
        try:
            try:
                slot = self.services.terminal.write_visit(
                    record,
                    transport,
                    card_number=who.card.issuer.card_number,
                    actor=self.actor,
                )
            except WrongCardError as exc:
                raise FlowInputError(
                    "the card in the reader is not the card this visit began with",
                    step="write_summary",
                    hint="insert the patient's own card",
                ) from exc
        except BaseException as exc:
            self._failed("write_summary", rid, exc)
            raise
        self._audit("write_summary", rid, kind=summary.kind, slot=str(slot))
        return slot

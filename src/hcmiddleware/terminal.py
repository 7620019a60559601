"""The terminal: the user-card reader and the SAM, as the Middleware uses them.

It turns the card layer's pieces into runtime behaviour: the SAM comes from the
``hcm_sam_provider`` hook, a read is announced through ``hcm_card_read`` and audited,
and PC/SC insertions and removals become ``hcm_card_inserted`` / ``hcm_card_removed``.
Every session it opens shares one :class:`~hcmiddleware.card.guard.KeyGuard`, so a
card key that reported 2 tries left is never tried again by this process.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from hcmiddleware.errors import NoHandlerError, SamUnavailableError, WrongCardError

if TYPE_CHECKING:
    from hcmiddleware.card.data import CardRead, Issuer, VisitRecord
    from hcmiddleware.card.filemap import CardPart
    from hcmiddleware.card.guard import KeyGuard
    from hcmiddleware.card.monitor import CardEvents
    from hcmiddleware.card.session import CardSession
    from hcmiddleware.card.transport import Transport
    from hcmiddleware.runtime import Middleware
    from hcmiddleware.sam.base import Sam

__all__ = ["Terminal"]

log = logging.getLogger(__name__)


class Terminal:
    """Card reader and SAM of one Middleware (``middleware.terminal``)."""

    def __init__(
        self, middleware: Middleware, guard: KeyGuard | None = None, *, sam: Sam | None = None
    ) -> None:
        from hcmiddleware.card.guard import PROCESS_GUARD

        self._mw = middleware
        #: Keys held back per card, shared by every session (default: the process's).
        self.guard: KeyGuard = PROCESS_GUARD if guard is None else guard
        #: a SAM given by the caller stays the caller's to close
        self._sam: Sam | None = sam
        self._own_sam = sam is None
        self._lock = threading.Lock()

    @property
    def sam(self) -> Sam:
        """The SAM, opened on first use through ``hcm_sam_provider``."""
        with self._lock:
            if self._sam is None:
                from hcmiddleware.sam.base import Sam
                from hcmiddleware.typed import checked

                plugin, sam = self._mw.dispatcher.call_first(
                    "hcm_sam_provider", middleware=self._mw
                )
                if sam is None:
                    raise NoHandlerError(
                        "hcm_sam_provider",
                        hint="set [sam] keys (software SAM) or [readers] sam and [sam] pin",
                    )
                kind: Any = Sam  # a runtime-checkable protocol
                self._sam = checked("hcm_sam_provider", plugin, sam, kind)
            return self._sam

    def _forget_sam(self, sam: Sam | None) -> bool:
        """Close and forget ``sam``, which stopped answering (its reader re-plugged, the
        PC/SC service restarted: its connection is gone for good), so that the next use
        opens the SAM again through ``hcm_sam_provider``. True if it was forgotten; a
        SAM the caller gave stays the caller's, and is kept."""
        with self._lock:
            if sam is None or self._sam is not sam or not self._own_sam:
                return False
            self._sam = None
        with contextlib.suppress(Exception):  # its link is gone: closing may fail too
            sam.close()
        log.warning("the SAM stopped answering; it is opened again for the next card")
        return True

    def check_sam(self) -> Sam:
        """The SAM, asked for a challenge now to show that it answers (nothing reaches
        any card); one that stopped answering is opened again, once.

        :raises SamUnavailableError: no SAM answers, after opening it again.
        """
        sam = self.sam
        try:
            sam.new_challenge()
        except SamUnavailableError:
            if not self._forget_sam(sam):
                raise
            sam = self.sam
            sam.new_challenge()
        return sam

    def open(self, transport: Transport | None = None) -> CardSession:
        """A session with the card in ``transport`` (default: the ``[readers] user`` reader)."""
        from hcmiddleware.card.session import CardSession

        sam = self.sam  # first: a SAM that cannot be had leaves no reader open
        if transport is None:
            from hcmiddleware.card.pcsc import PcscTransport

            transport = PcscTransport(self._mw.config.readers.user)
        return CardSession(transport, sam, guard=self.guard)

    def read(
        self,
        transport: Transport | None = None,
        *,
        actor: str = "terminal",
        parts: str | Iterable[str | CardPart] | None = None,
    ) -> CardRead:
        """Authenticate and read the card; announced and audited.

        ``parts`` (default: everything) names the parts to read, e.g.
        ``"identity,insurance"`` for a registration (see docs/card.md, "Parts"); the
        result's ``parts`` says which were read, and an unread one raises
        :class:`~hcmiddleware.errors.CardPartNotReadError` when used. An unknown part
        name is :class:`~hcmiddleware.errors.CardPartError`, before the card is touched.

        :raises CardRefusedError: the card is loss-reported, cancelled or replaced
            (``middleware.cards``); checked offline after the read, before any hook.
        """
        from hcmiddleware.card.filemap import parse_parts, parts_text

        wanted = parse_parts(parts)
        again = True  # a SAM found gone is opened again, and the read tried once more
        while True:
            try:
                session = self.open(transport)
            except SamUnavailableError:
                if not again:  # the SAM found gone could not be opened again
                    reader = str(self._mw.config.readers.user or "in-process")
                    self._read_failed(actor, reader, wanted, SamUnavailableError)
                raise
            reader = str(getattr(session.transport, "reader", "in-process"))
            try:
                card = session.read(wanted)
                break
            except SamUnavailableError:
                # nothing reached the card that costs it a try: the SAM's part of an
                # authentication comes before the card is asked to check it
                if again and self._forget_sam(session.sam):
                    again = False
                    continue
                self._read_failed(actor, reader, wanted, SamUnavailableError)
                raise
            except Exception as exc:
                self._read_failed(actor, reader, wanted, type(exc))
                raise
            finally:
                if transport is None:
                    session.transport.close()
        # offline, before the card is used for anything: a listed card goes no further
        self._mw.cards.check(card.issuer.card_number, actor=actor)
        # file names only: what the card lacks is no personal data
        details = {"reader": reader, "parts": parts_text(wanted)}
        if card.missing:
            details["missing"] = ",".join(card.missing)
        self._mw.audit("card.read", actor=actor, outcome="ok", **details)
        self._mw.hooks.hcm_card_read(reader=reader, card=card)
        return card

    def _read_failed(
        self, actor: str, reader: str, wanted: Iterable[CardPart], error: type[BaseException]
    ) -> None:
        from hcmiddleware.card.filemap import parts_text

        self._mw.audit(
            "card.read",
            actor=actor,
            outcome="failed",
            reader=reader,
            parts=parts_text(wanted),
            error=error.__name__,
        )

    def write_visit(
        self,
        visit: VisitRecord,
        transport: Transport | None = None,
        *,
        card_number: str | None = None,
        actor: str = "terminal",
    ) -> int:
        """Write a visit record to the card, tear-safe (see
        :meth:`~hcmiddleware.card.session.CardSession.append_visit`); audited as
        ``card.write_visit``. Returns the slot written.

        :param card_number: the card the visit began with; another card in the reader
            is refused before anything is written.
        :raises WrongCardError: the card in the reader is another.
        :raises CardAbsentError: the card was pulled; its earlier records are intact.
        """
        session = self.open(transport)
        reader = str(getattr(session.transport, "reader", "in-process"))
        try:
            if card_number is not None and session.read_issuer().card_number != card_number:
                raise WrongCardError("the card in the reader is not the card this visit began with")
            slot = session.append_visit(visit)
        except Exception as exc:
            if isinstance(exc, SamUnavailableError):  # not written again: opened next time
                self._forget_sam(session.sam)
            self._mw.audit(
                "card.write_visit",
                actor=actor,
                outcome="refused" if isinstance(exc, WrongCardError) else "failed",
                reader=reader,
                kind=visit.kind,
                error=type(exc).__name__,
            )
            raise
        finally:
            if transport is None:
                session.transport.close()
        self._mw.audit(
            "card.write_visit", actor=actor, reader=reader, kind=visit.kind, slot=str(slot)
        )
        return slot

    def read_issuer(self, transport: Transport | None = None, *, actor: str = "terminal") -> Issuer:
        """Read the card's issuer data (DDF1/EF05), which needs no SAM; audited."""
        from hcmiddleware.card.session import CardSession

        if transport is None:
            from hcmiddleware.card.pcsc import PcscTransport

            transport = PcscTransport(self._mw.config.readers.user)
            owned = True
        else:
            owned = False
        reader = str(getattr(transport, "reader", "in-process"))
        session = CardSession(transport, None, guard=self.guard)
        try:
            issuer = session.read_issuer()
        except Exception as exc:
            self._mw.audit(
                "card.read_issuer", actor=actor, outcome="failed", reader=reader,
                error=type(exc).__name__,
            )  # fmt: skip
            raise
        finally:
            if owned:
                transport.close()
        self._mw.audit("card.read_issuer", actor=actor, reader=reader)
        return issuer

    def watch(self, *, wait_for_service: bool = False) -> CardEvents:
        """Card events of every PC/SC reader, delivered as hooks; call ``start()``.

        ``start()`` raises :class:`~hcmiddleware.errors.ReaderError` when the PC/SC
        service is not running, unless ``wait_for_service``: then the events begin once
        it answers. A service lost later is waited for either way (the cards it held
        reported removed meanwhile).
        """
        from hcmiddleware.card.monitor import CardEvents

        hooks = self._mw.hooks
        return CardEvents(
            on_inserted=lambda reader, atr: hooks.hcm_card_inserted(reader=reader, atr=atr),
            on_removed=lambda reader: hooks.hcm_card_removed(reader=reader),
            wait_for_service=wait_for_service,
        )

    def close(self) -> None:
        """Close the SAM if one was opened."""
        with self._lock:
            if self._sam is not None and self._own_sam:
                self._sam.close()
                self._sam = None

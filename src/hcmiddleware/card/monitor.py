"""Card insertion and removal events, from PC/SC's own wait for a change.

:class:`CardEvents` calls ``on_inserted(reader, atr)`` and ``on_removed(reader)`` from a
thread of its own; the runtime wires them to the hooks ``hcm_card_inserted`` /
``hcm_card_removed``. A callback that raises is logged and does not stop the events.

The thread waits in ``SCardGetStatusChange`` (pyscard's ``scard`` module) on every
reader and on PC/SC's plug-and-play notice, so a reader plugged in later is watched
too, and a reader unplugged with a card in it reports the card removed.

The PC/SC service may go away while the events run: pcscd restarted by an upgrade or
a crash, Windows stopping its Smart Card service when the last reader is unplugged.
Then each card known to be in a reader is reported removed (nobody can say it is still
there), and the events start again on their own once the service answers, reporting
the cards present then as inserted — so a page following the events never shows a card
that is gone, and never stops hearing about cards. pyscard's ``CardMonitor`` ends its
thread for good on the first such loss (and prints the traceback on stderr), which is
why it is not used here.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from hcmiddleware.card.pcsc import _message, _no_service, _scard, _unsigned

__all__ = ["CardEvents"]

log = logging.getLogger(__name__)

#: PC/SC's pseudo-reader whose state changes when a reader is plugged in or out
_PNP = "\\\\?PnP?\\Notification"
#: ms a wait for a change lasts; the reader list is read again after each (where a
#: platform has no plug-and-play notice, that is how a new reader is found)
_WAIT_MS = 2000


class CardEvents:
    """Deliver card insertions and removals on every reader to two callbacks.

    :meth:`start` raises :class:`~hcmiddleware.errors.ReaderError` when the PC/SC
    service is not running — unless ``wait_for_service``, when the events begin once it
    answers (tried every ``retry`` seconds). Either way, a service that goes away later
    is waited for the same way. Cards already present when the events begin are
    reported as inserted.
    """

    def __init__(
        self,
        on_inserted: Callable[[str, bytes], object],
        on_removed: Callable[[str], object],
        *,
        wait_for_service: bool = False,
        retry: float = 2.0,
    ) -> None:
        if retry <= 0:
            raise ValueError("retry must be positive")
        self.on_inserted = on_inserted
        self.on_removed = on_removed
        self.wait_for_service = wait_for_service
        self.retry = retry
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._context: Any = None
        self._on = False
        self._off_reason: str | None = "not started"
        self._ready = threading.Event()
        #: the cards in the readers as last delivered: reader -> ATR (replaced whole)
        self._cards: dict[str, bytes] = {}

    def __enter__(self) -> CardEvents:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def on(self) -> bool:
        """True while the events are watched (the PC/SC service answers)."""
        return self._on

    @property
    def off_reason(self) -> str | None:
        """Why the events are not watched now (``None`` while they are)."""
        return None if self._on else self._off_reason

    def cards(self) -> dict[str, bytes]:
        """The cards in the readers as the events last told them: reader -> ATR. Empty
        while the events are off (nobody can say then)."""
        return dict(self._cards)

    def start(self) -> None:
        """Begin delivering events, in a daemon thread.

        Without ``wait_for_service`` it returns once the readers' states were first
        read (the cards present then are being reported).
        """
        if self._thread is not None:
            return
        scard = _scard()  # a ReaderError saying how to install pyscard
        context = None if self.wait_for_service else _establish(scard)
        self._stop.clear()
        self._ready.clear()
        self._thread = threading.Thread(
            target=self._run, args=(scard, context), name="hcm-card-events", daemon=True
        )
        self._thread.start()
        if context is not None:
            self._ready.wait(5.0)

    def stop(self) -> None:
        """Stop delivering events and wait (at most 5 s) for the thread to end."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        scard = _scard()
        deadline = time.monotonic() + 5.0
        # a cancel that lands between two waits is lost: cancel until the thread ends
        while thread.is_alive() and time.monotonic() < deadline:
            context = self._context
            if context is not None:
                with contextlib.suppress(Exception):
                    scard.SCardCancel(context)
            thread.join(0.05)
        self._on = False
        self._off_reason = "stopped"

    # -- the thread ------------------------------------------------------------------

    def _run(self, scard: Any, context: Any) -> None:
        present: dict[str, tuple[bytes, int]] = {}  # reader -> (ATR, PC/SC's event count)
        lost = False  # the events were said to be off
        been = False  # the events were on before
        while not self._stop.is_set():
            if context is None:
                try:
                    context = _establish(scard)
                except Exception as exc:  # no service (yet): try again later
                    self._off(str(getattr(exc, "message", exc)), lost)
                    lost = True
                    self._stop.wait(self.retry)
                    continue
            self._context = context
            if lost:
                log.warning(
                    "card events are %s: the PC/SC service answers", "on again" if been else "on"
                )
            self._on, self._off_reason, lost, been = True, None, False, True
            try:
                reason = self._watch(scard, context, present)
            except Exception as exc:  # a fault of ours or pyscard's: start over
                log.exception("card events failed; starting them again")
                reason = type(exc).__name__
            finally:
                self._context = None
                with contextlib.suppress(Exception):
                    scard.SCardReleaseContext(context)
                context = None
            if reason is None:  # stopped
                break
            gone = sorted(present)
            present.clear()
            self._cards = {}
            for reader in gone:  # nobody can say these cards are still there
                self._deliver(self.on_removed, reader)
            self._off(reason, False)
            lost = True
            self._stop.wait(self.retry)
        self._on = False
        self._ready.set()

    def _off(self, reason: str, already: bool) -> None:
        """Record that the events are off; said once per outage, not per retry."""
        self._on = False
        self._off_reason = reason
        self._ready.set()
        if not already:
            log.warning(
                "card events are off: %s; they start again once the PC/SC service answers "
                "(tried every %g s)",
                reason,
                self.retry,
            )

    def _watch(self, scard: Any, context: Any, present: dict[str, tuple[bytes, int]]) -> str | None:
        """Deliver events until stopped (``None``) or the service is lost (why)."""
        states: dict[str, int] = {}
        pnp: int | None = scard.SCARD_STATE_UNAWARE  # None: the platform has no PnP notice
        rounds = 0
        while not self._stop.is_set():
            if rounds:  # the states were read once and what they showed delivered
                self._ready.set()
            rounds += 1
            hresult, readers = scard.SCardListReaders(context, [])
            code = _unsigned(hresult)
            if code == scard.SCARD_E_NO_READERS_AVAILABLE:
                readers = []
            elif code != scard.SCARD_S_SUCCESS:
                return _message(scard, hresult)
            for reader in [r for r in states if r not in readers]:  # unplugged
                del states[reader]
                if present.pop(reader, None) is not None:
                    self._note(present)
                    self._deliver(self.on_removed, reader)
            query = [(r, states.setdefault(r, scard.SCARD_STATE_UNAWARE)) for r in readers]
            if pnp is not None:
                query.append((_PNP, pnp))
            if not query:  # no reader and no notice of one: look again later
                self._stop.wait(_WAIT_MS / 1000)
                continue
            hresult, changed = scard.SCardGetStatusChange(context, _WAIT_MS, query)
            code = _unsigned(hresult)
            if code in (scard.SCARD_E_TIMEOUT, scard.SCARD_E_CANCELLED):
                continue
            if code in (scard.SCARD_E_UNKNOWN_READER, scard.SCARD_E_READER_UNAVAILABLE):
                if pnp is not None and not readers:
                    pnp = None  # it was the PnP notice the platform does not know
                continue  # a reader went between the list and the wait: list again
            if code != scard.SCARD_S_SUCCESS:
                return _message(scard, hresult)
            for name, event, atr in changed:
                if name == _PNP:
                    pnp = event & ~scard.SCARD_STATE_CHANGED
                    continue
                states[name] = event & ~scard.SCARD_STATE_CHANGED
                self._update(scard, name, event, bytes(atr), present)
        return None

    def _update(
        self, scard: Any, reader: str, event: int, atr: bytes, present: dict[str, tuple[bytes, int]]
    ) -> None:
        gone = scard.SCARD_STATE_UNKNOWN | scard.SCARD_STATE_UNAVAILABLE | scard.SCARD_STATE_IGNORE
        card_in = bool(event & scard.SCARD_STATE_PRESENT) and not event & gone
        count = event >> 16  # PC/SC counts a reader's insertions and removals here
        known = present.get(reader)
        if known is not None and (not card_in or count != known[1]):
            # gone — or, with the count moved on while present both times, swapped
            del present[reader]
            self._note(present)
            self._deliver(self.on_removed, reader)
            known = None
        if card_in and known is None:
            present[reader] = (atr, count)
            self._note(present)
            self._deliver(self.on_inserted, reader, atr)

    def _note(self, present: dict[str, tuple[bytes, int]]) -> None:
        """What :meth:`cards` answers, set before the event is delivered."""
        self._cards = {reader: atr for reader, (atr, _count) in present.items()}

    def _deliver(self, callback: Callable[..., object], *args: object) -> None:
        try:
            callback(*args)
        except Exception:
            log.exception("a card event callback failed")


def _establish(scard: Any) -> Any:
    """A PC/SC context; :class:`ReaderError` when the service does not answer."""
    from hcmiddleware.errors import ReaderError

    hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hresult != scard.SCARD_S_SUCCESS:
        if _unsigned(hresult) == scard.SCARD_E_NO_SERVICE:
            raise _no_service()
        raise ReaderError(f"cannot reach the PC/SC service: {_message(scard, hresult)}")
    return context

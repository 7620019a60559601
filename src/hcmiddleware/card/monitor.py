"""Card insertion and removal events from pyscard's CardMonitor.

:class:`CardEvents` calls ``on_inserted(reader, atr)`` and ``on_removed(reader)``; the
runtime wires them to the hooks ``hcm_card_inserted`` / ``hcm_card_removed``. A callback
that raises is logged and does not stop the monitor.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from hcmiddleware.card.pcsc import list_readers

__all__ = ["CardEvents"]

log = logging.getLogger(__name__)


class CardEvents:
    """Deliver card insertions and removals on every reader to two callbacks.

    :meth:`start` raises :class:`~hcmiddleware.errors.ReaderError` when pcscd is not
    running. Cards already present at start are reported as inserted.
    """

    def __init__(
        self,
        on_inserted: Callable[[str, bytes], object],
        on_removed: Callable[[str], object],
    ) -> None:
        self.on_inserted = on_inserted
        self.on_removed = on_removed
        self._monitor: Any = None
        self._observer: Any = None

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

    def start(self) -> None:
        """Begin monitoring (pyscard polls in its own thread)."""
        if self._monitor is not None:
            return
        list_readers()  # a clear ReaderError now rather than a dead thread later
        from smartcard.CardMonitoring import CardMonitor, CardObserver

        events = self

        class _Observer(CardObserver):  # type: ignore[misc]
            def update(self, observable: object, handlers: Any) -> None:
                """pyscard's callback: (added cards, removed cards)."""
                added, removed = handlers
                for card in removed:
                    events._deliver(events.on_removed, str(card.reader))
                for card in added:
                    events._deliver(events.on_inserted, str(card.reader), bytes(card.atr))

        self._observer = _Observer()
        self._monitor = CardMonitor()
        self._monitor.addObserver(self._observer)

    def _deliver(self, callback: Callable[..., object], *args: object) -> None:
        try:
            callback(*args)
        except Exception:
            log.exception("a card event callback failed")

    def stop(self) -> None:
        """Stop delivering events; the last one stopped ends pyscard's thread promptly."""
        if self._monitor is None:
            return
        from smartcard.CardMonitoring import CardMonitor, CardMonitoringThread
        from smartcard.scard import SCardCancel

        monitor, self._monitor = self._monitor, None
        monitor.deleteObserver(self._observer)
        self._observer = None
        if monitor.countObservers() > 0:
            return  # another CardEvents still listens on the shared monitor
        # pyscard (2.3) starts its monitoring thread once, with its singleton monitor,
        # and never again; that thread sits in SCardGetStatusChange for up to 60 s.
        # Cancel its wait until it has ended, then drop both singletons so the next
        # CardEvents gets a new monitor with a live thread. A cancel that lands
        # between two waits is lost, hence the loop.
        inner = CardMonitoringThread.instance
        request = None
        if inner is not None:
            inner.stopEvent.set()
            deadline = time.monotonic() + 5.0
            while inner.is_alive() and time.monotonic() < deadline:
                request = getattr(getattr(inner, "cardrequest", None), "pcsccardrequest", None)
                if request is not None and request.hcontext is not None:
                    SCardCancel(request.hcontext)
                inner.join(0.05)
        if inner is None or not inner.is_alive():
            with CardMonitoringThread.lock:
                CardMonitoringThread.instance = None
            with CardMonitor.lock:
                CardMonitor.instance = None
        if inner is not None and not inner.is_alive() and request is not None:
            # No wait is running any more: release the context now rather than in
            # pyscard's finaliser, which fails noisily when it runs after pcscd stops.
            with contextlib.suppress(Exception):
                request.release()

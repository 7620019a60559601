"""The guard against locking cards: a card key low on tries is never tried again.

A card key is blocked for good after five failed EXTERNAL AUTHENTICATEs
(docs/card-spec.md, "Behaviour").
Failures come from the terminal's side far more often than from a forged card — a SAM
of another issuer, a misconfigured key set — and every terminal that retries spends
one of the resident's tries. So once a card reports 2 tries left (``63C2``) or fewer
for a key, :class:`KeyGuard` remembers it and :class:`~hcmiddleware.card.session.CardSession`
refuses that key on that card, before sending any APDU, with
:class:`~hcmiddleware.errors.CardKeyAtRiskError`. The last tries are left for the
issuer, who can check the card and reset the counter.

The memory is keyed by the card (its card factor: the last 8 bytes of the ATR's
historical bytes, which end with the chip serial) and the key reference — not by the
session, so a reinserted card or a new session is refused too. One guard is shared by
every session of the process unless a caller passes its own (:data:`PROCESS_GUARD`; the
runtime's :class:`~hcmiddleware.terminal.Terminal` uses it).
"""

from __future__ import annotations

import logging
import threading

from hcmiddleware.errors import CardKeyAtRiskError

__all__ = ["GUARD_TRIES", "PROCESS_GUARD", "KeyGuard"]

log = logging.getLogger(__name__)

#: A key whose card reports this many tries left, or fewer, is not tried again.
GUARD_TRIES = 2


class KeyGuard:
    """Remembers, per card and key, the tries left the card last reported when low.

    Thread-safe. Only counts at or below :data:`GUARD_TRIES` are kept; a success
    (:meth:`succeeded`) on a key above the threshold forgets it again.
    """

    def __init__(self, threshold: int = GUARD_TRIES) -> None:
        self.threshold = threshold
        self._low: dict[tuple[bytes, int], int] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        # Card factors identify a card; a repr in a log names only how many are held.
        return f"KeyGuard(threshold {self.threshold}, {len(self._low)} keys held back)"

    def check(self, card: bytes, key_ref: int) -> None:
        """Raise :class:`CardKeyAtRiskError` when ``key_ref`` of ``card`` must not be tried."""
        with self._lock:
            tries = self._low.get((bytes(card), key_ref))
        if tries is None:
            return
        state = "is blocked" if tries == 0 else f"has only {tries} tries left"
        raise CardKeyAtRiskError(
            f"the card's key {key_ref:02X} {state}; this terminal does not try it again, "
            "so a wrong key cannot block the card",
            key_ref=f"{key_ref:02X}",
            tries_left=tries,
        )

    def failed(self, card: bytes, key_ref: int, tries_left: int) -> bool:
        """Record a failure the card answered with ``tries_left``; True when now held back."""
        if tries_left > self.threshold:
            return False
        with self._lock:
            self._low[(bytes(card), key_ref)] = tries_left
        log.warning(
            "card key %02X reported %d tries left; it will not be tried again on this card",
            key_ref,
            tries_left,
        )
        return True

    def succeeded(self, card: bytes, key_ref: int) -> None:
        """Forget ``key_ref`` of ``card``: it authenticated, so its counter is full again."""
        with self._lock:
            self._low.pop((bytes(card), key_ref), None)

    def held_back(self, card: bytes) -> dict[int, int]:
        """The keys of ``card`` held back, with the tries left the card reported."""
        with self._lock:
            return {ref: n for (c, ref), n in self._low.items() if c == bytes(card)}

    def clear(self) -> None:
        """Forget every card (the issuer reset their counters; tests)."""
        with self._lock:
            self._low.clear()


#: The guard every :class:`~hcmiddleware.card.session.CardSession` uses unless given one.
PROCESS_GUARD = KeyGuard()

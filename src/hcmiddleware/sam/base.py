"""The SAM as the card session sees it: a protocol every SAM implementation follows.

A SAM never lets a card key out. The card session hands it the card's factor and
challenges and gets back only what goes to the card (a cryptogram, a whole
secure-messaging APDU) or a verdict (the card is genuine or not). That keeps the
protocol implementable by a SAM card in a PC/SC slot, where each method is a few APDUs
(see :mod:`hcmiddleware.sam.commands`), and by :class:`~hcmiddleware.sam.software.SoftwareSam`.

Key references are ints (the byte the card commands carry: ``0x01``, ``0x12``…); the
usage each may serve is in :mod:`hcmiddleware.sam.keyrefs`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Protocol, runtime_checkable

from hcmiddleware.errors import SamInputError
from hcmiddleware.sam.crypto import CHALLENGE_SIZE, FACTOR_SIZE, Algorithm

__all__ = ["ChallengeLedger", "Sam", "check_card_factor", "check_challenge"]


@runtime_checkable
class Sam(Protocol):
    """What the card session needs from a SAM.

    Implementations are safe to share between threads: each call is one indivisible
    exchange with the SAM. Every method may raise :class:`~hcmiddleware.errors.SamError` subclasses:
    ``UnknownKeyError`` (no such key), ``SamInputError`` (wrong shape or wrong key
    usage), ``SamUnavailableError`` (no SAM / closed), and for a SAM card
    ``SamStatusError`` / ``SamPinError`` / ``SamBlockedError``.
    """

    @property
    def city_code(self) -> str:
        """The city code the SAM's keys are for (the level-2 factor), e.g. ``"21"``."""
        ...

    def key_algorithm(self, key_ref: int) -> Algorithm:
        """The algorithm of key ``key_ref`` (decides block size and SM capacity)."""
        ...

    def new_challenge(self) -> bytes:
        """A fresh random 8-byte challenge for the card's internal authentication."""
        ...

    def external_auth(self, key_ref: int, card_factor: bytes, challenge: bytes) -> bytes:
        """The 8-byte cryptogram for ``00 82 00 <key_ref> 08 <C>``.

        ``card_factor`` is the last 8 bytes of the card's ATR historical bytes,
        ``challenge`` the card's GET CHALLENGE answer (8 bytes).
        """
        ...

    def check_internal_auth(
        self, key_ref: int, card_factor: bytes, challenge: bytes, response: bytes
    ) -> None:
        """Check the card's INTERNAL AUTHENTICATE answer to ``challenge``.

        Returns when the card is genuine; raises
        :class:`~hcmiddleware.errors.CardAuthenticityError` when not. A challenge is
        accepted once (:class:`ChallengeLedger`), so a replayed answer is refused.
        """
        ...

    def secure_update(
        self,
        key_ref: int,
        card_factor: bytes,
        card_challenge: bytes,
        header: bytes,
        plain: bytes,
    ) -> bytes:
        """The whole secure-messaging APDU writing ``plain`` with update key ``key_ref``.

        ``card_challenge`` is a fresh GET CHALLENGE answer of the card (the session
        key is derived from it), ``header`` is ``CLA INS P1 P2`` with CLA ``04``.
        """
        ...

    def close(self) -> None:
        """Release the SAM; later calls raise ``SamUnavailableError``. Idempotent."""
        ...


def check_challenge(challenge: bytes, what: str = "challenge") -> None:
    """Raise :class:`SamInputError` unless ``challenge`` is 8 bytes."""
    if len(challenge) != CHALLENGE_SIZE:
        raise SamInputError(f"{what} must be {CHALLENGE_SIZE} bytes, got {len(challenge)}")


def check_card_factor(card_factor: bytes) -> None:
    """Raise :class:`SamInputError` unless ``card_factor`` is 8 bytes."""
    if len(card_factor) != FACTOR_SIZE:
        raise SamInputError(f"card factor must be {FACTOR_SIZE} bytes, got {len(card_factor)}")


class ChallengeLedger:
    """Remembers the last internal-authentication challenges so none is accepted twice.

    A terminal that reused a challenge would accept a recorded answer from a cloned
    card; the ledger turns that terminal bug into an error instead. It keeps the last
    ``capacity`` challenges (a reused random 8-byte challenge further back than that is
    already a broken random source).
    """

    def __init__(self, capacity: int = 4096) -> None:
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    def use(self, challenge: bytes) -> None:
        """Record ``challenge``; :class:`SamInputError` if it was used before."""
        check_challenge(challenge)
        with self._lock:
            if challenge in self._seen:
                raise SamInputError(
                    "this internal-authentication challenge was already used; a card's "
                    "answer to it could be a replay",
                    hint="use a fresh challenge from Sam.new_challenge() for each authentication",
                )
            self._seen[challenge] = None
            if len(self._seen) > self._capacity:
                self._seen.popitem(last=False)

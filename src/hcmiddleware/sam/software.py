"""A SAM in software: the issuer's master keys from a key-set file, for tests and demos.

It derives each card key when asked and drops it after the call. In production the
master keys belong in a SAM card (:class:`~hcmiddleware.sam.pcsc.PcscSam`); a key-set file
on a terminal's disk is only as safe as that disk.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from pathlib import Path
from types import TracebackType

from hcmiddleware.errors import CardAuthenticityError, SamUnavailableError
from hcmiddleware.sam import crypto
from hcmiddleware.sam.base import ChallengeLedger, check_card_factor, check_challenge
from hcmiddleware.sam.crypto import Algorithm
from hcmiddleware.sam.keyrefs import KeyUsage, require
from hcmiddleware.sam.keyset import KeyEntry, KeySet, load_keyset

__all__ = ["SoftwareSam"]

log = logging.getLogger(__name__)


class SoftwareSam:
    """The :class:`~hcmiddleware.sam.base.Sam` protocol over a :class:`KeySet`."""

    def __init__(self, keyset: KeySet) -> None:
        self._keyset: KeySet | None = keyset
        self._city_code = keyset.city_code
        self._ledger = ChallengeLedger()

    @classmethod
    def from_file(cls, path: str | Path) -> SoftwareSam:
        """A software SAM over the key-set file at ``path`` (``KeySetError`` if unusable)."""
        return cls(load_keyset(path))

    def __repr__(self) -> str:
        if self._keyset is None:
            return "SoftwareSam(closed)"
        refs = " ".join(f"{r:02X}" for r in self._keyset.refs)
        return f"SoftwareSam(city {self._city_code}, keys {refs})"

    def __enter__(self) -> SoftwareSam:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def city_code(self) -> str:
        """The city code of the key set."""
        return self._city_code

    def _keys(self) -> KeySet:
        if self._keyset is None:
            raise SamUnavailableError(
                "the software SAM is closed", hint="open a new SAM for this terminal session"
            )
        return self._keyset

    def _entry(self, key_ref: int) -> KeyEntry:
        return self._keys().entry(key_ref)

    def _card_key(self, entry: KeyEntry, card_factor: bytes) -> bytes:
        check_card_factor(card_factor)
        return crypto.card_key(entry.alg, entry.master.reveal(), card_factor, self._city_code)

    def key_algorithm(self, key_ref: int) -> Algorithm:
        """The algorithm of key ``key_ref``."""
        return self._entry(key_ref).alg

    def new_challenge(self) -> bytes:
        """8 bytes from the operating system's CSPRNG."""
        self._keys()
        return secrets.token_bytes(crypto.CHALLENGE_SIZE)

    def external_auth(self, key_ref: int, card_factor: bytes, challenge: bytes) -> bytes:
        """The external-authentication cryptogram of the card's challenge."""
        entry = self._entry(key_ref)
        require(key_ref, KeyUsage.EXTERNAL_AUTH)
        check_challenge(challenge)
        log.debug("external authentication cryptogram with key %02X", key_ref)
        return crypto.cryptogram(entry.alg, self._card_key(entry, card_factor), challenge)

    def check_internal_auth(
        self, key_ref: int, card_factor: bytes, challenge: bytes, response: bytes
    ) -> None:
        """Raise :class:`CardAuthenticityError` unless ``response`` is the card's right answer."""
        entry = self._entry(key_ref)
        require(key_ref, KeyUsage.INTERNAL_AUTH)
        check_card_factor(card_factor)
        self._ledger.use(challenge)
        expected = crypto.cryptogram(entry.alg, self._card_key(entry, card_factor), challenge)
        if not hmac.compare_digest(expected, response):
            log.warning("internal authentication with key %02X failed", key_ref)
            raise CardAuthenticityError(
                f"the card's internal-authentication answer with key {key_ref:02X} is wrong: "
                "the card is not genuine, or it belongs to another issuer or city",
                key_ref=f"{key_ref:02X}",
            )
        log.debug("internal authentication with key %02X passed", key_ref)

    def secure_update(
        self,
        key_ref: int,
        card_factor: bytes,
        card_challenge: bytes,
        header: bytes,
        plain: bytes,
    ) -> bytes:
        """The whole SM APDU, under the session key of ``card_challenge``."""
        entry = self._entry(key_ref)
        require(key_ref, KeyUsage.SECURE_MESSAGING)
        check_challenge(card_challenge, "card challenge")
        sk = crypto.session_key(entry.alg, self._card_key(entry, card_factor), card_challenge)
        log.debug("secure-messaging command with key %02X, %d plain bytes", key_ref, len(plain))
        return crypto.sm_wrap(entry.alg, sk, header, plain)

    def close(self) -> None:
        """Drop the key set; later calls raise :class:`SamUnavailableError`."""
        self._keyset = None

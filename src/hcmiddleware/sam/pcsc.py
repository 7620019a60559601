"""A SAM card in a PC/SC slot, driven through the APDUs of :mod:`hcmiddleware.sam.commands`.

``PcscSam(transport, pin)`` takes any object with ``transmit(apdu: bytes) -> bytes``
(response data || SW1 SW2): the PC/SC transport of the card layer for the terminal's
SAM slot, or :class:`~hcmiddleware.sam.emulated.EmulatedSam` in-process. It verifies the
PIN when opened, reads the SAM's city code and key list, and then implements the
:class:`~hcmiddleware.sam.base.Sam` protocol; no key ever reaches the host.

The PIN guard: before spending a try, the SAM is asked how many are left, and when only
one is, ``PcscSam`` refuses to risk it (a wrong PIN in the configuration would block
the SAM for good) unless ``allow_last_try=True`` — an operator entering the PIN by hand.
"""

from __future__ import annotations

import logging
import threading
from types import TracebackType
from typing import Protocol

from pydantic import SecretStr

from hcmiddleware.errors import (
    CardAuthenticityError,
    CardError,
    SamBlockedError,
    SamInputError,
    SamPinError,
    SamStatusError,
    SamUnavailableError,
    UnknownKeyError,
)
from hcmiddleware.sam import commands
from hcmiddleware.sam.base import ChallengeLedger, check_card_factor, check_challenge
from hcmiddleware.sam.commands import ALG_CODES, SW, DataTag, KeyType
from hcmiddleware.sam.crypto import (
    CHALLENGE_SIZE,
    MAC_SIZE,
    Algorithm,
    block_size,
    check_sm_header,
    city_factor,
    max_sm_plain,
)
from hcmiddleware.sam.keyrefs import require

__all__ = ["PcscSam", "SamTransport"]

log = logging.getLogger(__name__)

_ALG_OF_CODE = {code: alg for alg, code in ALG_CODES.items()}
# GET RESPONSE / wrong-Le retries before the SAM's answer counts as broken.
_MAX_CHAINED = 8


class SamTransport(Protocol):
    """Anything that carries APDUs to the SAM: ``transmit(apdu) -> data || SW1 SW2``."""

    def transmit(self, apdu: bytes) -> bytes:
        """Send one command APDU, return the response APDU."""
        ...


class PcscSam:
    """The :class:`~hcmiddleware.sam.base.Sam` protocol over a SAM card's APDUs.

    Raises on opening: :class:`SamPinError` (wrong PIN, or refusing the last try),
    :class:`SamBlockedError`, :class:`SamUnavailableError` (no answer from the slot),
    :class:`SamStatusError` (the card is not a SAM of this command set).
    The transport stays the caller's: :meth:`close` does not close it.
    """

    def __init__(
        self,
        transport: SamTransport,
        pin: str | SecretStr,
        *,
        allow_last_try: bool = False,
    ) -> None:
        self._transport: SamTransport | None = transport
        self._ledger = ChallengeLedger()
        # One operation is several APDUs over state the SAM keeps (the delivered key,
        # the session key): another thread's DELIVER KEY in between would make a
        # cryptogram under the wrong key and spend one of the card's tries.
        self._lock = threading.RLock()
        self._verify_pin(
            pin.get_secret_value() if isinstance(pin, SecretStr) else pin, allow_last_try
        )
        self.serial = self._get_data(DataTag.SERIAL).hex().upper()
        """The SAM's serial number (hex)."""
        self.terminal_number = self._get_data(DataTag.TERMINAL_NUMBER).hex().upper()
        """The terminal number (province, city, issuer, serial digits)."""
        try:
            self._city_code = self._get_data(DataTag.CITY_CODE).decode("ascii")
            city_factor(self._city_code)
        except (UnicodeDecodeError, SamInputError):
            raise SamStatusError(
                "the SAM reports a city code that is not 2, 4 or 6 digits",
                sw=SW.OK,
                hint="the SAM is not personalised for this system; ask the issuer",
            ) from None
        self._algorithms = self._read_key_list()
        log.info(
            "SAM %s opened: terminal %s, city %s, keys %s",
            self.serial,
            self.terminal_number,
            self._city_code,
            " ".join(f"{r:02X}" for r in self._algorithms),
        )

    def __repr__(self) -> str:
        state = "closed" if self._transport is None else f"city {self._city_code}"
        return f"PcscSam(serial {getattr(self, 'serial', '?')}, {state})"

    def __enter__(self) -> PcscSam:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- APDU exchange --------------------------------------------------------------

    def _exchange(self, apdu: bytes) -> tuple[bytes, int]:
        """One command with its ``61xx`` / ``6Cxx`` follow-ups; returns (data, SW)."""
        transport = self._transport
        if transport is None:
            raise SamUnavailableError(
                "the SAM is closed", hint="open the SAM again for this terminal session"
            )
        data = b""
        for _ in range(_MAX_CHAINED):
            try:
                response = transport.transmit(apdu)
            except (CardError, OSError) as exc:
                # Whatever the slot's transport raises (no card, reader gone, garbled
                # link), for the terminal the SAM is not there.
                raise SamUnavailableError(
                    f"the SAM slot did not answer ({type(exc).__name__})"
                ) from exc
            if len(response) < 2:
                raise SamStatusError(
                    f"the SAM answered {len(response)} bytes, less than a status word",
                    sw=0,
                )
            sw = int.from_bytes(response[-2:], "big")
            data += response[:-2]
            if sw >> 8 == 0x61:
                apdu = commands.get_response(sw & 0xFF)
                continue
            if sw >> 8 == 0x6C and self._has_le(apdu):
                # Wrong Le: repeat the same command with the length the SAM named.
                apdu = apdu[:-1] + bytes([sw & 0xFF])
                data = b""
                continue
            return data, sw
        raise SamStatusError("the SAM kept asking for the command to be repeated", sw=sw)

    @staticmethod
    def _has_le(apdu: bytes) -> bool:
        # Case 2 (header + Le) or case 4 (header + Lc + data + Le).
        return len(apdu) == 5 or (len(apdu) > 5 and len(apdu) == 6 + apdu[4])

    def _command(self, apdu: bytes, what: str, *, key_ref: int | None = None) -> bytes:
        data, sw = self._exchange(apdu)
        if sw == SW.OK:
            return data
        raise self._status_error(sw, what, key_ref)

    def _status_error(self, sw: int, what: str, key_ref: int | None) -> Exception:
        ref = f" with key {key_ref:02X}" if key_ref is not None else ""
        if sw == SW.REFERENCE_NOT_FOUND and key_ref is not None:
            return UnknownKeyError(
                f"the SAM holds no key {key_ref:02X} ({what})", key_ref=f"{key_ref:02X}"
            )
        if sw == SW.SECURITY_NOT_SATISFIED:
            return SamStatusError(
                f"the SAM refused {what}{ref}: its PIN is not verified (6982)",
                sw=sw,
                hint="the SAM was reset or removed; open it again with its PIN",
            )
        if sw == SW.CONDITIONS_NOT_SATISFIED:
            return SamStatusError(
                f"the SAM refused {what}{ref}: the key may not be used for this (6985)",
                sw=sw,
            )
        return SamStatusError(f"the SAM refused {what}{ref} with status {sw:04X}", sw=sw)

    # --- opening --------------------------------------------------------------------

    def _verify_pin(self, pin: str, allow_last_try: bool) -> None:
        apdu = commands.verify_pin(pin)  # checks the PIN's form before any try is spent
        _, sw = self._exchange(commands.pin_status())
        # Some SAMs report a blocked PIN as 63C0 (no tries left) rather than 6983.
        if sw in (SW.BLOCKED, 0x63C0):
            raise SamBlockedError(f"the SAM's PIN is blocked ({sw:04X})")
        if sw >> 4 == 0x63C and (sw & 0x0F) <= 1 and not allow_last_try:
            raise SamPinError(
                "the SAM has one PIN try left; it was not used, so a wrong PIN in the "
                "configuration cannot block the SAM",
                tries_left=sw & 0x0F,
                hint="check the PIN, then enter it by hand (allow_last_try) or ask the issuer",
            )
        _, sw = self._exchange(apdu)
        if sw == SW.OK:
            return
        if sw in (SW.BLOCKED, 0x63C0):
            raise SamBlockedError(f"the SAM's PIN is now blocked after a wrong PIN ({sw:04X})")
        if sw >> 4 == 0x63C:
            tries = sw & 0x0F
            raise SamPinError(f"the SAM refused its PIN; {tries} tries left", tries_left=tries)
        raise SamStatusError(
            f"the SAM refused VERIFY PIN with status {sw:04X}",
            sw=sw,
            hint="check that the card in the SAM slot is this system's SAM",
        )

    def _get_data(self, tag: DataTag) -> bytes:
        return self._command(commands.get_data(tag), f"GET DATA {tag.name}")

    def _read_key_list(self) -> dict[int, Algorithm]:
        raw = self._get_data(DataTag.KEY_LIST)
        if len(raw) % 2:
            raise SamStatusError("the SAM's key list has an odd length", sw=SW.OK)
        algorithms: dict[int, Algorithm] = {}
        for i in range(0, len(raw), 2):
            ref, code = raw[i], raw[i + 1]
            if code not in _ALG_OF_CODE:
                raise SamStatusError(
                    f"the SAM's key {ref:02X} has an unknown algorithm code {code:02X}", sw=SW.OK
                )
            algorithms[ref] = _ALG_OF_CODE[code]
        return algorithms

    # --- the Sam protocol -----------------------------------------------------------

    @property
    def city_code(self) -> str:
        """The city code the SAM reports (its keys' level-2 factor)."""
        return self._city_code

    def key_algorithm(self, key_ref: int) -> Algorithm:
        """The algorithm of key ``key_ref``, from the SAM's key list."""
        if self._transport is None:
            raise SamUnavailableError("the SAM is closed")
        try:
            return self._algorithms[key_ref]
        except KeyError:
            raise UnknownKeyError(
                f"the SAM holds no key {key_ref:02X}", key_ref=f"{key_ref:02X}"
            ) from None

    def new_challenge(self) -> bytes:
        """8 random bytes from the SAM's generator."""
        with self._lock:
            data = self._command(commands.get_challenge(), "GET CHALLENGE")
        if len(data) != CHALLENGE_SIZE:
            raise SamStatusError(f"the SAM's challenge is {len(data)} bytes, not 8", sw=SW.OK)
        return data

    def _deliver(self, key_type: KeyType, key_ref: int, card_factor: bytes) -> None:
        require(key_ref, key_type.usage)  # fail before any APDU
        check_card_factor(card_factor)
        self._command(
            commands.deliver_key(key_type, key_ref, card_factor, city_factor(self._city_code)),
            "DELIVER KEY",
            key_ref=key_ref,
        )

    def external_auth(self, key_ref: int, card_factor: bytes, challenge: bytes) -> bytes:
        """DELIVER KEY (type 01) then ENCRYPT the card's challenge."""
        check_challenge(challenge)
        with self._lock:
            self._deliver(KeyType.EXTERNAL_AUTH, key_ref, card_factor)
            data = self._command(commands.encrypt(challenge), "ENCRYPT", key_ref=key_ref)
        if len(data) != CHALLENGE_SIZE:
            raise SamStatusError(f"the SAM's cryptogram is {len(data)} bytes, not 8", sw=SW.OK)
        return data

    def check_internal_auth(
        self, key_ref: int, card_factor: bytes, challenge: bytes, response: bytes
    ) -> None:
        """DELIVER KEY (type 03) then let the SAM compare the card's answer."""
        require(key_ref, KeyType.INTERNAL_AUTH.usage)
        check_card_factor(card_factor)
        self._ledger.use(challenge)
        if len(response) != CHALLENGE_SIZE:
            raise CardAuthenticityError(
                f"the card's internal-authentication answer is {len(response)} bytes, not 8",
                key_ref=f"{key_ref:02X}",
            )
        with self._lock:
            self._deliver(KeyType.INTERNAL_AUTH, key_ref, card_factor)
            _, sw = self._exchange(commands.check_internal_auth(challenge, response))
        if sw == SW.OK:
            return
        if sw == SW.VERIFICATION_FAILED:
            log.warning("internal authentication with key %02X failed", key_ref)
            raise CardAuthenticityError(
                f"the card's internal-authentication answer with key {key_ref:02X} is wrong: "
                "the card is not genuine, or it belongs to another issuer or city",
                key_ref=f"{key_ref:02X}",
            )
        raise self._status_error(sw, "CHECK INTERNAL AUTH", key_ref)

    def secure_update(
        self,
        key_ref: int,
        card_factor: bytes,
        card_challenge: bytes,
        header: bytes,
        plain: bytes,
    ) -> bytes:
        """DELIVER KEY (type 02), SESSION over the card's challenge, SM WRAP."""
        check_challenge(card_challenge, "card challenge")
        check_sm_header(header)
        alg = self.key_algorithm(key_ref)
        if len(plain) > max_sm_plain(alg):
            raise SamInputError(
                f"{len(plain)} bytes do not fit one {alg.value} secure-messaging command "
                f"(at most {max_sm_plain(alg)})"
            )
        with self._lock:
            self._deliver(KeyType.SECURE_MESSAGING, key_ref, card_factor)
            self._command(commands.session(card_challenge), "SESSION", key_ref=key_ref)
            body = self._command(commands.sm_wrap(header, plain), "SM WRAP", key_ref=key_ref)
        encrypted = len(body) - MAC_SIZE
        if encrypted <= 0 or encrypted % block_size(alg):
            raise SamStatusError(
                f"the SAM's SM WRAP answer of {len(body)} bytes is not blocks plus a MAC",
                sw=SW.OK,
            )
        return header + bytes([len(body)]) + body

    def close(self) -> None:
        """Forget the transport; later calls raise :class:`SamUnavailableError`."""
        with self._lock:
            self._transport = None

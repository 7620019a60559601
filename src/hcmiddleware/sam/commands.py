"""The SAM card's APDU command set (our choice; documented in docs/sam.md).

Real PSAMs differ by vendor; this set follows the shape of the ones seen in the field
(VERIFY PIN, DELIVER KEY with the card's factors, then ENCRYPT/MAC with the key the SAM
keeps) and keeps every card key inside the SAM. The SAM card emulator
(:mod:`hcmiddleware.sam.emulated`) answers these commands and
:class:`~hcmiddleware.sam.pcsc.PcscSam` sends them.

- VERIFY PIN ``00 20 00 00 Lc <PIN, ASCII digits>``: ``9000``; ``63Cx`` wrong, x tries
  left; ``6983`` blocked (the last wrong try answers ``6983``).
- PIN STATUS ``00 20 00 00``: ``63Cx`` tries left, ``9000`` verified, ``6983`` blocked.
- GET CHALLENGE ``00 84 00 00 08``: 8 random bytes.
- GET DATA ``80 CA 00 <tag> 00``: tag 01 serial (8 bytes), 02 terminal number (6 bytes
  BCD), 03 city code (ASCII digits), 04 key list (pairs of key ref, algorithm code).
- DELIVER KEY ``80 DE <key type> <key ref> 10 <card factor || city factor>``: ``9000``;
  the SAM derives the card key and keeps it, for that key type only, as the current key.
- ENCRYPT ``80 FA 00 00 08 <R> 08``: the cryptogram of R (key type 01).
- SESSION ``80 FA 01 00 08 <card challenge>``: ``9000``; the SAM keeps the session key
  (key type 02).
- SM WRAP ``80 FA 02 00 Lc <header || plain> 00``: ``E_SK(pad(L || plain)) || MAC4``,
  the SM command without its header and Lc (so it fits a short response).
- CHECK INTERNAL AUTH ``80 FA 03 00 10 <R_t || card's answer>``: ``9000`` genuine,
  ``6300`` not (key type 03).
- MAC ``80 F8 00 00 Lc <data> 04``: MAC4 of data under the session key.

Key types (DELIVER KEY P1) bind the delivered key to one use, checked against
:mod:`hcmiddleware.sam.keyrefs`: ``01`` external authentication, ``02`` secure messaging,
``03`` internal authentication. There is no command that returns a cryptogram under the
internal-authentication key: the SAM compares the card's answer itself.

Everything but VERIFY, GET CHALLENGE and GET DATA needs the PIN verified (``6982``).
"""

from __future__ import annotations

import enum

from hcmiddleware.errors import SamInputError
from hcmiddleware.sam.crypto import CHALLENGE_SIZE, FACTOR_SIZE, Algorithm, check_sm_header
from hcmiddleware.sam.keyrefs import KeyUsage

__all__ = [
    "ALG_CODES",
    "CLA_ISO",
    "CLA_PROPRIETARY",
    "INS_DELIVER_KEY",
    "INS_ENCRYPT",
    "INS_GET_CHALLENGE",
    "INS_GET_DATA",
    "INS_GET_RESPONSE",
    "INS_MAC",
    "INS_VERIFY",
    "PIN_MAX",
    "PIN_MIN",
    "SW",
    "DataTag",
    "EncryptOp",
    "KeyType",
    "check_internal_auth",
    "deliver_key",
    "encrypt",
    "get_challenge",
    "get_data",
    "get_response",
    "mac",
    "pin_status",
    "redact",
    "session",
    "sm_wrap",
    "verify_pin",
]

CLA_ISO = 0x00
CLA_PROPRIETARY = 0x80
INS_VERIFY = 0x20
INS_GET_CHALLENGE = 0x84
INS_GET_RESPONSE = 0xC0
INS_GET_DATA = 0xCA
INS_DELIVER_KEY = 0xDE
INS_ENCRYPT = 0xFA
INS_MAC = 0xF8

#: PIN length bounds (ASCII digits).
PIN_MIN = 4
PIN_MAX = 12


class SW(enum.IntEnum):
    """Status words the SAM answers with (``63Cx`` is built from the tries left)."""

    OK = 0x9000
    VERIFICATION_FAILED = 0x6300
    WRONG_LENGTH = 0x6700
    SECURITY_NOT_SATISFIED = 0x6982
    BLOCKED = 0x6983
    CONDITIONS_NOT_SATISFIED = 0x6985
    WRONG_DATA = 0x6A80
    WRONG_P1P2 = 0x6A86
    REFERENCE_NOT_FOUND = 0x6A88
    INS_NOT_SUPPORTED = 0x6D00
    CLA_NOT_SUPPORTED = 0x6E00


class KeyType(enum.IntEnum):
    """DELIVER KEY's P1: the one use the delivered key is for."""

    EXTERNAL_AUTH = 0x01
    SECURE_MESSAGING = 0x02
    INTERNAL_AUTH = 0x03

    @property
    def usage(self) -> KeyUsage:
        """The key usage of :mod:`hcmiddleware.sam.keyrefs` this type asks for."""
        return _USAGE_OF[self]


_USAGE_OF = {
    KeyType.EXTERNAL_AUTH: KeyUsage.EXTERNAL_AUTH,
    KeyType.SECURE_MESSAGING: KeyUsage.SECURE_MESSAGING,
    KeyType.INTERNAL_AUTH: KeyUsage.INTERNAL_AUTH,
}


class EncryptOp(enum.IntEnum):
    """ENCRYPT's P1."""

    CRYPTOGRAM = 0x00
    SESSION = 0x01
    SM_WRAP = 0x02
    CHECK_INTERNAL_AUTH = 0x03


class DataTag(enum.IntEnum):
    """GET DATA's P2."""

    SERIAL = 0x01
    TERMINAL_NUMBER = 0x02
    CITY_CODE = 0x03
    KEY_LIST = 0x04


#: The algorithm byte of the key list (GET DATA tag 04).
ALG_CODES = {Algorithm.SM4: 0x01, Algorithm.TDES: 0x02}


def _apdu(cla: int, ins: int, p1: int, p2: int, data: bytes = b"", le: int | None = None) -> bytes:
    if len(data) > 255:
        raise SamInputError(f"command data of {len(data)} bytes does not fit a short APDU")
    out = bytes([cla, ins, p1, p2])
    if data:
        out += bytes([len(data)]) + data
    if le is not None:
        out += bytes([le & 0xFF])
    return out


def verify_pin(pin: str) -> bytes:
    """VERIFY with the PIN (4-12 ASCII digits)."""
    if not (pin.isascii() and pin.isdigit() and PIN_MIN <= len(pin) <= PIN_MAX):
        # Never echo the PIN, not even a wrong one.
        raise SamInputError(f"the SAM PIN must be {PIN_MIN} to {PIN_MAX} digits")
    return _apdu(CLA_ISO, INS_VERIFY, 0x00, 0x00, pin.encode("ascii"))


def pin_status() -> bytes:
    """VERIFY without data: asks how many PIN tries are left, spends none."""
    return _apdu(CLA_ISO, INS_VERIFY, 0x00, 0x00)


def get_challenge() -> bytes:
    """GET CHALLENGE for 8 random bytes from the SAM."""
    return _apdu(CLA_ISO, INS_GET_CHALLENGE, 0x00, 0x00, le=CHALLENGE_SIZE)


def get_response(length: int) -> bytes:
    """GET RESPONSE for ``length`` bytes after a ``61xx``."""
    return _apdu(CLA_ISO, INS_GET_RESPONSE, 0x00, 0x00, le=length)


def get_data(tag: DataTag) -> bytes:
    """GET DATA of one of the SAM's data objects."""
    return _apdu(CLA_PROPRIETARY, INS_GET_DATA, 0x00, tag, le=0)


def deliver_key(key_type: KeyType, key_ref: int, card_factor: bytes, city_factor: bytes) -> bytes:
    """DELIVER KEY: derive the card key ``key_ref`` inside the SAM for one use."""
    if len(card_factor) != FACTOR_SIZE or len(city_factor) != FACTOR_SIZE:
        raise SamInputError(f"card and city factors must be {FACTOR_SIZE} bytes each")
    if not 0 <= key_ref <= 0xFF:
        raise SamInputError(f"key ref must be one byte, got {key_ref}")
    return _apdu(CLA_PROPRIETARY, INS_DELIVER_KEY, key_type, key_ref, card_factor + city_factor)


def _check_challenge(challenge: bytes) -> None:
    if len(challenge) != CHALLENGE_SIZE:
        raise SamInputError(f"challenge must be {CHALLENGE_SIZE} bytes, got {len(challenge)}")


def encrypt(challenge: bytes) -> bytes:
    """ENCRYPT: the cryptogram of ``challenge`` under the current (type 01) key."""
    _check_challenge(challenge)
    return _apdu(CLA_PROPRIETARY, INS_ENCRYPT, EncryptOp.CRYPTOGRAM, 0x00, challenge, le=8)


def session(card_challenge: bytes) -> bytes:
    """SESSION: derive and keep the session key of ``card_challenge`` (type 02 key)."""
    _check_challenge(card_challenge)
    return _apdu(CLA_PROPRIETARY, INS_ENCRYPT, EncryptOp.SESSION, 0x00, card_challenge)


def sm_wrap(header: bytes, plain: bytes) -> bytes:
    """SM WRAP: encrypt and MAC ``plain`` for the command ``header`` under the session key."""
    check_sm_header(header)
    return _apdu(CLA_PROPRIETARY, INS_ENCRYPT, EncryptOp.SM_WRAP, 0x00, header + plain, le=0)


def check_internal_auth(challenge: bytes, response: bytes) -> bytes:
    """CHECK INTERNAL AUTH: the SAM compares the card's answer under the type 03 key."""
    _check_challenge(challenge)
    if len(response) != CHALLENGE_SIZE:
        raise SamInputError(f"card answer must be {CHALLENGE_SIZE} bytes, got {len(response)}")
    return _apdu(
        CLA_PROPRIETARY, INS_ENCRYPT, EncryptOp.CHECK_INTERNAL_AUTH, 0x00, challenge + response
    )


def mac(data: bytes) -> bytes:
    """MAC: MAC4 of ``data`` under the session key."""
    return _apdu(CLA_PROPRIETARY, INS_MAC, 0x00, 0x00, data, le=4)


def redact(apdu: bytes) -> bytes:
    """``apdu`` as an APDU tracer may show it: a VERIFY's PIN replaced by ``FF`` bytes.

    No other SAM command carries a secret: keys never cross the interface.
    """
    if len(apdu) > 5 and apdu[1] == INS_VERIFY:
        return apdu[:5] + b"\xff" * (len(apdu) - 5)
    return apdu

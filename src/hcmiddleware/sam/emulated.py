"""A SAM card in software: answers the APDUs of :mod:`hcmiddleware.sam.commands`.

It has the shape every emulated card of the project has — ``atr`` and
``transmit(apdu) -> response data || SW1 SW2`` — so the vpcd bridge can put it behind
pcscd in the terminal's second slot (``Virtual PCD 00 01``), and
:class:`~hcmiddleware.sam.pcsc.PcscSam` can drive it in-process in tests.

Like a real SAM it enforces its own rules, whatever the terminal sends: the PIN with a
retry counter that survives resets and blocks for good, key types bound to the key plan
of :mod:`hcmiddleware.sam.keyrefs`, no cryptogram under the internal-authentication key,
and a session key only for update keys. Card keys are derived on DELIVER KEY and
never leave it.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from hcmiddleware.errors import SamInputError
from hcmiddleware.sam import crypto
from hcmiddleware.sam.commands import (
    ALG_CODES,
    CLA_ISO,
    CLA_PROPRIETARY,
    INS_DELIVER_KEY,
    INS_ENCRYPT,
    INS_GET_CHALLENGE,
    INS_GET_DATA,
    INS_MAC,
    INS_VERIFY,
    PIN_MAX,
    PIN_MIN,
    SW,
    DataTag,
    EncryptOp,
    KeyType,
)
from hcmiddleware.sam.crypto import CHALLENGE_SIZE, FACTOR_SIZE, Algorithm
from hcmiddleware.sam.keyrefs import usages
from hcmiddleware.sam.keyset import KeySet, SecretKey

__all__ = ["DEFAULT_TEST_PIN", "EmulatedSam"]

#: The PIN of emulated SAMs unless one is given (tests and demos only).
DEFAULT_TEST_PIN = "123456"

_HISTORICAL_PREFIX = b"HCMSAM"


@dataclass(frozen=True, slots=True)
class _CurrentKey:
    key_type: KeyType
    ref: int
    alg: Algorithm
    key: SecretKey


@dataclass(frozen=True, slots=True)
class _Command:
    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes
    le: int | None


def _parse(apdu: bytes) -> _Command | None:
    """Split a short APDU (ISO 7816-4 cases 1-4); ``None`` if its length is inconsistent."""
    if len(apdu) < 4:
        return None
    cla, ins, p1, p2 = apdu[:4]
    rest = apdu[4:]
    if not rest:
        return _Command(cla, ins, p1, p2, b"", None)
    if len(rest) == 1:
        return _Command(cla, ins, p1, p2, b"", rest[0])
    lc = rest[0]
    if lc == 0:
        return None  # extended length: not supported
    if len(rest) == 1 + lc:
        return _Command(cla, ins, p1, p2, rest[1:], None)
    if len(rest) == 2 + lc:
        return _Command(cla, ins, p1, p2, rest[1 : 1 + lc], rest[-1])
    return None


def _sw(sw: int) -> bytes:
    return sw.to_bytes(2, "big")


class EmulatedSam:
    """A SAM card holding ``keyset``'s master keys, opened with ``pin``.

    ``pin_tries`` is the retry counter's maximum; ``serial`` (8 bytes) and
    ``terminal_number`` (12 digits: province, city, issuer, serial) are what GET DATA
    reports. :meth:`reset` is a power cycle: it forgets the PIN state and the keys in
    use but not the retry counter.
    """

    def __init__(
        self,
        keyset: KeySet,
        *,
        pin: str = DEFAULT_TEST_PIN,
        pin_tries: int = 3,
        serial: bytes = bytes.fromhex("5341000000000001"),
        terminal_number: str = "210100000001",
    ) -> None:
        if not (pin.isascii() and pin.isdigit() and PIN_MIN <= len(pin) <= PIN_MAX):
            raise SamInputError(f"the SAM PIN must be {PIN_MIN} to {PIN_MAX} digits")
        if not 1 <= pin_tries <= 15:
            raise SamInputError(f"PIN tries must be 1 to 15, got {pin_tries}")
        if len(serial) != 8:
            raise SamInputError(f"SAM serial must be 8 bytes, got {len(serial)}")
        if (
            not (terminal_number.isascii() and terminal_number.isdigit())
            or len(terminal_number) != 12
        ):
            raise SamInputError("terminal number must be 12 digits")
        self._keyset = keyset
        self._pin = SecretKey(pin.encode("ascii"))
        self._max_tries = pin_tries
        self._tries_left = pin_tries
        self._serial = serial
        self._terminal_bcd = bytes.fromhex(terminal_number)
        self.atr = self._make_atr(serial)
        self._verified = False
        self._current: _CurrentKey | None = None
        self._session: tuple[Algorithm, SecretKey] | None = None

    @staticmethod
    def _make_atr(serial: bytes) -> bytes:
        historical = _HISTORICAL_PREFIX + serial
        # The user card's shape: TS=3B, T0 with TD1 and K historical bytes, TD1=80 and
        # TD2=01 announce T=1, then TCK (XOR of T0..the last historical byte).
        body = bytes([0x80 | len(historical), 0x80, 0x01]) + historical
        check = 0
        for byte in body:
            check ^= byte
        return b"\x3b" + body + bytes([check])

    def __repr__(self) -> str:
        return f"EmulatedSam(serial {self._serial.hex().upper()}, city {self._keyset.city_code})"

    @property
    def pin_tries_left(self) -> int:
        """The PIN retry counter (0 when blocked)."""
        return self._tries_left

    def reset(self) -> None:
        """A power cycle: the PIN must be verified again and no key is in use."""
        self._verified = False
        self._current = None
        self._session = None

    def transmit(self, apdu: bytes) -> bytes:
        """Answer one command APDU with ``response data || SW1 SW2``."""
        command = _parse(apdu)
        if command is None:
            return _sw(SW.WRONG_LENGTH)
        if command.cla == CLA_ISO:
            handlers = {INS_VERIFY: self._verify, INS_GET_CHALLENGE: self._get_challenge}
        elif command.cla == CLA_PROPRIETARY:
            handlers = {
                INS_GET_DATA: self._get_data,
                INS_DELIVER_KEY: self._deliver_key,
                INS_ENCRYPT: self._encrypt,
                INS_MAC: self._mac,
            }
        else:
            return _sw(SW.CLA_NOT_SUPPORTED)
        handler = handlers.get(command.ins)
        if handler is None:
            return _sw(SW.INS_NOT_SUPPORTED)
        if handler in (self._deliver_key, self._encrypt, self._mac) and not self._verified:
            return _sw(SW.SECURITY_NOT_SATISFIED)
        return handler(command)

    # --- commands ----------------------------------------------------------------

    def _verify(self, c: _Command) -> bytes:
        if c.p1 != 0 or c.p2 != 0:
            return _sw(SW.WRONG_P1P2)
        if self._tries_left == 0:
            return _sw(SW.BLOCKED)
        if not c.data:
            if self._verified:
                return _sw(SW.OK)
            return _sw(0x63C0 | self._tries_left)
        if hmac.compare_digest(c.data, self._pin.reveal()):
            self._tries_left = self._max_tries
            self._verified = True
            return _sw(SW.OK)
        self._verified = False
        self._tries_left -= 1
        if self._tries_left == 0:
            return _sw(SW.BLOCKED)
        return _sw(0x63C0 | self._tries_left)

    def _get_challenge(self, c: _Command) -> bytes:
        if c.p1 != 0 or c.p2 != 0:
            return _sw(SW.WRONG_P1P2)
        if c.data or c.le != CHALLENGE_SIZE:
            return _sw(0x6C00 | CHALLENGE_SIZE) if not c.data else _sw(SW.WRONG_LENGTH)
        return secrets.token_bytes(CHALLENGE_SIZE) + _sw(SW.OK)

    def _get_data(self, c: _Command) -> bytes:
        if c.p1 != 0 or c.data:
            return _sw(SW.WRONG_P1P2) if c.p1 != 0 else _sw(SW.WRONG_LENGTH)
        if c.p2 == DataTag.SERIAL:
            value = self._serial
        elif c.p2 == DataTag.TERMINAL_NUMBER:
            value = self._terminal_bcd
        elif c.p2 == DataTag.CITY_CODE:
            value = self._keyset.city_code.encode("ascii")
        elif c.p2 == DataTag.KEY_LIST:
            value = b"".join(bytes([e.ref, ALG_CODES[e.alg]]) for e in self._keyset.keys)
        else:
            return _sw(SW.REFERENCE_NOT_FOUND)
        return self._with_le(value, c.le)

    @staticmethod
    def _with_le(value: bytes, le: int | None) -> bytes:
        if le is None or le == 0 or le == len(value):
            return value + _sw(SW.OK)
        return _sw(0x6C00 | len(value))

    def _deliver_key(self, c: _Command) -> bytes:
        # A new DELIVER KEY always ends the previous key's and session's use.
        self._current = None
        self._session = None
        try:
            key_type = KeyType(c.p1)
        except ValueError:
            return _sw(SW.WRONG_P1P2)
        if len(c.data) != 2 * FACTOR_SIZE or c.le is not None:
            return _sw(SW.WRONG_LENGTH)
        entry = next((e for e in self._keyset.keys if e.ref == c.p2), None)
        if entry is None:
            return _sw(SW.REFERENCE_NOT_FOUND)
        if key_type.usage not in usages(entry.ref):
            return _sw(SW.CONDITIONS_NOT_SATISFIED)
        card_factor, city_factor = c.data[:FACTOR_SIZE], c.data[FACTOR_SIZE:]
        level1 = crypto.diversify(entry.alg, entry.master.reveal(), card_factor)
        key = crypto.diversify(entry.alg, level1, city_factor)
        self._current = _CurrentKey(key_type, entry.ref, entry.alg, SecretKey(key))
        return _sw(SW.OK)

    def _encrypt(self, c: _Command) -> bytes:
        try:
            op = EncryptOp(c.p1)
        except ValueError:
            return _sw(SW.WRONG_P1P2)
        if c.p2 != 0:
            return _sw(SW.WRONG_P1P2)
        if op is EncryptOp.SM_WRAP:
            return self._sm_wrap(c)
        current = self._current
        wanted = {
            EncryptOp.CRYPTOGRAM: KeyType.EXTERNAL_AUTH,
            EncryptOp.SESSION: KeyType.SECURE_MESSAGING,
            EncryptOp.CHECK_INTERNAL_AUTH: KeyType.INTERNAL_AUTH,
        }[op]
        if current is None or current.key_type is not wanted:
            return _sw(SW.CONDITIONS_NOT_SATISFIED)
        key = current.key.reveal()
        if op is EncryptOp.CHECK_INTERNAL_AUTH:
            if len(c.data) != 2 * CHALLENGE_SIZE or c.le is not None:
                return _sw(SW.WRONG_LENGTH)
            challenge, answer = c.data[:CHALLENGE_SIZE], c.data[CHALLENGE_SIZE:]
            expected = crypto.cryptogram(current.alg, key, challenge)
            ok = hmac.compare_digest(expected, answer)
            return _sw(SW.OK if ok else SW.VERIFICATION_FAILED)
        if len(c.data) != CHALLENGE_SIZE:
            return _sw(SW.WRONG_LENGTH)
        if op is EncryptOp.SESSION:
            if c.le is not None:
                return _sw(SW.WRONG_LENGTH)
            sk = crypto.session_key(current.alg, key, c.data)
            self._session = (current.alg, SecretKey(sk))
            return _sw(SW.OK)
        return self._with_le(crypto.cryptogram(current.alg, key, c.data), c.le)

    def _sm_wrap(self, c: _Command) -> bytes:
        if self._session is None:
            return _sw(SW.CONDITIONS_NOT_SATISFIED)
        alg, sk = self._session
        header, plain = c.data[:4], c.data[4:]
        if len(header) < 4:
            return _sw(SW.WRONG_LENGTH)
        if len(plain) > crypto.max_sm_plain(alg):
            return _sw(SW.WRONG_LENGTH)
        try:
            apdu = crypto.sm_wrap(alg, sk.reveal(), header, plain)
        except SamInputError:
            return _sw(SW.WRONG_DATA)  # CLA without the SM bit
        return self._with_le(apdu[5:], c.le)

    def _mac(self, c: _Command) -> bytes:
        if c.p1 != 0 or c.p2 != 0:
            return _sw(SW.WRONG_P1P2)
        if self._session is None:
            return _sw(SW.CONDITIONS_NOT_SATISFIED)
        alg, sk = self._session
        return self._with_le(crypto.mac4(alg, sk.reveal(), c.data), c.le)

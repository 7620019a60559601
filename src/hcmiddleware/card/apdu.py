"""ISO/IEC 7816-4 APDUs: building and parsing commands, parsing responses, status words.

Everything that looks at a status word does it here: :func:`exchange` follows ``61xx``
(GET RESPONSE) and ``6Cxx`` (re-issue with the Le the card asked for) and then
:func:`raise_for_status` turns every refusal into a typed :class:`CardStatusError`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

from hcmiddleware.errors import (
    CardAuthError,
    CardFileNotFoundError,
    CardKeyBlockedError,
    CardLengthError,
    CardMacError,
    CardParameterError,
    CardProtocolError,
    CardSecurityError,
    CardStatusError,
)

__all__ = [
    "SW_OK",
    "Apdu",
    "Response",
    "Transmitter",
    "exchange",
    "parse_command",
    "parse_response",
    "raise_for_status",
    "status_error",
]

SW_OK = 0x9000
#: A response APDU never carries more than this (extended Le 0000 = 65,536 + SW).
MAX_RESPONSE = 65536 + 2
#: How many ``61xx`` rounds one command may chain before we call the card broken.
MAX_GET_RESPONSE_ROUNDS = 64


@dataclass(frozen=True, slots=True)
class Apdu:
    """A command APDU; ``le`` is ``None`` when no response data is expected.

    ``le`` counts bytes: 1–256 fit a short APDU (256 is encoded ``00``), up to 65,536 an
    extended one. ``data`` longer than 255 bytes or ``le`` above 256 makes the APDU
    extended; :meth:`to_bytes` picks the encoding.
    """

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int | None = None

    def __post_init__(self) -> None:
        for name in ("cla", "ins", "p1", "p2"):
            value = getattr(self, name)
            if not 0 <= value <= 0xFF:
                raise ValueError(f"APDU {name} must be one byte, got {value}")
        if len(self.data) > 65535:
            raise ValueError("APDU data longer than 65,535 bytes cannot be encoded")
        if self.le is not None and not 1 <= self.le <= 65536:
            raise ValueError(f"APDU Le must be 1..65536 or None, got {self.le}")

    @property
    def extended(self) -> bool:
        """True when the command needs the extended-length encoding."""
        return len(self.data) > 255 or (self.le is not None and self.le > 256)

    @property
    def header(self) -> bytes:
        """CLA INS P1 P2."""
        return bytes((self.cla, self.ins, self.p1, self.p2))

    def to_bytes(self) -> bytes:
        """The APDU on the wire (cases 1–4, short or extended)."""
        out = bytearray(self.header)
        if not self.extended:
            if self.data:
                out.append(len(self.data))
                out += self.data
            if self.le is not None:
                out.append(self.le & 0xFF)  # 256 -> 00
            return bytes(out)
        if self.data:
            out += b"\x00" + len(self.data).to_bytes(2, "big") + self.data
            if self.le is not None:
                out += (self.le & 0xFFFF).to_bytes(2, "big")  # 65536 -> 0000
        elif self.le is not None:
            out += b"\x00" + (self.le & 0xFFFF).to_bytes(2, "big")
        return bytes(out)

    def with_le(self, le: int | None) -> Apdu:
        """The same command with another Le."""
        return replace(self, le=le)


def parse_command(raw: bytes) -> Apdu:
    """Parse a command APDU (the card's side); malformed input is a CardProtocolError."""
    n = len(raw)
    if n < 4:
        raise CardProtocolError(f"command APDU of {n} bytes is shorter than its header")
    cla, ins, p1, p2 = raw[0], raw[1], raw[2], raw[3]
    if n == 4:
        return Apdu(cla, ins, p1, p2)
    b5 = raw[4]
    if n == 5:
        return Apdu(cla, ins, p1, p2, le=b5 or 256)
    if b5 != 0:
        if n == 5 + b5:
            return Apdu(cla, ins, p1, p2, raw[5:])
        if n == 6 + b5:
            return Apdu(cla, ins, p1, p2, raw[5 : 5 + b5], le=raw[-1] or 256)
        raise CardProtocolError(f"command APDU length {n} does not match Lc {b5}")
    # b5 == 00 and more bytes: extended length
    if n == 7:
        return Apdu(cla, ins, p1, p2, le=int.from_bytes(raw[5:7], "big") or 65536)
    lc = int.from_bytes(raw[5:7], "big")
    if lc == 0:
        raise CardProtocolError("extended command APDU with Lc 0000")
    if n == 7 + lc:
        return Apdu(cla, ins, p1, p2, raw[7:])
    if n == 9 + lc:
        le = int.from_bytes(raw[-2:], "big") or 65536
        return Apdu(cla, ins, p1, p2, raw[7 : 7 + lc], le=le)
    raise CardProtocolError(f"extended command APDU length {n} does not match Lc {lc}")


@dataclass(frozen=True, slots=True)
class Response:
    """A response APDU: the data and the status word."""

    data: bytes
    sw: int

    @property
    def sw1(self) -> int:
        """First status byte."""
        return self.sw >> 8

    @property
    def sw2(self) -> int:
        """Second status byte."""
        return self.sw & 0xFF

    @property
    def ok(self) -> bool:
        """True for ``9000``."""
        return self.sw == SW_OK

    def to_bytes(self) -> bytes:
        """The response on the wire: data then SW1 SW2."""
        return self.data + self.sw.to_bytes(2, "big")


def parse_response(raw: bytes) -> Response:
    """Split a response APDU; anything that cannot be one is a CardProtocolError."""
    if not isinstance(raw, bytes | bytearray):
        raise CardProtocolError(f"the reader returned {type(raw).__name__}, not bytes")
    if len(raw) < 2:
        raise CardProtocolError(f"the card answered {len(raw)} bytes, fewer than a status word")
    if len(raw) > MAX_RESPONSE:
        raise CardProtocolError(f"the card answered {len(raw)} bytes, more than any APDU")
    sw1 = raw[-2]
    if not (0x61 <= sw1 <= 0x6F or 0x90 <= sw1 <= 0x9F):
        # ISO 7816-3: SW1 is 6X (not 60) or 9X; anything else is noise on the line.
        raise CardProtocolError(f"the card answered an invalid status byte {sw1:02X}")
    return Response(bytes(raw[:-2]), int.from_bytes(raw[-2:], "big"))


_HINT_RETRY = "remove and reinsert the card and try again"
_HINT_SUPPORT = "the card does not support this; check it is a resident health card"

_STATUS: dict[int, tuple[type[CardStatusError], str, str]] = {
    0x6281: (CardStatusError, "the returned data may be corrupted", _HINT_RETRY),
    0x6282: (CardLengthError, "end of file reached before the requested length", ""),
    0x6581: (CardStatusError, "the card's memory failed during a write", _HINT_RETRY),
    0x6700: (CardLengthError, "the card rejected the command's length", _HINT_SUPPORT),
    0x6981: (CardParameterError, "the command does not fit the file's structure", _HINT_SUPPORT),
    0x6982: (
        CardSecurityError,
        "access to the file needs an authentication first",
        "check the SAM is inserted and opened, then try again",
    ),
    0x6983: (
        CardKeyBlockedError,
        "a key on the card is blocked after too many failures",
        "the card can no longer be authenticated; send the resident to the issuer",
    ),
    0x6984: (CardStatusError, "the referenced data is invalidated", _HINT_SUPPORT),
    0x6985: (
        CardSecurityError,
        "the conditions of use are not satisfied",
        "start the operation again from the beginning",
    ),
    0x6986: (CardParameterError, "no file is selected for this command", _HINT_RETRY),
    0x6988: (
        CardMacError,
        "the card rejected the secure-messaging MAC; nothing was written",
        "check the SAM's keys belong to this card's issuer",
    ),
    0x6A80: (CardParameterError, "the card rejected the data field", _HINT_SUPPORT),
    0x6A81: (CardParameterError, "the function is not supported", _HINT_SUPPORT),
    0x6A82: (CardFileNotFoundError, "the file is not on the card", _HINT_SUPPORT),
    0x6A83: (CardFileNotFoundError, "the record is not in the file", _HINT_SUPPORT),
    0x6A84: (CardStatusError, "the card's file is full", "send the resident to the issuer"),
    0x6A86: (CardParameterError, "the card rejected P1/P2", _HINT_SUPPORT),
    0x6A88: (
        CardParameterError,
        "the key or data referenced is not in this directory",
        "check the SAM's key set matches the card's layout",
    ),
    0x6B00: (CardLengthError, "the offset is beyond the end of the file", _HINT_SUPPORT),
    0x6D00: (CardParameterError, "the card does not know this instruction", _HINT_SUPPORT),
    0x6E00: (CardParameterError, "the card does not know this class byte", _HINT_SUPPORT),
    0x6F00: (CardStatusError, "the card reported an internal error", _HINT_RETRY),
}


def status_error(sw: int, what: str = "command") -> CardStatusError:
    """The typed error for a refusing status word (the caller raises it)."""
    if sw >> 4 == 0x63C:
        tries = sw & 0x0F
        return CardAuthError(
            f"{what}: the card rejected the authentication, {tries} tries left",
            sw=sw,
            tries_left=tries,
            hint="check the SAM's keys belong to this card's issuer before trying again",
        )
    if sw >> 8 == 0x6C:
        return CardLengthError(
            f"{what}: the card still wants another length ({sw & 0xFF}) after a retry",
            sw=sw,
            hint=_HINT_RETRY,
        )
    if sw >> 8 == 0x61:
        return _chain_error(what, sw)
    known = _STATUS.get(sw)
    if known is not None:
        cls, text, hint = known
        return cls(f"{what}: {text} (SW {sw:04X})", sw=sw, hint=hint or None)
    return CardStatusError(
        f"{what}: the card refused with an unknown status word {sw:04X}",
        sw=sw,
        hint=_HINT_SUPPORT,
    )


def _chain_error(what: str, sw: int) -> CardStatusError:
    """A ``61xx`` that could not be followed (too many rounds)."""
    return CardStatusError(
        f"{what}: the card kept announcing more data (SW {sw:04X})", sw=sw, hint=_HINT_RETRY
    )


def raise_for_status(
    response: Response, what: str = "command", accept: frozenset[int] = frozenset()
) -> Response:
    """Return ``response`` if its SW is ``9000`` or in ``accept``, else raise its error."""
    if response.sw == SW_OK or response.sw in accept:
        return response
    raise status_error(response.sw, what)


class Transmitter(Protocol):
    """Anything that carries one command APDU to the card and brings back the answer."""

    def transmit(self, apdu: bytes) -> bytes:
        """Send ``apdu`` and return the raw response (data ‖ SW1 SW2)."""
        ...


def exchange(
    transport: Transmitter,
    command: Apdu,
    *,
    what: str = "command",
    accept: frozenset[int] = frozenset(),
) -> Response:
    """Send ``command``, follow ``6Cxx`` and ``61xx``, and raise on a refusing status.

    ``6Cxx`` re-issues the same command once with Le = xx (``00`` meaning 256).
    ``61xx`` fetches the rest with GET RESPONSE and concatenates the data. Status words
    other than ``9000`` and those in ``accept`` raise a :class:`CardStatusError` subclass.
    """
    response = parse_response(transport.transmit(command.to_bytes()))
    if response.sw1 == 0x6C:
        response = parse_response(
            transport.transmit(command.with_le(response.sw2 or 256).to_bytes())
        )
    data = bytearray(response.data)
    rounds = 0
    while response.sw1 == 0x61:
        rounds += 1
        if rounds > MAX_GET_RESPONSE_ROUNDS:
            raise _chain_error(what, response.sw)
        get = Apdu(command.cla & 0x03, 0xC0, 0, 0, le=response.sw2 or 256)
        response = parse_response(transport.transmit(get.to_bytes()))
        data += response.data
    result = Response(bytes(data), response.sw)
    return raise_for_status(result, what, accept)

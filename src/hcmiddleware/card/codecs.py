"""The three data types of the health card: AN (GBK text), CN (compressed BCD), B (binary).

Decoders accept what cards in the field hold (AN at its exact length or padded with
``00``, ``20`` or ``FF``; CN left-aligned and padded with ``F``) and raise
:class:`~hcmiddleware.errors.CardDataError` for anything else. Encoders refuse values
that do not fit the element, with the same error type, so a bad value never reaches
the card.
"""

from __future__ import annotations

from enum import StrEnum

from hcmiddleware.errors import CardDataError

__all__ = [
    "DataType",
    "decode",
    "decode_an",
    "decode_cn",
    "encode",
    "encode_an",
    "encode_cn",
]

#: Trailing bytes of an AN field that are padding: none of them can end a GBK character
#: (GBK trail bytes are 40-FE, and FF is no GBK byte at all).
_AN_PADDING = b"\x00\x20\xff"
_HEX_DIGITS = "0123456789"


class DataType(StrEnum):
    """The type of a data element."""

    AN = "AN"  #: GBK text
    CN = "CN"  #: compressed BCD, left-aligned, F padded
    B = "B"  #: binary


def decode_an(raw: bytes) -> str:
    """GBK text with trailing ``00``/``20``/``FF`` padding removed."""
    text = bytes(raw).rstrip(_AN_PADDING)
    try:
        return text.decode("gbk")
    except UnicodeDecodeError:
        raise CardDataError(f"a text field of {len(raw)} bytes is not valid GBK") from None


def encode_an(text: str, length: int | None = None, *, pad: bytes = b"") -> bytes:
    """GBK bytes of ``text``; with ``pad`` (``00``, ``20`` or ``FF``) filled to ``length``."""
    try:
        raw = text.encode("gbk")
    except UnicodeEncodeError:
        raise CardDataError(
            "a text value has characters GBK cannot hold",
            hint="replace the character with a common equivalent and try again",
        ) from None
    if length is not None:
        if len(raw) > length:
            raise CardDataError(
                f"a text value of {len(raw)} bytes does not fit its {length}-byte field",
                hint="shorten the value",
            )
        if pad:
            raw = raw + pad * (length - len(raw))
    return raw


def decode_cn(raw: bytes) -> str:
    """Digits of left-aligned compressed BCD; trailing ``F`` nibbles are padding."""
    digits: list[str] = []
    padding = False
    for byte in bytes(raw):
        for nibble in (byte >> 4, byte & 0x0F):
            if nibble == 0x0F:
                padding = True
            elif nibble > 9:
                raise CardDataError(f"a numeric field holds the non-digit nibble {nibble:X}")
            elif padding:
                raise CardDataError("a numeric field has a digit after its F padding")
            else:
                digits.append(_HEX_DIGITS[nibble])
    return "".join(digits)


def encode_cn(digits: str, length: int) -> bytes:
    """Compressed BCD of ``digits`` in ``length`` bytes, padded with ``F``."""
    if digits and not (digits.isascii() and digits.isdigit()):
        raise CardDataError("a numeric field may hold digits only", hint="check the value")
    if len(digits) > 2 * length:
        raise CardDataError(
            f"{len(digits)} digits do not fit a {length}-byte numeric field",
            hint="check the value",
        )
    return bytes.fromhex(digits.ljust(2 * length, "F"))


def decode(kind: DataType, raw: bytes) -> str | bytes:
    """Decode an element's value: ``str`` for AN and CN, ``bytes`` for B."""
    if kind is DataType.AN:
        return decode_an(raw)
    if kind is DataType.CN:
        return decode_cn(raw)
    return bytes(raw)


def encode(kind: DataType, value: str | bytes, length: int, *, an_pad: bytes = b"") -> bytes:
    """Encode an element's value for a field of ``length`` bytes."""
    if kind is DataType.B:
        if not isinstance(value, bytes | bytearray):
            raise CardDataError("a binary field needs bytes", hint="check the value")
        if len(value) > length:
            raise CardDataError(
                f"{len(value)} bytes do not fit a {length}-byte binary field",
                hint="check the value",
            )
        return bytes(value)
    if not isinstance(value, str):
        raise CardDataError(f"an {kind} field needs text", hint="check the value")
    if kind is DataType.CN:
        return encode_cn(value, length)
    return encode_an(value, length, pad=an_pad)

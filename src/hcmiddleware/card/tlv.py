"""The card's simple TLV: a 1-byte tag, a 1-byte length, the value.

A record file holds one TLV per record; a visit record holds a run of TLVs followed by
``00`` fill. Parsers raise :class:`~hcmiddleware.errors.CardDataError` for any
truncation or inconsistency.
"""

from __future__ import annotations

from hcmiddleware.errors import CardDataError

__all__ = ["encode_tlv", "parse_record", "parse_run"]


def encode_tlv(tag: int, value: bytes) -> bytes:
    """One TLV; tags are 1–254 and values at most 255 bytes."""
    if not 1 <= tag <= 0xFE:
        raise CardDataError(f"TLV tag {tag} is outside 01–FE", hint="check the item number")
    if len(value) > 0xFF:
        raise CardDataError(
            f"a {len(value)}-byte value does not fit a one-byte TLV length",
            hint="shorten the value",
        )
    return bytes((tag, len(value))) + bytes(value)


def parse_record(raw: bytes, expected_tag: int | None = None) -> tuple[int, bytes]:
    """The (tag, value) of a record holding one TLV.

    Bytes after the value are accepted only when they are record padding (all ``00`` or
    all ``FF``), as cards with fixed-size records return them.
    """
    raw = bytes(raw)
    if len(raw) < 2:
        raise CardDataError(f"a record of {len(raw)} bytes is too short for a TLV")
    tag, length = raw[0], raw[1]
    if tag in (0x00, 0xFF):
        raise CardDataError(f"a record starts with the invalid tag {tag:02X}")
    end = 2 + length
    if end > len(raw):
        raise CardDataError(
            f"record tag {tag:02X} announces {length} bytes but holds {len(raw) - 2}"
        )
    rest = raw[end:]
    if rest and rest.strip(b"\x00") and rest.strip(b"\xff"):
        raise CardDataError(f"record tag {tag:02X} has {len(rest)} stray bytes after its value")
    if expected_tag is not None and tag != expected_tag:
        raise CardDataError(f"expected item {expected_tag} but the record holds item {tag}")
    return tag, raw[2:end]


def parse_run(raw: bytes) -> tuple[list[tuple[int, bytes]], bool]:
    """TLVs from offset 0 up to the first ``00`` tag (the fill).

    Returns the items and whether the run ended inside ``raw`` (``False`` means the data
    stops mid-run and more must be read). A tag repeated or a length running past the
    data when the run had ended is a CardDataError.
    """
    raw = bytes(raw)
    items: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(raw):
        tag = raw[pos]
        if tag == 0x00:
            return items, True
        if tag == 0xFF:
            raise CardDataError(f"invalid TLV tag FF at offset {pos}")
        if pos + 2 > len(raw):
            return items, False
        length = raw[pos + 1]
        if pos + 2 + length > len(raw):
            return items, False
        items.append((tag, raw[pos + 2 : pos + 2 + length]))
        pos += 2 + length
    return items, False

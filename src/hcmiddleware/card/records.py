"""Encoding and decoding of the card's records: TLV items, fixed layouts, visit records.

Shared by the card session (reading a real card) and the emulator (personalising a
software card), so both sides agree byte for byte.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping
from typing import Any

from pydantic import ValidationError

from hcmiddleware.card import codecs
from hcmiddleware.card.data import (
    Address,
    Allergy,
    Cardholder,
    Clinical,
    Contact,
    Immunisation,
    Issuer,
    PartialModel,
    Personal,
    Validity,
    VisitRecord,
)
from hcmiddleware.card.filemap import (
    CONDITION_FLAGS,
    VISIT_CERTIFICATE_LEN,
    VISIT_ITEMS,
    VISIT_SIGNATURE_LEN,
    VISIT_TRAILER_LEN,
    CardPart,
    EfSpec,
    Item,
    VisitKind,
)
from hcmiddleware.card.tlv import encode_tlv, parse_record, parse_run
from hcmiddleware.errors import CardDataError

__all__ = [
    "ItemValue",
    "cardholder_from",
    "clinical_from",
    "decode_date",
    "decode_fixed",
    "decode_item",
    "decode_visit",
    "encode_date",
    "encode_fixed",
    "encode_item",
    "encode_visit",
    "issuer_from",
    "personal_from",
    "validity_from",
]

#: A decoded element: text for AN and CN, bytes for B.
ItemValue = str | bytes


def decode_item(it: Item, record: bytes) -> ItemValue:
    """Decode the record holding item ``it`` (tag, length and type checked)."""
    _, value = parse_record(record, it.number)
    if len(value) > it.length:
        raise CardDataError(f"item {it.number} holds {len(value)} bytes, more than its {it.length}")
    return codecs.decode(it.type, value)


def encode_item(it: Item, value: ItemValue, *, an_pad: bytes = b"") -> bytes:
    """The TLV record of item ``it``; AN text padded with ``an_pad`` when given."""
    return encode_tlv(it.number, codecs.encode(it.type, value, it.length, an_pad=an_pad))


def decode_date(digits: str) -> dt.date | None:
    """A CN date ``YYYYMMDD``; empty or all zeros means not set."""
    if digits.strip("0") == "":
        return None
    try:
        return dt.datetime.strptime(digits, "%Y%m%d").date()
    except ValueError:
        raise CardDataError("a date field does not hold a valid date") from None


def encode_date(value: dt.date | None) -> str:
    """The CN digits of a date (``""`` for none)."""
    return value.strftime("%Y%m%d") if value else ""


def _text(values: Mapping[str, ItemValue], name: str) -> str:
    value = values.get(name, "")
    if isinstance(value, bytes):
        raise CardDataError(f"item {name} should be text")
    return value


def _byte(values: Mapping[str, ItemValue], name: str) -> int:
    """A one-byte item; ``0`` when the card does not carry it (absent or empty)."""
    value = values.get(name, b"")
    if not isinstance(value, bytes) or len(value) > 1:
        raise CardDataError(f"item {name} should be one byte")
    return value[0] if value else 0


def _when(read: bool, value: Any) -> Any:
    """``value`` when its part was read, else ``None`` (what a model keeps for unread)."""
    return value if read else None


def _parts(parts: Collection[CardPart] | None, cls: type[PartialModel]) -> tuple[CardPart, ...]:
    own = cls.own_parts()
    return own if parts is None else tuple(p for p in own if p in parts)


def issuer_from(
    values: Mapping[str, ItemValue], parts: Collection[CardPart] | None = None
) -> Issuer:
    """Build :class:`Issuer` from DDF1/EF05 values by item name.

    ``parts`` are the parts read (default: all); without ``issuer`` only the card number
    and the city code are filled.
    """
    read = CardPart.ISSUER in _parts(parts, Issuer)
    cert = values.get("issuer_certificate", b"")
    return Issuer(
        parts=_parts(parts, Issuer),
        card_type=_when(read, _text(values, "card_type")),
        spec_version=_when(read, _text(values, "spec_version")),
        issuer_name=_when(read, _text(values, "issuer_name")),
        issuer_code=_when(read, _text(values, "issuer_code")),
        issuer_certificate=_when(read, cert if isinstance(cert, bytes) else b""),
        issue_date=_when(read, decode_date(_text(values, "issue_date"))),
        card_number=_text(values, "card_number"),
        security_code=_when(read, _text(values, "security_code")),
        chip_serial=_when(read, _text(values, "chip_serial")),
        city_code=_text(values, "city_code"),
    )


def cardholder_from(values: Mapping[str, ItemValue]) -> Cardholder:
    """Build :class:`Cardholder` from DDF1/EF06 values."""
    return Cardholder(
        name=_text(values, "name"),
        sex=_byte(values, "sex"),
        ethnicity=_text(values, "ethnicity"),
        birth_date=decode_date(_text(values, "birth_date")),
        id_number=_text(values, "id_number"),
    )


def validity_from(
    values: Mapping[str, ItemValue], parts: Collection[CardPart] | None = None
) -> Validity:
    """Build :class:`Validity` from DDF1/EF08 values (``parts`` read, default all)."""
    read = _parts(parts, Validity)
    insurance, phones = CardPart.INSURANCE in read, CardPart.PHONES in read
    methods = [_text(values, f"payment_method{i}") for i in (1, 2, 3)]
    return Validity(
        parts=read,
        expiry_date=_when(insurance, decode_date(_text(values, "expiry_date"))),
        phone1=_when(phones, _text(values, "phone1")),
        phone2=_when(phones, _text(values, "phone2")),
        payment_methods=_when(insurance, [m for m in methods if m]),
    )


_SOCIAL = ("education", "marital_status", "occupation")
_DOCUMENTS = (
    "id_document_type",
    "id_document_number",
    "health_record_number",
    "rural_insurance_number",
)


def personal_from(
    values: Mapping[str, ItemValue], parts: Collection[CardPart] | None = None
) -> Personal:
    """Build :class:`Personal` from DF01 values; empty addresses/contacts are left out."""
    read = _parts(parts, Personal)
    contacts_read = CardPart.CONTACTS in read
    addresses = [
        Address(type=_text(values, f"address{i}_type"), address=_text(values, f"address{i}"))
        for i in (1, 2)
    ]
    contacts = [
        Contact(
            name=_text(values, f"contact{i}_name"),
            relationship=_text(values, f"contact{i}_relationship"),
            phone=_text(values, f"contact{i}_phone"),
        )
        for i in (1, 2, 3)
    ]
    return Personal(
        parts=read,
        addresses=_when(contacts_read, [a for a in addresses if a.address or a.type]),
        contacts=_when(contacts_read, [c for c in contacts if c.name or c.phone]),
        **{name: _when(CardPart.SOCIAL in read, _text(values, name)) for name in _SOCIAL},
        **{name: _when(CardPart.DOCUMENTS in read, _text(values, name)) for name in _DOCUMENTS},
    )


def clinical_from(
    values: Mapping[str, ItemValue],
    allergies: list[Allergy] | None,
    immunisations: list[Immunisation] | None,
    parts: Collection[CardPart] | None = None,
) -> Clinical:
    """Build :class:`Clinical` from DF02 values and the cyclic files' records.

    ``parts`` are the parts read (default: all); the lists of unread parts are ``None``.
    """
    read = _parts(parts, Clinical)
    basics = CardPart.BASICS in read
    return Clinical(
        parts=read,
        abo=_when(basics, _byte(values, "abo")),
        rh=_when(basics, _text(values, "rh")),
        conditions=_when(basics, {flag: _byte(values, flag) != 0 for flag in CONDITION_FLAGS}),
        other_warning=_when(basics, _text(values, "other_warning")),
        psychiatric=_when(basics, _byte(values, "psychiatric") != 0),
        allergies=_when(CardPart.ALLERGIES in read, allergies or []),
        immunisations=_when(CardPart.IMMUNISATIONS in read, immunisations or []),
    )


def encode_fixed(ef: EfSpec, values: Mapping[str, ItemValue], *, fill: bytes = b"\x00") -> bytes:
    """A fixed-layout record (allergy, immunisation): each field filled with ``fill``.

    ``00`` is what the session writes; a software card may be personalised with ``FF``.
    """
    out = bytearray()
    for name, kind, length in ef.fields:
        raw = codecs.encode(kind, values.get(name, ""), length, an_pad=fill)
        out += raw.ljust(length, fill)
    return bytes(out)


def decode_fixed(ef: EfSpec, raw: bytes) -> dict[str, ItemValue] | None:
    """The fields of a fixed-layout record; ``None`` for a never-written one.

    Never written: zero length, all ``00`` or all ``FF``. A record shorter than the
    layout (cards that do not store the trailing fill) reads as if ``00``-filled; a
    longer one is a :class:`CardDataError`.
    """
    if len(raw) > ef.size:
        raise CardDataError(f"a record of {ef.path} has {len(raw)} bytes, more than {ef.size}")
    if not raw.strip(b"\x00") or not raw.strip(b"\xff"):
        return None
    raw = raw.ljust(ef.size, b"\x00")
    values: dict[str, ItemValue] = {}
    pos = 0
    for name, kind, length in ef.fields:
        values[name] = codecs.decode(kind, raw[pos : pos + length])
        pos += length
    return values


def encode_visit(visit: VisitRecord, size: int) -> bytes:
    """The full content of a visit record file: TLVs, ``00`` fill, signature, certificate."""
    out = bytearray()
    for tag, name, kind, length in VISIT_ITEMS:
        if name == "visited_at":
            value: str = visit.visited_at.strftime("%Y%m%d%H%M%S")
        else:
            value = getattr(visit, name)
            if not value:
                continue
        out += encode_tlv(tag, codecs.encode(kind, value, length))
    if len(visit.signature) not in (0, VISIT_SIGNATURE_LEN):
        raise CardDataError(f"a visit signature must be {VISIT_SIGNATURE_LEN} bytes")
    if len(visit.certificate) not in (0, VISIT_CERTIFICATE_LEN):
        raise CardDataError(f"an institution certificate must be {VISIT_CERTIFICATE_LEN} bytes")
    body = size - VISIT_TRAILER_LEN
    if len(out) >= body:  # keep at least one 00 so the run visibly ends
        raise CardDataError("the visit summary is too long for its record")
    trailer = visit.signature.ljust(VISIT_SIGNATURE_LEN, b"\x00") + visit.certificate.ljust(
        VISIT_CERTIFICATE_LEN, b"\x00"
    )
    return bytes(out.ljust(body, b"\x00")) + trailer


def decode_visit(kind: VisitKind, slot: int, content: bytes, trailer: bytes) -> VisitRecord:
    """A visit record from its TLV run (``content``) and its 254-byte ``trailer``."""
    items, ended = parse_run(content)
    if not ended:
        raise CardDataError(f"{kind} visit record {slot} has a truncated TLV run")
    known = {tag: (name, kind_) for tag, name, kind_, _ in VISIT_ITEMS}
    values: dict[str, str] = {}
    for tag, raw in items:
        if tag not in known:
            continue  # items of a later layout: ignored, not fatal
        name, dtype = known[tag]
        decoded = codecs.decode(dtype, raw)
        assert isinstance(decoded, str)  # VISIT_ITEMS holds AN and CN only
        values[name] = decoded
    stamp = values.pop("visited_at", "")
    try:
        visited_at = dt.datetime.strptime(stamp, "%Y%m%d%H%M%S")
    except ValueError:
        raise CardDataError(f"{kind} visit record {slot} has no valid date-time") from None
    if len(trailer) != VISIT_TRAILER_LEN:
        raise CardDataError(f"{kind} visit record {slot} has a truncated signature block")
    signature, certificate = trailer[:VISIT_SIGNATURE_LEN], trailer[VISIT_SIGNATURE_LEN:]
    try:
        return VisitRecord(
            kind=kind,
            slot=slot,
            visited_at=visited_at,
            signature=signature if signature.strip(b"\x00") else b"",
            certificate=certificate if certificate.strip(b"\x00") else b"",
            **values,
        )
    except ValidationError:
        raise CardDataError(f"{kind} visit record {slot} lacks a required item") from None

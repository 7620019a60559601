"""Encoding and decoding of the card's records: TLV items, fixed layouts, visit records.

Shared by the card session (reading a real card) and the emulator (personalising a
software card), so both sides agree byte for byte.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

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
    value = values.get(name, b"")
    if not isinstance(value, bytes) or len(value) != 1:
        raise CardDataError(f"item {name} should be one byte")
    return value[0]


def issuer_from(values: Mapping[str, ItemValue]) -> Issuer:
    """Build :class:`Issuer` from DDF1/EF05 values by item name."""
    cert = values.get("issuer_certificate", b"")
    return Issuer(
        card_type=_text(values, "card_type"),
        spec_version=_text(values, "spec_version"),
        issuer_name=_text(values, "issuer_name"),
        issuer_code=_text(values, "issuer_code"),
        issuer_certificate=cert if isinstance(cert, bytes) else b"",
        issue_date=decode_date(_text(values, "issue_date")),
        card_number=_text(values, "card_number"),
        security_code=_text(values, "security_code"),
        chip_serial=_text(values, "chip_serial"),
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


def validity_from(values: Mapping[str, ItemValue]) -> Validity:
    """Build :class:`Validity` from DDF1/EF08 values."""
    methods = [_text(values, f"payment_method{i}") for i in (1, 2, 3)]
    return Validity(
        expiry_date=decode_date(_text(values, "expiry_date")),
        phone1=_text(values, "phone1"),
        phone2=_text(values, "phone2"),
        payment_methods=[m for m in methods if m],
    )


def personal_from(values: Mapping[str, ItemValue]) -> Personal:
    """Build :class:`Personal` from DF01 values; empty addresses/contacts are left out."""
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
        addresses=[a for a in addresses if a.address or a.type],
        contacts=[c for c in contacts if c.name or c.phone],
        **{
            name: _text(values, name)
            for name in (
                "education",
                "marital_status",
                "occupation",
                "id_document_type",
                "id_document_number",
                "health_record_number",
                "rural_insurance_number",
            )
        },
    )


def clinical_from(
    values: Mapping[str, ItemValue],
    allergies: list[Allergy],
    immunisations: list[Immunisation],
) -> Clinical:
    """Build :class:`Clinical` from DF02 values and the cyclic files' records."""
    return Clinical(
        abo=_byte(values, "abo"),
        rh=_text(values, "rh"),
        conditions={flag: _byte(values, flag) != 0 for flag in CONDITION_FLAGS},
        other_warning=_text(values, "other_warning"),
        psychiatric=_byte(values, "psychiatric") != 0,
        allergies=allergies,
        immunisations=immunisations,
    )


def encode_fixed(ef: EfSpec, values: Mapping[str, ItemValue]) -> bytes:
    """A fixed-layout record (allergy, immunisation): each field ``00``-filled."""
    out = bytearray()
    for name, kind, length in ef.fields:
        raw = codecs.encode(kind, values.get(name, ""), length, an_pad=b"\x00")
        out += raw.ljust(length, b"\x00")
    return bytes(out)


def decode_fixed(ef: EfSpec, raw: bytes) -> dict[str, ItemValue] | None:
    """The fields of a fixed-layout record; ``None`` for a never-written (all 00) one."""
    if len(raw) != ef.size:
        raise CardDataError(f"a record of {ef.path} has {len(raw)} bytes, not {ef.size}")
    if not raw.strip(b"\x00") or not raw.strip(b"\xff"):
        return None
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

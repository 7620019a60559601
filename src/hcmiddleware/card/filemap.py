"""The health card's file system and data elements, held as data in one place.

Everything the session, the emulator and the CLI know about where an item lives — DF,
EF, short file identifier, record number, type, length, the keys that open it — comes
from the tables below (docs/card-spec.md, "Files" and "Data elements"). Correcting the
layout for another card issue means editing this module only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from hcmiddleware.card.codecs import DataType
from hcmiddleware.errors import CardPartError

__all__ = [
    "ADDRESSES",
    "ALLERGIES",
    "ALL_PARTS",
    "BASICS",
    "CARDHOLDER",
    "CONDITION_FLAGS",
    "CONTACTS",
    "CORE_ITEMS",
    "DDF1",
    "DF01",
    "DF02",
    "DF03",
    "DFS",
    "DOCUMENTS",
    "FILES",
    "IMMUNISATIONS",
    "INDEX_INVALID",
    "INDEX_VALID",
    "INTERNAL_AUTH_KEY",
    "ISSUER",
    "ITEMS",
    "MANDATORY_FILES",
    "MANDATORY_ITEMS",
    "MF",
    "PART_GROUPS",
    "PART_ITEMS",
    "PHOTO",
    "PHOTO_LENGTH_PREFIX",
    "PSYCHIATRIC",
    "SOCIAL",
    "VALIDITY",
    "VISIT_CERTIFICATE_LEN",
    "VISIT_ITEMS",
    "VISIT_SIGNATURE_LEN",
    "VISIT_SLOTS",
    "VISIT_TRAILER_LEN",
    "CardPart",
    "DfSpec",
    "EfKind",
    "EfSpec",
    "Item",
    "VisitKind",
    "VisitSlots",
    "item",
    "items_of",
    "parse_parts",
    "parts_text",
]

AN, CN, B = DataType.AN, DataType.CN, DataType.B

#: The key card and SAM use for INTERNAL AUTHENTICATE; valid in every DF.
INTERNAL_AUTH_KEY = 0x21


@dataclass(frozen=True, slots=True)
class DfSpec:
    """A dedicated file: its FID, its DF name (when selectable by name) and its keys."""

    label: str
    fid: int
    name: bytes | None
    read_key: int | None
    update_key: int | None


class EfKind(StrEnum):
    """How an elementary file is structured."""

    TLV_RECORDS = "tlv-records"  #: linear fixed, one TLV per record, updated under SM
    CYCLIC = "cyclic"  #: cyclic fixed-layout records, newest is record 1
    INDEX = "index"  #: linear 1-byte records, 00 valid / FF invalid
    TRANSPARENT = "transparent"  #: binary


@dataclass(frozen=True, slots=True)
class EfSpec:
    """An elementary file and its access conditions.

    ``read_key`` ``None`` means free to read. ``size`` is the byte size of transparent
    files and the record size of the others; ``records`` the record count of cyclic and
    index files (TLV files have one record per item).
    """

    df: DfSpec
    label: str
    fid: int
    sfi: int | None
    kind: EfKind
    read_key: int | None
    update_key: int | None
    size: int = 0
    records: int = 0
    fields: tuple[tuple[str, DataType, int], ...] = ()  # fixed-layout record fields

    @property
    def path(self) -> str:
        """``DDF1/EF05`` style name."""
        return f"{self.df.label}/{self.label}"


@dataclass(frozen=True, slots=True)
class Item:
    """A data element: item number (= TLV tag), name, type, length and its file.

    ``record`` is the element's record number in its file (items in item order).
    """

    number: int
    name: str
    type: DataType
    length: int
    ef: EfSpec = field(repr=False)
    record: int


MF = DfSpec("MF", 0x3F00, b"jmjkkyyhj", None, None)
DDF1 = DfSpec("DDF1", 0xDDF1, b"WS.SYS.DDF01", 0x01, 0x11)
DF01 = DfSpec("DF01", 0xDF01, None, 0x02, 0x12)
DF02 = DfSpec("DF02", 0xDF02, None, 0x03, 0x13)
DF03 = DfSpec("DF03", 0xDF03, None, 0x04, 0x14)
DFS: tuple[DfSpec, ...] = (MF, DDF1, DF01, DF02, DF03)


def _tlv(df: DfSpec, n: int, free_read: bool = False) -> EfSpec:
    return EfSpec(
        df,
        f"EF{n:02d}",
        0xEF00 + n,
        n,
        EfKind.TLV_RECORDS,
        None if free_read else df.read_key,
        df.update_key,
    )


ISSUER = _tlv(DDF1, 5, free_read=True)
CARDHOLDER = _tlv(DDF1, 6)
PHOTO = EfSpec(DDF1, "EF07", 0xEF07, 7, EfKind.TRANSPARENT, 0x01, 0x11, size=3072)
VALIDITY = _tlv(DDF1, 8)
ADDRESSES = _tlv(DF01, 5)
CONTACTS = _tlv(DF01, 6)
SOCIAL = _tlv(DF01, 7)
DOCUMENTS = _tlv(DF01, 8)
BASICS = _tlv(DF02, 5)
PSYCHIATRIC = _tlv(DF02, 6)
ALLERGIES = EfSpec(
    DF02,
    "EF07",
    0xEF07,
    7,
    EfKind.CYCLIC,
    0x03,
    0x13,
    size=120,
    records=3,
    fields=(("substance", AN, 20), ("reaction", AN, 100)),
)
IMMUNISATIONS = EfSpec(
    DF02,
    "EF08",
    0xEF08,
    8,
    EfKind.CYCLIC,
    0x03,
    0x13,
    size=24,
    records=10,
    fields=(("vaccine", AN, 20), ("date", CN, 4)),
)
INPATIENT_INDEX = EfSpec(DF03, "EF05", 0xEF05, 5, EfKind.INDEX, 0x04, 0x14, size=1, records=3)
OUTPATIENT_INDEX = EfSpec(DF03, "EF06", 0xEF06, 6, EfKind.INDEX, 0x04, 0x14, size=1, records=5)
INPATIENT_RECORDS = tuple(
    EfSpec(DF03, f"EE{i:02d}", 0xEE00 + i, None, EfKind.TRANSPARENT, 0x04, 0x14, size=1639)
    for i in range(1, 4)
)
OUTPATIENT_RECORDS = tuple(
    EfSpec(DF03, f"ED{i:02d}", 0xED00 + i, None, EfKind.TRANSPARENT, 0x04, 0x14, size=3013)
    for i in range(1, 6)
)

#: Every EF of the card.
FILES: tuple[EfSpec, ...] = (
    ISSUER,
    CARDHOLDER,
    PHOTO,
    VALIDITY,
    ADDRESSES,
    CONTACTS,
    SOCIAL,
    DOCUMENTS,
    BASICS,
    PSYCHIATRIC,
    ALLERGIES,
    IMMUNISATIONS,
    INPATIENT_INDEX,
    OUTPATIENT_INDEX,
    *INPATIENT_RECORDS,
    *OUTPATIENT_RECORDS,
)

_FLAGS = (
    "asthma",
    "heart_disease",
    "cerebrovascular_disease",
    "epilepsy",
    "coagulation_disorder",
    "diabetes",
    "glaucoma",
    "dialysis",
    "transplant",
    "missing_organ",
    "removable_prosthesis",
    "pacemaker",
)

_LAYOUT: tuple[tuple[EfSpec, tuple[tuple[int, str, DataType, int], ...]], ...] = (
    (
        ISSUER,
        (
            (1, "card_type", AN, 1),
            (2, "spec_version", AN, 4),
            (3, "issuer_name", AN, 30),
            (4, "issuer_code", CN, 11),
            (5, "issuer_certificate", B, 180),
            (6, "issue_date", CN, 4),
            (8, "card_number", AN, 18),
            (9, "security_code", AN, 3),
            (10, "chip_serial", AN, 10),
            (57, "city_code", CN, 3),
        ),
    ),
    (
        CARDHOLDER,
        (
            (11, "name", AN, 30),
            (12, "sex", B, 1),
            (13, "ethnicity", CN, 1),
            (14, "birth_date", CN, 4),
            (15, "id_number", AN, 18),
        ),
    ),
    (
        VALIDITY,
        (
            (7, "expiry_date", CN, 4),
            (16, "phone1", AN, 20),
            (17, "phone2", AN, 20),
            (18, "payment_method1", CN, 1),
            (19, "payment_method2", CN, 1),
            (20, "payment_method3", CN, 1),
        ),
    ),
    (
        ADDRESSES,
        (
            (21, "address1_type", CN, 1),
            (22, "address1", AN, 100),
            (23, "address2_type", CN, 1),
            (24, "address2", AN, 100),
        ),
    ),
    (
        CONTACTS,
        tuple(
            (25 + 3 * i + j, f"contact{i + 1}_{what}", kind, length)
            for i in range(3)
            for j, (what, kind, length) in enumerate(
                (("name", AN, 30), ("relationship", CN, 1), ("phone", AN, 20))
            )
        ),
    ),
    (SOCIAL, ((34, "education", CN, 1), (35, "marital_status", CN, 1), (36, "occupation", AN, 3))),
    (
        DOCUMENTS,
        (
            (37, "id_document_type", CN, 1),
            (38, "id_document_number", AN, 18),
            (39, "health_record_number", AN, 17),
            (40, "rural_insurance_number", AN, 18),
        ),
    ),
    (
        BASICS,
        (
            (41, "abo", B, 1),
            (42, "rh", CN, 1),
            *((43 + i, flag, B, 1) for i, flag in enumerate(_FLAGS)),
            (55, "other_warning", AN, 40),
        ),
    ),
    (PSYCHIATRIC, ((56, "psychiatric", B, 1),)),
)

#: Every TLV data element by item number.
ITEMS: dict[int, Item] = {
    number: Item(number, name, kind, length, ef, record)
    for ef, rows in _LAYOUT
    for record, (number, name, kind, length) in enumerate(rows, start=1)
}
_BY_NAME = {it.name: it for it in ITEMS.values()}

#: The twelve condition flags of DF02/EF05, in card order.
CONDITION_FLAGS: tuple[str, ...] = _FLAGS


def item(key: int | str) -> Item:
    """An item by number or name; an unknown one is a KeyError naming it."""
    found = ITEMS.get(key) if isinstance(key, int) else _BY_NAME.get(key)
    if found is None:
        raise KeyError(f"no data element {key!r} on the health card")
    return found


def items_of(ef: EfSpec) -> list[Item]:
    """The items of a TLV record file, in record order."""
    return sorted((it for it in ITEMS.values() if it.ef is ef), key=lambda it: it.record)


class VisitKind(StrEnum):
    """Inpatient or outpatient visit record."""

    INPATIENT = "inpatient"
    OUTPATIENT = "outpatient"


@dataclass(frozen=True, slots=True)
class VisitSlots:
    """The index file and the record files of one kind of visit."""

    kind: VisitKind
    index: EfSpec
    records: tuple[EfSpec, ...]


VISIT_SLOTS: dict[VisitKind, VisitSlots] = {
    VisitKind.INPATIENT: VisitSlots(VisitKind.INPATIENT, INPATIENT_INDEX, INPATIENT_RECORDS),
    VisitKind.OUTPATIENT: VisitSlots(VisitKind.OUTPATIENT, OUTPATIENT_INDEX, OUTPATIENT_RECORDS),
}

#: The TLV items of a visit record (tag, name, type, maximum length); our choice of
#: lengths, within the one-byte TLV length and the record size.
VISIT_ITEMS: tuple[tuple[int, str, DataType, int], ...] = (
    (1, "visited_at", CN, 7),
    (2, "institution_name", AN, 70),
    (3, "institution_code", AN, 22),
    (4, "department", AN, 30),
    (5, "doctor", AN, 30),
    (6, "diagnosis_code", AN, 20),
    (7, "diagnosis_name", AN, 100),
    (8, "treatment", AN, 255),
    (9, "total_fee", AN, 12),
)
#: The signature (64 B) and the institution certificate (190 B) end every visit record.
VISIT_SIGNATURE_LEN = 64
VISIT_CERTIFICATE_LEN = 190
VISIT_TRAILER_LEN = VISIT_SIGNATURE_LEN + VISIT_CERTIFICATE_LEN
INDEX_VALID = 0x00
INDEX_INVALID = 0xFF
#: Bytes of a photo file's length prefix.
PHOTO_LENGTH_PREFIX = 2


# --- parts: what a short read asks for ----------------------------------------------


class CardPart(StrEnum):
    """A part of the card's data that can be read on its own (``read(parts=...)``).

    Each part is a group of items or files of one DF, so a read of a few parts costs
    one SELECT and one authentication per DF it touches and one READ per TLV file (per
    item where the card cannot read a file whole, and in DDF1/EF05) or record.
    """

    ISSUER = "issuer"  #: DDF1/EF05 in full: issuer, issue date, certificate, chip serial …
    IDENTITY = "identity"  #: DDF1/EF06: name, sex, ethnicity, birth date, ID number
    INSURANCE = "insurance"  #: DDF1/EF08 items 7, 18–20: expiry and payment (insurance) types
    PHONES = "phones"  #: DDF1/EF08 items 16, 17: the cardholder's phone numbers
    PHOTO = "photo"  #: DDF1/EF07
    CONTACTS = "contacts"  #: DF01/EF05, EF06: addresses and emergency contacts
    SOCIAL = "social"  #: DF01/EF07: education, marital status, occupation
    DOCUMENTS = "documents"  #: DF01/EF08: ID document, health record and rural insurance numbers
    BASICS = "basics"  #: DF02/EF05, EF06: blood group, condition flags, warning, psychiatric
    ALLERGIES = "allergies"  #: DF02/EF07
    IMMUNISATIONS = "immunisations"  #: DF02/EF08
    VISITS = "visits"  #: DF03: the visit indexes and the valid visit records


#: Every part, in card order (the order a read goes in, and the order ``parts`` lists).
ALL_PARTS: tuple[CardPart, ...] = tuple(CardPart)

#: Items every read takes, whatever the parts: the card number (which card this is) and
#: the city code (checked against the SAM's before any authentication).
CORE_ITEMS: tuple[Item, ...] = (ITEMS[8], ITEMS[57])

#: The TLV items of each part made of TLV items (the other parts are whole files).
PART_ITEMS: dict[CardPart, tuple[Item, ...]] = {
    CardPart.ISSUER: tuple(items_of(ISSUER)),
    CardPart.IDENTITY: tuple(items_of(CARDHOLDER)),
    CardPart.INSURANCE: (ITEMS[7], ITEMS[18], ITEMS[19], ITEMS[20]),
    CardPart.PHONES: (ITEMS[16], ITEMS[17]),
    CardPart.CONTACTS: (*items_of(ADDRESSES), *items_of(CONTACTS)),
    CardPart.SOCIAL: tuple(items_of(SOCIAL)),
    CardPart.DOCUMENTS: tuple(items_of(DOCUMENTS)),
    CardPart.BASICS: (*items_of(BASICS), *items_of(PSYCHIATRIC)),
}

#: Names that stand for several parts (and the model they fill).
PART_GROUPS: dict[str, tuple[CardPart, ...]] = {
    "all": ALL_PARTS,
    "cardholder": (CardPart.IDENTITY,),
    "validity": (CardPart.INSURANCE, CardPart.PHONES),
    "personal": (CardPart.CONTACTS, CardPart.SOCIAL, CardPart.DOCUMENTS),
    "clinical": (CardPart.BASICS, CardPart.ALLERGIES, CardPart.IMMUNISATIONS),
}

#: Files without which the card cannot be used: absent, the read stops with
#: CardFileMissingError. Every other file and DF is optional: absent, its part reads
#: empty and the file is named in ``CardRead.missing``. (DDF1 itself absent means the
#: card is no health card: ForeignCardError.)
MANDATORY_FILES: frozenset[EfSpec] = frozenset({ISSUER, CARDHOLDER})
#: Items without which the card cannot be used: the card number and city code (which
#: card, which keys) and the holder's name.
MANDATORY_ITEMS: frozenset[int] = frozenset({8, 11, 57})


def parse_parts(names: str | Iterable[str | CardPart] | None) -> frozenset[CardPart]:
    """The parts named by ``names`` (a comma-separated text or an iterable); ``None`` is all.

    Group names (``all``, ``cardholder``, ``validity``, ``personal``, ``clinical``) stand
    for their parts. An unknown name is :class:`~hcmiddleware.errors.CardPartError`.
    """
    if names is None:
        return frozenset(ALL_PARTS)
    if isinstance(names, str):
        names = [n for n in (p.strip() for p in names.split(",")) if n]
    out: set[CardPart] = set()
    for name in names:
        key = str(name).strip().lower()
        if key in PART_GROUPS:
            out.update(PART_GROUPS[key])
            continue
        try:
            out.add(CardPart(key))
        except ValueError:
            raise CardPartError(f"there is no card part named {key!r}", part=key) from None
    return frozenset(out)


def parts_text(parts: Iterable[CardPart]) -> str:
    """The parts in card order, comma-separated (for logs, audit and the CLI)."""
    chosen = set(parts)
    return ",".join(p.value for p in ALL_PARTS if p in chosen)

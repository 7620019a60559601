"""What a health card holds, as pydantic models.

The models' ``repr`` names the fields but never shows their values: cardholder data
must not leak into logs through a stray ``%r``. Use ``model_dump()`` where the data is
meant to be shown.

A read may take only some parts of the card (``CardSession.read(parts=...)``, see
:class:`~hcmiddleware.card.filemap.CardPart`). The models that hold data of several parts
(:class:`CardRead`, :class:`Issuer`, :class:`Validity`, :class:`Personal`,
:class:`Clinical`) say in ``parts`` which of theirs were read. A field of a part that
was not read holds ``None`` in dumps, and reading it as an attribute raises
:class:`~hcmiddleware.errors.CardPartNotReadError`: a part not read is never mistaken
for an empty one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Optional, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hcmiddleware.card.filemap import ALL_PARTS, CardPart, VisitKind
from hcmiddleware.errors import CardPartNotReadError

__all__ = [
    "Address",
    "Allergy",
    "CardModel",
    "CardRead",
    "Cardholder",
    "Clinical",
    "Contact",
    "Immunisation",
    "Issuer",
    "PartialModel",
    "Personal",
    "Read",
    "Validity",
    "VisitRecord",
]

_T = TypeVar("_T")

if TYPE_CHECKING:
    #: A field of a part that may not have been read. Reading it when its part was not
    #: read raises CardPartNotReadError, so to a reader it is always a ``_T``.
    Read = Annotated[_T, "filled by its part"]
else:
    # Stored: ``None`` while the part is not read.
    Read = Optional[_T]  # noqa: UP045 - a generic alias, evaluated by pydantic at runtime


class _Hidden:
    """Stands in for a value in a model's repr."""

    def __repr__(self) -> str:
        return "<hidden>"


_HIDDEN = _Hidden()


class CardModel(BaseModel):
    """Base of the card's data models: frozen, and values hidden from ``repr``."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", ser_json_bytes="hex", val_json_bytes="hex"
    )

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # Field names only: values are personal data.
        for name in type(self).model_fields:
            yield name, _HIDDEN


class PartialModel(CardModel):
    """A model whose fields belong to parts of the card, any of which may be unread.

    ``parts`` lists the parts of this model that were read (default: all of them).
    A field of an unread part holds ``None`` and raises
    :class:`~hcmiddleware.errors.CardPartNotReadError` when read as an attribute.
    """

    #: field name -> the parts that fill it (any one of them suffices)
    FIELD_PARTS: ClassVar[Mapping[str, tuple[CardPart, ...]]] = {}
    #: fields that may be None even when read (a date the card leaves empty)
    NULLABLE: ClassVar[frozenset[str]] = frozenset()

    parts: tuple[CardPart, ...] = Field(
        default=(), description="the parts of this model that were read (default: all)"
    )

    @classmethod
    def own_parts(cls) -> tuple[CardPart, ...]:
        """Every part that fills a field of this model, in card order."""
        mine = {p for parts in cls.FIELD_PARTS.values() for p in parts}
        return tuple(p for p in ALL_PARTS if p in mine)

    @model_validator(mode="before")
    @classmethod
    def _all_parts_unless_told(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("parts") is None:
            data = {**data, "parts": cls.own_parts()}
        return data

    @model_validator(mode="after")
    def _unread_fields_are_empty(self) -> PartialModel:
        read = set(self.parts)
        unknown = read - set(type(self).own_parts())
        if unknown:
            raise ValueError(f"parts {sorted(unknown)} do not fill {type(self).__name__}")
        for name, parts in type(self).FIELD_PARTS.items():
            value = self.__dict__[name]
            if read.intersection(parts):
                if value is None and name not in type(self).NULLABLE:
                    raise ValueError(f"{name} is read ({parts[0]}) but holds nothing")
            elif value is not None:
                raise ValueError(f"{name} holds data but its part {parts[0]} is not read")
        ordered = tuple(p for p in ALL_PARTS if p in read)
        if ordered != self.parts:
            object.__setattr__(self, "parts", ordered)
        return self

    def has(self, *parts: CardPart | str) -> bool:
        """True when every part named was read."""
        return {CardPart(p) for p in parts} <= set(self.parts)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # which parts were read and which files are absent is no personal data
        for name, value in super().__repr_args__():
            if name == "parts":
                yield name, tuple(p.value for p in self.parts)
            elif name in ("missing", "absent_items"):
                yield name, self.__dict__[name]
            else:
                yield name, value

    if not TYPE_CHECKING:  # to type checkers every field stays of its declared type

        def __getattribute__(self, name: str) -> Any:
            value = super().__getattribute__(name)
            if value is None:
                parts = type(self).FIELD_PARTS.get(name)
                if parts is not None and not set(parts) & set(self.__dict__["parts"]):
                    names = " or ".join(repr(p.value) for p in parts)
                    raise CardPartNotReadError(
                        f"{type(self).__name__}.{name} was not read from the card "
                        f"(it is in part {names})",
                        part=parts[0].value,
                        field=name,
                        hint=f"read the card with parts including {names}",
                    )
            return value


def _fields(part: CardPart, *names: str) -> dict[str, tuple[CardPart, ...]]:
    return dict.fromkeys(names, (part,))


class Issuer(PartialModel):
    """DDF1/EF05: issuance data, readable without authentication.

    ``card_number`` and ``city_code`` are read by every read; the rest is part
    ``issuer``.
    """

    FIELD_PARTS = _fields(
        CardPart.ISSUER,
        "card_type",
        "spec_version",
        "issuer_name",
        "issuer_code",
        "issuer_certificate",
        "issue_date",
        "security_code",
        "chip_serial",
    )
    NULLABLE = frozenset({"issue_date"})

    card_type: Read[str]
    spec_version: Read[str]
    issuer_name: Read[str]
    issuer_code: Read[str]
    issuer_certificate: Read[bytes]
    issue_date: Read[dt.date | None]
    card_number: str
    security_code: Read[str]
    chip_serial: Read[str]
    city_code: str


class Cardholder(CardModel):
    """DDF1/EF06: who the card belongs to."""

    name: str
    sex: int = Field(description="GB/T 2261.1 code: 1 male, 2 female, 0/9 unknown")
    ethnicity: str = Field(description="GB/T 3304 code")
    birth_date: dt.date | None
    id_number: str


class Validity(PartialModel):
    """DDF1/EF08: expiry and payment methods (part ``insurance``), phones (``phones``).

    The payment methods are the codes of how the holder's care is paid: the medical
    insurance schemes (national code table); empty ones are left out.
    """

    FIELD_PARTS = {
        **_fields(CardPart.INSURANCE, "expiry_date", "payment_methods"),
        **_fields(CardPart.PHONES, "phone1", "phone2"),
    }
    NULLABLE = frozenset({"expiry_date"})

    expiry_date: Read[dt.date | None]
    phone1: Read[str]
    phone2: Read[str]
    payment_methods: Read[list[str]]


class Address(CardModel):
    """One address of DF01/EF05."""

    type: str
    address: str


class Contact(CardModel):
    """One emergency contact of DF01/EF06."""

    name: str
    relationship: str
    phone: str


class Personal(PartialModel):
    """DF01: addresses and contacts (part ``contacts``), social data (``social``) and
    documents (``documents``)."""

    FIELD_PARTS = {
        **_fields(CardPart.CONTACTS, "addresses", "contacts"),
        **_fields(CardPart.SOCIAL, "education", "marital_status", "occupation"),
        **_fields(
            CardPart.DOCUMENTS,
            "id_document_type",
            "id_document_number",
            "health_record_number",
            "rural_insurance_number",
        ),
    }

    addresses: Read[list[Address]]
    contacts: Read[list[Contact]]
    education: Read[str]
    marital_status: Read[str]
    occupation: Read[str]
    id_document_type: Read[str]
    id_document_number: Read[str]
    health_record_number: Read[str]
    rural_insurance_number: Read[str]


class Allergy(CardModel):
    """One record of the allergy file (DF02/EF07)."""

    substance: str = Field(max_length=20)
    reaction: str = Field(max_length=100)


class Immunisation(CardModel):
    """One record of the immunisation file (DF02/EF08)."""

    vaccine: str = Field(max_length=20)
    date: dt.date


class Clinical(PartialModel):
    """DF02: blood group, condition flags, warnings (part ``basics``), allergies
    (``allergies``) and immunisations (``immunisations``)."""

    FIELD_PARTS = {
        **_fields(CardPart.BASICS, "abo", "rh", "conditions", "other_warning", "psychiatric"),
        **_fields(CardPart.ALLERGIES, "allergies"),
        **_fields(CardPart.IMMUNISATIONS, "immunisations"),
    }

    abo: Read[int] = Field(
        description="ABO code: 1 A, 2 B, 3 O, 4 AB, 5 unknown; 0 not on the card"
    )
    rh: Read[str] = Field(description="Rh code: 1 negative, 2 positive, 3 unknown")
    conditions: Read[dict[str, bool]]
    other_warning: Read[str]
    psychiatric: Read[bool]
    allergies: Read[list[Allergy]] = Field(description="newest first")
    immunisations: Read[list[Immunisation]] = Field(description="newest first")


class VisitRecord(CardModel):
    """An inpatient or outpatient visit summary (DF03).

    ``slot`` is the record number (1-based) it was read from; ``None`` for a record
    about to be written. ``signature`` and ``certificate`` are the writing
    institution's, empty when the record is unsigned.
    """

    kind: VisitKind
    slot: int | None = None
    visited_at: dt.datetime
    institution_name: str
    institution_code: str
    department: str = ""
    doctor: str = ""
    diagnosis_code: str = ""
    diagnosis_name: str = ""
    treatment: str = ""
    total_fee: str = ""
    signature: bytes = b""
    certificate: bytes = b""


class CardRead(PartialModel):
    """What one read took from the card: everything, or the parts asked for.

    ``parts`` lists the parts read (see :class:`~hcmiddleware.card.filemap.CardPart`);
    ``issuer.card_number`` and ``issuer.city_code`` are always there. Reading a field
    of a part not read raises :class:`~hcmiddleware.errors.CardPartNotReadError`.
    ``missing`` names the optional files and DFs the card does not have (``DF01``,
    ``DDF1/EF07``): their parts were read and are empty. ``absent_items`` are the
    numbers of the items the card holds no record for (read as empty).
    """

    FIELD_PARTS = {
        "cardholder": (CardPart.IDENTITY,),
        "validity": (CardPart.INSURANCE, CardPart.PHONES),
        "photo": (CardPart.PHOTO,),
        "personal": (CardPart.CONTACTS, CardPart.SOCIAL, CardPart.DOCUMENTS),
        "clinical": (CardPart.BASICS, CardPart.ALLERGIES, CardPart.IMMUNISATIONS),
        "visits": (CardPart.VISITS,),
    }

    atr: bytes
    issuer: Issuer
    cardholder: Read[Cardholder]
    validity: Read[Validity]
    photo: Read[bytes] = Field(description="the JPEG; empty when the card carries none")
    personal: Read[Personal]
    clinical: Read[Clinical]
    visits: Read[list[VisitRecord]]
    missing: tuple[str, ...] = Field(
        default=(), description="optional files and DFs the card does not have"
    )
    absent_items: tuple[int, ...] = Field(
        default=(), description="numbers of the items the card holds no record for"
    )

    @classmethod
    def own_parts(cls) -> tuple[CardPart, ...]:
        """Every part (``issuer`` fills ``issuer`` beyond its always-read items)."""
        return ALL_PARTS

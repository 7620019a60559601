"""What a health card holds, as pydantic models.

The models' ``repr`` names the fields but never shows their values: cardholder data
must not leak into logs through a stray ``%r``. Use ``model_dump()`` where the data is
meant to be shown.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from hcmiddleware.card.filemap import VisitKind

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
    "Personal",
    "Validity",
    "VisitRecord",
]


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


class Issuer(CardModel):
    """DDF1/EF05: issuance data, readable without authentication."""

    card_type: str
    spec_version: str
    issuer_name: str
    issuer_code: str
    issuer_certificate: bytes
    issue_date: dt.date | None
    card_number: str
    security_code: str
    chip_serial: str
    city_code: str


class Cardholder(CardModel):
    """DDF1/EF06: who the card belongs to."""

    name: str
    sex: int = Field(description="GB/T 2261.1 code: 1 male, 2 female, 0/9 unknown")
    ethnicity: str = Field(description="GB/T 3304 code")
    birth_date: dt.date | None
    id_number: str


class Validity(CardModel):
    """DDF1/EF08: expiry, phone numbers and payment methods."""

    expiry_date: dt.date | None
    phone1: str
    phone2: str
    payment_methods: list[str]


class Address(CardModel):
    """One address of DF01/EF05."""

    type: str
    address: str


class Contact(CardModel):
    """One emergency contact of DF01/EF06."""

    name: str
    relationship: str
    phone: str


class Personal(CardModel):
    """DF01: addresses, contacts, social data and documents."""

    addresses: list[Address]
    contacts: list[Contact]
    education: str
    marital_status: str
    occupation: str
    id_document_type: str
    id_document_number: str
    health_record_number: str
    rural_insurance_number: str


class Allergy(CardModel):
    """One record of the allergy file (DF02/EF07)."""

    substance: str = Field(max_length=20)
    reaction: str = Field(max_length=100)


class Immunisation(CardModel):
    """One record of the immunisation file (DF02/EF08)."""

    vaccine: str = Field(max_length=20)
    date: dt.date


class Clinical(CardModel):
    """DF02: blood group, condition flags, warnings, allergies and immunisations."""

    abo: int = Field(description="ABO code: 1 A, 2 B, 3 O, 4 AB, 5 unknown")
    rh: str = Field(description="Rh code: 1 negative, 2 positive, 3 unknown")
    conditions: dict[str, bool]
    other_warning: str
    psychiatric: bool
    allergies: list[Allergy] = Field(description="newest first")
    immunisations: list[Immunisation] = Field(description="newest first")


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


class CardRead(CardModel):
    """Everything readable on the card in one read."""

    atr: bytes
    issuer: Issuer
    cardholder: Cardholder
    validity: Validity
    photo: bytes
    personal: Personal
    clinical: Clinical
    visits: list[VisitRecord]

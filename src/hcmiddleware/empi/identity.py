"""Resident identity numbers (公民身份号码, GB 11643-1999) and children's stand-in numbers.

An 18-character number is ``RRRRRR YYYYMMDD SSS C``: the GB/T 2260 region of first
registration, the birth date, a sequence whose last digit is odd for men and even for
women, and an ISO 7064 MOD 11-2 check character (``0``-``9`` or ``X``). The 15-digit
numbers issued before 1999 have a two-digit year (always 19xx) and no check character;
they are converted to 18 on entry so that one person has one number.

Children who have no number yet are recorded under a parent's number followed by ``n``
(girl, 女) or ``z`` (boy, 子), as the regional health-record systems do. Twins or more
children of the same sex under the same parent get an order digit after the letter:
the first child has none (``…n``), the second ``…n2``, the third ``…n3`` (up to 9). A
boy and a girl born together need no digit: their letters differ.

Values here are personal data: ``repr`` masks them and error messages never contain them.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

from hcmiddleware.empi.normalize import normalize_code
from hcmiddleware.errors import (
    IdentityMismatchError,
    IdNumberChecksumError,
    IdNumberDateError,
    IdNumberFormatError,
)
from hcmiddleware.gb11643 import check_character
from hcmiddleware.models import Sex

__all__ = [
    "EARLIEST_BIRTH_DATE",
    "ChildNumber",
    "IdNumber",
    "Sex",
    "check_character",
    "convert_legacy",
    "mask",
    "normalize_id_number",
    "parse_child_number",
    "parse_id_number",
    "parse_identity",
]

#: GB 11643's own worked example is born in 1880; nobody alive is older.
EARLIEST_BIRTH_DATE = dt.date(1880, 1, 1)

_ID18 = re.compile(r"\d{17}[\dX]")
_ID15 = re.compile(r"\d{15}")
_CHILD = re.compile(r"(?P<parent>\d{17}[\dX]|\d{15})(?P<letter>[NZ])(?P<order>[2-9])?")


def mask(value: str) -> str:
    """Show the first 3 and last 2 characters only, for reprs and operator screens."""
    if len(value) <= 5:
        return "*" * len(value)
    return value[:3] + "*" * (len(value) - 5) + value[-2:]


def normalize_id_number(raw: str) -> str:
    """Full-width to half-width, spaces and dashes removed, ``x`` → ``X`` (and ``n``/``z``)."""
    return normalize_code(raw)


@dataclass(frozen=True, slots=True)
class IdNumber:
    """A valid 18-character resident ID number and what it says about its holder."""

    value: str = field(repr=False)
    region_code: str = field(repr=False)
    birth_date: dt.date = field(repr=False)
    sex: Sex
    converted_from_15: bool = False

    def __repr__(self) -> str:
        return f"IdNumber({mask(self.value)!r}, sex={self.sex.name})"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class ChildNumber:
    """A stand-in number for a child: a parent's ID number plus ``n``/``z`` (+ order)."""

    value: str = field(repr=False)
    parent: IdNumber = field(repr=False)
    sex: Sex
    order: int = 1

    def __repr__(self) -> str:
        return f"ChildNumber({mask(self.value)!r}, sex={self.sex.name}, order={self.order})"

    def __str__(self) -> str:
        return self.value


def _birth_date(digits: str, today: dt.date) -> dt.date:
    try:
        born = dt.date(int(digits[0:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        raise IdNumberDateError(
            "the birth date in the ID number (characters 7-14) is not a calendar date",
            field="id_number",
        ) from None
    if born > today:
        raise IdNumberDateError(
            "the birth date in the ID number is in the future", field="id_number"
        )
    if born < EARLIEST_BIRTH_DATE:
        raise IdNumberDateError(
            f"the birth date in the ID number is before {EARLIEST_BIRTH_DATE.year}",
            field="id_number",
        )
    return born


def convert_legacy(number15: str) -> str:
    """Convert a 15-digit number (issued before 1999, born 19xx) to its 18-digit form."""
    value = normalize_id_number(number15)
    if not _ID15.fullmatch(value):
        raise IdNumberFormatError("a legacy ID number has 15 digits", field="id_number")
    body = value[:6] + "19" + value[6:]
    return body + check_character(body)


def parse_id_number(
    raw: str,
    *,
    birth_date: dt.date | None = None,
    sex: Sex | int | None = None,
    today: dt.date | None = None,
) -> IdNumber:
    """Validate an 18- or 15-character ID number and derive birth date and sex from it.

    ``birth_date`` and ``sex``, when given (from the card or the form), must agree with
    the number. Raises an :class:`~hcmiddleware.errors.IdentityError` subclass naming the
    field and the fault; a 15-digit number comes back converted to 18.
    """
    today = today or dt.date.today()
    value = normalize_id_number(raw)
    converted = False
    if _ID15.fullmatch(value):
        value = convert_legacy(value)
        converted = True
    elif not _ID18.fullmatch(value):
        raise IdNumberFormatError(
            f"an ID number has 18 characters (17 digits and a digit or X); got {len(value)}"
            " characters"
            + ("" if value.isascii() else " including characters that are not digits"),
            field="id_number",
        )
    if check_character(value[:17]) != value[17]:
        raise IdNumberChecksumError(
            "the check character (the last one) does not match the first 17 digits",
            field="id_number",
        )
    born = _birth_date(value[6:14], today)
    derived_sex = Sex.MALE if int(value[16]) % 2 else Sex.FEMALE
    if birth_date is not None and birth_date != born:
        raise IdentityMismatchError(
            "the birth date given differs from the one in the ID number", field="birth_date"
        )
    if sex is not None and Sex(sex) in (Sex.MALE, Sex.FEMALE) and Sex(sex) != derived_sex:
        raise IdentityMismatchError(
            "the sex given differs from the one the ID number encodes", field="sex"
        )
    return IdNumber(
        value=value,
        region_code=value[:6],
        birth_date=born,
        sex=derived_sex,
        converted_from_15=converted,
    )


def parse_child_number(
    raw: str, *, sex: Sex | int | None = None, today: dt.date | None = None
) -> ChildNumber:
    """Validate a child's stand-in number: a valid parent number, ``n``/``z``, order 2-9.

    The parent's number is validated in full (and a 15-digit one converted), so the
    stored form is canonical. ``sex``, when given, must agree with the letter.
    """
    value = normalize_id_number(raw)
    match = _CHILD.fullmatch(value)
    if match is None:
        raise IdNumberFormatError(
            "a child's number is a parent's ID number followed by n (girl) or z (boy), "
            "and a digit 2-9 for a second or later child of the same sex",
            field="id_number",
        )
    parent = parse_id_number(match["parent"], today=today)
    child_sex = Sex.FEMALE if match["letter"] == "N" else Sex.MALE
    if sex is not None and Sex(sex) in (Sex.MALE, Sex.FEMALE) and Sex(sex) != child_sex:
        raise IdentityMismatchError(
            "the sex given differs from the child's letter (n girl, z boy)", field="sex"
        )
    order = int(match["order"]) if match["order"] else 1
    suffix = match["letter"].lower() + (match["order"] or "")
    return ChildNumber(value=parent.value + suffix, parent=parent, sex=child_sex, order=order)


def parse_identity(
    raw: str,
    *,
    birth_date: dt.date | None = None,
    sex: Sex | int | None = None,
    today: dt.date | None = None,
) -> IdNumber | ChildNumber:
    """Parse whatever was typed in the ID-number field: an ID number or a child's number."""
    value = normalize_id_number(raw)
    if value[-1:] in ("N", "Z") or (len(value) > 1 and value[-2:-1] in ("N", "Z")):
        return parse_child_number(value, sex=sex, today=today)
    return parse_id_number(value, birth_date=birth_date, sex=sex, today=today)

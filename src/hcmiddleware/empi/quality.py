"""Data quality of a record: what is wrong with it, as stable codes (flags).

A hospital's old patient files are dirty: an ID number whose check character does not
match, a birth date that disagrees with the number, a 15-digit number from before
1999, digits typed in full width. Such a record still names a person, and it is often
exactly the duplicate that matters, so the index keeps it: what can be normalised
without guessing is normalised, what cannot be trusted is kept as *unverified*
evidence, and the record carries a flag for each fault. The flags are stable codes
(:class:`Flag`) that say what kind of fault, never a value, so they may be stored and
shown in clear.

:func:`read_id_number` reads whatever was typed in the ID-number field. A number that
passes every check (form, check character, calendar date, region, and agreement with
the birth date and sex given with it) is *verified*: it becomes the resident's ID-number
identifier, a unique key. Anything else is *unverified*: kept (normalised) for search
and as evidence in matching, never a unique key and never a reason to link on its own.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
import unicodedata
from dataclasses import dataclass, field

from hcmiddleware.empi.identity import (
    EARLIEST_BIRTH_DATE,
    ChildNumber,
    IdNumber,
    parse_identity,
)
from hcmiddleware.empi.normalize import normalize_code
from hcmiddleware.empi.regions import check_id_region
from hcmiddleware.errors import (
    IdentityError,
    IdentityMismatchError,
    IdNumberChecksumError,
    IdNumberDateError,
    RegionCodeError,
)
from hcmiddleware.models import Sex

__all__ = ["Flag", "IdReading", "birth_date_flags", "phone_flags", "read_id_number"]


class Flag(enum.StrEnum):
    """A data-quality fault of a record. The values are stable: files and HIS use them."""

    #: no ID number given (or a placeholder such as 000000000000000000)
    ID_MISSING = "id_missing"
    #: typed with full-width digits or letters (normalised to half width)
    ID_FULLWIDTH = "id_fullwidth"
    #: spaces or dashes inside the number (removed)
    ID_SPACES = "id_spaces"
    #: an old 15-digit number (converted to 18 where its date is a real one)
    ID_15_DIGIT = "id_15_digit"
    #: wrong length or characters that cannot be in a number (kept unverified)
    ID_FORMAT = "id_format"
    #: the check character does not match (kept unverified)
    ID_CHECKSUM = "id_checksum"
    #: the birth date inside the number is no calendar day, in the future or before 1880
    ID_DATE = "id_date_invalid"
    #: the first two digits are no province (kept unverified)
    ID_REGION = "id_region_invalid"
    #: the birth date given differs from the number's (number kept unverified)
    ID_BIRTH_MISMATCH = "id_birth_mismatch"
    #: the sex given differs from the number's (number kept unverified)
    ID_SEX_MISMATCH = "id_sex_mismatch"
    #: no birth date given, and none from a verified number
    BIRTH_MISSING = "birth_missing"
    #: the birth date given could not be read as a date (kept as typed, unused)
    BIRTH_INVALID = "birth_invalid"
    #: the birth date is in the future or before 1880 (kept)
    BIRTH_IMPLAUSIBLE = "birth_implausible"
    #: the sex code could not be read (recorded as unknown)
    SEX_INVALID = "sex_invalid"
    #: the phone is neither a mainland mobile nor a landline number (kept)
    PHONE_INVALID = "phone_invalid"
    #: an identifier given is held by another resident (kept apart, sent to review)
    IDENTIFIER_CONFLICT = "identifier_conflict"


_ID15 = re.compile(r"\d{15}")
_CHILD_TAIL = re.compile(r"(?P<body>.*[\dX])(?P<letter>[NZ])(?P<order>\d?)")
_MOBILE = re.compile(r"1[3-9]\d{9}")
# Area code (0 + 2-3 digits) and a 7-8 digit number, or the local number alone.
_LANDLINE = re.compile(r"0\d{2,3}\d{7,8}|[2-9]\d{6,7}")
_DASHES = frozenset("-\u2010\u2011\u2012\u2013\u2014\u2212")


@dataclass(frozen=True, slots=True)
class IdReading:
    """What :func:`read_id_number` made of an ID-number field.

    ``value`` is the canonical number when ``verified`` is set, else the number as
    given after the safe normalisations (half width, no spaces, upper case, a 15-digit
    number converted where it can be), or ``None`` when the field was empty.
    ``error`` is why it is not verified (the typed error a strict enrolment raises).
    """

    value: str | None = field(repr=False)
    verified: IdNumber | ChildNumber | None = field(repr=False)
    flags: tuple[Flag, ...]
    error: IdentityError | None = None
    warnings: tuple[str, ...] = ()


def _typing_flags(raw: str) -> list[Flag]:
    text = raw.strip()
    if text.isascii() and text.isalnum():
        return []  # the common case, decided without looking at each character
    flags = []
    if any("\uff01" <= c <= "\uff5e" or c == "\u3000" for c in text):
        flags.append(Flag.ID_FULLWIDTH)
    folded = unicodedata.normalize("NFKC", text)
    if any(c.isspace() or c in _DASHES for c in folded):
        flags.append(Flag.ID_SPACES)
    return flags


def _as_given(value: str) -> str:
    # A child's letter is stored lower case, as a verified child number is.
    match = _CHILD_TAIL.fullmatch(value)
    if match and len(match["body"]) in (15, 18):
        return match["body"] + match["letter"].lower() + match["order"]
    return value


def _fault(exc: IdentityError, value: str) -> list[Flag]:
    body = _CHILD_TAIL.fullmatch(value)
    digits = body["body"] if body else value
    flags = [Flag.ID_15_DIGIT] if _ID15.fullmatch(digits) else []
    if isinstance(exc, IdNumberChecksumError):
        flags.append(Flag.ID_CHECKSUM)
    elif isinstance(exc, IdNumberDateError):
        flags.append(Flag.ID_DATE)
    elif isinstance(exc, RegionCodeError):
        flags.append(Flag.ID_REGION)
    else:
        flags.append(Flag.ID_FORMAT)
    return flags


def read_id_number(
    raw: str | None,
    *,
    birth_date: dt.date | None = None,
    sex: Sex | int | None = None,
    today: dt.date | None = None,
) -> IdReading:
    """Read an ID-number field (an ID number or a child's number) without refusing it.

    Every check of :func:`~hcmiddleware.empi.identity.parse_identity` and of the region
    is made; a number that fails one is returned unverified with a flag naming the
    fault, and the typed error a strict caller raises. A birth date or sex given that
    disagrees with a valid number makes it unverified too: the record may carry a
    relative's number (a child registered under a parent's).
    """
    value = normalize_code(raw) if raw is not None else ""
    if not value or (len(value) >= 6 and len(set(value)) == 1):
        # Empty, or a placeholder (000000000000000000) that says the number is unknown.
        return IdReading(None, None, (Flag.ID_MISSING,))
    flags = _typing_flags(raw or "")
    try:
        parsed = parse_identity(value, today=today)
        number = parsed if isinstance(parsed, IdNumber) else parsed.parent
        region = check_id_region(number.region_code)
    except IdentityError as exc:
        flags += _fault(exc, value)
        return IdReading(_as_given(value), None, tuple(flags), exc)
    if number.converted_from_15:
        flags.append(Flag.ID_15_DIGIT)
    warnings = (region.warning,) if region.warning else ()
    errors: list[IdentityError] = []
    if isinstance(parsed, IdNumber) and birth_date is not None and birth_date != parsed.birth_date:
        flags.append(Flag.ID_BIRTH_MISMATCH)
        errors.append(
            IdentityMismatchError(
                "the birth date given differs from the one in the ID number", field="birth_date"
            )
        )
    if sex is not None and Sex(sex) in (Sex.MALE, Sex.FEMALE) and Sex(sex) != parsed.sex:
        flags.append(Flag.ID_SEX_MISMATCH)
        errors.append(
            IdentityMismatchError(
                "the sex given differs from the one the ID number encodes"
                if isinstance(parsed, IdNumber)
                else "the sex given differs from the child's letter (n girl, z boy)",
                field="sex",
            )
        )
    if errors:
        return IdReading(parsed.value, None, tuple(flags), errors[0], warnings)
    return IdReading(parsed.value, parsed, tuple(flags), None, warnings)


def birth_date_flags(born: dt.date | None, today: dt.date) -> list[Flag]:
    """``birth_missing`` or ``birth_implausible`` (future, before 1880), or nothing."""
    if born is None:
        return [Flag.BIRTH_MISSING]
    if born > today or born < EARLIEST_BIRTH_DATE:
        return [Flag.BIRTH_IMPLAUSIBLE]
    return []


def phone_flags(phone: str | None) -> list[Flag]:
    """``phone_invalid`` for normalised digits that are neither a mobile nor a landline."""
    if not phone or _MOBILE.fullmatch(phone) or _LANDLINE.fullmatch(phone):
        return []
    return [Flag.PHONE_INVALID]

"""Dirty records are kept: faulty ID numbers unverified, every fault a data-quality flag."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from hcmiddleware.empi.identity import Sex, check_character
from hcmiddleware.empi.index import ResidentIndex
from hcmiddleware.empi.quality import Flag, phone_flags, read_id_number
from hcmiddleware.errors import IdentityMismatchError, IdNumberChecksumError

TODAY = dt.date(2026, 1, 1)
ZHANG_ID = "11010519491231002X"
ZHANG_BORN = dt.date(1949, 12, 31)


def _with_check(body: str) -> str:
    return body + check_character(body)


@pytest.mark.parametrize(
    ("raw", "given", "value", "verified", "flags"),
    [
        (ZHANG_ID, {}, ZHANG_ID, True, ()),
        ("11010519491231002x", {"birth_date": ZHANG_BORN, "sex": 2}, ZHANG_ID, True, ()),
        ("１１０１０５１９４９１２３１００２ｘ", {}, ZHANG_ID, True, ("id_fullwidth",)),
        ("110105 19491231 002-X", {}, ZHANG_ID, True, ("id_spaces",)),
        ("110105491231002", {}, ZHANG_ID, True, ("id_15_digit",)),
        ("110105194912310021", {}, "110105194912310021", False, ("id_checksum",)),
        ("11010519491231002", {}, "11010519491231002", False, ("id_format",)),
        ("11O10519491231002X", {}, "11O10519491231002X", False, ("id_format",)),
        ("110105490230002", {}, "110105490230002", False, ("id_15_digit", "id_date_invalid")),
        (_with_check("99010519491231002"), {}, _with_check("99010519491231002"), False,
         ("id_region_invalid",)),
        (ZHANG_ID, {"birth_date": dt.date(1949, 12, 30)}, ZHANG_ID, False,
         ("id_birth_mismatch",)),
        (ZHANG_ID, {"sex": Sex.MALE, "birth_date": dt.date(2020, 1, 1)}, ZHANG_ID, False,
         ("id_birth_mismatch", "id_sex_mismatch")),
        ("11010519491231002XN", {"sex": Sex.MALE}, "11010519491231002Xn", False,
         ("id_sex_mismatch",)),
        ("110105194912310021n", {}, "110105194912310021n", False, ("id_checksum",)),
        ("", {}, None, False, ("id_missing",)),
        (None, {}, None, False, ("id_missing",)),
    ],
)  # fmt: skip
def test_id_numbers_are_read_without_refusing_them(
    raw: str | None,
    given: dict[str, object],
    value: str | None,
    verified: bool,
    flags: tuple[str, ...],
) -> None:
    reading = read_id_number(raw, today=TODAY, **given)  # type: ignore[arg-type]
    assert reading.value == value
    assert (reading.verified is not None) == verified
    assert reading.flags == flags
    assert (reading.error is None) == verified or value is None
    if reading.error is not None:
        assert value is None or value not in str(reading.error)


def test_the_error_a_strict_caller_raises_is_the_typed_one() -> None:
    mismatch = read_id_number(ZHANG_ID, birth_date=dt.date(1949, 12, 30), sex=1, today=TODAY)
    assert isinstance(mismatch.error, IdentityMismatchError)
    assert mismatch.error.field == "birth_date"  # the birth date first, as parse_id_number
    assert isinstance(read_id_number("110105194912310021").error, IdNumberChecksumError)


@pytest.mark.parametrize(
    ("phone", "flagged"),
    [
        ("13800138000", False),
        ("01062345678", False),  # Beijing landline with its area code
        ("075586001234", False),
        ("62345678", False),  # local landline
        ("1380013800", True),  # a digit short
        ("23800138000", True),
        ("123", True),
    ],
)
def test_phone_plausibility(phone: str, flagged: bool) -> None:
    assert (phone_flags(phone) == [Flag.PHONE_INVALID]) is flagged


def _identifier_rows(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(sa.text("SELECT count(*) FROM empi_identifiers")) or 0)


def test_a_faulty_number_is_kept_unverified_and_the_clean_record_links_to_it(
    index: ResidentIndex, engine: Engine
) -> None:
    dirty = index.enrol(
        name="张秀英",
        sex=Sex.FEMALE,
        birth_date=ZHANG_BORN,
        id_number="110105194912310021",  # one keystroke from her number
        phone="13800138000",
        source="old-his",
        record_id="7",
        strict=False,
    )
    assert dirty.created
    assert dirty.flags == ("id_checksum",)
    resident = index.get(dirty.resident.resident_id)
    assert resident.id_number is None
    assert resident.identifiers == ()
    assert resident.unverified_id_number == "110105194912310021"
    assert resident.flags == ("id_checksum",)
    assert _identifier_rows(engine) == 0  # never a unique key
    with pytest.raises(IdNumberChecksumError):
        index.lookup("id_number", "110105194912310021")  # a lookup wants a valid number
    # A desk enrolment stays strict: the clerk can correct the number now.
    with pytest.raises(IdNumberChecksumError):
        index.enrol(name="张秀英", sex=2, id_number="110105194912310021")
    # Her clean record: same name, birth date and phone, the number one keystroke off.
    clean = index.enrol(name="张秀英", sex=2, id_number=ZHANG_ID, phone="13800138000")
    assert not clean.created
    assert clean.linked_by_demographics is not None
    assert clean.resident.resident_id == resident.resident_id
    assert clean.resident.id_number == ZHANG_ID


def test_an_unverified_number_is_never_a_unique_key_nor_a_link_by_itself(
    index: ResidentIndex,
) -> None:
    mother = index.enrol(
        name="张秀英", sex=2, id_number=ZHANG_ID, phone="13800138000", address="朝阳区建国路1号"
    )
    # Two children registered under their mother's number, no suffix: the number
    # disagrees with their birth dates, so it is unverified; they stay two people.
    first = index.enrol(
        name="李明", sex=1, birth_date=dt.date(2015, 3, 2), id_number=ZHANG_ID, strict=False
    )
    second = index.enrol(
        name="李华", sex=2, birth_date=dt.date(2018, 7, 9), id_number=ZHANG_ID, strict=False
    )
    ids = {mother.resident.resident_id, first.resident.resident_id, second.resident.resident_id}
    assert len(ids) == 3
    assert first.flags == ("id_birth_mismatch", "id_sex_mismatch")  # a son, her number
    assert second.flags == ("id_birth_mismatch",)
    assert index.lookup("id_number", ZHANG_ID).resident_id == mother.resident.resident_id  # type: ignore[union-attr]
    assert first.resident.unverified_id_number == second.resident.unverified_id_number == ZHANG_ID
    # All three are found by the number.
    found = {c.resident.resident_id for c in index.search(id_number=ZHANG_ID, include_new=True)}
    assert found == ids


def test_lenient_enrolment_keeps_implausible_and_unreadable_values(index: ResidentIndex) -> None:
    e = index.enrol(
        name="王芳",
        sex=7,
        birth_date=dt.date(2091, 5, 1),
        phone="电话无",
        strict=False,
        today=TODAY,
    )
    assert e.created
    assert e.flags == ("birth_implausible", "id_missing", "phone_invalid", "sex_invalid")
    assert e.resident.sex is Sex.UNKNOWN
    assert e.resident.birth_date == dt.date(2091, 5, 1)
    assert e.resident.phone is None

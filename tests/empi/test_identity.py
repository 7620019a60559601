"""ID numbers: check character, derived fields, legacy conversion, children, bad input."""

from __future__ import annotations

import datetime as dt
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hcmiddleware.empi.identity import (
    ChildNumber,
    IdNumber,
    Sex,
    check_character,
    convert_legacy,
    mask,
    parse_child_number,
    parse_id_number,
    parse_identity,
)
from hcmiddleware.errors import (
    IdentityError,
    IdentityMismatchError,
    IdNumberChecksumError,
    IdNumberDateError,
    IdNumberFormatError,
)
from hcmiddleware.gb11643 import id_number_valid
from hcmiddleware.models import Sex as ModelSex

TODAY = dt.date(2026, 1, 1)

# The worked examples printed in GB 11643-1999 itself.
PUBLIC_EXAMPLES = [
    ("11010519491231002X", dt.date(1949, 12, 31), Sex.FEMALE),
    ("440524188001010014", dt.date(1880, 1, 1), Sex.MALE),
]


@pytest.mark.parametrize(("number", "born", "sex"), PUBLIC_EXAMPLES)
def test_public_examples_parse(number: str, born: dt.date, sex: Sex) -> None:
    parsed = parse_id_number(number, today=TODAY)
    assert parsed.value == number
    assert parsed.birth_date == born
    assert parsed.sex is sex
    assert parsed.region_code == number[:6]
    assert not parsed.converted_from_15


def test_legacy_example_converts_to_the_standard_18_digit_form() -> None:
    assert convert_legacy("110105491231002") == "11010519491231002X"
    parsed = parse_id_number("110105491231002", today=TODAY)
    assert parsed.value == "11010519491231002X"
    assert parsed.converted_from_15


def _iso7064(body: str) -> str:
    # Independent formulation: MOD 11-2 as the recursive (p * 2 + digit) form.
    p = 0
    for d in body:
        p = (p + int(d)) * 2 % 11
    return "0123456789X"[(12 - p) % 11]


bodies = st.text(alphabet="0123456789", min_size=17, max_size=17)
dates = st.dates(min_value=dt.date(1900, 1, 1), max_value=TODAY)
regions = st.sampled_from(["110105", "310115", "440305", "510107", "650102", "440524"])


@given(bodies)
def test_check_character_agrees_with_the_recursive_formulation(body: str) -> None:
    assert check_character(body) == _iso7064(body)


def test_one_sex_enum_for_the_index_and_the_domain_models() -> None:
    assert Sex is ModelSex


@given(bodies)
def test_id_number_valid_takes_only_the_right_check_character(body: str) -> None:
    right = _iso7064(body)
    assert id_number_valid(body + right)
    assert id_number_valid(body + right.lower())
    wrong = next(c for c in "0123456789X" if c != right)
    assert not id_number_valid(body + wrong)


def test_id_number_valid_refuses_other_forms() -> None:
    assert not id_number_valid("11010519491231002")  # 17 characters
    assert not id_number_valid("110105491231002")  # legacy 15: convert it first
    assert not id_number_valid("１１０１０５１９４９１２３１００２X")  # full-width digits
    assert not id_number_valid("1101051949123100XX")


@st.composite
def id_numbers(draw: st.DrawFn) -> tuple[str, dt.date, Sex]:
    region = draw(regions)
    born = draw(dates)
    seq = draw(st.integers(0, 999))
    body = f"{region}{born:%Y%m%d}{seq:03d}"
    return body + check_character(body), born, Sex.MALE if seq % 2 else Sex.FEMALE


@given(id_numbers())
def test_derived_fields_round_trip(case: tuple[str, dt.date, Sex]) -> None:
    number, born, sex = case
    parsed = parse_id_number(number, birth_date=born, sex=sex, today=TODAY)
    assert (parsed.value, parsed.birth_date, parsed.sex) == (number, born, sex)


@given(id_numbers(), st.integers(0, 17), st.integers(1, 10))
def test_any_single_character_change_is_refused(
    case: tuple[str, dt.date, Sex], pos: int, delta: int
) -> None:
    number = case[0]
    alphabet = "0123456789X" if pos == 17 else "0123456789"
    old = alphabet.index(number[pos])
    new = alphabet[(old + delta) % len(alphabet)]
    if new == number[pos]:
        return
    changed = number[:pos] + new + number[pos + 1 :]
    with pytest.raises(IdentityError):
        parse_id_number(changed, today=TODAY)


@given(id_numbers(), st.integers(0, 16))
def test_adjacent_transpositions_are_refused(case: tuple[str, dt.date, Sex], pos: int) -> None:
    number = case[0]
    if number[pos] == number[pos + 1] or number[pos + 1] == "X":
        return
    swapped = number[:pos] + number[pos + 1] + number[pos] + number[pos + 2 :]
    with pytest.raises(IdentityError):
        parse_id_number(swapped, today=TODAY)


@given(id_numbers())
def test_full_width_spaces_and_lower_case_x_normalise(case: tuple[str, dt.date, Sex]) -> None:
    number = case[0]
    wide = "".join(chr(ord(c) + 0xFEE0) for c in number.lower())
    typed = wide[:6] + "\u3000" + wide[6:14] + " " + wide[14:]
    assert unicodedata.normalize("NFKC", typed) != number
    assert parse_id_number(typed, today=TODAY).value == number


@given(
    st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(1999, 12, 31)), st.integers(0, 999)
)
def test_legacy_and_converted_number_describe_the_same_person(born: dt.date, seq: int) -> None:
    legacy = f"110105{born:%y%m%d}{seq:03d}"
    old = parse_id_number(legacy, today=TODAY)
    new = parse_id_number(old.value, today=TODAY)
    assert (old.birth_date, old.sex, old.region_code) == (new.birth_date, new.sex, new.region_code)
    assert old.birth_date == born


def _with_check(body: str) -> str:
    return body + check_character(body)


@pytest.mark.parametrize(
    ("number", "error"),
    [
        ("", IdNumberFormatError),
        ("11010519491231002", IdNumberFormatError),
        ("11010519491231002XX", IdNumberFormatError),
        ("1101051949123100AX", IdNumberFormatError),
        ("11010519491231002Y", IdNumberFormatError),
        ("110105194912310021", IdNumberChecksumError),
        (_with_check("11010519490230002"), IdNumberDateError),  # 30 February
        (_with_check("11010519491301002"), IdNumberDateError),  # month 13
        (_with_check("11010520300101002"), IdNumberDateError),  # future
        (_with_check("11010518791231002"), IdNumberDateError),  # before 1880
        ("110105490230002", IdNumberDateError),  # legacy, 30 February
    ],
)
def test_bad_numbers_get_typed_errors_without_the_number(
    number: str, error: type[IdentityError]
) -> None:
    with pytest.raises(error) as info:
        parse_id_number(number, today=TODAY)
    assert info.value.field == "id_number"
    assert info.value.hint
    if len(number) >= 6:
        assert number not in str(info.value)
        assert number[:10] not in str(info.value)


def test_given_birth_date_and_sex_are_cross_checked() -> None:
    with pytest.raises(IdentityMismatchError) as info:
        parse_id_number("11010519491231002X", birth_date=dt.date(1949, 12, 30), today=TODAY)
    assert info.value.field == "birth_date"
    with pytest.raises(IdentityMismatchError) as info:
        parse_id_number("11010519491231002X", sex=1, today=TODAY)
    assert info.value.field == "sex"
    # "unknown" and "unspecified" do not contradict the number.
    assert parse_id_number("11010519491231002X", sex=Sex.UNKNOWN, today=TODAY).sex is Sex.FEMALE


def test_children_under_a_parents_number() -> None:
    girl = parse_child_number("11010519491231002Xn", today=TODAY)
    assert isinstance(girl, ChildNumber)
    assert (girl.sex, girl.order, girl.value) == (Sex.FEMALE, 1, "11010519491231002Xn")
    twin = parse_identity("１１０１０５１９４９１２３１００２ｘ Ｚ２", today=TODAY)
    assert isinstance(twin, ChildNumber)
    assert (twin.sex, twin.order, twin.value) == (Sex.MALE, 2, "11010519491231002Xz2")
    legacy_parent = parse_child_number("110105491231002z", today=TODAY)
    assert legacy_parent.value == "11010519491231002Xz"
    assert legacy_parent.parent.converted_from_15


@pytest.mark.parametrize(
    ("number", "error"),
    [
        ("11010519491231002Xm", IdNumberFormatError),
        ("11010519491231002Xn1", IdNumberFormatError),  # the first child has no digit
        ("11010519491231002Xn10", IdNumberFormatError),
        ("110105194912310021n", IdNumberChecksumError),  # the parent's number is checked
    ],
)
def test_bad_child_numbers(number: str, error: type[IdentityError]) -> None:
    with pytest.raises(error):
        parse_identity(number, today=TODAY)


def test_child_sex_must_match_its_letter() -> None:
    with pytest.raises(IdentityMismatchError):
        parse_child_number("11010519491231002Xn", sex=Sex.MALE, today=TODAY)


def test_reprs_mask_the_number() -> None:
    parsed = parse_id_number("11010519491231002X", today=TODAY)
    assert isinstance(parsed, IdNumber)
    assert "11010519491231002X" not in repr(parsed)
    assert "1949" not in repr(parsed)
    child = parse_identity("11010519491231002Xn", today=TODAY)
    assert "11010519491231002X" not in repr(child)
    assert mask("11010519491231002X") == "110*************2X"

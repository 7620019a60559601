"""The dirty population: each labelled pair really carries the error its label names."""

from __future__ import annotations

import unicodedata
from collections import Counter

import pytest
from pypinyin import Style, pinyin
from rapidfuzz.distance import DamerauLevenshtein

from hcmiddleware.empi.chinese_names import to_simplified
from hcmiddleware.empi.synthetic import (
    APART_KINDS,
    ERROR_KINDS,
    DirtyPopulation,
    Person,
    dirty_population,
)

KEYPAD = {"0": "12", "1": "024", "2": "1350", "3": "26", "4": "1578", "5": "2468",
          "6": "3579", "7": "48", "8": "5790", "9": "68", "X": "9"}  # fmt: skip


@pytest.fixture(scope="module")
def town() -> DirtyPopulation:
    return dirty_population(4000, seed=7)


def _sound(name: str) -> list[str]:
    return [p[0] for p in pinyin(name, style=Style.NORMAL)]


def _check(kind: str, first: Person, dup: Person) -> None:
    a_id, b_id = first.id_number or "", dup.id_number or ""
    if kind == "id_keystroke":
        (i,) = [k for k in range(18) if a_id[k] != b_id[k]]
        assert b_id[i] in KEYPAD[a_id[i]]
    elif kind == "id_transposition":
        assert sorted(a_id) == sorted(b_id)
        assert DamerauLevenshtein.distance(a_id, b_id) == 1
    elif kind == "id_check":
        assert a_id[:17] == b_id[:17]
        assert a_id[17] != b_id[17]
    elif kind == "id_15_digit":
        assert b_id == a_id[:6] + a_id[8:17]
    elif kind == "id_fullwidth":
        assert unicodedata.normalize("NFKC", b_id).replace(" ", "") == a_id
    elif kind == "id_missing":
        assert dup.id_number is None
    elif kind == "birth_swap":
        assert first.birth_date is not None
        assert dup.birth_date == first.birth_date.replace(
            month=first.birth_date.day, day=first.birth_date.month
        )
    elif kind == "birth_placeholder":
        assert dup.birth_date is not None
        assert dup.birth_date.day == 1
        assert dup.birth_date != first.birth_date
    elif kind == "birth_digit":
        assert first.birth_date is not None
        assert dup.birth_date is not None
        a, b = f"{first.birth_date:%Y%m%d}", f"{dup.birth_date:%Y%m%d}"
        assert sum(x != y for x, y in zip(a, b, strict=True)) == 1
    elif kind == "name_space":
        assert "".join(dup.name.split()) == first.name != dup.name
    elif kind == "name_homophone":
        assert dup.name != first.name
        assert _sound(dup.name) == _sound(first.name)
    elif kind == "name_traditional":
        assert dup.name != first.name
        assert to_simplified(dup.name) == first.name
    elif kind == "phone_formatted":
        assert "".join(c for c in dup.phone or "" if c.isdigit()).removeprefix("86") == first.phone
    elif kind == "phone_typo":
        assert DamerauLevenshtein.distance(first.phone or "", dup.phone or "") == 1
    elif kind == "phone_old":
        assert (dup.phone or "").startswith("0")
    elif kind == "addr_region_missing":
        assert (first.address or "").endswith(dup.address or "-")
        assert dup.address != first.address
    elif kind in ("addr_abbrev", "addr_building", "addr_moved"):
        assert dup.address != first.address
    elif kind == "sex_wrong":
        assert dup.sex == 3 - first.sex


def test_every_labelled_error_is_there(town: DirtyPopulation) -> None:
    records = {r.record_id: r for r in town.records}
    checked: Counter[str] = Counter()
    for (a, b), kind in town.pairs.items():
        if kind in APART_KINDS:
            assert records[a].person != records[b].person
            continue
        assert records[a].person == records[b].person
        assert kind in ERROR_KINDS
        first, dup = records[a], records[b]
        if a in town.error_of or kind in ("multi", "clean"):
            continue  # two duplicates, or several errors: not one field to check
        _check(kind, first, dup)
        checked[kind] += 1
    # Nearly every kind is drawn in a town of 4,000 records.
    assert len(checked) >= len(ERROR_KINDS) - 5, checked


def test_pairs_that_must_stay_apart(town: DirtyPopulation) -> None:
    records = {r.record_id: r for r in town.records}
    kinds = Counter(town.pairs.values())
    assert {"twin", "sibling", "namesake", "child_suffix"} <= set(kinds)
    for (a, b), kind in town.pairs.items():
        one, two = records[a], records[b]
        if kind == "twin":
            assert one.birth_date == two.birth_date
            assert one.address == two.address
        elif kind == "namesake":
            assert (one.name, one.birth_date) == (two.name, two.birth_date)
            assert one.id_number != two.id_number
        elif kind == "child_suffix":
            parent, child = (one, two) if len(one.id_number or "") == 18 else (two, one)
            assert (child.id_number or "")[:18] == parent.id_number
            assert (child.id_number or "")[18] in "nz"
        elif kind == "child_no_suffix":
            assert one.id_number == two.id_number
            assert one.birth_date != two.birth_date


def test_the_town_is_the_same_for_a_seed_and_sized_as_asked(town: DirtyPopulation) -> None:
    again = dirty_population(4000, seed=7)
    assert again.records == town.records
    assert again.pairs == town.pairs
    assert 3800 <= len(town.records) <= 4200
    assert {r.channel for r in town.records} == {"window", "kiosk", "old_system"}

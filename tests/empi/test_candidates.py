"""Which block members an enrolment or a search decrypts and scores."""

from __future__ import annotations

import datetime as dt

from hcmiddleware.empi.blocking import SMALL_BLOCK, choose_candidates
from hcmiddleware.empi.identity import Sex
from hcmiddleware.empi.index import ResidentIndex

BIG = SMALL_BLOCK + 1


def _members() -> dict[bytes, list[str]]:
    strangers = [f"s{i}" for i in range(BIG)]
    return {
        b"bd": [*strangers, "twin"],  # a big block: everyone born that day
        b"sm": [*strangers[:3], "twin", "cousin", *[f"t{i}" for i in range(BIG)]],
        b"ph": ["neighbour"],  # a small block
        b"ny": [],
    }


def test_one_shared_key_of_a_big_block_is_not_enough() -> None:
    chosen = choose_candidates([b"bd", b"sm", b"ph", b"ny"], _members(), limit=100)
    assert "cousin" not in chosen  # shares only sm, a big block
    assert "t0" not in chosen


def test_two_shared_keys_or_a_small_block_are_enough() -> None:
    chosen = choose_candidates([b"bd", b"sm", b"ph", b"ny"], _members(), limit=100)
    assert "twin" in chosen  # bd and sm
    assert {"s0", "s1", "s2"} <= set(chosen)  # bd and sm too
    assert "neighbour" in chosen  # the phone's block is small
    assert "s5" not in chosen


def test_most_shared_first_and_limited() -> None:
    chosen = choose_candidates([b"bd", b"sm", b"ph", b"ny"], _members(), limit=100)
    assert chosen.index("twin") < chosen.index("neighbour")
    assert len(choose_candidates([b"bd", b"sm", b"ph", b"ny"], _members(), limit=2)) == 2


def test_a_record_with_few_keys_compares_every_member() -> None:
    chosen = choose_candidates([b"bd", b"ph"], _members(), limit=100)
    assert "s5" in chosen
    assert "neighbour" in chosen
    assert len(chosen) == BIG + 2


def test_a_key_listed_twice_counts_once() -> None:
    members = {b"bd": [f"s{i}" for i in range(BIG)], b"sm": []}
    assert choose_candidates([b"bd", b"bd", b"sm", b"ph"], members, limit=100) == []


def test_search_still_finds_a_duplicate_among_many_born_the_same_day(
    index: ResidentIndex,
) -> None:
    born = dt.date(1975, 6, 14)
    for i in range(BIG * 2):
        index.enrol(
            name="赵" + "甲乙丙丁戊己庚辛壬癸子丑寅卯辰巳午未申酉"[i], sex=Sex.MALE, birth_date=born
        )
    wanted = index.enrol(name="孙丽", sex=Sex.FEMALE, birth_date=born, phone="13912345678").resident
    # A homophone and no phone: shares the birth date and the name's sound keys.
    hits = index.search(name="孙莉", sex=Sex.FEMALE, birth_date=born)
    assert hits
    assert hits[0].resident.resident_id == wanted.resident_id


def test_an_unverified_number_brings_its_few_carriers_not_a_placeholders_crowd(
    index: ResidentIndex,
) -> None:
    # A number failing its check character, carried by two records of other people
    # (no other key shared): both are compared. Carried by many, it is a placeholder.
    bad = "110105194912310021"
    for i, name in enumerate(("李雷", "韩梅梅")):
        index.enrol(name=name, sex=1 + i, id_number=bad, strict=False)
    found = index.search(id_number=bad, include_new=True)
    assert sorted(c.resident.name for c in found) == ["李雷", "韩梅梅"]
    crowd = "440524188001010015"  # fails its check character too
    for i in range(BIG):
        index.enrol(name=f"路人{'甲乙丙丁戊己庚辛壬癸'[i]}", sex=1, id_number=crowd, strict=False)
    assert index.search(id_number=crowd, include_new=True) == []

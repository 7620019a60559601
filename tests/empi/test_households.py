"""A household shares an address, a phone and a parent's number: its members stay apart."""

from __future__ import annotations

import datetime as dt

from hcmiddleware.empi.identity import Sex
from hcmiddleware.empi.index import ResidentIndex

MOTHER = {
    "name": "张秀英",
    "sex": Sex.FEMALE,
    "id_number": "110105198012310022",
    "phone": "13800138000",
    "address": "北京市朝阳区建国路1号3栋2单元501",
}
HOME = {"phone": MOTHER["phone"], "address": MOTHER["address"]}


def test_a_child_under_the_parents_number_is_not_the_parent(index: ResidentIndex) -> None:
    mother = index.enrol(**MOTHER).resident
    girl = index.enrol(
        name="张小花", sex=2, id_number="110105198012310022n", birth_date=dt.date(2024, 3, 1),
        **HOME,
    )  # fmt: skip
    assert girl.created
    assert girl.resident.resident_id != mother.resident_id
    # The same girl registered again at another window is linked to her own record.
    again = index.enrol(
        name="張小花", sex=2, id_number="110105198012310022N", birth_date=dt.date(2024, 3, 1),
        phone=MOTHER["phone"],
    )  # fmt: skip
    assert again.resident.resident_id == girl.resident.resident_id


def test_a_child_with_the_parents_number_and_no_suffix_is_not_linked(
    index: ResidentIndex,
) -> None:
    mother = index.enrol(**MOTHER).resident
    # An old system's record of her son: her number as it is, his own birth date.
    son = index.enrol(
        name="张明", sex=Sex.MALE, birth_date=dt.date(2021, 6, 1), id_number=MOTHER["id_number"],
        strict=False, **HOME,
    )  # fmt: skip
    assert son.created
    assert son.resident.resident_id != mother.resident_id
    assert son.flags == ("id_birth_mismatch", "id_sex_mismatch")


def test_siblings_with_a_close_name_are_reviewed_not_linked(index: ResidentIndex) -> None:
    # Brothers share the generation character, the parents' phone and address.
    first = index.enrol(name="王建国", sex=1, birth_date=dt.date(2010, 5, 1), **HOME)
    second = index.enrol(name="王建华", sex=1, birth_date=dt.date(2010, 5, 2), **HOME)
    assert second.created
    assert second.resident.resident_id != first.resident.resident_id
    twins = index.enrol(name="王建民", sex=1, birth_date=dt.date(2010, 5, 1), **HOME)
    assert twins.created
    # Near enough to ask a person: on the review queue, never silent.
    assert len(twins.reviews) >= 1
    # A homophone of the first brother's name is his record, typed at a window.
    typed = index.enrol(name="王建果", sex=1, birth_date=dt.date(2010, 5, 1), **HOME)
    assert not typed.created
    assert typed.resident.resident_id == first.resident.resident_id

"""Demographic search and enrolment through the matcher, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.engine import Engine

from hcmiddleware.empi.index import ResidentIndex
from hcmiddleware.empi.matching import Decision, Thresholds
from hcmiddleware.empi.protection import Protector

BORN = dt.date(1949, 12, 31)


def _seed(index: ResidentIndex) -> str:
    rid = index.enrol(
        name="张秀英",
        sex=2,
        id_number="11010519491231002X",
        phone="13800138000",
        address="北京市朝阳区建国路1号",
    ).resident.resident_id
    index.enrol(name="李娜", sex=2, birth_date=dt.date(1980, 1, 1), phone="13900000000")
    index.enrol(name="张秀兰", sex=2, birth_date=dt.date(1960, 2, 2))
    return rid


def test_search_finds_the_resident_despite_errors(index: ResidentIndex) -> None:
    rid = _seed(index)
    found = index.search(name="張秀英", sex=2, birth_date=dt.date(1949, 12, 31))
    assert found[0].resident.resident_id == rid
    assert "name: same" in found[0].agreements
    assert "birth_date: same" in found[0].agreements
    # Homophone and swapped day/month, plus the phone: still first.
    found = index.search(name="张秀嬴", birth_date=dt.date(1949, 12, 31), phone="13800138000")
    assert found[0].resident.resident_id == rid
    assert found[0].decision == Decision.LINK
    # A mistyped day alone is too weak to propose, but the resident still ranks first.
    found = index.search(name="张秀英", birth_date=dt.date(1949, 12, 13), include_new=True)
    assert found[0].resident.resident_id == rid
    assert "birth_date: one part" in found[0].agreements


def test_search_leaves_out_strangers(index: ResidentIndex) -> None:
    _seed(index)
    assert index.search(name="王伟", birth_date=dt.date(1970, 7, 7)) == []
    everyone = index.search(name="王伟", birth_date=dt.date(1970, 7, 7), include_new=True)
    assert all(c.decision == Decision.NEW for c in everyone)


def test_enrol_links_on_corroborated_demographics(index: ResidentIndex) -> None:
    rid = _seed(index)
    again = index.enrol(
        name="張秀英", sex=2, birth_date=BORN, phone="13800138000", card_number="NEWCARD"
    )
    assert not again.created
    assert again.resident.resident_id == rid
    assert again.linked_by_demographics is not None
    assert index.lookup("card_number", "NEWCARD").resident_id == rid  # type: ignore[union-attr]


def test_enrol_never_links_two_different_id_numbers(index: ResidentIndex) -> None:
    rid = _seed(index)
    other = index.enrol(name="张秀英", sex=2, id_number="110105194912310089", phone="13800138000")
    assert other.created
    assert other.resident.resident_id != rid


def test_enrol_queues_uncorroborated_lookalikes(index: ResidentIndex) -> None:
    rid = _seed(index)
    result = index.enrol(name="张秀英", sex=2, birth_date=BORN)
    assert result.created
    assert result.reviews
    assert index.reviews()[0].candidate_id == rid


def test_auto_link_can_be_turned_off(engine: Engine, protector: Protector) -> None:
    index = ResidentIndex(engine, protector, auto_link=False)
    _seed(index)
    result = index.enrol(name="张秀英", sex=2, birth_date=BORN, phone="13800138000")
    assert result.created
    assert result.reviews


def test_training_learns_from_the_index_and_is_kept(
    engine: Engine, protector: Protector, keys: dict[str, bytes]
) -> None:
    index = ResidentIndex(engine, protector, thresholds=Thresholds(link=0.999, review=0.2))
    surnames, given = "王李张刘陈杨黄赵吴周", "伟芳娜秀英敏静丽强磊"
    for i in range(60):
        name = surnames[i % 10] + given[(i * 7) % 10] + given[(i * 3) % 10]
        born = dt.date(1950 + i % 40, 1 + i % 12, 1 + i % 28)
        index.enrol(name=name, sex=1 + i % 2, birth_date=born, phone=f"1380000{i:04d}")
        if i % 3 == 0:  # a duplicate with a typo in the name and no phone
            index.enrol(name=name[:-1] + "芳", sex=1 + i % 2, birth_date=born)
    before = index.model.to_json()
    pairs = index.train_model()
    assert pairs > 0
    assert index.model.to_json() != before
    reopened = ResidentIndex(engine, Protector({"2026a": keys["2026a"]}, "2026a", keys["index"]))
    assert reopened.model.to_json() == index.model.to_json()

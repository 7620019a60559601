"""The resident index on SQLite and PostgreSQL: enrol, lookup, cross-reference, merge."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from hcmiddleware.empi.identity import Sex
from hcmiddleware.empi.index import ResidentIndex
from hcmiddleware.empi.protection import Protector
from hcmiddleware.empi.schema import IdentifierKind, ResidentStatus, ReviewStatus
from hcmiddleware.errors import (
    IdentifierConflictError,
    IdentityError,
    IdentityMismatchError,
    IdNumberChecksumError,
    MergeError,
    ResidentIndexError,
    ResidentNotFoundError,
)
from hcmiddleware.models import Identifier, Resident

ZHANG = {
    "name": "张秀英",
    "sex": Sex.FEMALE,
    "id_number": "11010519491231002X",
    "phone": "13800138000",
    "address": "北京市朝阳区建国路1号",
    "card_number": "H11010500000001",
}


def _rows(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(sa.text(f"SELECT count(*) FROM {table}")) or 0)


def test_enrol_derives_and_stores_demographics(index: ResidentIndex) -> None:
    result = index.enrol(**ZHANG, source="his", record_id="P001")
    assert result.created
    resident = result.resident
    assert resident.name == "张秀英"
    assert resident.birth_date == dt.date(1949, 12, 31)
    assert resident.sex is Sex.FEMALE
    assert resident.region_code == "110105"
    assert resident.identifier(IdentifierKind.ID_NUMBER) == "11010519491231002X"
    assert resident.identifier(IdentifierKind.CARD_NUMBER) == "H11010500000001"
    assert index.source_records(resident.resident_id) == [("his", "P001")]
    assert "张秀英" not in repr(resident)
    assert "11010519491231002X" not in repr(result)


def test_the_index_and_its_types_are_where_importers_find_them() -> None:
    import hcmiddleware.empi as empi
    from hcmiddleware.empi import index as index_module
    from hcmiddleware.empi import records

    assert empi.ResidentIndex is index_module.ResidentIndex is ResidentIndex
    assert empi.PreparedRecord is index_module.PreparedRecord
    assert empi.Resident is index_module.Resident is Resident
    assert empi.Identifier is index_module.Identifier is Identifier
    assert index_module.Enrolment is records.Enrolment
    assert not hasattr(records, "Resident") or records.Resident is Resident


def test_the_index_gives_the_domain_model_the_hooks_carry(index: ResidentIndex) -> None:
    enrolled = index.enrol(**ZHANG).resident
    index.link_hospital_id(enrolled.resident_id, "H4401", "0000123")
    for resident in (enrolled, index.get(enrolled.resident_id)):
        assert type(resident) is Resident
        assert resident.status is ResidentStatus.ACTIVE
        assert resident.merged_into is None
        assert resident.id_number == "11010519491231002X"
        assert resident.created_at is not None
        assert resident.created_at.tzinfo is not None
    stored = index.get(enrolled.resident_id)
    assert stored == stored.model_validate(stored.model_dump())  # valid as constructed
    # Identifiers that need no assigner have none; a hospital's ID names its hospital.
    assert {(i.kind, i.assigner) for i in stored.identifiers} == {
        (IdentifierKind.ID_NUMBER, None),
        (IdentifierKind.CARD_NUMBER, None),
        (IdentifierKind.HOSPITAL_PATIENT_ID, "H4401"),
    }
    assert stored.identifier(IdentifierKind.HOSPITAL_PATIENT_ID) == "0000123"
    assert stored.identifier(IdentifierKind.HOSPITAL_PATIENT_ID, "H4402") is None


def test_enrol_twice_returns_the_same_resident(index: ResidentIndex, engine: Engine) -> None:
    first = index.enrol(**ZHANG)
    # Same person, number typed in full width with a lower-case x, a new e-card.
    again = index.enrol(
        name="张秀英",
        sex=2,
        id_number="１１０１０５１９４９１２３１００２ｘ",
        ecard_id="E-0001",
        source="his",
        record_id="P002",
    )
    assert not again.created
    assert again.matched_on is IdentifierKind.ID_NUMBER
    assert again.resident.resident_id == first.resident.resident_id
    assert again.resident.identifier(IdentifierKind.ECARD_ID) == "E0001"
    assert _rows(engine, "empi_residents") == 1
    assert index.count() == 1


def test_lookup_by_each_identifier(index: ResidentIndex) -> None:
    rid = index.enrol(**ZHANG, ecard_id="E1").resident.resident_id
    assert index.lookup("id_number", "11010519491231002x") is not None
    assert index.lookup(IdentifierKind.CARD_NUMBER, " h110105 00000001 ").resident_id == rid  # type: ignore[union-attr]
    assert index.lookup("ecard_id", "E1").resident_id == rid  # type: ignore[union-attr]
    assert index.lookup("card_number", "H99") is None
    assert index.lookup("id_number", "440524188001010014") is None


def test_legacy_number_finds_the_resident_enrolled_with_18_digits(index: ResidentIndex) -> None:
    rid = index.enrol(**ZHANG).resident.resident_id
    assert index.lookup("id_number", "110105491231002").resident_id == rid  # type: ignore[union-attr]


def test_invalid_lookup_is_an_error_not_a_miss(index: ResidentIndex) -> None:
    with pytest.raises(IdNumberChecksumError):
        index.lookup("id_number", "110105194912310021")


@pytest.mark.parametrize(
    ("change", "error", "field"),
    [
        ({"name": "  "}, IdentityError, "name"),
        ({"id_number": "110105194912310021"}, IdNumberChecksumError, "id_number"),
        ({"sex": Sex.MALE}, IdentityMismatchError, "sex"),
        ({"birth_date": dt.date(1950, 1, 1)}, IdentityMismatchError, "birth_date"),
        ({"sex": 5}, IdentityError, "sex"),
    ],
)
def test_bad_input_writes_nothing(
    index: ResidentIndex, engine: Engine, change: dict[str, object], error: type, field: str
) -> None:
    with pytest.raises(error) as info:
        index.enrol(**{**ZHANG, **change})  # type: ignore[arg-type]
    assert info.value.field == field
    assert _rows(engine, "empi_residents") == 0
    assert _rows(engine, "empi_identifiers") == 0


def test_identifiers_of_two_residents_are_a_conflict(index: ResidentIndex, engine: Engine) -> None:
    index.enrol(**ZHANG)
    other = index.enrol(name="李雷", sex=Sex.MALE, id_number="440524188001010014", card_number="C2")
    with pytest.raises(IdentifierConflictError) as info:
        index.enrol(
            name="李雷", sex=1, id_number="440524188001010014", card_number="H11010500000001"
        )
    assert other.resident.resident_id in info.value.holder
    assert _rows(engine, "empi_residents") == 2
    assert _rows(engine, "empi_identifiers") == 4


def test_card_of_a_resident_with_another_id_number_is_refused(index: ResidentIndex) -> None:
    index.enrol(**ZHANG)
    with pytest.raises(IdentifierConflictError):
        index.enrol(
            name="李雷", sex=1, id_number="440524188001010014", card_number="H11010500000001"
        )


def test_retired_region_code_is_a_warning(index: ResidentIndex) -> None:
    result = index.enrol(name="李雷", sex=1, id_number="440524188001010014")
    assert result.created
    assert any("retired" in w for w in result.warnings)


def test_child_under_a_parents_number(index: ResidentIndex) -> None:
    mother = index.enrol(**ZHANG).resident
    girl = index.enrol(
        name="张小花", sex=2, id_number="11010519491231002Xn", birth_date=dt.date(2025, 3, 1)
    )
    boy_twin = index.enrol(
        name="张小明", sex=1, id_number="11010519491231002XZ", birth_date=dt.date(2025, 3, 1)
    )
    assert len({mother.resident_id, girl.resident.resident_id, boy_twin.resident.resident_id}) == 3
    assert girl.resident.birth_date == dt.date(2025, 3, 1)
    assert index.lookup("id_number", "11010519491231002XN").resident_id == girl.resident.resident_id  # type: ignore[union-attr]
    with pytest.raises(IdentityMismatchError):
        index.enrol(name="张小花", sex=1, id_number="11010519491231002Xn2")


def test_same_name_and_birth_date_without_identifier_goes_to_review(index: ResidentIndex) -> None:
    first = index.enrol(name="王芳", sex=2, birth_date=dt.date(1990, 5, 1), phone="13900000001")
    second = index.enrol(name="王 芳", sex=2, birth_date=dt.date(1990, 5, 1), card_number="C9")
    assert second.created
    assert len(second.reviews) == 1
    (item,) = index.reviews()
    assert (item.resident_id, item.candidate_id) == (
        second.resident.resident_id,
        first.resident.resident_id,
    )
    decided = index.decide_review(item.id, same_person=True, operator="clerk01")
    assert decided.status is ReviewStatus.MERGED
    assert index.lookup("card_number", "C9").resident_id == first.resident.resident_id  # type: ignore[union-attr]
    assert index.reviews() == []
    with pytest.raises(MergeError):
        index.decide_review(item.id, same_person=False, operator="clerk01")


def test_review_can_be_closed_as_distinct(index: ResidentIndex) -> None:
    index.enrol(name="王芳", sex=2, birth_date=dt.date(1990, 5, 1))
    second = index.enrol(name="王芳", sex=2, birth_date=dt.date(1990, 5, 1))
    item = index.decide_review(second.reviews[0], same_person=False, operator="clerk01")
    assert item.status is ReviewStatus.DISTINCT
    assert item.decided_by == "clerk01"
    assert index.count() == 2


def test_hospital_patient_ids(index: ResidentIndex) -> None:
    rid = index.enrol(**ZHANG).resident.resident_id
    assert index.hospital_id(rid, "H4401") is None
    index.link_hospital_id(rid, "H4401", "0000123")
    index.link_hospital_id(rid, "h4401", "0000123")  # idempotent
    index.link_hospital_id(rid, "H4402", "A-77")
    assert index.hospital_id(rid, "H4401") == "0000123"
    assert index.hospital_id(rid, "H4402") == "A77"
    found = index.lookup("hospital_patient_id", "0000123", assigner=" h4401 ")
    assert found is not None
    assert found.resident_id == rid
    assert index.lookup("hospital_patient_id", "0000123", assigner="H4402") is None
    other = index.enrol(name="李雷", sex=1, id_number="440524188001010014").resident.resident_id
    with pytest.raises(IdentifierConflictError):
        index.link_hospital_id(other, "H4401", "0000123")
    index.link_regional_id(rid, "RHIN-440", "R1")
    # Assigner codes are normalised like the values: however typed, the same assigner.
    assert index.lookup("regional_index_id", "R1", assigner="rhin-440").resident_id == rid  # type: ignore[union-attr]
    assert index.lookup("regional_index_id", "R1", assigner="RHIN441") is None
    with pytest.raises(IdentityError):
        index.link_hospital_id(rid, " ", "1")


def test_issued_identifiers_need_their_issuer(index: ResidentIndex) -> None:
    with pytest.raises(IdentityError):
        index.enrol(
            name="李雷",
            sex=1,
            identifiers=[Identifier(kind=IdentifierKind.HOSPITAL_PATIENT_ID, value="1")],
        )


def test_merge_and_unmerge_with_history(index: ResidentIndex) -> None:
    a = index.enrol(**ZHANG, source="his", record_id="P1").resident.resident_id
    b = index.enrol(
        name="张秀英", sex=2, card_number="OLD-CARD", source="his", record_id="P2"
    ).resident.resident_id
    index.link_hospital_id(b, "H1", "77")

    event = index.merge(a, b, reason="same person, paper card", operator="clerk01")
    assert event.moved_identifiers == 2
    assert event.moved_source_records == 1
    assert index.lookup("card_number", "OLD-CARD").resident_id == a  # type: ignore[union-attr]
    assert index.hospital_id(a, "H1") == "77"
    assert index.get(b).resident_id == a
    merged = index.get(b, follow_merges=False)
    assert merged.status is ResidentStatus.MERGED
    assert merged.merged_into == a
    assert sorted(index.source_records(a)) == [("his", "P1"), ("his", "P2")]
    assert index.count() == 1

    with pytest.raises(MergeError):
        index.merge(a, b, reason="again", operator="clerk01")
    with pytest.raises(MergeError):
        index.merge(a, a, reason="self", operator="clerk01")
    with pytest.raises(MergeError):
        index.merge(a, b, reason=" ", operator="clerk01")

    index.link_hospital_id(a, "H2", "88")  # gained after the merge: stays with a
    undo = index.unmerge(b, reason="different people after all", operator="lead02")
    assert undo.undoes == event.id
    assert index.lookup("card_number", "OLD-CARD").resident_id == b  # type: ignore[union-attr]
    assert index.hospital_id(b, "H1") == "77"
    assert index.hospital_id(a, "H2") == "88"
    assert index.source_records(b) == [("his", "P2")]
    assert index.get(b).status is ResidentStatus.ACTIVE
    assert [e.action for e in index.history(b)] == ["merge", "unmerge"]
    with pytest.raises(MergeError):
        index.unmerge(b, reason="twice", operator="lead02")

    # Merge again after an unmerge: the second merge is undone on its own.
    again = index.merge(a, b, reason="confirmed by phone", operator="lead02")
    index.unmerge(b, reason="no", operator="lead02")
    assert [e.action for e in index.history(a)] == ["merge", "unmerge", "merge", "unmerge"]
    assert index.history(a)[-1].undoes == again.id


def test_unknown_resident(index: ResidentIndex) -> None:
    with pytest.raises(ResidentNotFoundError):
        index.get("0" * 32)
    with pytest.raises(ResidentNotFoundError):
        index.link_hospital_id("0" * 32, "H1", "1")
    with pytest.raises(ResidentIndexError):
        index.enrol(name="x", sex=1, source="his")


def test_index_reopens_with_the_same_keys(
    index: ResidentIndex, engine: Engine, keys: dict[str, bytes]
) -> None:
    rid = index.enrol(**ZHANG).resident.resident_id
    reopened = ResidentIndex(engine, Protector({"2026a": keys["2026a"]}, "2026a", keys["index"]))
    assert reopened.lookup("id_number", ZHANG["id_number"]).resident_id == rid  # type: ignore[union-attr]
    assert reopened.get(rid).name == "张秀英"


def test_other_index_key_finds_nothing(
    index: ResidentIndex, engine: Engine, keys: dict[str, bytes]
) -> None:
    index.enrol(**ZHANG)
    import os

    wrong = ResidentIndex(engine, Protector({"2026a": keys["2026a"]}, "2026a", os.urandom(32)))
    assert wrong.lookup("id_number", ZHANG["id_number"]) is None


def test_concurrent_enrolments_of_one_person_make_one_resident(
    engine: Engine, keys: dict[str, bytes]
) -> None:
    import threading

    ResidentIndex(engine, Protector({"2026a": keys["2026a"]}, "2026a", keys["index"]))
    barrier = threading.Barrier(4)
    results: list[str] = []
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        index = ResidentIndex(
            engine, Protector({"2026a": keys["2026a"]}, "2026a", keys["index"]), migrate=False
        )
        barrier.wait()
        try:
            for _ in range(5):
                e = index.enrol(**ZHANG, source=f"kiosk{n}", record_id=f"{n}")
                results.append(e.resident.resident_id)
        except BaseException as exc:  # collected and failed on below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(results) == 20
    assert len(set(results)) == 1
    assert _rows(engine, "empi_residents") == 1

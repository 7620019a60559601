"""Term-frequency adjustment: agreeing on a common name is weaker evidence than on a
rare one, and on a placeholder birth date, a household's phone or a building's address
weaker than on one person's own, learnt from the index itself and stored encrypted
with the model."""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from hcmiddleware.empi.bulk import bulk_import
from hcmiddleware.empi.chinese_names import name_key
from hcmiddleware.empi.importer import COLUMNS
from hcmiddleware.empi.index import ResidentIndex
from hcmiddleware.empi.matching import MatchModel, TermFrequencies, learn_frequencies
from hcmiddleware.empi.protection import Protector
from hcmiddleware.empi.store import MODELS
from hcmiddleware.models import Sex

# 王伟 is among the most common names in China; 欧阳婧喆 is not.
NAMES = (
    ["王伟"] * 60
    + ["张秀英"] * 25
    + ["欧阳婧喆"]
    + [f"李{chr(0x4E00 + i)}{chr(0x4E80 + i)}" for i in range(1000)]
)


def test_learnt_counts_keep_only_repeated_values() -> None:
    table = TermFrequencies.learn([*NAMES, None, " "])
    assert table is not None
    assert table.total == len(NAMES)
    assert table.counts == {"王伟": 60, "张秀英": 25}  # the rest: once each, not stored
    assert table.frequency("王伟") == 60 / len(NAMES)
    assert table.frequency("欧阳婧喆") == table.frequency("never seen") == 1 / len(NAMES)
    assert "王伟" not in repr(table)
    assert TermFrequencies.from_json(table.to_json()) == table
    # Too few values say too little: no table.
    assert TermFrequencies.learn(NAMES[: TermFrequencies.MINIMUM - 1]) is None


def test_agreeing_on_a_common_name_weighs_less_than_on_a_rare_one() -> None:
    table = TermFrequencies.learn(NAMES)
    assert table is not None
    plain = MatchModel()
    model = MatchModel(frequencies={"name": table})
    born = {"sex": 1, "birth_date": dt.date(1980, 5, 1), "phone": "13800138000"}
    common = {"name": "王伟", **born}
    rare = {"name": "欧阳婧喆", **born}
    u_same = plain.u[0][-1]
    # Exactly log2(u / frequency) bits on top of the plain weight, either way.
    assert model.score(common, common).weight - plain.score(common, common).weight == (
        pytest.approx(math.log2(u_same / (60 / len(NAMES))))
    )
    assert model.score(rare, rare).weight - plain.score(rare, rare).weight == pytest.approx(
        math.log2(u_same / (1 / len(NAMES)))
    )
    assert model.score(common, common).weight < plain.score(common, common).weight
    assert model.score(rare, rare).weight > plain.score(rare, rare).weight
    # Traditional characters agree at the top level too, and count as the same name.
    assert model.score({**common, "name": "王偉"}, common).weight == pytest.approx(
        model.score(common, common).weight
    )
    # A name that only sounds the same is not adjusted (the level is not "same").
    homophone = model.score({**common, "name": "王威"}, common)
    assert homophone.weight == pytest.approx(plain.score({**common, "name": "王威"}, common).weight)
    # The vectorised weights take the same adjustment.
    levels = model.levels(common, common)
    adjusted = model.weights_matrix(
        np.array([levels]),
        np.array([model.tf_adjustment(common, levels)]),
    )
    assert adjusted[0] == pytest.approx(model.score(common, common).weight)


def test_namesakes_with_a_common_name_fall_below_review(
    engine: Engine, protector: Protector
) -> None:
    index = ResidentIndex(engine, protector)
    assert index.learn_name_frequencies(NAMES) == len(NAMES)
    born = dt.date(1980, 5, 1)
    for name in ("王伟", "欧阳婧喆"):
        index.enrol(name=name, sex=Sex.MALE, birth_date=born, phone="13800138000")
    # Another man of the same name born the same day, nothing else shared.
    found = {
        name: index.search(name=name, sex=Sex.MALE, birth_date=born, include_new=True)[0]
        for name in ("王伟", "欧阳婧喆")
    }
    assert found["王伟"].probability < found["欧阳婧喆"].probability
    assert found["王伟"].decision == "new"  # a namesake, not worth a clerk's time
    assert found["欧阳婧喆"].decision != "new"  # that name and birthday: look at it


def test_frequencies_are_stored_encrypted_and_reloaded(
    engine: Engine, protector: Protector
) -> None:
    index = ResidentIndex(engine, protector)
    assert index.learn_name_frequencies(NAMES[:10]) == 0  # too few: nothing learnt
    assert index.model.frequencies == {}
    index.learn_name_frequencies(NAMES)
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT params, frequencies_ct FROM empi_match_models")).all()
    for params, ciphertext in stored:
        for text in (params, ciphertext or b""):
            data = text.encode() if isinstance(text, str) else bytes(text)
            assert "王伟".encode() not in data
            assert "王伟".encode("gbk") not in data
    again = ResidentIndex(engine, protector)
    assert again.model.frequencies == index.model.frequencies
    assert again.model.frequencies["name"].counts["王伟"] == 60


def test_training_learns_the_frequencies_from_the_index(
    engine: Engine, protector: Protector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(TermFrequencies, "MINIMUM", 100)  # a small index, a fast test
    names = [*NAMES[:85], *NAMES[-150:]]
    index = ResidentIndex(engine, protector)
    start = dt.date(1950, 1, 1)
    prepared = [
        index.prepare(
            name=name,
            sex=Sex.MALE,
            birth_date=start + dt.timedelta(days=i % 300),
            phone=f"139{i:08d}",
        )
        for i, name in enumerate(names)
    ]
    index.enrol_batch(prepared)
    assert index.train_model() > 0
    table = index.model.frequencies["name"]
    assert table.total == len(names)
    assert table.counts["王伟"] == 60
    assert ResidentIndex(engine, protector).model.frequencies == index.model.frequencies


# --- birth date, phone, address: relative to the typical holder, per person ------------


def _people(count: int) -> list[str]:
    """``count`` names that all sound different (the sound tells people apart)."""
    names: dict[str, str] = {}
    for first in range(0x4E00, 0x4E00 + 400):
        for second in range(0x5000, 0x5000 + 400, 7):
            name = chr(first) + chr(second)
            names.setdefault(name_key(name), name)
            if len(names) == count:
                return list(names.values())
    raise AssertionError("not enough names")


# 1,200 people with names of their own, one record each.
PEOPLE = _people(1200)


def _town(**overrides: list[object]) -> list[dict[str, object]]:
    """One record per person: a birth date, phone and address of their own, unless
    ``overrides`` gives a field's values for the first people."""
    records: list[dict[str, object]] = [
        {
            "name": name,
            "birth_date": dt.date(1950, 1, 2) + dt.timedelta(days=i),
            "phone": f"139{i:08d}",
            "address": f"北京市东城区和平街{i}号",
        }
        for i, name in enumerate(PEOPLE)
    ]
    for field, values in overrides.items():
        for record, value in zip(records, values, strict=False):
            record[field] = value
    return records


def test_a_placeholder_birth_date_weighs_less_an_ordinary_one_keeps_its_weight() -> None:
    placeholder = dt.date(1980, 1, 1)
    second = dt.date(1950, 1, 2) + dt.timedelta(days=1)
    tables = learn_frequencies(_town(birth_date=[placeholder] * 64 + [second] * 3))
    table = tables["birth_date"]
    assert table.count("1980-01-01") == 64
    assert table.typical == 1  # most people's birth date is theirs alone here
    plain = MatchModel()
    model = MatchModel(frequencies={"birth_date": table})
    common = {"name": "王伟", "sex": 1, "birth_date": placeholder}
    own = {**common, "birth_date": dt.date(1950, 1, 2) + dt.timedelta(days=500)}
    # 64 people on the placeholder, where chance gives up to 1 + 2·√1: log2(3/64) bits.
    assert model.score(common, common).weight - plain.score(common, common).weight == (
        pytest.approx(math.log2(3 / 64))
    )
    # A date two or three people happen to share costs nothing.
    assert table.count(second.isoformat()) == 3
    shared = {**common, "birth_date": second}
    assert model.score(shared, shared).weight == pytest.approx(plain.score(shared, shared).weight)
    # A date held by one person is not made stronger: the model's weight stands.
    birth = next(j for j, c in enumerate(model.comparisons) if c.field == "birth_date")
    levels = model.levels(own, own)
    assert levels[birth] == 3
    assert model.tf_adjustment(own, levels) == 0.0
    # A date that merely differs in one part is not adjusted (the level is not "same").
    near = {**common, "birth_date": dt.date(1980, 1, 2)}
    assert model.score(near, common).weight == pytest.approx(plain.score(near, common).weight)


def test_a_household_phone_weighs_less_than_one_persons_own() -> None:
    # Four people of one household share the mother's phone; another person's three
    # records (once in traditional characters) share theirs.
    records = _town(phone=["13812345678"] * 4)
    records[10]["name"] = "欧阳婧喆"
    records.append({**records[10]})
    records.append({**records[10], "name": "歐陽婧喆"})
    tables = learn_frequencies(records)
    phones = tables["phone"]
    assert phones.count("13812345678") == 4  # four different people
    assert phones.count("13900000010") == 1  # one person, three records
    assert phones.typical == 1
    model = MatchModel(frequencies={"phone": phones})
    plain = MatchModel()
    household = {"phone": "13812345678"}
    own = {"phone": "13900000010"}
    for record, bits in ((household, -2.0), (own, 0.0)):
        assert model.score(record, record).weight - plain.score(record, record).weight == (
            pytest.approx(bits)
        )
    # One digit apart is a typo, not the household's number: not adjusted.
    typo = {"phone": "13812345679"}
    assert model.score(typo, household).weight == pytest.approx(plain.score(typo, household).weight)


def test_an_address_is_counted_as_the_top_level_compares_it() -> None:
    # A building's flats are different addresses; one flat's household (three people,
    # once written in traditional characters) is one address.
    flat = "北京市东城区和平街1号3栋2单元301"
    records = _town(address=[flat, flat, flat.replace("东", "東")])
    table = learn_frequencies(records)["address"]
    assert table.count(flat) == 3
    model = MatchModel(frequencies={"address": table})
    plain = MatchModel()
    a, b = {"address": flat.replace("东", "東")}, {"address": flat}
    assert model.score(a, b).weight - plain.score(a, b).weight == pytest.approx(math.log2(1 / 3))


def test_the_reference_is_the_typical_holders_count() -> None:
    # Every address and birth date held by three people (a big index): agreeing on one
    # is ordinary, and only a value held by more weighs less.
    days = [dt.date(1960, 1, 1) + dt.timedelta(days=i // 3) for i in range(1200)]
    days[:12] = [dt.date(1970, 7, 1)] * 12
    flats = [f"北京市东城区和平街{i // 3}号" for i in range(1200)]
    flats[:12] = ["北京市东城区和平街1000号"] * 12
    tables = learn_frequencies(_town(birth_date=days, address=flats))
    assert tables["address"].typical == tables["birth_date"].typical == 3
    model = MatchModel(frequencies=tables)
    fields = [c.field for c in model.comparisons]

    def bits(field: str, value: object) -> float:
        levels = [-1] * len(fields)
        levels[fields.index(field)] = model.comparisons[fields.index(field)].levels - 1
        return model.tf_adjustment({field: value}, levels)

    assert bits("address", flats[600]) == bits("birth_date", days[600]) == 0.0
    assert bits("address", flats[0]) == pytest.approx(math.log2(3 / 12))
    # A birth date: beyond what chance gives, 3 + 2·√3.
    assert bits("birth_date", days[0]) == pytest.approx(math.log2((3 + 2 * math.sqrt(3)) / 12))


def test_too_few_values_learn_no_table() -> None:
    records = _town()[: TermFrequencies.MINIMUM - 1]
    assert learn_frequencies(records) == {}
    # Enough names but too few phones: a name table only.
    few_phones = [{**r, "phone": None} for r in _town()]
    for record in few_phones[:10]:
        record["phone"] = "13800000000"
    assert set(learn_frequencies(few_phones)) == {"name", "birth_date", "address"}
    assert set(learn_frequencies(_town(), fields=["phone"])) == {"phone"}


def test_the_tables_keep_personal_data_out_of_reprs_and_json_round_trips() -> None:
    tables = learn_frequencies(_town(phone=["13812345678"] * 4))
    for table in tables.values():
        assert TermFrequencies.from_json(table.to_json()) == table
        assert "13812345678" not in repr(table)
    assert "13812345678" not in repr(MatchModel(frequencies=tables))


def test_all_tables_are_stored_encrypted_learnt_again_field_by_field(
    engine: Engine, protector: Protector, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = ResidentIndex(engine, protector)
    learnt = index.learn_frequencies(_town(phone=["13812345678"] * 4))
    assert learnt == dict.fromkeys(("name", "birth_date", "phone", "address"), 1200)
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT params, frequencies_ct FROM empi_match_models")).all()
    for params, ciphertext in stored:
        for text in (params, ciphertext or b""):
            data = text.encode() if isinstance(text, str) else bytes(text)
            for value in ("13812345678", "和平街", "1950-01-02"):
                assert value.encode() not in data
    again = ResidentIndex(engine, protector)
    assert again.model.frequencies == index.model.frequencies
    # Learning names alone (the old call) replaces the name table, keeps the others.
    before = dict(index.model.frequencies)
    assert index.learn_name_frequencies(NAMES) == len(NAMES)
    assert index.model.frequencies["name"].counts["王伟"] == 60
    for field in ("birth_date", "phone", "address"):
        assert index.model.frequencies[field] == before[field]
    # Too few values: nothing learnt, nothing stored.
    rows = len(stored)
    assert index.learn_frequencies(_town()[:10]) == {}
    with engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(MODELS)) == rows + 1


def _store_old_model(index: ResidentIndex, engine: Engine, names: list[str]) -> None:
    """A model row as an index stored it before birth dates, phones and addresses were
    adjusted: a name table alone, without the ``typical`` count."""
    counts = {"王伟": names.count("王伟"), "张秀英": names.count("张秀英")}
    old = json.dumps({"name": json.dumps({"total": len(names), "counts": counts})})
    with engine.begin() as conn:
        model_id = conn.execute(
            sa.insert(MODELS).values(
                params=MatchModel().to_json(), pairs=0, trained_at=dt.datetime(2026, 1, 1)
            )
        ).inserted_primary_key[0]  # type: ignore[index]
        conn.execute(
            sa.update(MODELS)
            .where(MODELS.c.id == model_id)
            .values(
                frequencies_ct=index._codec.seal(
                    "empi_residents", "frequencies_ct", f"model:{model_id}", old.encode()
                )
            )
        )


def test_an_older_model_row_with_names_only_loads_and_adjusts_names(
    engine: Engine, protector: Protector
) -> None:
    _store_old_model(ResidentIndex(engine, protector), engine, NAMES)
    index = ResidentIndex(engine, protector)
    assert set(index.model.frequencies) == {"name"}
    table = index.model.frequencies["name"]
    assert (table.total, table.counts["王伟"], table.typical) == (len(NAMES), 60, 1.0)
    plain = MatchModel()
    same = {"name": "王伟", "sex": 1, "birth_date": dt.date(1980, 1, 1), "phone": "13800138000"}
    # The name is adjusted as before; the other fields, without a table, are not.
    assert index.model.score(same, same).weight - plain.score(same, same).weight == (
        pytest.approx(math.log2(plain.u[0][-1] / (60 / len(NAMES))))
    )
    born = dt.date(1980, 5, 1)
    index.enrol(name="王伟", sex=Sex.MALE, birth_date=born, phone="13800138000")
    found = index.search(name="王伟", sex=Sex.MALE, birth_date=born, include_new=True)
    assert found[0].decision == "new"


def test_a_bulk_load_learns_only_the_tables_the_index_lacks(
    engine: Engine, protector: Protector, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(TermFrequencies, "MINIMUM", 100)
    _store_old_model(ResidentIndex(engine, protector), engine, NAMES)
    index = ResidentIndex(engine, protector)
    names_before = index.model.frequencies["name"]
    path = tmp_path / "town.csv"
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=COLUMNS)
        writer.writeheader()
        for i, record in enumerate(_town(phone=["138-1234-5678"] * 4)[:300]):
            born = record["birth_date"]
            assert isinstance(born, dt.date)
            writer.writerow(
                {c: "" for c in COLUMNS}
                | {
                    "record_id": str(i),
                    "name": record["name"],
                    "sex": "1",
                    "birth_date": f"{born:%Y%m%d}" if i else "不详",
                    "phone": record["phone"],
                    "address": record["address"],
                }
            )
    report = bulk_import(index, path, workers=0)
    assert report.created == 300
    tables = index.model.frequencies
    assert tables["name"] == names_before  # kept: the index had it
    assert tables["phone"].count("13812345678") == 4  # normalised as the import does
    assert tables["birth_date"].total == 299  # the placeholder row says nothing
    assert ResidentIndex(engine, protector).model.frequencies == tables


def test_training_learns_every_table_from_the_residents(
    engine: Engine, protector: Protector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(TermFrequencies, "MINIMUM", 100)
    index = ResidentIndex(engine, protector)
    records = _town(phone=["13812345678"] * 4)[:200]
    index.enrol_batch(
        [
            index.prepare(
                name=str(r["name"]),
                sex=Sex.MALE,
                birth_date=r["birth_date"],  # type: ignore[arg-type]
                phone=str(r["phone"]),
                address=str(r["address"]),
            )
            for r in records
        ]
    )
    assert index.train_model() > 0
    tables = index.model.frequencies
    assert set(tables) == {"name", "birth_date", "phone", "address"}
    assert tables["phone"].count("13812345678") == 4
    assert tables["phone"].total == 200

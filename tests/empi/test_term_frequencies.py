"""Term-frequency adjustment: agreeing on a common name is weaker evidence than on a
rare one, learnt from the index itself and stored encrypted with the model."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from hcmiddleware.empi.index import ResidentIndex
from hcmiddleware.empi.matching import MatchModel, TermFrequencies
from hcmiddleware.empi.protection import Protector
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

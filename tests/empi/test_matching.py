"""Comparisons, Chinese names, blocking keys, and the Fellegi–Sunter model with EM."""

from __future__ import annotations

import datetime as dt
import random

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from hcmiddleware.empi.blocking import blocking_keys, probe_keys
from hcmiddleware.empi.chinese_names import name_key, readings, to_simplified
from hcmiddleware.empi.matching import (
    COMPARISONS,
    Decision,
    MatchModel,
    Thresholds,
    compare_address,
    compare_code,
    compare_date,
    compare_id_number,
    compare_name,
    compare_sex,
)


@pytest.mark.parametrize(
    ("a", "b", "level"),
    [
        ("张秀英", "張秀英", 4),  # traditional
        ("王 芳", "王芳", 4),  # stray space
        ("王芳", "王方", 3),  # homophone typed through pinyin
        ("曾小贤", "增小贤", 3),  # polyphone: 曾 zeng/ceng
        ("刘晓明", "牛晓明", 2),  # n/l folded
        ("张三", "赞三", 2),  # zh/z folded, -ang/-an folded
        ("李秀英", "李英秀", 1),  # given-name characters swapped
        ("王芳", "李娜", 0),
        ("", "王芳", -1),
        (None, "王芳", -1),
        ("MICHAEL", "MICHEAL", 1),
        ("Michael", "MICHAEL", 4),
    ],
)
def test_compare_name(a: str | None, b: str | None, level: int) -> None:
    assert compare_name(a, b) == level


@given(st.text(alphabet="王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗芳娜秀英", min_size=1, max_size=4))
def test_name_comparison_is_symmetric_and_reflexive(name: str) -> None:
    assert compare_name(name, name) == 4
    other = name[::-1]
    assert compare_name(name, other) == compare_name(other, name)


def test_readings_include_every_reading_and_the_surname_one() -> None:
    assert {"zeng1", "ceng2"} <= readings("曾")[0]
    assert name_key("曾小贤") == name_key("增小贤")
    assert name_key("單雄信") == name_key("单雄信")
    assert name_key("单雄信").startswith("san")  # 单 as a surname is shan, folded to san
    assert to_simplified("ＬＩ　ｌｅｉ") == "LI LEI"


@pytest.mark.parametrize(
    ("a", "b", "level"),
    [
        (dt.date(1990, 5, 1), dt.date(1990, 5, 1), 3),
        (dt.date(1990, 5, 1), dt.date(1990, 1, 5), 2),
        (dt.date(1990, 5, 1), dt.date(1990, 5, 2), 1),
        (dt.date(1990, 5, 1), dt.date(1991, 5, 1), 1),
        (dt.date(1990, 5, 1), dt.date(1985, 3, 9), 0),
        (None, dt.date(1985, 3, 9), -1),
    ],
)
def test_compare_date(a: dt.date | None, b: dt.date | None, level: int) -> None:
    assert compare_date(a, b) == level


@pytest.mark.parametrize(
    ("a", "b", "level"),
    [
        ("11010519491231002X", "11010519491231002X", 2),
        ("11010519491231002X", "11010519491231020X", 1),  # two digits swapped
        ("11010519491231002X", "11010519491231003X", 1),  # a neighbouring key
        ("11010519491231002X", "44052418800101001X", 0),
        # A child under the parent's number is another person, not a typo of it.
        ("11010519491231002X", "11010519491231002Xn", 0),
        ("11010519491231002Xn", "11010519491231002Xz", 0),  # twins, a girl and a boy
        ("11010519491231002Xn", "11010519491231002Xn2", 0),  # twin girls
        ("11010519491231002Xn", "11010519491231002Xn", 2),
        (None, "11010519491231002X", -1),
    ],
)
def test_compare_id_number(a: str | None, b: str | None, level: int) -> None:
    assert compare_id_number(a, b) == level


def test_compare_codes_addresses_sex() -> None:
    assert compare_code("13800138000", "13800138000") == 2
    assert compare_code("13800138000", "13800183000") == 1  # swapped digits
    assert compare_code("13800138000", "13900000000") == 0
    assert compare_address("北京市朝阳区建国路1号", "北京市朝阳区建國路1號") == 3
    assert compare_address("北京市朝阳区建国路1号", "北京市朝阳区建国路11号") == 2
    assert compare_address("北京市朝阳区建国路1号", "上海市浦东新区") == 0
    assert compare_sex(1, 1) == 1
    assert compare_sex(1, 2) == 0
    assert compare_sex(0, 2) == -1


def test_blocking_keys_survive_single_errors() -> None:
    base = {"name": "张秀英", "birth_date": dt.date(1949, 12, 3), "phone": "13800138000"}
    variants = [
        {**base, "name": "張秀英"},
        {**base, "name": "章秀英"},
        {**base, "birth_date": dt.date(1949, 3, 12)},
        {**base, "birth_date": dt.date(1950, 12, 3)},
        {**base, "phone": None},
        {**base, "name": "张英秀", "birth_date": dt.date(1949, 12, 4)},
    ]
    for variant in variants:
        assert blocking_keys(base) & blocking_keys(variant), variant
    assert not blocking_keys(base) & blocking_keys(
        {"name": "李娜", "birth_date": dt.date(1980, 1, 1), "phone": "13900000000"}
    )
    # A record stored without a birth date is found by its name's sound alone; the
    # name-only key is not stored for records that have a date, so its block stays small.
    undated = {"name": "張秀英", "birth_date": None, "phone": None}
    assert probe_keys(base) & blocking_keys(undated)
    assert not any(k.startswith("nm:") for k in blocking_keys(base))


def test_thresholds_must_be_ordered() -> None:
    with pytest.raises(ValidationError):
        Thresholds(link=0.5, review=0.9)


def test_untrained_model_decisions() -> None:
    model = MatchModel()
    base = {"name": "张秀英", "sex": 2, "birth_date": dt.date(1949, 12, 31)}
    same = model.score(base, {**base, "phone": "1", "address": "x"})
    assert same.decision in (Decision.REVIEW, Decision.LINK)
    full = model.score({**base, "phone": "13800138000"}, {**base, "phone": "13800138000"})
    assert full.decision == Decision.LINK
    assert "phone: same" in full.agreements
    other = model.score(base, {"name": "李娜", "sex": 2, "birth_date": dt.date(1980, 1, 1)})
    assert other.decision == Decision.NEW
    assert other.agreements == ("sex: same",)


def _synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    # Comparison vectors drawn from known m and u: EM must find them again.
    rng = np.random.default_rng(seed)
    truth = rng.random(n) < 0.2
    cols = []
    for comp in COMPARISONS:
        m = np.asarray(comp.m)
        u = np.asarray(comp.u)
        col = np.where(
            truth,
            rng.choice(len(m), size=n, p=m / m.sum()),
            rng.choice(len(u), size=n, p=u / u.sum()),
        )
        cols.append(col)
    return np.stack(cols, axis=1).astype(np.int16), truth


def test_em_recovers_the_parameters_it_was_given() -> None:
    gammas, truth = _synthetic(20000, seed=3)
    model = MatchModel()
    model.m = [np.full(c.levels, 1 / c.levels) + np.arange(c.levels) * 0.1 for c in COMPARISONS]
    model.m = [m / m.sum() for m in model.m]
    iterations = model.train(gammas)
    assert iterations > 1
    assert model.prior == pytest.approx(0.2, abs=0.01)
    name_m = model.m[0]
    assert name_m[-1] == pytest.approx(0.88, abs=0.02)
    probability = 1 / (1 + 2 ** (-model.weights_matrix(gammas)))
    predicted = probability >= 0.5
    accuracy = (predicted == truth).mean()
    assert accuracy > 0.99


def test_missing_values_are_ignored_in_training_and_scoring() -> None:
    gammas, _ = _synthetic(5000, seed=5)
    gammas[random.Random(1).sample(range(5000), 2000), 3] = -1  # phone missing in 40 %
    model = MatchModel()
    model.train(gammas)
    assert np.isfinite(model.weights_matrix(gammas)).all()
    restored = MatchModel.from_json(model.to_json())
    assert np.allclose(restored.weights_matrix(gammas), model.weights_matrix(gammas))
    with pytest.raises(ValueError):
        MatchModel.from_json(model.to_json(), comparisons=COMPARISONS[:2])
    assert model.train(np.zeros((0, len(COMPARISONS)), dtype=np.int16)) == 0

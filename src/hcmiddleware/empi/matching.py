"""Demographic matching: field comparisons with levels, Fellegi–Sunter weights, EM training.

Each comparison turns a pair of values into a *level* (0 = disagree, higher = closer,
``-1`` = a value is missing and the field says nothing). The Fellegi–Sunter model keeps,
per field and level, ``m`` = P(level | same person) and ``u`` = P(level | different
people); a pair's match weight is ``log2(λ/(1-λ)) + Σ log2(m/u)``. The parameters are
learnt without labels by expectation–maximisation over blocked pairs (:meth:`MatchModel.train`),
so a site trains on its own population. The three outcomes — link, review, new — come
from thresholds on the resulting probability (:class:`Thresholds`, set in config).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from rapidfuzz.distance import DamerauLevenshtein, JaroWinkler
from rapidfuzz.fuzz import ratio

from hcmiddleware.empi.chinese_names import (
    fuzzy_syllable,
    is_chinese,
    name_key,
    readings,
    to_simplified,
)

__all__ = [
    "COMPARISONS",
    "Comparison",
    "Decision",
    "MatchModel",
    "Score",
    "TermFrequencies",
    "Thresholds",
    "compare_address",
    "compare_code",
    "compare_date",
    "compare_id_number",
    "compare_name",
    "compare_sex",
    "compare_string",
    "learn_frequencies",
]

MISSING = -1


# --- comparisons -----------------------------------------------------------------------


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def compare_name(a: str | None, b: str | None) -> int:
    """4 same characters · 3 same pronunciation (homophone, polyphone) · 2 same folded
    pinyin (z/zh, n/l, -n/-ng) · 1 close (Jaro–Winkler ≥ 0.88 on pinyin, or given-name
    characters swapped) · 0 different. Latin-script names: 4 equal · 1 close · 0.
    """
    if _blank(a) or _blank(b):
        return MISSING
    assert a is not None
    assert b is not None
    sa, sb = to_simplified(a), to_simplified(b)
    if sa == sb:
        return 4
    if not (is_chinese(sa) and is_chinese(sb)):
        return 1 if JaroWinkler.similarity(sa, sb) >= 0.88 else 0
    ra, rb = readings(sa), readings(sb)
    if len(ra) == len(rb):
        if all(x & y for x, y in zip(ra, rb, strict=True)):
            return 3
        fa = [{fuzzy_syllable(r) for r in x} for x in ra]
        fb = [{fuzzy_syllable(r) for r in x} for x in rb]
        if all(x & y for x, y in zip(fa, fb, strict=True)):
            return 2
        if len(sa) >= 3 and sa[0] == sb[0] and sorted(sa[1:]) == sorted(sb[1:]):
            return 1
    pa = " ".join(fuzzy_syllable(sorted(x)[0]) for x in ra)
    pb = " ".join(fuzzy_syllable(sorted(x)[0]) for x in rb)
    if JaroWinkler.similarity(pa, pb) >= 0.88 or DamerauLevenshtein.distance(sa, sb) <= 1:
        return 1
    return 0


def compare_string(a: str | None, b: str | None) -> int:
    """Generic text (e.g. a Latin given name): 3 equal · 2 JW ≥ 0.94 · 1 JW ≥ 0.88 · 0."""
    if _blank(a) or _blank(b):
        return MISSING
    assert a is not None
    assert b is not None
    if a == b:
        return 3
    sim = JaroWinkler.similarity(a, b)
    return 2 if sim >= 0.94 else 1 if sim >= 0.88 else 0


def compare_date(a: dt.date | None, b: dt.date | None) -> int:
    """3 same day · 2 day and month transposed · 1 one part differs (or year by one digit) · 0."""
    if a is None or b is None:
        return MISSING
    if a == b:
        return 3
    if (a.year, a.month, a.day) == (b.year, b.day, b.month):
        return 2
    same = (a.year == b.year) + (a.month == b.month) + (a.day == b.day)
    if same == 2:
        return 1
    if a.month == b.month and a.day == b.day:
        return 1
    return 0


def compare_code(a: str | None, b: str | None) -> int:
    """Phone, ID number, postcode: 2 equal · 1 one edit or swap apart · 0 different."""
    if _blank(a) or _blank(b):
        return MISSING
    assert a is not None
    assert b is not None
    if a == b:
        return 2
    return 1 if DamerauLevenshtein.distance(a, b) <= 1 else 0


_STAND_IN = re.compile(r"(?P<parent>[\dX]{18})[nzNZ]\d?")


def compare_id_number(a: str | None, b: str | None) -> int:
    """ID numbers: 2 equal · 1 one edit or swap apart · 0 different.

    A child's stand-in number (a parent's number + ``n``/``z``) is one or two
    characters from that parent's number, and from a twin's: that is no typo but another
    person, so it counts as different.
    """
    if _blank(a) or _blank(b):
        return MISSING
    assert a is not None
    assert b is not None
    if a == b:
        return 2
    if _STAND_IN.fullmatch(a) or _STAND_IN.fullmatch(b):
        return 0
    return 1 if DamerauLevenshtein.distance(a, b) <= 1 else 0


def compare_address(a: str | None, b: str | None) -> int:
    """3 equal · 2 similarity ≥ 0.9 · 1 similarity ≥ 0.7 · 0 (after NFKC and t2s)."""
    if _blank(a) or _blank(b):
        return MISSING
    assert a is not None
    assert b is not None
    sa, sb = to_simplified(a), to_simplified(b)
    if sa == sb:
        return 3
    sim = ratio(sa, sb) / 100
    return 2 if sim >= 0.9 else 1 if sim >= 0.7 else 0


def compare_sex(a: int | None, b: int | None) -> int:
    """1 same · 0 different; unknown (0) and unspecified (9) count as missing."""
    if a in (None, 0, 9) or b in (None, 0, 9):
        return MISSING
    return 1 if a == b else 0


def _date_key(value: Any) -> str:
    """A birth date's term-frequency key: ISO form (a date or its ISO text)."""
    return value.isoformat() if isinstance(value, dt.date) else str(value)


@dataclass(frozen=True, slots=True)
class Comparison:
    """A field of the record, how to compare it, its number of levels and their labels."""

    field: str
    compare: Callable[[Any, Any], int]
    labels: tuple[str, ...]
    m: tuple[float, ...] | None = None
    u: tuple[float, ...] | None = None
    #: The value's key for term frequencies (see :class:`TermFrequencies`): what the
    #: top level compares equal. ``None``: the field has no term-frequency adjustment.
    tf_key: Callable[[Any], str] | None = None
    #: How the adjustment reads the table. ``False`` (the name): as Splink does,
    #: ``log2(u / frequency)``, either way. ``True`` (birth date, phone, address): only
    #: a value held by more people than the typical holder's weighs less,
    #: ``log2(typical count / count)`` (never more), each value counted once per person
    #: holding it — see :meth:`MatchModel.tf_adjustment`.
    tf_relative: bool = False
    #: Strangers share the field's values by chance too (a birth date, unlike a phone):
    #: only a count beyond ``typical + 2·√typical`` weighs less, so that a date a few
    #: more people happen to hold than the typical one costs nothing.
    tf_by_chance: bool = False

    @property
    def levels(self) -> int:
        """How many levels the comparison can return (0 … levels-1)."""
        return len(self.labels)


#: The comparisons the resident index uses on its demographics. The ``m``/``u`` values
#: are the starting point before the index is trained on its own data: ``u`` from the
#: chance that two different people agree (a common name, 1 in ~25,000 birth dates),
#: ``m`` from typical entry-error and change rates (phones and addresses change).
COMPARISONS: tuple[Comparison, ...] = (
    Comparison(
        "name",
        compare_name,
        ("different", "close", "folded pinyin", "same sound", "same"),
        m=(0.02, 0.03, 0.02, 0.05, 0.88),
        u=(0.985, 0.01, 0.0025, 0.0005, 0.002),
        tf_key=to_simplified,
    ),
    Comparison("sex", compare_sex, ("different", "same"), m=(0.02, 0.98), u=(0.5, 0.5)),
    Comparison(
        "birth_date",
        compare_date,
        ("different", "one part", "day/month swapped", "same"),
        m=(0.02, 0.05, 0.01, 0.92),
        u=(0.9949, 0.005, 0.00005, 0.00005),
        tf_key=_date_key,
        tf_relative=True,
        tf_by_chance=True,
    ),
    Comparison(
        "phone",
        compare_code,
        ("different", "one digit", "same"),
        m=(0.15, 0.03, 0.82),
        u=(0.99998, 0.00001, 0.00001),
        tf_key=str,
        tf_relative=True,
    ),
    Comparison(
        "address",
        compare_address,
        ("different", "similar", "very similar", "same"),
        m=(0.2, 0.15, 0.15, 0.5),
        u=(0.97, 0.025, 0.004, 0.001),
        tf_key=to_simplified,
        tf_relative=True,
    ),
    Comparison(
        "id_number",
        compare_id_number,
        ("different", "one character", "same"),
        m=(0.01, 0.04, 0.95),
        u=(0.999998, 0.000001, 0.000001),
    ),
)


# --- term frequencies ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TermFrequencies:
    """How often each value of a field occurs, for the term-frequency adjustment.

    Two people agreeing on 王伟 is weak evidence (many people are called so); on
    欧阳婧喆 strong. ``u`` of a field's top level is the chance that two different
    people agree on *some* value; the adjustment replaces it by the frequency of the
    value they agree on, adding ``log2(u / frequency)`` bits to the top level's weight
    (as Splink does). ``counts`` keeps only values seen more than once; any other value
    counts once. Learnt from the index itself (:meth:`learn`); a sample smaller than
    :attr:`MINIMUM` says too little and gives no adjustment.

    ``typical`` is the count of the value a typical holder holds (the median over the
    counted values' holders): the reference of the fields whose adjustment is relative
    (see :attr:`Comparison.tf_relative`) — a birth date is shared by more people in a
    bigger index, a phone is not, and only a value held by more people than that
    weighs less.
    """

    counts: Mapping[str, int]
    total: int
    typical: float = 1.0

    #: The fewest values a table is learnt from.
    MINIMUM = 1000

    @classmethod
    def learn(
        cls, values: Iterable[Any], key: Callable[[Any], str] = str
    ) -> TermFrequencies | None:
        """Count ``values`` (by ``key``); ``None`` when fewer than :attr:`MINIMUM` are given.
        (:func:`learn_frequencies` learns the tables of a model's fields from records.)"""
        return cls.from_counts(Counter(key(v) for v in values if not _blank(v)))

    @classmethod
    def from_counts(cls, counts: Mapping[str, int]) -> TermFrequencies | None:
        """The table of these counts (by key); ``None`` below :attr:`MINIMUM` values."""
        total = sum(counts.values())
        if total < cls.MINIMUM:
            return None
        # The median over holders: half of all holders hold a value at most this common.
        typical, seen = 1, 0
        for n in sorted(counts.values()):
            seen += n
            if 2 * seen >= total:
                typical = n
                break
        return cls({k: n for k, n in counts.items() if n > 1}, total, float(typical))

    def count(self, key: str) -> int:
        """How many times ``key`` was counted (at least once)."""
        return max(self.counts.get(key, 1), 1)

    def frequency(self, key: str) -> float:
        """The share of values equal to ``key`` (at least one occurrence)."""
        return self.count(key) / self.total

    def to_json(self) -> str:
        """As JSON (the values are personal data: store it encrypted)."""
        return json.dumps(
            {"total": self.total, "typical": self.typical, "counts": self.counts},
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str) -> TermFrequencies:
        """Read what :meth:`to_json` wrote (a table stored before ``typical`` was: 1)."""
        data = json.loads(text)
        return cls(
            {str(k): int(v) for k, v in data["counts"].items()},
            int(data["total"]),
            float(data.get("typical", 1.0)),
        )

    def __repr__(self) -> str:  # the values are personal data: never in a repr or a log
        return f"TermFrequencies({len(self.counts)} repeated values of {self.total})"


def learn_frequencies(
    records: Iterable[Mapping[str, Any]],
    comparisons: Sequence[Comparison] = COMPARISONS,
    *,
    fields: Iterable[str] | None = None,
) -> dict[str, TermFrequencies]:
    """The term-frequency tables of ``records`` (dicts keyed by field), in one pass.

    One table per comparison with a ``tf_key`` (of ``fields`` only, if given) that has
    at least :attr:`TermFrequencies.MINIMUM` values. The name counts records, as Splink
    does; a relative field (:attr:`Comparison.tf_relative`) counts a value once per
    name sound holding it, so a person's duplicate records do not make a value common
    but a household's members, or the many people a placeholder was typed for, do.
    """
    wanted = None if fields is None else set(fields)
    chosen = [
        c for c in comparisons if c.tf_key is not None and (wanted is None or c.field in wanted)
    ]
    counts: dict[str, Counter[str]] = {c.field: Counter() for c in chosen}
    held: dict[str, set[tuple[str, str]]] = {c.field: set() for c in chosen if c.tf_relative}
    for number, record in enumerate(records):
        holder: str | None = None
        for comp in chosen:
            value = record.get(comp.field)
            if _blank(value):
                continue
            assert comp.tf_key is not None
            key = comp.tf_key(value)
            if not comp.tf_relative:
                counts[comp.field][key] += 1
                continue
            if holder is None:
                name = record.get("name")
                holder = name_key(name) if not _blank(name) else ""
                holder = holder or f"#{number}"  # no name: a holder of its own
            pair = (key, holder)
            if pair not in held[comp.field]:
                held[comp.field].add(pair)
                counts[comp.field][key] += 1
    tables = {f: TermFrequencies.from_counts(c) for f, c in counts.items()}
    return {f: t for f, t in tables.items() if t is not None}


# --- the model -------------------------------------------------------------------------


class Thresholds(BaseModel):
    """Probability thresholds for the three outcomes; ``link`` must exceed ``review``."""

    model_config = ConfigDict(frozen=True)

    link: float = Field(default=0.99, gt=0, lt=1)
    review: float = Field(default=0.5, gt=0, lt=1)

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if self.review >= self.link:
            raise ValueError("the review threshold must be below the link threshold")
        return self


class Decision:
    """The three outcomes of a comparison against the index."""

    LINK = "link"
    REVIEW = "review"
    NEW = "new"


@dataclass(frozen=True, slots=True)
class Score:
    """A scored pair: match weight (bits), probability, decision, and what agreed."""

    weight: float
    probability: float
    decision: str
    agreements: tuple[str, ...]
    levels: tuple[int, ...] = field(repr=False)


def _default_m(levels: int) -> np.ndarray:
    # Before training: same person mostly agrees exactly, sometimes nearly.
    m = np.full(levels, 0.02 / max(levels - 2, 1))
    m[-1] = 0.9
    m[0] = 0.03
    if levels > 2:
        m[-2] = 0.05
    return np.asarray(m / m.sum())


def _default_u(levels: int) -> np.ndarray:
    # Before training: different people mostly disagree.
    u = np.full(levels, 0.01)
    u[0] = 0.95
    u[-1] = 0.02 if levels > 2 else 0.05
    return np.asarray(u / u.sum())


class MatchModel:
    """Fellegi–Sunter parameters over a set of comparisons, with EM training."""

    _EPS = 1e-6

    def __init__(
        self,
        comparisons: Sequence[Comparison] = COMPARISONS,
        *,
        m: Sequence[Sequence[float]] | None = None,
        u: Sequence[Sequence[float]] | None = None,
        prior: float = 1e-6,
        thresholds: Thresholds | None = None,
        frequencies: Mapping[str, TermFrequencies] | None = None,
    ) -> None:
        self.comparisons = tuple(comparisons)
        #: Term frequencies by field (see :class:`TermFrequencies`); only fields whose
        #: comparison has a ``tf_key`` use them.
        self.frequencies: dict[str, TermFrequencies] = dict(frequencies or {})
        self.m = [
            np.asarray(m[i] if m else c.m or _default_m(c.levels), dtype=float)
            for i, c in enumerate(self.comparisons)
        ]
        self.u = [
            np.asarray(u[i] if u else c.u or _default_u(c.levels), dtype=float)
            for i, c in enumerate(self.comparisons)
        ]
        self.prior = prior
        self.thresholds = thresholds or Thresholds()
        self._refresh()

    def __repr__(self) -> str:
        fields = ", ".join(c.field for c in self.comparisons)
        return f"MatchModel([{fields}], prior={self.prior:.2e})"

    def _refresh(self) -> None:
        self._bits = [
            np.log2(np.clip(m, self._EPS, 1) / np.clip(u, self._EPS, 1))
            for m, u in zip(self.m, self.u, strict=True)
        ]
        self._prior_bits = math.log2(self.prior / (1 - self.prior))

    # --- scoring ----------------------------------------------------------------------

    def levels(self, a: Mapping[str, Any], b: Mapping[str, Any]) -> tuple[int, ...]:
        """The comparison vector of two records (dicts keyed by field name)."""
        return tuple(c.compare(a.get(c.field), b.get(c.field)) for c in self.comparisons)

    def tf_adjustment(self, a: Mapping[str, Any], levels: Sequence[int]) -> float:
        """Bits the term frequencies add to a pair's weight (``a``: either record).

        For each field with frequencies whose comparison reached its top level (the
        values agree): the name, ``log2(u_top / frequency of the value)`` (as Splink
        does), negative for a common value, positive for a rare one; a relative field
        (:attr:`Comparison.tf_relative`: birth date, phone, address),
        ``log2(typical count / count of the value)`` when the value is held by more
        people than the typical holder's, else nothing — a placeholder birth date, a
        household's phone and a flat's address weigh less, and an ordinary value
        keeps the model's weight whatever the size of the index. For the birth date
        (:attr:`Comparison.tf_by_chance`) the reference is ``typical + 2·√typical``:
        only an excess beyond what chance gives counts.
        """
        if not self.frequencies:
            return 0.0
        bits = 0.0
        for j, comp in enumerate(self.comparisons):
            table = self.frequencies.get(comp.field)
            if table is None or comp.tf_key is None or levels[j] != comp.levels - 1:
                continue
            key = comp.tf_key(a[comp.field])
            if comp.tf_relative:
                reference = table.typical
                if comp.tf_by_chance:
                    reference += 2 * math.sqrt(reference)
                bits += min(0.0, math.log2(reference / table.count(key)))
            else:
                u_top = float(np.clip(self.u[j][-1], self._EPS, 1))
                bits += math.log2(u_top / table.frequency(key))
        return bits

    def score_levels(self, levels: Sequence[int], adjustment: float = 0.0) -> Score:
        """Weight, probability and decision of a comparison vector (plus ``adjustment``
        bits, the term frequencies' part: see :meth:`tf_adjustment`)."""
        weight = self._prior_bits + adjustment
        agreements = []
        for comp, bits, level in zip(self.comparisons, self._bits, levels, strict=True):
            if level == MISSING:
                continue
            weight += float(bits[level])
            if level > 0:
                agreements.append(f"{comp.field}: {comp.labels[level]}")
        probability = 1 / (1 + 2 ** (-weight)) if weight > -1000 else 0.0
        if probability >= self.thresholds.link:
            decision = Decision.LINK
        elif probability >= self.thresholds.review:
            decision = Decision.REVIEW
        else:
            decision = Decision.NEW
        return Score(weight, probability, decision, tuple(agreements), tuple(levels))

    def score(self, a: Mapping[str, Any], b: Mapping[str, Any]) -> Score:
        """Score two records (with the term-frequency adjustment, if learnt)."""
        levels = self.levels(a, b)
        return self.score_levels(levels, self.tf_adjustment(a, levels))

    def weights_matrix(
        self, gammas: np.ndarray, adjustments: np.ndarray | None = None
    ) -> np.ndarray:
        """Match weights (bits) of many comparison vectors at once (rows of ``gammas``),
        plus each pair's term-frequency ``adjustments`` if given."""
        total = np.full(gammas.shape[0], self._prior_bits)
        if adjustments is not None:
            total += adjustments
        for j, bits in enumerate(self._bits):
            col = gammas[:, j]
            present = col >= 0
            total[present] += bits[col[present]]
        return total

    # --- training ---------------------------------------------------------------------

    def train(
        self,
        gammas: np.ndarray,
        *,
        max_iterations: int = 100,
        tolerance: float = 1e-6,
        fix_u: bool = False,
    ) -> int:
        """Estimate ``m``, ``u`` and the prior from unlabelled comparison vectors (EM).

        ``gammas`` is an (n_pairs × n_fields) integer array from blocked candidate pairs,
        ``-1`` where a value is missing. ``fix_u`` keeps ``u`` as set (e.g. estimated
        from random pairs, which are almost all different people). Returns the number
        of iterations run.
        """
        gammas = np.asarray(gammas, dtype=np.int16)
        n, k = gammas.shape
        if n == 0:
            return 0
        onehots = []
        for j, comp in enumerate(self.comparisons):
            col = gammas[:, j]
            onehot = np.zeros((n, comp.levels))
            present = col >= 0
            onehot[np.nonzero(present)[0], col[present]] = 1.0
            onehots.append(onehot)
        prior = min(max(self.prior, 1e-3), 0.5)
        m = [x.copy() for x in self.m]
        u = [x.copy() for x in self.u]
        iterations = 0
        while iterations < max_iterations:
            iterations += 1
            log_m = np.full(n, math.log(prior))
            log_u = np.full(n, math.log(1 - prior))
            for j in range(k):
                log_m += onehots[j] @ np.log(np.clip(m[j], self._EPS, 1))
                log_u += onehots[j] @ np.log(np.clip(u[j], self._EPS, 1))
            p = 1 / (1 + np.exp(np.clip(log_u - log_m, -700, 700)))
            new_m = []
            new_u = []
            for j in range(k):
                mj = p @ onehots[j]
                uj = (1 - p) @ onehots[j]
                new_m.append(np.clip(mj / max(mj.sum(), self._EPS), self._EPS, 1))
                new_u.append(np.clip(uj / max(uj.sum(), self._EPS), self._EPS, 1))
            new_prior = float(np.clip(p.mean(), self._EPS, 1 - self._EPS))
            change = max(
                abs(new_prior - prior),
                *(float(np.abs(a - b).max()) for a, b in zip(new_m, m, strict=True)),
            )
            m = new_m
            if not fix_u:
                u = new_u
            prior = new_prior
            if change < tolerance:
                break
        self.m, self.u, self.prior = m, u, prior
        self._refresh()
        return iterations

    # --- persistence ------------------------------------------------------------------

    def to_json(self) -> str:
        """Parameters as JSON (fields, m, u, prior), to store and reload."""
        return json.dumps(
            {
                "fields": [c.field for c in self.comparisons],
                "m": [list(map(float, x)) for x in self.m],
                "u": [list(map(float, x)) for x in self.u],
                "prior": self.prior,
            }
        )

    @classmethod
    def from_json(
        cls,
        text: str,
        comparisons: Sequence[Comparison] = COMPARISONS,
        thresholds: Thresholds | None = None,
        frequencies: Mapping[str, TermFrequencies] | None = None,
    ) -> MatchModel:
        """Reload parameters saved by :meth:`to_json` for the same comparisons (the term
        frequencies are stored apart, encrypted, and given back as ``frequencies``)."""
        data = json.loads(text)
        if data["fields"] != [c.field for c in comparisons]:
            raise ValueError("the saved model was trained on other fields")
        return cls(
            comparisons,
            m=data["m"],
            u=data["u"],
            prior=data["prior"],
            thresholds=thresholds,
            frequencies=frequencies,
        )

    def explain(self) -> list[dict[str, Any]]:
        """Per field and level: m, u and the weight in bits (for docs and operators)."""
        rows = []
        for comp, m, u, bits in zip(self.comparisons, self.m, self.u, self._bits, strict=True):
            for level, label in enumerate(comp.labels):
                rows.append(
                    {
                        "field": comp.field,
                        "level": label,
                        "m": float(m[level]),
                        "u": float(u[level]),
                        "bits": float(bits[level]),
                    }
                )
        return rows

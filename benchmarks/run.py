"""Run every benchmark in this folder (``tox -e bench``); each prints its own table.

``python benchmarks/run.py card face`` runs only ``bench_card.py`` and ``bench_face.py``.
"""

from __future__ import annotations

import runpy
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(names: list[str]) -> int:
    scripts = sorted(HERE.glob("bench_*.py"))
    if names:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in names]
    for script in scripts:
        print(f"\n=== {script.stem} ===", flush=True)
        started = time.perf_counter()
        saved, sys.argv = sys.argv, [str(script)]  # each script parses its own flags
        try:
            runpy.run_path(str(script), run_name="__main__")
        finally:
            sys.argv = saved
        print(f"({script.stem}: {time.perf_counter() - started:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

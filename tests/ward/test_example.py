"""examples/nurse_round.py runs as written and does what it prints."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "nurse_round.py"


def test_nurse_round(tmp_path: Path) -> None:
    env = {"TMPDIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    if "PYTHONPATH" in os.environ:  # a checkout run without installing it
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "check before: passed, next during" in out
    assert "done, HIS recorded" in out
    assert "scanned again: refused (AlreadyExecutedError)" in out
    assert "refused: dose — 250 mg is not 0.5 g" in out
    assert "call from bed 12: acknowledged by N-0107" in out
    assert "the HIS recorded 1 execution" in out
    source = EXAMPLE.read_text(encoding="utf-8")
    assert "mw.hooks" not in source, "the story uses the typed services only"

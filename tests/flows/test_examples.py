"""The integrator's examples run as written and do what they print."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(script: str, tmp_path: Path) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={"TMPDIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_kiosk_registration(tmp_path: Path) -> None:
    out = run("kiosk_registration.py", tmp_path)
    assert "(new, created by the HIS)" in out
    assert "pressed twice: still one registration" in out
    assert "number 1, 0 ahead of you" in out
    assert "王堃喆" not in out, "the kiosk's log does not spell out the name"


def test_doctor_desk(tmp_path: Path) -> None:
    out = run("doctor_desk.py", tmp_path)
    assert "doctor's desk: 3 earlier visits on the card" in out
    assert "report 血常规 Complete blood count: final" in out
    assert "settled 55.60 yuan, transaction T-" in out
    assert "the card holds 4 visits" in out


def test_embed_in_his(tmp_path: Path) -> None:
    out = run("embed_in_his.py", tmp_path)
    assert "patient H0001" in out
    assert "registered twice, one registration: True" in out
    assert "queue number 1" in out
    source = (EXAMPLES / "embed_in_his.py").read_text(encoding="utf-8")
    assert "mw.hooks" not in source, "the vendor's story uses the typed services only"

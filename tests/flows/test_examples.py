"""The integrator's examples run as written, do what they print, and stay short."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MAX_LINES = 80


def run(script: str, tmp_path: Path) -> str:
    env = {"TMPDIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    if "PYTHONPATH" in os.environ:  # a checkout run without installing it
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_kiosk_registration(tmp_path: Path) -> None:
    out = run("kiosk_registration.py", tmp_path)
    assert "(new, created by the HIS)" in out
    assert "face check: the cardholder" in out
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


def test_nurse_round(tmp_path: Path) -> None:
    out = run("nurse_round.py", tmp_path)
    assert "check before: passed, next during" in out
    assert "done, HIS recorded" in out
    assert "scanned again: refused (AlreadyExecutedError)" in out
    assert "refused: dose — 250 mg is not 0.5 g" in out
    assert "call from bed 12: acknowledged by N-0107" in out
    assert "the HIS recorded 1 execution" in out
    source = (EXAMPLES / "nurse_round.py").read_text(encoding="utf-8")
    assert "mw.hooks" not in source, "the story uses the typed services only"


def test_cashier_settlement(tmp_path: Path) -> None:
    out = run("cashier_settlement.py", tmp_path)
    assert "topped up 300.00; the bank's balance 300.00" in out
    paid = re.search(r"paid (\d+\.\d\d) for 3 charges: \d+", out)
    split = re.search(r"insurance: fund (\d+\.\d\d), patient (\d+\.\d\d)", out)
    returned = re.search(r"settled \d+: (\d+\.\d\d) returned", out)
    balances = re.findall(r"the bank's balance (\d+\.\d\d)", out)
    assert paid, out
    assert split, out
    assert returned, out
    assert len(balances) == 2, out
    fund, own = Decimal(split[1]), Decimal(split[2])
    assert fund > 0
    assert fund + own == Decimal(paid[1])
    assert Decimal(returned[1]) == fund, "the fund's part goes back to the card's account"
    assert Decimal(balances[1]) == Decimal("300.00") - Decimal(paid[1]) + fund


def test_ehc_identification(tmp_path: Path) -> None:
    out = run("ehc_identification.py", tmp_path)
    ids = re.findall(r"hospital patient (\S+)", out)
    assert len(ids) == 2, out
    assert ids[0] == ids[1], "the card and the e-card find one hospital patient"
    assert re.search(r"its code as a \d+-byte PNG QR", out)
    assert "code verified offline (key TEST1), dynamic" in out
    assert "same resident True" in out
    assert "shown again for registration: refused" in out
    (picture,) = tmp_path.glob("hcm-example-*/ecard-code.png")
    assert picture.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_face_enrolment(tmp_path: Path) -> None:
    out = run("face_enrolment.py", tmp_path)
    assert "empty picture: refused (unusable)" in out
    check = re.search(r"face check: the cardholder, distance (\d\.\d\d) ≤ (\d\.\d\d)", out)
    assert check, out
    assert float(check[1]) <= float(check[2])
    assert "face template enrolled" in out
    assert "found by face alone: same resident True" in out


def test_new_his_adapter(tmp_path: Path) -> None:
    out = run("new_his_adapter.py", tmp_path)
    assert "mini-his: patient P000001, registration R000001" in out
    kit = re.search(r"(\d+) passed, (\d+) skipped", out)
    assert kit, out
    assert int(kit[1]) >= 10, out  # the HIS suite's outpatient tests ran
    # the kit's summary line names no failures or errors (test names may say "error")
    assert not re.search(r"\b\d+ (failed|errors?)\b", out), out
    assert "mini-his does not implement hcm_his_admit" in out  # skipped, by name


def test_every_example_is_short_and_run_by_a_test() -> None:
    scripts = sorted(EXAMPLES.glob("*.py"))
    assert len(scripts) >= 8
    for script in scripts:
        lines = len(script.read_text(encoding="utf-8").splitlines())
        assert lines <= MAX_LINES, f"{script.name} has {lines} lines (at most {MAX_LINES})"
    tests = Path(__file__).read_text(encoding="utf-8")
    for script in scripts:
        if script.name.startswith("_"):  # the shared stand-in hospital, used by all
            continue
        assert f"def test_{script.stem}(" in tests, f"no test runs {script.name}"
        assert f'run("{script.name}", tmp_path)' in tests, f"no test runs {script.name}"

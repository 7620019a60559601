"""The integrator's examples run as written, do what they print, and stay short.

Every example runs once for the module, each in a process of its own: ``_run_examples.py``
imports what they import once and forks a child per script, so each still runs as
``python examples/<script>`` would (as ``__main__``, in its own working and temporary
folder, with nothing left over from another), without a cold start of its own. The
tests read what each printed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
RUNNER = Path(__file__).with_name("_run_examples.py")
MAX_LINES = 80
SCRIPTS = sorted(p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run every example; the folder holding one folder per script (output, exit code)."""
    out = tmp_path_factory.mktemp("examples")
    env = {"PATH": "/usr/bin:/bin", "TMPDIR": str(out)}
    if "PYTHONPATH" in os.environ:  # a checkout run without installing it
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    done = subprocess.run(
        [sys.executable, str(RUNNER), str(EXAMPLES), str(out), *SCRIPTS],
        capture_output=True,
        text=True,
        timeout=120 * len(SCRIPTS),
        cwd=out,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def run(script: str, ran: Path) -> str:
    """What ``script`` printed; it exited 0."""
    folder = ran / Path(script).stem
    stdout = (folder / "stdout").read_text(encoding="utf-8")
    stderr = (folder / "stderr").read_text(encoding="utf-8")
    assert (folder / "exit").read_text(encoding="ascii") == "0", stdout + stderr
    return stdout


def test_kiosk_registration(ran: Path) -> None:
    out = run("kiosk_registration.py", ran)
    assert "(new, created by the HIS)" in out
    assert "face check: the cardholder" in out
    assert "pressed twice: still one registration" in out
    assert "number 1, 0 ahead of you" in out
    assert "王堃喆" not in out, "the kiosk's log does not spell out the name"


def test_doctor_desk(ran: Path) -> None:
    out = run("doctor_desk.py", ran)
    assert "doctor's desk: 3 earlier visits on the card" in out
    assert "report 血常规 Complete blood count: final" in out
    assert "settled 55.60 yuan, transaction T-" in out
    assert "the card holds 4 visits" in out


def test_embed_in_his(ran: Path) -> None:
    out = run("embed_in_his.py", ran)
    assert "patient H0001" in out
    assert "registered twice, one registration: True" in out
    assert "queue number 1" in out
    source = (EXAMPLES / "embed_in_his.py").read_text(encoding="utf-8")
    assert "mw.hooks" not in source, "the vendor's story uses the typed services only"


def test_nurse_round(ran: Path) -> None:
    out = run("nurse_round.py", ran)
    assert "check before: passed, next during" in out
    assert "done, HIS recorded" in out
    assert "scanned again: refused (AlreadyExecutedError)" in out
    assert "refused: dose — 250 mg is not 0.5 g" in out
    assert "call from bed 12: acknowledged by N-0107" in out
    assert "the HIS recorded 1 execution" in out
    source = (EXAMPLES / "nurse_round.py").read_text(encoding="utf-8")
    assert "mw.hooks" not in source, "the story uses the typed services only"


def test_cashier_settlement(ran: Path) -> None:
    out = run("cashier_settlement.py", ran)
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


def test_ehc_identification(ran: Path) -> None:
    out = run("ehc_identification.py", ran)
    ids = re.findall(r"hospital patient (\S+)", out)
    assert len(ids) == 2, out
    assert ids[0] == ids[1], "the card and the e-card find one hospital patient"
    assert re.search(r"its code as a \d+-byte PNG QR", out)
    assert "code verified offline (key TEST1), dynamic" in out
    assert "same resident True" in out
    assert "shown again for registration: refused" in out
    (picture,) = (ran / "ehc_identification").glob("hcm-example-*/ecard-code.png")
    assert picture.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_face_enrolment(ran: Path) -> None:
    out = run("face_enrolment.py", ran)
    assert "empty picture: refused (unusable)" in out
    check = re.search(r"face check: the cardholder, distance (\d\.\d\d) ≤ (\d\.\d\d)", out)
    assert check, out
    assert float(check[1]) <= float(check[2])
    assert "face template enrolled" in out
    assert "found by face alone: same resident True" in out


def test_new_his_adapter(ran: Path) -> None:
    out = run("new_his_adapter.py", ran)
    assert "mini-his: patient P000001, registration R000001" in out
    summary = out.strip().splitlines()[-1]  # pytest's last line: "N passed, M skipped in …"
    kit = re.fullmatch(r"(\d+) passed, (\d+) skipped in [\d.]+s", summary)
    assert kit, out
    assert int(kit[1]) >= 10, out  # the HIS suite's outpatient tests ran
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
        assert script.name in SCRIPTS, f"{script.name} is not run"
        assert f"def test_{script.stem}(ran: Path)" in tests, f"no test reads {script.name}"
        assert f'run("{script.name}", ran)' in tests, f"no test reads {script.name}"

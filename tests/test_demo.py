"""``hcm demo``: the whole journey as a hospital's IT would first run it, and run it badly.

Each test runs the real command in its own process, against the real parts it starts
(pcscd + vpcd, the reference HIS over MLLP, the bank, the insurer and the e-card
platform on loopback, the machine's MQTT broker), and checks what it printed, what it
left behind and that nothing it started is still running.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hcmiddleware.demo import STEPS

HCM = shutil.which("hcm", path=str(Path(sys.executable).parent)) or "hcm"
pytestmark = pytest.mark.pcsc


def demo(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HCM, "demo", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def not_a_broker() -> Iterator[int]:
    """A port taken by something that is not an MQTT broker: it accepts, then hangs up."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    stop = False

    def serve() -> None:
        while not stop:
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            conn.close()

    import threading

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop = True
    thread.join(2)
    server.close()


def test_the_whole_journey_through_pcscd_and_the_broker(tmp_path: Path) -> None:
    out = demo("--data-dir", str(tmp_path / "d"), "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    report = json.loads(out.stdout)
    assert report["ok"] is True
    steps = report["steps"]
    assert [s["step"] for s in steps] == list(range(1, len(STEPS) + 1))
    assert [s["status"] for s in steps] == ["ok"] * len(STEPS), steps
    detail = {s["step"]: s["detail"] for s in steps}
    assert "through pcscd" in detail[3]
    assert "verified online" in detail[6]
    assert "returned to the card's account" in detail[9]
    assert "bytes of ESC/POS sent to the thermal printer" in detail[10]
    assert "printed at the self-service printer as PDF" in detail[11]
    assert "refused (dose)" in detail[14]
    assert "over MQTT" in detail[15]
    assert "refunded to the card's account" in detail[16]
    assert "insurer: 1 matched" in detail[17]
    assert "every one intact" in detail[18]
    # each step's time is split among the parts, and the parts add up to the step
    for s in steps:
        assert s["ms"] == pytest.approx(sum(s["shares_ms"].values()), abs=1.0)
    assert steps[2]["shares_ms"]["card"] > 0
    assert report["outpatient_ms"] > report["outpatient_middleware_ms"] > 0
    # the money: the bank's ledger and the journal agree (step 15 said so); the card's
    # account holds the top-up less what the patient paid in the end
    bank = sqlite3.connect(tmp_path / "d" / "reference-bank-ledger.db")
    assert bank.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] > 0
    bank.close()


def test_without_pcscd_or_broker_it_runs_in_process_and_says_so(
    tmp_path: Path, not_a_broker: int
) -> None:
    out = demo(
        "--data-dir", str(tmp_path / "d"), "--no-pcsc", "--broker", f"127.0.0.1:{not_a_broker}",
        "--step", "15",
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert "card and SAM in-process: turned off (--no-pcsc)" in out.stdout
    assert f"no MQTT broker at 127.0.0.1:{not_a_broker}" in out.stdout
    assert "band events go to the ward in-process" in out.stdout
    assert "in-process (no MQTT broker): alarm acknowledged" in out.stdout
    assert "[15/15]" in out.stdout
    assert "FAILED" not in out.stdout
    assert "Traceback" not in out.stderr


def test_a_data_folder_that_cannot_be_written_is_a_clear_message(tmp_path: Path) -> None:
    """A file where the folder should be (root may write a mode-500 folder; not this)."""
    blocker = tmp_path / "file"
    blocker.write_text("not a folder", encoding="utf-8")
    out = demo("--data-dir", str(blocker / "d"))
    assert out.returncode == 2
    assert "cannot be written" in out.stdout
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("step", ["0", str(len(STEPS) + 1)])
def test_a_step_out_of_range_is_refused(step: str, tmp_path: Path) -> None:
    out = demo("--data-dir", str(tmp_path / "d"), "--step", step, "--json")
    assert out.returncode == 2
    assert "--step must be between 1 and" in json.loads(out.stdout)["error"]
    assert not (tmp_path / "d").exists()


def _pcscd_pids() -> set[int]:
    """The pcscd processes on the machine."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"pcscd" in cmdline.split(b"\0")[0]:
                found.add(int(entry.name))
    return found


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("at", [9, 14])
def test_ctrl_c_stops_everything_and_a_second_run_finishes(tmp_path: Path, at: int) -> None:
    folder = tmp_path / "d"
    daemons = _pcscd_pids()
    proc = subprocess.Popen(
        [HCM, "demo", "--data-dir", str(folder)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: what it started is in it
    )
    assert proc.stdout is not None
    lines: list[str] = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith(f"[{at - 1}/"):
            break  # step `at` is now running
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C at the terminal reaches the whole group
    rest, err = proc.communicate(timeout=60)
    lines.append(rest)
    text = "".join(lines)
    assert proc.returncode == 130, text + err
    assert "interrupted at step" in text
    assert "everything the demo started is stopped" in text
    assert "Traceback" not in err
    deadline = time.monotonic() + 10
    while _alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(proc.pid), "a process the demo started is still running"
    assert _pcscd_pids() <= daemons, "the demo's pcscd is still running"

    again = demo("--data-dir", str(folder), "--json")
    assert again.returncode == 0, again.stdout + again.stderr
    report: dict[str, Any] = json.loads(again.stdout)
    assert [s["status"] for s in report["steps"]] == ["ok"] * len(STEPS), [
        (s["step"], s["detail"]) for s in report["steps"] if s["status"] != "ok"
    ]
    # the same patient and money, not a second of each: the day reconciles
    assert "found in the index" in report["steps"][3]["detail"]
    assert "bank:" in report["steps"][16]["detail"]

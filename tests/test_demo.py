"""``hcm demo``: the whole journey as a hospital's IT would first run it, and run it badly.

The runs are the real command in its own process, against the real parts it starts
(pcscd + vpcd, the reference HIS over MLLP, the bank, the insurer and the e-card
platform on loopback, the machine's MQTT broker); the tests check what it printed, what
it left behind and that nothing it started is still running. A run costs seconds, so
the whole journey runs once for this module and several tests read its report; the
refusals that happen before anything starts run the command in-process.

Ctrl-C lands deterministically through the demo's test hook (``HCM_DEMO_INTERRUPT_AT``,
docs/testing.md): the default suite interrupts the money and the ward steps on one data
folder and finishes it on a terminal without pcscd or broker (the in-process fallbacks
proved on the way); every one of the 18 steps runs in ``tox -e demo-interrupt``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from hcmiddleware.cli import main as cli
from hcmiddleware.demo import INTERRUPT_AT, STEPS

HCM = shutil.which("hcm", path=str(Path(sys.executable).parent)) or "hcm"
pytestmark = pytest.mark.pcsc
LAST = len(STEPS)
#: a variable only the test sets: the processes a run starts inherit it
RUN_TOKEN = "HCM_TEST_DEMO_RUN"


@dataclass(frozen=True)
class Ran:
    """One finished run of ``hcm demo``."""

    returncode: int
    stdout: str
    stderr: str
    pid: int  # also its process group's ID
    token: str  # in the environment of every process it started


def demo(*args: str, interrupt_at: int | None = None, timeout: float = 180) -> Ran:
    env = dict(os.environ)
    env.pop(INTERRUPT_AT, None)
    if interrupt_at is not None:
        env[INTERRUPT_AT] = str(interrupt_at)
    token = uuid.uuid4().hex
    env[RUN_TOKEN] = token  # inherited by every process the run starts
    proc = subprocess.Popen(
        [HCM, "demo", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,  # its own process group: what it starts is in it
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return Ran(proc.returncode, out, err, proc.pid, token)


# --- the whole journey, once for the module -------------------------------------------------


@pytest.fixture(scope="module")
def journey(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    folder = tmp_path_factory.mktemp("journey") / "d"
    out = demo("--data-dir", str(folder), "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    report: dict[str, Any] = json.loads(out.stdout)
    return report, folder


def test_every_step_of_the_journey_passes_through_pcscd_and_the_broker(
    journey: tuple[dict[str, Any], Path],
) -> None:
    report, _folder = journey
    assert report["ok"] is True
    steps = report["steps"]
    assert [s["step"] for s in steps] == list(range(1, LAST + 1))
    assert [s["status"] for s in steps] == ["ok"] * LAST, steps
    assert any("behind" in part and "pcscd" in part for part in report["parts"])
    assert any(part.startswith("ward-mqtt: active bands over") for part in report["parts"])


def test_each_step_says_what_happened(journey: tuple[dict[str, Any], Path]) -> None:
    detail = {s["step"]: s["detail"] for s in journey[0]["steps"]}
    assert "through pcscd" in detail[3]
    assert "created by the HIS" in detail[4]
    assert "verified online" in detail[6]
    assert "returned to the card's account" in detail[9]
    assert "bytes of ESC/POS sent to the thermal printer" in detail[10]
    assert "printed at the self-service printer as PDF" in detail[11]
    assert "refused (dose)" in detail[14]
    assert "over MQTT" in detail[15]
    assert "refunded to the card's account" in detail[16]
    assert "insurer: 1 matched" in detail[17]
    assert "every one intact" in detail[18]


def test_each_steps_time_is_split_among_the_parts(journey: tuple[dict[str, Any], Path]) -> None:
    report = journey[0]
    for s in report["steps"]:
        assert s["ms"] == pytest.approx(sum(s["shares_ms"].values()), abs=1.0)
    assert report["steps"][2]["shares_ms"]["card"] > 0
    assert report["steps"][4]["shares_ms"]["his"] > 0
    assert report["outpatient_ms"] > report["outpatient_middleware_ms"] > 0
    assert report["total_ms"] >= sum(s["ms"] for s in report["steps"]) - 1.0


def test_what_the_journey_leaves_in_its_data_folder(journey: tuple[dict[str, Any], Path]) -> None:
    _report, folder = journey
    bank = sqlite3.connect(folder / "reference-bank-ledger.db")
    try:
        assert bank.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] > 0
    finally:
        bank.close()
    thermal = (folder / "thermal-printer.escpos").read_bytes()
    assert thermal.startswith(b"\x1b@"), "ESC/POS starts by resetting the printer"
    pages = sorted(p.name for p in (folder / "printed").glob("*.pdf"))
    assert any(name.startswith("lab_report-") for name in pages), pages
    assert any(name.startswith("inpatient_bill-") for name in pages), pages
    assert not (folder / "demo-error.log").exists()


# --- a port that is no broker ----------------------------------------------------------------


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


# --- refused before anything starts (in-process: the same command, no start-up cost) -------


def test_a_data_folder_that_cannot_be_written_is_a_clear_message(tmp_path: Path) -> None:
    """A file where the folder should be (root may write a mode-500 folder; not this)."""
    blocker = tmp_path / "file"
    blocker.write_text("not a folder", encoding="utf-8")
    out = CliRunner().invoke(cli, ["demo", "--data-dir", str(blocker / "d")])
    assert out.exit_code == 2, out.output
    assert "cannot be written" in out.output
    assert "choose another with --data-dir" in out.output
    assert out.exception is None or isinstance(out.exception, SystemExit)


@pytest.mark.parametrize("step", ["0", str(LAST + 1)])
def test_a_step_out_of_range_is_refused(step: str, tmp_path: Path) -> None:
    out = CliRunner().invoke(
        cli, ["demo", "--data-dir", str(tmp_path / "d"), "--step", step, "--json"]
    )
    assert out.exit_code == 2, out.output
    assert f"--step must be between 1 and {LAST}" in json.loads(out.output)["error"]
    assert not (tmp_path / "d").exists()


def test_the_interrupt_hook_takes_only_a_step_number(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(INTERRUPT_AT, "soon")
    out = CliRunner().invoke(cli, ["demo", "--data-dir", str(tmp_path / "d"), "--no-pcsc"])
    assert out.exit_code == 2, out.output
    assert f"{INTERRUPT_AT} must be a step number from 1 to {LAST}" in out.output


# --- Ctrl-C ------------------------------------------------------------------------------------


def _started_by(token: str) -> list[str]:
    """The processes still running with ``token`` in their environment: those a run
    started, in whatever process group or session (pcscd runs in a session of its own)."""
    mark = f"{RUN_TOKEN}={token}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                environ = (entry / "environ").read_bytes()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:  # gone, or not ours to read
                continue
            if mark in environ.split(b"\0"):
                command = cmdline.replace(b"\0", b" ").decode(errors="replace")
                found.append(f"{entry.name}: {command}")
    return found


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _peer_ports(text: str) -> set[int]:
    """The loopback ports of the peers the demo said it started (not the machine's broker)."""
    return {
        int(port)
        for line in text.splitlines()
        if line.startswith("  · ") and "MQTT broker" not in line
        for port in re.findall(r"127\.0\.0\.1:(\d+)", line)
    }


def interrupted_at(at: int, folder: Path) -> str:
    """Run the demo with Ctrl-C while step ``at`` runs; check it stopped cleanly."""
    out = demo("--data-dir", str(folder), interrupt_at=at, timeout=120)
    text = out.stdout
    assert out.returncode == 130, text + out.stderr
    assert f"interrupted at step {at};" in text
    assert "everything the demo started is stopped" in text
    assert f"--data-dir {folder}" in text, "it says how to go on with the same data"
    assert "Traceback" not in out.stderr, out.stderr
    assert f"[{at}/{LAST}]" not in text, "the step was cut short, not finished"
    if at > 1:
        assert f"[{at - 1}/{LAST}]" in text
    # nothing left running: no process of its group, none it started anywhere else (a
    # pcscd of its own runs in a session of its own), no peer's port answering
    deadline = time.monotonic() + 10
    while (_alive(out.pid) or _started_by(out.token)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(out.pid), "a process of the demo's group is still running"
    assert not _started_by(out.token), _started_by(out.token)
    ports = _peer_ports(text)
    assert ports, text
    for port in sorted(ports):
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still answers"
    return text


def finishes(folder: Path, *args: str) -> dict[str, Any]:
    """Run the demo again on the same data: every step passes."""
    again = demo("--data-dir", str(folder), "--json", *args)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Traceback" not in again.stderr
    report: dict[str, Any] = json.loads(again.stdout)
    assert [s["status"] for s in report["steps"]] == ["ok"] * LAST, [
        (s["step"], s["detail"], s.get("hint")) for s in report["steps"] if s["status"] != "ok"
    ]
    # the same patient and money, not a second of each: the day reconciles
    assert "found in the index" in report["steps"][3]["detail"]
    assert "bank:" in report["steps"][16]["detail"]
    return report


def test_ctrl_c_twice_then_a_run_without_pcscd_or_broker_finishes(
    tmp_path: Path, not_a_broker: int
) -> None:
    """Interrupted while paying (after the bank's first answer) and, run again, during
    the nurse's round; the third run, without pcscd and with a port that is no MQTT
    broker, keeps the card and the bands in-process, says so, and finishes every step
    on the same data."""
    folder = tmp_path / "d"
    interrupted_at(8, folder)
    interrupted_at(14, folder)
    broker = f"127.0.0.1:{not_a_broker}"
    report = finishes(folder, "--no-pcsc", "--broker", broker)
    parts = "\n".join(report["parts"])
    assert "card and SAM in-process: turned off (--no-pcsc)" in parts
    assert f"no MQTT broker at {broker}" in parts
    assert "band events go to the ward in-process" in parts
    detail = {s["step"]: s["detail"] for s in report["steps"]}
    assert "through the in-process card" in detail[3]
    assert "in-process (no MQTT broker): alarm acknowledged" in detail[15]


@pytest.mark.interrupt_matrix
@pytest.mark.parametrize("at", range(1, LAST + 1))
def test_ctrl_c_at_each_step_and_a_second_run_finishes(tmp_path: Path, at: int) -> None:
    folder = tmp_path / "d"
    interrupted_at(at, folder)
    finishes(folder)

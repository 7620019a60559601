"""The reference HIS on its own: its command line, duplicate detection, fault switches."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from hcm_his_reference import Fault, FaultSwitch, ReferenceHis

START, END = b"\x0b", b"\x1c\x0d"


def _mllp(address: tuple[str, int], text: str) -> str:
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(START + text.encode("utf-8") + END)
        data = b""
        while END not in data:
            chunk = sock.recv(65536)
            assert chunk, "connection closed"
            data += chunk
    return data[1:].partition(END)[0].decode("utf-8")


A28 = "\r".join(
    [
        "MSH|^~\\&|KIOSK|H|REFHIS|H0001|20261127093000||ADT^A28^ADT_A05|{cid}|P|2.5"
        "|||AL|NE||UNICODE UTF-8",
        "EVN||20261127093000",
        "PID|1||{rid}^^^HCMEMPI^PI||张三||19800101|M",
        "PV1|1|N",
    ]
)


def _patients(his: ReferenceHis) -> int:
    return len(his.store._all("SELECT patient_id FROM patient"))


def test_command_line_serves_both_protocols(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hcm_his_reference",
            "--store",
            str(tmp_path / "h.db"),
            "--mllp-port",
            "0",
            "--fhir-port",
            "0",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        assert banner.startswith("MLLP on 127.0.0.1:")
        mllp = banner.split()[2].rstrip(",")
        fhir = banner.split("FHIR at ")[1].split()[0]
        host, port = mllp.rsplit(":", 1)
        answer = _mllp((host, int(port)), A28.format(cid="C1", rid="R1"))
        assert "MSA|AA|C1" in answer
        meta = httpx.get(f"{fhir}/metadata").json()
        assert meta["fhirVersion"] == "4.0.1"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def test_a_resent_control_id_gets_the_first_answer_and_acts_once(tmp_path: Path) -> None:
    with ReferenceHis(tmp_path / "h.db") as his:
        first = _mllp(his.mllp_address, A28.format(cid="C7", rid="R7"))
        again = _mllp(his.mllp_address, A28.format(cid="C7", rid="R8"))  # same ID, other body
        assert first == again
        assert _patients(his) == 1
        other_sender = A28.format(cid="C7", rid="R8").replace("|KIOSK|", "|WARD|")
        assert "MSA|AA|C7" in _mllp(his.mllp_address, other_sender)
        assert _patients(his) == 2, "control IDs are unique per sender, not across senders"


def test_invalid_hl7_is_refused_with_ar(tmp_path: Path) -> None:
    with ReferenceHis(tmp_path / "h.db") as his:
        no_pid = A28.format(cid="C1", rid="R1").replace(
            "PID|1||R1^^^HCMEMPI^PI||张三||19800101|M\r", ""
        )
        answer = _mllp(his.mllp_address, no_pid)
        assert "MSA|AR|C1" in answer
        assert "101^^HL70357" in answer
        assert _patients(his) == 0


def test_unknown_message_type_is_refused(tmp_path: Path) -> None:
    with ReferenceHis(tmp_path / "h.db") as his:
        text = A28.format(cid="C1", rid="R1").replace("ADT^A28^ADT_A05", "ADT^A31^ADT_A05")
        answer = _mllp(his.mllp_address, text)
        assert "MSA|AR|C1" in answer
        assert "200^^HL70357" in answer


def test_faults_apply_for_the_requests_asked_then_clear() -> None:
    switch = FaultSwitch()
    switch.set(Fault(nak="AE"), times=2)
    assert [switch.take().nak for _ in range(3)] == ["AE", "AE", None]
    switch.set(delay=1.0, writes_only=True)
    assert switch.take(write=False).delay == 0.0
    assert switch.take(write=True).delay == 1.0
    switch.clear()
    assert switch.take() == Fault()
    assert switch.requests == 6


@pytest.mark.parametrize("value", ["", "abc"])
def test_garbage_on_the_mllp_port_is_answered_or_hung_up(tmp_path: Path, value: str) -> None:
    with ReferenceHis(tmp_path / "h.db") as his:
        answer = _mllp(his.mllp_address, value)
        assert "MSA|AR" in answer
        assert _patients(his) == 0

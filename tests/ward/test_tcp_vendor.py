"""A second vendor's shape (a TCP line gateway) beside the MQTT one: the plugin seam."""

from __future__ import annotations

import socket
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from hcm_ward_mqtt import Simulator, WardMqtt
from hcm_ward_tcp import WardTcp

from hcmiddleware import Middleware

from .conftest import NurseStation
from .test_mqtt import broker, plugin_settings, until  # noqa: F401  (the broker fixture)


class Gateway:
    """A vendor's call-button gateway on a real TCP connection."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.sock = socket.create_connection(address, timeout=5)
        self.lines = self.sock.makefile("rb")

    def send(self, line: bytes) -> str:
        self.sock.sendall(line + b"\n")
        return self.read()

    def read(self) -> str:
        return self.lines.readline().decode("utf-8").rstrip("\n")

    def close(self) -> None:
        self.lines.close()
        self.sock.close()


@pytest.fixture
def two_vendors(
    broker: tuple[str, int],  # noqa: F811
    make_ward_mw: Any,
) -> Any:
    prefix = f"hcm-test/{uuid.uuid4().hex[:12]}"
    mqtt, tcp = WardMqtt(), WardTcp()
    mw: Middleware = make_ward_mw(
        plugins={"ward-mqtt": mqtt, "ward-tcp": tcp},
        settings={"ward-mqtt": plugin_settings(*broker, prefix), "ward-tcp": {"port": 0}},
    )
    assert mqtt.wait_connected(5)
    gateway = Gateway(tcp.address)
    with Simulator(*broker, prefix=prefix, resend_after=0.5) as sim:
        yield mw, gateway, sim
    gateway.close()


def test_calls_from_both_vendors_reach_one_nurse_station(
    two_vendors: Any, station: NurseStation
) -> None:
    mw, gateway, sim = two_vendors
    now = datetime.now(UTC).isoformat()
    assert gateway.send(f"CALL WB-0100 g-1 {now} 5A-12".encode()) == "OK g-1"
    assert gateway.send(f"CALL WB-0100 g-1 {now} 5A-12".encode()) == "OK g-1"  # a resend
    assert gateway.send(f"POS WB-0100 g-2 {now} 5A-toilet".encode()) == "OK g-2"
    sim.emergency("WB-0200")
    assert sim.wait_confirmed(5)
    assert until(lambda: len(station.calls) == 2)
    assert sorted(c.wristband_id for c in station.calls) == ["WB-0100", "WB-0200"]
    alarm = next(a for a in mw.ward.alarms() if a.wristband_id == "WB-0100")
    assert alarm.count == 1
    assert mw.ward.location("WB-0100").location == "5A-toilet"
    mw.ward.acknowledge(alarm.alarm_id, "N-007")
    assert gateway.read() == f"ACKD WB-0100 {alarm.alarm_id} N-007"


def test_lines_the_gateway_garbles_are_refused_and_kept(two_vendors: Any) -> None:
    mw, gateway, _sim = two_vendors
    now = datetime.now(UTC).isoformat()
    bad = [
        b"HELLO",
        b"CALL WB-0100",
        b"CALL WB-0100 g-1 yesterday",
        b"BATT WB-0100 g-2 " + now.encode() + b" lots",
        b"CALL " + b"X" * 50 + b" g-3 " + now.encode(),  # no band ID is that long
        b"\xff\xfe",
    ]
    replies = [gateway.send(line) for line in bad]
    assert all(r.startswith("ERR ") for r in replies), replies
    assert replies[0] == "ERR unknown verb 'HELLO'"
    assert len(mw.ward.rejects()) == len(bad)
    assert mw.ward.alarms() == []
    assert gateway.send(f"BATT WB-0100 g-4 {now} 7".encode()) == "OK g-4"
    assert [a.kind for a in mw.ward.alarms()] == ["battery"]

"""Band events and handheld requests through a real Mosquitto broker.

The machine (and CI) runs Mosquitto on 127.0.0.1:1883; each test uses its own topic
prefix and client IDs, so tests and other users of the broker never see each other's
messages. The broker-restart test starts a private Mosquitto on a free port, since
restarting the machine's broker would disturb everyone else.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hcm_ward_mqtt import Simulator, WardMqtt

from hcmiddleware import Middleware
from hcmiddleware.models import BedsideScan

from .conftest import NurseStation, admit

BROKER = ("127.0.0.1", 1883)


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def broker() -> tuple[str, int]:
    """The machine's Mosquitto; its absence is a failure, not a skip (CI has it)."""
    if not reachable(*BROKER):
        pytest.fail(
            "no MQTT broker on 127.0.0.1:1883: start Mosquitto "
            "(Debian: apt-get install mosquitto; mosquitto -d)"
        )
    return BROKER


def until(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return check()


class Ward:
    """The middleware with the MQTT plugin, and a simulator on the same prefix."""

    def __init__(self, mw: Middleware, plugin: WardMqtt, sim: Simulator) -> None:
        self.mw, self.plugin, self.sim = mw, plugin, sim


@pytest.fixture
def prefix() -> str:
    return f"hcm-test/{uuid.uuid4().hex[:12]}"


def plugin_settings(host: str, port: int, prefix: str, **more: Any) -> dict[str, Any]:
    return {
        "host": host,
        "port": port,
        "prefix": prefix,
        "client_id": f"hcm-{prefix.rsplit('/', 1)[-1]}",
        "reconnect_min": 0.1,
        "reconnect_max": 1.0,
        **more,
    }


@pytest.fixture
def wired(
    broker: tuple[str, int], prefix: str, make_ward_mw: Any, station: NurseStation
) -> Iterator[Ward]:
    plugin = WardMqtt()
    mw: Middleware = make_ward_mw(
        plugins={"ward-mqtt": plugin}, settings={"ward-mqtt": plugin_settings(*broker, prefix)}
    )
    assert plugin.wait_connected(5), "the plugin did not connect to the broker"
    with Simulator(*broker, prefix=prefix, resend_after=0.5) as sim:
        yield Ward(mw, plugin, sim)


def test_an_emergency_reaches_the_nurse_station_and_the_band_hears_back(
    wired: Ward, station: NurseStation
) -> None:
    admission, card = admit(wired.mw)
    wired.mw.ward.bind("WB-0001", admission, card_number=card, kind="active")
    event = wired.sim.emergency("WB-0001", location="5A-12")
    assert until(lambda: bool(station.calls))
    assert wired.sim.wait_confirmed(5)
    (change, alarm), *_ = station.alarms
    assert (change, alarm.bed, alarm.location) == ("raised", "12", "5A-12")
    assert wired.sim.confirmed_at(event) is not None
    # the nurse takes it on the handheld; the band is told
    reply = wired.sim.request("acknowledge", alarm=alarm.alarm_id, nurse="N-007")
    assert reply["ok"], reply
    assert reply["result"]["state"] == "acknowledged"
    assert until(lambda: any(a.get("alarm") == alarm.alarm_id for a in wired.sim.alarm_acks))


def test_locations_are_kept_per_band(wired: Ward) -> None:
    wired.sim.location("WB-0042", "5A-corridor")
    wired.sim.location("WB-0042", "5A-toilet")
    assert until(lambda: (wired.mw.ward.location("WB-0042") or _none).location == "5A-toilet")
    reply = wired.sim.request("location", band="WB-0042")
    assert reply["result"]["location"] == "5A-toilet"


class _None:
    location = None


_none: Any = _None()


def test_malformed_messages_are_kept_not_acted_on(wired: Ward, prefix: str) -> None:
    band_topic = f"{prefix}/band/WB-0001/event"
    bad = [
        b"not json",
        b"\xff\xfe",
        b"[1, 2]",
        b'{"v": 9, "id": "x", "kind": "emergency", "at": "2026-01-01T00:00:00Z"}',
        b'{"v": 1, "kind": "emergency", "at": "2026-01-01T00:00:00Z"}',
        b'{"v": 1, "id": "x", "kind": "fire", "at": "2026-01-01T00:00:00Z"}',
        b'{"v": 1, "id": "x", "kind": "emergency", "at": "yesterday"}',
    ]
    for payload in bad:
        wired.sim.publish_raw(band_topic, payload)
    wired.sim.publish_raw(f"{prefix}/handheld/HH-01/request", b'{"v": 1, "id": "r1", "op": 5}')
    assert until(lambda: len(wired.mw.ward.rejects()) == len(bad) + 1)
    reasons = sorted(r.reason for r in wired.mw.ward.rejects())
    assert reasons == [
        "at: Input should be a valid datetime or date, input is too short",
        "kind: Input should be 'emergency', 'location', 'battery' or 'removed'",
        "missing 'id'",
        "not JSON: Expecting value",
        "not UTF-8",
        "not an object",
        "unknown op 5",
        "version 9, not 1",
    ]
    assert wired.mw.ward.alarms() == []
    # the plugin goes on working
    wired.sim.emergency("WB-0001")
    assert wired.sim.wait_confirmed(5)
    assert len(wired.mw.ward.alarms()) == 1


def test_a_storm_from_a_faulty_band_is_one_alarm_and_every_event_is_confirmed(
    wired: Ward, station: NurseStation
) -> None:
    for _ in range(300):
        wired.sim.emergency("WB-0666")
    assert wired.sim.wait_confirmed(15)
    (alarm,) = wired.mw.ward.alarms()
    assert alarm.count == 300
    assert len(station.calls) == 1


def test_the_handheld_downloads_verifies_and_executes(wired: Ward) -> None:
    admission, card = admit(wired.mw)
    wired.mw.ward.bind("WB-0001", admission, card_number=card)
    orders = wired.sim.request("orders", band="WB-0001")
    assert orders["ok"], orders
    drip = next(o for o in orders["result"] if o["route"] == "IVGTT")
    scan = {
        "wristband_id": "WB-0001",
        "nurse_id": "N-007",
        "order_id": drip["order_id"],
        "bed": "12",
        "drug_code": drip["code"],
        "dose": "250 mg",
        "concentration": drip["concentration"],
        "route": drip["route"],
    }
    refused = wired.sim.request("execute", scan=scan)
    assert not refused["ok"]
    assert refused["error"]["error"] == "VerificationFailedError"
    assert refused["error"]["failed"] == ["dose"]
    done = wired.sim.request("execute", scan={**scan, "dose": "0.25 l"})
    assert done["ok"], done
    assert done["result"]["state"] == "done"
    again = wired.sim.request("execute", scan={**scan, "dose": "250 ml"})
    assert again["error"]["error"] == "AlreadyExecutedError"
    unknown = wired.sim.request("execute", scan={**scan, "wristband_id": "WB-9999"})
    assert unknown["error"]["error"] == "UnknownWristbandError"
    assert BedsideScan.model_validate(scan).order_id == drip["order_id"]


def test_events_sent_while_the_middleware_is_down_arrive_when_it_is_back(
    broker: tuple[str, int], prefix: str, make_ward_mw: Any, tmp_path: Path, station: NurseStation
) -> None:
    settings = {"ward-mqtt": plugin_settings(*broker, prefix)}
    first = WardMqtt()
    mw = make_ward_mw(plugins={"ward-mqtt": first}, settings=settings, data_dir=tmp_path / "site")
    assert first.wait_connected(5)
    mw.close()  # the middleware is down; its session stays at the broker
    with Simulator(*broker, prefix=prefix, resend_after=30) as sim:
        sent = [sim.emergency(f"WB-{n:04d}") for n in range(10)]
        time.sleep(0.2)
        second = WardMqtt()
        back = make_ward_mw(
            plugins={"ward-mqtt": second}, settings=settings, data_dir=tmp_path / "site"
        )
        assert sim.wait_confirmed(10), f"unconfirmed: {sim.pending}"
    assert len(back.ward.alarms()) == len(sent)


def test_a_call_is_not_held_behind_positions_not_written_yet(
    wired: Ward, station: NurseStation, monkeypatch: pytest.MonkeyPatch
) -> None:
    desk = wired.mw.ward.desk
    write, go_on = desk.write_locations, threading.Event()

    def stalled() -> int:  # the database is slow for positions
        go_on.wait(30)
        return write()

    monkeypatch.setattr(desk, "write_locations", stalled)
    try:
        # far more than the broker sends before it has them acknowledged (20)
        for n in range(300):
            wired.sim.location(f"WB-{n % 30:04d}", f"room-{n}")
        call = wired.sim.emergency("WB-0999")
        assert until(lambda: wired.sim.confirmed_at(call) is not None, 5)
        assert [a.wristband_id for _c, a in station.alarms] == ["WB-0999"]
        assert until(lambda: (wired.mw.ward.location("WB-0029") or _none).location == "room-299")
    finally:
        go_on.set()
    assert until(lambda: wired.mw.ward.desk.unwritten_locations == 0)


def test_a_call_is_not_held_behind_fixes_whose_worker_is_stuck(
    wired: Ward, station: NurseStation, monkeypatch: pytest.MonkeyPatch
) -> None:
    note, go_on = wired.plugin._note, threading.Event()

    def stuck(fixes: list[Any]) -> None:  # the fixes' worker does not come back
        go_on.wait(30)
        note(fixes)

    monkeypatch.setattr(wired.plugin, "_note", stuck)
    try:
        # more than the broker sends unacknowledged, however it counts (Mosquitto 2.0
        # lets up to 20 more go with each acknowledgement)
        for n in range(2000):
            wired.sim.location(f"WB-{n % 30:04d}", f"room-{n}")
        call = wired.sim.emergency("WB-0999")
        assert until(lambda: wired.sim.confirmed_at(call) is not None, 5)
        assert [a.wristband_id for _c, a in station.alarms] == ["WB-0999"]
    finally:
        go_on.set()
    # the worker goes on (the broker may have dropped some of such a burst of fixes: it
    # queues 1,000 per client, and a fix may be lost, the band's next one replaces it)
    assert until(lambda: wired.plugin._fixes.empty() and wired.mw.ward.location("WB-0019"))


# -- a broker that goes away and comes back --------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateBroker:
    """A Mosquitto of the test's own, that the test may kill and start again."""

    def __init__(self, folder: Path) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not os.path.exists(binary):
            pytest.fail("the mosquitto binary is not installed (Debian: apt-get install mosquitto)")
        self.binary = binary
        self.port = free_port()
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
            f"persistence true\npersistence_location {folder}/\n",
            encoding="utf-8",
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if not until(lambda: reachable("127.0.0.1", self.port), 5):
            pytest.fail(f"the private mosquitto did not start on port {self.port}")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait()


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    broker = PrivateBroker(tmp_path)
    broker.start()
    yield broker
    broker.stop()


def test_no_alarm_is_lost_when_the_broker_crashes_mid_round(
    private_broker: PrivateBroker, prefix: str, make_ward_mw: Any
) -> None:
    plugin = WardMqtt()
    mw = make_ward_mw(
        plugins={"ward-mqtt": plugin},
        settings={"ward-mqtt": plugin_settings("127.0.0.1", private_broker.port, prefix)},
    )
    assert plugin.wait_connected(5)
    with Simulator("127.0.0.1", private_broker.port, prefix=prefix, resend_after=0.5) as sim:
        before = [sim.emergency(f"WB-{n:04d}") for n in range(20)]
        private_broker.kill()  # mid-round: some events are in the broker's memory only
        during = [sim.emergency(f"WB-{n:04d}") for n in range(20, 40)]
        time.sleep(0.3)
        private_broker.start()
        assert sim.wait_confirmed(20), f"unconfirmed after the restart: {sim.pending}"
        assert len(before + during) == 40
    alarms = mw.ward.alarms()
    assert sorted(a.wristband_id for a in alarms) == [f"WB-{n:04d}" for n in range(40)]
    assert all(a.count == 1 for a in alarms)  # resent events were taken once


def test_a_kiosk_asks_for_the_summary_by_band_or_card(wired: Ward) -> None:
    admission, card = admit(wired.mw)
    wired.mw.ward.bind("WB-0001", admission, card_number=card, kind="active")
    by_band = wired.sim.request("summary", band="WB-0001")
    by_card = wired.sim.request("summary", card=card)
    assert by_band["ok"], by_band
    assert by_band["result"] == by_card["result"]
    assert by_band["result"]["admission_id"] == admission.admission_id
    assert [d["route"] for d in by_band["result"]["drugs"]] == ["IVGTT"]
    assert by_band["result"]["bill"]["balance"] is not None
    unknown = wired.sim.request("summary", band="WB-9999")
    assert not unknown["ok"]
    assert unknown["error"]["error"] == "UnknownWristbandError"
    assert unknown["error"]["hint"]
    nothing = wired.sim.request("summary")
    assert not nothing["ok"]
    assert nothing["error"]["error"] == "DeviceMessageError"


#: a Middleware with the plugin, in a process of its own that the test kills
_SERVE = """
import json, sys, time
from pathlib import Path
from hcm_ward_mqtt import WardMqtt
from hcmiddleware import Middleware
from hcmiddleware.testing.plugin import embedded_config

plugin = WardMqtt()
config = embedded_config(
    Path(sys.argv[1]),
    plugins={"enabled": [], "ward-mqtt": json.loads(sys.argv[2])},
    ward={"alarms": {"locations_every": 60}},
)
mw = Middleware(config, plugins={"ward-mqtt": plugin})
mw.ward.alarms()
assert plugin.wait_connected(5)
print("ready", flush=True)
time.sleep(600)
"""


def test_a_confirmed_call_survives_the_middleware_being_killed(
    broker: tuple[str, int], prefix: str, make_ward_mw: Any, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    settings = plugin_settings(*broker, prefix)
    serving = subprocess.Popen(
        [sys.executable, "-c", _SERVE, str(site), json.dumps(settings)],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert serving.stdout is not None
        assert serving.stdout.readline().strip() == b"ready"
        with Simulator(*broker, prefix=prefix, resend_after=30) as sim:
            for n in range(50):
                sim.location("WB-0001", f"5A-{n}")
            sim.emergency("WB-0001", location="5A-12")
            assert sim.wait_confirmed(10), f"unconfirmed: {sim.pending}"
        serving.send_signal(signal.SIGKILL)  # no close, no last write
        serving.wait(10)
    finally:
        if serving.poll() is None:
            serving.kill()
            serving.wait(10)
    after = make_ward_mw(data_dir=site)
    (alarm,) = after.ward.alarms()  # confirmed to the band: on disk
    assert (alarm.wristband_id, alarm.location, alarm.count) == ("WB-0001", "5A-12", 1)

"""Ward alarms through Mosquitto, side by side with the broker's own round trip; and the
bedside scan-to-verdict time with the orders fetched from the reference HIS.

1. **Broker floor**: a publisher and a subscriber of paho-mqtt on the machine's
   Mosquitto (127.0.0.1:1883), QoS 1, 1,000 messages a second over 500 topics:
   publish → delivery, p50/p99. Nothing of hcmiddleware is in that path.
2. **Alarm latency**: the same load from 500 simulated bands (1,000 events a second,
   one in twenty an emergency call, each call from a band with no open alarm) into a
   Middleware with the ward-mqtt plugin on SQLite: the band's event time → the
   nurse-station hook (``hcm_ward_alarm``), p50/p99, and alarms lost (calls sent whose
   alarm never reached the hook, and calls never confirmed to their band).
3. **Across a broker crash**: the same on a private Mosquitto killed (SIGKILL) and
   started again mid-run: alarms lost, and the latency of the calls sent around it.
4. **Scan to verdict**: ``mw.ward.verify(scan)`` for an infusion, the stay's orders
   fetched from the reference HIS over HL7/MLLP each time, next to the orders query
   alone. The reference HIS runs in a process of its own (a hospital's HIS is another
   system), so its hl7apy parsing does not share the middleware's interpreter.

Run: ``python benchmarks/bench_ward.py [seconds]`` (default 10 s of load per part).
"""

from __future__ import annotations

import base64
import multiprocessing
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from hcm_his_hl7 import Hl7His
from hcm_his_reference import ReferenceHis
from hcm_ward_mqtt import Simulator, WardMqtt

from hcmiddleware import InpatientFlow, Middleware, hookimpl
from hcmiddleware.card.emulator import EmulatedCard
from hcmiddleware.config import parse_config
from hcmiddleware.models import Alarm, BedsideScan
from hcmiddleware.sam.samples import TEST_ISSUER_KEYS

BROKER = ("127.0.0.1", 1883)
RATE = 1000
BANDS = 500
CALL_EVERY = 20  # one event in twenty is an emergency call


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def line(name: str, samples: list[float], extra: str = "") -> str:
    if not samples:
        return f"{name:<58} {'-':>8} {'-':>8} {extra}"
    return f"{name:<58} {statistics.median(samples):>8.2f} {pct(samples, 0.99):>8.2f} {extra}"


# -- 1. the broker's own round trip --------------------------------------------------------


def _publish_load(port: int, prefix: str, seconds: float, done: Any) -> None:
    """The devices' side of the floor, in its own process as devices are."""
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{prefix}-pub")
    pub.max_inflight_messages_set(1000)
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    start = time.monotonic()
    n = 0
    while time.monotonic() - start < seconds:
        time.sleep(max(0.0, start + n / RATE - time.monotonic()))
        pub.publish(f"{prefix}/band/B{n % BANDS:04d}/event", f"{time.time():.6f}", qos=1)
        n += 1
    time.sleep(1.0)
    pub.loop_stop()
    pub.disconnect()
    done.put(n)


def broker_floor(seconds: float) -> list[float]:
    prefix = f"hcm-bench/{uuid.uuid4().hex[:8]}"
    got: list[float] = []
    ready = threading.Event()

    def on_message(_c: Any, _u: Any, message: Any) -> None:
        got.append((time.time() - float(message.payload)) * 1e3)

    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{prefix}-sub")
    sub.on_message = on_message
    sub.on_connect = lambda c, *_a: (c.subscribe(f"{prefix}/#", qos=1), ready.set())
    sub.connect(*BROKER)
    sub.loop_start()
    ready.wait(5)
    done: Any = multiprocessing.Queue()
    child = multiprocessing.Process(target=_publish_load, args=(BROKER[1], prefix, seconds, done))
    child.start()
    n = done.get()
    child.join()
    sub.loop_stop()
    sub.disconnect()
    print(f"  broker floor: {len(got)} of {n} messages delivered")
    return got


# -- 2./3. alarms through the middleware ---------------------------------------------------


class NurseStation:
    """Takes the time each alarm reaches the nurse station."""

    def __init__(self) -> None:
        self.latency: dict[str, float] = {}

    @hookimpl
    def hcm_ward_alarm(self, alarm: Alarm, change: str) -> None:
        if change == "raised":
            self.latency[alarm.wristband_id] = (time.time() - alarm.raised_at.timestamp()) * 1e3


def site(workdir: Path, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    keys = workdir / "keys"
    keys.mkdir(mode=0o700, exist_ok=True)
    for name in ("master", "index"):
        if not (keys / name).exists():
            (keys / name).write_text(base64.b64encode(os.urandom(32)).decode())
    return {
        "middleware": {"data_dir": str(workdir / "data"), "institution_code": "210100000001"},
        "sam": {"keys": str(TEST_ISSUER_KEYS)},
        "empi": {
            "master_keys": {"k1": {"file": str(keys / "master")}},
            "index_key": {"file": str(keys / "index")},
        },
        **(extra or {}),
    }


def _bands(port: int, prefix: str, seconds: float, done: Any) -> None:
    """500 bands in their own process: locations, and a call every twentieth event."""
    calls: list[str] = []
    with Simulator("127.0.0.1", port, prefix=prefix, resend_after=1.0) as sim:
        start = time.monotonic()
        n = 0
        while time.monotonic() - start < seconds:
            time.sleep(max(0.0, start + n / RATE - time.monotonic()))
            if n % CALL_EVERY == 0:
                band = f"B{len(calls) % BANDS:04d}-{len(calls) // BANDS}"
                sim.emergency(band)
                calls.append(band)
            else:
                sim.location(f"B{n % BANDS:04d}", f"room-{n % 40}")
            n += 1
        sim.wait_confirmed(30)
        done.put((calls, len(sim.pending)))


def alarm_run(
    port: int, seconds: float, crash: Callable[[], None] | None = None
) -> tuple[list[float], int, int, int]:
    """``(latencies ms, calls sent, alarms reaching the hook, calls unconfirmed)``."""
    prefix = f"hcm-bench/{uuid.uuid4().hex[:8]}"
    workdir = Path(tempfile.mkdtemp(prefix="hcm-bench-ward-"))
    station = NurseStation()
    plugin = WardMqtt()
    settings = {
        "host": "127.0.0.1",
        "port": port,
        "prefix": prefix,
        "client_id": f"hcm-{prefix[-8:]}",
        "reconnect_min": 0.05,
        "reconnect_max": 0.5,
    }
    config = parse_config(site(workdir, {"plugins": {"ward-mqtt": settings}}))
    mw = Middleware(config, plugins={"ward-mqtt": plugin, "station": station})
    mw.ward.alarms()  # migrate before the clock starts
    plugin.wait_connected(5)
    done: Any = multiprocessing.Queue()
    child = multiprocessing.Process(target=_bands, args=(port, prefix, seconds, done))
    child.start()
    if crash is not None:
        time.sleep(seconds / 2)
        crash()
    calls, unconfirmed = done.get()
    child.join()
    time.sleep(0.5)
    mw.close()
    latencies = [station.latency[b] for b in calls if b in station.latency]
    return latencies, len(calls), len(station.latency), unconfirmed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateBroker:
    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="hcm-bench-mosquitto-"))
        self.port = free_port()
        self.conf = self.folder / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
            f"persistence true\npersistence_location {self.folder}/\n"
        )
        self.binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen([self.binary, "-c", str(self.conf)])
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.1).close()
                return
            except OSError:
                time.sleep(0.02)

    def crash_and_restart(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        time.sleep(0.5)
        self.start()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait()


# -- 4. scan to verdict ----------------------------------------------------------------------


def _serve_his(path: str, port: int, stop: Any) -> None:
    """The reference HIS in a process of its own, as a hospital's HIS is."""
    with ReferenceHis(path, hospital_code="210100000001", mllp_port=port):
        stop.wait()


def scan_to_verdict(n: int = 200) -> tuple[list[float], list[float]]:
    workdir = Path(tempfile.mkdtemp(prefix="hcm-bench-scan-"))
    sample = Path(str(files("hcmiddleware.card.samples"))) / "resident-profile.json"
    card = EmulatedCard.from_files(sample, TEST_ISSUER_KEYS)
    port = free_port()
    stop: Any = multiprocessing.Event()
    his = multiprocessing.Process(target=_serve_his, args=(str(workdir / "his.db"), port, stop))
    his.start()
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        settings = {"host": "127.0.0.1", "port": port}
        config = parse_config(site(workdir, {"plugins": {"his-hl7": settings}}))
        with Middleware(config, plugins={"his-hl7": Hl7His()}) as mw:
            flow = InpatientFlow(mw, actor="bench")
            who = flow.identify(card)
            patient = flow.patient(who)
            stay = flow.admit(patient, department_code="NEI", ward="5A", bed="12")
            assert who.card is not None
            mw.ward.bind("WB-0001", stay, card_number=who.card.issuer.card_number)
            drip = next(o for o in mw.ward.orders("WB-0001") if o.route == "IVGTT")
            scan = BedsideScan(
                wristband_id="WB-0001",
                nurse_id="N-1",
                order_id=drip.order_id,
                bed="12",
                drug_code=drip.code,
                dose="0.25 L",
                concentration=drip.concentration,
                route="静滴",
            )
            assert mw.ward.verify(scan).ok
            verdicts, orders = [], []
            for _ in range(n):
                t0 = time.perf_counter()
                mw.ward.verify(scan)
                verdicts.append((time.perf_counter() - t0) * 1e3)
                t0 = time.perf_counter()
                mw.his.orders(patient, stay.admission_id)
                orders.append((time.perf_counter() - t0) * 1e3)
    finally:
        stop.set()
        his.join(10)
    return verdicts, orders


def main() -> int:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
    try:
        socket.create_connection(BROKER, timeout=1).close()
    except OSError:
        print("no MQTT broker on 127.0.0.1:1883: start Mosquitto first")
        return 1
    print(f"{RATE} events/s from {BANDS} bands, {seconds:.0f} s a part; QoS 1; SQLite")
    print(f"{'':<58} {'p50 ms':>8} {'p99 ms':>8}")
    floor = broker_floor(seconds)
    print(line("broker floor: paho publish -> paho subscriber", floor))
    latencies, sent, reached, unconfirmed = alarm_run(BROKER[1], seconds)
    print(
        line(
            "alarm: band event -> nurse-station hook",
            latencies,
            f"lost {sent - reached} of {sent}, unconfirmed {unconfirmed}",
        )
    )
    broker = PrivateBroker()
    broker.start()
    try:
        latencies, sent, reached, unconfirmed = alarm_run(
            broker.port, seconds, crash=broker.crash_and_restart
        )
    finally:
        broker.stop()
    print(
        line(
            "alarm across a broker crash (SIGKILL, restart 0.5 s)",
            latencies,
            f"lost {sent - reached} of {sent}, unconfirmed {unconfirmed}",
        )
    )
    verdicts, orders = scan_to_verdict()
    print(line("scan -> verdict (orders from the reference HIS, HL7)", verdicts))
    print(line("  of which: the orders query alone (mw.his.orders)", orders))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

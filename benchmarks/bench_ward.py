"""Ward alarms through Mosquitto, side by side with the broker's own round trip; and the
bedside scan-to-verdict time with the orders fetched from the reference HIS.

1. **Broker floor**: a publisher and a subscriber of paho-mqtt on the machine's
   Mosquitto (127.0.0.1:1883), QoS 1, 1,000 messages a second over 500 topics:
   publish → delivery, p50/p99. Nothing of hcmiddleware is in that path.
2. **Alarm latency**: the same load from 500 simulated bands (1,000 events a second,
   one in twenty an emergency call, each call from a band with no open alarm) into a
   Middleware with the ward-mqtt plugin on SQLite: the band's event time → the
   nurse-station hook (``hcm_ward_alarm``), p50/p99/max, and alarms lost (calls sent
   whose alarm never reached the hook, and calls never confirmed to their band); next
   to it the same calls as a plain paho subscriber in a process of its own sees them at
   the same moment (the floor as this run's bands, broker and machine make it: the
   band simulator is a heavier publisher than part 1's). Then where each call's time
   went, stage by stage: band → MQTT receive (the plugin's
   network thread) → the alarm worker taking it → ``mw.ward.receive`` → the writer's
   turn → committed (``AlarmDesk.receive`` returns) → the hook.
3. **Across a broker crash**: the same on a private Mosquitto killed (SIGKILL) and
   started again mid-run: alarms lost, and the latency of the calls sent around it.
4. **Scan to verdict**, before and after side by side, round by round in turn: a band
   scan (the stay's orders from the reference HIS over HL7/MLLP), the label scan that
   follows (``mw.ward.verify``), the same scan with the orders asked afresh (what the
   check before execution does), and the orders query alone. *Before*: the reference
   HIS parses every message in full with hl7apy and every scan asks it; *after*: it
   parses each message structure once, and the ward keeps a stay's orders 30 s
   (``[ward] orders_fresh_for``). Each reference HIS runs in a process of its own (a
   hospital's HIS is another system), so its parsing does not share the middleware's
   interpreter.

Before each part the process's heap is settled (``gc.collect()`` then ``gc.freeze()``),
as a long-running service's is: otherwise the first full collection after the imports
and the set-up (100-200 ms on a busy 2-core machine, every thread stopped) falls into
the measured seconds, on the floor and the alarms alike. The full collections that
happen during a part are printed with it; ``--gc as-is`` leaves the heap alone.

Run: ``python benchmarks/bench_ward.py [seconds] [--only alarms|scan] [--runs N]``
(default 10 s of load per part; ``--only scan`` needs no broker; ``--runs`` repeats
the floor and the alarm part, in turn).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import gc
import json
import multiprocessing
import os
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import datetime
from importlib.resources import files
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from hcm_his_hl7 import Hl7His
from hcm_his_reference import ReferenceHis
from hcm_ward_mqtt import Simulator, WardMqtt

from hcmiddleware import InpatientFlow, Middleware, hookimpl, storage
from hcmiddleware.card.emulator import EmulatedCard
from hcmiddleware.config import parse_config
from hcmiddleware.models import Alarm, BandEvent, BedsideScan
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
        return f"{name:<58} {'-':>8} {'-':>8} {'-':>8} {extra}"
    return (
        f"{name:<58} {statistics.median(samples):>8.2f} {pct(samples, 0.99):>8.2f}"
        f" {max(samples):>8.2f} {extra}"
    )


class FullCollections:
    """The full (generation 2) collections of this process while it is on, in ms."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append((time.perf_counter() - self._started) * 1e3)

    def __enter__(self) -> FullCollections:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *_exc: object) -> None:
        gc.callbacks.remove(self)

    def __str__(self) -> str:
        if not self.pauses:
            return "no full collection"
        return f"{len(self.pauses)} full collection(s), longest {max(self.pauses):.0f} ms"


SETTLE = True


def settle() -> None:
    """Collect, then set what lives now aside from later collections (see above)."""
    if SETTLE:
        gc.collect()
        gc.freeze()


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
    settle()
    with FullCollections() as collections:
        child.start()
        n = done.get()
        child.join()
    sub.loop_stop()
    sub.disconnect()
    print(f"  broker floor: {len(got)} of {n} messages delivered; {collections}")
    return got


# -- 2./3. alarms through the middleware ---------------------------------------------------


class NurseStation:
    """Takes the time each alarm reaches the nurse station."""

    def __init__(self, stages: AlarmStages | None = None) -> None:
        self.latency: dict[str, float] = {}
        self.stages = stages

    @hookimpl
    def hcm_ward_alarm(self, alarm: Alarm, change: str) -> None:
        if change == "raised":
            self.latency[alarm.wristband_id] = (time.time() - alarm.raised_at.timestamp()) * 1e3
            if self.stages is not None:
                self.stages.hook(alarm)


#: the stages of a call's way, each from the one before; "event" is the band's clock
STAGES = (
    ("received", "MQTT receive (plugin's network thread)"),
    ("taken", "taken by the alarm worker"),
    ("core", "mw.ward.receive called"),
    ("turn", "writer's turn taken (BEGIN IMMEDIATE next)"),
    ("stored", "committed: AlarmDesk.receive returned"),
    ("hook", "hcm_ward_alarm reached the nurse station"),
)


class AlarmStages:
    """When each call (by band: one call per band in this benchmark) reached each stage.

    Wraps the plugin's callbacks and the alarm desk of one Middleware, on the instances
    (and storage.begin_write while installed); nothing of it runs for position fixes
    but a test of the payload.
    """

    def __init__(self) -> None:
        self.at: dict[str, dict[str, float]] = {}
        self._turn = threading.local()

    def _mark(self, band: str, stage: str, when: float | None = None) -> None:
        self.at.setdefault(band, {}).setdefault(stage, time.time() if when is None else when)

    def plugin(self, plugin: WardMqtt) -> None:
        """Before the Middleware configures it (paho takes the bound callback then)."""
        on_message, store = plugin._on_message, plugin._store

        def received(client: Any, userdata: Any, message: Any) -> None:
            if b'"emergency"' in message.payload:
                self._mark(plugin.topics.part(message.topic, 1), "received")
            on_message(client, userdata, message)

        def taken(batch: list[Any]) -> None:
            now = time.time()
            for item in batch:
                message = item[0] if isinstance(item, tuple) else item
                if b'"emergency"' in message.payload:
                    self._mark(plugin.topics.part(message.topic, 1), "taken", now)
            store(batch)

        plugin._on_message = received  # type: ignore[method-assign,assignment]
        plugin._store = taken  # type: ignore[method-assign]

    @contextlib.contextmanager
    def middleware(self, mw: Middleware) -> Iterator[None]:
        ward_receive, desk = mw.ward.receive, mw.ward.desk
        desk_receive = desk.receive
        begin_write = storage.begin_write
        turn = self._turn

        def core(events: Any) -> Any:
            batch = list(events)
            now = time.time()
            for event in batch:
                if event.kind == "emergency":
                    self._mark(event.wristband_id, "core", now)
            return ward_receive(batch)

        def stored(events: list[BandEvent], **kwargs: Any) -> Any:
            turn.at = None
            done = desk_receive(events, **kwargs)
            now = time.time()
            for event in events:
                if event.kind == "emergency":
                    if turn.at is not None:
                        self._mark(event.wristband_id, "turn", turn.at)
                    self._mark(event.wristband_id, "stored", now)
            return done

        @contextlib.contextmanager
        def timed_write(engine: Any, **kwargs: Any) -> Iterator[Any]:
            with begin_write(engine, **kwargs) as conn:
                if kwargs.get("durable", True):
                    turn.at = time.time()
                yield conn

        mw.ward.receive = core  # type: ignore[method-assign]
        desk.receive = stored  # type: ignore[method-assign,assignment]
        storage.begin_write = timed_write
        try:
            yield
        finally:
            storage.begin_write = begin_write
            del mw.ward.receive, desk.receive

    def hook(self, alarm: Alarm) -> None:
        self._mark(alarm.wristband_id, "event", alarm.raised_at.timestamp())
        self._mark(alarm.wristband_id, "hook")

    def lines(self) -> list[str]:
        whole = [t for t in self.at.values() if all(k in t for k, _ in STAGES) and "event" in t]
        out = [f"  where the time went ({len(whole)} calls with every stage), ms:"]
        before = "event"
        for stage, label in STAGES:
            out.append(line(f"    -> {label}", [(t[stage] - t[before]) * 1e3 for t in whole]))
            before = stage
        return out


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


def _bystander(port: int, prefix: str, ready: Any, stop: Any, out: Any) -> None:
    """A plain subscriber in its own process, on the bands' topics while they play: the
    broker's round trip for the very calls, at the same moment — the floor as this run's
    bands, broker and machine make it."""
    seen: dict[str, float] = {}

    def on_message(_c: Any, _u: Any, message: Any) -> None:
        data = json.loads(message.payload)
        if data.get("kind") == "emergency":
            at = datetime.fromisoformat(data["at"]).timestamp()
            seen.setdefault(message.topic.split("/")[-2], (time.time() - at) * 1e3)

    def on_connect(client: Any, *_args: Any) -> None:
        client.subscribe(f"{prefix}/band/+/event", qos=1)
        ready.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{prefix[-8:]}-bystander")
    client.on_message = on_message
    client.on_connect = on_connect
    client.connect("127.0.0.1", port)
    client.loop_start()
    stop.wait()
    time.sleep(0.5)
    client.loop_stop()
    client.disconnect()
    out.put(seen)


class AlarmRun:
    """What one alarm part measured."""

    def __init__(self, stages: AlarmStages) -> None:
        self.stages = stages
        self.latencies: list[float] = []
        #: the same calls' band event -> a plain subscriber in its own process
        self.bystander: list[float] = []
        self.sent = self.reached = self.unconfirmed = 0
        self.collections = FullCollections()

    def line(self, name: str) -> str:
        lost = f"lost {self.sent - self.reached} of {self.sent}, unconfirmed {self.unconfirmed}"
        return line(name, self.latencies, lost)


def alarm_run(port: int, seconds: float, crash: Callable[[], None] | None = None) -> AlarmRun:
    """One run of the alarm part (with the broker on ``port``)."""
    prefix = f"hcm-bench/{uuid.uuid4().hex[:8]}"
    workdir = Path(tempfile.mkdtemp(prefix="hcm-bench-ward-"))
    run = AlarmRun(AlarmStages())
    station = NurseStation(run.stages)
    plugin = WardMqtt()
    run.stages.plugin(plugin)
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
    ready, stop = multiprocessing.Event(), multiprocessing.Event()
    seen: Any = multiprocessing.Queue()
    bystander = multiprocessing.Process(target=_bystander, args=(port, prefix, ready, stop, seen))
    bystander.start()
    ready.wait(5)
    settle()
    with run.stages.middleware(mw), run.collections:
        child.start()
        if crash is not None:
            time.sleep(seconds / 2)
            crash()
        calls, run.unconfirmed = done.get()
        child.join()
        time.sleep(0.5)
    stop.set()
    floor = seen.get()
    bystander.join()
    mw.close()
    run.latencies = [station.latency[b] for b in calls if b in station.latency]
    run.bystander = [floor[b] for b in calls if b in floor]
    run.sent, run.reached = len(calls), len(station.latency)
    return run


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


def _serve_his(path: str, port: int, stop: Any, validation_cache: bool) -> None:
    """The reference HIS in a process of its own, as a hospital's HIS is."""
    with ReferenceHis(
        path, hospital_code="210100000001", mllp_port=port, validation_cache=validation_cache
    ):
        stop.wait()


class Bedside:
    """A reference HIS (own process) and a Middleware with a patient wearing WB-0001."""

    def __init__(self, stack: ExitStack, *, validation_cache: bool, fresh_for: float) -> None:
        workdir = Path(tempfile.mkdtemp(prefix="hcm-bench-scan-"))
        sample = Path(str(files("hcmiddleware.card.samples"))) / "resident-profile.json"
        card = EmulatedCard.from_files(sample, TEST_ISSUER_KEYS)
        port = free_port()
        stop: Any = multiprocessing.Event()
        his = multiprocessing.Process(
            target=_serve_his, args=(str(workdir / "his.db"), port, stop, validation_cache)
        )
        his.start()
        stack.callback(his.join, 10)
        stack.callback(stop.set)
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        extra = {
            "plugins": {"his-hl7": {"host": "127.0.0.1", "port": port}},
            "ward": {"orders_fresh_for": fresh_for},
        }
        config = parse_config(site(workdir, extra))
        self.mw = stack.enter_context(Middleware(config, plugins={"his-hl7": Hl7His()}))
        flow = InpatientFlow(self.mw, actor="bench")
        who = flow.identify(card)
        self.patient = flow.patient(who)
        self.stay = flow.admit(self.patient, department_code="NEI", ward="5A", bed="12")
        assert who.card is not None
        self.mw.ward.bind("WB-0001", self.stay, card_number=who.card.issuer.card_number)
        t0 = time.perf_counter()
        drip = next(o for o in self.mw.ward.orders("WB-0001") if o.route == "IVGTT")
        #: the first orders query after the HIS started (a message structure it never saw)
        self.cold = (time.perf_counter() - t0) * 1e3
        self.scan = BedsideScan(
            wristband_id="WB-0001",
            nurse_id="N-1",
            order_id=drip.order_id,
            bed="12",
            drug_code=drip.code,
            dose="0.25 L",
            concentration=drip.concentration,
            route="静滴",
        )
        assert self.mw.ward.verify(self.scan).ok

    def round(self, times: dict[str, list[float]]) -> None:
        """One bedside round: band scan, label scan, a scan with the orders asked afresh."""
        ward = self.mw.ward

        def timed(name: str, call: Callable[[], object]) -> None:
            t0 = time.perf_counter()
            call()
            times.setdefault(name, []).append((time.perf_counter() - t0) * 1e3)

        timed("band", lambda: ward.orders("WB-0001"))
        timed("label", lambda: ward.verify(self.scan))
        ward.order_store.clear()  # as begin() does: the HIS is asked, whatever is kept
        timed("fresh", lambda: ward.verify(self.scan))
        timed("query", lambda: self.mw.his.orders(self.patient, self.stay.admission_id))


SCAN_ROWS = (
    ("band", "band scan: the stay's orders from the HIS (ward.orders)"),
    ("label", "scan -> verdict: label scan after the band scan (verify)"),
    ("fresh", "scan -> verdict, orders asked afresh (as begin does)"),
    ("query", "  of which: the orders query alone (mw.his.orders)"),
)


def scan_to_verdict(rounds: int = 100) -> dict[str, dict[str, list[float]]]:
    """Before (the HIS parsing every message in full, orders asked at every scan) and
    after (the HIS's per-structure check, orders kept 30 s), round by round in turn so
    both see the same machine."""
    times: dict[str, dict[str, list[float]]] = {"before": {}, "after": {}}
    with ExitStack() as stack:
        sides = {
            "before": Bedside(stack, validation_cache=False, fresh_for=0.0),
            "after": Bedside(stack, validation_cache=True, fresh_for=30.0),
        }
        for name, side in sides.items():
            times[name]["cold"] = [side.cold]
        for _ in range(rounds):
            for name, side in sides.items():
                side.round(times[name])
    return times


def two(samples: list[float]) -> str:
    if not samples:
        return f"{'-':>8} {'-':>8}"
    return f"{statistics.median(samples):>8.2f} {pct(samples, 0.99):>8.2f}"


def print_scans(times: dict[str, dict[str, list[float]]]) -> None:
    before, after = times["before"], times["after"]
    print()
    print(f"{'scan to verdict, HL7/MLLP to the reference HIS':<58} {'before':>17}   {'after':>17}")
    print(f"{'':<58} {'p50 ms':>8} {'p99 ms':>8}   {'p50 ms':>8} {'p99 ms':>8}")
    for key, label in SCAN_ROWS:
        print(f"{label:<58} {two(before[key])}   {two(after[key])}")
    print(
        f"{'first band scan after the HIS started (one sample)':<58} "
        f"{before['cold'][0]:>8.2f} {'':>8}   {after['cold'][0]:>8.2f}"
    )
    print(
        "  before: the HIS parses every message in full with hl7apy, every scan asks it;\n"
        "  after: the HIS parses each message structure once, orders kept 30 s "
        f"({len(before['label'])} rounds each, interleaved)"
    )


def main() -> int:
    global SETTLE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("seconds", nargs="?", type=float, default=10.0, help="load per part")
    parser.add_argument("--only", choices=("alarms", "scan"), help="run only these parts")
    parser.add_argument(
        "--runs", type=int, default=1, help="runs of the floor and the alarm part, in turn"
    )
    parser.add_argument(
        "--no-crash", action="store_true", help="leave out the part across a broker crash"
    )
    parser.add_argument(
        "--gc",
        choices=("settle", "as-is"),
        default="settle",
        help="settle the heap before each part (default), or leave it as it is",
    )
    args = parser.parse_args()
    seconds = args.seconds
    SETTLE = args.gc == "settle"
    if args.only == "scan":
        print_scans(scan_to_verdict())
        return 0
    try:
        socket.create_connection(BROKER, timeout=1).close()
    except OSError:
        print("no MQTT broker on 127.0.0.1:1883: start Mosquitto first")
        return 1
    print(
        f"{RATE} events/s from {BANDS} bands, {seconds:.0f} s a part; QoS 1; SQLite;"
        f" heap {'settled' if SETTLE else 'as it is'} before each part"
    )
    print(f"{'':<58} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for _ in range(args.runs):
        floor = broker_floor(seconds)
        print(line("broker floor: paho publish -> paho subscriber", floor))
        run = alarm_run(BROKER[1], seconds)
        print(run.line("alarm: band event -> nurse-station hook"))
        print(line("  the same calls -> a plain subscriber (own process)", run.bystander))
        print(f"  {run.collections}")
        print("\n".join(run.stages.lines()))
    if not args.no_crash:
        broker = PrivateBroker()
        broker.start()
        try:
            run = alarm_run(broker.port, seconds, crash=broker.crash_and_restart)
        finally:
            broker.stop()
        print(run.line("alarm across a broker crash (SIGKILL, restart 0.5 s)"))
    if args.only is None:
        print_scans(scan_to_verdict())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""A reference device simulator: active bands and a nurse's handheld, over the broker.

It speaks exactly the wire format of :mod:`hcm_ward_mqtt.protocol`, as a vendor's
gateway would. Bands resend an alarm event until the middleware confirms it on
``band/<id>/ack`` (every ``resend_after`` seconds), so no alarm is lost even when the
broker restarts and forgets what it held. ``hcm ward simulate`` and the tests use it.
"""

from __future__ import annotations

import itertools
import json
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hcm_ward_mqtt.protocol import Topics, encode, event_payload

__all__ = ["PlayReport", "Simulator"]


@dataclass
class PlayReport:
    """What :meth:`Simulator.play` sent and what came back."""

    bands: int
    seconds: float
    locations: int = 0
    emergencies: int = 0
    confirmed: int = 0
    unconfirmed: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Events sent per second."""
        return (self.locations + self.emergencies) / self.seconds if self.seconds else 0.0


class Simulator:
    """Bands and a handheld on one MQTT connection (persistent session, QoS 1)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 1883,
        *,
        prefix: str = "hcm/ward",
        client_id: str | None = None,
        device: str = "HH-01",
        resend_after: float = 1.0,
    ) -> None:
        import paho.mqtt.client as mqtt

        self.topics = Topics(prefix)
        self.device = device
        self.resend_after = resend_after
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[str, bytes, float]] = {}
        self._confirmed: dict[str, float] = {}
        self._replies: dict[str, dict[str, Any]] = {}
        self._got_reply = threading.Condition(self._lock)
        self._acks: list[dict[str, Any]] = []
        self._sequence = itertools.count(1)
        # a device numbers its messages from its last start; the start is in their IDs,
        # so a restarted simulator's events are new events to the ward, not repeats
        self._boot = uuid.uuid4().hex[:6]
        self._connected = threading.Event()
        self._stop = threading.Event()
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id or f"hcm-sim-{uuid.uuid4().hex[:8]}",
            clean_session=False,
            protocol=mqtt.MQTTv311,
        )
        client.reconnect_delay_set(0.1, 2.0)
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_disconnect = lambda *_a: self._connected.clear()
        client.on_message = self._on_message
        self._client = client
        self._host, self._port = host, port
        self._resender = threading.Thread(target=self._resend_loop, daemon=True)

    # -- connection ---------------------------------------------------------------------------

    def connect(self, timeout: float = 5.0) -> Simulator:
        """Connect to the broker; ConnectionError if it does not answer in ``timeout``."""
        try:
            self._client.connect(self._host, self._port, keepalive=30)
        except OSError as exc:
            raise ConnectionError(
                f"no MQTT broker at {self._host}:{self._port} ({exc.strerror or exc})"
            ) from None
        self._client.loop_start()
        if not self._connected.wait(timeout):
            self.close()
            raise ConnectionError(f"the MQTT broker at {self._host}:{self._port} did not answer")
        self._resender.start()
        return self

    def close(self) -> None:
        """Disconnect."""
        self._stop.set()
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> Simulator:
        return self.connect()

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _on_connect(self, client: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if getattr(reason, "is_failure", False):
            return
        client.subscribe(
            [
                (f"{self.topics.prefix}/band/+/ack", 1),
                (self.topics.handheld_reply(self.device), 1),
            ]
        )
        self._connected.set()

    def _on_message(self, _client: Any, _u: Any, message: Any) -> None:
        try:
            data = json.loads(message.payload)
        except ValueError:
            return
        with self._lock:
            if self.topics.part(message.topic, 0) == "handheld":
                self._replies[str(data.get("id"))] = data
                self._got_reply.notify_all()
                return
            event = data.get("event")
            if event is not None:
                self._pending.pop(str(event), None)
                self._confirmed[str(event)] = time.time()
            else:
                self._acks.append(data)

    def _resend_loop(self) -> None:
        while not self._stop.wait(self.resend_after / 4):
            now = time.monotonic()
            with self._lock:
                due = [
                    (event_id, topic, payload)
                    for event_id, (topic, payload, sent) in self._pending.items()
                    if now - sent >= self.resend_after
                ]
                for event_id, topic, payload in due:
                    self._pending[event_id] = (topic, payload, now)
            for _event_id, topic, payload in due:
                self._client.publish(topic, payload, qos=1)

    # -- bands --------------------------------------------------------------------------------

    def _event(self, band: str, kind: str, **fields: Any) -> str:
        event_id = f"{band}-{self._boot}-{next(self._sequence)}"
        payload = event_payload(event_id, kind, datetime.now(UTC), **fields)
        topic = self.topics.band_event(band)
        if kind != "location":  # alarms are sent until confirmed
            with self._lock:
                self._pending[event_id] = (topic, payload, time.monotonic())
        self._client.publish(topic, payload, qos=1)
        return event_id

    def emergency(self, band: str, *, location: str | None = None) -> str:
        """Press the band's call button; the event's ID."""
        return self._event(band, "emergency", location=location)

    def battery(self, band: str, percent: int) -> str:
        """The band reports a low battery."""
        return self._event(band, "battery", battery=percent)

    def location(self, band: str, where: str) -> str:
        """The band reports where it is."""
        return self._event(band, "location", location=where)

    def publish_raw(self, topic: str, payload: bytes) -> None:
        """Anything at all on ``topic`` (a faulty device)."""
        self._client.publish(topic, payload, qos=1)

    @property
    def pending(self) -> list[str]:
        """Alarm events sent and not confirmed yet."""
        with self._lock:
            return list(self._pending)

    def confirmed_at(self, event_id: str) -> float | None:
        """When the middleware's confirmation of ``event_id`` arrived (epoch seconds)."""
        with self._lock:
            return self._confirmed.get(event_id)

    @property
    def alarm_acks(self) -> list[dict[str, Any]]:
        """The nurses' acknowledgements the bands received."""
        with self._lock:
            return list(self._acks)

    def wait_confirmed(self, timeout: float) -> bool:
        """Wait until every alarm event is confirmed (True) or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.pending:
                return True
            time.sleep(0.02)
        return not self.pending

    # -- the handheld -------------------------------------------------------------------------

    def request(self, op: str, *, timeout: float = 10.0, **fields: Any) -> dict[str, Any]:
        """Send the handheld's request and wait for the reply (``{"ok": …}``)."""
        request_id = f"{self.device}-{self._boot}-{next(self._sequence)}"
        self._client.publish(
            self.topics.handheld_request(self.device),
            encode({"id": request_id, "op": op, **fields}),
            qos=1,
        )
        deadline = time.monotonic() + timeout
        with self._lock:
            while request_id not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no reply to {op} {request_id} in {timeout} s")
                self._got_reply.wait(left)
            return self._replies.pop(request_id)

    # -- a ward at work -----------------------------------------------------------------------

    def play(
        self,
        bands: list[str],
        *,
        rate: float,
        seconds: float,
        emergency_share: float = 0.01,
        seed: int = 1,
        wait: float = 5.0,
    ) -> PlayReport:
        """Send ``rate`` events a second from ``bands`` for ``seconds``: mostly locations,
        ``emergency_share`` of them calls. Waits up to ``wait`` seconds for the calls'
        confirmations after."""
        chooser = random.Random(seed)
        report = PlayReport(bands=len(bands), seconds=seconds)
        calls: list[str] = []
        start = time.monotonic()
        n = 0
        while True:
            due = start + n / rate
            now = time.monotonic()
            if due - start >= seconds:
                break
            if due > now:
                time.sleep(due - now)
            band = bands[n % len(bands)]
            if chooser.random() < emergency_share:
                calls.append(self.emergency(band, location=f"room-{n % 40}"))
                report.emergencies += 1
            else:
                self.location(band, f"room-{chooser.randrange(40)}")
                report.locations += 1
            n += 1
        self.wait_confirmed(timeout=wait)
        pending = set(self.pending)
        report.unconfirmed = [c for c in calls if c in pending]
        report.confirmed = len(calls) - len(report.unconfirmed)
        return report

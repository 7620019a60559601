"""The plugin: band events and handheld requests over MQTT into ``middleware.ward``.

One MQTT client with a persistent session (clean session off, QoS 1 both ways), so
what the broker holds for the middleware while it is away is delivered when it comes
back. paho's network thread reads each band message and queues it; worker threads do
the work:

* alarm events (calls, low battery, a band taken off), in batches: stored through
  ``middleware.ward.receive`` (one durable transaction a batch, ahead of other
  writers), then confirmed to each band on ``band/<id>/ack`` and only then
  acknowledged to the broker (PUBACK). A band resends an alarm event until it sees the
  confirmation, so an alarm is stored or sent again — never dropped, also when the
  broker itself restarts and forgets what it held;
* position fixes: acknowledged to the broker without waiting for the database, by
  their worker in a batch as soon as it wakes (by the network thread itself once
  ``ACK_BACKLOG`` are waiting), then handed to ``middleware.ward.receive`` (which
  notes the newest per band and writes them a few bands per transaction later); the
  worker steps aside while a call is being stored. The broker sends a client only so
  many messages it has not acknowledged (Mosquitto: ``max_inflight_messages``, 20):
  fixes waiting for the database, or for a worker, would hold the calls behind them
  at the broker. A fix lost in a crash is replaced by the band's next one;
* handheld requests (orders, the checks, acknowledging alarms), answered on
  ``handheld/<id>/reply``; a slow HIS never delays an alarm.

A message that cannot be read is kept (``middleware.ward.reject``) and acknowledged:
sending it again would not make it readable. Reconnecting after a lost broker backs
off from ``reconnect_min`` to ``reconnect_max`` seconds.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import TYPE_CHECKING, Any

from pydantic import Field

from hcm_ward_mqtt.protocol import Topics, decode, encode, event_from, scan_from
from hcmiddleware import Secret, SettingsModel, hookimpl
from hcmiddleware.errors import DeviceMessageError, HcmError
from hcmiddleware.models import Alarm, BandEvent, CheckResult, WristbandBinding

if TYPE_CHECKING:
    from hcmiddleware import Middleware

__all__ = ["NAME", "WardMqtt", "WardMqttSettings"]

NAME = "ward-mqtt"
log = logging.getLogger("hcm_ward_mqtt")

#: alarm kinds: their events are confirmed to the band (locations are not: the next fix
#: replaces a lost one)
ALARM_KINDS = frozenset({"emergency", "battery", "removed"})
#: seconds the fixes' worker steps aside at most for calls being stored
QUIET_WAIT = 0.25
#: fixes left unacknowledged at most (the broker sends no more than 20 unacknowledged
#: messages, calls included, by default)
ACK_BACKLOG = 10


class WardMqttSettings(SettingsModel):
    """``[plugins.ward-mqtt]``."""

    host: str = Field("127.0.0.1", description="the MQTT broker")
    port: int = Field(1883, ge=1, le=65535)
    client_id: str = Field("hcm-ward", min_length=1, max_length=64)
    prefix: str = Field("hcm/ward", min_length=1, description="topic prefix")
    keepalive: int = Field(30, ge=5, le=600)
    username: str | None = None
    password: Secret | None = None
    batch: int = Field(500, ge=1, le=10_000, description="band events stored per transaction")
    reconnect_min: float = Field(0.5, gt=0, description="first reconnect delay, seconds")
    reconnect_max: float = Field(30.0, gt=0, description="longest reconnect delay, seconds")
    connect_timeout: float = Field(5.0, gt=0, description="seconds to wait for the broker at start")


class WardMqtt:
    """The plugin object (the entry point names this class; created with no args)."""

    hcm_plugin_name = NAME

    def __init__(self) -> None:
        self.settings = WardMqttSettings()
        self.topics = Topics(self.settings.prefix)
        self._mw: Middleware | None = None
        self._client: Any = None
        #: alarm events, and band messages that cannot be read (kept as rejects)
        self._events: queue.Queue[tuple[Any, BandEvent | DeviceMessageError]] = queue.Queue()
        #: position fixes (acknowledged already), taken by their own worker
        self._fixes: queue.Queue[BandEvent] = queue.Queue()
        #: set while no alarm event waits or is being stored: the fixes' worker, whose
        #: work can wait, leaves the interpreter to the alarms until then
        self._quiet = threading.Event()
        self._quiet.set()
        #: fixes read and not acknowledged yet (message ID, QoS); see _on_message
        self._unacked: list[tuple[int, int]] = []
        self._ack_lock = threading.Lock()
        self._requests: queue.Queue[Any] = queue.Queue()
        self._running = threading.Event()
        self._connected = threading.Event()
        self._workers: list[threading.Thread] = []
        #: what the plugin has done, for hcm doctor and the tests
        self.stats = {"events": 0, "rejected": 0, "requests": 0, "connects": 0, "retries": 0}

    # -- set-up ---------------------------------------------------------------------------

    @hookimpl
    def hcm_add_config(self, settings: Any) -> None:
        settings.add(NAME, WardMqttSettings)

    @hookimpl
    def hcm_configure(self, middleware: Middleware) -> None:
        import paho.mqtt.client as mqtt

        found = middleware.plugin_settings(NAME)
        if isinstance(found, WardMqttSettings):
            self.settings = found
        self.topics = Topics(self.settings.prefix)
        self._mw = middleware
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.settings.client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
            manual_ack=True,
        )
        if self.settings.username:
            password = self.settings.password.get_secret_value() if self.settings.password else None
            client.username_pw_set(self.settings.username, password)
        client.reconnect_delay_set(self.settings.reconnect_min, self.settings.reconnect_max)
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(0)  # 0: no limit; nothing is thrown away
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self._client = client
        self._running.set()
        self._workers = [
            threading.Thread(target=self._alarm_loop, name="hcm-ward-mqtt-events", daemon=True),
            threading.Thread(target=self._fix_loop, name="hcm-ward-mqtt-fixes", daemon=True),
            threading.Thread(target=self._request_loop, name="hcm-ward-mqtt-requests", daemon=True),
        ]
        for worker in self._workers:
            worker.start()
        client.connect_async(self.settings.host, self.settings.port, self.settings.keepalive)
        client.loop_start()
        if not self._connected.wait(self.settings.connect_timeout):
            log.warning(
                "MQTT broker %s:%s not reachable yet; retrying in the background",
                self.settings.host,
                self.settings.port,
            )

    @hookimpl
    def hcm_unconfigure(self) -> None:
        self._running.clear()
        for worker in self._workers:
            worker.join(timeout=5)
        self._workers = []
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None
        self._connected.clear()

    @property
    def connected(self) -> bool:
        """Is the client connected to the broker now?"""
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        """Wait until the client is connected (True) or ``timeout`` passes (False)."""
        return self._connected.wait(timeout)

    @hookimpl
    def hcm_doctor_checks(self) -> list[CheckResult]:
        where = f"{self.settings.host}:{self.settings.port}"
        if self.connected:
            return [CheckResult(name="broker", ok=True, detail=f"connected to {where}")]
        return [
            CheckResult(
                name="broker",
                ok=False,
                detail=f"not connected to the MQTT broker at {where}",
                hint="start the broker, or fix [plugins.ward-mqtt] host and port",
            )
        ]

    # -- paho's callbacks (network thread: queue only) -----------------------------------

    def _on_connect(
        self, client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("MQTT broker refused the connection: %s", reason)
            return
        client.subscribe([(self.topics.band_events, 1), (self.topics.handheld_requests, 1)])
        self.stats["connects"] += 1
        self._connected.set()

    def _on_disconnect(self, *_args: Any) -> None:
        self._connected.clear()

    def _on_message(self, client: Any, _userdata: Any, message: Any) -> None:
        if self.topics.part(message.topic, 0) != "band":
            self._requests.put(message)
            return
        try:
            event = event_from(
                message.topic,
                decode(message.topic, message.payload),
                self.topics.part(message.topic, 1),
            )
        except DeviceMessageError as exc:  # kept as a reject before it is acknowledged
            self._events.put((message, exc))
            return
        if event.kind in ALARM_KINDS:
            self._quiet.clear()  # before the put: the worker sets it once it is done
            self._events.put((message, event))
            return
        # a fix needs no database write before its PUBACK (the next one replaces it):
        # its worker acknowledges the fixes in a batch as soon as it wakes, and should
        # it fall behind, this thread does — so they never fill the broker's window
        with self._ack_lock:
            self._unacked.append((message.mid, message.qos))
            due = self._unacked if len(self._unacked) >= ACK_BACKLOG else []
            if due:
                self._unacked = []
        for mid, qos in due:
            client.ack(mid, qos)
        self._fixes.put(event)

    # -- band events ---------------------------------------------------------------------------

    def _alarm_loop(self) -> None:
        while self._running.is_set() or not self._events.empty():
            try:
                first = self._events.get(timeout=0.1)
            except queue.Empty:
                continue
            self._quiet.clear()
            try:
                self._store(_drain(self._events, first, self.settings.batch))
            finally:
                if self._events.empty():
                    self._quiet.set()

    def _store(self, batch: list[tuple[Any, BandEvent | DeviceMessageError]]) -> None:
        alarms: list[tuple[Any, BandEvent]] = []
        for message, read in batch:
            if isinstance(read, DeviceMessageError):
                self._reject(message, read)
            else:
                alarms.append((message, read))
        if alarms:
            self._commit(alarms)

    def _fix_loop(self) -> None:
        while self._running.is_set() or not self._fixes.empty():
            try:
                first = self._fixes.get(timeout=0.1)
            except queue.Empty:
                continue
            self._ack_fixes()
            # a call being stored goes first (the GIL is one for all threads); not for
            # ever, should the database be away and the call retried
            self._quiet.wait(QUIET_WAIT)
            batch = _drain(self._fixes, first, self.settings.batch)
            self._ack_fixes()
            self._note(batch)

    def _ack_fixes(self) -> None:
        """Acknowledge the fixes read so far (in one go: one wake of paho's thread)."""
        with self._ack_lock:
            due, self._unacked = self._unacked, []
        client = self._client
        if client is None:  # stopped: the broker sends them again on the next start
            return
        for mid, qos in due:
            client.ack(mid, qos)

    def _note(self, fixes: list[BandEvent]) -> None:
        mw = self._mw
        assert mw is not None
        try:
            mw.ward.receive(fixes)
        except Exception as exc:  # acknowledged already: the bands' next fixes replace them
            log.warning("%d position fixes not taken (%s)", len(fixes), exc)
            return
        self.stats["events"] += len(fixes)

    def _commit(self, part: list[tuple[Any, BandEvent]]) -> None:
        mw = self._mw
        assert mw is not None
        while True:
            try:
                mw.ward.receive([event for _message, event in part])
                break
            except HcmError as exc:  # the database is busy or away: keep them, try again
                self.stats["retries"] += 1
                log.warning("band events not stored yet (%s); retrying", exc.message)
                time.sleep(0.5)
        self.stats["events"] += len(part)
        client = self._client
        for message, event in part:
            client.publish(
                self.topics.band_ack(event.wristband_id), encode({"event": event.event_id}), qos=1
            )
            client.ack(message.mid, message.qos)

    def _reject(self, message: Any, exc: DeviceMessageError) -> None:
        mw = self._mw
        assert mw is not None
        while True:
            try:
                mw.ward.reject(message.topic, bytes(message.payload), exc.reason)
                break
            except HcmError as err:
                log.warning("unreadable message not kept yet (%s); retrying", err.message)
                time.sleep(0.5)
        self.stats["rejected"] += 1
        self._client.ack(message.mid, message.qos)

    # -- handheld requests -------------------------------------------------------------------

    def _request_loop(self) -> None:
        while self._running.is_set() or not self._requests.empty():
            try:
                message = self._requests.get(timeout=0.1)
            except queue.Empty:
                continue
            self._answer(message)

    def _answer(self, message: Any) -> None:
        device = self.topics.part(message.topic, 1)
        request_id: Any = None
        try:
            data = decode(message.topic, message.payload)
            request_id = data.get("id")
            result = self._do(message.topic, data)
            reply: dict[str, Any] = {"id": request_id, "ok": True, "result": result}
        except DeviceMessageError as exc:
            self._reject(message, exc)
            self._reply(device, {"id": request_id, "ok": False, "error": exc.details()})
            return
        except HcmError as exc:
            reply = {"id": request_id, "ok": False, "error": exc.details()}
        except Exception as exc:  # never let one request stop the worker
            log.exception("handheld request on %s failed", message.topic)
            reply = {
                "id": request_id,
                "ok": False,
                "error": {"error": type(exc).__name__, "message": "internal error", "hint": ""},
            }
        self.stats["requests"] += 1
        self._reply(device, reply)
        self._client.ack(message.mid, message.qos)

    def _reply(self, device: str, reply: dict[str, Any]) -> None:
        self._client.publish(self.topics.handheld_reply(device), encode(_plain(reply)), qos=1)

    def _do(self, topic: str, data: dict[str, Any]) -> Any:
        mw = self._mw
        assert mw is not None
        ward = mw.ward
        op = data.get("op")
        if op == "orders":
            return [o.model_dump(mode="json") for o in ward.orders(_text(topic, data, "band"))]
        if op == "verify":
            verdict = ward.verify(scan_from(topic, data))
            return {**verdict.model_dump(mode="json"), "ok": verdict.ok, "failed": verdict.failed}
        if op == "begin":
            return ward.begin(scan_from(topic, data)).model_dump(mode="json")
        if op == "check":
            execution = _text(topic, data, "execution")
            return ward.check(execution, scan_from(topic, data)).model_dump(mode="json")
        if op == "execute":
            return ward.execute(scan_from(topic, data)).model_dump(mode="json")
        if op == "abandon":
            return ward.abandon(
                _text(topic, data, "execution"),
                reason=_text(topic, data, "reason"),
                actor=_text(topic, data, "nurse"),
            ).model_dump(mode="json")
        if op == "acknowledge":
            alarm = ward.acknowledge(_text(topic, data, "alarm"), _text(topic, data, "nurse"))
            return alarm.model_dump(mode="json")
        if op == "alarms":
            return [a.model_dump(mode="json") for a in ward.alarms()]
        if op == "location":
            where = ward.location(_text(topic, data, "band"))
            return None if where is None else where.model_dump(mode="json")
        if op == "summary":
            # the inpatient kiosk: by the band scanned, or by the health card read
            if isinstance(data.get("card"), str) and data["card"]:
                found = ward.summary(card_number=data["card"], actor=f"kiosk:{topic}"[:40])
            else:
                band = _text(topic, data, "band")
                found = ward.summary(wristband_id=band, actor=f"kiosk:{topic}"[:40])
            return found.model_dump(mode="json")
        raise DeviceMessageError(
            f"request on {topic} asks for {op!r}", source=topic, reason=f"unknown op {op!r}"
        )

    # -- what the middleware tells devices -----------------------------------------------

    @hookimpl
    def hcm_ward_alarm(self, alarm: Alarm, change: str) -> None:
        client = self._client
        if client is None:
            return
        body = {"change": change, "alarm": alarm.model_dump(mode="json")}
        client.publish(self.topics.station_alarms, encode(body), qos=1)
        status = {
            "band": alarm.wristband_id,
            "alarm": None
            if alarm.state == "acknowledged"
            else {"id": alarm.alarm_id, "state": alarm.state, "level": alarm.level},
        }
        client.publish(
            self.topics.band_status(alarm.wristband_id), encode(status), qos=1, retain=True
        )
        if change == "acknowledged":
            client.publish(
                self.topics.band_ack(alarm.wristband_id),
                encode(
                    {"alarm": alarm.alarm_id, "state": "acknowledged", "by": alarm.acknowledged_by}
                ),
                qos=1,
            )

    @hookimpl
    def hcm_ward_wristband_bound(self, binding: WristbandBinding) -> None:
        client = self._client
        if client is None:
            return
        status = {
            "band": binding.wristband_id,
            "status": binding.status,
            "ward": binding.ward,
            "bed": binding.bed,
            "alarm": None,
        }
        client.publish(
            self.topics.band_status(binding.wristband_id), encode(status), qos=1, retain=True
        )


def _drain(source: queue.Queue[Any], first: Any, most: int) -> list[Any]:
    """``first`` and what else waits in ``source``, up to ``most`` items."""
    batch = [first]
    while len(batch) < most:
        try:
            batch.append(source.get_nowait())
        except queue.Empty:
            break
    return batch


def _text(topic: str, data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise DeviceMessageError(
            f"request on {topic} has no {key!r}", source=topic, reason=f"missing {key!r}"
        )
    return value


def _plain(value: Any) -> Any:
    """``details()`` may hold tuples and other non-JSON values: make them JSON."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)

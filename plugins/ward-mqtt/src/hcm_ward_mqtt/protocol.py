"""The wire format: MQTT topics and JSON payloads (``docs/ward.md`` describes them).

Every payload is a UTF-8 JSON object with ``"v": 1``. Unknown keys are ignored, so a
device may send more than this version reads; a missing or wrong-typed key makes the
message unreadable (kept by the middleware, never acted on).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from hcmiddleware.errors import DeviceMessageError
from hcmiddleware.models import BandEvent, BedsideScan

__all__ = [
    "VERSION",
    "Topics",
    "decode",
    "encode",
    "event_from",
    "event_payload",
]

VERSION = 1
#: what one message may be at most (a band event is ~150 bytes)
MAX_PAYLOAD = 16 * 1024


class Topics:
    """The topic names under one prefix (``[plugins.ward-mqtt] prefix``)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix.rstrip("/")

    # band → middleware
    def band_event(self, band: str) -> str:
        """Where a band publishes its events (QoS 1)."""
        return f"{self.prefix}/band/{band}/event"

    @property
    def band_events(self) -> str:
        """The subscription for every band's events."""
        return f"{self.prefix}/band/+/event"

    # middleware → band
    def band_ack(self, band: str) -> str:
        """Where the middleware confirms a stored event to its band (QoS 1)."""
        return f"{self.prefix}/band/{band}/ack"

    def band_status(self, band: str) -> str:
        """The band's status, retained: bound, its open alarm."""
        return f"{self.prefix}/band/{band}/status"

    # handheld ↔ middleware
    def handheld_request(self, device: str) -> str:
        """Where a handheld sends requests (QoS 1)."""
        return f"{self.prefix}/handheld/{device}/request"

    @property
    def handheld_requests(self) -> str:
        """The subscription for every handheld's requests."""
        return f"{self.prefix}/handheld/+/request"

    def handheld_reply(self, device: str) -> str:
        """Where the middleware answers a handheld (QoS 1)."""
        return f"{self.prefix}/handheld/{device}/reply"

    # middleware → nurse station displays
    @property
    def station_alarms(self) -> str:
        """Every alarm change, for nurse-station displays (QoS 1)."""
        return f"{self.prefix}/station/alarms"

    def part(self, topic: str, index: int) -> str:
        """The ``index``-th level under the prefix (``band/<id>/event`` → 1 is the id)."""
        rest = topic[len(self.prefix) + 1 :] if topic.startswith(self.prefix + "/") else topic
        parts = rest.split("/")
        return parts[index] if index < len(parts) else ""


def encode(payload: dict[str, Any]) -> bytes:
    """A payload as sent: ``v`` first, compact JSON, UTF-8."""
    return json.dumps({"v": VERSION, **payload}, ensure_ascii=False, separators=(",", ":")).encode()


def decode(topic: str, raw: bytes) -> dict[str, Any]:
    """The JSON object in ``raw``; DeviceMessageError saying what is wrong otherwise."""
    if len(raw) > MAX_PAYLOAD:
        raise DeviceMessageError(
            f"message on {topic} is {len(raw)} bytes", source=topic, reason="too large"
        )
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise DeviceMessageError(
            f"message on {topic} is not UTF-8", source=topic, reason="not UTF-8"
        ) from None
    except json.JSONDecodeError as exc:
        raise DeviceMessageError(
            f"message on {topic} is not JSON", source=topic, reason=f"not JSON: {exc.msg}"
        ) from None
    if not isinstance(data, dict):
        raise DeviceMessageError(
            f"message on {topic} is not a JSON object", source=topic, reason="not an object"
        )
    if data.get("v") != VERSION:
        raise DeviceMessageError(
            f"message on {topic} is of version {data.get('v')!r}",
            source=topic,
            reason=f"version {data.get('v')!r}, not {VERSION}",
        )
    return data


def event_from(topic: str, data: dict[str, Any], band: str) -> BandEvent:
    """The band event a payload describes (the band ID comes from the topic)."""
    try:
        return BandEvent(
            event_id=data["id"],
            wristband_id=band,
            kind=data["kind"],
            at=data["at"],
            location=data.get("location"),
            battery=data.get("battery"),
            source=topic[:80],
        )
    except KeyError as exc:
        raise DeviceMessageError(
            f"band event on {topic} has no {exc.args[0]!r}",
            source=topic,
            reason=f"missing {exc.args[0]!r}",
        ) from None
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise DeviceMessageError(
            f"band event on {topic} is not valid: {where}: {first['msg']}",
            source=topic,
            reason=f"{where}: {first['msg']}"[:200],
        ) from None


def event_payload(
    event_id: str,
    kind: str,
    at: datetime,
    *,
    location: str | None = None,
    battery: int | None = None,
) -> bytes:
    """A band event as a band sends it."""
    body: dict[str, Any] = {"id": event_id, "kind": kind, "at": at.isoformat()}
    if location is not None:
        body["location"] = location
    if battery is not None:
        body["battery"] = battery
    return encode(body)


def scan_from(topic: str, data: dict[str, Any]) -> BedsideScan:
    """The bedside scan in a handheld's request."""
    raw = data.get("scan")
    if not isinstance(raw, dict):
        raise DeviceMessageError(
            f"request on {topic} has no scan", source=topic, reason="missing 'scan'"
        )
    try:
        return BedsideScan.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise DeviceMessageError(
            f"scan on {topic} is not valid: {where}: {first['msg']}",
            source=topic,
            reason=f"scan.{where}: {first['msg']}"[:200],
        ) from None

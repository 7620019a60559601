"""hcm-ward-tcp: a call-button gateway speaking a TCP line protocol into ``middleware.ward``.

The middleware listens; a vendor's gateway connects and sends one UTF-8 line per
event, fields separated by single spaces::

    CALL <band> <event-id> <ISO time> [<location>]
    POS  <band> <event-id> <ISO time> <location>
    BATT <band> <event-id> <ISO time> <percent>

Each line is answered once it is stored — ``OK <event-id>`` — or, when it cannot be
read, ``ERR <reason>`` (the line is kept by ``middleware.ward.reject``). A gateway
resends a line it got no ``OK`` for. When a nurse takes a call the middleware pushes
``ACKD <band> <alarm-id> <nurse>`` to every connected gateway.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import Field, ValidationError

from hcmiddleware import SettingsModel, hookimpl
from hcmiddleware.errors import HcmError
from hcmiddleware.models import Alarm, BandEvent

if TYPE_CHECKING:
    from hcmiddleware import Middleware

__all__ = ["NAME", "WardTcp", "WardTcpSettings", "parse_line"]

NAME = "ward-tcp"
log = logging.getLogger("hcm_ward_tcp")
_KINDS = {"CALL": "emergency", "POS": "location", "BATT": "battery"}


class WardTcpSettings(SettingsModel):
    """``[plugins.ward-tcp]``."""

    host: str = Field("127.0.0.1", description="address to listen on")
    port: int = Field(7070, ge=0, le=65535, description="0: any free port (tests)")
    max_line: int = Field(1024, ge=64, le=65536, description="longest line read, bytes")


class LineError(ValueError):
    """A line that is not one of the protocol's."""


def parse_line(line: str, source: str) -> BandEvent:
    """The band event a line describes; LineError saying why it is not one."""
    parts = line.split(" ")
    verb = parts[0]
    if verb not in _KINDS:
        raise LineError(f"unknown verb {verb[:12]!r}")
    if len(parts) < 4:
        raise LineError(f"{verb} needs band, event ID and time")
    band, event_id, when, *rest = parts[1:]
    try:
        at = datetime.fromisoformat(when)
    except ValueError:
        raise LineError(f"time {when[:40]!r} is not ISO 8601") from None
    fields: dict[str, Any] = {}
    if verb == "BATT":
        if len(rest) != 1 or not rest[0].isdigit():
            raise LineError("BATT needs the battery percentage")
        fields["battery"] = int(rest[0])
    elif verb == "POS" and not rest:
        raise LineError("POS needs a location")
    elif rest:
        fields["location"] = " ".join(rest)
    try:
        return BandEvent(
            event_id=event_id,
            wristband_id=band,
            kind=_KINDS[verb],  # type: ignore[arg-type]
            at=at,
            source=source,
            **fields,
        )
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        raise LineError(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None


class WardTcp:
    """The plugin object (the entry point names this class; created with no args)."""

    hcm_plugin_name = NAME

    def __init__(self) -> None:
        self.settings = WardTcpSettings()
        self._mw: Middleware | None = None
        self._server: socketserver.ThreadingTCPServer | None = None
        self._gateways: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def address(self) -> tuple[str, int]:
        """Where the plugin listens (the port chosen when the setting is 0)."""
        assert self._server is not None, "the plugin is not configured"
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @hookimpl
    def hcm_add_config(self, settings: Any) -> None:
        settings.add(NAME, WardTcpSettings)

    @hookimpl
    def hcm_configure(self, middleware: Middleware) -> None:
        found = middleware.plugin_settings(NAME)
        if isinstance(found, WardTcpSettings):
            self.settings = found
        self._mw = middleware
        plugin = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                plugin._serve(self.connection, self.rfile, f"tcp:{self.client_address[0]}")

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        server = socketserver.ThreadingTCPServer((self.settings.host, self.settings.port), Handler)
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, name="hcm-ward-tcp", daemon=True).start()

    @hookimpl
    def hcm_unconfigure(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self._lock:
            for gateway in self._gateways:
                gateway.close()
            self._gateways.clear()

    def _serve(self, conn: socket.socket, lines: Any, source: str) -> None:
        with self._lock:
            self._gateways.add(conn)
        try:
            while True:
                raw = lines.readline(self.settings.max_line + 1)
                if not raw:
                    return
                reply = self._line(raw, source)
                with self._lock:
                    conn.sendall(reply.encode("utf-8") + b"\n")
        except OSError:
            return
        finally:
            with self._lock:
                self._gateways.discard(conn)

    def _line(self, raw: bytes, source: str) -> str:
        mw = self._mw
        assert mw is not None
        try:
            if len(raw) > self.settings.max_line:
                raise LineError(f"line longer than {self.settings.max_line} bytes")
            event = parse_line(raw.decode("utf-8").rstrip("\r\n"), source)
        except UnicodeDecodeError:
            return self._reject(raw, source, "not UTF-8")
        except LineError as exc:
            return self._reject(raw, source, str(exc))
        try:
            mw.ward.receive([event])
        except HcmError as exc:  # not stored: no OK, the gateway sends it again
            log.warning("gateway event not stored: %s", exc.message)
            return f"RETRY {event.event_id}"
        return f"OK {event.event_id}"

    def _reject(self, raw: bytes, source: str, reason: str) -> str:
        mw = self._mw
        assert mw is not None
        mw.ward.reject(source, raw, reason)
        return f"ERR {reason}"

    @hookimpl
    def hcm_ward_alarm(self, alarm: Alarm, change: str) -> None:
        if change != "acknowledged":
            return
        line = f"ACKD {alarm.wristband_id} {alarm.alarm_id} {alarm.acknowledged_by}\n".encode()
        with self._lock:
            for gateway in list(self._gateways):
                try:
                    gateway.sendall(line)
                except OSError:
                    self._gateways.discard(gateway)

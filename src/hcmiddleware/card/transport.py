"""Transports: the one seam between the card session and a card.

A transport carries a command APDU to a card and returns the raw response. PC/SC
(:mod:`hcmiddleware.card.pcsc`), the in-process emulator and the tracing/replaying
transports here all have the same three members.

The APDU log is JSON lines: a header ``{"atr": hex}`` then one entry per APDU
``{"n", "c", "r", "us"}`` (command, response, microseconds). Masked bytes are written as
``**`` so their count stays visible. Key-derived material (authentication
cryptograms, secure-messaging data, GET RESPONSE data) is always masked unless the log
is explicitly made with ``secrets=True`` (test keys only); record contents are masked
unless ``personal=True``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any, Protocol, runtime_checkable

from hcmiddleware.errors import CardAbsentError, CardProtocolError

__all__ = [
    "ReplayTransport",
    "TraceEntry",
    "TracingTransport",
    "Transport",
    "mask_exchange",
    "read_trace",
]

MASK = "**"

_INS_EXTERNAL_AUTH = 0x82
_INS_INTERNAL_AUTH = 0x88
_INS_GET_RESPONSE = 0xC0
_READS = {0xB0, 0xB2}
_WRITES = {0xD6, 0xDC, 0xE2}


@runtime_checkable
class Transport(Protocol):
    """A connection to one card."""

    @property
    def atr(self) -> bytes:
        """The card's answer-to-reset."""
        ...

    def transmit(self, apdu: bytes) -> bytes:
        """Send a command APDU; return the response (data ‖ SW1 SW2)."""
        ...

    def close(self) -> None:
        """Release the card; the transport is unusable afterwards."""
        ...


def _hex(data: bytes, masked: bool) -> str:
    return MASK * len(data) if masked else data.hex().upper()


def mask_exchange(
    command: bytes, response: bytes, *, personal: bool = False, secrets: bool = False
) -> tuple[str, str]:
    """Hex of a command and its response with sensitive bytes replaced by ``**``."""
    header, body = command[:5], command[5:]
    data, sw = response[:-2], response[-2:]
    ins = command[1] if len(command) > 1 else 0
    cla = command[0] if command else 0
    sm = bool(cla & 0x0C) and cla != 0x84  # 84 carries the plain index-mark commands
    mask_cmd = (not secrets and (ins == _INS_EXTERNAL_AUTH or sm)) or (
        not personal and ins in _WRITES
    )
    mask_resp = (not secrets and ins in (_INS_INTERNAL_AUTH, _INS_GET_RESPONSE)) or (
        not personal and ins in _READS
    )
    return (
        header.hex().upper() + _hex(body, mask_cmd),
        _hex(data, mask_resp) + sw.hex().upper(),
    )


class TraceEntry(dict[str, Any]):
    """One logged APDU: ``n`` (sequence), ``c`` and ``r`` (hex, maybe masked), ``us``."""


class TracingTransport:
    """Wraps a transport and writes every APDU to a JSON-lines log.

    ``sink`` is an open text file or a path (appended to). Entries are also kept in
    ``entries`` for tests and the CLI.
    """

    def __init__(
        self,
        inner: Transport,
        sink: IO[str] | str | Path | None = None,
        *,
        personal: bool = False,
        secrets: bool = False,
    ) -> None:
        self.inner = inner
        self.personal = personal
        self.secrets = secrets
        self.entries: list[TraceEntry] = []
        self._own = isinstance(sink, str | Path)
        self._sink: IO[str] | None = (
            # held open for the transport's life; close() closes it
            Path(sink).open("a", encoding="utf-8")  # noqa: SIM115
            if isinstance(sink, str | Path)
            else sink
        )
        self._write({"atr": inner.atr.hex().upper()})

    @property
    def atr(self) -> bytes:
        """The inner transport's ATR."""
        return self.inner.atr

    def _write(self, record: dict[str, Any]) -> None:
        if self._sink is not None:
            self._sink.write(json.dumps(record) + "\n")
            self._sink.flush()

    def transmit(self, apdu: bytes) -> bytes:
        """Send through the inner transport and log the exchange (also a failed one)."""
        start = time.perf_counter()
        try:
            response = self.inner.transmit(apdu)
        except CardAbsentError:
            c, _ = mask_exchange(apdu, b"\x00\x00", personal=self.personal, secrets=self.secrets)
            self._log(c, "", start, error="card absent")
            raise
        c, r = mask_exchange(apdu, response, personal=self.personal, secrets=self.secrets)
        self._log(c, r, start)
        return response

    def _log(self, c: str, r: str, start: float, error: str | None = None) -> None:
        entry = TraceEntry(
            n=len(self.entries) + 1, c=c, r=r, us=round((time.perf_counter() - start) * 1e6)
        )
        if error:
            entry["error"] = error
        self.entries.append(entry)
        self._write(entry)

    def close(self) -> None:
        """Close the inner transport and the log file if this object opened it."""
        self.inner.close()
        if self._own and self._sink is not None:
            self._sink.close()


def read_trace(source: str | Path | Iterable[str]) -> tuple[bytes, list[TraceEntry]]:
    """The ATR and the entries of an APDU log; a malformed log is a CardProtocolError."""
    lines = (
        Path(source).read_text(encoding="utf-8").splitlines()
        if isinstance(source, str | Path)
        else list(source)
    )
    atr = b""
    entries: list[TraceEntry] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if "atr" in record:
                atr = bytes.fromhex(record["atr"])
            else:
                entries.append(
                    TraceEntry(
                        n=int(record["n"]),
                        c=str(record["c"]),
                        r=str(record["r"]),
                        us=int(record.get("us", 0)),
                        **({"error": record["error"]} if "error" in record else {}),
                    )
                )
        except (ValueError, KeyError, TypeError):
            raise CardProtocolError(
                f"line {number} of the APDU log is not a log entry",
                hint="check the file is an APDU log written by hcm",
            ) from None
    return atr, entries


def _matches(pattern: str, actual: str) -> bool:
    if len(pattern) != len(actual):
        return False
    return all(
        p in (MASK, a)
        for p, a in zip(
            (pattern[i : i + 2] for i in range(0, len(pattern), 2)),
            (actual[i : i + 2] for i in range(0, len(actual), 2)),
            strict=True,
        )
    )


class ReplayTransport:
    """Plays an APDU log back: each command must match the log (masked bytes match any).

    A command that differs from the log, a log that runs out, or a masked response is a
    :class:`CardProtocolError`; a logged pull is a :class:`CardAbsentError`.
    """

    def __init__(self, atr: bytes, entries: list[TraceEntry]) -> None:
        self._atr = atr
        self._entries = entries
        self.position = 0

    @classmethod
    def load(cls, path: str | Path) -> ReplayTransport:
        """A replay of the log at ``path``."""
        atr, entries = read_trace(path)
        return cls(atr, entries)

    @property
    def atr(self) -> bytes:
        """The logged ATR."""
        return self._atr

    def transmit(self, apdu: bytes) -> bytes:
        """The logged response to the next logged command."""
        if self.position >= len(self._entries):
            raise CardProtocolError("the replayed card has no more logged answers")
        entry = self._entries[self.position]
        self.position += 1
        if not _matches(entry["c"], apdu.hex().upper()):
            # Only the header is named: the data may be personal or key-derived.
            raise CardProtocolError(
                f"APDU {entry['n']} differs from the log: sent header "
                f"{apdu[:4].hex().upper()}, logged {entry['c'][:8]}"
            )
        if "error" in entry:
            raise CardAbsentError("the card was pulled at this point of the log")
        if MASK in entry["r"]:
            raise CardProtocolError(
                f"APDU {entry['n']}'s answer is masked in the log and cannot be replayed",
                hint="record the log with personal=True (and secrets=True for test keys)",
            )
        return bytes.fromhex(entry["r"])

    @property
    def exhausted(self) -> bool:
        """True when every logged APDU has been replayed."""
        return self.position == len(self._entries)

    def close(self) -> None:
        """Nothing to release."""

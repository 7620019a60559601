"""Fault switches: make the reference HIS misbehave the ways real ones do, on purpose.

Tests flip a switch, run the adapter, and check it fails cleanly. Every switch can be
limited to the next ``times`` requests, so a test can show that a retry gets through.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import Literal

__all__ = ["Fault", "FaultSwitch"]


@dataclass(frozen=True)
class Fault:
    """What to do wrong with one request (all off by default).

    * ``nak``: refuse it — HL7 answers ``MSA-1`` = this code (``AE``/``AR``), FHIR an
      OperationOutcome with HTTP 422 (``AE``) or 400 (``AR``); nothing is stored.
    * ``delay``: wait this many seconds before answering (a slow HIS).
    * ``drop``: close the connection without answering, ``"before"`` or ``"after"``
      the request was carried out (after: the answer is lost, the work is done).
    * ``garbage``: answer with bytes that are not a message.
    * ``truncate``: answer with the first half of the message and close.
    * ``mislabel``: encode the answer in GB 18030 while declaring UTF-8.
    * ``writes_only``: leave queries (HL7 QBP, HTTP GET) alone.
    """

    nak: Literal["AE", "AR"] | None = None
    delay: float = 0.0
    drop: Literal["before", "after"] | None = None
    garbage: bool = False
    truncate: bool = False
    mislabel: bool = False
    writes_only: bool = False


NO_FAULT = Fault()


class FaultSwitch:
    """The reference HIS's fault switch board (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fault = NO_FAULT
        self._times: int | None = None
        #: how many requests arrived (answered or not), for tests that count resends
        self.requests = 0

    def set(
        self, fault: Fault | None = None, *, times: int | None = None, **fields: object
    ) -> None:
        """Switch a fault on, for the next ``times`` requests (``None``: until cleared)."""
        with self._lock:
            self._fault = replace(fault or NO_FAULT, **fields)  # type: ignore[arg-type]
            self._times = times

    def clear(self) -> None:
        """Behave again."""
        self.set(NO_FAULT)

    def take(self, *, write: bool = True) -> Fault:
        """The fault for the request that just arrived (counts it, uses up ``times``)."""
        with self._lock:
            self.requests += 1
            fault = self._fault
            if fault.writes_only and not write:
                return NO_FAULT
            if self._times is not None:
                self._times -= 1
                if self._times <= 0:
                    self._fault, self._times = NO_FAULT, None
            return fault

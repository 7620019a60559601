"""Where the demo's time goes: each step's wall time split among the parts it used.

The card's share is the time inside the card transport's ``transmit`` (pcscd, vpcd and
the emulated card's answers, or the in-process card); the HIS's, the bank's, the
insurer's, the e-card platform's and the printers' are the time inside their hook
calls (the adapter, the wire and the peer); the face models' is the time of the face
check itself; the rest — the index, the SAM cryptograms, the journal, the audit log,
the flows — is the middleware's.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hcmiddleware.card.transport import Transport
    from hcmiddleware.dispatch import CallRecord

__all__ = ["SHARES", "Clock", "StepTime", "TimedTransport"]

#: The parts a step's time is split among, in the order they are printed.
SHARES = ("card", "his", "bank", "insurer", "ehc", "face", "printer", "middleware")

_HOOK_SHARES = (
    ("hcm_his_", "his"),
    ("hcm_bank_", "bank"),
    ("hcm_insurance_", "insurer"),
    ("hcm_ehc_", "ehc"),
    ("hcm_print", "printer"),
)


@dataclass
class StepTime:
    """One step's wall time (seconds) and its parts."""

    total: float = 0.0
    parts: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def shares_ms(self) -> dict[str, float]:
        """Milliseconds per part; ``middleware`` is what the others leave."""
        out = {name: round(self.parts.get(name, 0.0) * 1000, 1) for name in SHARES[:-1]}
        rest = self.total * 1000 - sum(out.values())
        out["middleware"] = round(max(rest, 0.0), 1)
        return out


class Clock:
    """Times steps; told of every hook call (a dispatcher observer) and card APDU."""

    def __init__(self) -> None:
        self.steps: dict[int, StepTime] = {}
        self._current: StepTime | None = None
        self._number = 0
        #: told of each part counted (the step's number), after it is counted
        self.listener: Callable[[int], None] | None = None

    def observe(self, record: CallRecord) -> None:
        """A dispatcher observer: a hook call's time goes to its part."""
        for prefix, share in _HOOK_SHARES:
            if record.hook.startswith(prefix):
                self.add(share, record.duration)
                return

    def add(self, share: str, seconds: float) -> None:
        """Count ``seconds`` to ``share`` in the running step."""
        step = self._current
        if step is None:
            return
        step.parts[share] += seconds
        if self.listener is not None:
            self.listener(self._number)

    @contextmanager
    def step(self, number: int) -> Iterator[StepTime]:
        """Time step ``number``."""
        timing = self.steps[number] = StepTime()
        self._current, self._number = timing, number
        started = time.perf_counter()
        try:
            yield timing
        finally:
            timing.total = time.perf_counter() - started
            self._current = None

    @contextmanager
    def part(self, share: str) -> Iterator[None]:
        """Count the block's time to ``share``."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(share, time.perf_counter() - started)


class TimedTransport:
    """A card transport whose ``transmit`` time is counted as the card's."""

    def __init__(self, inner: Transport, clock: Clock) -> None:
        self.inner = inner
        self.clock = clock
        self.reader: Any = getattr(inner, "reader", "in-process")

    @property
    def atr(self) -> bytes:
        """The card's ATR."""
        return self.inner.atr

    def transmit(self, apdu: bytes) -> bytes:
        """Send one APDU, timed."""
        started = time.perf_counter()
        try:
            return self.inner.transmit(apdu)
        finally:
            self.clock.add("card", time.perf_counter() - started)

    def close(self) -> None:
        """Release the card."""
        self.inner.close()


def timed(clock: Clock, share: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with its time counted to ``share``."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with clock.part(share):
            return fn(*args, **kwargs)

    return wrapper

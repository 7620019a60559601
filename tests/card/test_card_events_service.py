"""Card events while the PC/SC service comes and goes: pcscd started after the events,
stopped under them with a card in the reader, and started again.

This module starts and stops pcscd itself (the machine's one PC/SC socket), so it
needs no other pcscd running.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path
from types import SimpleNamespace

import pytest
from smartcard import scard

from hcmiddleware.card.emulator import EmulatedCard
from hcmiddleware.card.monitor import CardEvents
from hcmiddleware.card.vpcd import VpcdCard
from hcmiddleware.errors import ReaderError
from hcmiddleware.sam.samples import TEST_ISSUER_KEYS as KEYS
from hcmiddleware.testing.pcscd import USER_READER, Pcscd

PROFILE = Path(str(files("hcmiddleware.card.samples"))) / "resident-profile.json"


class Seen:
    """What the callbacks were given, in order, and a way to wait for it."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self._changed = threading.Condition()

    def inserted(self, reader: str, atr: bytes) -> None:
        assert atr  # the ATR comes with the insertion
        with self._changed:
            self.events.append(("inserted", reader))
            self._changed.notify_all()

    def removed(self, reader: str) -> None:
        with self._changed:
            self.events.append(("removed", reader))
            self._changed.notify_all()

    def wait_for(self, expected: list[tuple[str, str]], timeout: float = 10.0) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: self.events == expected, timeout):
                raise AssertionError(f"saw {self.events}, expected {expected}")


@pytest.fixture
def no_service() -> Iterator[None]:
    if Pcscd.running():
        pytest.fail("a pcscd runs already: this module needs the PC/SC socket to itself")
    yield
    assert not Pcscd.running(), "a test of this module left pcscd running"


def _card() -> EmulatedCard:
    return EmulatedCard.from_files(PROFILE, KEYS)


def test_without_the_service_start_says_so_unless_asked_to_wait(no_service: None) -> None:
    seen = Seen()
    events = CardEvents(seen.inserted, seen.removed)
    with pytest.raises(ReaderError, match="not running") as caught:
        events.start()
    assert "pcscd" in (caught.value.hint or "")
    assert not events.on
    waiting = CardEvents(seen.inserted, seen.removed, wait_for_service=True, retry=0.1)
    with waiting:  # no error: it waits
        time.sleep(0.3)
        assert not waiting.on
        assert "not running" in (waiting.off_reason or "")
    assert seen.events == []


def test_events_begin_once_the_service_answers(no_service: None) -> None:
    seen = Seen()
    with CardEvents(seen.inserted, seen.removed, wait_for_service=True, retry=0.1) as events:
        time.sleep(0.3)
        assert not events.on
        with Pcscd() as daemon, VpcdCard(_card(), daemon.user_port):
            seen.wait_for([("inserted", USER_READER)])
            assert events.on
            assert events.off_reason is None


def test_a_lost_service_removes_the_card_and_the_events_come_back(
    no_service: None, caplog: pytest.LogCaptureFixture
) -> None:
    seen = Seen()
    inserted, removed = ("inserted", USER_READER), ("removed", USER_READER)
    first = Pcscd().start()
    try:
        events = CardEvents(seen.inserted, seen.removed, retry=0.1)
        with events:
            link = VpcdCard(_card(), first.user_port)
            link.start()
            seen.wait_for([inserted])
            assert events.cards() == {USER_READER: _card().atr}
            first.stop()  # pcscd restarted by an upgrade, with the card still in
            # nobody can say the card is still there: removed, and the events are off
            seen.wait_for([inserted, removed])
            assert not events.on
            assert events.cards() == {}
            link.stop()
            time.sleep(0.5)  # a few retries while the service is away
            with Pcscd() as second:
                with VpcdCard(_card(), second.user_port):
                    seen.wait_for([inserted, removed, inserted])
                    assert events.on
                seen.wait_for([inserted, removed, inserted, removed])
                said = [
                    r.getMessage() for r in caplog.records if r.name == "hcmiddleware.card.monitor"
                ]
                events.stop()
    finally:
        first.stop()
    # said once per outage, not once per retry, and said when they came back
    assert [m.split(":")[0] for m in said] == ["card events are off", "card events are on again"]
    # PC/SC's words and code: which depends on the moment pcscd went (a broken link,
    # no service, or the refusal of a pcscd on its way out)
    assert re.search(r"\(0x8010[0-9A-F]{4}\)", said[0]), said


def test_a_card_present_at_start_is_reported_before_start_returns(no_service: None) -> None:
    seen = Seen()
    with Pcscd() as daemon, VpcdCard(_card(), daemon.user_port):
        daemon.wait_card(True)
        with CardEvents(seen.inserted, seen.removed):
            assert seen.events == [("inserted", USER_READER)]
        time.sleep(0.2)
        assert seen.events == [("inserted", USER_READER)]  # stopped: nothing more


# --- what one change of a reader's state means -------------------------------------------

_CONSTANTS = SimpleNamespace(
    **{name: getattr(scard, name) for name in dir(scard) if name.startswith("SCARD_STATE_")}
)


def _word(count: int, *flags: int) -> int:
    word = count << 16
    for flag in flags:
        word |= flag
    return word


def test_a_card_swapped_between_two_waits_is_removed_then_inserted() -> None:
    """PC/SC counts a reader's insertions and removals in the state word's high half: a
    card present at both waits with the count moved on is another card (or the same
    one put back), and the page must hear both."""
    seen = Seen()
    events = CardEvents(seen.inserted, seen.removed)
    present: dict[str, tuple[bytes, int]] = {}
    s = _CONSTANTS
    events._update(s, "R", _word(3, s.SCARD_STATE_PRESENT), b"\x3b\x01", present)
    events._update(s, "R", _word(3, s.SCARD_STATE_PRESENT, s.SCARD_STATE_CHANGED), b"\x3b\x01",
                   present)  # fmt: skip  # same card, another change (powered): nothing
    assert seen.events == [("inserted", "R")]
    events._update(s, "R", _word(5, s.SCARD_STATE_PRESENT), b"\x3b\x02", present)
    assert seen.events == [("inserted", "R"), ("removed", "R"), ("inserted", "R")]
    assert present["R"] == (b"\x3b\x02", 5)
    events._update(s, "R", _word(6, s.SCARD_STATE_EMPTY), b"", present)
    events._update(s, "R", _word(6, s.SCARD_STATE_UNAVAILABLE), b"", present)
    assert seen.events[-1] == ("removed", "R")
    assert present == {}


def test_a_reader_that_becomes_unavailable_with_a_card_reports_it_removed() -> None:
    seen = Seen()
    events = CardEvents(seen.inserted, seen.removed)
    present: dict[str, tuple[bytes, int]] = {}
    s = _CONSTANTS
    events._update(s, "R", _word(1, s.SCARD_STATE_PRESENT), b"\x3b", present)
    events._update(
        s, "R", _word(1, s.SCARD_STATE_PRESENT, s.SCARD_STATE_UNAVAILABLE), b"\x3b", present
    )
    assert seen.events == [("inserted", "R"), ("removed", "R")]


def test_a_callback_that_raises_does_not_stop_the_events(
    no_service: None, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []

    def failing(reader: str, atr: bytes) -> None:
        calls.append("inserted")
        raise RuntimeError("the HIS's handler failed")

    with Pcscd() as daemon, CardEvents(failing, lambda reader: calls.append("removed")):
        for _ in range(2):
            with VpcdCard(_card(), daemon.user_port):
                daemon.wait_card(True)
            daemon.wait_card(False)
        deadline = time.monotonic() + 5
        while calls != ["inserted", "removed"] * 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert calls == ["inserted", "removed"] * 2
    assert "a card event callback failed" in caplog.text

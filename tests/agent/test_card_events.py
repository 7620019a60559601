"""``hcm agent serve`` started before the PC/SC service, which then comes and goes: the
browser's event stream hears the cards once the service answers, and again after it
was restarted.

This module starts and stops pcscd itself (the machine's one PC/SC socket).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from hcmiddleware.card.emulator import EmulatedCard
from hcmiddleware.card.vpcd import VpcdCard
from hcmiddleware.testing.pcscd import USER_READER, Pcscd

from .conftest import KEYS, PROFILE, free_port, serving, write_config


class Stream:
    """The agent's ``/v1/events`` as a browser tab reads it, in a thread."""

    def __init__(self, base: str, token: str) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(base, token), daemon=True)
        self._open = threading.Event()
        self._thread.start()
        assert self._open.wait(10), "the event stream did not open"

    def _read(self, base: str, token: str) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.stream("GET", f"{base}/v1/events", headers=headers, timeout=30) as answer:
            assert answer.status_code == 200
            self._open.set()
            kind = ""
            for line in answer.iter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    with self._changed:
                        self.events.append((kind, json.loads(line[6:])))
                        self._changed.notify_all()

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.events]

    def wait_for(self, kinds: list[str], timeout: float = 15.0) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: self.kinds() == kinds, timeout):
                raise AssertionError(f"the stream saw {self.kinds()}, expected {kinds}")


def test_the_stream_hears_cards_once_pcscd_is_up_and_again_after_a_restart(
    tmp_path: Path,
) -> None:
    if Pcscd.running():
        pytest.fail("a pcscd runs already: this module needs the PC/SC socket to itself")
    port = free_port()
    (tmp_path / "it.token").write_text(secrets.token_urlsafe(32), encoding="utf-8")
    it = {"token": {"file": "it.token"}, "user": "u-it", "role": "administrator",
          "terminal": "it-1"}  # fmt: skip
    # the agent's own rate limit, not the tight one of the rate-limit tests
    config = write_config(tmp_path, port, agent={"port": port}, **{"agent.tokens.it-1": it})
    token = (tmp_path / "desk.token").read_text(encoding="utf-8").strip()
    base = f"http://127.0.0.1:{port}"

    def console() -> dict[str, Any]:
        """The card events' line of the console's readers panel."""
        answer = httpx.get(
            f"{base}/v1/console/status",
            headers={"Authorization": f"Bearer {(tmp_path / 'it.token').read_text()}"},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        events: dict[str, Any] = answer.json()["panels"]["readers"]["data"]["card_events"]
        return events

    with serving(config) as agent:  # no PC/SC service yet, as on a workstation at boot
        stream = Stream(base, token)
        off = console()
        assert off["on"] is False
        assert "not running" in off["off_reason"]
        card = EmulatedCard.from_files(PROFILE, KEYS)
        with Pcscd() as first:
            with VpcdCard(card, first.user_port):
                stream.wait_for(["card.inserted"])
                assert console() == {"on": True, "off_reason": None}
            stream.wait_for(["card.inserted", "card.removed"])
        with Pcscd() as second, VpcdCard(card, second.user_port):  # pcscd restarted
            stream.wait_for(["card.inserted", "card.removed", "card.inserted"])
            assert stream.events[-1][1]["reader"] == USER_READER
            assert "present_at_connect" not in stream.events[-1][1]
            # a page opened (or reloaded) now learns of the card already in the reader
            late = Stream(base, token)
            late.wait_for(["card.inserted"])
            assert late.events[0][1] == {
                "reader": USER_READER, "atr": card.atr.hex().upper(), "present_at_connect": True
            }  # fmt: skip
            # the agent still reads the card through the restarted service (the issuer's
            # file, which needs no SAM)
            read = httpx.get(
                f"{base}/v1/card/issuer",
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
            )
            assert read.status_code == 200, read.text
            assert read.json()["card_number"]
        stream.wait_for(["card.inserted", "card.removed", "card.inserted", "card.removed"])
        late.wait_for(["card.inserted", "card.removed"])
        # and one opened with the reader empty is told nothing
        empty = Stream(base, token)
        time.sleep(0.5)
        assert empty.events == []
        agent.terminate()
        _, stderr = agent.communicate(timeout=30)
    assert "Traceback" not in stderr, stderr
    assert "card events are off" in stderr  # the log says when the cards cannot be heard
    assert stderr.count("card events are on") == 2, stderr  # and when they can again


def test_the_events_keep_their_place_across_many_restarts(tmp_path: Path) -> None:
    """Three restarts of pcscd in a row, a card in the reader across each: the stream
    alternates inserted and removed, never two of one kind in a row."""
    if Pcscd.running():
        pytest.fail("a pcscd runs already: this module needs the PC/SC socket to itself")
    port = free_port()
    config = write_config(tmp_path, port)
    token = (tmp_path / "desk.token").read_text(encoding="utf-8").strip()
    with serving(config):
        stream = Stream(f"http://127.0.0.1:{port}", token)
        card = EmulatedCard.from_files(PROFILE, KEYS)
        for round_ in range(1, 4):
            with Pcscd() as daemon:
                link = VpcdCard(card, daemon.user_port)
                link.start()
                stream.wait_for(["card.inserted", "card.removed"] * (round_ - 1)
                                + ["card.inserted"])  # fmt: skip
            # pcscd stopped with the card in: the page must not keep showing it
            stream.wait_for(["card.inserted", "card.removed"] * round_)
            link.stop()
            time.sleep(0.1)

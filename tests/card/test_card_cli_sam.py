"""``hcm card read --sam-reader``: the SAM card in reader 1, the user card in reader 0.

Both emulated and behind the real pcscd + vpcd; the user card comes from a card image
made by ``hcm card personalise`` (in one test emulated by ``hcm card emulate --image``
in its own process), so the issuer's master keys are only in the SAM.
"""

from __future__ import annotations

import json
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from card_samples import KEYS, PROFILE
from click.testing import CliRunner

from hcmiddleware.card.emulator import EmulatedCard
from hcmiddleware.card.vpcd import VpcdCard
from hcmiddleware.cli import main
from hcmiddleware.sam.emulated import EmulatedSam
from hcmiddleware.sam.keyset import load_keyset
from hcmiddleware.testing.pcscd import SAM_READER, USER_READER, Pcscd

pytestmark = pytest.mark.pcsc

PIN_ENV = "HCM_TEST_SAM_PIN"
#: Not the default test PIN: "123456" also occurs in the sample card's data.
PIN = "802517"


@pytest.fixture(scope="module")
def pcscd() -> Iterator[Pcscd]:
    with Pcscd() as daemon:
        yield daemon


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("image") / "card.json"
    args = ["card", "personalise", "--profile", str(PROFILE), "--issuer-keys", str(KEYS)]
    result = CliRunner().invoke(main, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


class Terminal:
    """The emulated user card and SAM card, each in its reader."""

    def __init__(self, card: EmulatedCard, sam: EmulatedSam) -> None:
        self.card = card
        self.sam = sam


@pytest.fixture
def terminal(pcscd: Pcscd, image: Path) -> Iterator[Terminal]:
    pcscd.wait_card(False)
    pcscd.wait_card(False, SAM_READER)
    inserted = Terminal(EmulatedCard.from_image(image), EmulatedSam(load_keyset(KEYS), pin=PIN))
    with VpcdCard(inserted.card, pcscd.user_port), VpcdCard(inserted.sam, pcscd.sam_port):
        pcscd.wait_card(True)
        pcscd.wait_card(True, SAM_READER)
        yield inserted
    pcscd.wait_card(False)
    pcscd.wait_card(False, SAM_READER)


def read(*args: str, pin: str | None = PIN) -> Any:
    env = {PIN_ENV: pin} if pin is not None else {PIN_ENV: ""}
    return CliRunner().invoke(main, ["card", "read", *args], env=env)


def test_read_with_the_sam_card(terminal: Terminal, profile: dict[str, Any]) -> None:
    result = read("--json", "--sam-reader", SAM_READER, "--sam-pin-env", PIN_ENV)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["cardholder"]["name"] == profile["items"]["name"]
    assert data["personal"]["education"]
    assert PIN not in result.output
    assert terminal.sam.pin_tries_left == 3


def test_the_sam_reader_is_not_taken_for_the_user_card(terminal: Terminal) -> None:
    # No --reader: the first reader with a card, skipping the SAM's even if it came first.
    result = read("--sam-reader", "00 01", "--sam-pin-env", PIN_ENV)
    assert result.exit_code == 0, result.output
    assert terminal.card.apdu_count > 0
    result = read("--reader", USER_READER, "--sam-reader", SAM_READER, "--sam-pin-env", PIN_ENV)
    assert result.exit_code == 0, result.output


def test_wrong_pin_stops_before_the_card(terminal: Terminal) -> None:
    result = read("--sam-reader", SAM_READER, "--sam-pin-env", PIN_ENV, pin="999999")
    assert result.exit_code == 1
    assert "PIN" in result.output
    assert "2 tries left" in result.output
    assert "999999" not in result.output
    assert terminal.card.apdu_count == 0  # the user card was never touched
    assert terminal.sam.pin_tries_left == 2


def test_pin_missing_or_given_twice_is_a_usage_error(terminal: Terminal) -> None:
    result = read("--sam-reader", SAM_READER, "--sam-pin-env", PIN_ENV, pin=None)
    assert result.exit_code == 2
    assert PIN_ENV in result.output
    both = read("--sam-reader", SAM_READER, "--sam-keys", str(KEYS), "--sam-pin-env", PIN_ENV)
    assert both.exit_code == 2
    assert "not both" in both.output
    assert terminal.sam.pin_tries_left == 3
    assert terminal.card.apdu_count == 0


def test_trace_with_the_sam_card(terminal: Terminal) -> None:
    result = CliRunner().invoke(
        main,
        ["card", "trace", "--sam-reader", SAM_READER, "--sam-pin-env", PIN_ENV],
        env={PIN_ENV: PIN},
    )
    assert result.exit_code == 0, result.output
    assert "EXTERNAL AUTH" in result.output


def test_emulate_from_an_image_in_its_own_process(
    pcscd: Pcscd, image: Path, profile: dict[str, Any]
) -> None:
    pcscd.wait_card(False)
    pcscd.wait_card(False, SAM_READER)
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "hcm"),
            "card",
            "emulate",
            "--image",
            str(image),
            "--port",
            str(pcscd.user_port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # the process is ready once it says so (importing can take seconds on a busy
        # machine); only then is the card in reader 0 the one it serves
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 60)
        assert ready, "hcm card emulate did not start within 60 s"
        first = process.stdout.readline()
        assert "card inserted" in first, first
        with VpcdCard(EmulatedSam(load_keyset(KEYS), pin=PIN), pcscd.sam_port):
            pcscd.wait_card(True, timeout=20)
            pcscd.wait_card(True, SAM_READER)
            result = read("--json", "--sam-reader", SAM_READER, "--sam-pin-env", PIN_ENV)
            assert result.exit_code == 0, result.output
            assert json.loads(result.output)["cardholder"]["name"] == profile["items"]["name"]
    finally:
        process.send_signal(signal.SIGTERM)  # what a service manager sends
        out, err = process.communicate(timeout=20)
        pcscd.wait_card(False)
        pcscd.wait_card(False, SAM_READER)
    assert process.returncode == 0, err
    assert "card removed after" in first + out

"""The terminal through real pcscd: card events become hooks; the SAM card from config."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from importlib.resources import files
from pathlib import Path

import pytest

from hcmiddleware import Middleware
from hcmiddleware.card.emulator import EmulatedCard
from hcmiddleware.card.vpcd import VpcdCard
from hcmiddleware.config import parse_config
from hcmiddleware.sam.emulated import DEFAULT_TEST_PIN, EmulatedSam
from hcmiddleware.sam.keyset import load_keyset
from hcmiddleware.sam.pcsc import PcscSam
from hcmiddleware.sam.samples import TEST_ISSUER_KEYS as KEYS
from hcmiddleware.testing import HookRecorder
from hcmiddleware.testing.pcscd import SAM_READER, USER_READER, Pcscd

pytestmark = pytest.mark.pcsc
PROFILE = Path(str(files("hcmiddleware.card.samples"))) / "resident-profile.json"


@pytest.fixture(scope="module")
def pcscd() -> Iterator[Pcscd]:
    with Pcscd() as daemon:
        yield daemon


def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_insertion_and_removal_are_hooks_and_the_reader_is_read(
    pcscd: Pcscd, tmp_path: Path
) -> None:
    pcscd.wait_card(False)
    cfg = parse_config(
        {
            "middleware": {"data_dir": str(tmp_path)},
            "readers": {"user": USER_READER},
            "sam": {"keys": str(KEYS)},
        }
    )
    with Middleware(cfg) as mw:
        recorder = HookRecorder(mw)
        with mw.terminal.watch():
            with VpcdCard(EmulatedCard.from_files(PROFILE, KEYS), pcscd.user_port):
                until(lambda: bool(recorder.calls("hcm_card_inserted")))
                inserted = recorder.last("hcm_card_inserted").kwargs
                assert inserted["reader"] == USER_READER
                card = mw.terminal.read()  # the configured reader, through pcscd
                assert recorder.last("hcm_card_read").kwargs["reader"] == USER_READER
                assert inserted["atr"] == card.atr
            until(lambda: bool(recorder.calls("hcm_card_removed")))
        assert recorder.last("hcm_card_removed").kwargs["reader"] == USER_READER
    pcscd.wait_card(False)


def test_sam_card_in_the_second_slot_from_config(
    pcscd: Pcscd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HCM_T_SAM_PIN", DEFAULT_TEST_PIN)
    pcscd.wait_card(False)
    pcscd.wait_card(False, SAM_READER)
    cfg = parse_config(
        {
            "middleware": {"data_dir": str(tmp_path)},
            "readers": {"user": USER_READER, "sam": SAM_READER},
            "sam": {"pin": {"env": "HCM_T_SAM_PIN"}},
        }
    )
    with (
        VpcdCard(EmulatedCard.from_files(PROFILE, KEYS), pcscd.user_port),
        VpcdCard(EmulatedSam(load_keyset(KEYS)), pcscd.sam_port),
    ):
        pcscd.wait_card(True)
        pcscd.wait_card(True, SAM_READER)
        with Middleware(cfg) as mw:
            assert isinstance(mw.terminal.sam, PcscSam)
            card = mw.terminal.read()
            assert card.cardholder.name
            rows = {r.name: r for _, r in mw.doctor()}
            assert rows["reader for the user card"].ok
            assert rows["reader for the SAM"].ok
            reader = mw.terminal.sam._transport  # type: ignore[attr-defined]
        # closing the Middleware releases the SAM's reader there and then, not when
        # pyscard's finaliser runs (after pcscd may have gone: a traceback at exit)
        assert reader._connection is None
    pcscd.wait_card(False)
    pcscd.wait_card(False, SAM_READER)

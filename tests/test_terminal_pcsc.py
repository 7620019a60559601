"""The terminal through real pcscd: card events become hooks; the SAM card from config."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest

from hcmiddleware import Middleware
from hcmiddleware.card.emulator import EmulatedCard
from hcmiddleware.card.vpcd import VpcdCard
from hcmiddleware.config import parse_config
from hcmiddleware.errors import SamUnavailableError
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


def _sam_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("HCM_T_SAM_PIN", DEFAULT_TEST_PIN)
    return parse_config(
        {
            "middleware": {"data_dir": str(tmp_path)},
            "readers": {"user": USER_READER, "sam": SAM_READER},
            "sam": {"pin": {"env": "HCM_T_SAM_PIN"}},
        }
    )


def _seat_sam(pcscd: Pcscd) -> VpcdCard:
    link = VpcdCard(EmulatedSam(load_keyset(KEYS)), pcscd.sam_port)
    link.start()
    pcscd.wait_card(True, SAM_READER)
    return link


def _unseat(pcscd: Pcscd, link: VpcdCard) -> None:
    link.stop()
    pcscd.wait_card(False, SAM_READER)


def test_a_sam_reseated_is_opened_again_and_the_read_goes_through(
    pcscd: Pcscd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The SAM card taken out and put back (a loose slot, a USB reader re-plugged): its
    PC/SC connection is gone for good. The next read opens the SAM again, with its PIN,
    and goes through; nothing needs a restart, and no read is audited as failed."""
    pcscd.wait_card(False)
    with VpcdCard(EmulatedCard.from_files(PROFILE, KEYS), pcscd.user_port):
        pcscd.wait_card(True)
        link = _seat_sam(pcscd)
        try:
            with Middleware(_sam_config(tmp_path, monkeypatch)) as mw:
                assert mw.terminal.read(parts="identity").cardholder.name
                first = mw.terminal.sam
                _unseat(pcscd, link)
                link = _seat_sam(pcscd)
                card = mw.terminal.read(parts="identity")
                assert card.cardholder.name
                assert mw.terminal.sam is not first  # opened again
                assert first._transport is None  # type: ignore[attr-defined]  # and closed
                outcomes = [e.outcome for e in mw.audit.entries(action="card.read")]
                assert outcomes == ["ok", "ok"]
                # the doctor asks the SAM itself, so a SAM gone since is not reported fine
                _unseat(pcscd, link)
                link = _seat_sam(pcscd)
                rows = {r.name: r for _, r in mw.doctor()}
                assert rows["SAM"].ok, rows["SAM"]
                assert "answers" in rows["SAM"].detail
        finally:
            _unseat(pcscd, link)
    assert "the SAM stopped answering" in caplog.text
    pcscd.wait_card(False)


def test_a_sam_gone_for_good_is_said_as_the_sams_and_the_card_is_untouched(
    pcscd: Pcscd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No SAM in its slot any more: the read fails as the SAM's (not as a missing card
    of the resident's), once opened again and tried, with a hint that needs no restart;
    when the SAM is back, reads go through again."""
    pcscd.wait_card(False)
    card = EmulatedCard.from_files(PROFILE, KEYS)
    with VpcdCard(card, pcscd.user_port):
        pcscd.wait_card(True)
        link = _seat_sam(pcscd)
        with Middleware(_sam_config(tmp_path, monkeypatch)) as mw:
            mw.terminal.read(parts="identity")
            _unseat(pcscd, link)
            with pytest.raises(SamUnavailableError) as caught:
                mw.terminal.read(parts="identity")
            assert SAM_READER in caught.value.message
            assert "restart" not in (caught.value.hint or "").replace("no restart", "")
            rows = {r.name: r for _, r in mw.doctor()}
            assert not rows["SAM"].ok
            assert SAM_READER in rows["SAM"].detail
            failed = mw.audit.entries(action="card.read")[-1]
            assert failed.outcome == "failed"
            link = _seat_sam(pcscd)
            try:
                assert mw.terminal.read(parts="identity").cardholder.name
            finally:
                _unseat(pcscd, link)
    pcscd.wait_card(False)

"""The terminal in the runtime: SAM from the provider hook, reads announced and audited."""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest

from hcmiddleware import Middleware
from hcmiddleware.card.emulator import EmulatedCard
from hcmiddleware.card.filemap import CardPart
from hcmiddleware.card.guard import PROCESS_GUARD, KeyGuard
from hcmiddleware.config import parse_config
from hcmiddleware.errors import (
    CardAbsentError,
    CardAuthError,
    CardKeyAtRiskError,
    CardPartError,
    CardPartNotReadError,
    NoHandlerError,
    SamUnavailableError,
)
from hcmiddleware.sam.keyset import load_keyset
from hcmiddleware.sam.samples import TEST_ISSUER_KEYS as KEYS
from hcmiddleware.sam.software import SoftwareSam
from hcmiddleware.testing import HookRecorder

PROFILE = Path(str(files("hcmiddleware.card.samples"))) / "resident-profile.json"


def config(tmp_path: Path, **sections: Any) -> Any:
    return parse_config({"middleware": {"data_dir": str(tmp_path)}, **sections})


def test_read_with_the_configured_software_sam(tmp_path: Path) -> None:
    profile = json.loads(PROFILE.read_text(encoding="utf-8"))
    with Middleware(config(tmp_path, sam={"keys": str(KEYS)})) as mw:
        recorder = HookRecorder(mw)
        card = mw.terminal.read(EmulatedCard.from_files(PROFILE, KEYS), actor="kiosk-1")
        assert card.cardholder.name == profile["items"]["name"]
        assert isinstance(mw.terminal.sam, SoftwareSam)
        announced = recorder.last("hcm_card_read").kwargs
        assert announced["card"] is card
        event = recorder.last("hcm_audit_event").kwargs["event"]
        assert (event.action, event.actor, event.outcome) == ("card.read", "kiosk-1", "ok")
        # the audit trail never carries the cardholder's name or ID number
        assert profile["items"]["name"] not in event.model_dump_json()


def test_a_failed_read_is_audited_as_failed(tmp_path: Path) -> None:
    card = EmulatedCard.from_files(PROFILE, KEYS)
    card.pull_after(3)
    with Middleware(config(tmp_path, sam={"keys": str(KEYS)})) as mw:
        recorder = HookRecorder(mw)
        with pytest.raises(CardAbsentError):
            mw.terminal.read(card)
        assert recorder.last("hcm_audit_event").kwargs["event"].outcome == "failed"
        assert recorder.calls("hcm_card_read") == []


def test_relative_key_path_is_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "keys.json").write_bytes(KEYS.read_bytes())
    (tmp_path / "keys.json").chmod(0o600)
    cfg = tmp_path / "hcm.toml"
    cfg.write_text(f'[middleware]\ndata_dir = "{tmp_path}"\n[sam]\nkeys = "keys.json"\n')
    with Middleware.from_file(cfg) as mw:
        assert mw.terminal.sam.city_code == load_keyset(KEYS).city_code


def test_no_sam_configured_is_a_clear_error(tmp_path: Path) -> None:
    with Middleware(config(tmp_path)) as mw, pytest.raises(NoHandlerError) as caught:
        mw.terminal.read(EmulatedCard.from_files(PROFILE, KEYS))
    assert "[sam] keys" in caught.value.hint


def test_sam_card_without_pin_is_refused_before_touching_it(tmp_path: Path) -> None:
    cfg = config(tmp_path, readers={"sam": "Virtual PCD 00 01"})
    with Middleware(cfg) as mw, pytest.raises(SamUnavailableError, match="PIN"):
        _ = mw.terminal.sam


def test_a_site_sam_provider_wins_over_the_builtin(tmp_path: Path) -> None:
    site_sam = SoftwareSam(load_keyset(KEYS))

    class Hsm:
        def hcm_sam_provider(self) -> SoftwareSam:
            return site_sam

    with Middleware(config(tmp_path, sam={"keys": str(KEYS)}), plugins={"hsm": Hsm()}) as mw:
        assert mw.terminal.sam is site_sam
        card = mw.terminal.read(EmulatedCard.from_files(PROFILE, KEYS))
        assert card.issuer.card_number


def test_doctor_checks_the_sam(tmp_path: Path) -> None:
    with Middleware(config(tmp_path, sam={"keys": str(KEYS)})) as mw:
        rows = {r.name: r for _, r in mw.doctor()}
    assert rows["SAM"].ok
    assert "SoftwareSam" in rows["SAM"].detail
    with Middleware(config(tmp_path, sam={"keys": str(tmp_path / "missing.json")})) as mw:
        rows = {r.name: r for _, r in mw.doctor()}
    assert not rows["SAM"].ok
    assert rows["SAM"].hint


def wrong_read_key(tmp_path: Path) -> Path:
    """The test key set with another master key 01: the card is genuine, key 01 fails."""
    data = json.loads(KEYS.read_text(encoding="utf-8"))
    data["keys"][0]["master"] = "00" * 16
    assert data["keys"][0]["ref"] == "01"
    path = tmp_path / "wrong-01.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_a_key_low_on_tries_is_held_back_across_reads_and_middlewares(tmp_path: Path) -> None:
    """A SAM with a wrong key 01: 63C4, 63C3, 63C2, then no more tries."""
    card = EmulatedCard.from_files(PROFILE, KEYS)
    guard = KeyGuard()
    with Middleware(config(tmp_path, sam={"keys": str(wrong_read_key(tmp_path))})) as mw:
        mw.terminal.guard = guard
        seen = []
        for _ in range(3):
            card.reset()
            with pytest.raises(CardAuthError) as info:
                mw.terminal.read(card)
            seen.append(info.value.tries_left)
        assert seen == [4, 3, 2]
        card.reset()
        with pytest.raises(CardKeyAtRiskError):
            mw.terminal.read(card)
        assert mw.terminal.open(card).guard is guard
    assert card.key_tries(0x01) == 2


def test_the_terminal_shares_the_process_guard(tmp_path: Path) -> None:
    card = EmulatedCard.from_files(PROFILE, KEYS)
    PROCESS_GUARD.clear()
    try:
        with Middleware(config(tmp_path, sam={"keys": str(wrong_read_key(tmp_path))})) as mw:
            assert mw.terminal.guard is PROCESS_GUARD
            for _ in range(3):
                card.reset()
                with pytest.raises(CardAuthError):
                    mw.terminal.read(card)
        with Middleware(config(tmp_path, sam={"keys": str(KEYS)})) as other:
            card.reset()
            with pytest.raises(CardKeyAtRiskError):
                other.terminal.read(card)
            # issuer data and the internal authentication; nothing tried with key 01
            assert card.apdu_count == 1 + 10 + 1
    finally:
        PROCESS_GUARD.clear()
    assert card.key_tries(0x01) == 2


def test_a_short_read_through_the_terminal_is_announced_and_audited(tmp_path: Path) -> None:
    card = EmulatedCard.from_files(PROFILE, KEYS)
    with Middleware(config(tmp_path, sam={"keys": str(KEYS)})) as mw:
        recorder = HookRecorder(mw)
        read = mw.terminal.read(card, parts="identity,insurance")
        assert card.apdu_count == 8
        assert recorder.last("hcm_card_read").kwargs["card"] is read
        event = recorder.last("hcm_audit_event").kwargs["event"]
        assert event.details["parts"] == "identity,insurance"
        with pytest.raises(CardPartNotReadError):
            _ = read.photo
        assert mw.terminal.read(card).parts == tuple(CardPart)  # no parts: everything


def test_an_unknown_part_is_refused_before_the_card_is_touched(tmp_path: Path) -> None:
    card = EmulatedCard.from_files(PROFILE, KEYS)
    with Middleware(config(tmp_path, sam={"keys": str(KEYS)})) as mw:
        with pytest.raises(CardPartError) as info:
            mw.terminal.read(card, parts="identity,fotos")
        assert info.value.part == "fotos"
        assert "photo" in info.value.hint
    assert card.apdu_count == 0


def test_absent_files_are_named_in_the_audit(tmp_path: Path) -> None:
    card = EmulatedCard.from_files(PROFILE.parent / "field-profile.json", KEYS)
    with Middleware(config(tmp_path, sam={"keys": str(KEYS)})) as mw:
        recorder = HookRecorder(mw)
        read = mw.terminal.read(card)
        event = recorder.last("hcm_audit_event").kwargs["event"]
        assert event.details["missing"] == ",".join(read.missing) == "DDF1/EF07,DF02/EF08"
        assert read.cardholder.name not in event.model_dump_json()

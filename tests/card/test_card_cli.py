"""``hcm card``: emulate behind vpcd in its own process, read and trace through pcscd."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from card_samples import KEYS, PHOTO, PROFILE
from click.testing import CliRunner

from hcmiddleware.cli import main
from hcmiddleware.testing.pcscd import Pcscd

pytestmark = pytest.mark.pcsc


@pytest.fixture(scope="module")
def emulating() -> Iterator[Pcscd]:
    with Pcscd() as daemon:
        daemon.wait_card(False)
        process = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "hcm"),
                "card",
                "emulate",
                "--port",
                str(daemon.user_port),
                "--profile",
                str(PROFILE),
                "--keys",
                str(KEYS),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            daemon.wait_card(True, timeout=20)
            yield daemon
        finally:
            process.send_signal(signal.SIGTERM)  # what a service manager sends
            out, err = process.communicate(timeout=20)
            daemon.wait_card(False)
        assert process.returncode == 0, err
        assert "card removed after" in out


def test_read_json(emulating: Pcscd, profile: dict[str, Any], tmp_path: Path) -> None:
    photo = tmp_path / "photo.jpg"
    result = CliRunner().invoke(
        main, ["card", "read", "--json", "--sam-keys", str(KEYS), "--photo", str(photo)]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["cardholder"]["name"] == profile["items"]["name"]
    assert data["issuer"]["card_number"] == profile["items"]["card_number"]
    assert len(data["visits"]) == len(profile["visits"])
    assert photo.read_bytes() == PHOTO.read_bytes()


def test_read_text_without_sam_shows_issuer_only(emulating: Pcscd, profile: dict[str, Any]) -> None:
    result = CliRunner().invoke(main, ["card", "read"])
    assert result.exit_code == 0, result.output
    assert f"card_number: {profile['items']['card_number']}" in result.output
    assert profile["items"]["name"] not in result.output


def test_read_uses_the_installations_sam_and_is_audited(
    emulating: Pcscd, profile: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = tmp_path / "hcm.toml"
    config.write_text(f'[sam]\nkeys = "{KEYS.as_posix()}"\n', encoding="utf-8")
    caplog.set_level("INFO", logger="hcmiddleware.audit")
    result = CliRunner().invoke(main, ["--config", str(config), "card", "read", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["cardholder"]["name"] == profile["items"]["name"]
    audit = [json.loads(r.getMessage()) for r in caplog.records if r.name == "hcmiddleware.audit"]
    assert [(a["action"], a["actor"], a["outcome"]) for a in audit] == [("card.read", "cli", "ok")]


def test_trace_live_and_from_a_log(emulating: Pcscd, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["card", "trace", "--sam-keys", str(KEYS)])
    assert result.exit_code == 0, result.output
    assert "EXTERNAL AUTH" in result.output
    assert "APDUs," in result.output
    log = tmp_path / "apdu.jsonl"
    assert CliRunner().invoke(main, ["card", "read", "--trace", str(log)]).exit_code == 0
    shown = CliRunner().invoke(main, ["card", "trace", str(log)])
    assert shown.exit_code == 0
    assert "READ RECORD" in shown.output


def test_unknown_reader_is_a_clear_error(emulating: Pcscd) -> None:
    result = CliRunner().invoke(main, ["card", "read", "--reader", "Nope 42"])
    assert result.exit_code == 1
    assert "no single reader named 'Nope 42'" in result.output

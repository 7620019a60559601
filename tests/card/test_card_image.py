"""Card images: personalisation with diversified keys, mode 600, the emulator from an image."""

from __future__ import annotations

import json
import logging
import stat
from pathlib import Path
from typing import Any

import pytest
from card_checks import check_against_profile
from card_samples import KEYS, PROFILE, SAMPLES
from click.testing import CliRunner

from hcmiddleware.card.atr import card_factor
from hcmiddleware.card.emulator import EmulatedCard
from hcmiddleware.card.image import load_image, personalise, write_image
from hcmiddleware.card.session import CardSession
from hcmiddleware.cli import main
from hcmiddleware.errors import CardDataError
from hcmiddleware.sam import crypto
from hcmiddleware.sam.keyset import load_keyset
from hcmiddleware.sam.software import SoftwareSam


def key_texts(hex_keys: list[str]) -> list[str]:
    return [t for k in hex_keys for t in (k.upper(), k.lower())]


def test_image_keys_are_the_two_level_diversification(profile: dict[str, Any]) -> None:
    keyset = load_keyset(KEYS)
    image = personalise(profile, keyset, base_dir=SAMPLES)
    factor = card_factor(image.atr_bytes)
    assert factor == profile["items"]["chip_serial"].encode()[-8:]
    assert {k.ref for k in image.keys} == set(keyset.refs)
    for k in image.keys:
        master = keyset.entry(k.ref).master.reveal()
        level1 = crypto.diversify(k.alg, master, factor)
        expected = crypto.diversify(k.alg, level1, b"21000000")
        assert k.key.reveal() == expected
        assert k.kcv == k.key.check_value(k.alg)


def test_written_0600_and_the_emulator_reads_the_same(
    profile: dict[str, Any], tmp_path: Path
) -> None:
    image = personalise(profile, load_keyset(KEYS), base_dir=SAMPLES)
    out = write_image(image, tmp_path / "card.json")
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert list(tmp_path.iterdir()) == [out]  # no temporary file left behind
    card = EmulatedCard.from_image(out)
    assert card.atr == EmulatedCard(profile, KEYS, base_dir=SAMPLES).atr
    check_against_profile(CardSession(card, SoftwareSam.from_file(KEYS)).read_all(), profile)


def test_no_key_in_repr_or_dump(profile: dict[str, Any]) -> None:
    image = personalise(profile, load_keyset(KEYS), base_dir=SAMPLES)
    secrets = key_texts([k.key.reveal().hex() for k in image.keys])
    shown = repr(image) + str(image) + image.model_dump_json() + repr(image.model_dump())
    assert not [s for s in secrets if s in shown]
    assert profile["items"]["name"] not in repr(image)


def test_an_existing_file_is_kept_unless_forced(profile: dict[str, Any], tmp_path: Path) -> None:
    image = personalise(profile, load_keyset(KEYS), base_dir=SAMPLES)
    out = tmp_path / "card.json"
    out.write_text("{}", encoding="utf-8")
    out.chmod(0o644)
    with pytest.raises(CardDataError) as info:
        write_image(image, out)
    assert info.value.hint
    assert out.read_text(encoding="utf-8") == "{}"
    write_image(image, out, overwrite=True)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert load_image(out) == image


def test_a_profile_of_another_city_is_refused(profile: dict[str, Any]) -> None:
    profile["items"]["city_code"] = "320000"
    with pytest.raises(CardDataError) as info:
        personalise(profile, load_keyset(KEYS), base_dir=SAMPLES)
    assert "city" in info.value.message


@pytest.mark.parametrize(
    ("change", "expect"),
    [
        (lambda d: "not json", "not JSON"),
        (lambda d: {**d, "format": "other"}, "not a card image"),
        (lambda d: {**d, "keys": [{**d["keys"][0], "key": d["keys"][0]["key"][:30]}]}, "length"),
        (lambda d: {**d, "keys": [{**d["keys"][0], "key": "ZZ" + d["keys"][0]["key"][2:]}]}, ""),
        (lambda d: {**d, "atr": "XYZ"}, ""),
        (lambda d: {**d, "photo": "a"}, ""),
        (lambda d: {**d, "extra": 1}, "extra"),
    ],
)
def test_bad_images_are_card_data_errors_without_keys(
    profile: dict[str, Any], tmp_path: Path, change: Any, expect: str
) -> None:
    image = personalise(profile, load_keyset(KEYS), base_dir=SAMPLES)
    path = write_image(image, tmp_path / "card.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    secrets = key_texts([k["key"] for k in data["keys"]])
    bad = change(data)
    path.write_text(bad if isinstance(bad, str) else json.dumps(bad), encoding="utf-8")
    with pytest.raises(CardDataError) as info:
        EmulatedCard.from_image(path)
    assert expect in info.value.message
    assert info.value.hint
    assert not [s for s in secrets if s in str(info.value)]


def test_cli_personalise_and_emulate_arguments(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "card.json"
    args = ["card", "personalise", "--profile", str(PROFILE), "--issuer-keys", str(KEYS)]
    result = CliRunner().invoke(main, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "mode 600" in result.output
    assert "keys" in result.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    secrets = key_texts([k.key.reveal().hex() for k in load_image(out).keys])
    logged = result.output + caplog.text
    assert not [s for s in secrets if s in logged]
    again = CliRunner().invoke(main, [*args, "--out", str(out)])
    assert again.exit_code == 1
    assert "already exists" in again.output
    for bad in (
        ["card", "emulate"],
        ["card", "emulate", "--image", str(out), "--profile", str(PROFILE), "--keys", str(KEYS)],
        ["card", "emulate", "--profile", str(PROFILE)],
    ):
        result = CliRunner().invoke(main, bad)
        assert result.exit_code == 2
        assert "--image" in result.output

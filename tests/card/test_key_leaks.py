"""No key material in anything the software shows: logs, APDU traces, CLI output, errors.

A full read and writes (visit append, allergy append, an item under secure messaging)
run with DEBUG logging on for every logger and the APDU tracer writing a file, once
with the software SAM and once with the SAM card (``PcscSam`` over ``EmulatedSam``),
then failures are provoked (wrong keys, a card of other keys, SAM misuse, wrong PIN).
Everything captured is scanned for every issuer master key, every diversified card key
(both levels) and every session key the card could have derived from any challenge it
gave — in hex (upper, lower, spaced), as raw bytes and in base64. The CLI's ``--json``
read is scanned the same way through pcscd with both SAMs.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from card_samples import KEYS, KEYS_3DES, SAMPLES
from click.testing import CliRunner
from leak_scan import Secret, find_leaks, forms

from hcmiddleware.card import filemap as fm
from hcmiddleware.card.data import Allergy, VisitRecord
from hcmiddleware.card.emulator import EmulatedCard
from hcmiddleware.card.guard import KeyGuard
from hcmiddleware.card.session import CardSession
from hcmiddleware.card.transport import TracingTransport
from hcmiddleware.card.vpcd import VpcdCard
from hcmiddleware.cli import main
from hcmiddleware.errors import HcmError
from hcmiddleware.sam import crypto
from hcmiddleware.sam.base import Sam
from hcmiddleware.sam.emulated import EmulatedSam
from hcmiddleware.sam.keyset import KeySet, load_keyset
from hcmiddleware.sam.pcsc import PcscSam
from hcmiddleware.sam.software import SoftwareSam
from hcmiddleware.testing.pcscd import SAM_READER, Pcscd

PIN = "802517"
PIN_ENV = "HCM_TEST_LEAK_SAM_PIN"


class ChallengeTap:
    """Passes APDUs to the card and keeps every challenge the card hands out."""

    def __init__(self, card: EmulatedCard) -> None:
        self.card = card
        self.challenges: list[bytes] = []

    @property
    def atr(self) -> bytes:
        return self.card.atr

    def transmit(self, apdu: bytes) -> bytes:
        response = self.card.transmit(apdu)
        if apdu[1:2] == b"\x84" and response[-2:] == b"\x90\x00":
            self.challenges.append(response[:-2])
        return response

    def reset(self) -> None:
        self.card.reset()

    def close(self) -> None:
        self.card.close()


def key_material(keyset: KeySet, factor: bytes, challenges: list[bytes]) -> list[Secret]:
    """Master keys, level-1 and card keys of the card, session keys of every challenge."""
    city = crypto.city_factor(keyset.city_code)
    out = []
    for entry in keyset.keys:
        master = entry.master.reveal()
        level1 = crypto.diversify(entry.alg, master, factor)
        card_key = crypto.diversify(entry.alg, level1, city)
        out += [
            Secret(f"master key {entry.ref_hex}", master),
            Secret(f"level-1 key {entry.ref_hex}", level1),
            Secret(f"card key {entry.ref_hex}", card_key),
        ]
        out += [
            Secret(f"session key {entry.ref_hex} of challenge {i}", key)
            for i, r in enumerate(challenges)
            for key in (crypto.session_key(entry.alg, card_key, r),)
        ]
    return out


@pytest.fixture
def every_logger_debug(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """DEBUG on the root and on every logger that exists, none disabled."""
    caplog.set_level(logging.DEBUG)
    saved = {}
    for name, logger in logging.root.manager.loggerDict.items():
        if isinstance(logger, logging.Logger):
            saved[name] = (logger.level, logger.disabled)
            logger.setLevel(logging.DEBUG)
            logger.disabled = False
    yield caplog
    for name, (level, disabled) in saved.items():
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.disabled = disabled


def visit() -> VisitRecord:
    return VisitRecord(
        kind=fm.VisitKind.OUTPATIENT,
        visited_at=dt.datetime(2026, 11, 27, 9, 30),
        institution_name="沈阳市第一人民医院",
        institution_code="210102000001",
        department="全科",
        doctor="周医生",
        diagnosis_code="Z00.000",
        diagnosis_name="健康体检",
        treatment="无",
        total_fee="12.00",
        signature=bytes(64),
        certificate=bytes(190),
    )


def failure_texts(exc: BaseException) -> str:
    """What an exception can show: str, repr, details, and the formatted traceback."""
    details = exc.details() if isinstance(exc, HcmError) else {}
    return "\n".join(
        [str(exc), repr(exc), json.dumps(details, default=str), *traceback.format_exception(exc)]
    )


def open_sam(kind: str, keyset: KeySet) -> Sam:
    if kind == "software":
        return SoftwareSam(keyset)
    return PcscSam(EmulatedSam(keyset, pin=PIN), PIN)


def logged(caplog: pytest.LogCaptureFixture) -> dict[str, str]:
    return {
        "log text": caplog.text,
        "log records": "\n".join(repr(vars(r)) for r in caplog.records),
    }


@pytest.mark.parametrize("keys", [KEYS, KEYS_3DES], ids=["SM4", "3DES"])
@pytest.mark.parametrize("sam_kind", ["software", "pcsc"])
def test_read_and_writes_leak_no_key(
    every_logger_debug: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    profile: dict[str, Any],
    tmp_path: Path,
    sam_kind: str,
    keys: Path,
) -> None:
    keyset = load_keyset(keys)
    card = EmulatedCard(profile, keyset, base_dir=SAMPLES)
    tap = ChallengeTap(card)
    trace = tmp_path / "apdu.jsonl"
    tracer = TracingTransport(tap, trace)
    sam = open_sam(sam_kind, keyset)
    session = CardSession(tracer, sam, guard=KeyGuard())
    shown: dict[str, str | bytes] = {}

    read = session.read_all()
    session.append_visit(visit())
    session.add_allergy(Allergy(substance="青霉素", reaction="皮疹"))
    session.update_item(27, "13511112222")  # secure messaging: a session key
    again = session.read_all()
    assert again.personal.contacts[0].phone == "13511112222"
    print(read.model_dump_json(), again)  # what an application might print

    failures: list[BaseException] = []
    other = EmulatedCard(profile, KEYS_3DES if keys == KEYS else KEYS, base_dir=SAMPLES)
    for attempt in (
        lambda: CardSession(other, sam, guard=KeyGuard()).read_cardholder(),
        lambda: CardSession(other, sam, guard=KeyGuard()).verify_genuine(),
        lambda: sam.external_auth(0x21, session.card_factor, bytes(8)),
        lambda: sam.secure_update(
            0x12, session.card_factor, bytes(8), b"\x04\xdc\x01\x04", b"x" * 300
        ),
        lambda: sam.check_internal_auth(0x21, session.card_factor, tap.challenges[0], bytes(8)),
    ):
        with pytest.raises(HcmError) as info:
            attempt()
        failures.append(info.value)
    if sam_kind == "pcsc":
        with pytest.raises(HcmError) as info:
            PcscSam(EmulatedSam(keyset, pin=PIN), "000000")
        failures.append(info.value)
    tracer.close()

    out, err = capsys.readouterr()
    shown.update(logged(every_logger_debug))
    shown["APDU trace file"] = trace.read_bytes()
    shown["stdout"], shown["stderr"] = out, err
    shown["exceptions"] = "\n".join(failure_texts(e) for e in failures)
    shown["reprs"] = (
        "\n".join(repr(x) for x in (sam, session, keyset, keyset.keys, read, tracer, session.guard))
        + keyset.model_dump_json()
    )

    secrets = key_material(keyset, card_factor_of(card), tap.challenges)
    assert len(tap.challenges) >= 8  # every DF's authentication and the SM write
    assert every_logger_debug.records  # the logs were captured ...
    assert logging.getLogger("hcmiddleware.sam.pcsc").isEnabledFor(logging.DEBUG)  # ... at DEBUG
    assert trace.read_text(encoding="utf-8").count("\n") > 100
    assert find_leaks(secrets, shown) == []
    if sam_kind == "pcsc":
        assert find_leaks([Secret("PIN", PIN.encode())], shown) == []


def card_factor_of(card: EmulatedCard) -> bytes:
    from hcmiddleware.card.atr import card_factor

    return card_factor(card.atr)


def test_the_scan_finds_a_planted_key(profile: dict[str, Any]) -> None:
    """The scan is not blind: a session key in any form, in any output, is found."""
    keyset = load_keyset(KEYS)
    challenge = bytes.fromhex("A1B2C3D4E5F60718")
    secrets = key_material(keyset, b"12345678", [challenge])
    session_key = next(s for s in secrets if s.label.startswith("session key 12"))
    for form, text in forms(session_key.value).items():
        planted = b"DEBUG sm write with " + text + b" done"
        found = find_leaks(secrets, {"log": planted.decode("latin-1")})
        assert found, form
        assert session_key.label in found[0]
    assert find_leaks(secrets, {"log": "DEBUG nothing secret here"}) == []


@pytest.fixture(scope="module")
def pcscd() -> Iterator[Pcscd]:
    with Pcscd() as daemon:
        yield daemon


@pytest.mark.pcsc
@pytest.mark.parametrize("sam_kind", ["software", "pcsc"])
def test_cli_json_read_leaks_no_key(
    pcscd: Pcscd,
    every_logger_debug: pytest.LogCaptureFixture,
    profile: dict[str, Any],
    tmp_path: Path,
    sam_kind: str,
) -> None:
    keyset = load_keyset(KEYS)
    card = EmulatedCard(profile, keyset, base_dir=SAMPLES)
    tap = ChallengeTap(card)
    trace = tmp_path / "apdu.jsonl"
    sam_args = (
        ["--sam-keys", str(KEYS)]
        if sam_kind == "software"
        else ["--sam-reader", SAM_READER, "--sam-pin-env", PIN_ENV]
    )
    pcscd.wait_card(False)
    pcscd.wait_card(False, SAM_READER)
    with VpcdCard(tap, pcscd.user_port), VpcdCard(EmulatedSam(keyset, pin=PIN), pcscd.sam_port):
        pcscd.wait_card(True)
        pcscd.wait_card(True, SAM_READER)
        result = CliRunner().invoke(
            main,
            ["card", "read", "--json", "--trace", str(trace), *sam_args],
            env={PIN_ENV: PIN},
        )
    pcscd.wait_card(False)
    pcscd.wait_card(False, SAM_READER)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["cardholder"]["name"] == profile["items"]["name"]
    shown: dict[str, str | bytes] = {
        "CLI stdout": result.stdout,
        "CLI stderr": result.stderr,
        "APDU trace file": trace.read_bytes(),
        **logged(every_logger_debug),
    }
    secrets = key_material(keyset, card_factor_of(card), tap.challenges)
    assert len(tap.challenges) >= 4
    assert find_leaks([*secrets, Secret("PIN", PIN.encode())], shown) == []

"""The tracing and replaying transports: what is logged, what is masked, replay rules."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from card_samples import KEYS

from hcmiddleware.card.emulator import EmulatedCard
from hcmiddleware.card.session import CardSession
from hcmiddleware.card.transport import ReplayTransport, TracingTransport, Transport, read_trace
from hcmiddleware.errors import CardAbsentError, CardProtocolError
from hcmiddleware.sam.software import SoftwareSam


def test_emulator_is_a_transport(card: EmulatedCard) -> None:
    assert isinstance(card, Transport)


def test_default_trace_masks_key_material_and_personal_data(
    card: EmulatedCard, sam: SoftwareSam
) -> None:
    sink = io.StringIO()
    tracer = TracingTransport(card, sink)
    session = CardSession(tracer, sam)
    session.verify_genuine()
    cardholder = session.read_cardholder()
    session.update_item(27, "13511112222")
    text = sink.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines[0] == {"atr": card.atr.hex().upper()}
    assert len(lines) - 1 == session.apdu_count == len(tracer.entries)
    by_ins: dict[str, list[dict[str, str]]] = {}
    for e in lines[1:]:
        by_ins.setdefault(e["c"][2:4], []).append(e)
    assert by_ins["82"][0]["c"].endswith("**" * 8)  # external-auth cryptogram
    assert by_ins["88"][0]["r"] == "**" * 8 + "9000"  # internal-auth answer
    assert set(by_ins["B2"][0]["r"][:-4]) == {"*"}  # record content
    assert by_ins["DC"][0]["c"][10:].strip("*") == ""  # SM data
    # No personal value appears anywhere in the log.
    assert cardholder.id_number not in text
    assert cardholder.name.encode("gbk").hex().upper() not in text
    assert b"13511112222".hex().upper() not in text


def test_record_and_replay(card: EmulatedCard, sam: SoftwareSam, tmp_path: Path) -> None:
    log = tmp_path / "apdu.jsonl"
    tracer = TracingTransport(card, log, personal=True, secrets=True)
    first = CardSession(tracer, sam).read_all(verify=False)
    tracer.close()
    replay = ReplayTransport.load(log)
    # The replay answers the same challenges, so a SAM with the same keys authenticates.
    again = CardSession(replay, SoftwareSam.from_file(KEYS)).read_all(verify=False)
    assert again == first
    assert replay.exhausted


def test_replay_refuses_a_different_command(card: EmulatedCard, sam: SoftwareSam) -> None:
    sink = io.StringIO()
    CardSession(TracingTransport(card, sink, personal=True), sam).read_issuer()
    atr, entries = read_trace(sink.getvalue().splitlines())
    replay = ReplayTransport(atr, entries)
    with pytest.raises(CardProtocolError):
        replay.transmit(bytes.fromhex("00A4000002DF01"))


def test_replay_of_masked_data_is_refused(card: EmulatedCard, sam: SoftwareSam) -> None:
    sink = io.StringIO()
    CardSession(TracingTransport(card, sink), sam).read_issuer()
    replay = ReplayTransport(*read_trace(sink.getvalue().splitlines()))
    with pytest.raises(CardProtocolError):
        CardSession(replay).read_issuer()


def test_a_pull_is_logged_and_replayed(card: EmulatedCard, sam: SoftwareSam) -> None:
    sink = io.StringIO()
    card.pull_after(3)
    with pytest.raises(CardAbsentError):
        CardSession(TracingTransport(card, sink, personal=True), sam).read_issuer()
    atr, entries = read_trace(sink.getvalue().splitlines())
    assert entries[-1]["error"] == "card absent"
    with pytest.raises(CardAbsentError):
        CardSession(ReplayTransport(atr, entries)).read_issuer()


def test_malformed_logs(tmp_path: Path) -> None:
    for text in ("not json", '{"n": 1}', '{"n": "x", "c": "", "r": ""}'):
        with pytest.raises(CardProtocolError):
            read_trace([text])
    replay = ReplayTransport(b"", [])
    with pytest.raises(CardProtocolError):
        replay.transmit(b"\x00\xa4\x00\x00")

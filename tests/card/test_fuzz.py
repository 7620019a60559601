"""Mutated card answers: every parser fails with a CardError subclass and nothing else.

Seeded, so a failure is reproducible; sized to stay within a few seconds.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from card_samples import KEYS, SAMPLES

from hcmiddleware.card import filemap as fm
from hcmiddleware.card.apdu import Apdu, exchange, parse_command, parse_response
from hcmiddleware.card.atr import card_factor
from hcmiddleware.card.codecs import decode_an, decode_cn
from hcmiddleware.card.emulator import EmulatedCard
from hcmiddleware.card.records import decode_fixed, decode_item, decode_visit, encode_visit
from hcmiddleware.card.session import CardSession
from hcmiddleware.card.tlv import parse_record, parse_run
from hcmiddleware.errors import CardAuthenticityError, CardError
from hcmiddleware.sam.software import SoftwareSam

PARSER_CASES = 100_000
SESSION_CASES = 300


def mutate(rng: random.Random, data: bytes) -> bytes:
    """One of: flip bytes, truncate, extend, splice random bytes, or pure noise."""
    b = bytearray(data)
    kind = rng.randrange(6)
    if kind == 0 and b:
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
    elif kind == 1:
        del b[rng.randrange(len(b) + 1) :]
    elif kind == 2:
        b += rng.randbytes(rng.randint(1, 8))
    elif kind == 3 and b:
        i = rng.randrange(len(b))
        b[i : i + rng.randint(1, 4)] = rng.randbytes(rng.randint(0, 6))
    elif kind == 4:
        b = bytearray(rng.randbytes(rng.randint(0, 40)))
    elif b:
        b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    return bytes(b)


class _Fixed:
    def __init__(self, answers: list[bytes]) -> None:
        self.answers = answers

    def transmit(self, apdu: bytes) -> bytes:
        return self.answers.pop(0) if self.answers else b"\x90\x00"


def _visit_content(visit_raw: bytes) -> Any:
    body = visit_raw[: -fm.VISIT_TRAILER_LEN]
    return decode_visit(fm.VisitKind.OUTPATIENT, 1, body, visit_raw[-fm.VISIT_TRAILER_LEN :])


def test_parsers_raise_only_card_errors(card: EmulatedCard) -> None:
    rng = random.Random(20261127)
    name_item = fm.item("name")
    visit_raw = card.file_bytes(fm.OUTPATIENT_RECORDS[0])[:300] + bytes(fm.VISIT_TRAILER_LEN)
    allergy = card.file_bytes(fm.ALLERGIES)[: fm.ALLERGIES.size]
    samples: list[tuple[bytes, Callable[[bytes], object]]] = [
        (bytes.fromhex("0B06CDF5C8FBC6DC9000"), parse_response),
        (bytes.fromhex("0B06CDF5C8FBC6DC"), lambda b: decode_item(name_item, b)),
        (bytes.fromhex("0B06CDF5C8FBC6DC"), parse_record),
        (bytes.fromhex("CDF5C8FBC6DC0000"), decode_an),
        (bytes.fromhex("2026112714FFFF"), decode_cn),
        (visit_raw[:300], parse_run),
        (visit_raw, _visit_content),
        (allergy, lambda b: decode_fixed(fm.ALLERGIES, b)),
        (card.atr, card_factor),
        (bytes.fromhex("00A4040004414243440A"), parse_command),
        (
            bytes.fromhex("AABB6102"),
            lambda b: exchange(_Fixed([b, b"\xcc\xdd\x90\x00"]), Apdu(0, 0x88, 0, 0x21, bytes(8))),
        ),
    ]
    outcomes = {"ok": 0, "error": 0}
    for _ in range(PARSER_CASES):
        raw, parser = samples[rng.randrange(len(samples))]
        data = mutate(rng, raw)
        try:
            parser(data)
            outcomes["ok"] += 1
        except CardError:
            outcomes["error"] += 1
    # Both outcomes must occur, or the mutations are not reaching the parsers.
    assert outcomes["ok"] > PARSER_CASES // 20
    assert outcomes["error"] > PARSER_CASES // 20


class _Mangling:
    """A card whose answers are mutated at random positions of the conversation."""

    def __init__(self, card: EmulatedCard, rng: random.Random, rate: float) -> None:
        self.card, self.rng, self.rate = card, rng, rate

    @property
    def atr(self) -> bytes:
        return self.card.atr

    def transmit(self, apdu: bytes) -> bytes:
        response = self.card.transmit(apdu)
        return mutate(self.rng, response) if self.rng.random() < self.rate else response

    def close(self) -> None:
        pass


def test_session_reads_of_garbage_answers_are_typed(profile: dict[str, Any]) -> None:
    rng = random.Random(7)
    sam = SoftwareSam.from_file(KEYS)
    failures = 0
    for _ in range(SESSION_CASES):
        card = EmulatedCard(profile, KEYS, base_dir=SAMPLES)
        session = CardSession(_Mangling(card, rng, rate=0.02), sam)
        try:
            session.read_all()
        except (CardError, CardAuthenticityError):
            failures += 1
    assert SESSION_CASES // 10 < failures < SESSION_CASES


def test_visit_encoding_round_trips_under_fuzzed_text() -> None:
    import datetime as dt

    from hcmiddleware.card.data import VisitRecord

    rng = random.Random(3)
    alphabet = "诊断治疗费用ABCxyz0123 .-（）堃喆"
    for _ in range(500):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        v = VisitRecord(
            kind=fm.VisitKind.INPATIENT,
            visited_at=dt.datetime(2026, 1, 2, 3, 4, 5),
            institution_name="医院",
            institution_code="1",
            treatment=text.strip(" "),
        )
        raw = encode_visit(v, 1639)
        back = decode_visit(fm.VisitKind.INPATIENT, 1, raw[: -fm.VISIT_TRAILER_LEN], raw[-254:])
        assert back.treatment == v.treatment.rstrip(" ")

"""Command building and parsing, response parsing, 61xx/6Cxx handling, status words."""

from __future__ import annotations

import pytest

from hcmiddleware.card.apdu import Apdu, Response, exchange, parse_command, parse_response
from hcmiddleware.errors import (
    CardAuthError,
    CardFileNotFoundError,
    CardKeyBlockedError,
    CardLengthError,
    CardMacError,
    CardParameterError,
    CardProtocolError,
    CardSecurityError,
    CardStatusError,
)

CASES = [
    (Apdu(0x00, 0xA4, 0x00, 0x00), "00A40000"),
    (Apdu(0x00, 0x84, 0x00, 0x00, le=8), "0084000008"),
    (Apdu(0x00, 0xB0, 0x00, 0x00, le=256), "00B0000000"),
    (Apdu(0x00, 0xA4, 0x00, 0x00, bytes.fromhex("DDF1")), "00A4000002DDF1"),
    (Apdu(0x00, 0x88, 0x00, 0x21, bytes(8), le=8), "0088002108" + "00" * 8 + "08"),
    (Apdu(0x00, 0xB0, 0x00, 0x00, le=65536), "00B00000" + "000000"),
    (Apdu(0x00, 0xB0, 0x00, 0x00, le=257), "00B0000000" + "0101"),
    (Apdu(0x00, 0xD6, 0x00, 0x00, bytes(300)), "00D6000000012C" + "00" * 300),
    (Apdu(0x00, 0xD6, 0x00, 0x00, bytes(300), le=300), "00D6000000012C" + "00" * 300 + "012C"),
    (Apdu(0x00, 0xD6, 0x00, 0x00, bytes(3), le=65536), "00D60000" + "000003" + "000000" + "0000"),
]


@pytest.mark.parametrize(("apdu", "wire"), CASES)
def test_encoding_and_parsing_round_trip(apdu: Apdu, wire: str) -> None:
    assert apdu.to_bytes().hex().upper() == wire.upper()
    assert parse_command(bytes.fromhex(wire)) == apdu


def test_extended_only_when_needed() -> None:
    assert not Apdu(0, 0xB0, 0, 0, bytes(255), le=256).extended
    assert Apdu(0, 0xB0, 0, 0, bytes(256)).extended
    assert Apdu(0, 0xB0, 0, 0, le=257).extended


@pytest.mark.parametrize(
    "wire",
    ["", "00", "00A400", "00A4000002DD", "00A4000002DDF1AABB", "00A400000000", "00A40000000002AA"],
)
def test_malformed_commands_are_protocol_errors(wire: str) -> None:
    with pytest.raises(CardProtocolError):
        parse_command(bytes.fromhex(wire))


def test_bad_fields_are_refused() -> None:
    with pytest.raises(ValueError):
        Apdu(0x100, 0, 0, 0)
    with pytest.raises(ValueError):
        Apdu(0, 0, 0, 0, le=0)


def test_response_parsing() -> None:
    r = parse_response(bytes.fromhex("01029000"))
    assert (r.data, r.sw, r.sw1, r.sw2, r.ok) == (b"\x01\x02", 0x9000, 0x90, 0x00, True)
    assert r.to_bytes() == bytes.fromhex("01029000")
    for bad in ("", "90", "0102A000", "5000"):
        with pytest.raises(CardProtocolError):
            parse_response(bytes.fromhex(bad))


class Script:
    """A transport answering from a list and recording what it was sent."""

    def __init__(self, *answers: str) -> None:
        self.answers = [bytes.fromhex(a) for a in answers]
        self.sent: list[str] = []

    def transmit(self, apdu: bytes) -> bytes:
        self.sent.append(apdu.hex().upper())
        return self.answers.pop(0)


def test_6cxx_reissues_with_the_length_the_card_asks() -> None:
    card = Script("6C05", "01020304059000")
    r = exchange(card, Apdu(0, 0xB2, 1, 4, le=256))
    assert r.data == bytes.fromhex("0102030405")
    assert card.sent == ["00B2010400", "00B2010405"]


def test_61xx_chains_get_response() -> None:
    card = Script("AA6102", "BBCC6101", "DD9000")
    r = exchange(card, Apdu(0, 0x88, 0, 0x21, bytes(8)))
    assert r.data == bytes.fromhex("AABBCCDD")
    assert card.sent[1:] == ["00C0000002", "00C0000001"]


def test_endless_61xx_is_an_error() -> None:
    card = Script(*["6101"] * 100)
    with pytest.raises(CardStatusError):
        exchange(card, Apdu(0, 0x88, 0, 0x21, bytes(8)))


@pytest.mark.parametrize(
    ("sw", "cls"),
    [
        ("6A82", CardFileNotFoundError),
        ("6A83", CardFileNotFoundError),
        ("6982", CardSecurityError),
        ("6983", CardKeyBlockedError),
        ("6988", CardMacError),
        ("6700", CardLengthError),
        ("6B00", CardLengthError),
        ("6A88", CardParameterError),
        ("6D00", CardParameterError),
        ("6E00", CardParameterError),
        ("6F00", CardStatusError),
        ("9123", CardStatusError),
    ],
)
def test_status_words_become_typed_errors(sw: str, cls: type[CardStatusError]) -> None:
    with pytest.raises(cls) as info:
        exchange(Script(sw), Apdu(0, 0xB0, 0, 0, le=256), what="reading the photo")
    assert type(info.value) is cls
    assert info.value.sw == int(sw, 16)
    assert "reading the photo" in info.value.message
    assert info.value.hint


def test_63cx_counts_tries() -> None:
    with pytest.raises(CardAuthError) as info:
        exchange(Script("63C3"), Apdu(0, 0x82, 0, 1, bytes(8)))
    assert info.value.tries_left == 3
    assert info.value.details()["sw"] == "63C3"


def test_accepted_warnings_pass() -> None:
    r = exchange(Script("AA6282"), Apdu(0, 0xB0, 0, 0, le=256), accept=frozenset({0x6282}))
    assert r == Response(b"\xaa", 0x6282)

"""A card that answers wrongly: every case is a typed error the operator can act on."""

from __future__ import annotations

import pytest

from hcmiddleware.card.emulator import EmulatedCard
from hcmiddleware.card.session import CardSession
from hcmiddleware.errors import (
    CardAbsentError,
    CardDataError,
    CardError,
    CardProtocolError,
    CardStatusError,
)
from hcmiddleware.sam.software import SoftwareSam


class Rewriting:
    """Passes APDUs to a real software card and rewrites chosen answers."""

    def __init__(self, card: EmulatedCard, rewrite: dict[str, bytes]) -> None:
        self.card = card
        self.rewrite = rewrite

    @property
    def atr(self) -> bytes:
        return self.card.atr

    def transmit(self, apdu: bytes) -> bytes:
        answer = self.card.transmit(apdu)
        for prefix, replacement in self.rewrite.items():
            if apdu.hex().upper().startswith(prefix):
                return replacement
        return answer

    def close(self) -> None:
        pass


def read(card: EmulatedCard, sam: SoftwareSam, rewrite: dict[str, bytes]) -> CardError:
    with pytest.raises(CardError) as info:
        CardSession(Rewriting(card, rewrite), sam).read_all()
    assert info.value.message
    assert info.value.hint
    return info.value


@pytest.mark.parametrize(
    ("rewrite", "expected"),
    [
        ({"00B2012800": b"\x90"}, CardProtocolError),  # less than a status word
        ({"00B2012800": b"\x01\x02\x03\x42\x00"}, CardProtocolError),  # SW1 42: noise
        ({"00B2012800": bytes.fromhex("0205313233349000")}, CardDataError),  # wrong tag
        ({"00B2012800": bytes.fromhex("0105319000")}, CardDataError),  # truncated TLV
        ({"00B2012800": bytes.fromhex("0102313200009000")}, CardDataError),  # too long
        ({"00B2012800": bytes.fromhex("6FAA")}, CardStatusError),  # unknown SW
        ({"00B2042800": bytes.fromhex("04021A2B9000")}, CardDataError),  # bad BCD
        ({"00B2032800": bytes.fromhex("030281FF9000")}, CardDataError),  # bad GBK
        ({"0084000008": bytes.fromhex("01029000")}, CardDataError),  # short challenge
        ({"00B0870000": bytes.fromhex("FFFF") + bytes(254) + b"\x90\x00"}, CardDataError),
        (
            {"00B0870000": bytes.fromhex("0010") + b"GIF89a" + bytes(248) + b"\x90\x00"},
            CardDataError,
        ),  # not a JPEG
        ({"00B2013C00": bytes.fromhex("AB9000")}, CardDataError),  # index record not 1 byte
        ({"00B0000000": bytes.fromhex("0107FF")}, CardProtocolError),  # visit: noise SW
    ],
)
def test_wrong_answers_are_typed(
    card: EmulatedCard, sam: SoftwareSam, rewrite: dict[str, bytes], expected: type[CardError]
) -> None:
    error = read(card, sam, rewrite)
    assert isinstance(error, expected), repr(error)


def test_pulled_mid_read_in_process(card: EmulatedCard, sam: SoftwareSam) -> None:
    card.pull_after(40)
    with pytest.raises(CardAbsentError):
        CardSession(card, sam).read_all()
    card.reset()
    assert CardSession(card, sam).read_issuer().card_number  # reinserted, reads again

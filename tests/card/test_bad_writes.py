"""Bad input on every write: each a typed error, and not one byte of the card changes.

The writes are an allergy append, an immunisation append, a TLV item under secure
messaging and a visit record. Each is tried against wrong keys, a card of another
city, a replayed authentication cryptogram, a replayed secure-messaging command, a
bad MAC, a SAM with a wrong PIN, a SAM that lost its PIN state, a blocked key, a key
held back by the guard, no SAM and a SAM pulled from its slot. Every file of the
emulator is compared byte for byte before and after.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from card_samples import KEYS, KEYS_3DES, SAMPLES

from hcmiddleware.card import filemap as fm
from hcmiddleware.card.data import Allergy, Immunisation, VisitRecord
from hcmiddleware.card.emulator import EmulatedCard
from hcmiddleware.card.guard import KeyGuard
from hcmiddleware.card.records import encode_item
from hcmiddleware.card.session import CardSession
from hcmiddleware.errors import (
    CardAbsentError,
    CardAuthError,
    CardCityError,
    CardKeyAtRiskError,
    CardKeyBlockedError,
    CardMacError,
    HcmError,
    SamPinError,
    SamStatusError,
    SamUnavailableError,
)
from hcmiddleware.sam.emulated import EmulatedSam
from hcmiddleware.sam.keyset import load_keyset
from hcmiddleware.sam.pcsc import PcscSam
from hcmiddleware.sam.software import SoftwareSam

PIN = "802517"
Write = Callable[[CardSession], object]

WRITES: dict[str, tuple[fm.EfSpec, Write]] = {
    "allergy": (
        fm.ALLERGIES,
        lambda s: s.add_allergy(Allergy(substance="青霉素", reaction="皮疹")),
    ),
    "immunisation": (
        fm.IMMUNISATIONS,
        lambda s: s.add_immunisation(Immunisation(vaccine="流感疫苗", date=dt.date(2026, 11, 27))),
    ),
    "item under SM": (fm.CONTACTS, lambda s: s.update_item(27, "13511112222")),
    "visit": (
        fm.VISIT_SLOTS[fm.VisitKind.OUTPATIENT].index,
        lambda s: s.append_visit(
            VisitRecord(
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
            )
        ),
    ),
}


def snapshot(card: EmulatedCard) -> dict[str, bytes]:
    """Every file's bytes."""
    return {spec.path: card.file_bytes(spec) for spec in fm.FILES}


def update_key(write: str) -> int:
    ef = WRITES[write][0]
    assert ef.update_key is not None
    return ef.update_key


def authenticate(card: EmulatedCard, key_ref: int, cryptogram: Callable[[bytes], bytes]) -> int:
    """Select the key's DF, then GET CHALLENGE and EXTERNAL AUTHENTICATE; the SW."""
    df = next(d for d in fm.DFS if key_ref in (d.read_key, d.update_key))
    name = fm.DDF1.name
    assert name is not None
    card.transmit(bytes([0, 0xA4, 4, 0, len(name)]) + name)
    if df is not fm.DDF1:
        card.transmit(bytes([0, 0xA4, 0, 0, 2]) + df.fid.to_bytes(2, "big"))
    challenge = card.transmit(bytes.fromhex("0084000008"))[:-2]
    answer = card.transmit(bytes([0, 0x82, 0, key_ref, 8]) + cryptogram(challenge))
    return int.from_bytes(answer[-2:], "big")


class ReplayingSam(SoftwareSam):
    """Answers every external authentication with a cryptogram recorded earlier."""

    def __init__(self, recorded: dict[int, bytes]) -> None:
        super().__init__(load_keyset(KEYS))
        self.recorded = recorded

    def external_auth(self, key_ref: int, card_factor: bytes, challenge: bytes) -> bytes:
        return self.recorded.get(key_ref) or super().external_auth(key_ref, card_factor, challenge)


class ReplayingSmSam(SoftwareSam):
    """Sends a secure-messaging command recorded under an earlier challenge."""

    def __init__(self, recorded: bytes) -> None:
        super().__init__(load_keyset(KEYS))
        self.recorded = recorded

    def secure_update(self, *args: Any, **kwargs: Any) -> bytes:
        return self.recorded


class FlippingSam(SoftwareSam):
    """A SAM whose secure-messaging commands arrive with one bit flipped in the MAC."""

    def secure_update(self, *args: Any, **kwargs: Any) -> bytes:
        apdu = super().secure_update(*args, **kwargs)
        return apdu[:-1] + bytes([apdu[-1] ^ 0x01])


class PulledSlot:
    """A SAM slot whose SAM is pulled after it was opened."""

    def __init__(self, sam: EmulatedSam) -> None:
        self.sam = sam
        self.pulled = False

    def transmit(self, apdu: bytes) -> bytes:
        if self.pulled:
            raise CardAbsentError("the SAM was removed from its slot")
        return self.sam.transmit(apdu)


def good_sam() -> SoftwareSam:
    return SoftwareSam.from_file(KEYS)


# Each case: (writes it applies to, set-up returning the session, the error expected).
Setup = Callable[[EmulatedCard, str], CardSession]


def wrong_keys(card: EmulatedCard, write: str) -> CardSession:
    return CardSession(card, SoftwareSam.from_file(KEYS_3DES), guard=KeyGuard())


def replayed_cryptogram(card: EmulatedCard, write: str) -> CardSession:
    sam, factor = good_sam(), CardSession(card).card_factor
    recorded: dict[int, bytes] = {}
    for ref in {0x04, update_key(write)}:

        def record(challenge: bytes, ref: int = ref) -> bytes:
            recorded[ref] = sam.external_auth(ref, factor, challenge)
            return recorded[ref]

        assert authenticate(card, ref, record) == 0x9000  # the original, accepted
    card.reset()
    return CardSession(card, ReplayingSam(recorded), guard=KeyGuard())


def replayed_sm(card: EmulatedCard, write: str) -> CardSession:
    sam, factor = good_sam(), CardSession(card).card_factor
    earlier = card.transmit(bytes.fromhex("0084000008"))[:-2]
    it = fm.ITEMS[27]
    assert it.ef.sfi is not None
    header = bytes((0x04, 0xDC, it.record, (it.ef.sfi << 3) | 0x04))
    recorded = sam.secure_update(0x12, factor, earlier, header, encode_item(it, "13511112222"))
    card.reset()
    return CardSession(card, ReplayingSmSam(recorded), guard=KeyGuard())


def bad_mac(card: EmulatedCard, write: str) -> CardSession:
    return CardSession(card, FlippingSam(load_keyset(KEYS)), guard=KeyGuard())


def sam_wrong_pin(card: EmulatedCard, write: str) -> CardSession:
    # The SAM refuses to open: the terminal never gets as far as a session.
    return CardSession(card, PcscSam(EmulatedSam(load_keyset(KEYS), pin=PIN), "000000"))


def sam_lost_its_pin(card: EmulatedCard, write: str) -> CardSession:
    emulated = EmulatedSam(load_keyset(KEYS), pin=PIN)
    sam = PcscSam(emulated, PIN)
    emulated.reset()  # a power cycle of the SAM slot: the PIN must be verified again
    return CardSession(card, sam, guard=KeyGuard())


def blocked_key(card: EmulatedCard, write: str) -> CardSession:
    for _ in range(5):
        authenticate(card, update_key(write), lambda challenge: bytes(8))
    assert card.key_tries(update_key(write)) == 0
    card.reset()
    return CardSession(card, good_sam(), guard=KeyGuard(threshold=-1))


def held_back(card: EmulatedCard, write: str) -> CardSession:
    session = CardSession(card, good_sam(), guard=KeyGuard())
    session.guard.failed(session.card_factor, update_key(write), 2)
    return session


def no_sam(card: EmulatedCard, write: str) -> CardSession:
    return CardSession(card, None, guard=KeyGuard())


def sam_pulled(card: EmulatedCard, write: str) -> CardSession:
    slot = PulledSlot(EmulatedSam(load_keyset(KEYS), pin=PIN))
    sam = PcscSam(slot, PIN)
    slot.pulled = True
    return CardSession(card, sam, guard=KeyGuard())


ALL = tuple(WRITES)
CASES: dict[str, tuple[tuple[str, ...], Setup, type[HcmError]]] = {
    "wrong keys": (ALL, wrong_keys, CardAuthError),
    "replayed cryptogram": (ALL, replayed_cryptogram, CardAuthError),
    "replayed SM command": (("item under SM",), replayed_sm, CardMacError),
    "bad MAC": (("item under SM",), bad_mac, CardMacError),
    "SAM with a wrong PIN": (ALL, sam_wrong_pin, SamPinError),
    "SAM lost its PIN state": (ALL, sam_lost_its_pin, SamStatusError),
    "blocked key": (ALL, blocked_key, CardKeyBlockedError),
    "key held back by the guard": (ALL, held_back, CardKeyAtRiskError),
    "no SAM": (ALL, no_sam, SamUnavailableError),
    "SAM pulled": (ALL, sam_pulled, SamUnavailableError),
}


@pytest.mark.parametrize(
    ("case", "write"),
    [(case, write) for case, (writes, _, _) in CASES.items() for write in writes],
)
def test_bad_input_writes_nothing(card: EmulatedCard, case: str, write: str) -> None:
    _, setup, expected = CASES[case]
    card.reset()
    before = snapshot(card)
    tries = {ref: card.key_tries(ref) for ref in (0x04, update_key(write))}
    with pytest.raises(expected) as info:
        WRITES[write][1](setup(card, write))
    assert info.value.hint, "every error says what to do"
    assert snapshot(card) == before
    if expected in (CardKeyAtRiskError, SamPinError, SamUnavailableError, SamStatusError):
        assert {ref: card.key_tries(ref) for ref in tries} == tries  # no try spent


@pytest.mark.parametrize("write", ALL)
def test_a_card_of_another_city_writes_nothing_and_spends_no_try(
    profile: dict[str, Any], write: str
) -> None:
    profile["items"]["city_code"] = "320000"
    card = EmulatedCard(profile, KEYS, base_dir=SAMPLES)
    before = snapshot(card)
    with pytest.raises(CardCityError) as info:
        WRITES[write][1](CardSession(card, good_sam(), guard=KeyGuard()))
    assert info.value.hint
    assert snapshot(card) == before
    assert all(card.key_tries(ref) == 5 for ref in (0x12, 0x13, 0x14, 0x04))


@pytest.mark.parametrize("write", ALL)
def test_the_same_writes_do_change_the_card(card: EmulatedCard, write: str) -> None:
    """The snapshot sees every write: without this, 'nothing written' could be blind."""
    ef, do = WRITES[write]
    before = snapshot(card)
    do(CardSession(card, good_sam(), guard=KeyGuard()))
    assert snapshot(card)[ef.path] != before[ef.path]

"""The Sam protocol's contract, run against every implementation alike."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sam_vectors import (
    CARD_FACTOR,
    CHALLENGE,
    SM4_CRYPTOGRAM,
    SM_APDU,
    SM_HEADER,
    SM_TLV,
    golden_keyset_data,
)

from hcmiddleware.errors import (
    CardAuthenticityError,
    SamInputError,
    SamUnavailableError,
    UnknownKeyError,
)
from hcmiddleware.sam.base import Sam
from hcmiddleware.sam.crypto import Algorithm
from hcmiddleware.sam.emulated import DEFAULT_TEST_PIN, EmulatedSam
from hcmiddleware.sam.keyset import KeySet
from hcmiddleware.sam.pcsc import PcscSam
from hcmiddleware.sam.software import SoftwareSam

MakeSam = Callable[[KeySet], Sam]

IMPLEMENTATIONS: dict[str, MakeSam] = {
    "software": SoftwareSam,
    "pcsc": lambda keyset: PcscSam(EmulatedSam(keyset), DEFAULT_TEST_PIN),
}


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def make_sam(request: pytest.FixtureRequest) -> MakeSam:
    return IMPLEMENTATIONS[request.param]


@pytest.fixture
def sam(make_sam: MakeSam, golden_keyset: KeySet) -> Sam:
    return make_sam(golden_keyset)


def test_is_a_sam(sam: Sam) -> None:
    assert isinstance(sam, Sam)
    assert sam.city_code == "21"
    assert sam.key_algorithm(0x01) is Algorithm.SM4


def test_golden_vectors(sam: Sam) -> None:
    assert sam.external_auth(0x01, CARD_FACTOR, CHALLENGE) == SM4_CRYPTOGRAM
    assert sam.secure_update(0x12, CARD_FACTOR, CHALLENGE, SM_HEADER, SM_TLV) == SM_APDU
    sam.check_internal_auth(0x21, CARD_FACTOR, CHALLENGE, SM4_CRYPTOGRAM)


def test_fresh_challenges(sam: Sam) -> None:
    challenges = {sam.new_challenge() for _ in range(32)}
    assert len(challenges) == 32
    assert {len(c) for c in challenges} == {8}


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.external_auth(0x21, CARD_FACTOR, CHALLENGE),
        lambda s: s.secure_update(0x02, CARD_FACTOR, CHALLENGE, SM_HEADER, SM_TLV),
        lambda s: s.check_internal_auth(0x11, CARD_FACTOR, CHALLENGE, SM4_CRYPTOGRAM),
        lambda s: s.external_auth(0x01, CARD_FACTOR[:7], CHALLENGE),
        lambda s: s.external_auth(0x01, CARD_FACTOR, CHALLENGE[:7]),
        lambda s: s.secure_update(0x12, CARD_FACTOR, CHALLENGE, SM_HEADER, bytes(239)),
        lambda s: s.secure_update(0x12, CARD_FACTOR, CHALLENGE, b"\x00\xdc\x01\x04", SM_TLV),
    ],
    ids=[
        "internal-key-for-external",
        "read-key-for-sm",
        "update-key-for-internal",
        "short-factor",
        "short-challenge",
        "too-long",
        "no-sm-bit",
    ],
)
def test_misuse_is_an_input_error(sam: Sam, call: Callable[[Sam], object]) -> None:
    with pytest.raises(SamInputError):
        call(sam)


def test_wrong_answer_and_replay(sam: Sam) -> None:
    with pytest.raises(CardAuthenticityError):
        sam.check_internal_auth(0x21, CARD_FACTOR, CHALLENGE, bytes(8))
    with pytest.raises(SamInputError, match="already used"):
        sam.check_internal_auth(0x21, CARD_FACTOR, CHALLENGE, SM4_CRYPTOGRAM)


def test_missing_key(make_sam: MakeSam) -> None:
    data = golden_keyset_data()
    data["keys"] = [k for k in data["keys"] if k["ref"] != "13"]
    sam = make_sam(KeySet.from_data(data))
    with pytest.raises(UnknownKeyError) as info:
        sam.external_auth(0x13, CARD_FACTOR, CHALLENGE)
    assert info.value.key_ref == "13"
    with pytest.raises(UnknownKeyError):
        sam.key_algorithm(0x13)


def test_closed(sam: Sam) -> None:
    sam.close()
    sam.close()
    with pytest.raises(SamUnavailableError):
        sam.external_auth(0x01, CARD_FACTOR, CHALLENGE)
    with pytest.raises(SamUnavailableError):
        sam.new_challenge()

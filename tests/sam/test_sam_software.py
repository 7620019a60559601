"""The software SAM: golden vectors through the Sam protocol, key usage, replay, closing."""

from __future__ import annotations

import logging

import pytest
from sam_vectors import (
    CARD_FACTOR,
    CHALLENGE,
    SM4_CRYPTOGRAM,
    SM4_SESSION_KEY,
    SM_APDU,
    SM_HEADER,
    SM_TLV,
    TDES_CRYPTOGRAM,
    golden_keyset_data,
)

from hcmiddleware.errors import (
    CardAuthenticityError,
    SamInputError,
    SamUnavailableError,
    UnknownKeyError,
)
from hcmiddleware.sam import crypto
from hcmiddleware.sam.base import Sam
from hcmiddleware.sam.crypto import Algorithm
from hcmiddleware.sam.keyset import KeySet, load_keyset
from hcmiddleware.sam.samples import TEST_ISSUER_KEYS
from hcmiddleware.sam.software import SoftwareSam


@pytest.fixture
def sam(golden_keyset: KeySet) -> SoftwareSam:
    return SoftwareSam(golden_keyset)


def test_is_a_sam(sam: SoftwareSam) -> None:
    assert isinstance(sam, Sam)
    assert sam.city_code == "21"
    assert sam.key_algorithm(0x12) is Algorithm.SM4


class TestGolden:
    def test_external_auth(self, sam: SoftwareSam) -> None:
        assert sam.external_auth(0x01, CARD_FACTOR, CHALLENGE) == SM4_CRYPTOGRAM
        assert sam.external_auth(0x12, CARD_FACTOR, CHALLENGE) == SM4_CRYPTOGRAM

    def test_external_auth_3des(self, golden_keyset_3des: KeySet) -> None:
        sam = SoftwareSam(golden_keyset_3des)
        assert sam.external_auth(0x03, CARD_FACTOR, CHALLENGE) == TDES_CRYPTOGRAM

    def test_secure_update(self, sam: SoftwareSam) -> None:
        assert sam.secure_update(0x12, CARD_FACTOR, CHALLENGE, SM_HEADER, SM_TLV) == SM_APDU

    def test_internal_auth_accepts_the_genuine_answer(self, sam: SoftwareSam) -> None:
        sam.check_internal_auth(0x21, CARD_FACTOR, CHALLENGE, SM4_CRYPTOGRAM)


class TestInternalAuthRefuses:
    def test_wrong_answer(self, sam: SoftwareSam) -> None:
        wrong = bytes([SM4_CRYPTOGRAM[0] ^ 1]) + SM4_CRYPTOGRAM[1:]
        with pytest.raises(CardAuthenticityError) as info:
            sam.check_internal_auth(0x21, CARD_FACTOR, CHALLENGE, wrong)
        assert info.value.key_ref == "21"

    @pytest.mark.parametrize("response", [b"", SM4_CRYPTOGRAM[:4], SM4_CRYPTOGRAM + b"\x00"])
    def test_wrong_length_answer(self, sam: SoftwareSam, response: bytes) -> None:
        with pytest.raises(CardAuthenticityError):
            sam.check_internal_auth(0x21, CARD_FACTOR, CHALLENGE, response)

    def test_card_of_another_city(self) -> None:
        other_city = SoftwareSam(KeySet.from_data(golden_keyset_data(city_code="22")))
        with pytest.raises(CardAuthenticityError):
            other_city.check_internal_auth(0x21, CARD_FACTOR, CHALLENGE, SM4_CRYPTOGRAM)

    def test_other_card(self, sam: SoftwareSam) -> None:
        with pytest.raises(CardAuthenticityError):
            sam.check_internal_auth(0x21, b"87654321", CHALLENGE, SM4_CRYPTOGRAM)

    def test_replayed_challenge(self, sam: SoftwareSam) -> None:
        sam.check_internal_auth(0x21, CARD_FACTOR, CHALLENGE, SM4_CRYPTOGRAM)
        with pytest.raises(SamInputError, match="already used"):
            sam.check_internal_auth(0x21, CARD_FACTOR, CHALLENGE, SM4_CRYPTOGRAM)

    def test_new_challenges_are_fresh(self, sam: SoftwareSam) -> None:
        challenges = {sam.new_challenge() for _ in range(64)}
        assert len(challenges) == 64
        assert all(len(c) == 8 for c in challenges)


class TestKeyUsage:
    def test_internal_auth_key_never_makes_an_external_cryptogram(self, sam: SoftwareSam) -> None:
        # Otherwise the SAM would hand out exactly what a genuine card answers.
        with pytest.raises(SamInputError, match="key 21 cannot be used for external"):
            sam.external_auth(0x21, CARD_FACTOR, CHALLENGE)

    @pytest.mark.parametrize("ref", [0x01, 0x02, 0x03, 0x04, 0x21])
    def test_secure_messaging_only_with_update_keys(self, sam: SoftwareSam, ref: int) -> None:
        with pytest.raises(SamInputError, match="secure messaging"):
            sam.secure_update(ref, CARD_FACTOR, CHALLENGE, SM_HEADER, SM_TLV)

    @pytest.mark.parametrize("ref", [0x01, 0x11, 0x14])
    def test_internal_auth_only_with_its_key(self, sam: SoftwareSam, ref: int) -> None:
        with pytest.raises(SamInputError, match="internal authentication"):
            sam.check_internal_auth(ref, CARD_FACTOR, CHALLENGE, SM4_CRYPTOGRAM)

    def test_unknown_key(self, sam: SoftwareSam) -> None:
        with pytest.raises(UnknownKeyError) as info:
            sam.external_auth(0x05, CARD_FACTOR, CHALLENGE)
        assert info.value.key_ref == "05"

    def test_key_missing_from_the_set(self) -> None:
        data = golden_keyset_data()
        data["keys"] = [k for k in data["keys"] if k["ref"] != "12"]
        sam = SoftwareSam(KeySet.from_data(data))
        with pytest.raises(UnknownKeyError):
            sam.secure_update(0x12, CARD_FACTOR, CHALLENGE, SM_HEADER, SM_TLV)


class TestShapes:
    @pytest.mark.parametrize("factor", [b"", b"1234567", b"123456789"])
    def test_card_factor(self, sam: SoftwareSam, factor: bytes) -> None:
        with pytest.raises(SamInputError, match="card factor"):
            sam.external_auth(0x01, factor, CHALLENGE)

    def test_challenge(self, sam: SoftwareSam) -> None:
        with pytest.raises(SamInputError, match="challenge"):
            sam.external_auth(0x01, CARD_FACTOR, CHALLENGE[:7])
        with pytest.raises(SamInputError, match="challenge"):
            sam.secure_update(0x12, CARD_FACTOR, CHALLENGE + b"\x00", SM_HEADER, SM_TLV)


class TestClosing:
    def test_closed_sam_refuses(self, golden_keyset: KeySet) -> None:
        with SoftwareSam(golden_keyset) as sam:
            sam.external_auth(0x01, CARD_FACTOR, CHALLENGE)
        assert "closed" in repr(sam)
        for call in (
            lambda: sam.external_auth(0x01, CARD_FACTOR, CHALLENGE),
            lambda: sam.new_challenge(),
            lambda: sam.key_algorithm(0x01),
            lambda: sam.check_internal_auth(0x21, CARD_FACTOR, CHALLENGE, SM4_CRYPTOGRAM),
        ):
            with pytest.raises(SamUnavailableError):
                call()
        sam.close()  # idempotent


def test_no_key_material_in_debug_logs(caplog: pytest.LogCaptureFixture) -> None:
    """A full authenticate-and-write with DEBUG logging shows no master, card or session key."""
    keyset = load_keyset(TEST_ISSUER_KEYS)
    sam = SoftwareSam.from_file(TEST_ISSUER_KEYS)
    caplog.set_level(logging.DEBUG)
    challenge = sam.new_challenge()
    sam.external_auth(0x12, CARD_FACTOR, CHALLENGE)
    apdu = sam.secure_update(0x12, CARD_FACTOR, CHALLENGE, SM_HEADER, SM_TLV)
    dk21 = keyset.card_key(0x21, CARD_FACTOR).reveal()
    sam.check_internal_auth(
        0x21, CARD_FACTOR, challenge, crypto.cryptogram(Algorithm.SM4, dk21, challenge)
    )
    with pytest.raises(CardAuthenticityError) as info:
        sam.check_internal_auth(0x21, CARD_FACTOR, sam.new_challenge(), bytes(8))
    logging.getLogger("test").debug("sam %r apdu %s", sam, apdu.hex())
    assert caplog.records  # the SAM did log
    secrets_seen = [e.master.reveal() for e in keyset.keys]
    for entry in keyset.keys:
        dk = keyset.card_key(entry.ref, CARD_FACTOR).reveal()
        secrets_seen += [dk, crypto.session_key(entry.alg, dk, CHALLENGE)]
    blob = (caplog.text + repr(sam) + str(info.value) + repr(info.value.details())).lower()
    for secret in secrets_seen:
        assert secret.hex() not in blob
        assert secret.hex()[:16] not in blob
    assert SM4_SESSION_KEY.hex() not in blob

"""The SAM card emulator, APDU by APDU: PIN, key types, golden vectors, refusals."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
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

from hcmiddleware.errors import SamInputError
from hcmiddleware.sam import commands, crypto
from hcmiddleware.sam.commands import DataTag, KeyType
from hcmiddleware.sam.crypto import Algorithm
from hcmiddleware.sam.emulated import DEFAULT_TEST_PIN, EmulatedSam
from hcmiddleware.sam.keyset import KeySet

CITY = crypto.city_factor("21")


def sw(response: bytes) -> int:
    return int.from_bytes(response[-2:], "big")


@pytest.fixture
def card(golden_keyset: KeySet) -> EmulatedSam:
    return EmulatedSam(golden_keyset)


@pytest.fixture
def opened(card: EmulatedSam) -> EmulatedSam:
    assert sw(card.transmit(commands.verify_pin(DEFAULT_TEST_PIN))) == 0x9000
    return card


def deliver(card: EmulatedSam, key_type: KeyType, ref: int) -> int:
    return sw(card.transmit(commands.deliver_key(key_type, ref, CARD_FACTOR, CITY)))


def test_atr_ends_with_the_serial(golden_keyset: KeySet) -> None:
    serial = bytes.fromhex("0102030405060708")
    card = EmulatedSam(golden_keyset, serial=serial)
    atr = card.atr
    assert atr[:4] == bytes([0x3B, 0x80 | 14, 0x80, 0x01])  # T=1, 14 historical bytes
    historical = atr[4:-1]
    assert len(historical) == 14
    assert historical.endswith(serial)
    check = 0
    for byte in atr[1:]:
        check ^= byte
    assert check == 0  # TCK


class TestPin:
    def test_status_counts_down_and_blocks_for_good(self, card: EmulatedSam) -> None:
        assert sw(card.transmit(commands.pin_status())) == 0x63C3
        assert sw(card.transmit(commands.verify_pin("000000"))) == 0x63C2
        assert sw(card.transmit(commands.verify_pin("000000"))) == 0x63C1
        assert sw(card.transmit(commands.pin_status())) == 0x63C1
        assert sw(card.transmit(commands.verify_pin("000000"))) == 0x6983
        card.reset()
        assert sw(card.transmit(commands.verify_pin(DEFAULT_TEST_PIN))) == 0x6983
        assert sw(card.transmit(commands.pin_status())) == 0x6983
        assert card.pin_tries_left == 0

    def test_right_pin_restores_the_counter(self, card: EmulatedSam) -> None:
        card.transmit(commands.verify_pin("000000"))
        assert sw(card.transmit(commands.verify_pin(DEFAULT_TEST_PIN))) == 0x9000
        assert card.pin_tries_left == 3
        assert sw(card.transmit(commands.pin_status())) == 0x9000

    def test_reset_forgets_the_pin(self, opened: EmulatedSam) -> None:
        opened.reset()
        assert deliver(opened, KeyType.EXTERNAL_AUTH, 0x01) == 0x6982

    @pytest.mark.parametrize(
        "apdu",
        [
            commands.deliver_key(KeyType.EXTERNAL_AUTH, 0x01, CARD_FACTOR, CITY),
            commands.encrypt(CHALLENGE),
            commands.session(CHALLENGE),
            commands.sm_wrap(SM_HEADER, SM_TLV),
            commands.mac(b"abc"),
        ],
    )
    def test_key_commands_need_the_pin(self, card: EmulatedSam, apdu: bytes) -> None:
        assert sw(card.transmit(apdu)) == 0x6982

    def test_emulator_refuses_a_malformed_pin(self, golden_keyset: KeySet) -> None:
        with pytest.raises(SamInputError):
            EmulatedSam(golden_keyset, pin="12ab")


class TestData:
    def test_get_data_without_pin(self, card: EmulatedSam) -> None:
        assert card.transmit(commands.get_data(DataTag.CITY_CODE)) == b"21\x90\x00"
        assert card.transmit(commands.get_data(DataTag.TERMINAL_NUMBER))[:-2].hex() == (
            "210100000001"
        )
        keys = card.transmit(commands.get_data(DataTag.KEY_LIST))[:-2]
        assert keys[:2] == b"\x01\x01"  # ref 01, SM4
        assert len(keys) == 18

    def test_unknown_tag(self, card: EmulatedSam) -> None:
        assert sw(card.transmit(bytes.fromhex("80CA000900"))) == 0x6A88

    def test_challenges(self, card: EmulatedSam) -> None:
        a, b = card.transmit(commands.get_challenge()), card.transmit(commands.get_challenge())
        assert sw(a) == sw(b) == 0x9000
        assert len(a) == 10
        assert a != b
        assert sw(card.transmit(bytes.fromhex("0084000004"))) == 0x6C08


class TestGolden:
    def test_cryptogram(self, opened: EmulatedSam) -> None:
        assert deliver(opened, KeyType.EXTERNAL_AUTH, 0x01) == 0x9000
        assert opened.transmit(commands.encrypt(CHALLENGE)) == SM4_CRYPTOGRAM + b"\x90\x00"

    def test_secure_messaging(self, opened: EmulatedSam) -> None:
        assert deliver(opened, KeyType.SECURE_MESSAGING, 0x12) == 0x9000
        assert sw(opened.transmit(commands.session(CHALLENGE))) == 0x9000
        assert opened.transmit(commands.sm_wrap(SM_HEADER, SM_TLV)) == SM_APDU[5:] + b"\x90\x00"
        mac = opened.transmit(commands.mac(b"some data"))
        assert mac == crypto.mac4(Algorithm.SM4, SM4_SESSION_KEY, b"some data") + b"\x90\x00"

    def test_internal_auth_check(self, opened: EmulatedSam) -> None:
        assert deliver(opened, KeyType.INTERNAL_AUTH, 0x21) == 0x9000
        good = commands.check_internal_auth(CHALLENGE, SM4_CRYPTOGRAM)
        bad = commands.check_internal_auth(CHALLENGE, bytes(8))
        assert opened.transmit(good) == b"\x90\x00"
        assert opened.transmit(bad) == b"\x63\x00"

    def test_tdes_cryptogram(self) -> None:
        card = EmulatedSam(KeySet.from_data(golden_keyset_data("3DES")))
        card.transmit(commands.verify_pin(DEFAULT_TEST_PIN))
        assert deliver(card, KeyType.EXTERNAL_AUTH, 0x03) == 0x9000
        assert card.transmit(commands.encrypt(CHALLENGE)) == TDES_CRYPTOGRAM + b"\x90\x00"


class TestKeyTypes:
    @pytest.mark.parametrize(
        ("key_type", "ref"),
        [
            (KeyType.EXTERNAL_AUTH, 0x21),
            (KeyType.SECURE_MESSAGING, 0x01),
            (KeyType.SECURE_MESSAGING, 0x21),
            (KeyType.INTERNAL_AUTH, 0x12),
        ],
    )
    def test_key_bound_to_its_usage(self, opened: EmulatedSam, key_type: KeyType, ref: int) -> None:
        assert deliver(opened, key_type, ref) == 0x6985

    def test_no_cryptogram_under_the_internal_auth_key(self, opened: EmulatedSam) -> None:
        assert deliver(opened, KeyType.INTERNAL_AUTH, 0x21) == 0x9000
        assert sw(opened.transmit(commands.encrypt(CHALLENGE))) == 0x6985
        assert sw(opened.transmit(commands.session(CHALLENGE))) == 0x6985

    def test_no_session_from_an_external_auth_delivery(self, opened: EmulatedSam) -> None:
        assert deliver(opened, KeyType.EXTERNAL_AUTH, 0x12) == 0x9000
        assert sw(opened.transmit(commands.session(CHALLENGE))) == 0x6985
        assert sw(opened.transmit(commands.sm_wrap(SM_HEADER, SM_TLV))) == 0x6985

    def test_new_delivery_ends_the_session(self, opened: EmulatedSam) -> None:
        deliver(opened, KeyType.SECURE_MESSAGING, 0x12)
        opened.transmit(commands.session(CHALLENGE))
        deliver(opened, KeyType.EXTERNAL_AUTH, 0x01)
        assert sw(opened.transmit(commands.sm_wrap(SM_HEADER, SM_TLV))) == 0x6985
        assert sw(opened.transmit(commands.mac(b"x"))) == 0x6985

    def test_encrypt_before_delivery(self, opened: EmulatedSam) -> None:
        assert sw(opened.transmit(commands.encrypt(CHALLENGE))) == 0x6985

    def test_unknown_key_and_key_type(self, opened: EmulatedSam) -> None:
        assert deliver(opened, KeyType.EXTERNAL_AUTH, 0x05) == 0x6A88
        apdu = bytearray(commands.deliver_key(KeyType.EXTERNAL_AUTH, 0x01, CARD_FACTOR, CITY))
        apdu[2] = 0x09
        assert sw(opened.transmit(bytes(apdu))) == 0x6A86


class TestMalformed:
    @pytest.mark.parametrize(
        ("apdu", "expected"),
        [
            ("8020", 0x6700),
            ("80DE01010431323334", 0x6700),  # factors too short
            ("80DE010110" + "31" * 15, 0x6700),  # Lc says 16, 15 bytes follow
            ("80FA010009" + "00" * 9, 0x6700),  # SESSION over a 9-byte challenge
            ("80FA020003040000", 0x6700),  # SM WRAP header cut short
            ("A0DE0000", 0x6E00),
            ("80AA0000", 0x6D00),
            ("80FA0900", 0x6A86),
            ("0020000100", 0x6A86),
        ],
    )
    def test_refused(self, opened: EmulatedSam, apdu: str, expected: int) -> None:
        deliver(opened, KeyType.SECURE_MESSAGING, 0x12)
        opened.transmit(commands.session(CHALLENGE))
        assert opened.transmit(bytes.fromhex(apdu)) == expected.to_bytes(2, "big")

    def test_sm_wrap_without_the_sm_bit(self, opened: EmulatedSam) -> None:
        deliver(opened, KeyType.SECURE_MESSAGING, 0x12)
        opened.transmit(commands.session(CHALLENGE))
        apdu = bytes.fromhex("80FA020009") + bytes.fromhex("00DC0104") + SM_TLV + b"\x00"
        assert sw(opened.transmit(apdu)) == 0x6A80

    def test_sm_wrap_too_long(self, opened: EmulatedSam) -> None:
        deliver(opened, KeyType.SECURE_MESSAGING, 0x12)
        opened.transmit(commands.session(CHALLENGE))
        assert sw(opened.transmit(commands.sm_wrap(SM_HEADER, bytes(238)))) == 0x9000
        assert sw(opened.transmit(commands.sm_wrap(SM_HEADER, bytes(239)))) == 0x6700


@given(st.binary(max_size=300))
@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_any_bytes_get_a_status_word(opened: EmulatedSam, apdu: bytes) -> None:
    """Whatever arrives, the SAM answers with a status word and never raises."""
    deliver(opened, KeyType.SECURE_MESSAGING, 0x12)
    opened.transmit(commands.session(CHALLENGE))
    response = opened.transmit(apdu)
    assert len(response) >= 2
    assert response[-2] in (0x90, 0x61, 0x63, 0x67, 0x69, 0x6A, 0x6C, 0x6D, 0x6E)


def test_redact_hides_the_pin() -> None:
    apdu = commands.verify_pin("654321")
    assert b"654321" in apdu
    assert b"654321" not in commands.redact(apdu)
    assert commands.redact(apdu)[:5] == apdu[:5]
    other = commands.encrypt(CHALLENGE)
    assert commands.redact(other) == other


@pytest.mark.parametrize("pin", ["123", "1234567890123", "12a456", "１２３４５６"])
def test_pin_form_is_checked_without_echoing_it(pin: str) -> None:
    with pytest.raises(SamInputError) as info:
        commands.verify_pin(pin)
    assert pin not in str(info.value)

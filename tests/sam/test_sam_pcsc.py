"""PcscSam driving the SAM card emulator through APDUs, as it drives a SAM in a PC/SC slot."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
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
    CardAbsentError,
    CardAuthenticityError,
    CardProtocolError,
    SamBlockedError,
    SamInputError,
    SamPinError,
    SamStatusError,
    SamUnavailableError,
    UnknownKeyError,
)
from hcmiddleware.sam import crypto
from hcmiddleware.sam.base import Sam
from hcmiddleware.sam.crypto import Algorithm
from hcmiddleware.sam.emulated import DEFAULT_TEST_PIN, EmulatedSam
from hcmiddleware.sam.keyset import KeySet, load_keyset
from hcmiddleware.sam.pcsc import PcscSam
from hcmiddleware.sam.samples import TEST_ISSUER_KEYS, TEST_ISSUER_KEYS_3DES
from hcmiddleware.sam.software import SoftwareSam


class Recording:
    """A transport that keeps every APDU it carries."""

    def __init__(self, card: EmulatedSam) -> None:
        self.card = card
        self.sent: list[bytes] = []

    def transmit(self, apdu: bytes) -> bytes:
        self.sent.append(apdu)
        return self.card.transmit(apdu)


class T0Style:
    """A transport like T=0 readers: data comes back only through 61xx + GET RESPONSE."""

    def __init__(self, card: EmulatedSam) -> None:
        self.card = card
        self.pending = b""

    def transmit(self, apdu: bytes) -> bytes:
        if apdu[:2] == b"\x00\xc0":
            data, self.pending = self.pending, b""
            return data + b"\x90\x00"
        response = self.card.transmit(apdu)
        if len(response) > 2 and response[-2:] == b"\x90\x00":
            self.pending = response[:-2]
            return bytes([0x61, len(self.pending)])
        return response


@pytest.fixture
def card(golden_keyset: KeySet) -> EmulatedSam:
    return EmulatedSam(golden_keyset)


@pytest.fixture
def sam(card: EmulatedSam) -> PcscSam:
    return PcscSam(card, DEFAULT_TEST_PIN)


class TestOpening:
    def test_reads_the_sam(self, sam: PcscSam) -> None:
        assert isinstance(sam, Sam)
        assert sam.city_code == "21"
        assert sam.serial == "5341000000000001"
        assert sam.terminal_number == "210100000001"
        assert sam.key_algorithm(0x12) is Algorithm.SM4
        assert "5341000000000001" in repr(sam)

    def test_pin_as_secret_str(self, card: EmulatedSam) -> None:
        PcscSam(card, SecretStr(DEFAULT_TEST_PIN))

    def test_wrong_pin(self, card: EmulatedSam) -> None:
        with pytest.raises(SamPinError) as info:
            PcscSam(card, "999999")
        assert info.value.tries_left == 2
        assert "999999" not in str(info.value) + repr(info.value.details())

    def test_last_try_is_not_spent(self, card: EmulatedSam) -> None:
        for _ in range(2):
            with pytest.raises(SamPinError):
                PcscSam(card, "999999")
        assert card.pin_tries_left == 1
        with pytest.raises(SamPinError, match="one PIN try left") as info:
            PcscSam(card, DEFAULT_TEST_PIN)  # even the right PIN: the guard comes first
        assert info.value.tries_left == 1
        assert card.pin_tries_left == 1
        # An operator who typed the PIN may spend it.
        PcscSam(card, DEFAULT_TEST_PIN, allow_last_try=True)
        assert card.pin_tries_left == 3

    def test_blocked(self, card: EmulatedSam) -> None:
        for _ in range(2):
            with pytest.raises(SamPinError):
                PcscSam(card, "999999")
        with pytest.raises(SamBlockedError):
            PcscSam(card, "999999", allow_last_try=True)
        with pytest.raises(SamBlockedError):
            PcscSam(card, DEFAULT_TEST_PIN, allow_last_try=True)

    @pytest.mark.parametrize("blocked_sw", [b"\x69\x83", b"\x63\xc0"])
    def test_blocked_reported_either_way(self, blocked_sw: bytes) -> None:
        class BlockedSam:
            def __init__(self) -> None:
                self.sent: list[bytes] = []

            def transmit(self, apdu: bytes) -> bytes:
                self.sent.append(apdu)
                return blocked_sw

        link = BlockedSam()
        with pytest.raises(SamBlockedError):
            PcscSam(link, DEFAULT_TEST_PIN, allow_last_try=True)
        assert link.sent == [bytes.fromhex("00200000")]  # asked, never tried

    def test_malformed_pin_spends_no_try(self, card: EmulatedSam) -> None:
        with pytest.raises(SamInputError):
            PcscSam(card, "12 34")
        assert card.pin_tries_left == 3

    def test_missing_sam(self) -> None:
        class NoCard:
            def transmit(self, apdu: bytes) -> bytes:
                raise CardAbsentError("no card in Virtual PCD 00 01")

        with pytest.raises(SamUnavailableError) as info:
            PcscSam(NoCard(), DEFAULT_TEST_PIN)
        assert isinstance(info.value.__cause__, CardAbsentError)

    def test_garbled_link(self) -> None:
        class Garbled:
            def transmit(self, apdu: bytes) -> bytes:
                raise CardProtocolError("the reader returned a malformed frame")

        with pytest.raises(SamUnavailableError):
            PcscSam(Garbled(), DEFAULT_TEST_PIN)

    def test_broken_link(self) -> None:
        class Broken:
            def transmit(self, apdu: bytes) -> bytes:
                raise ConnectionResetError("peer went away")

        with pytest.raises(SamUnavailableError):
            PcscSam(Broken(), DEFAULT_TEST_PIN)

    def test_not_a_sam(self) -> None:
        class OtherCard:
            def transmit(self, apdu: bytes) -> bytes:
                return b"\x6d\x00"

        with pytest.raises(SamStatusError) as info:
            PcscSam(OtherCard(), DEFAULT_TEST_PIN)
        assert info.value.sw == 0x6D00

    def test_garbage_answer(self) -> None:
        class Garbage:
            def transmit(self, apdu: bytes) -> bytes:
                return b"\x90"

        with pytest.raises(SamStatusError, match="less than a status word"):
            PcscSam(Garbage(), DEFAULT_TEST_PIN)

    def test_t0_style_get_response(self, card: EmulatedSam) -> None:
        sam = PcscSam(T0Style(card), DEFAULT_TEST_PIN)
        assert sam.external_auth(0x01, CARD_FACTOR, CHALLENGE) == SM4_CRYPTOGRAM
        assert sam.secure_update(0x12, CARD_FACTOR, CHALLENGE, SM_HEADER, SM_TLV) == SM_APDU


class TestGolden:
    def test_external_auth(self, sam: PcscSam) -> None:
        assert sam.external_auth(0x01, CARD_FACTOR, CHALLENGE) == SM4_CRYPTOGRAM

    def test_secure_update(self, sam: PcscSam) -> None:
        assert sam.secure_update(0x12, CARD_FACTOR, CHALLENGE, SM_HEADER, SM_TLV) == SM_APDU

    def test_internal_auth(self, sam: PcscSam) -> None:
        sam.check_internal_auth(0x21, CARD_FACTOR, CHALLENGE, SM4_CRYPTOGRAM)


class TestRefusals:
    def test_wrong_internal_auth_answer(self, sam: PcscSam) -> None:
        with pytest.raises(CardAuthenticityError) as info:
            sam.check_internal_auth(0x21, CARD_FACTOR, CHALLENGE, bytes(8))
        assert info.value.key_ref == "21"

    def test_short_internal_auth_answer(self, sam: PcscSam) -> None:
        with pytest.raises(CardAuthenticityError):
            sam.check_internal_auth(0x21, CARD_FACTOR, sam.new_challenge(), b"\x90\x00")

    def test_replayed_challenge(self, sam: PcscSam) -> None:
        sam.check_internal_auth(0x21, CARD_FACTOR, CHALLENGE, SM4_CRYPTOGRAM)
        with pytest.raises(SamInputError, match="already used"):
            sam.check_internal_auth(0x21, CARD_FACTOR, CHALLENGE, SM4_CRYPTOGRAM)

    def test_card_of_another_city(self) -> None:
        other = EmulatedSam(KeySet.from_data(golden_keyset_data(city_code="22")))
        sam = PcscSam(other, DEFAULT_TEST_PIN)
        assert sam.external_auth(0x01, CARD_FACTOR, CHALLENGE) != SM4_CRYPTOGRAM
        with pytest.raises(CardAuthenticityError):
            sam.check_internal_auth(0x21, CARD_FACTOR, CHALLENGE, SM4_CRYPTOGRAM)

    def test_key_usage_checked_before_any_apdu(self, card: EmulatedSam) -> None:
        transport = Recording(card)
        sam = PcscSam(transport, DEFAULT_TEST_PIN)
        sent = len(transport.sent)
        with pytest.raises(SamInputError):
            sam.external_auth(0x21, CARD_FACTOR, CHALLENGE)
        with pytest.raises(SamInputError):
            sam.secure_update(0x01, CARD_FACTOR, CHALLENGE, SM_HEADER, SM_TLV)
        assert len(transport.sent) == sent

    def test_key_the_sam_lacks(self) -> None:
        data = golden_keyset_data()
        data["keys"] = [k for k in data["keys"] if k["ref"] not in ("01", "12")]
        sam = PcscSam(EmulatedSam(KeySet.from_data(data)), DEFAULT_TEST_PIN)
        with pytest.raises(UnknownKeyError) as info:
            sam.external_auth(0x01, CARD_FACTOR, CHALLENGE)  # the SAM answers 6A88
        assert info.value.key_ref == "01"
        with pytest.raises(UnknownKeyError):
            sam.secure_update(0x12, CARD_FACTOR, CHALLENGE, SM_HEADER, SM_TLV)

    def test_sam_reset_behind_our_back(self, card: EmulatedSam, sam: PcscSam) -> None:
        card.reset()
        with pytest.raises(SamStatusError, match="PIN is not verified") as info:
            sam.external_auth(0x01, CARD_FACTOR, CHALLENGE)
        assert info.value.sw == 0x6982
        assert info.value.details()["sw"] == "6982"

    def test_too_long_for_one_command(self, sam: PcscSam) -> None:
        with pytest.raises(SamInputError, match="do not fit"):
            sam.secure_update(0x12, CARD_FACTOR, CHALLENGE, SM_HEADER, bytes(239))

    def test_closed(self, sam: PcscSam) -> None:
        with sam:
            pass
        with pytest.raises(SamUnavailableError):
            sam.external_auth(0x01, CARD_FACTOR, CHALLENGE)
        with pytest.raises(SamUnavailableError):
            sam.key_algorithm(0x01)
        assert "closed" in repr(sam)


@pytest.mark.parametrize("path", [TEST_ISSUER_KEYS, TEST_ISSUER_KEYS_3DES], ids=["SM4", "3DES"])
@given(
    factor=st.binary(min_size=8, max_size=8),
    challenge=st.binary(min_size=8, max_size=8),
    plain=st.binary(max_size=238),
    read_ref=st.sampled_from([0x01, 0x02, 0x03, 0x04, 0x11]),
    update_ref=st.sampled_from([0x12, 0x13, 0x14]),
)
@settings(max_examples=40, deadline=None)
def test_pcsc_sam_equals_software_sam(
    path: object,
    factor: bytes,
    challenge: bytes,
    plain: bytes,
    read_ref: int,
    update_ref: int,
) -> None:
    """Both SAMs over the same keys give the same bytes, and the card accepts them."""
    keyset = load_keyset(str(path))
    software = SoftwareSam(keyset)
    pcsc = PcscSam(EmulatedSam(keyset), DEFAULT_TEST_PIN)
    assert pcsc.external_auth(read_ref, factor, challenge) == software.external_auth(
        read_ref, factor, challenge
    )
    apdu = pcsc.secure_update(update_ref, factor, challenge, SM_HEADER, plain)
    assert apdu == software.secure_update(update_ref, factor, challenge, SM_HEADER, plain)
    # the card's side: its own diversified key, the same session key, the plain data back
    alg = keyset.entry(update_ref).alg
    card_key = keyset.card_key(update_ref, factor).reveal()
    assert crypto.sm_unwrap(alg, crypto.session_key(alg, card_key, challenge), apdu) == plain
    answer = crypto.cryptogram(alg, keyset.card_key(0x21, factor).reveal(), challenge)
    pcsc.check_internal_auth(0x21, factor, challenge, answer)


def test_no_pin_or_key_in_debug_logs(caplog: pytest.LogCaptureFixture) -> None:
    keyset = load_keyset(TEST_ISSUER_KEYS)
    caplog.set_level(logging.DEBUG)
    card = EmulatedSam(keyset, pin="80417733")
    sam = PcscSam(card, "80417733")
    sam.external_auth(0x11, CARD_FACTOR, CHALLENGE)
    sam.secure_update(0x12, CARD_FACTOR, CHALLENGE, SM_HEADER, SM_TLV)
    with pytest.raises(CardAuthenticityError) as info:
        sam.check_internal_auth(0x21, CARD_FACTOR, sam.new_challenge(), bytes(8))
    blob = (caplog.text + repr(sam) + repr(card) + str(info.value)).lower()
    assert caplog.records
    assert "80417733" not in blob
    for entry in keyset.keys:
        dk = keyset.card_key(entry.ref, CARD_FACTOR).reveal()
        for secret in (entry.master.reveal(), dk, crypto.session_key(entry.alg, dk, CHALLENGE)):
            assert secret.hex() not in blob


def test_threads_sharing_one_sam_get_right_answers(golden_keyset: KeySet) -> None:
    """Interleaved operations would mix DELIVER KEYs; each must come out as if alone."""

    class SlowLink:
        """Like PC/SC: the thread waits on I/O for every APDU, so others run meanwhile."""

        def __init__(self, card: EmulatedSam) -> None:
            self.card = card

        def transmit(self, apdu: bytes) -> bytes:
            time.sleep(0.0002)
            return self.card.transmit(apdu)

    software = SoftwareSam(golden_keyset)
    sam = PcscSam(SlowLink(EmulatedSam(golden_keyset)), DEFAULT_TEST_PIN)
    failures: list[str] = []

    def worker(seed: int) -> None:
        try:
            work(seed)
        except Exception as exc:  # a thread's exception would otherwise be only a warning
            failures.append(repr(exc))

    def work(seed: int) -> None:
        factor = seed.to_bytes(8, "big")
        for i in range(25):
            challenge = (seed * 1000 + i).to_bytes(8, "big")
            ref = 0x01 if seed % 2 else 0x12
            if sam.external_auth(ref, factor, challenge) != software.external_auth(
                ref, factor, challenge
            ):
                failures.append(f"external {seed}/{i}")
            apdu = sam.secure_update(0x13, factor, challenge, SM_HEADER, SM_TLV)
            if apdu != software.secure_update(0x13, factor, challenge, SM_HEADER, SM_TLV):
                failures.append(f"sm {seed}/{i}")

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(1, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []

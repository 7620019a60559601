"""The SAM cryptography against docs/card-spec.md's golden vectors, definitions and properties."""

from __future__ import annotations

import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from hcmiddleware.errors import SamError, SamInputError, SecureMessagingError
from hcmiddleware.sam import crypto
from hcmiddleware.sam.crypto import Algorithm

SM4, TDES = Algorithm.SM4, Algorithm.TDES
h = bytes.fromhex

# --- docs/card-spec.md, "Golden vectors", copied verbatim ------------------------------------
SM4_CHECK_KEY = h("0123456789ABCDEFFEDCBA9876543210")
SM4_CHECK_CIPHER = h("681EDF34D206965E86B3E94F536E4246")
SM4_MASTER = h("00112233445566778899AABBCCDDEEFF")
CARD_FACTOR = h("3132333435363738")
CITY_FACTOR = h("3231303030303030")
SM4_LEVEL1 = h("36304C0C2D998530DD5FC1E280B42C24")
SM4_DK = h("D48BC0AF42D96CDA7A0F1CC3F844A9D6")
CHALLENGE = h("A1B2C3D4E5F60718")
SM4_CRYPTOGRAM = h("2D054A640E968AF8")
SM4_SESSION_KEY = h("ABA11DE4DE49796A86A45780D0DFF392")
SM_TLV = h("1003616263")
SM_APDU = h("04DC0104144C53C4C8A5E4DC5B6A2A9E72D2D7F77AEA439CB2")
TDES_MASTER = h("404142434445464748494A4B4C4D4E4F")
TDES_DK = h("EE790E8F0F93B55490A20B55E6BF10F1")
TDES_CRYPTOGRAM = h("E8CFDBA0BA443566")


class TestGoldenVectors:
    def test_sm4_check_vector_of_gbt_32907(self) -> None:
        assert crypto.encrypt_ecb(SM4, SM4_CHECK_KEY, SM4_CHECK_KEY) == SM4_CHECK_CIPHER
        assert crypto.decrypt_ecb(SM4, SM4_CHECK_KEY, SM4_CHECK_CIPHER) == SM4_CHECK_KEY

    @pytest.mark.parametrize("code", ["21", "2100", "210000"])
    def test_city_factor(self, code: str) -> None:
        assert crypto.city_factor(code) == CITY_FACTOR

    def test_sm4_level1_key(self) -> None:
        assert crypto.diversify(SM4, SM4_MASTER, CARD_FACTOR) == SM4_LEVEL1

    def test_sm4_level2_key_from_level1(self) -> None:
        assert crypto.diversify(SM4, SM4_LEVEL1, CITY_FACTOR) == SM4_DK

    @pytest.mark.parametrize("code", ["21", "210000"])
    def test_sm4_card_key(self, code: str) -> None:
        assert crypto.card_key(SM4, SM4_MASTER, CARD_FACTOR, code) == SM4_DK

    def test_sm4_cryptogram(self) -> None:
        assert crypto.cryptogram(SM4, SM4_DK, CHALLENGE) == SM4_CRYPTOGRAM

    def test_sm4_session_key(self) -> None:
        assert crypto.session_key(SM4, SM4_DK, CHALLENGE) == SM4_SESSION_KEY

    def test_sm4_update_record_under_secure_messaging(self) -> None:
        apdu = crypto.sm_wrap(SM4, SM4_SESSION_KEY, h("04DC0104"), SM_TLV)
        assert apdu == SM_APDU

    def test_card_side_unwraps_the_golden_apdu(self) -> None:
        assert crypto.sm_unwrap(SM4, SM4_SESSION_KEY, SM_APDU) == SM_TLV

    def test_tdes_card_key(self) -> None:
        assert crypto.card_key(TDES, TDES_MASTER, CARD_FACTOR, "21") == TDES_DK

    def test_tdes_cryptogram(self) -> None:
        assert crypto.cryptogram(TDES, TDES_DK, CHALLENGE) == TDES_CRYPTOGRAM


def _tdes_ecb_reference(key16: bytes, block: bytes) -> bytes:
    """Three single-key-schedule steps by hand: E_K1(D_K2(E_K1(x))) via 3DES with K1=K2=K3."""

    def des(op: str, key8: bytes, data: bytes) -> bytes:
        c = Cipher(TripleDES(key8 * 3), modes.ECB())  # K1=K2=K3 is single DES
        ctx = c.encryptor() if op == "e" else c.decryptor()
        return ctx.update(data) + ctx.finalize()

    k1, k2 = key16[:8], key16[8:]
    return des("e", k1, des("d", k2, des("e", k1, block)))


class TestTdesChoices:
    """The 3DES constructions the card's evidence leaves open, checked against their definitions."""

    def test_two_key_expansion_is_k1_k2_k1(self) -> None:
        block = h("0011223344556677")
        assert crypto.encrypt_ecb(TDES, TDES_DK, block) == _tdes_ecb_reference(TDES_DK, block)
        assert crypto.encrypt_ecb(TDES, TDES_DK, block) == crypto.encrypt_ecb(
            TDES, TDES_DK + TDES_DK[:8], block
        )

    def test_session_key_is_challenge_and_inverted_challenge(self) -> None:
        inverted = bytes(b ^ 0xFF for b in CHALLENGE)
        expected = _tdes_ecb_reference(TDES_DK, CHALLENGE) + _tdes_ecb_reference(TDES_DK, inverted)
        assert crypto.session_key(TDES, TDES_DK, CHALLENGE) == expected

    def test_mac4_is_full_tdes_cbc_mac_with_zero_iv(self) -> None:
        data = h("04DC01040D") + bytes(range(13))  # 18 bytes -> three 8-byte blocks padded
        padded = data + b"\x80" + bytes(5)
        assert len(padded) == 24
        chain = bytes(8)
        for i in range(0, 24, 8):
            block = bytes(a ^ b for a, b in zip(chain, padded[i : i + 8], strict=True))
            chain = _tdes_ecb_reference(TDES_DK, block)
        assert crypto.mac4(TDES, TDES_DK, data) == chain[:4]

    def test_documented_vectors_of_docs_sam_md(self) -> None:
        sk = crypto.session_key(TDES, TDES_DK, CHALLENGE)
        assert sk == h("E8CFDBA0BA4435664D66F1DDC3D689A7")
        apdu = crypto.sm_wrap(TDES, sk, h("04DC0104"), SM_TLV)
        assert apdu == h("04DC01040C8DA7D80E1CD2274666BE1646")

    def test_sm_wrap_layout_with_8_byte_blocks(self) -> None:
        sk = crypto.session_key(TDES, TDES_DK, CHALLENGE)
        apdu = crypto.sm_wrap(TDES, sk, h("04DC0104"), SM_TLV)
        # L || 5 bytes || 80 || 00 = 8 bytes: one block, Lc = 8 + 4
        assert apdu[:5] == h("04DC01040C")
        assert len(apdu) == 5 + 12
        assert crypto.decrypt_ecb(TDES, sk, apdu[5:13]) == h("05") + SM_TLV + h("8000")
        assert apdu[13:] == crypto.mac4(TDES, sk, apdu[:13])
        assert crypto.sm_unwrap(TDES, sk, apdu) == SM_TLV


class TestPad:
    @pytest.mark.parametrize(
        ("data", "block", "expected"),
        [
            (b"", 8, h("8000000000000000")),
            (h("01020304050607"), 8, h("0102030405060780")),
            (h("0102030405060708"), 8, h("0102030405060708") + h("8000000000000000")),
            (h("AA"), 16, h("AA80") + bytes(14)),
        ],
    )
    def test_pad(self, data: bytes, block: int, expected: bytes) -> None:
        assert crypto.pad(data, block) == expected

    def test_block_sizes(self) -> None:
        assert crypto.block_size(SM4) == 16
        assert crypto.block_size(TDES) == 8

    def test_algorithm_spelling(self) -> None:
        assert Algorithm("SM4") is SM4
        assert Algorithm("3DES") is TDES


class TestBadInput:
    @pytest.mark.parametrize("key_len", [0, 8, 15, 17, 24, 32])
    def test_sm4_key_length(self, key_len: int) -> None:
        with pytest.raises(SamInputError, match="SM4 key must be 16 bytes"):
            crypto.encrypt_ecb(SM4, bytes(key_len), bytes(16))

    @pytest.mark.parametrize("key_len", [0, 8, 15, 17, 23, 32])
    def test_tdes_key_length(self, key_len: int) -> None:
        with pytest.raises(SamInputError, match="3DES key must be 16 or 24 bytes"):
            crypto.encrypt_ecb(TDES, bytes(key_len), bytes(8))

    @pytest.mark.parametrize(("alg", "n"), [(SM4, 0), (SM4, 8), (SM4, 17), (TDES, 0), (TDES, 12)])
    def test_partial_blocks(self, alg: Algorithm, n: int) -> None:
        with pytest.raises(SamInputError, match="multiple of"):
            crypto.encrypt_ecb(alg, bytes(16), bytes(n))
        with pytest.raises(SamInputError, match="multiple of"):
            crypto.decrypt_ecb(alg, bytes(16), bytes(n))

    @pytest.mark.parametrize("factor", [b"", bytes(7), bytes(9), bytes(16)])
    def test_factor_length(self, factor: bytes) -> None:
        with pytest.raises(SamInputError, match="factor must be 8 bytes"):
            crypto.diversify(SM4, SM4_MASTER, factor)

    @pytest.mark.parametrize("challenge", [b"", bytes(4), bytes(16)])
    def test_challenge_length(self, challenge: bytes) -> None:
        with pytest.raises(SamInputError, match="challenge must be 8 bytes"):
            crypto.cryptogram(SM4, SM4_DK, challenge)
        with pytest.raises(SamInputError, match="challenge must be 8 bytes"):
            crypto.session_key(TDES, TDES_DK, challenge)

    @pytest.mark.parametrize("code", ["", "2", "210", "21000000", "2a", "２１", " 21", "-21"])
    def test_city_code(self, code: str) -> None:
        with pytest.raises(SamInputError, match="city code"):
            crypto.city_factor(code)

    def test_pad_block(self) -> None:
        with pytest.raises(SamInputError):
            crypto.pad(b"x", 0)

    def test_algorithm_given_as_text_is_the_same_algorithm(self) -> None:
        # "SM4" == Algorithm.SM4 but is not it; it must not fall through to 3DES.
        assert crypto.cryptogram("SM4", SM4_DK, CHALLENGE) == SM4_CRYPTOGRAM  # type: ignore[arg-type]
        assert crypto.block_size("SM4") == 16  # type: ignore[arg-type]
        assert crypto.cryptogram("3DES", TDES_DK, CHALLENGE) == TDES_CRYPTOGRAM  # type: ignore[arg-type]

    @pytest.mark.parametrize("alg", ["AES", "sm4", "", None])
    def test_unknown_algorithm(self, alg: object) -> None:
        with pytest.raises(SamInputError, match="unknown algorithm"):
            crypto.encrypt_ecb(alg, SM4_DK, bytes(16))  # type: ignore[arg-type]

    def test_input_error_is_also_a_value_error(self) -> None:
        with pytest.raises(ValueError):
            crypto.city_factor("x")

    def test_key_bytes_never_in_the_message(self) -> None:
        key = bytes.fromhex("DEADBEEFCAFEBABE0102030405")  # 13 bytes: refused
        with pytest.raises(SamInputError) as info:
            crypto.encrypt_ecb(SM4, key, bytes(16))
        text = str(info.value) + repr(info.value.details())
        assert "deadbeef" not in text.lower()
        assert "13" in text

    @pytest.mark.parametrize("header", [h("04DC01"), h("04DC010400"), h("00DC0104")])
    def test_sm_wrap_header(self, header: bytes) -> None:
        with pytest.raises(SamInputError):
            crypto.sm_wrap(SM4, SM4_SESSION_KEY, header, SM_TLV)

    @pytest.mark.parametrize("alg", [SM4, TDES])
    def test_sm_wrap_too_long(self, alg: Algorithm) -> None:
        limit = crypto.max_sm_plain(alg)
        apdu = crypto.sm_wrap(alg, bytes(16), h("04DC0104"), bytes(limit))
        assert apdu[4] <= 255
        assert len(apdu) == 5 + apdu[4]
        with pytest.raises(SamInputError, match="do not fit"):
            crypto.sm_wrap(alg, bytes(16), h("04DC0104"), bytes(limit + 1))

    def test_max_sm_plain(self) -> None:
        assert crypto.max_sm_plain(SM4) == 238
        assert crypto.max_sm_plain(TDES) == 246


class TestUnwrapRefuses:
    def test_wrong_session_key(self) -> None:
        other = crypto.session_key(SM4, SM4_DK, h("0000000000000001"))
        with pytest.raises(SecureMessagingError, match="MAC"):
            crypto.sm_unwrap(SM4, other, SM_APDU)

    @pytest.mark.parametrize("cut", [0, 4, 5, 10, len(SM_APDU) - 1])
    def test_truncated(self, cut: int) -> None:
        with pytest.raises(SecureMessagingError):
            crypto.sm_unwrap(SM4, SM4_SESSION_KEY, SM_APDU[:cut])

    def test_trailing_le(self) -> None:
        with pytest.raises(SecureMessagingError, match="Lc"):
            crypto.sm_unwrap(SM4, SM4_SESSION_KEY, SM_APDU + b"\x00")

    def test_bad_padding_under_a_good_mac(self) -> None:
        # A sender holding the key but padding wrongly is refused after the MAC check.
        header = h("04DC0104")
        for bad in (h("05") + SM_TLV + h("81") + bytes(9), h("0A") + SM_TLV + h("80") + bytes(9)):
            enc = crypto.encrypt_ecb(SM4, SM4_SESSION_KEY, bad)
            head = header + bytes([len(enc) + 4])
            apdu = head + enc + crypto.mac4(SM4, SM4_SESSION_KEY, head + enc)
            with pytest.raises(SecureMessagingError, match="padding"):
                crypto.sm_unwrap(SM4, SM4_SESSION_KEY, apdu)

    def test_surplus_block_under_a_good_mac(self) -> None:
        header = h("04DC0104")
        enc = crypto.encrypt_ecb(SM4, SM4_SESSION_KEY, crypto.pad(h("05") + SM_TLV, 16) + bytes(16))
        head = header + bytes([len(enc) + 4])
        apdu = head + enc + crypto.mac4(SM4, SM4_SESSION_KEY, head + enc)
        with pytest.raises(SecureMessagingError):
            crypto.sm_unwrap(SM4, SM4_SESSION_KEY, apdu)

    def test_secure_messaging_error_is_a_sam_error(self) -> None:
        assert issubclass(SecureMessagingError, SamError)


# --- properties -------------------------------------------------------------------------

algs = st.sampled_from([SM4, TDES])
keys = st.binary(min_size=16, max_size=16)
challenges = st.binary(min_size=8, max_size=8)
headers = st.tuples(
    st.integers(0, 255).map(lambda c: c | 0x04), st.binary(min_size=3, max_size=3)
).map(lambda t: bytes([t[0]]) + t[1])


@st.composite
def sm_cases(draw: st.DrawFn) -> tuple[Algorithm, bytes, bytes, bytes]:
    alg = draw(algs)
    plain = draw(st.binary(max_size=crypto.max_sm_plain(alg)))
    return alg, draw(keys), draw(headers), plain


@given(sm_cases())
@settings(max_examples=300, deadline=None)
def test_wrap_unwrap_round_trip(case: tuple[Algorithm, bytes, bytes, bytes]) -> None:
    alg, sk, header, plain = case
    apdu = crypto.sm_wrap(alg, sk, header, plain)
    assert apdu[:4] == header
    assert apdu[4] == len(apdu) - 5
    assert crypto.sm_unwrap(alg, sk, apdu) == plain


@given(sm_cases(), st.data())
@settings(max_examples=300, deadline=None)
def test_any_flipped_bit_is_refused(
    case: tuple[Algorithm, bytes, bytes, bytes], data: st.DataObject
) -> None:
    alg, sk, header, plain = case
    apdu = bytearray(crypto.sm_wrap(alg, sk, header, plain))
    bit = data.draw(st.integers(0, len(apdu) * 8 - 1), label="bit")
    apdu[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(SecureMessagingError):
        crypto.sm_unwrap(alg, sk, bytes(apdu))


@given(algs, keys, st.binary(min_size=8, max_size=8), st.binary(min_size=8, max_size=8))
@settings(max_examples=100, deadline=None)
def test_diversification_separates_factors(
    alg: Algorithm, master: bytes, f1: bytes, f2: bytes
) -> None:
    k1, k2 = crypto.diversify(alg, master, f1), crypto.diversify(alg, master, f2)
    assert len(k1) == 16
    assert (k1 == k2) == (f1 == f2)


@given(algs, keys, challenges)
@settings(max_examples=100, deadline=None)
def test_ecb_round_trip_and_cryptogram_shape(alg: Algorithm, key: bytes, r: bytes) -> None:
    block = r * (crypto.block_size(alg) // 8)
    assert crypto.decrypt_ecb(alg, key, crypto.encrypt_ecb(alg, key, block)) == block
    assert len(crypto.cryptogram(alg, key, r)) == 8
    assert len(crypto.session_key(alg, key, r)) == 16

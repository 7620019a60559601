"""AN (GBK), CN (compressed BCD) and B codecs, TLV records and runs, ATR parsing."""

from __future__ import annotations

import pytest

from hcmiddleware.card.atr import build_atr, card_factor, historical_bytes
from hcmiddleware.card.codecs import (
    DataType,
    decode,
    decode_an,
    decode_cn,
    encode,
    encode_an,
    encode_cn,
)
from hcmiddleware.card.tlv import encode_tlv, parse_record, parse_run
from hcmiddleware.errors import CardDataError, CardProtocolError


@pytest.mark.parametrize("raw", ["D5C5C8FD", "D5C5C8FD0000", "D5C5C8FD2020", "D5C5C8FD0020"])
def test_an_strips_00_and_20_padding(raw: str) -> None:
    assert decode_an(bytes.fromhex(raw)) == "张三"


def test_an_is_gbk_not_only_gb2312() -> None:
    # 堃 and 喆 are common in names and outside GB2312.
    name = "王堃喆"
    raw = encode_an(name, 30, pad=b"\x00")
    assert len(raw) == 30
    assert decode_an(raw) == name
    assert decode_an(encode_an(name)) == name


def test_an_errors() -> None:
    with pytest.raises(CardDataError):
        decode_an(b"\x81")  # a lead byte with no trail byte
    with pytest.raises(CardDataError):
        encode_an("张" * 16, 30)
    with pytest.raises(CardDataError):
        encode_an("😀", 30)


@pytest.mark.parametrize(
    ("digits", "length", "raw"),
    [
        ("210000", 3, "210000"),
        ("20261127", 4, "20261127"),
        ("1", 1, "1F"),
        ("12345678901", 11, "12345678901FFFFFFFFFFF"),
        ("", 2, "FFFF"),
    ],
)
def test_cn_round_trip(digits: str, length: int, raw: str) -> None:
    assert encode_cn(digits, length).hex().upper() == raw
    assert decode_cn(bytes.fromhex(raw)) == digits


@pytest.mark.parametrize("raw", ["1A", "F1", "1FF2", "AB"])
def test_cn_rejects_non_digits_and_digits_after_padding(raw: str) -> None:
    with pytest.raises(CardDataError):
        decode_cn(bytes.fromhex(raw))


def test_cn_encode_errors() -> None:
    with pytest.raises(CardDataError):
        encode_cn("123", 1)
    with pytest.raises(CardDataError):
        encode_cn("12a", 2)


def test_generic_decode_encode() -> None:
    assert decode(DataType.B, b"\x01") == b"\x01"
    assert encode(DataType.B, b"\x01", 1) == b"\x01"
    assert encode(DataType.AN, "ab", 4, an_pad=b" ") == b"ab  "
    with pytest.raises(CardDataError):
        encode(DataType.B, "x", 1)
    with pytest.raises(CardDataError):
        encode(DataType.B, b"\x01\x02", 1)
    with pytest.raises(CardDataError):
        encode(DataType.CN, b"\x01", 1)


def test_tlv_record() -> None:
    assert encode_tlv(0x0B, b"abc") == bytes.fromhex("0B03616263")
    assert parse_record(bytes.fromhex("0B03616263")) == (0x0B, b"abc")
    assert parse_record(bytes.fromhex("0B036162630000"), 0x0B) == (0x0B, b"abc")
    assert parse_record(bytes.fromhex("0B00")) == (0x0B, b"")


@pytest.mark.parametrize("raw", ["", "0B", "0B0461626364"[:-2], "0B0261626364", "000100", "FF0100"])
def test_tlv_record_errors(raw: str) -> None:
    with pytest.raises(CardDataError):
        parse_record(bytes.fromhex(raw))


def test_tlv_record_wrong_tag() -> None:
    with pytest.raises(CardDataError):
        parse_record(bytes.fromhex("0C0100"), 0x0B)


def test_tlv_encode_errors() -> None:
    with pytest.raises(CardDataError):
        encode_tlv(0, b"")
    with pytest.raises(CardDataError):
        encode_tlv(1, bytes(256))


def test_tlv_run() -> None:
    assert parse_run(bytes.fromhex("0101AA0202BBCC0000")) == (
        [(1, b"\xaa"), (2, b"\xbb\xcc")],
        True,
    )
    assert parse_run(bytes.fromhex("0101AA0203BBCC")) == ([(1, b"\xaa")], False)
    assert parse_run(bytes.fromhex("0101AA02")) == ([(1, b"\xaa")], False)
    with pytest.raises(CardDataError):
        parse_run(bytes.fromhex("FF01AA"))


def test_atr() -> None:
    hist = b"HC9912345678"
    atr = build_atr(hist)
    assert atr[:4] == bytes.fromhex("3B8C8001")
    assert historical_bytes(atr) == hist
    assert card_factor(atr) == bytes.fromhex("3132333435363738")
    # A T=0-only ATR has no TCK.
    assert historical_bytes(bytes.fromhex("3B6A0000") + b"9912345678") == b"9912345678"


@pytest.mark.parametrize(
    "atr", ["", "3B", "008C8001", "3B8C8001" + "00" * 3, "3B8C80", "3B6A0000" + "00" * 11]
)
def test_bad_atr(atr: str) -> None:
    with pytest.raises(CardProtocolError):
        historical_bytes(bytes.fromhex(atr))


def test_bad_checksum_and_short_serial() -> None:
    atr = bytearray(build_atr(b"HC9912345678"))
    atr[-1] ^= 1
    with pytest.raises(CardProtocolError):
        historical_bytes(bytes(atr))
    with pytest.raises(CardProtocolError):
        card_factor(build_atr(b"123"))

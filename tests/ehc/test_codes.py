"""The text of a code: what parses, what is refused and why, and what a signature covers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hcmiddleware.ehc.codes import (
    MAX_TEXT,
    DynamicCode,
    StaticCode,
    make_dynamic,
    new_ecard_id,
    normalize_ecard_id,
    parse_code,
    static_text,
)
from hcmiddleware.errors import EhcFormatError

ID = "8469DCABE25B71F6B23925EB895BDC1B47F7252FEB8AF17D2AAD02902E3E0D8E"
SIG = bytes(range(64))


def dynamic(**fields: object) -> str:
    values: dict[str, object] = {
        "key_id": "LN2026A",
        "issued": 1_780_000_000,
        "expires": 1_780_000_060,
        "nonce": "0123456789ABCDEF",
        **fields,
    }
    return make_dynamic(ID, sign=lambda _m: SIG, **values)  # type: ignore[arg-type]


def test_static_codes_as_the_apps_show_them() -> None:
    assert parse_code(f"{ID}:1") == StaticCode(ID)
    assert parse_code(f"{ID.lower()}:1::210102") == StaticCode(ID, area_code="210102")
    assert parse_code(f"  {ID}:1\r\n") == StaticCode(ID)  # a scanner's line end
    assert static_text(ID.lower()) == f"{ID}:1"
    assert static_text(ID, "210102") == f"{ID}:1::210102"


def test_dynamic_code_round_trip_and_what_is_signed() -> None:
    seen: list[bytes] = []

    def sign(message: bytes) -> bytes:
        seen.append(message)
        return SIG

    text = make_dynamic(
        ID, key_id="LN2026A", issued=1_780_000_000, expires=1_780_000_060,
        nonce="0123456789ABCDEF", sign=sign,
    )  # fmt: skip
    assert text == (f"{ID}:2:LN2026A:1780000000:1780000060:0123456789ABCDEF:{SIG.hex().upper()}")
    code = parse_code(text)
    assert isinstance(code, DynamicCode)
    assert code.signed == seen[0] == text.rsplit(":", 1)[0].encode()
    assert (code.ecard_id, code.key_id, code.nonce) == (ID, "LN2026A", "0123456789ABCDEF")
    assert (code.issued, code.expires, code.signature) == (1_780_000_000, 1_780_000_060, SIG)
    assert code.expires_at.isoformat() == "2026-05-28T20:27:40+00:00"
    # every character is in the QR alphanumeric set
    assert set(text) <= set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")


def test_the_repr_of_a_code_holds_no_identifier() -> None:
    assert ID not in repr(parse_code(dynamic()))
    assert ID not in repr(parse_code(f"{ID}:1"))


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("   \n", "empty"),
        ("x" * (MAX_TEXT + 1), "too_long"),
        ("https://example.invalid/pay?id=1", "kind"),
        (f"{ID}", "kind"),
        (f"{ID}:3", "kind"),
        (f"{ID[:-1]}:1", "card_id"),
        (f"{ID}0:1", "card_id"),
        (f"{ID[:-1]}G:1", "card_id"),
        (f"{ID}:1::", "area_code"),
        (f"{ID}:1:210102", "area_code"),
        (f"{ID}:1::21a", "area_code"),
        (f"{ID}:1\x00", "characters"),
        (f"{ID}:1：", "characters"),
        ("电子健康卡", "characters"),
    ],
)
def test_bad_static_texts(text: str, reason: str) -> None:
    with pytest.raises(EhcFormatError) as caught:
        parse_code(text)
    assert caught.value.reason == reason
    assert ID not in str(caught.value)


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda t: t.rsplit(":", 1)[0], "kind"),  # truncated: no signature
        (lambda t: t + ":00", "kind"),
        (lambda t: t.lower(), "card_id"),  # the ID is the first thing looked at
        (lambda t: t.replace(":LN2026A:", ":ln2026a:"), "key_id"),
        (lambda t: t.replace(":LN2026A:", ":LN2026A-TOO-LONG-KEY:"), "key_id"),
        (lambda t: t.replace(":1780000000:", ":01780000000:"), "time"),
        (lambda t: t.replace(":1780000000:", ":-1:"), "time"),
        (lambda t: t.replace(":1780000060:", ":1780000060.5:"), "time"),
        (lambda t: t.replace(":0123456789ABCDEF:", ":0123456789ABCDE:"), "nonce"),
        (lambda t: t[:-1], "signature"),
        (lambda t: t[:-1] + "g", "signature"),
        (lambda t: t[:-2] + "ab", "signature"),
    ],
)
def test_bad_dynamic_texts(mangle: object, reason: str) -> None:
    with pytest.raises(EhcFormatError) as caught:
        parse_code(mangle(dynamic()))  # type: ignore[operator]
    assert caught.value.reason == reason


def test_bytes_are_read_as_ascii_only() -> None:
    assert parse_code(f"{ID}:1".encode()) == StaticCode(ID)
    with pytest.raises(EhcFormatError) as caught:
        parse_code(b"\xff" + f"{ID}:1".encode())
    assert caught.value.reason == "characters"
    with pytest.raises(EhcFormatError) as caught:
        parse_code(b"A" * 10_000_000)
    assert caught.value.reason == "too_long"


def test_ids() -> None:
    made = new_ecard_id()
    assert len(made) == 64
    assert made == made.upper()
    assert made != new_ecard_id()
    assert normalize_ecard_id(ID.lower()) == ID
    for bad in ("", ID[:63], ID + "A", "Z" * 64):
        with pytest.raises(EhcFormatError) as caught:
            normalize_ecard_id(bad)
        assert caught.value.reason == "card_id"


def test_the_issuer_side_refuses_what_no_terminal_would_read() -> None:
    with pytest.raises(EhcFormatError):
        dynamic(key_id="lower")
    with pytest.raises(EhcFormatError):
        dynamic(issued=1_780_000_061)  # after its own expiry
    with pytest.raises(EhcFormatError):
        dynamic(nonce="xyz")
    with pytest.raises(ValueError, match="64 bytes"):
        make_dynamic(ID, key_id="K", issued=1, expires=2, sign=lambda _m: b"short")


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=300) | st.binary(max_size=300))
def test_any_text_is_a_code_or_a_format_error(text: str | bytes) -> None:
    try:
        code: object = parse_code(text)
    except EhcFormatError as exc:
        code = exc
    assert isinstance(code, StaticCode | DynamicCode) or code.reason

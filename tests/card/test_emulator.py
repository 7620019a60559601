"""The software card at the APDU level: the behaviour docs/card-spec.md lists."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from card_samples import KEYS, SAMPLES

from hcmiddleware.card import filemap as fm
from hcmiddleware.card.apdu import Apdu, exchange
from hcmiddleware.card.atr import card_factor
from hcmiddleware.card.emulator import EmulatedCard
from hcmiddleware.card.field import FieldProfile
from hcmiddleware.errors import CardAbsentError, CardDataError
from hcmiddleware.sam import crypto
from hcmiddleware.sam.keyset import load_keyset


def tx(card: EmulatedCard, hexapdu: str) -> tuple[bytes, str]:
    r = card.transmit(bytes.fromhex(hexapdu.replace(" ", "")))
    return r[:-2], r[-2:].hex().upper()


def ext_auth(card: EmulatedCard, ref: int, *, wrong: bool = False) -> str:
    challenge, sw = tx(card, "0084000008")
    assert sw == "9000"
    entry = load_keyset(KEYS).entry(ref)
    key = crypto.card_key(entry.alg, entry.master.reveal(), card_factor(card.atr), "210000")
    c = crypto.cryptogram(entry.alg, key, challenge)
    if wrong:
        c = bytes([c[0] ^ 1]) + c[1:]
    return tx(card, f"00820000{ref:02X}08{c.hex()}".replace("00820000", "008200"))[1]


DDF1 = "00A404000C" + b"WS.SYS.DDF01".hex()


def test_select_answers_fci_only_with_le(card: EmulatedCard) -> None:
    assert tx(card, DDF1) == (b"", "9000")
    data, sw = tx(card, DDF1 + "00")
    assert sw == "9000"
    assert data.startswith(b"\x6f")
    assert b"WS.SYS.DDF01" in data
    assert tx(card, "00A4000002EF05")[1] == "9000"
    assert tx(card, "00A4000002DF09")[1] == "6A82"
    assert tx(card, "00A404000441424344")[1] == "6A82"


def test_free_and_protected_reads(card: EmulatedCard) -> None:
    tx(card, DDF1)
    data, sw = tx(card, "00B2012800")  # item 1 by tag through SFI 5
    assert sw == "9000"
    assert data[:2] == b"\x01\x01"
    assert tx(card, "00B20B3000")[1] == "6982"  # EF06 needs key 01
    assert ext_auth(card, 0x01) == "9000"
    assert tx(card, "00B20B3000")[1] == "9000"


def test_wrong_le_gets_6cxx_and_read_by_number(card: EmulatedCard) -> None:
    tx(card, DDF1)
    assert tx(card, "00B2012C05")[1] == "6C03"
    assert tx(card, "00B2012C03") == (bytes.fromhex("010131"), "9000")
    assert tx(card, "00B20B2C00")[1] == "6A83"


def test_read_all_records_from_p1_to_the_last(card: EmulatedCard) -> None:
    """P2 b3-b1 = 101: the records from P1 up to the last, concatenated (ISO/IEC 7816-4)."""
    tx(card, DDF1)
    assert tx(card, "00B2013500")[1] == "6982"  # EF06 still needs key 01
    ext_auth(card, 0x01)
    records = card._files[fm.CARDHOLDER].records
    assert tx(card, "00B2013500") == (b"".join(records), "9000")
    assert tx(card, "00B2033500") == (b"".join(records[2:]), "9000")
    assert tx(card, "00B2053500") == (records[4], "9000")  # the last alone
    assert tx(card, f"00B2{len(records) + 1:02X}3500")[1] == "6A83"  # past the last
    assert tx(card, "00B2003500")[1] == "6A86"
    whole = b"".join(records)
    assert tx(card, f"00B20135{len(whole) + 1:02X}")[1] == f"6C{len(whole):02X}"
    # index and cyclic files too: the written records, and all of them
    tx(card, "00A4000002DF03")
    ext_auth(card, 0x04)
    index = card._files[fm.INPATIENT_INDEX].records
    assert tx(card, "00B2012D00") == (b"".join(index), "9000")
    assert len(index) == fm.INPATIENT_INDEX.records


def test_all_records_longer_than_a_short_answer_come_with_get_response(
    profile: dict[str, Any],
) -> None:
    """The issuer file with a 180-byte certificate: 256 bytes, 61xx, the rest."""
    profile["items"]["issuer_certificate"] = "C3" * 180
    card = EmulatedCard(profile, KEYS, base_dir=SAMPLES)
    tx(card, DDF1)
    whole = b"".join(card._files[fm.ISSUER].records)
    assert len(whole) > 256
    first, sw = tx(card, "00B2012D00")
    assert (first, sw) == (whole[:256], f"61{len(whole) - 256:02X}")
    assert tx(card, f"00C00000{len(whole) - 256:02X}") == (whole[256:], "9000")
    assert tx(card, "00C0000000")[1] == "6985"  # nothing more
    answer = exchange(card, Apdu(0x00, 0xB2, 0x01, 0x2D, le=256))
    assert answer.data == whole


def test_a_field_card_may_not_read_all_records_at_once(profile: dict[str, object]) -> None:
    card = EmulatedCard(
        profile, KEYS, base_dir=SAMPLES, field=FieldProfile(multi_record_read=False)
    )
    tx(card, DDF1)
    assert tx(card, "00B2012D00")[1] == "6A86"
    assert tx(card, "00B2012C00")[1] == "9000"  # by number as ever
    assert tx(card, "00B2392800")[1] == "9000"  # and by tag
    as_json = EmulatedCard(
        {**profile, "field": {"multi_record_read": False}}, KEYS, base_dir=SAMPLES
    )
    assert as_json.field == FieldProfile(multi_record_read=False)


def test_reselecting_a_df_clears_security(card: EmulatedCard) -> None:
    tx(card, DDF1)
    assert ext_auth(card, 0x01) == "9000"
    assert tx(card, "00A4000002EF06")[1] == "9000"  # an EF keeps the state
    assert tx(card, "00B20B0000")[1] == "9000"
    tx(card, DDF1)
    assert tx(card, "00B20B3000")[1] == "6982"


def test_key_of_another_df_is_6a88(card: EmulatedCard) -> None:
    tx(card, DDF1)
    _challenge, _ = tx(card, "0084000008")
    assert tx(card, "0082000208" + "00" * 8)[1] == "6A88"


def test_external_auth_without_challenge_is_refused(card: EmulatedCard) -> None:
    tx(card, DDF1)
    assert tx(card, "0082000108" + "00" * 8)[1] == "6985"


def test_retry_counter_and_blocking(card: EmulatedCard) -> None:
    tx(card, DDF1)
    assert [ext_auth(card, 0x01, wrong=True) for _ in range(5)] == [
        "63C4",
        "63C3",
        "63C2",
        "63C1",
        "6983",
    ]
    assert ext_auth(card, 0x01) == "6983"  # a blocked key stays blocked
    card.reset()
    tx(card, DDF1)
    assert ext_auth(card, 0x01) == "6983"
    assert card.key_tries(0x01) == 0


def test_success_resets_the_counter(card: EmulatedCard) -> None:
    tx(card, DDF1)
    assert ext_auth(card, 0x01, wrong=True) == "63C4"
    assert ext_auth(card, 0x01) == "9000"
    assert card.key_tries(0x01) == 5


def test_internal_auth_without_le_answers_6108(card: EmulatedCard) -> None:
    challenge = bytes(range(8))
    data, sw = tx(card, "0088002108" + challenge.hex())
    assert (data, sw) == (b"", "6108")
    answer, sw = tx(card, "00C0000008")
    entry = load_keyset(KEYS).entry(0x21)
    key = crypto.card_key(entry.alg, entry.master.reveal(), card_factor(card.atr), "21")
    assert sw == "9000"
    assert answer == crypto.cryptogram(entry.alg, key, challenge)
    assert tx(card, "00C0000008")[1] == "6985"


def test_read_binary_edges(card: EmulatedCard) -> None:
    tx(card, DDF1)
    ext_auth(card, 0x01)
    data, sw = tx(card, "00B0870000")
    assert sw == "9000"
    assert len(data) == 256
    data, sw = tx(card, "00B00BF000")  # offset 3056: 16 bytes left
    assert sw == "6282"
    assert len(data) == 16
    assert tx(card, "00B00C0000")[1] == "6B00"


def test_unknown_commands(card: EmulatedCard) -> None:
    assert tx(card, "00CA000000")[1] == "6D00"
    assert tx(card, "A0A4000002DDF1")[1] == "6E00"
    assert tx(card, "00A4000002DD")[1] == "6700"
    assert tx(card, "00B0000000")[1] == "6986"  # no current EF


def test_writes_need_the_update_key(card: EmulatedCard) -> None:
    tx(card, DDF1)
    tx(card, "00A4000002DF03")
    ext_auth(card, 0x04)
    assert tx(card, "84D2022C")[1] == "6982"
    assert tx(card, "00DC002B" + "03" + "010203")[1] == "6981"
    ext_auth(card, 0x14)
    assert tx(card, "84D2022C")[1] == "9000"
    assert tx(card, "00B2022C00") == (b"\x00", "9000")
    assert tx(card, "840C022C")[1] == "9000"
    assert tx(card, "00B2022C00") == (b"\xff", "9000")


def test_plain_update_record_of_tlv_needs_sm(card: EmulatedCard) -> None:
    tx(card, DDF1)
    tx(card, "00A4000002DF01")
    ext_auth(card, 0x12)
    assert tx(card, "00DC0134" + "03" + "190130")[1] == "6982"


def test_sm_update_record(card: EmulatedCard) -> None:
    tx(card, DDF1)
    tx(card, "00A4000002DF01")
    ext_auth(card, 0x12)
    challenge, _ = tx(card, "0084000008")
    entry = load_keyset(KEYS).entry(0x12)
    key = crypto.card_key(entry.alg, entry.master.reveal(), card_factor(card.atr), "21")
    sk = crypto.session_key(entry.alg, key, challenge)
    apdu = crypto.sm_wrap(entry.alg, sk, bytes.fromhex("04DC0334"), bytes.fromhex("1B03313233"))
    bad = apdu[:-1] + bytes([apdu[-1] ^ 1])
    assert card.transmit(bad)[-2:] == b"\x69\x88"  # bad MAC: nothing written
    challenge, _ = tx(card, "0084000008")
    sk = crypto.session_key(entry.alg, key, challenge)
    apdu = crypto.sm_wrap(entry.alg, sk, bytes.fromhex("04DC0334"), bytes.fromhex("1B03313233"))
    assert card.transmit(apdu)[-2:] == b"\x90\x00"
    ext_auth(card, 0x02)
    assert tx(card, "00B2033400") == (bytes.fromhex("1B03313233"), "9000")
    # A replay of the same APDU has no fresh challenge.
    assert card.transmit(apdu)[-2:] == b"\x69\x85"


def test_pull_after_n(card: EmulatedCard) -> None:
    card.pull_after(2)
    tx(card, DDF1)
    tx(card, DDF1)
    with pytest.raises(CardAbsentError):
        tx(card, DDF1)
    with pytest.raises(CardAbsentError):
        tx(card, DDF1)
    card.reset()
    assert tx(card, DDF1)[1] == "9000"


def test_bad_profiles(profile: dict[str, object]) -> None:
    profile["items"] = {**profile["items"], "chip_serial": "123"}  # type: ignore[dict-item]
    with pytest.raises(CardDataError):
        EmulatedCard(profile, KEYS)
    with pytest.raises(CardDataError):
        EmulatedCard.from_files("/nonexistent/profile.json", KEYS)
    profile["items"] = {**profile["items"], "chip_serial": "9912345678", "nmae": "x"}  # type: ignore[dict-item]
    with pytest.raises(CardDataError, match="nmae"):
        EmulatedCard(profile, KEYS)


def test_files_have_the_spec_sizes(card: EmulatedCard) -> None:
    assert len(card.file_bytes(fm.PHOTO)) == 3072
    assert len(card.file_bytes(fm.INPATIENT_RECORDS[0])) == 1639
    assert len(card.file_bytes(fm.OUTPATIENT_RECORDS[0])) == 3013
    assert card.file_bytes(fm.OUTPATIENT_INDEX) == bytes.fromhex("0000FFFFFF")


def test_golden_vectors_of_card_spec(
    profile: dict[str, object], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The card accepts docs/card-spec.md's golden cryptogram and golden SM command."""
    master = "00112233445566778899AABBCCDDEEFF"
    keyset = {
        "city_code": "21",
        "keys": [{"ref": f"{r:02X}", "alg": "SM4", "master": master} for r in (0x12,)],
    }
    path = tmp_path / "golden-keys.json"
    path.write_text(json.dumps(keyset))
    card = EmulatedCard(profile, path, base_dir=SAMPLES)
    assert card_factor(card.atr) == bytes.fromhex("3132333435363738")
    challenge = bytes.fromhex("A1B2C3D4E5F60718")
    monkeypatch.setattr("hcmiddleware.card.emulator.os.urandom", lambda n: challenge)
    tx(card, DDF1)
    tx(card, "00A4000002DF01")
    assert tx(card, "0084000008") == (challenge, "9000")
    assert tx(card, "008200120" + "8" + "2D054A640E968AF8")[1] == "9000"
    tx(card, "00A4000002EF05")  # P2 04 of the golden APDU means the current EF
    golden = bytes.fromhex("04DC0104144C53C4C8A5E4DC5B6A2A9E72D2D7F77AEA439CB2")
    tx(card, "0084000008")
    # MAC and padding accepted; the record then refuses item 16 in item 21's place.
    assert card.transmit(golden)[-2:] == b"\x6a\x80"
    tx(card, "0084000008")
    assert card.transmit(golden[:-1] + b"\x00")[-2:] == b"\x69\x88"

"""A TLV record file read whole in one READ RECORD, and cards that cannot do it.

READ RECORD with P2 b3-b1 = 101 answers the records from P1 up to the last, one after
the other (ISO/IEC 7816-4). The session reads a TLV file so when it wants more than one
of its items and its records fit a short answer; a card that refuses the mode, answers
what is not TLV records or an answer that does not fit is read item by item, with the
same result, and is not asked again.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import pytest
from card_checks import check_against_profile
from card_samples import KEYS, SAMPLES

from hcmiddleware.card import filemap as fm
from hcmiddleware.card.data import CardRead
from hcmiddleware.card.emulator import EmulatedCard
from hcmiddleware.card.field import FieldProfile
from hcmiddleware.card.session import CardSession
from hcmiddleware.card.transport import TracingTransport
from hcmiddleware.errors import CardDataError, CardFileMissingError
from hcmiddleware.sam.software import SoftwareSam

FIELD_SAMPLE = SAMPLES / "field-profile.json"
REGISTRATION = "identity,insurance"
#: The identity and insurance files as the session reads them whole: SFI 6 and 8, P2 101.
WHOLE_EF06, WHOLE_EF08 = "00B20135", "00B20145"


def is_whole(apdu: bytes) -> bool:
    """A READ RECORD of all records from P1 (P2 b3-b1 = 101)."""
    return len(apdu) >= 4 and apdu[1] == 0xB2 and apdu[3] & 0x07 == 0x05


class Rewriting:
    """A card whose answers to whole-file reads are rewritten by ``rewrite``.

    ``rewrite(apdu, answer)`` gets the command and the card's own answer and returns
    what the session sees; every other command reaches the card as it is.
    """

    def __init__(self, card: EmulatedCard, rewrite: Callable[[bytes, bytes], bytes]) -> None:
        self.card, self.rewrite = card, rewrite
        self.whole_reads = 0

    @property
    def atr(self) -> bytes:
        return self.card.atr

    def transmit(self, apdu: bytes) -> bytes:
        if is_whole(apdu):
            self.whole_reads += 1
            return self.rewrite(apdu, self.card.transmit(apdu))
        return self.card.transmit(apdu)

    def close(self) -> None:
        pass


def sam() -> SoftwareSam:
    return SoftwareSam.from_file(KEYS)


def tidy(profile: dict[str, Any]) -> EmulatedCard:
    return EmulatedCard(profile, KEYS, base_dir=SAMPLES)


def item_by_item(card: EmulatedCard, parts: str | None = REGISTRATION) -> CardRead:
    """The read of a card that knows no whole-file read (every such read refused)."""
    refusing = Rewriting(card, lambda apdu, answer: bytes.fromhex("6A86"))
    read = CardSession(refusing, sam()).read(parts=parts)
    card.reset()
    return read


def whole_commands(tracer: TracingTransport) -> list[tuple[str, str]]:
    """Header and status word of each whole-file read in an APDU log (data masked)."""
    return [
        (e["c"][:8], e["r"][-4:])
        for e in tracer.entries
        if e["c"][2:4] == "B2" and int(e["c"][6:8], 16) & 0x07 == 0x05
    ]


# --- our card: 8 APDUs ---------------------------------------------------------------------


def test_the_registration_read_is_8_apdus(profile: dict[str, Any]) -> None:
    card = tidy(profile)
    tracer = TracingTransport(card, io.StringIO())
    session = CardSession(tracer, sam())
    read = session.read(parts=REGISTRATION)
    # SELECT DDF1, items 8 and 57 by tag, INTERNAL AUTHENTICATE, GET CHALLENGE + EXTERNAL
    # AUTHENTICATE, DDF1/EF06 whole, DDF1/EF08 whole
    assert session.apdu_count == 1 + 2 + 1 + 2 + 1 + 1 == 8
    assert [e["c"][:8] for e in tracer.entries] == [
        "00A40400",
        "00B20828",
        "00B23928",
        "00880021",
        "00840000",
        "00820001",
        WHOLE_EF06,
        WHOLE_EF08,
    ]
    assert read == item_by_item(tidy(profile))
    items = profile["items"]
    assert read.cardholder.name == items["name"]
    assert read.cardholder.id_number == items["id_number"]
    assert read.validity.payment_methods == [items["payment_method1"], items["payment_method2"]]


def test_the_full_read_reads_the_same_data(profile: dict[str, Any]) -> None:
    session = CardSession(tidy(profile), sam())
    read = session.read_all()
    check_against_profile(read, profile)
    assert read == item_by_item(tidy(profile), None)
    # EF05 (its certificate makes it 284 bytes) by tag; every other TLV file with more
    # than one item whole: DDF1/EF06, EF08, DF01/EF05-EF08, DF02/EF05
    by_tag = len(fm.items_of(fm.ISSUER)) + len(fm.items_of(fm.PSYCHIATRIC))
    refused = CardSession(Rewriting(tidy(profile), lambda a, r: b"\x6a\x86"), sam())
    refused.read_all()
    whole = 7
    tlv_items = sum(len(fm.items_of(ef)) for ef in fm.FILES if ef.kind is fm.EfKind.TLV_RECORDS)
    assert refused.apdu_count - session.apdu_count == tlv_items - by_tag - whole + 1


# --- field cards, with and without the mode ------------------------------------------------


@pytest.mark.parametrize("multi", [True, False], ids=["whole", "item-by-item"])
def test_the_field_sample_card(multi: bool) -> None:
    data = json.loads(FIELD_SAMPLE.read_text(encoding="utf-8"))
    data["field"]["multi_record_read"] = multi
    card = EmulatedCard(data, KEYS, base_dir=SAMPLES)
    tracer = TracingTransport(card, io.StringIO())
    session = CardSession(tracer, sam())
    read = session.read(parts=REGISTRATION)
    if multi:
        assert session.apdu_count == 8
        assert whole_commands(tracer) == [(WHOLE_EF06, "9000"), (WHOLE_EF08, "9000")]
    else:
        # refused once (6A86), then EF06's five items and EF08's four by tag
        assert session.apdu_count == 6 + 1 + 5 + 4 == 16
        assert whole_commands(tracer) == [(WHOLE_EF06, "6A86")]
    assert read.cardholder.name == "赵晓燕"
    assert read.validity.payment_methods == ["2"]
    assert read.absent_items == (19, 20)  # the card carries one payment method only
    assert read.missing == ()
    assert read == item_by_item(EmulatedCard.from_files(FIELD_SAMPLE, KEYS))


@pytest.mark.parametrize("multi", [True, False], ids=["whole", "item-by-item"])
@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"an_padding": "00"},
        {"an_padding": "20"},
        {"an_padding": "exact", "reorder": False},
        {"empty_items": "empty"},
        {"empty_items": "tlv"},
        {"omit": ("DDF1/EF08",)},
        {"omit": ("DF01/EF06", "DF02")},
    ],
    ids=["unkindest", "pad-00", "pad-20", "exact", "empty-records", "empty-tlv", "no-EF08", "omit"],
)
def test_every_field_card_reads_the_same_either_way(
    profile: dict[str, Any], settings: dict[str, Any], multi: bool
) -> None:
    for name in ("phone2", "payment_method2", "contact2_phone", "occupation"):
        profile["items"][name] = ""  # items without a value, inside whole-read files
    card = EmulatedCard(
        profile, KEYS, base_dir=SAMPLES, field=FieldProfile(**settings, multi_record_read=multi)
    )
    session = CardSession(card, sam())
    read = session.read_all()
    card.reset()
    again = item_by_item(card, None)
    assert read == again
    omitted = set(settings.get("omit", ()))
    assert set(read.missing) == omitted
    absent = [
        n
        for n, it in fm.ITEMS.items()
        if profile["items"].get(it.name, "") == ""
        and it.ef.path not in omitted
        and it.ef.df.label not in omitted
    ]
    if not omitted:
        assert {5, 17, 19, 20, 30, 36} <= set(absent)
    assert list(read.absent_items) == ([] if settings.get("empty_items") == "tlv" else absent)
    assert read.cardholder.name == profile["items"]["name"]


def test_absent_items_are_named_as_item_by_item(profile: dict[str, Any]) -> None:
    profile["items"]["payment_method2"] = ""
    profile["items"]["phone2"] = ""
    card = EmulatedCard(profile, KEYS, base_dir=SAMPLES, field=FieldProfile())
    session = CardSession(card, sam())
    read = session.read(parts="insurance,phones")
    assert session.apdu_count == 6 + 1
    assert read.absent_items == (17, 19, 20)
    assert read.validity.payment_methods == [profile["items"]["payment_method1"]]
    card.reset()
    assert read == item_by_item(card, "insurance,phones")


def test_a_mandatory_item_absent_from_the_whole_file(profile: dict[str, Any]) -> None:
    profile["items"]["name"] = ""
    card = EmulatedCard(profile, KEYS, base_dir=SAMPLES, field=FieldProfile())
    with pytest.raises(CardFileMissingError) as info:
        CardSession(card, sam()).read(parts=REGISTRATION)
    assert info.value.path == "DDF1/EF06 item 11"
    assert info.value.sw == 0x6A83
    tlv = EmulatedCard(profile, KEYS, base_dir=SAMPLES, field=FieldProfile(empty_items="tlv"))
    with pytest.raises(CardDataError, match="item 11"):
        CardSession(tlv, sam()).read(parts=REGISTRATION)


def test_a_mandatory_file_absent_is_still_a_typed_error(profile: dict[str, Any]) -> None:
    card = EmulatedCard(profile, KEYS, base_dir=SAMPLES, field=FieldProfile(omit=("DDF1/EF06",)))
    tracer = TracingTransport(card, io.StringIO())
    with pytest.raises(CardFileMissingError) as info:
        CardSession(tracer, sam()).read(parts=REGISTRATION)
    assert info.value.path == "DDF1/EF06"
    assert whole_commands(tracer) == [(WHOLE_EF06, "6A82")]  # the card said so itself


# --- cards that do not know the mode, or answer it oddly -----------------------------------


@pytest.mark.parametrize("sw", ["6A86", "6A81", "6D00", "6E00", "6B00", "6700"])
def test_a_refusal_falls_back_and_is_remembered(profile: dict[str, Any], sw: str) -> None:
    transport = Rewriting(tidy(profile), lambda apdu, answer: bytes.fromhex(sw))
    session = CardSession(transport, sam())
    read = session.read(parts=REGISTRATION)
    assert read == item_by_item(tidy(profile))
    assert transport.whole_reads == 1  # EF08 was not asked: the card said no for EF06
    assert session.apdu_count == 6 + 1 + 5 + 4
    session.read_all()  # nor in a later read on the same card
    assert transport.whole_reads == 1
    session.forget_state()  # a reinserted card may be another card: asked again, once
    session.read_all()
    assert transport.whole_reads == 2


@pytest.mark.parametrize(
    "garbled",
    [
        "0B",  # a tag without a length
        "0B1E41429000",  # a length past the end of the answer
        "9000",  # nothing at all
    ],
)
def test_a_malformed_answer_falls_back(profile: dict[str, Any], garbled: str) -> None:
    def rewrite(apdu: bytes, answer: bytes) -> bytes:
        return bytes.fromhex(garbled if garbled.endswith("9000") else garbled + "9000")

    transport = Rewriting(tidy(profile), rewrite)
    session = CardSession(transport, sam())
    assert session.read(parts=REGISTRATION) == item_by_item(tidy(profile))
    assert transport.whole_reads == 1  # EF08 is read item by item without asking
    assert session.apdu_count == 6 + 1 + 5 + 4


def test_the_memory_is_per_card(profile: dict[str, Any]) -> None:
    """A session whose transport now reaches another card asks that card afresh."""

    class Slot:
        def __init__(self, card: Any) -> None:
            self.card = card

        @property
        def atr(self) -> bytes:
            return bytes(self.card.atr)

        def transmit(self, apdu: bytes) -> bytes:
            return bytes(self.card.transmit(apdu))

        def close(self) -> None:
            pass

    refusing = Rewriting(tidy(profile), lambda apdu, answer: b"\x6a\x86")
    slot = Slot(refusing)
    session = CardSession(slot, sam())
    session.read(parts=REGISTRATION)
    assert session.apdu_count == 16
    other = dict(profile, items={**profile["items"], "chip_serial": "9900000001"})
    slot.card = tidy(other)
    # what the session knew of the first card but the whole-file memory (which
    # forget_state clears too): the second card is in the reader unannounced
    session._df, session._factor, session._card_city = None, None, None
    session._auth.clear()
    before = session.apdu_count
    read = session.read(parts=REGISTRATION)
    assert session.apdu_count - before == 8
    assert read.atr != refusing.atr


def test_an_answer_that_wants_its_exact_length(profile: dict[str, Any]) -> None:
    """6Cxx with the records' length: the read is sent again with that Le."""

    def exact(apdu: bytes, answer: bytes) -> bytes:
        data = answer[:-2]
        return answer if apdu[4] == len(data) else bytes((0x6C, len(data)))

    transport = Rewriting(tidy(profile), exact)
    session = CardSession(transport, sam())
    assert session.read(parts=REGISTRATION) == item_by_item(tidy(profile))
    assert session.apdu_count == 8 + 2
    assert transport.whole_reads == 4


def test_a_6cxx_that_persists_falls_back(profile: dict[str, Any]) -> None:
    transport = Rewriting(tidy(profile), lambda apdu, answer: b"\x6c\x10")
    session = CardSession(transport, sam())
    assert session.read(parts=REGISTRATION) == item_by_item(tidy(profile))
    assert transport.whole_reads == 2  # the read and its retry with Le 10, once
    assert session.apdu_count == 6 + 2 + 5 + 4


def test_an_answer_in_pieces_with_get_response(profile: dict[str, Any]) -> None:
    """61xx: the first bytes now, the rest with GET RESPONSE (the card keeps it)."""
    card = tidy(profile)

    def chained(apdu: bytes, answer: bytes) -> bytes:
        data = answer[:-2]
        card._pending = data[10:]  # what GET RESPONSE hands out next
        return data[:10] + bytes((0x61, len(data) - 10))

    session = CardSession(Rewriting(card, chained), sam())
    assert session.read(parts=REGISTRATION) == item_by_item(tidy(profile))
    assert session.apdu_count == 8 + 2


def test_an_answer_cut_at_the_le_reads_the_rest_by_tag(profile: dict[str, Any]) -> None:
    """Records padded to 60 bytes: 300 bytes, of which the card answers the first 256."""

    def padded(apdu: bytes, answer: bytes) -> bytes:
        data, sw = answer[:-2], answer[-2:]
        if sw != b"\x90\x00":
            return answer
        card = transport.card
        ef = fm.CARDHOLDER if apdu[3] >> 3 == 6 else fm.VALIDITY
        records = card._files[ef].records
        whole = b"".join(r.ljust(60, b"\xff") for r in records)
        assert whole.startswith(data[:2])
        return whole[:256] + sw

    transport = Rewriting(tidy(profile), padded)
    session = CardSession(transport, sam())
    read = session.read(parts=REGISTRATION)
    assert read == item_by_item(tidy(profile))
    # EF06: records 1-4 whole, the fifth (item 15) cut: read by tag, which tells the
    # card answers no whole file here; EF08 item by item
    assert transport.whole_reads == 1
    assert session.apdu_count == 6 + 1 + 1 + 4


def test_a_card_that_reads_record_1_only(profile: dict[str, Any]) -> None:
    """A card that takes P2 101 for 100 answers record 1: the rest is read by tag."""

    def first_only(apdu: bytes, answer: bytes) -> bytes:
        return transport.card.transmit(apdu[:3] + bytes(((apdu[3] & 0xF8) | 0x04,)) + apdu[4:])

    transport = Rewriting(tidy(profile), first_only)
    session = CardSession(transport, sam())
    assert session.read(parts=REGISTRATION) == item_by_item(tidy(profile))
    assert transport.whole_reads == 1  # remembered once the card showed more records
    assert session.apdu_count == 6 + 1 + 4 + 4


def test_6a83_to_the_whole_file_is_confirmed_item_by_item(profile: dict[str, Any]) -> None:
    """No record 1: an empty file, or a card that answers so for a mode it lacks."""
    transport = Rewriting(tidy(profile), lambda apdu, answer: b"\x6a\x83")
    session = CardSession(transport, sam())
    read = session.read(parts=REGISTRATION)
    assert read == item_by_item(tidy(profile))
    assert read.absent_items == ()
    assert transport.whole_reads == 2


def test_6a83_for_an_empty_file_reads_its_items_as_absent(profile: dict[str, Any]) -> None:
    card = tidy(profile)
    card._files[fm.VALIDITY].records = []  # the file is there, without a record
    tracer = TracingTransport(card, io.StringIO())
    read = CardSession(tracer, sam()).read(parts=REGISTRATION)
    assert read.absent_items == (7, 18, 19, 20)
    assert read.validity.payment_methods == []
    assert read.missing == ()
    assert whole_commands(tracer) == [(WHOLE_EF06, "9000"), (WHOLE_EF08, "6A83")]


def test_one_item_of_a_file_is_read_by_its_tag(profile: dict[str, Any]) -> None:
    tracer = TracingTransport(tidy(profile), io.StringIO())
    session = CardSession(tracer, sam())
    assert session.read_items([11]) == {11: profile["items"]["name"]}
    assert whole_commands(tracer) == []
    assert session.read_items([11, 15, 11]) == {
        11: profile["items"]["name"],
        15: profile["items"]["id_number"],
    }
    assert whole_commands(tracer) == [(WHOLE_EF06, "9000")]

"""Cards as they come in the field, read and written in-process.

The software card with a field profile leaves cyclic records unwritten (6A83), items
and files out, pads with FF, stores short records and keeps items in another order.
Every read must give the same data as from the tidy card, name what is absent, and
stop with a typed error only where the card cannot be used.
"""

from __future__ import annotations

import datetime as dt
import io
from typing import Any

import pytest
from card_checks import check_against_profile
from card_samples import KEYS, SAMPLES

from hcmiddleware.card import filemap as fm
from hcmiddleware.card.data import Allergy, CardRead, Immunisation, VisitRecord
from hcmiddleware.card.emulator import EmulatedCard
from hcmiddleware.card.field import FieldProfile
from hcmiddleware.card.image import personalise
from hcmiddleware.card.session import CardSession
from hcmiddleware.card.transport import TracingTransport
from hcmiddleware.errors import (
    CardAbsentError,
    CardDataError,
    CardError,
    CardFileMissingError,
    CardFileNotFoundError,
    CardLengthError,
    CardPartError,
    CardPartNotReadError,
)
from hcmiddleware.sam.keyset import load_keyset
from hcmiddleware.sam.software import SoftwareSam

P = fm.CardPart


def field_card(profile: dict[str, Any], **settings: Any) -> EmulatedCard:
    return EmulatedCard(profile, KEYS, base_dir=SAMPLES, field=FieldProfile(**settings))


def traced(card: EmulatedCard) -> tuple[CardSession, TracingTransport]:
    tracer = TracingTransport(card, io.StringIO(), personal=True)
    return CardSession(tracer, SoftwareSam.from_file(KEYS)), tracer


def answers(tracer: TracingTransport, command_prefix: str) -> list[str]:
    """Status words the card gave to commands starting with ``command_prefix``."""
    return [e["r"][-4:] for e in tracer.entries if e["c"].startswith(command_prefix)]


def snapshot(card: EmulatedCard) -> dict[str, bytes]:
    """Every file the card has, byte for byte."""
    out = {}
    for spec in fm.FILES:
        try:
            out[spec.path] = card.file_bytes(spec)
        except CardDataError:
            continue  # left out by the field profile
    return out


# --- the reported case: a cyclic file with fewer records than its room ------------------


def test_allergies_end_at_6a83_and_the_records_read_are_the_data(
    profile: dict[str, Any],
) -> None:
    assert len(profile["allergies"]) < fm.ALLERGIES.records  # the case of the report
    card = field_card(profile, unwritten="absent")
    session, tracer = traced(card)
    read = session.read_all()
    check_against_profile(read, profile)
    # the card really answered 6A83 after the last record (allergies are SFI 7 of DF02)
    record_3 = f"00B203{(7 << 3) | 4:02X}"
    assert answers(tracer, record_3) == ["6A83"]
    assert read.missing == ()


@pytest.mark.parametrize("unwritten", ["absent", "empty", "00", "FF"])
@pytest.mark.parametrize("empty_items", ["absent", "empty", "tlv"])
def test_every_kind_of_field_card_reads_the_same_data(
    profile: dict[str, Any], unwritten: str, empty_items: str
) -> None:
    card = field_card(profile, unwritten=unwritten, empty_items=empty_items)
    read = CardSession(card, SoftwareSam.from_file(KEYS)).read_all()
    check_against_profile(read, profile)
    empty = sorted(n for n, it in fm.ITEMS.items() if profile["items"].get(it.name, "") == "")
    assert list(read.absent_items) == ([] if empty_items == "tlv" else empty)


@pytest.mark.parametrize("padding", ["exact", "00", "20", "FF"])
def test_text_padded_any_way_reads_the_same(profile: dict[str, Any], padding: str) -> None:
    card = field_card(profile, an_padding=padding)
    name_record = next(
        r for r in card._files[fm.CARDHOLDER].records if r and r[0] == fm.item("name").number
    )
    if padding != "exact":  # the card really pads the name to its 30 bytes
        assert name_record.endswith(bytes.fromhex(padding))
        assert len(name_record) == 2 + 30
    check_against_profile(CardSession(card, SoftwareSam.from_file(KEYS)).read_all(), profile)


def test_short_records_read_the_same(profile: dict[str, Any]) -> None:
    card = field_card(profile, short_records=True)
    stored = card._files[fm.ALLERGIES].records
    assert all(len(r) < fm.ALLERGIES.size for r in stored)  # shorter than the layout
    check_against_profile(CardSession(card, SoftwareSam.from_file(KEYS)).read_all(), profile)


def test_items_in_another_order_read_the_same(profile: dict[str, Any]) -> None:
    card = field_card(profile, reorder=True)
    first = card._files[fm.CARDHOLDER].records[0]
    assert first[0] != fm.items_of(fm.CARDHOLDER)[0].number  # record 1 is not item 11
    check_against_profile(CardSession(card, SoftwareSam.from_file(KEYS)).read_all(), profile)


def test_the_sample_field_card(profile: dict[str, Any]) -> None:
    card = EmulatedCard.from_files(SAMPLES / "field-profile.json", KEYS)
    read = CardSession(card, SoftwareSam.from_file(KEYS)).read_all()
    assert read.missing == ("DDF1/EF07", "DF02/EF08")
    assert read.photo == b""
    assert read.clinical.immunisations == []
    assert [a.substance for a in read.clinical.allergies] == ["头孢类"]
    assert read.validity.phone2 == ""
    assert 17 in read.absent_items
    assert read.cardholder.name == "赵晓燕"
    assert len(read.visits) == 1


# --- files and DFs the card does not have ------------------------------------------------


@pytest.mark.parametrize(
    ("omit", "empty"),
    [
        (("DDF1/EF07",), lambda r: r.photo == b""),
        (("DDF1/EF08",), lambda r: r.validity.payment_methods == [] and r.validity.phone1 == ""),
        (("DF01",), lambda r: r.personal.addresses == [] and r.personal.education == ""),
        (("DF01/EF06",), lambda r: r.personal.contacts == [] and r.personal.addresses != []),
        (("DF02",), lambda r: r.clinical.allergies == [] and r.clinical.abo == 0),
        (("DF02/EF07",), lambda r: r.clinical.allergies == [] and r.clinical.immunisations),
        (("DF02/EF08",), lambda r: r.clinical.immunisations == [] and r.clinical.allergies),
        (("DF03",), lambda r: r.visits == []),
        (("DF03/EF06",), lambda r: all(v.kind == "inpatient" for v in r.visits)),
        (("DF01", "DF02", "DF03", "DDF1/EF07"), lambda r: r.visits == [] and r.photo == b""),
    ],
)
def test_an_optional_file_or_df_absent_reads_empty_and_is_named(
    profile: dict[str, Any], omit: tuple[str, ...], empty: Any
) -> None:
    card = field_card(profile, omit=omit)
    session, tracer = traced(card)
    read = session.read_all()
    assert set(read.missing) == set(omit)
    assert empty(read)
    assert "6A82" in [e["r"][-4:] for e in tracer.entries]  # the card said so itself
    # the rest is read as ever
    assert read.cardholder.name == profile["items"]["name"]
    assert read.issuer.card_number == profile["items"]["card_number"]


def test_a_visit_record_the_index_names_but_the_card_lacks(profile: dict[str, Any]) -> None:
    tidy = EmulatedCard(profile, KEYS, base_dir=SAMPLES)
    slots = [
        v.slot for v in CardSession(tidy, SoftwareSam.from_file(KEYS)).read_visits()
        if v.kind == fm.VisitKind.OUTPATIENT
    ]  # fmt: skip
    lost = fm.OUTPATIENT_RECORDS[slots[0] - 1]
    card = EmulatedCard(profile, KEYS, base_dir=SAMPLES)
    del card._files[lost]  # the index says valid, the file is not there
    df03 = next(df for df in card._all_dfs() if df.spec is fm.DF03)
    del df03.children[lost.fid]
    read = CardSession(card, SoftwareSam.from_file(KEYS)).read_all()
    assert read.missing == (lost.path,)
    assert len(read.visits) == len(profile["visits"]) - 1


@pytest.mark.parametrize(
    ("omit", "path"), [(("DDF1/EF05",), "DDF1/EF05"), (("DDF1/EF06",), "DDF1/EF06")]
)
def test_a_mandatory_file_absent_is_a_typed_error(
    profile: dict[str, Any], omit: tuple[str, ...], path: str
) -> None:
    card = field_card(profile, omit=omit)
    with pytest.raises(CardFileMissingError) as info:
        CardSession(card, SoftwareSam.from_file(KEYS)).read_all()
    assert info.value.path == path
    assert info.value.sw == 0x6A82
    assert "every health card" in info.value.message
    assert info.value.hint


@pytest.mark.parametrize("name", ["card_number", "city_code", "name"])
def test_a_mandatory_item_absent_or_empty_is_a_typed_error(
    profile: dict[str, Any], name: str
) -> None:
    # the card's keys as issued (for its city); the item itself left without a value
    image = personalise(profile, load_keyset(KEYS), base_dir=SAMPLES)
    profile["items"][name] = ""
    it = fm.item(name)

    def card(empty_items: str) -> EmulatedCard:
        return EmulatedCard(
            {**profile, "atr": image.atr},
            base_dir=SAMPLES,
            card_keys=image.card_keys(),
            field=FieldProfile(empty_items=empty_items),  # type: ignore[arg-type]
        )

    with pytest.raises(CardFileMissingError) as info:
        CardSession(card("absent"), SoftwareSam.from_file(KEYS)).read()
    assert info.value.path == f"{it.ef.path} item {it.number}"
    with pytest.raises(CardDataError, match=f"item {it.number}"):
        CardSession(card("tlv"), SoftwareSam.from_file(KEYS)).read()


# --- parts: the short read --------------------------------------------------------------


def test_registration_reads_identity_and_insurance_in_8_apdus(
    session: CardSession, profile: dict[str, Any]
) -> None:
    read = session.read(parts="identity,insurance")
    # SELECT DDF1, items 8 and 57, INTERNAL AUTHENTICATE, GET CHALLENGE + EXTERNAL AUTH,
    # the cardholder file and the validity file, each whole in one READ RECORD
    assert session.apdu_count == 1 + 2 + 1 + 2 + 1 + 1 == 8
    assert read.parts == (P.IDENTITY, P.INSURANCE)
    items = profile["items"]
    assert read.cardholder.id_number == items["id_number"]
    assert read.validity.payment_methods == [items["payment_method1"], items["payment_method2"]]
    assert read.issuer.card_number == items["card_number"]


@pytest.mark.parametrize(
    ("field", "part"),
    [
        (lambda r: r.photo, "photo"),
        (lambda r: r.visits, "visits"),
        (lambda r: r.personal, "contacts"),
        (lambda r: r.clinical, "basics"),
        (lambda r: r.validity.phone1, "phones"),
        (lambda r: r.issuer.issuer_name, "issuer"),
    ],
)
def test_an_unread_part_is_an_error_not_an_empty_value(
    session: CardSession, field: Any, part: str
) -> None:
    read = session.read(parts="identity,insurance")
    with pytest.raises(CardPartNotReadError) as info:
        field(read)
    assert info.value.part == part
    assert part in info.value.hint


def test_unread_parts_are_null_in_json_and_stay_unread_after_a_round_trip(
    session: CardSession,
) -> None:
    read = session.read(parts=["allergies"])
    data = read.model_dump(mode="json")
    assert data["parts"] == ["allergies"]
    assert data["photo"] is None
    assert data["cardholder"] is None
    assert data["clinical"]["abo"] is None
    assert data["clinical"]["allergies"]
    again = CardRead.model_validate_json(read.model_dump_json())
    assert again == read
    with pytest.raises(CardPartNotReadError):
        _ = again.clinical.abo


@pytest.mark.parametrize("part", list(P))
def test_each_part_alone_reads_what_the_full_read_reads(
    profile: dict[str, Any], part: fm.CardPart
) -> None:
    full = CardSession(
        EmulatedCard(profile, KEYS, base_dir=SAMPLES), SoftwareSam.from_file(KEYS)
    ).read_all()
    session, tracer = traced(EmulatedCard(profile, KEYS, base_dir=SAMPLES))
    read = session.read(parts=[part])
    assert read.parts == (part,)
    dumped, whole = read.model_dump(), full.model_dump()
    for name, value in dumped.items():
        if name in ("parts", "missing", "absent_items") or value is None:
            continue
        if isinstance(value, dict):
            for key, sub in value.items():
                if key != "parts" and sub is not None:
                    assert sub == whole[name][key], (name, key)
        else:
            assert value == whole[name], name
    # and no more than its DF: one SELECT per DF besides DDF1, no other DF touched
    selects = [e["c"][10:14] for e in tracer.entries if e["c"].startswith("00A40000")]
    dfs = {ef.df.label for ef in files_of(part)} - {"DDF1"}
    assert {s for s in selects if s.startswith("DF")} == dfs


def files_of(part: fm.CardPart) -> set[fm.EfSpec]:
    if part in fm.PART_ITEMS:
        return {it.ef for it in fm.PART_ITEMS[part]}
    return {
        P.PHOTO: {fm.PHOTO},
        P.ALLERGIES: {fm.ALLERGIES},
        P.IMMUNISATIONS: {fm.IMMUNISATIONS},
        P.VISITS: {fm.INPATIENT_INDEX},
    }[part]


def test_part_names_and_groups() -> None:
    assert fm.parse_parts("cardholder, insurance") == {P.IDENTITY, P.INSURANCE}
    assert fm.parse_parts("clinical") == {P.BASICS, P.ALLERGIES, P.IMMUNISATIONS}
    assert fm.parse_parts(None) == set(P) == fm.parse_parts("all")
    assert fm.parts_text(fm.parse_parts("visits,identity")) == "identity,visits"
    with pytest.raises(CardPartError) as info:
        fm.parse_parts("identity,photos")
    assert info.value.part == "photos"
    assert isinstance(info.value, ValueError)


def test_a_full_read_is_the_same_with_or_without_parts(session: CardSession) -> None:
    by_default = session.read_all()
    count = session.apdu_count
    session.forget_state()
    assert session.read(parts="all") == by_default
    assert session.apdu_count == 2 * count


# --- bad answers: 6A82 / 6A83 anywhere, zero-length records, a pulled card --------------


class Answering:
    """A card whose ``n``-th answer is replaced by ``answer`` (the card never sees it)."""

    def __init__(self, card: EmulatedCard, n: int, answer: bytes) -> None:
        self.card, self.n, self.answer, self.count = card, n, answer, 0

    @property
    def atr(self) -> bytes:
        return self.card.atr

    def transmit(self, apdu: bytes) -> bytes:
        self.count += 1
        if self.count == self.n:
            return self.answer
        return self.card.transmit(apdu)

    def close(self) -> None:
        pass


def full_read_commands(profile: dict[str, Any]) -> list[str]:
    session, tracer = traced(EmulatedCard(profile, KEYS, base_dir=SAMPLES))
    session.read_all()
    return [e["c"] for e in tracer.entries]


@pytest.mark.parametrize("sw", ["6A82", "6A83"])
def test_6a82_or_6a83_anywhere_is_marked_or_typed(profile: dict[str, Any], sw: str) -> None:
    commands = full_read_commands(profile)
    tidy = CardSession(
        EmulatedCard(profile, KEYS, base_dir=SAMPLES), SoftwareSam.from_file(KEYS)
    ).read_all()
    outcomes: dict[str, int] = {}
    for n in range(1, len(commands) + 1):
        card = EmulatedCard(profile, KEYS, base_dir=SAMPLES)
        session = CardSession(Answering(card, n, bytes.fromhex(sw)), SoftwareSam.from_file(KEYS))
        failed: CardError | None = None
        try:
            read = session.read_all()
        except CardError as exc:  # a typed error ...
            failed = exc
        if failed is not None:  # ... that says what to do
            assert failed.message, (n, commands[n - 1])
            assert failed.hint, (n, commands[n - 1])
            outcomes[type(failed).__name__] = outcomes.get(type(failed).__name__, 0) + 1
            continue
        # else the read says what it lacks, or it is a record file ending early, or a
        # whole-file read answered 6A83 and read again item by item
        ins = commands[n - 1][2:4]
        by_number = ins == "B2" and int(commands[n - 1][6:8], 16) & 0x07 in (0x04, 0x05)
        if read.missing or read.absent_items:
            outcomes["marked"] = outcomes.get("marked", 0) + 1
        else:
            assert by_number, (n, commands[n - 1])  # a record file ended there
            for same in ("issuer", "cardholder", "validity", "photo", "personal"):
                assert getattr(read, same) == getattr(tidy, same)
            assert len(read.clinical.allergies) <= len(tidy.clinical.allergies)
            assert len(read.visits) <= len(tidy.visits)
            outcomes["ended"] = outcomes.get("ended", 0) + 1
    assert outcomes.get("marked"), outcomes
    assert len(outcomes) >= 2, outcomes


@pytest.mark.parametrize(
    ("command", "expect"),
    [
        ("00B20B30", CardDataError),  # the holder's name, an empty record
        ("00B21040", "phone1 empty"),  # phone 1 (item 16), an empty record
        ("00B2013C", "no allergy"),  # allergy record 1: never written
        ("00B2012C", "no inpatient visit"),  # inpatient index record 1: invalid
    ],
)
def test_a_zero_length_record(profile: dict[str, Any], command: str, expect: Any) -> None:
    class Empty:
        atr = EmulatedCard(profile, KEYS, base_dir=SAMPLES).atr

        def __init__(self) -> None:
            self.card = EmulatedCard(profile, KEYS, base_dir=SAMPLES)

        def transmit(self, apdu: bytes) -> bytes:
            if apdu[1] == 0xB2 and apdu[3] & 0x07 == 0x05:
                return b"\x6a\x86"  # records read one by one, as the command names them
            answer = self.card.transmit(apdu)
            if apdu.hex().upper().startswith(command) and answer[-2:] == b"\x90\x00":
                return b"\x90\x00"  # the record is there and holds nothing
            return answer

        def close(self) -> None:
            pass

    session = CardSession(Empty(), SoftwareSam.from_file(KEYS))
    if isinstance(expect, type):
        with pytest.raises(expect) as info:
            session.read_all()
        assert "empty" in info.value.message
        assert info.value.hint
        return
    read = session.read_all()
    if expect == "phone1 empty":
        assert read.validity.phone1 == ""
        assert read.validity.phone2 == profile["items"]["phone2"]
    elif expect == "no allergy":
        assert read.clinical.allergies == []
    else:
        assert all(v.kind == "outpatient" for v in read.visits)


def test_a_card_pulled_between_any_two_apdus_of_a_read(profile: dict[str, Any]) -> None:
    total = len(full_read_commands(profile))
    for n in range(total):
        card = field_card(profile)
        card.pull_after(n)
        session = CardSession(card, SoftwareSam.from_file(KEYS))
        with pytest.raises(CardAbsentError) as info:
            session.read(parts=None)
        assert info.value.hint


# --- writes on a field card ---------------------------------------------------------------


def allergies_on(card: EmulatedCard) -> list[str]:
    return [a.substance for a in CardSession(card, SoftwareSam.from_file(KEYS)).read_clinical()
            .allergies]  # fmt: skip


@pytest.mark.parametrize("unwritten", ["absent", "empty", "00", "FF"])
def test_an_append_fills_the_next_empty_record_then_drops_the_oldest(
    profile: dict[str, Any], unwritten: str
) -> None:
    profile["allergies"] = profile["allergies"][:1]
    card = field_card(profile, unwritten=unwritten)
    tidy = EmulatedCard(profile, KEYS, base_dir=SAMPLES)
    expected = [profile["allergies"][0]["substance"]]
    for n in range(4):
        for c in (card, tidy):
            c.reset()
            CardSession(c, SoftwareSam.from_file(KEYS)).add_allergy(
                Allergy(substance=f"过敏原{n}", reaction="荨麻疹")
            )
        expected = [f"过敏原{n}", *expected][: fm.ALLERGIES.records]
        card.reset()
        tidy.reset()
        assert allergies_on(card) == allergies_on(tidy) == expected
        if unwritten == "absent":  # the file holds exactly the records written
            assert len(card._files[fm.ALLERGIES].records) == min(n + 2, fm.ALLERGIES.records)


def test_an_append_to_an_empty_cyclic_file_is_record_1(profile: dict[str, Any]) -> None:
    profile.pop("immunisations")
    card = field_card(profile, unwritten="absent")
    assert card._files[fm.IMMUNISATIONS].records == []
    shot = Immunisation(vaccine="流感疫苗", date=dt.date(2026, 11, 27))
    CardSession(card, SoftwareSam.from_file(KEYS)).add_immunisation(shot)
    card.reset()
    assert CardSession(card, SoftwareSam.from_file(KEYS)).read_clinical().immunisations == [shot]


@pytest.mark.parametrize("tear", [False, True])
def test_an_append_pulled_before_it_completes_writes_nothing(
    profile: dict[str, Any], tear: bool
) -> None:
    card = field_card(profile)
    session = CardSession(card, SoftwareSam.from_file(KEYS))
    session.read_issuer()  # the city is known: the append is SELECT, auth, write
    before = snapshot(card)
    card.pull_after(3, tear=tear)  # SELECT DF02, GET CHALLENGE, EXTERNAL AUTH; not the write
    with pytest.raises(CardAbsentError):
        session.add_allergy(Allergy(substance="青霉素", reaction="皮疹"))
    assert snapshot(card) == before


def test_a_wrong_length_append_is_refused_and_writes_nothing(profile: dict[str, Any]) -> None:
    card = field_card(profile)
    session = CardSession(card, SoftwareSam.from_file(KEYS))
    session.read_issuer()
    session._authenticate(fm.DF02, fm.DF02.update_key)
    before = snapshot(card)
    from hcmiddleware.card.apdu import Apdu

    with pytest.raises(CardLengthError):
        session._send(Apdu(0x00, 0xDC, 0x00, (7 << 3) | 3, bytes(100)), "writing")
    assert snapshot(card) == before


@pytest.mark.parametrize("reorder", [False, True])
def test_an_item_update_writes_its_own_record_whatever_the_order(
    profile: dict[str, Any], reorder: bool
) -> None:
    card = field_card(profile, reorder=reorder, checks_tags=False)
    before = list(card._files[fm.CONTACTS].records)
    CardSession(card, SoftwareSam.from_file(KEYS)).update_item(27, "13511112222")
    after = card._files[fm.CONTACTS].records
    changed = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
    assert len(changed) == 1
    assert after[changed[0]][0] == 27  # the record that held item 27, and only it
    card.reset()
    assert CardSession(card, SoftwareSam.from_file(KEYS)).read_items([27, 25]) == {
        27: "13511112222",
        25: profile["items"]["contact1_name"],
    }


def test_an_item_the_card_has_no_record_for_is_not_written(profile: dict[str, Any]) -> None:
    profile["items"]["contact3_phone"] = ""
    card = field_card(profile, empty_items="absent")
    before = snapshot(card)
    with pytest.raises(CardFileNotFoundError) as info:
        CardSession(card, SoftwareSam.from_file(KEYS)).update_item(33, "13511112222")
    assert "nothing was written" in info.value.message
    assert snapshot(card) == before


def test_the_oldest_visit_is_found_when_its_items_are_in_another_order(
    profile: dict[str, Any],
) -> None:
    base = dt.datetime(2026, 1, 1, 8, 0)
    profile["visits"] = [
        {
            "kind": "outpatient",
            "slot": slot,
            "visited_at": (base + dt.timedelta(days=days)).isoformat(),
            "institution_name": "沈阳市第一人民医院",
            "institution_code": "210102000001",
            "diagnosis_name": f"第{days}天",
        }
        for slot, days in zip(range(1, 6), (30, 10, 50, 20, 40), strict=True)
    ]  # every slot valid, as a pull between marking valid and invalid leaves them
    card = field_card(profile, reorder=True)
    session = CardSession(card, SoftwareSam.from_file(KEYS))
    new = VisitRecord(
        kind=fm.VisitKind.OUTPATIENT,
        visited_at=base + dt.timedelta(days=60),
        institution_name="沈阳市第一人民医院",
        institution_code="210102000001",
    )
    slot = session.append_visit(new)
    assert slot == 2  # the slot of the oldest visit (day 10)
    card.reset()
    days = sorted(
        v.diagnosis_name for v in CardSession(card, SoftwareSam.from_file(KEYS)).read_visits()
    )
    assert "第10天" not in days
    assert len(days) == 4


def test_a_visit_index_shorter_than_its_slots_is_a_shorter_ring(profile: dict[str, Any]) -> None:
    profile["visits"] = []
    card = field_card(profile)
    index = card._files[fm.OUTPATIENT_INDEX]
    index.records = index.records[:3]  # the card answers 6A83 for records 4 and 5
    session = CardSession(card, SoftwareSam.from_file(KEYS))
    slots = [session.append_visit(visit_on(day)) for day in range(5)]
    assert slots == [1, 2, 3, 1, 2]  # three slots, one kept as the spare
    days = [v.visited_at.day for v in session.read_visits()]
    assert days == [5, 4]


def test_a_visit_index_of_one_slot_is_not_written(profile: dict[str, Any]) -> None:
    profile["visits"] = []
    card = field_card(profile)
    index = card._files[fm.OUTPATIENT_INDEX]
    index.records = index.records[:1]
    before = snapshot(card)
    with pytest.raises(CardDataError, match="nothing was written") as info:
        CardSession(card, SoftwareSam.from_file(KEYS)).append_visit(visit_on(0))
    assert info.value.hint
    assert snapshot(card) == before


def visit_on(day: int) -> VisitRecord:
    return VisitRecord(
        kind=fm.VisitKind.OUTPATIENT,
        visited_at=dt.datetime(2026, 12, 1 + day, 9, 0),
        institution_name="沈阳市第一人民医院",
        institution_code="210102000001",
    )

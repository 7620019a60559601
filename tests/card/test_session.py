"""The card session against the in-process software card: data, APDU economy, writes."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest
from card_checks import check_against_profile
from card_samples import KEYS, KEYS_3DES, SAMPLES

from hcmiddleware.card import filemap as fm
from hcmiddleware.card.data import Allergy, Immunisation, VisitRecord
from hcmiddleware.card.emulator import EmulatedCard
from hcmiddleware.card.guard import PROCESS_GUARD, KeyGuard
from hcmiddleware.card.session import CardSession
from hcmiddleware.errors import (
    CardAbsentError,
    CardAuthenticityError,
    CardAuthError,
    CardCityError,
    CardDataError,
    CardKeyAtRiskError,
    CardKeyBlockedError,
    CardMacError,
    ForeignCardError,
    SamUnavailableError,
)
from hcmiddleware.sam.software import SoftwareSam


def test_read_all_returns_every_field(session: CardSession, profile: dict[str, Any]) -> None:
    check_against_profile(session.read_all(), profile)


@pytest.mark.parametrize("padding", ["00", "20"])
def test_padded_text_reads_the_same(
    profile: dict[str, Any], sam: SoftwareSam, padding: str
) -> None:
    profile["an_padding"] = padding
    card = EmulatedCard(profile, KEYS, base_dir=SAMPLES)
    check_against_profile(CardSession(card, sam).read_all(), profile)


def test_identity_read_uses_the_minimum_of_apdus(session: CardSession) -> None:
    session.read_issuer()
    # SELECT DDF1 + a READ RECORD per item: with its certificate the file is longer than
    # a short answer, so it is not read whole
    assert session.apdu_count == 1 + len(fm.items_of(fm.ISSUER))
    session.read_cardholder()
    # no reselect; GET CHALLENGE + EXTERNAL AUTHENTICATE + the file's records in one
    assert session.apdu_count == 1 + len(fm.items_of(fm.ISSUER)) + 2 + 1
    before = session.apdu_count
    session.read_validity()  # same DF, key already open; the file in one READ RECORD
    assert session.apdu_count - before == 1


def test_photo_reads_only_its_length(session: CardSession) -> None:
    session.read_issuer()
    session.read_cardholder()
    before = session.apdu_count
    photo = session.read_photo()
    assert session.apdu_count - before == -(-(len(photo) + 2) // 256)


def test_read_items_by_number(session: CardSession, profile: dict[str, Any]) -> None:
    values = session.read_items([11, 15, 3, 42, 25])
    items = profile["items"]
    assert values == {
        11: items["name"],
        15: items["id_number"],
        3: items["issuer_name"],
        42: items["rh"],
        25: items["contact1_name"],
    }
    with pytest.raises(CardDataError):
        session.read_items([99])


def test_without_sam_only_issuer_data(card: EmulatedCard) -> None:
    s = CardSession(card)
    assert s.read_issuer().card_number
    with pytest.raises(SamUnavailableError):
        s.read_cardholder()


def test_wrong_keys_stop_at_two_tries_left_and_are_never_tried_again(card: EmulatedCard) -> None:
    guard = KeyGuard()
    s = CardSession(card, SoftwareSam.from_file(KEYS_3DES), guard=guard)
    s.read_issuer()
    for left in (4, 3, 2):
        with pytest.raises(CardAuthError) as info:
            s.read_cardholder()
        assert info.value.tries_left == left
    assert "will not try" in info.value.message
    assert info.value.hint
    sent = card.apdu_count
    with pytest.raises(CardKeyAtRiskError) as refused:
        s.read_cardholder()
    assert card.apdu_count == sent  # refused without an APDU
    assert refused.value.tries_left == 2
    assert refused.value.key_ref == "01"
    assert "issuer" in refused.value.hint
    assert card.key_tries(0x01) == 2
    # Another session on the same card, even with the right keys, is held back too.
    card.reset()
    again = CardSession(card, SoftwareSam.from_file(KEYS), guard=guard)
    with pytest.raises(CardKeyAtRiskError):
        again.read_cardholder()
    assert card.apdu_count == 0
    assert again.read_personal().education  # other keys are not affected
    assert card.key_tries(0x01) == 2
    assert guard.held_back(s.card_factor) == {0x01: 2}


def test_another_card_is_not_held_back(profile: dict[str, Any]) -> None:
    guard = KeyGuard()
    first = EmulatedCard(profile, KEYS, base_dir=SAMPLES)
    guard.failed(CardSession(first).card_factor, 0x01, 2)
    profile["items"]["chip_serial"] = "9876543210"
    other = EmulatedCard(profile, KEYS, base_dir=SAMPLES)
    assert CardSession(other, SoftwareSam.from_file(KEYS), guard=guard).read_cardholder().name


def test_the_card_still_blocks_a_terminal_without_the_guard(card: EmulatedCard) -> None:
    s = CardSession(card, SoftwareSam.from_file(KEYS_3DES), guard=KeyGuard(threshold=-1))
    s.read_issuer()
    for left in (4, 3, 2, 1):
        with pytest.raises(CardAuthError) as info:
            s.read_cardholder()
        assert info.value.tries_left == left
    with pytest.raises(CardKeyBlockedError):
        s.read_cardholder()
    card.reset()
    s2 = CardSession(card, SoftwareSam.from_file(KEYS), guard=KeyGuard(threshold=-1))
    with pytest.raises(CardKeyBlockedError):
        s2.read_cardholder()
    assert s2.read_personal().education  # other keys are not affected


def test_a_blocked_key_is_remembered_without_another_apdu(card: EmulatedCard) -> None:
    for _ in range(5):
        card.transmit(bytes.fromhex("00A404000C") + b"WS.SYS.DDF01")
        card.transmit(bytes.fromhex("0084000008"))
        card.transmit(bytes.fromhex("0082000108") + bytes(8))
    assert card.key_tries(0x01) == 0
    card.reset()
    guard = KeyGuard()
    s = CardSession(card, SoftwareSam.from_file(KEYS), guard=guard)
    with pytest.raises(CardKeyBlockedError):
        s.read_cardholder()
    sent = card.apdu_count
    with pytest.raises(CardKeyAtRiskError) as info:
        s.read_cardholder()
    assert info.value.tries_left == 0
    assert "blocked" in info.value.message
    assert card.apdu_count == sent


def test_the_process_guard_spans_sessions(card: EmulatedCard) -> None:
    s = CardSession(card, SoftwareSam.from_file(KEYS_3DES))
    assert s.guard is PROCESS_GUARD
    for _ in range(3):
        with pytest.raises(CardAuthError):
            s.read_cardholder()
    card.reset()
    with pytest.raises(CardKeyAtRiskError):
        CardSession(card, SoftwareSam.from_file(KEYS)).read_cardholder()
    assert card.apdu_count == 0


def test_a_card_of_another_city_spends_no_try(profile: dict[str, Any]) -> None:
    profile["items"]["city_code"] = "320000"
    card = EmulatedCard(profile, KEYS, base_dir=SAMPLES)
    s = CardSession(card, SoftwareSam.from_file(KEYS), guard=KeyGuard())
    with pytest.raises(CardCityError) as info:
        s.read_cardholder()
    assert (info.value.card_city, info.value.sam_city) == ("320000", "21")
    assert info.value.hint
    with pytest.raises(CardCityError):
        s.verify_genuine()
    with pytest.raises(CardCityError):
        s.read_all()
    assert all(card.key_tries(ref) == 5 for ref in (0x01, 0x02, 0x03, 0x04, 0x14))


def test_internal_auth_of_a_card_with_other_keys(profile: dict[str, Any]) -> None:
    card = EmulatedCard(profile, KEYS_3DES, base_dir=SAMPLES)
    s = CardSession(card, SoftwareSam.from_file(KEYS))
    with pytest.raises(CardAuthenticityError):
        s.verify_genuine()


class ForeignCard:
    """A card that answers every SELECT by name with 6A82 (e.g. a bank card)."""

    atr = bytes.fromhex("3B6A0000") + b"0123456789"

    def transmit(self, apdu: bytes) -> bytes:
        return b"\x6a\x82"

    def close(self) -> None:
        pass


def test_foreign_card(sam: SoftwareSam) -> None:
    with pytest.raises(ForeignCardError) as info:
        CardSession(ForeignCard(), sam).read_issuer()
    assert info.value.hint


def test_allergy_ring_keeps_the_newest_three(session: CardSession) -> None:
    for n in range(3):
        session.add_allergy(Allergy(substance=f"过敏原{n}", reaction="荨麻疹"))
    allergies = session.read_clinical().allergies
    assert [a.substance for a in allergies] == ["过敏原2", "过敏原1", "过敏原0"]


def test_immunisation_append(session: CardSession, profile: dict[str, Any]) -> None:
    session.add_immunisation(Immunisation(vaccine="流感疫苗", date=dt.date(2026, 11, 20)))
    got = session.read_clinical().immunisations
    assert got[0] == Immunisation(vaccine="流感疫苗", date=dt.date(2026, 11, 20))
    assert len(got) == len(profile["immunisations"]) + 1


def test_update_item_under_secure_messaging(session: CardSession) -> None:
    session.update_item(27, "13511112222")
    assert session.read_items([27]) == {27: "13511112222"}
    assert session.read_personal().contacts[0].phone == "13511112222"


class FlippingSam(SoftwareSam):
    """A SAM whose secure-messaging APDUs arrive with one bit flipped."""

    def secure_update(self, *args: Any, **kwargs: Any) -> bytes:
        apdu = super().secure_update(*args, **kwargs)
        return apdu[:-1] + bytes([apdu[-1] ^ 0x01])


def test_bad_mac_writes_nothing(card: EmulatedCard) -> None:
    from hcmiddleware.sam.keyset import load_keyset

    s = CardSession(card, FlippingSam(load_keyset(KEYS)))
    before = s.read_items([27])
    with pytest.raises(CardMacError):
        s.update_item(27, "13511112222")
    s.forget_state()
    assert s.read_items([27]) == before


def visit(n: int, kind: fm.VisitKind = fm.VisitKind.OUTPATIENT) -> VisitRecord:
    return VisitRecord(
        kind=kind,
        visited_at=dt.datetime(2026, 11, 20, 8, 0) + dt.timedelta(days=n),
        institution_name="沈阳市第一人民医院",
        institution_code="210102000001",
        department="全科",
        doctor="周医生",
        diagnosis_code="Z00.000",
        diagnosis_name=f"健康体检{n}",
        treatment="无",
        total_fee=f"{n}.00",
        signature=bytes([n]) * 64,
        certificate=bytes([n + 1]) * 190,
    )


@pytest.mark.parametrize("kind", list(fm.VisitKind))
def test_visit_ring_keeps_slots_minus_one(session: CardSession, kind: fm.VisitKind) -> None:
    slots = len(fm.VISIT_SLOTS[kind].records)
    for n in range(slots + 3):
        session.append_visit(visit(n, kind))
    got = [v for v in session.read_visits() if v.kind == kind]
    newest = [visit(n, kind) for n in reversed(range(slots + 3))][: slots - 1]
    assert [v.model_dump(exclude={"slot"}) for v in got] == [
        v.model_dump(exclude={"slot"}) for v in newest
    ]


def test_append_visit_apdus(session: CardSession) -> None:
    session.read_visits()
    before = session.apdu_count
    session.append_visit(visit(1))
    records = fm.VISIT_SLOTS[fm.VisitKind.OUTPATIENT]
    writes = -(-records.records[0].size // 255)
    # update-key auth (2) + index (5) + SELECT + UPDATE BINARY chunks + mark valid
    assert session.apdu_count - before == 2 + records.index.records + 1 + writes + 1


def test_too_long_visit_is_refused_before_any_apdu(session: CardSession) -> None:
    v = visit(1).model_copy(update={"treatment": "很" * 200})
    with pytest.raises(CardDataError):
        session.append_visit(v)
    assert session.apdu_count == 0


def _visits(card: EmulatedCard, sam: SoftwareSam) -> list[dict[str, Any]]:
    card.reset()
    return [v.model_dump(exclude={"slot"}) for v in CardSession(card, sam).read_visits()]


@pytest.mark.parametrize("tear", [False, True], ids=["between-apdus", "mid-write"])
def test_tear_at_every_apdu_leaves_old_or_new(
    profile: dict[str, Any], sam: SoftwareSam, tear: bool
) -> None:
    """Pull the card after every N of an append to a full ring; never a mixed record."""
    profile["visits"] = [
        {
            **visit(n).model_dump(exclude={"slot"}),
            "visited_at": visit(n).visited_at.isoformat(),
            "signature": visit(n).signature.hex(),
            "certificate": visit(n).certificate.hex(),
        }
        for n in range(4)
    ]  # four of five outpatient slots used: the steady state
    new = visit(9)
    probe = EmulatedCard(profile, KEYS, base_dir=SAMPLES)
    old = _visits(probe, sam)
    probe.reset()
    total = CardSession(probe, sam)
    total.append_visit(new)
    after = _visits(probe, sam)
    new_dump = new.model_dump(exclude={"slot"})
    assert new_dump in after
    assert len(after) == len(old)
    seen = set()
    for n in range(total.apdu_count + 1):
        card = EmulatedCard(profile, KEYS, base_dir=SAMPLES)
        card.pull_after(n, tear=tear)
        if n < total.apdu_count:
            with pytest.raises(CardAbsentError):
                CardSession(card, sam).append_visit(new)
        else:
            CardSession(card, sam).append_visit(new)
        state = _visits(card, sam)
        assert state in (
            old,
            after,
            sorted([*old, new_dump], key=lambda v: v["visited_at"], reverse=True),
        ), n
        seen.add(len(state))
        # Whatever the pull left, the next append completes cleanly.
        card.reset()
        CardSession(card, sam).append_visit(visit(10))
        final = _visits(card, sam)
        assert final[0]["diagnosis_name"] == "健康体检10"
        assert len(final) == len(old)
    assert seen == {len(old), len(old) + 1}  # both the old and the old+new states occurred


def test_visits_without_signatures_save_one_apdu_each(session: CardSession) -> None:
    with_signatures = session.read_visits()
    before = session.apdu_count
    without = session.read_visits(signatures=False)
    # index reads again, then per visit SELECT + content only
    assert session.apdu_count - before == 3 + 5 + 2 * len(with_signatures)
    assert [v.model_dump(exclude={"signature", "certificate"}) for v in without] == [
        v.model_dump(exclude={"signature", "certificate"}) for v in with_signatures
    ]


class SlowLink:
    """A transport that yields to other threads on every APDU, as a real reader does."""

    def __init__(self, card: EmulatedCard) -> None:
        self.card = card
        self.atr = card.atr

    def transmit(self, apdu: bytes) -> bytes:
        time.sleep(0.0002)
        return self.card.transmit(apdu)

    def close(self) -> None:
        pass


def test_threads_share_a_session_one_operation_at_a_time(
    card: EmulatedCard, sam: SoftwareSam
) -> None:
    """Two threads alternate DFs; without serialising, one would read in the other's DF."""
    import threading

    session = CardSession(SlowLink(card), sam)
    errors: list[BaseException] = []

    def work(read: Any) -> None:
        try:
            for _ in range(30):
                read()
        except BaseException as exc:  # the assertion below reports it
            errors.append(exc)

    threads = [
        threading.Thread(target=work, args=(session.read_cardholder,)),
        threading.Thread(target=work, args=(session.read_personal,)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []

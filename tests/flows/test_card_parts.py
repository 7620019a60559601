"""The journeys read the card in parts: the short read at the counter, more when needed."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from hcmiddleware.card.emulator import EmulatedCard
from hcmiddleware.card.filemap import CardPart
from hcmiddleware.errors import CardAbsentError, CardPartNotReadError, FlowInputError
from hcmiddleware.flows.outpatient import OutpatientFlow
from hcmiddleware.sam.samples import TEST_ISSUER_KEYS
from hcmiddleware.testing import HookRecorder

from .conftest import HOSPITAL, PROFILE


@pytest.fixture
def flow(hcm_make_middleware: Any) -> OutpatientFlow:
    mw = hcm_make_middleware(
        middleware={"institution_code": HOSPITAL}, sam={"keys": str(TEST_ISSUER_KEYS)}
    )
    return OutpatientFlow(mw, actor="kiosk-01")


def test_identify_reads_identity_insurance_and_phones_only(
    flow: OutpatientFlow, card: EmulatedCard
) -> None:
    recorder = HookRecorder(flow.mw)
    who = flow.identify(card)
    assert who.card is not None
    # SELECT DDF1, card number and city, INTERNAL AUTH, GET CHALLENGE + EXTERNAL AUTH,
    # the cardholder file, the validity file (expiry, insurance types, phones) whole
    assert card.apdu_count == 1 + 2 + 1 + 2 + 1 + 1 == 8
    assert who.resident.phone == who.card.validity.phone1  # the index got the phone
    with pytest.raises(CardPartNotReadError):
        _ = who.card.visits
    event = next(
        c.kwargs["event"]
        for c in recorder.calls("hcm_audit_event")
        if c.kwargs["event"].action == "card.read"
    )
    assert event.details["parts"] == "identity,insurance,phones"


def test_later_steps_read_what_they_need_from_the_same_card(
    flow: OutpatientFlow, card: EmulatedCard
) -> None:
    who = flow.identify(card)
    full = flow.mw.terminal.read(card)
    assert flow.previous_visits(who, card) == sorted(
        full.visits, key=lambda v: v.visited_at, reverse=True
    )
    with_photo = flow.card_with(who, CardPart.PHOTO, transport=card)
    assert with_photo.photo == full.photo
    assert with_photo.parts == (CardPart.PHOTO,)


def test_a_read_that_holds_the_part_needs_no_card(flow: OutpatientFlow, card: EmulatedCard) -> None:
    who = flow.identify(card, parts="all")
    card.pull_after(0)  # any APDU now would fail
    assert len(flow.previous_visits(who, card)) == 3
    assert flow.card_with(who, CardPart.PHOTO, transport=card) is who.card


def test_another_card_in_the_reader_is_refused(
    flow: OutpatientFlow, card: EmulatedCard, profile_items: dict[str, Any]
) -> None:
    who = flow.identify(card)
    other = EmulatedCard(
        {**profile_items, "items": {**profile_items["items"], "card_number": "210000000099999999"}},
        TEST_ISSUER_KEYS,
        base_dir=PROFILE.parent,
    )
    with pytest.raises(FlowInputError, match="not the card this visit began with"):
        flow.previous_visits(who, other)
    with pytest.raises(FlowInputError, match="without a card"):
        flow.card_with(replace(who, card=None), CardPart.VISITS, transport=card)


def test_a_card_pulled_before_the_later_read(flow: OutpatientFlow, card: EmulatedCard) -> None:
    who = flow.identify(card)
    card.pull_after(0)
    with pytest.raises(CardAbsentError):
        flow.previous_visits(who, card)


@pytest.fixture
def profile_items() -> dict[str, Any]:
    import json

    data: dict[str, Any] = json.loads(PROFILE.read_text(encoding="utf-8"))
    return data

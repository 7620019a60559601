"""Compare a card read with the profile that personalised the card."""

from __future__ import annotations

import datetime as dt
from typing import Any

from card_samples import PHOTO

from hcmiddleware.card import filemap as fm
from hcmiddleware.card.data import CardRead, VisitRecord


def _date(digits: str) -> dt.date:
    return dt.datetime.strptime(digits, "%Y%m%d").date()


def check_against_profile(read: CardRead, profile: dict[str, Any]) -> None:
    """Every field read equals what the profile personalised."""
    items = profile["items"]
    for name, value in read.issuer.model_dump(exclude={"parts"}).items():
        if name == "issue_date":
            assert value == _date(items[name])
        elif name == "issuer_certificate":
            assert value == bytes.fromhex(items[name])
        else:
            assert value == items[name], name
    ch = read.cardholder
    assert (ch.name, ch.sex, ch.ethnicity, ch.id_number) == (
        items["name"],
        int(items["sex"], 16),
        items["ethnicity"],
        items["id_number"],
    )
    assert ch.birth_date == _date(items["birth_date"])
    v = read.validity
    assert v.expiry_date == _date(items["expiry_date"])
    assert (v.phone1, v.phone2) == (items["phone1"], items["phone2"])
    assert v.payment_methods == [
        items[f"payment_method{i}"] for i in (1, 2, 3) if items.get(f"payment_method{i}")
    ]
    assert read.photo == PHOTO.read_bytes()
    p = read.personal
    assert [(a.type, a.address) for a in p.addresses] == [
        (items[f"address{i}_type"], items[f"address{i}"]) for i in (1, 2)
    ]
    assert [(c.name, c.relationship, c.phone) for c in p.contacts] == [
        (items[f"contact{i}_name"], items[f"contact{i}_relationship"], items[f"contact{i}_phone"])
        for i in (1, 2, 3)
        if items.get(f"contact{i}_name")
    ]
    for name in (
        "education",
        "marital_status",
        "occupation",
        "id_document_type",
        "id_document_number",
        "health_record_number",
        "rural_insurance_number",
    ):
        assert getattr(p, name) == items[name], name
    c = read.clinical
    assert c.abo == int(items["abo"], 16)
    assert c.rh == items["rh"]
    assert c.conditions == {f: items[f] == "01" for f in fm.CONDITION_FLAGS}
    assert c.other_warning == items["other_warning"]
    assert c.psychiatric == (items["psychiatric"] != "00")
    assert [a.model_dump() for a in c.allergies] == profile["allergies"]
    assert [(i.vaccine, i.date) for i in c.immunisations] == [
        (i["vaccine"], _date(i["date"])) for i in profile["immunisations"]
    ]
    expected = sorted(
        (VisitRecord.model_validate(v) for v in profile["visits"]),
        key=lambda v: v.visited_at,
        reverse=True,
    )
    assert [v.model_dump(exclude={"slot"}) for v in read.visits] == [
        v.model_dump(exclude={"slot"}) for v in expected
    ]

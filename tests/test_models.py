"""Domain models: money is exact, slots are bounded, personal data stays out of logs."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from pydantic import ValidationError

from hcmiddleware.errors import AmountError
from hcmiddleware.models import (
    MoneyKind,
    PaymentRequest,
    RegistrationRequest,
    Resident,
    SettlementRequest,
    Sex,
    parse_amount,
)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("12.5", Decimal("12.50")),
        (3, Decimal("3.00")),
        (Decimal("0.01"), Decimal("0.01")),
        ("12.500", Decimal("12.50")),
    ],
)
def test_valid_amounts(given: object, expected: Decimal) -> None:
    assert parse_amount(given) == expected


@pytest.mark.parametrize(
    ("given", "why"),
    [
        ("12.505", "two decimals"),
        ("0", "greater than zero"),
        ("-5", "greater than zero"),
        (12.5, "float"),
        ("abc", "not a number"),
        ("NaN", "finite"),
        ("Infinity", "finite"),
        (True, "bool"),
    ],
)
def test_invalid_amounts_are_typed_errors(given: object, why: str) -> None:
    with pytest.raises(AmountError, match=why):
        parse_amount(given)


def test_payment_refuses_bad_amount_and_currency() -> None:
    with pytest.raises(AmountError):
        PaymentRequest(transaction_id="T", kind=MoneyKind.PAY, card_number="C", amount="-1")
    with pytest.raises(ValidationError):
        PaymentRequest(
            transaction_id="T", kind=MoneyKind.PAY, card_number="C", amount="1", currency="USD"
        )


def test_registration_slot_is_at_most_one_hour() -> None:
    start = datetime(2026, 3, 2, 9, 0)
    ok = RegistrationRequest(
        department_code="N", slot_start=start, slot_end=start + timedelta(hours=1), request_id="r"
    )
    assert ok.slot_end - ok.slot_start == timedelta(hours=1)
    with pytest.raises(ValidationError, match="at most one hour"):
        RegistrationRequest(
            department_code="N",
            slot_start=start,
            slot_end=start + timedelta(minutes=61),
            request_id="r",
        )
    with pytest.raises(ValidationError, match="after"):
        RegistrationRequest(department_code="N", slot_start=start, slot_end=start, request_id="r")


def test_message_id_format() -> None:
    with pytest.raises(ValidationError):
        SettlementRequest(
            message_id="short",
            scheme="basic",
            insured_id="I",
            patient_id="P",
            visit_id="V",
            charges=(),
            total="1",
        )


def test_personal_data_is_not_in_repr() -> None:
    resident = Resident(
        resident_id="r-9",
        name="赵雪",
        sex=Sex.FEMALE,
        id_number="11010519491231002X",
        phone="13800138000",
        address="北京",
    )
    text = repr(resident) + str(resident)
    for secret in ("赵雪", "11010519491231002X", "13800138000", "北京"):
        assert secret not in text
    assert "r-9" in text


def test_models_are_frozen() -> None:
    resident = Resident(resident_id="r", name="n")
    with pytest.raises(ValidationError):
        resident.name = "other"  # type: ignore[misc]

"""Constants and fault plans shared by the money tests."""

from __future__ import annotations

from typing import Any

from hcm_bank_soap.reference import MONEY_OPERATIONS as BANK_OPERATIONS
from hcm_bank_soap.reference import FaultPlan

CARD = "1100000000000001"
OTHER_CARD = "1100000000000002"
ID_NUMBER = "11010519800101003X"


def bank_plan(**rates: Any) -> FaultPlan:
    """A fault plan on the bank's money operations (and its statement)."""
    rates.setdefault("operations", BANK_OPERATIONS | {"Statement"})
    return FaultPlan(**rates)

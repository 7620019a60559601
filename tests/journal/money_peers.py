"""Constants and fault plans shared by the money tests."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hcm_bank_soap.reference import MONEY_OPERATIONS as BANK_OPERATIONS
from hcm_bank_soap.reference import FaultPlan
from hcm_insurance_soap.reference import MONEY_OPERATIONS as INSURER_OPERATIONS
from hcm_insurance_soap.reference import FaultPlan as InsurerFaultPlan

from hcmiddleware.models import Charge

CARD = "1100000000000001"
OTHER_CARD = "1100000000000002"
ID_NUMBER = "110105198001010032"


def bank_plan(**rates: Any) -> FaultPlan:
    """A fault plan on the bank's money operations (and its statement)."""
    rates.setdefault("operations", BANK_OPERATIONS | {"Statement"})
    return FaultPlan(**rates)


def charges(*amounts: str, visit: str = "V1") -> tuple[Charge, ...]:
    """A visit's charges with the given amounts."""
    return tuple(
        Charge(
            charge_id=f"{visit}-c{i}",
            patient_id="P1",
            visit_id=visit,
            item_code=f"ITEM{i}",
            item_name="item",
            quantity=Decimal(1),
            unit_price=a,
            amount=a,
        )
        for i, a in enumerate(amounts)
    )


def insurer_plan(**rates: Any) -> InsurerFaultPlan:
    """A fault plan on the insurer's money operations (and its detail statement)."""
    rates.setdefault("operations", INSURER_OPERATIONS | {"ReconcileDetail"})
    return InsurerFaultPlan(**rates)

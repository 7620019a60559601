"""What the journal hands out: :class:`Movement` snapshots and the recovery report."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from hcmiddleware.journal.states import ALLOWED, PaymentStatus

__all__ = ["Movement", "RecoveryReport", "mask_card"]


@dataclass(frozen=True)
class Movement:
    """A snapshot of one journal entry, as the flows and the CLI see it."""

    transaction_id: str
    idempotency_key: str
    channel: str
    kind: str
    state: PaymentStatus
    amount: Decimal
    currency: str
    created_at: datetime
    updated_at: datetime
    original_transaction_id: str | None = None
    remote_reference: str | None = None
    settlement_id: str | None = None
    fund_paid: Decimal | None = None
    patient_paid: Decimal | None = None
    reason: str | None = None
    attempts: int = 0
    terminal_id: str | None = None
    card_masked: str | None = field(default=None, repr=False)

    @property
    def done(self) -> bool:
        """True once the state can no longer change."""
        return not ALLOWED[self.state]

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (amounts as strings, times ISO 8601 UTC)."""
        out: dict[str, Any] = {}
        for key, value in self.__dict__.items():
            if isinstance(value, Decimal):
                out[key] = str(value)
            elif isinstance(value, datetime):
                out[key] = value.isoformat() + "Z"
            elif isinstance(value, PaymentStatus):
                out[key] = value.value
            else:
                out[key] = value
        return out


@dataclass
class RecoveryReport:
    """What :meth:`Journal.recover` did, by outcome."""

    examined: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    still_unknown: list[str] = field(default_factory=list)

    def count(self, state: PaymentStatus) -> None:
        """Count one entry that ended in ``state``."""
        self.outcomes[state.value] = self.outcomes.get(state.value, 0) + 1


def mask_card(card_number: str | None) -> str | None:
    """Keep the first 4 and last 4 characters of a card number, as receipts do."""
    if not card_number:
        return None
    if len(card_number) <= 8:
        return "*" * len(card_number)
    return card_number[:4] + "*" * (len(card_number) - 8) + card_number[-4:]

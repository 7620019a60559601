"""The journal's tables: one row per money movement, one row per state change.

Amounts are stored as ``Numeric(12, 2)`` and read back as :class:`~decimal.Decimal`;
SQLite keeps them as text-exact decimals through SQLAlchemy's Numeric type (never a
float on the Python side). Times are naive UTC (the same on SQLite and PostgreSQL).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from hcmiddleware.storage import Base

__all__ = ["JournalEntry", "JournalEvent"]

_MONEY = sa.Numeric(12, 2, asdecimal=True)


class JournalEntry(Base):
    """One money movement (bank or insurer) and the state it has reached.

    ``transaction_id`` is what the bank or insurer sees (for the insurer, the message
    ID); ``idempotency_key`` is what the caller gives, so a repeated request finds the
    entry instead of creating a second movement.
    """

    __tablename__ = "money_journal"
    __table_args__ = (
        sa.UniqueConstraint("idempotency_key", name="uq_money_journal_idempotency_key"),
    )

    seq: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    transaction_id: Mapped[str] = mapped_column(sa.String(40), unique=True, index=True)
    idempotency_key: Mapped[str] = mapped_column(sa.String(128))
    channel: Mapped[str] = mapped_column(sa.String(12))  # "bank" | "insurer"
    kind: Mapped[str] = mapped_column(sa.String(16), index=True)
    state: Mapped[str] = mapped_column(sa.String(12), index=True)
    card_number: Mapped[str | None] = mapped_column(sa.String(40))
    amount: Mapped[Decimal] = mapped_column(_MONEY)
    currency: Mapped[str] = mapped_column(sa.String(3))
    original_transaction_id: Mapped[str | None] = mapped_column(sa.String(40), index=True)
    terminal_id: Mapped[str | None] = mapped_column(sa.String(32))
    #: insurer movements: the settlement's split and the insurer's settlement ID
    settlement_id: Mapped[str | None] = mapped_column(sa.String(48))
    fund_paid: Mapped[Decimal | None] = mapped_column(_MONEY)
    patient_paid: Mapped[Decimal | None] = mapped_column(_MONEY)
    #: the request as sent (JSON, no personal data beyond what the remote side needs)
    payload: Mapped[str | None] = mapped_column(sa.Text)
    remote_reference: Mapped[str | None] = mapped_column(sa.String(64))
    reason: Mapped[str | None] = mapped_column(sa.String(200))
    attempts: Mapped[int] = mapped_column(sa.Integer)
    #: set (durably) before the first reversal is sent: from then on the entry can only
    #: end ``reversed``, whatever a later query says, because the reversal may land late
    reversal_requested: Mapped[bool] = mapped_column(sa.Boolean)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(), index=True)
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime())

    def __repr__(self) -> str:  # no card number in logs
        return (
            f"JournalEntry({self.transaction_id!r}, {self.kind}, {self.state}, "
            f"{self.amount} {self.currency})"
        )


class JournalEvent(Base):
    """An append-only history of each entry's state changes, for audit and `show`."""

    __tablename__ = "money_journal_event"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    entry_seq: Mapped[int] = mapped_column(sa.ForeignKey("money_journal.seq"), index=True)
    state: Mapped[str] = mapped_column(sa.String(12))
    note: Mapped[str | None] = mapped_column(sa.String(200))
    at: Mapped[datetime] = mapped_column(sa.DateTime())

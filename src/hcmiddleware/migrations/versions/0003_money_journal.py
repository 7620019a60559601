"""Money journal: one row per movement, one row per state change.

Revision ID: 0003_money_journal
Revises: 0002_face_templates
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_money_journal"
down_revision = "0002_face_templates"
branch_labels = None
depends_on = None

_MONEY = sa.Numeric(12, 2, asdecimal=True)


def upgrade() -> None:
    op.create_table(
        "money_journal",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("transaction_id", sa.String(40), nullable=False),
        sa.Column("idempotency_key", sa.String(128), nullable=False),
        sa.Column("channel", sa.String(12), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("card_number", sa.String(40), nullable=True),
        sa.Column("amount", _MONEY, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("original_transaction_id", sa.String(40), nullable=True),
        sa.Column("terminal_id", sa.String(32), nullable=True),
        sa.Column("settlement_id", sa.String(48), nullable=True),
        sa.Column("fund_paid", _MONEY, nullable=True),
        sa.Column("patient_paid", _MONEY, nullable=True),
        sa.Column("payload", sa.Text, nullable=True),
        sa.Column("remote_reference", sa.String(64), nullable=True),
        sa.Column("reason", sa.String(200), nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("reversal_requested", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("idempotency_key", name="uq_money_journal_idempotency_key"),
    )
    op.create_index(
        "ix_money_journal_transaction_id", "money_journal", ["transaction_id"], unique=True
    )
    op.create_index("ix_money_journal_kind", "money_journal", ["kind"])
    op.create_index("ix_money_journal_state", "money_journal", ["state"])
    op.create_index(
        "ix_money_journal_original_transaction_id", "money_journal", ["original_transaction_id"]
    )
    op.create_index("ix_money_journal_created_at", "money_journal", ["created_at"])
    op.create_table(
        "money_journal_event",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("entry_seq", sa.Integer, sa.ForeignKey("money_journal.seq"), nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("note", sa.String(200), nullable=True),
        sa.Column("at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_money_journal_event_entry_seq", "money_journal_event", ["entry_seq"])


def downgrade() -> None:
    op.drop_table("money_journal_event")
    op.drop_table("money_journal")

"""The electronic health card: used dynamic codes (replay store) and revocation lists.

Revision ID: 0007_ehc
Revises: 0006_card_lists
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_ehc"
down_revision = "0006_card_lists"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ehc_used_codes",
        sa.Column("code_digest", sa.String(64), nullable=False),
        sa.Column("terminal_id", sa.String(64), nullable=False),
        sa.Column("care_step", sa.String(32), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("used_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("code_digest", "terminal_id", "care_step"),
    )
    op.create_index("ix_ehc_used_codes_expires_at", "ehc_used_codes", ["expires_at"])
    op.create_table(
        "ehc_revocation_lists",
        sa.Column("issuer", sa.String(32), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("issued_at", sa.DateTime(), nullable=False),
        sa.Column("synced_at", sa.DateTime(), nullable=False),
        sa.Column("entries", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("issuer"),
    )
    op.create_table(
        "ehc_revoked_cards",
        sa.Column("card_digest", sa.String(64), nullable=False),
        sa.Column("issuer", sa.String(32), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=False),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("card_digest", "issuer"),
    )


def downgrade() -> None:
    op.drop_table("ehc_revoked_cards")
    op.drop_table("ehc_revocation_lists")
    op.drop_table("ehc_used_codes")

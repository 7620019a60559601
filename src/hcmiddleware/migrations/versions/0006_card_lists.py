"""Lists of refused cards: what the terminal holds of each source's list.

One row per source (its version, when it was issued and synced) and one per listed
card; a card listed by several sources has a row from each.

Revision ID: 0006_card_lists
Revises: 0005_drop_unused_resident_hashes
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_card_lists"
down_revision = "0005_drop_unused_resident_hashes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "card_list_versions",
        sa.Column("source", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("entries", sa.Integer, nullable=False),
    )
    op.create_table(
        "card_list_entries",
        sa.Column("source", sa.String(64), primary_key=True),
        sa.Column("card_number", sa.String(32), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("listed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_card_list_entries_card", "card_list_entries", ["card_number"])


def downgrade() -> None:
    op.drop_index("ix_card_list_entries_card", table_name="card_list_entries")
    op.drop_table("card_list_entries")
    op.drop_table("card_list_versions")

"""Blocking keys: one index on (key, resident) so block members come from the index alone.

Finding the members of a record's blocks read each member's table row to get its
resident id; with the resident id in the index, a block is one range scan.

Revision ID: 0004_block_members_index
Revises: 0003_money_journal
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

revision = "0004_block_members_index"
down_revision = "0003_money_journal"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_empi_blocking_keys_key_resident", "empi_blocking_keys", ["key_bidx", "resident_id"]
    )
    op.drop_index("ix_empi_blocking_keys_key_bidx", table_name="empi_blocking_keys")


def downgrade() -> None:
    op.create_index("ix_empi_blocking_keys_key_bidx", "empi_blocking_keys", ["key_bidx"])
    op.drop_index("ix_empi_blocking_keys_key_resident", table_name="empi_blocking_keys")

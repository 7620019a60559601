"""Residents: drop the name, birth-date and phone hashes no query ever read.

Exact lookups go through the identifiers' hashes and demographic matching through the
blocking keys' hashes; these three columns were written (with an index each) for every
resident and read by nothing. Without them an enrolment computes three HMACs and
updates three random-key indexes fewer.

Revision ID: 0005_drop_unused_resident_hashes
Revises: 0004_block_members_index
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_drop_unused_resident_hashes"
down_revision = "0004_block_members_index"
branch_labels = None
depends_on = None

_COLUMNS = ("name_bidx", "birth_date_bidx", "phone_bidx")


def upgrade() -> None:
    for column in _COLUMNS:
        op.drop_index(f"ix_empi_residents_{column}", table_name="empi_residents")
    for column in _COLUMNS:
        op.drop_column("empi_residents", column)


def downgrade() -> None:
    # The hashes are not recomputed: they were never read, and the downgraded schema
    # accepts NULL in them.
    for column in _COLUMNS:
        op.add_column("empi_residents", sa.Column(column, sa.LargeBinary(32), nullable=True))
        op.create_index(f"ix_empi_residents_{column}", "empi_residents", [column])

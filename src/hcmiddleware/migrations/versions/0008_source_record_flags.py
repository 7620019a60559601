"""Source records: the data-quality flags each record came with.

A record whose ID number fails its check character, disagrees with the birth date or
is missing is enrolled, its number kept unverified, and the record carries codes that
say what was wrong (``id_checksum``, ``id_missing`` …). The codes name kinds of fault,
never a value, so they are stored in clear: an export and a count by kind need no
decryption.

Revision ID: 0008_source_record_flags
Revises: 0007_ehc
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_source_record_flags"
down_revision = "0007_ehc"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "empi_source_records", sa.Column("flags", sa.Text(), nullable=False, server_default="")
    )


def downgrade() -> None:
    with op.batch_alter_table("empi_source_records") as batch:
        batch.drop_column("flags")

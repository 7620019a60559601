"""Resident index: name frequencies with the match model, and the bulk-load marker.

``empi_match_models.frequencies_ct`` holds the name frequencies the model's
term-frequency adjustment learnt from the index (names are personal data, so the table
is one ciphertext). ``empi_bulk_loads`` records each bulk initial load: while one is
``running``, other writers are refused, and a load that stopped midway is resumed from
it.

Revision ID: 0013_empi
Revises: 0012_print
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_empi"
down_revision = "0012_print"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("empi_match_models", sa.Column("frequencies_ct", sa.LargeBinary(), nullable=True))
    op.create_table(
        "empi_bulk_loads",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("rows_done", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_empi_bulk_loads_state", "empi_bulk_loads", ["state"])


def downgrade() -> None:
    op.drop_index("ix_empi_bulk_loads_state", table_name="empi_bulk_loads")
    op.drop_table("empi_bulk_loads")
    with op.batch_alter_table("empi_match_models") as batch:
        batch.drop_column("frequencies_ct")

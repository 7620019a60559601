"""Lists of refused cards: each entry records the list version that wrote it.

``card_list_entries.list_version`` is the version of the source's list whose update
put the entry there (or last changed its state). A process that holds the list in
memory at version *v* catches up with what another process applied by reading the
entries written after *v*, instead of reading the whole list again. Entries from
before this migration get 0: they are older than any version held.

The column has no default once filled, so that a writer which does not set it — an
older version of the package sharing the database — fails rather than writes entries
the other processes would not see.

Revision ID: 0015_card_list_entry_versions
Revises: 0014_access_reason
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015_card_list_entry_versions"
down_revision = "0014_access_reason"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "card_list_entries",
        sa.Column("list_version", sa.Integer(), nullable=False, server_default="0"),
    )
    with op.batch_alter_table("card_list_entries") as batch:
        batch.alter_column("list_version", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("card_list_entries") as batch:
        batch.drop_column("list_version")

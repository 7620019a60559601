"""Access: a grant is emergency access (break glass) or a reason given for one resident.

``access_grants.kind`` is ``break_glass`` for the grants made before; a reason grant
opens a role's own step-by-step categories of one resident not identified at the
terminal, for a short time (``session.open_with_reason``).

Revision ID: 0014_access_reason
Revises: 0013_empi
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_access_reason"
down_revision = "0013_empi"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("access_grants") as batch:
        batch.add_column(
            sa.Column("kind", sa.String(12), nullable=False, server_default="break_glass")
        )


def downgrade() -> None:
    with op.batch_alter_table("access_grants") as batch:
        batch.drop_column("kind")

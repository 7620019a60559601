"""Face templates, encrypted, one per resident and backend.

Revision ID: 0002_face_templates
Revises: 0001_empi
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_face_templates"
down_revision = "0001_empi"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "face_templates",
        sa.Column("resident_id", sa.String(64), primary_key=True),
        sa.Column("backend", sa.String(32), nullable=False),
        sa.Column("template", sa.LargeBinary, nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("face_templates")

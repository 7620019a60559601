"""Print log: every receipt and report printed or failed, with the document as printed.

Revision ID: 0012_print
Revises: 0010_audit
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_print"
down_revision = "0011_access"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "print_jobs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("document_id", sa.String(80), nullable=False),
        sa.Column("transaction_id", sa.String(40), nullable=True),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("medium", sa.String(8), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("printer", sa.String(64), nullable=True),
        sa.Column("reference", sa.String(255), nullable=True),
        sa.Column("error", sa.String(300), nullable=True),
        sa.Column("reprint", sa.Boolean, nullable=False),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_print_jobs_document_id", "print_jobs", ["document_id"])
    op.create_index("ix_print_jobs_transaction_id", "print_jobs", ["transaction_id"])
    op.create_index("ix_print_jobs_state", "print_jobs", ["state"])


def downgrade() -> None:
    op.drop_table("print_jobs")

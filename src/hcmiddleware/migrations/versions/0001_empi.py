"""Resident index: keys, residents, blocking keys, identifiers, records, merges, reviews.

Revision ID: 0001_empi
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_empi"
down_revision = None
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)
_ID = sa.String(32)
_BIDX = sa.LargeBinary(32)


def upgrade() -> None:
    op.create_table(
        "empi_data_keys",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("scope", sa.String(64), nullable=False),
        sa.Column("master_key_id", sa.String(64), nullable=False),
        sa.Column("wrapped", sa.LargeBinary(128), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("retired_at", _TS, nullable=True),
    )
    op.create_index("ix_empi_data_keys_scope", "empi_data_keys", ["scope"])

    op.create_table(
        "empi_residents",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("merged_into", _ID, sa.ForeignKey("empi_residents.id"), nullable=True),
        sa.Column("data_ct", sa.LargeBinary, nullable=False),
        sa.Column("name_bidx", _BIDX, nullable=True),
        sa.Column("birth_date_bidx", _BIDX, nullable=True),
        sa.Column("phone_bidx", _BIDX, nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
    )
    for column in ("name_bidx", "birth_date_bidx", "phone_bidx"):
        op.create_index(f"ix_empi_residents_{column}", "empi_residents", [column])

    op.create_table(
        "empi_blocking_keys",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("resident_id", _ID, sa.ForeignKey("empi_residents.id"), nullable=False),
        sa.Column("key_bidx", _BIDX, nullable=False),
    )
    op.create_index("ix_empi_blocking_keys_resident_id", "empi_blocking_keys", ["resident_id"])
    op.create_index("ix_empi_blocking_keys_key_bidx", "empi_blocking_keys", ["key_bidx"])

    op.create_table(
        "empi_match_models",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("pairs", sa.Integer, nullable=False),
        sa.Column("trained_at", _TS, nullable=False),
    )

    op.create_table(
        "empi_identifiers",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("resident_id", _ID, sa.ForeignKey("empi_residents.id"), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("issuer", sa.String(64), nullable=False),
        sa.Column("value_bidx", _BIDX, nullable=False),
        sa.Column("value_ct", sa.LargeBinary, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.UniqueConstraint("kind", "issuer", "value_bidx", name="uq_empi_identifiers_value"),
    )
    op.create_index("ix_empi_identifiers_resident_id", "empi_identifiers", ["resident_id"])

    op.create_table(
        "empi_source_records",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("resident_id", _ID, sa.ForeignKey("empi_residents.id"), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("record_id", sa.String(128), nullable=False),
        sa.Column("data_ct", sa.LargeBinary, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.UniqueConstraint("source", "record_id", name="uq_empi_source_records_record"),
    )
    op.create_index("ix_empi_source_records_resident_id", "empi_source_records", ["resident_id"])

    op.create_table(
        "empi_merge_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("survivor_id", _ID, sa.ForeignKey("empi_residents.id"), nullable=False),
        sa.Column("merged_id", _ID, sa.ForeignKey("empi_residents.id"), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("operator", sa.String(64), nullable=False),
        sa.Column("moved_identifiers", sa.Text, nullable=False),
        sa.Column("moved_source_records", sa.Text, nullable=False),
        sa.Column("undoes", sa.Integer, sa.ForeignKey("empi_merge_events.id"), nullable=True),
        sa.Column("at", _TS, nullable=False),
    )
    op.create_index("ix_empi_merge_events_survivor_id", "empi_merge_events", ["survivor_id"])
    op.create_index("ix_empi_merge_events_merged_id", "empi_merge_events", ["merged_id"])

    op.create_table(
        "empi_review_queue",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("resident_id", _ID, sa.ForeignKey("empi_residents.id"), nullable=False),
        sa.Column("candidate_id", _ID, sa.ForeignKey("empi_residents.id"), nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("decided_at", _TS, nullable=True),
        sa.Column("decided_by", sa.String(64), nullable=True),
    )
    op.create_index("ix_empi_review_queue_resident_id", "empi_review_queue", ["resident_id"])
    op.create_index("ix_empi_review_queue_status", "empi_review_queue", ["status"])


def downgrade() -> None:
    for table in (
        "empi_review_queue",
        "empi_merge_events",
        "empi_source_records",
        "empi_identifiers",
        "empi_match_models",
        "empi_blocking_keys",
        "empi_residents",
        "empi_data_keys",
    ):
        op.drop_table(table)

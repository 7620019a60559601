"""Ward: wristband bindings, bedside executions, alarms, last locations, rejects.

Revision ID: 0009_ward
Revises: 0008_source_record_flags
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_ward"
down_revision = "0008_source_record_flags"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ward_wristbands",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("wristband_id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("resident_id", sa.String(64), nullable=False),
        sa.Column("card_number", sa.LargeBinary, nullable=False),
        sa.Column("admission_id", sa.String(64), nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("ward", sa.String(32), nullable=False),
        sa.Column("bed", sa.String(16), nullable=False),
        sa.Column("admitted_at", sa.DateTime(), nullable=True),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("active_band", sa.String(40), nullable=True),
        sa.Column("active_stay", sa.String(64), nullable=True),
        sa.Column("bound_at", sa.DateTime(), nullable=False),
        sa.Column("bound_by", sa.String(40), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.Column("ended_reason", sa.String(40), nullable=True),
        sa.Column("replaced_by", sa.String(40), nullable=True),
        sa.UniqueConstraint("active_band"),
        sa.UniqueConstraint("active_stay"),
    )
    op.create_index("ix_ward_wristbands_wristband_id", "ward_wristbands", ["wristband_id"])
    op.create_index("ix_ward_wristbands_resident_id", "ward_wristbands", ["resident_id"])
    op.create_index("ix_ward_wristbands_admission_id", "ward_wristbands", ["admission_id"])
    op.create_table(
        "ward_executions",
        sa.Column("execution_id", sa.String(36), primary_key=True),
        sa.Column("live_key", sa.String(128), nullable=True),
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("scheduled_at", sa.DateTime(), nullable=True),
        sa.Column("admission_id", sa.String(64), nullable=False),
        sa.Column("wristband_id", sa.String(40), nullable=False),
        sa.Column("nurse_id", sa.String(40), nullable=False),
        sa.Column("second_nurse_id", sa.String(40), nullable=True),
        sa.Column("order_type", sa.String(12), nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=True),
        sa.Column("drug_code", sa.String(40), nullable=True),
        sa.Column("dose", sa.String(40), nullable=True),
        sa.Column("route", sa.String(20), nullable=True),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("checks", sa.Text, nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("executed_at", sa.DateTime(), nullable=True),
        sa.Column("his_state", sa.String(10), nullable=False),
        sa.Column("his_error", sa.String(200), nullable=True),
        sa.UniqueConstraint("live_key"),
    )
    op.create_index("ix_ward_executions_order_id", "ward_executions", ["order_id"])
    op.create_index("ix_ward_executions_admission_id", "ward_executions", ["admission_id"])
    op.create_index("ix_ward_executions_his_state", "ward_executions", ["his_state"])
    op.create_table(
        "ward_alarms",
        sa.Column("alarm_id", sa.String(36), primary_key=True),
        sa.Column("wristband_id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(12), nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("open_key", sa.String(60), nullable=True),
        sa.Column("raised_at", sa.DateTime(), nullable=False),
        sa.Column("last_at", sa.DateTime(), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("level", sa.Integer, nullable=False),
        sa.Column("escalated_at", sa.DateTime(), nullable=True),
        sa.Column("location", sa.String(80), nullable=True),
        sa.Column("admission_id", sa.String(64), nullable=True),
        sa.Column("ward", sa.String(32), nullable=True),
        sa.Column("bed", sa.String(16), nullable=True),
        sa.Column("bound", sa.Boolean, nullable=False),
        sa.Column("acknowledged_by", sa.String(40), nullable=True),
        sa.Column("acknowledged_at", sa.DateTime(), nullable=True),
        sa.UniqueConstraint("open_key"),
    )
    op.create_index("ix_ward_alarms_wristband_id", "ward_alarms", ["wristband_id"])
    op.create_index("ix_ward_alarms_state", "ward_alarms", ["state"])
    op.create_index("ix_ward_alarms_received_at", "ward_alarms", ["received_at"])
    op.create_table(
        "ward_alarm_events",
        sa.Column("wristband_id", sa.String(40), primary_key=True),
        sa.Column("event_id", sa.String(64), primary_key=True),
        sa.Column("alarm_id", sa.String(36), sa.ForeignKey("ward_alarms.alarm_id"), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_ward_alarm_events_alarm_id", "ward_alarm_events", ["alarm_id"])
    op.create_table(
        "ward_locations",
        sa.Column("wristband_id", sa.String(40), primary_key=True),
        sa.Column("location", sa.String(80), nullable=False),
        sa.Column("seen_at", sa.DateTime(), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "ward_rejects",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("source", sa.String(120), nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_ward_rejects_received_at", "ward_rejects", ["received_at"])


def downgrade() -> None:
    op.drop_table("ward_rejects")
    op.drop_table("ward_locations")
    op.drop_table("ward_alarm_events")
    op.drop_table("ward_alarms")
    op.drop_table("ward_executions")
    op.drop_table("ward_wristbands")

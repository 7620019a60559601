"""The ward's tables: wristband bindings, executions, alarms, last locations, rejects.

Times are naive UTC, as in the journal. Uniqueness that only holds while something is
live (one active band per stay, one live execution per order occurrence, one open
alarm per band and kind) is a nullable unique column set while it holds and cleared
after: NULLs never collide, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from hcmiddleware.storage import Base

__all__ = [
    "AlarmEventRow",
    "AlarmRow",
    "ExecutionRow",
    "LocationRow",
    "RejectRow",
    "WristbandRow",
]


class WristbandRow(Base):
    """One binding of a band to a stay; a band bound again later gets a new row."""

    __tablename__ = "ward_wristbands"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    wristband_id: Mapped[str] = mapped_column(sa.String(40), index=True)
    kind: Mapped[str] = mapped_column(sa.String(8))
    resident_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    #: the health card number, encrypted with the resident index's keys
    card_number: Mapped[bytes] = mapped_column(sa.LargeBinary)
    admission_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    patient_id: Mapped[str] = mapped_column(sa.String(64))
    ward: Mapped[str] = mapped_column(sa.String(32))
    bed: Mapped[str] = mapped_column(sa.String(16))
    admitted_at: Mapped[datetime | None] = mapped_column(sa.DateTime())
    status: Mapped[str] = mapped_column(sa.String(10))
    #: the band ID while the binding is active, else NULL: one active binding per band
    active_band: Mapped[str | None] = mapped_column(sa.String(40), unique=True)
    #: the admission ID while active, else NULL: one active band per stay
    active_stay: Mapped[str | None] = mapped_column(sa.String(64), unique=True)
    bound_at: Mapped[datetime] = mapped_column(sa.DateTime())
    bound_by: Mapped[str] = mapped_column(sa.String(40))
    ended_at: Mapped[datetime | None] = mapped_column(sa.DateTime())
    ended_reason: Mapped[str | None] = mapped_column(sa.String(40))
    replaced_by: Mapped[str | None] = mapped_column(sa.String(40))


class ExecutionRow(Base):
    """One bedside execution of an order occurrence, through the three checks."""

    __tablename__ = "ward_executions"

    execution_id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    #: order ID and scheduled time while not abandoned: an occurrence is executed once
    live_key: Mapped[str | None] = mapped_column(sa.String(128), unique=True)
    order_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    scheduled_at: Mapped[datetime | None] = mapped_column(sa.DateTime())
    admission_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    wristband_id: Mapped[str] = mapped_column(sa.String(40))
    nurse_id: Mapped[str] = mapped_column(sa.String(40))
    second_nurse_id: Mapped[str | None] = mapped_column(sa.String(40))
    order_type: Mapped[str] = mapped_column(sa.String(12))
    patient_id: Mapped[str | None] = mapped_column(sa.String(64))
    #: what was given, as the label was scanned at the check before (drug orders)
    drug_code: Mapped[str | None] = mapped_column(sa.String(40))
    dose: Mapped[str | None] = mapped_column(sa.String(40))
    route: Mapped[str | None] = mapped_column(sa.String(20))
    #: the next check due (before, during, after), done, or abandoned
    state: Mapped[str] = mapped_column(sa.String(10))
    #: JSON: each verification and check passed so far
    checks: Mapped[str] = mapped_column(sa.Text)
    started_at: Mapped[datetime] = mapped_column(sa.DateTime())
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime())
    executed_at: Mapped[datetime | None] = mapped_column(sa.DateTime())
    #: the HIS upload: pending, recorded or failed (retried by Ward.resend)
    his_state: Mapped[str] = mapped_column(sa.String(10), index=True)
    his_error: Mapped[str | None] = mapped_column(sa.String(200))


class AlarmRow(Base):
    """An alarm at the nurse station."""

    __tablename__ = "ward_alarms"

    alarm_id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    wristband_id: Mapped[str] = mapped_column(sa.String(40), index=True)
    kind: Mapped[str] = mapped_column(sa.String(12))
    state: Mapped[str] = mapped_column(sa.String(12), index=True)
    #: band and kind while not acknowledged: later events fold into the open alarm
    open_key: Mapped[str | None] = mapped_column(sa.String(60), unique=True)
    raised_at: Mapped[datetime] = mapped_column(sa.DateTime())
    last_at: Mapped[datetime] = mapped_column(sa.DateTime())
    received_at: Mapped[datetime] = mapped_column(sa.DateTime(), index=True)
    count: Mapped[int] = mapped_column(sa.Integer)
    level: Mapped[int] = mapped_column(sa.Integer)
    escalated_at: Mapped[datetime | None] = mapped_column(sa.DateTime())
    location: Mapped[str | None] = mapped_column(sa.String(80))
    admission_id: Mapped[str | None] = mapped_column(sa.String(64))
    ward: Mapped[str | None] = mapped_column(sa.String(32))
    bed: Mapped[str | None] = mapped_column(sa.String(16))
    bound: Mapped[bool] = mapped_column(sa.Boolean)
    acknowledged_by: Mapped[str | None] = mapped_column(sa.String(40))
    acknowledged_at: Mapped[datetime | None] = mapped_column(sa.DateTime())


class AlarmEventRow(Base):
    """Each device event an alarm was made of: a redelivered event is taken once."""

    __tablename__ = "ward_alarm_events"

    wristband_id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    event_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    alarm_id: Mapped[str] = mapped_column(sa.ForeignKey("ward_alarms.alarm_id"), index=True)
    at: Mapped[datetime] = mapped_column(sa.DateTime())
    received_at: Mapped[datetime] = mapped_column(sa.DateTime())


class LocationRow(Base):
    """The last known location of each band."""

    __tablename__ = "ward_locations"

    wristband_id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    location: Mapped[str] = mapped_column(sa.String(80))
    seen_at: Mapped[datetime] = mapped_column(sa.DateTime())
    received_at: Mapped[datetime] = mapped_column(sa.DateTime())


class RejectRow(Base):
    """A device message that could not be read, kept for the operator (never dropped)."""

    __tablename__ = "ward_rejects"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    received_at: Mapped[datetime] = mapped_column(sa.DateTime(), index=True)
    source: Mapped[str] = mapped_column(sa.String(120))
    reason: Mapped[str] = mapped_column(sa.String(200))
    payload: Mapped[bytes] = mapped_column(sa.LargeBinary)

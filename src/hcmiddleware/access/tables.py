"""Access's tables: break-glass grants and identifications at a terminal.

Times are naive UTC, as in the journal and the audit log. Neither table holds personal
data: residents by the index's opaque ID, users and terminals by their IDs.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from hcmiddleware.storage import Base

__all__ = ["GrantRow", "IdentificationRow"]


class GrantRow(Base):
    """Emergency access ("break glass"), or a reason given for one resident: more
    categories for a while, with a reason."""

    __tablename__ = "access_grants"

    grant_id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    #: break_glass, or reason (``session.open_with_reason``)
    kind: Mapped[str] = mapped_column(
        sa.String(12), default="break_glass", server_default="break_glass"
    )
    user_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    role: Mapped[str] = mapped_column(sa.String(32))
    terminal: Mapped[str] = mapped_column(sa.String(64))
    #: comma-separated categories opened
    categories: Mapped[str] = mapped_column(sa.String(200))
    #: the one resident it is for, or NULL for any
    resident_id: Mapped[str | None] = mapped_column(sa.String(64))
    reason: Mapped[str] = mapped_column(sa.String(200))
    opened_at: Mapped[datetime] = mapped_column(sa.DateTime())
    expires_at: Mapped[datetime] = mapped_column(sa.DateTime(), index=True)
    reviewed_at: Mapped[datetime | None] = mapped_column(sa.DateTime())
    reviewed_by: Mapped[str | None] = mapped_column(sa.String(64))


class IdentificationRow(Base):
    """A resident identified at a terminal (card, e-card, face), until the visit ends."""

    __tablename__ = "access_identifications"
    __table_args__ = (sa.Index("ix_access_identifications_who", "resident_id", "terminal"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    resident_id: Mapped[str] = mapped_column(sa.String(64))
    terminal: Mapped[str] = mapped_column(sa.String(64))
    #: card, ecard or face
    method: Mapped[str] = mapped_column(sa.String(8))
    user_id: Mapped[str] = mapped_column(sa.String(64))
    at: Mapped[datetime] = mapped_column(sa.DateTime())
    #: set when the visit ended at this terminal
    ended_at: Mapped[datetime | None] = mapped_column(sa.DateTime())

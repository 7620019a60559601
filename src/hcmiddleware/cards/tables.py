"""The tables of the lists of refused cards (migrations ``0006_card_lists``,
``0015_card_list_entry_versions``)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from hcmiddleware.storage import Base

__all__ = ["CardListEntry", "CardListVersion"]

_WHEN = sa.DateTime(timezone=True)


class CardListVersion(Base):
    """What the terminal holds of one source's list."""

    __tablename__ = "card_list_versions"

    source: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    version: Mapped[int] = mapped_column(sa.Integer)
    issued_at: Mapped[datetime] = mapped_column(_WHEN)
    synced_at: Mapped[datetime] = mapped_column(_WHEN)
    entries: Mapped[int] = mapped_column(sa.Integer)


class CardListEntry(Base):
    """One card on one source's list, with its state and when it was listed."""

    __tablename__ = "card_list_entries"
    __table_args__ = (sa.Index("ix_card_list_entries_card", "card_number"),)

    source: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    card_number: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    state: Mapped[str] = mapped_column(sa.String(16))
    listed_at: Mapped[datetime] = mapped_column(_WHEN)
    #: the version of the source's list that wrote the entry (0: before it was recorded)
    list_version: Mapped[int] = mapped_column(sa.Integer)

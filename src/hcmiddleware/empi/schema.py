"""Tables of the resident index. Personal data lives only in ``*_ct`` and ``*_bidx`` columns.

``*_ct`` columns hold AES-256-GCM ciphertexts (see :mod:`hcmiddleware.empi.protection`),
each bound to its table, column and row so that it cannot be copied to another row.
``*_bidx`` columns hold HMAC-SHA256 blind indexes of normalised values, for exact lookups
and blocking. Nothing else here is personal: row ids are random, ``record_id`` is the
source system's own key, and the merge history names residents by id only.

The tables are created by the Alembic migrations in ``hcmiddleware/migrations``
(:func:`hcmiddleware.storage.upgrade`), never by ``create_all``; a test compares the
two so they cannot drift.
"""

from __future__ import annotations

import datetime as dt
import enum
import os

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from hcmiddleware.models import IdentifierKind, ResidentStatus
from hcmiddleware.storage import Base

__all__ = [
    "BlockingKeyRow",
    "BulkLoadRow",
    "DataKeyRow",
    "IdentifierKind",
    "IdentifierRow",
    "MatchModelRow",
    "MergeEventRow",
    "ResidentRow",
    "ResidentStatus",
    "ReviewRow",
    "ReviewStatus",
    "SourceRecordRow",
    "new_id",
    "utcnow",
]


class Blob(sa.TypeDecorator[bytes]):
    """Binary column whose values go to the driver as the ``bytes`` they are.

    ``LargeBinary`` wraps every value in the driver's ``Binary`` (a memoryview on
    sqlite3) on the way in; sqlite3 and psycopg both take ``bytes`` as they are, and a
    bulk import binds twenty of these per resident. The column's DDL is unchanged.
    """

    impl = sa.LargeBinary
    cache_ok = True

    def bind_processor(self, dialect: sa.Dialect) -> None:
        return None


_BIDX = Blob(32)
_ID = sa.String(32)


def new_id() -> str:
    """A random row id, 128 random bits as 32 hex digits (the width of a UUID's hex).

    Reveals neither order nor count of enrolments. ``os.urandom`` directly: a bulk
    import makes four of these per resident, and ``uuid.uuid4`` costs several times
    as much for the same randomness.
    """
    return os.urandom(16).hex()


def utcnow() -> dt.datetime:
    """Now, timezone-aware UTC (stored as such on PostgreSQL, as naive UTC on SQLite)."""
    return dt.datetime.now(dt.UTC)


class ReviewStatus(enum.StrEnum):
    """Where a suspected duplicate stands in the review queue."""

    OPEN = "open"
    MERGED = "merged"
    DISTINCT = "distinct"


class DataKeyRow(Base):
    """A data-encryption key, stored only wrapped by a master key named by ``master_key_id``."""

    __tablename__ = "empi_data_keys"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    scope: Mapped[str] = mapped_column(sa.String(64), index=True)
    master_key_id: Mapped[str] = mapped_column(sa.String(64))
    wrapped: Mapped[bytes] = mapped_column(Blob(128))
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
    retired_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))


class ResidentRow(Base):
    """One person. Demographics are one ciphertext; lookups and blocking go through the
    identifiers' and blocking keys' blind indexes."""

    __tablename__ = "empi_residents"

    id: Mapped[str] = mapped_column(_ID, primary_key=True, default=new_id)
    status: Mapped[str] = mapped_column(sa.String(16), default=ResidentStatus.ACTIVE)
    merged_into: Mapped[str | None] = mapped_column(_ID, sa.ForeignKey("empi_residents.id"))
    data_ct: Mapped[bytes] = mapped_column(Blob)
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(
        sa.DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class BlockingKeyRow(Base):
    """A keyed hash of one blocking key of a resident (sound of the name, birth date ...)."""

    __tablename__ = "empi_blocking_keys"
    # A block's members are read from this index alone (no table row per member).
    __table_args__ = (sa.Index("ix_empi_blocking_keys_key_resident", "key_bidx", "resident_id"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    resident_id: Mapped[str] = mapped_column(_ID, sa.ForeignKey("empi_residents.id"), index=True)
    key_bidx: Mapped[bytes] = mapped_column(_BIDX)


class MatchModelRow(Base):
    """Trained Fellegi–Sunter parameters (no personal data); the newest row is used."""

    __tablename__ = "empi_match_models"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    params: Mapped[str] = mapped_column(sa.Text)
    pairs: Mapped[int] = mapped_column(sa.Integer)
    trained_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
    # The term frequencies of the adjustment, a JSON object by field (name, birth date,
    # phone, address: personal, so one ciphertext; revision 0014).
    frequencies_ct: Mapped[bytes | None] = mapped_column(Blob)


class BulkLoadRow(Base):
    """A bulk initial load: ``running`` until it ends; other writers wait for it."""

    __tablename__ = "empi_bulk_loads"

    id: Mapped[str] = mapped_column(_ID, primary_key=True, default=new_id)
    source: Mapped[str] = mapped_column(sa.String(64))
    state: Mapped[str] = mapped_column(sa.String(16), index=True)  # running | done
    rows_done: Mapped[int] = mapped_column(sa.Integer, default=0)
    started_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))


class IdentifierRow(Base):
    """An identifier of a resident; ``issuer`` is the hospital or index that assigned it."""

    __tablename__ = "empi_identifiers"
    __table_args__ = (
        sa.UniqueConstraint("kind", "issuer", "value_bidx", name="uq_empi_identifiers_value"),
    )

    id: Mapped[str] = mapped_column(_ID, primary_key=True, default=new_id)
    resident_id: Mapped[str] = mapped_column(_ID, sa.ForeignKey("empi_residents.id"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(32))
    issuer: Mapped[str] = mapped_column(sa.String(64), default="")
    value_bidx: Mapped[bytes] = mapped_column(_BIDX)
    value_ct: Mapped[bytes] = mapped_column(Blob)
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)


class SourceRecordRow(Base):
    """A record of a source system (HIS, card read, import file) linked to a resident,
    with the data-quality flags it came with."""

    __tablename__ = "empi_source_records"
    __table_args__ = (
        sa.UniqueConstraint("source", "record_id", name="uq_empi_source_records_record"),
    )

    id: Mapped[str] = mapped_column(_ID, primary_key=True, default=new_id)
    resident_id: Mapped[str] = mapped_column(_ID, sa.ForeignKey("empi_residents.id"), index=True)
    source: Mapped[str] = mapped_column(sa.String(64))
    record_id: Mapped[str] = mapped_column(sa.String(128))
    data_ct: Mapped[bytes] = mapped_column(Blob)
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
    # Data-quality codes of the record, space-separated (``id_checksum phone_invalid``):
    # kinds of fault, never a value, so in clear (revision 0010).
    flags: Mapped[str] = mapped_column(sa.Text, default="", server_default="")


class MergeEventRow(Base):
    """One merge or unmerge, with exactly what moved, so an unmerge can put it back."""

    __tablename__ = "empi_merge_events"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    action: Mapped[str] = mapped_column(sa.String(16))  # "merge" | "unmerge"
    survivor_id: Mapped[str] = mapped_column(_ID, sa.ForeignKey("empi_residents.id"), index=True)
    merged_id: Mapped[str] = mapped_column(_ID, sa.ForeignKey("empi_residents.id"), index=True)
    reason: Mapped[str] = mapped_column(sa.Text)
    operator: Mapped[str] = mapped_column(sa.String(64))
    moved_identifiers: Mapped[str] = mapped_column(sa.Text, default="[]")
    moved_source_records: Mapped[str] = mapped_column(sa.Text, default="[]")
    undoes: Mapped[int | None] = mapped_column(sa.ForeignKey("empi_merge_events.id"))
    at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)


class ReviewRow(Base):
    """A suspected duplicate pair waiting for a person to decide."""

    __tablename__ = "empi_review_queue"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    resident_id: Mapped[str] = mapped_column(_ID, sa.ForeignKey("empi_residents.id"), index=True)
    candidate_id: Mapped[str] = mapped_column(_ID, sa.ForeignKey("empi_residents.id"))
    score: Mapped[float] = mapped_column(sa.Float)
    reason: Mapped[str] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.String(16), default=ReviewStatus.OPEN, index=True)
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
    decided_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))
    decided_by: Mapped[str | None] = mapped_column(sa.String(64))

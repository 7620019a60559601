"""The audit log's tables: the chain, its head, and its checkpoints.

Times are naive UTC (the same text on SQLite and PostgreSQL), hashes raw bytes (32 for
SHA-256 and SM3 alike). ``user_id`` because ``user`` is a reserved word in PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from hcmiddleware.storage import Base

__all__ = ["HEAD_ID", "AuditCheckpointRow", "AuditHeadRow", "AuditLogRow"]

#: the one row of ``audit_head``
HEAD_ID = 1


class AuditLogRow(Base):
    """One entry of the chain: ``hash`` = H(``prev_hash`` ‖ canonical(entry)).

    ``seq`` is given by the writer (the head's next number), never by the database, so
    the chain has no gaps unless a row was removed.
    """

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(sa.DateTime(), index=True)
    action: Mapped[str] = mapped_column(sa.String(64), index=True)
    actor: Mapped[str] = mapped_column(sa.String(64))
    subject: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    outcome: Mapped[str] = mapped_column(sa.String(8))
    user_id: Mapped[str | None] = mapped_column(sa.String(64))
    role: Mapped[str | None] = mapped_column(sa.String(32))
    terminal: Mapped[str | None] = mapped_column(sa.String(64))
    #: canonical JSON (sorted keys, no spaces): hashed exactly as stored
    details: Mapped[str] = mapped_column(sa.Text)
    prev_hash: Mapped[bytes] = mapped_column(sa.LargeBinary(32))
    hash: Mapped[bytes] = mapped_column(sa.LargeBinary(32))


class AuditHeadRow(Base):
    """The chain's head: the last entry's number and hash, and the chain's hash function.

    Every append locks this row (PostgreSQL ``FOR UPDATE`` through an ``UPDATE``; on
    SQLite the write transaction holds the database lock), so appends are serialised
    across threads and processes. A table whose last entries are gone while the head
    still counts them has been truncated.
    """

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(sa.BigInteger)
    hash: Mapped[bytes | None] = mapped_column(sa.LargeBinary(32))
    #: set by the first entry; the chain keeps it for good
    algorithm: Mapped[str | None] = mapped_column(sa.String(8))
    checkpoint_seq: Mapped[int] = mapped_column(sa.BigInteger)
    checkpoint_at: Mapped[datetime | None] = mapped_column(sa.DateTime())


class AuditCheckpointRow(Base):
    """A checkpoint: entry ``seq`` had ``hash``; signed by ``key_id`` (or unsigned)."""

    __tablename__ = "audit_checkpoints"

    seq: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(sa.LargeBinary(32))
    algorithm: Mapped[str] = mapped_column(sa.String(8))
    at: Mapped[datetime] = mapped_column(sa.DateTime())
    terminal: Mapped[str] = mapped_column(sa.String(64))
    key_id: Mapped[str | None] = mapped_column(sa.String(16))
    signature: Mapped[bytes | None] = mapped_column(sa.LargeBinary(64))

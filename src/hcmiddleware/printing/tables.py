"""The print log: one row per attempt to print a document, printed or failed.

A row keeps the document as it was printed (JSON), so a reprint gives the same paper
— the payment list's items, the settlement's split — marked as a copy. It holds what
the paper holds and nothing more: no names, ID numbers or full card numbers.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from hcmiddleware.storage import Base

__all__ = ["PrintJobRow"]


class PrintJobRow(Base):
    """One attempt to print a document (times naive UTC, as in the journal)."""

    __tablename__ = "print_jobs"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    document_id: Mapped[str] = mapped_column(sa.String(80), index=True)
    #: the journal movement the document is the receipt of, if any
    transaction_id: Mapped[str | None] = mapped_column(sa.String(40), index=True)
    kind: Mapped[str] = mapped_column(sa.String(24))
    medium: Mapped[str] = mapped_column(sa.String(8))
    #: "printed" or "failed"
    state: Mapped[str] = mapped_column(sa.String(8), index=True)
    printer: Mapped[str | None] = mapped_column(sa.String(64))
    reference: Mapped[str | None] = mapped_column(sa.String(255))
    error: Mapped[str | None] = mapped_column(sa.String(300))
    reprint: Mapped[bool] = mapped_column(sa.Boolean)
    document: Mapped[str] = mapped_column(sa.Text)
    at: Mapped[datetime] = mapped_column(sa.DateTime())

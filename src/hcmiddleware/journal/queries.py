"""Reading the journal: one entry, entries by filter, an entry's history, what is left to refund."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa

from hcmiddleware.journal.records import Movement
from hcmiddleware.journal.rows import _ENTRY, _EVENT, EntryStore
from hcmiddleware.journal.states import PaymentStatus

__all__ = ["Queries"]

P = PaymentStatus


class Queries(EntryStore):
    """The journal's read side."""

    def get(self, transaction_id: str) -> Movement:
        """The entry with ``transaction_id``; UnknownTransactionError if none."""
        return self._movement(self._by_tid(transaction_id))

    def by_key(self, key: str) -> Movement | None:
        """The entry made for idempotency key ``key``, if any."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(_ENTRY).where(_ENTRY.c.idempotency_key == key)).first()
        return None if row is None else self._movement(row)

    def entries(
        self,
        *,
        state: PaymentStatus | str | None = None,
        day: date | None = None,
        channel: str | None = None,
        limit: int | None = None,
    ) -> list[Movement]:
        """Entries, oldest first, filtered by state, UTC day of creation and channel."""
        query = sa.select(_ENTRY).order_by(_ENTRY.c.seq)
        if state is not None:
            query = query.where(_ENTRY.c.state == P(state).value)
        if channel is not None:
            query = query.where(_ENTRY.c.channel == channel)
        if day is not None:
            start = datetime(day.year, day.month, day.day)
            query = query.where(
                _ENTRY.c.created_at >= start, _ENTRY.c.created_at < start + timedelta(days=1)
            )
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [self._movement(r) for r in conn.execute(query)]

    def history(self, transaction_id: str) -> list[tuple[datetime, str, str | None]]:
        """Every state the entry went through: ``(at, state, note)``."""
        row = self._by_tid(transaction_id)
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(_EVENT.c.at, _EVENT.c.state, _EVENT.c.note)
                .where(_EVENT.c.entry_seq == row.seq)
                .order_by(_EVENT.c.id)
            ).all()
        return [(r.at, r.state, r.note) for r in rows]

    def refundable(self, transaction_id: str) -> Decimal:
        """What is left to refund of a confirmed payment (in-flight refunds count)."""
        with self.engine.connect() as conn:
            original = self._payment_for_refund(conn, transaction_id, None)
            return Decimal(original.amount) - self._refunded(conn, transaction_id)

    def iter_in_flight(self) -> Iterator[Movement]:
        """Entries not yet settled (pending, sent, unknown), oldest first."""
        for state in (P.PENDING, P.SENT, P.UNKNOWN):
            yield from self.entries(state=state)

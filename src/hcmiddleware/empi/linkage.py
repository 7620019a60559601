"""The linkage as it stands: which resident each source record belongs to.

One row per source record — ``record_id``, ``source``, ``resident_id``, ``status``,
``flags`` — to check an import and to hand the result back to the system the records
came from. No personal data is in it (nothing is decrypted): the records' own keys,
the index's resident ids, and the data-quality codes.
"""

from __future__ import annotations

from collections.abc import Iterator

import sqlalchemy as sa

from hcmiddleware.empi.core import IndexCore
from hcmiddleware.empi.records import LinkageRow
from hcmiddleware.empi.schema import ReviewStatus
from hcmiddleware.empi.store import REVIEWS, SOURCES

__all__ = ["Linkage"]

# Records per resident, and the residents with an open review item on either side.
_PER_RESIDENT = (
    sa.select(SOURCES.c.resident_id, sa.func.count().label("records"))
    .group_by(SOURCES.c.resident_id)
    .subquery("per_resident")
)
_IN_REVIEW = sa.union(
    sa.select(REVIEWS.c.resident_id.label("resident_id")).where(
        REVIEWS.c.status == ReviewStatus.OPEN.value
    ),
    sa.select(REVIEWS.c.candidate_id.label("resident_id")).where(
        REVIEWS.c.status == ReviewStatus.OPEN.value
    ),
).subquery("in_review")
_LINKAGE = (
    sa.select(
        SOURCES.c.record_id,
        SOURCES.c.source,
        SOURCES.c.resident_id,
        SOURCES.c.flags,
        _PER_RESIDENT.c.records,
        _IN_REVIEW.c.resident_id.label("in_review"),
    )
    .join(_PER_RESIDENT, _PER_RESIDENT.c.resident_id == SOURCES.c.resident_id)
    .outerjoin(_IN_REVIEW, _IN_REVIEW.c.resident_id == SOURCES.c.resident_id)
    .order_by(SOURCES.c.source, SOURCES.c.record_id)
)


class Linkage(IndexCore):
    """Exporting which resident every source record is linked to."""

    def linkage(self, *, source: str | None = None) -> Iterator[LinkageRow]:
        """Every source record (of ``source``, or all) with its resident, by source and id.

        ``status`` is ``review`` when the resident has an open review item (it may be
        the same person as another resident: not settled yet), else ``linked`` when
        other records share the resident, else ``single``. A merged record is shown
        under its survivor. Streams: a million records are not held in memory.
        """
        query = _LINKAGE if source is None else _LINKAGE.where(SOURCES.c.source == source)
        with self._engine.connect() as conn:
            rows = conn.execution_options(stream_results=True, yield_per=5000).execute(query)
            for record_id, src, resident_id, flags, records, in_review in rows:
                yield LinkageRow(
                    record_id=record_id,
                    source=src,
                    resident_id=resident_id,
                    status="review" if in_review else "linked" if records > 1 else "single",
                    flags=tuple(flags.split()),
                )

"""The review queue: suspected duplicates waiting for an operator's decision."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from hcmiddleware import storage
from hcmiddleware.empi.merges import Merging
from hcmiddleware.empi.records import ReviewItem
from hcmiddleware.empi.schema import ReviewStatus
from hcmiddleware.empi.store import REVIEWS, aware, now_for
from hcmiddleware.errors import MergeError, ResidentIndexError

__all__ = ["ReviewQueue"]


class ReviewQueue(Merging):
    """Listing and deciding review items; a "same person" decision merges."""

    def reviews(self, status: ReviewStatus = ReviewStatus.OPEN) -> list[ReviewItem]:
        """Review-queue items with this status, oldest first."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.select(REVIEWS).where(REVIEWS.c.status == status.value).order_by(REVIEWS.c.id)
            ).mappings()
            return [self._to_review(r) for r in rows]

    @staticmethod
    def _to_review(row: Any) -> ReviewItem:
        return ReviewItem(
            id=row["id"],
            resident_id=row["resident_id"],
            candidate_id=row["candidate_id"],
            score=row["score"],
            reason=row["reason"],
            status=ReviewStatus(row["status"]),
            created_at=aware(row["created_at"]),
            decided_at=aware(row["decided_at"]) if row["decided_at"] else None,
            decided_by=row["decided_by"],
        )

    def decide_review(self, review_id: int, *, same_person: bool, operator: str) -> ReviewItem:
        """Close a review: ``same_person`` merges the new record into the candidate."""
        with self._engine.connect() as conn:
            row = (
                conn.execute(sa.select(REVIEWS).where(REVIEWS.c.id == review_id)).mappings().first()
            )
        if row is None:
            raise ResidentIndexError(
                f"no review item {review_id}", hint="list the open reviews again"
            )
        if row["status"] != ReviewStatus.OPEN:
            raise MergeError(
                f"review item {review_id} was already decided", hint="list the open reviews again"
            )
        if same_person:
            self.merge(
                row["candidate_id"],
                row["resident_id"],
                reason=f"review {review_id}: same person",
                operator=operator,
            )
        else:
            with storage.begin_write(self._engine) as conn:
                self._refuse_during_bulk_load(conn)
                now = now_for(conn)
                conn.execute(
                    sa.update(REVIEWS)
                    .where(REVIEWS.c.id == review_id)
                    .values(status=ReviewStatus.DISTINCT.value, decided_at=now, decided_by=operator)
                )
        with self._engine.connect() as conn:
            return self._to_review(
                conn.execute(sa.select(REVIEWS).where(REVIEWS.c.id == review_id)).mappings().one()
            )

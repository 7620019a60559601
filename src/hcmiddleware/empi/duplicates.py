"""Finding residents that look like one person, for a batch clean-up of the index."""

from __future__ import annotations

import sqlalchemy as sa

from hcmiddleware.empi.matching import Decision
from hcmiddleware.empi.records import DuplicatePair
from hcmiddleware.empi.store import SOURCES
from hcmiddleware.empi.training import Training

__all__ = ["DuplicateFinding"]


class DuplicateFinding(Training):
    """Pairs of active residents the model calls the same person."""

    def duplicates(self, *, include_review: bool = True) -> list[DuplicatePair]:
        """Pairs of active residents the model calls the same person (and, by default,
        those it sends to review), best first, with their source records' ids.

        Reads and decrypts every active resident: a batch job, not a counter operation.
        """
        records = self._active_records()
        wanted = {Decision.LINK, Decision.REVIEW} if include_review else {Decision.LINK}
        found = []
        for a, b in self._pairs_within(records, max_block=self._max_block):
            score = self._model.score(records[a], records[b])
            if score.decision in wanted:
                found.append((a, b, score))
        found.sort(key=lambda item: item[2].weight, reverse=True)
        sources: dict[str, list[str]] = {}
        ids = sorted({x for a, b, _s in found for x in (a, b)})
        with self._engine.connect() as conn:
            for start in range(0, len(ids), 500):
                for rid, record_id in conn.execute(
                    sa.select(SOURCES.c.resident_id, SOURCES.c.record_id)
                    .where(SOURCES.c.resident_id.in_(ids[start : start + 500]))
                    .order_by(SOURCES.c.record_id)
                ):
                    sources.setdefault(rid, []).append(record_id)
        return [
            DuplicatePair(
                resident_a=a,
                resident_b=b,
                record_ids_a=tuple(sources.get(a, ())),
                record_ids_b=tuple(sources.get(b, ())),
                probability=score.probability,
                decision=score.decision,
                agreements=score.agreements,
            )
            for a, b, score in found
        ]

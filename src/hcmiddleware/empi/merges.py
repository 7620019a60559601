"""Merge, unmerge and the merge history of residents.

A merge moves the merged resident's identifiers and source records to the survivor and
records exactly what moved, so that an unmerge can give back that and nothing else.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hcmiddleware import storage
from hcmiddleware.empi.core import IndexCore
from hcmiddleware.empi.records import MergeEvent
from hcmiddleware.empi.schema import ResidentStatus, ReviewStatus
from hcmiddleware.empi.store import IDENTIFIERS, MERGES, RESIDENTS, REVIEWS, SOURCES, aware, now_for
from hcmiddleware.errors import MergeError

__all__ = ["Merging"]


class Merging(IndexCore):
    """Merging two records of one person, undoing it, and the history of both."""

    def merge(self, survivor: str, merged: str, *, reason: str, operator: str) -> MergeEvent:
        """Merge resident ``merged`` into ``survivor``: its identifiers and records move.

        ``merged`` stays in the database with status ``merged`` (lookups of its id lead
        to the survivor) and the event records exactly what moved, for :meth:`unmerge`.
        """
        if not reason.strip() or not operator.strip():
            raise MergeError("a merge needs a reason and the operator's name", hint="fill in both")
        with storage.begin_write(self._engine) as conn:
            self._refuse_during_bulk_load(conn)
            keep = self._codec.row(conn, survivor, follow=False)
            gone = self._codec.row(conn, merged, follow=False)
            if keep["id"] == gone["id"]:
                raise MergeError(
                    "a resident cannot be merged into itself", hint="pick two residents"
                )
            for row in (keep, gone):
                if row["status"] != ResidentStatus.ACTIVE:
                    raise MergeError(
                        f"resident {row['id']} is already merged into {row['merged_into']}",
                        hint="merge into the survivor instead",
                    )
            moved_ids = conn.scalars(
                sa.select(IDENTIFIERS.c.id).where(IDENTIFIERS.c.resident_id == merged)
            ).all()
            moved_sources = conn.scalars(
                sa.select(SOURCES.c.id).where(SOURCES.c.resident_id == merged)
            ).all()
            conn.execute(
                sa.update(IDENTIFIERS)
                .where(IDENTIFIERS.c.resident_id == merged)
                .values(resident_id=survivor)
            )
            conn.execute(
                sa.update(SOURCES)
                .where(SOURCES.c.resident_id == merged)
                .values(resident_id=survivor)
            )
            now = now_for(conn)
            conn.execute(
                sa.update(RESIDENTS)
                .where(RESIDENTS.c.id == merged)
                .values(status=ResidentStatus.MERGED.value, merged_into=survivor, updated_at=now)
            )
            conn.execute(
                sa.update(REVIEWS)
                .where(
                    REVIEWS.c.status == ReviewStatus.OPEN.value,
                    sa.or_(
                        sa.and_(
                            REVIEWS.c.resident_id == merged, REVIEWS.c.candidate_id == survivor
                        ),
                        sa.and_(
                            REVIEWS.c.resident_id == survivor, REVIEWS.c.candidate_id == merged
                        ),
                    ),
                )
                .values(status=ReviewStatus.MERGED.value, decided_at=now, decided_by=operator)
            )
            event_id = conn.execute(
                sa.insert(MERGES).values(
                    action="merge",
                    survivor_id=survivor,
                    merged_id=merged,
                    reason=reason,
                    operator=operator,
                    moved_identifiers=json.dumps(list(moved_ids)),
                    moved_source_records=json.dumps(list(moved_sources)),
                    at=now,
                )
            ).inserted_primary_key[0]  # type: ignore[index]
            return self._event(conn, int(event_id))

    def unmerge(self, merged: str, *, reason: str, operator: str) -> MergeEvent:
        """Undo the latest merge of ``merged``: it becomes active and gets back what moved.

        Identifiers the survivor gained after the merge stay with the survivor.
        """
        if not reason.strip() or not operator.strip():
            raise MergeError(
                "an unmerge needs a reason and the operator's name", hint="fill in both"
            )
        with storage.begin_write(self._engine) as conn:
            self._refuse_during_bulk_load(conn)
            gone = self._codec.row(conn, merged, follow=False)
            if gone["status"] != ResidentStatus.MERGED:
                raise MergeError(f"resident {merged} is not merged", hint="nothing to undo")
            undone = sa.select(MERGES.c.undoes).where(MERGES.c.undoes.is_not(None))
            event = (
                conn.execute(
                    sa.select(MERGES)
                    .where(
                        MERGES.c.action == "merge",
                        MERGES.c.merged_id == merged,
                        MERGES.c.id.not_in(undone),
                    )
                    .order_by(MERGES.c.id.desc())
                )
                .mappings()
                .first()
            )
            if event is None:
                raise MergeError(
                    f"no merge of resident {merged} is on record",
                    hint="the history is incomplete; ask the index administrator",
                )
            survivor = event["survivor_id"]
            idents = json.loads(event["moved_identifiers"])
            sources = json.loads(event["moved_source_records"])
            if idents:
                conn.execute(
                    sa.update(IDENTIFIERS)
                    .where(IDENTIFIERS.c.id.in_(idents), IDENTIFIERS.c.resident_id == survivor)
                    .values(resident_id=merged)
                )
            if sources:
                conn.execute(
                    sa.update(SOURCES)
                    .where(SOURCES.c.id.in_(sources), SOURCES.c.resident_id == survivor)
                    .values(resident_id=merged)
                )
            now = now_for(conn)
            conn.execute(
                sa.update(RESIDENTS)
                .where(RESIDENTS.c.id == merged)
                .values(status=ResidentStatus.ACTIVE.value, merged_into=None, updated_at=now)
            )
            event_id = conn.execute(
                sa.insert(MERGES).values(
                    action="unmerge",
                    survivor_id=survivor,
                    merged_id=merged,
                    reason=reason,
                    operator=operator,
                    moved_identifiers=event["moved_identifiers"],
                    moved_source_records=event["moved_source_records"],
                    undoes=event["id"],
                    at=now,
                )
            ).inserted_primary_key[0]  # type: ignore[index]
            return self._event(conn, int(event_id))

    def _event(self, conn: Connection, event_id: int) -> MergeEvent:
        row = conn.execute(sa.select(MERGES).where(MERGES.c.id == event_id)).mappings().one()
        return self._to_event(row)

    @staticmethod
    def _to_event(row: Any) -> MergeEvent:
        return MergeEvent(
            id=row["id"],
            action=row["action"],
            survivor_id=row["survivor_id"],
            merged_id=row["merged_id"],
            reason=row["reason"],
            operator=row["operator"],
            at=aware(row["at"]),
            undoes=row["undoes"],
            moved_identifiers=len(json.loads(row["moved_identifiers"])),
            moved_source_records=len(json.loads(row["moved_source_records"])),
        )

    def history(self, resident_id: str) -> list[MergeEvent]:
        """Every merge and unmerge the resident took part in, oldest first."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.select(MERGES)
                .where(
                    sa.or_(MERGES.c.survivor_id == resident_id, MERGES.c.merged_id == resident_id)
                )
                .order_by(MERGES.c.id)
            ).mappings()
            return [self._to_event(r) for r in rows]

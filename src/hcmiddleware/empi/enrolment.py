"""Enrolment: one resident, one record (R-EMPI-2), one at a time or in batches.

:meth:`Enrolling.enrol` returns the resident that already holds any of the identifiers
given. When none matches, the demographics are scored against the residents that share
a blocking key: a ``link`` returns that resident (unless their ID numbers differ), a
``review`` creates the new record *and* puts the pair on the review queue, so a possible
duplicate is never silent. A link on demographics also needs a phone, address or ID
number that agrees, and a name that sounds the same (homophones and dialect folds
included); without them it is a review. :meth:`Enrolling.enrol_batch` applies
the same rules to many prepared records in one transaction.

A lenient record (``strict=False``, an import) whose identifiers belong to someone else
is not refused: it becomes a resident of its own without them, flagged
``identifier_conflict``, with a review item against each holder.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy.exc import IntegrityError

from hcmiddleware import storage
from hcmiddleware.empi.matching import Decision
from hcmiddleware.empi.preparation import Preparation, PreparedRecord
from hcmiddleware.empi.quality import Flag
from hcmiddleware.empi.records import Enrolment
from hcmiddleware.empi.schema import IdentifierKind, ResidentStatus, ReviewStatus, new_id
from hcmiddleware.empi.search import Search
from hcmiddleware.empi.store import BatchStore, DirectStore, aware, id_number_of
from hcmiddleware.errors import IdentifierConflictError, ResidentIndexError
from hcmiddleware.models import Identifier, Resident, Sex

__all__ = ["Enrolling"]


#: Name, sex and birth date are shared by too many people to link on alone (王芳 born on
#: the same day is not rare in a city): an automatic link also needs one of these. And
#: the other way round, a household shares a phone, an address and often a parent's ID
#: number: an automatic link also needs the name to sound the same (a name that is only
#: "close" is a sibling's as often as a typo: 王建国 and 王建华 are brothers).
_CORROBORATING = frozenset(
    {"phone: same", "id_number: same", "address: same", "address: very similar"}
)
_NAME_AGREES = frozenset({"name: same", "name: same sound", "name: folded pinyin"})
#: What a source record keeps and its resident does not: values the record carried that
#: could not be used (unreadable, or identifiers withheld in a conflict).
_SOURCE_ONLY = frozenset({"withheld", "unparsed"})


class Enrolling(Preparation, Search):
    """Enrolment of one record or a batch, and what it writes."""

    def enrol(
        self,
        *,
        name: str,
        sex: Sex | int,
        birth_date: dt.date | None = None,
        id_number: str | None = None,
        phone: str | None = None,
        address: str | None = None,
        card_number: str | None = None,
        ecard_id: str | None = None,
        identifiers: Iterable[Identifier] = (),
        source: str | None = None,
        record_id: str | None = None,
        today: dt.date | None = None,
        strict: bool = True,
    ) -> Enrolment:
        """Enrol a person, or return the resident who already holds one of the identifiers.

        Everything is validated first (see :meth:`prepare`); nothing is written when a
        field is invalid or the identifiers given belong to two different residents.
        With ``strict=False`` (an old record that cannot be corrected now) a faulty ID
        number is kept unverified and flagged instead, and a conflict is kept apart
        and sent to review (see :meth:`prepare`).
        """
        prepared = self.prepare(
            name=name,
            sex=sex,
            birth_date=birth_date,
            id_number=id_number,
            phone=phone,
            address=address,
            card_number=card_number,
            ecard_id=ecard_id,
            identifiers=identifiers,
            source=source,
            record_id=record_id,
            today=today,
            strict=strict,
        )
        for attempt in range(2):
            try:
                with storage.begin_write(self._engine) as conn:
                    self._refuse_during_bulk_load(conn)
                    store = DirectStore(self._codec, conn, max_block=self._max_block)
                    return self._enrol_in(store, prepared)
            except IntegrityError:
                # Another writer enrolled one of these identifiers between our lookup and
                # our insert; the second pass finds it.
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def enrol_batch(self, batch: Sequence[PreparedRecord]) -> list[Enrolment | ResidentIndexError]:
        """Enrol many prepared records in one transaction; refused ones come back as errors.

        What the batch needs is read in a few queries up front and everything is written
        with one ``executemany`` per table, so a bulk import costs little per row. A
        record refused by the index (an identifier conflict) is returned as its error in
        its place and leaves no trace; the others are kept. Records later in the batch
        see those before them (a duplicate inside one file is linked, not doubled).
        """
        for attempt in range(2):
            try:
                with storage.begin_write(self._engine) as conn:
                    self._refuse_during_bulk_load(conn)
                    store = BatchStore(self._codec, conn, max_block=self._max_block)
                    self._prefetch(store, batch)
                    results: list[Enrolment | ResidentIndexError] = []
                    for prepared in batch:
                        try:
                            results.append(self._enrol_in(store, prepared))
                        except ResidentIndexError as exc:
                            results.append(exc)
                    store.flush()
                    return results
            except IntegrityError:
                # Another writer got in between the prefetch and the flush: once more,
                # the prefetch then sees its rows.
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _prefetch(self, store: BatchStore, batch: Sequence[PreparedRecord]) -> None:
        idents: list[tuple[str, str, bytes]] = []
        blocks: list[list[bytes]] = []
        evidence: list[bytes] = []
        sources: list[tuple[str, str]] = []
        for prepared in batch:
            idents.extend((k.value, i, b) for k, i, _v, b in prepared.idents)
            idents.extend(prepared.evidence)
            blocks.append(prepared.query_blocks)
            evidence.extend(prepared.evidence_blocks)
            if prepared.source is not None and prepared.record_id is not None:
                sources.append((prepared.source, prepared.record_id))
        store.prefetch(idents, blocks, sources, evidence)

    def _enrol_in(self, store: DirectStore, prepared: PreparedRecord) -> Enrolment:
        # Every check comes before the first write, so a refusal leaves nothing behind
        # (a batch has no savepoint to roll back to).
        demographics = prepared.demographics
        source, record_id, warnings = prepared.source, prepared.record_id, prepared.warnings
        flags = prepared.flags
        bidxs = prepared.idents
        found = store.holders([(k.value, i, b) for k, i, _v, b in bidxs])
        holders: dict[str, IdentifierKind] = {}
        present: set[tuple[str, str, bytes]] = set()
        for kind, issuer, _value, bidx in bidxs:
            holder = found.get((kind.value, issuer, bidx))
            if holder is not None:
                holders.setdefault(holder, kind)
                present.add((kind.value, issuer, bidx))
        conflict: IdentifierConflictError | None = None
        if len(holders) > 1:
            first = next(iter(holders.values()))
            conflict = IdentifierConflictError(
                "the identifiers given belong to different residents "
                f"({', '.join(sorted(holders))}); nothing was written",
                kind=first.value,
                holder=",".join(sorted(holders)),
            )
        known: Resident | None = None
        if len(holders) == 1:
            known = store.resident(next(iter(holders)))
            conflict = self._id_number_conflict(known, bidxs)
        if conflict is not None and prepared.strict:
            raise conflict
        if known is not None and conflict is None:
            resident_id, matched_on = next(iter(holders.items()))
            if self._attach(store, resident_id, bidxs, present, prepared):
                known = store.resident(resident_id)  # as it stands with what was added
            return Enrolment(
                resident=known,
                created=False,
                matched_on=matched_on,
                warnings=warnings,
                flags=flags,
            )
        kept_apart: list[str] = []
        if conflict is not None:
            # Lenient: the record names a person, but identifiers it carries belong to
            # others. It is kept as a resident of its own without them, flagged, and
            # put beside each holder for review; the withheld values stay with the
            # source record.
            kept_apart = list(holders)
            withheld = [(k, i, v) for k, i, v, b in bidxs if (k.value, i, b) in present]
            bidxs = [b for b in bidxs if (b[0].value, b[1], b[3]) not in present]
            flags = tuple(sorted({*flags, Flag.IDENTIFIER_CONFLICT}))
            demographics = {
                **demographics,
                "flags": list(flags),
                "withheld": [{"kind": k.value, "issuer": i, "value": v} for k, i, v in withheld],
            }

        probe = prepared.probe
        evidence_holders = list(store.holders(prepared.evidence).values())
        residents = store.candidates(
            prepared.query_blocks, prepared.evidence_blocks, [*evidence_holders, *kept_apart]
        )
        scored = self._score(probe, residents, limit=len(residents))
        top = scored[0] if scored else None
        if (
            conflict is None
            and top is not None
            and top.decision == Decision.LINK
            and self._auto_link
            and not self._id_conflict(top.resident, probe)
            and _CORROBORATING & set(top.agreements)
            and _NAME_AGREES & set(top.agreements)
        ):
            found_id = top.resident.resident_id
            self._attach(store, found_id, bidxs, set(), prepared)
            return Enrolment(
                resident=store.resident(found_id),
                created=False,
                linked_by_demographics=top.probability,
                warnings=warnings,
                flags=flags,
            )

        if source is not None and record_id is not None:
            holder = store.source_holder(source, record_id)
            if holder is not None:
                raise IdentifierConflictError(
                    f"record {record_id} of {source} is already linked to resident {holder}",
                    kind="record_id",
                    holder=holder,
                )
        resident_id = new_id()
        now = store.now
        rows, added = self._identifier_rows(now, resident_id, bidxs, set())
        resident = Resident(
            resident_id=resident_id,
            status=ResidentStatus.ACTIVE,
            name=demographics["name"],
            sex=Sex(demographics["sex"]),
            birth_date=probe["birth_date"],
            id_number=id_number_of(added),
            phone=demographics["phone"],
            address=demographics["address"],
            region_code=demographics["region_code"],
            identifiers=tuple(added),
            created_at=aware(now),
            unverified_id_number=demographics.get("id_unverified"),
            flags=flags,
        )
        resident_data = {k: v for k, v in demographics.items() if k not in _SOURCE_ONLY}
        store.add_resident(
            {
                "id": resident_id,
                "status": ResidentStatus.ACTIVE.value,
                "merged_into": None,
                "data_ct": self._codec.seal(
                    "empi_residents", "data_ct", resident_id, json.dumps(resident_data).encode()
                ),
                "created_at": now,
                "updated_at": now,
            },
            resident,
            prepared.stored_blocks,
        )
        store.add_identifiers(resident_id, rows, [])
        if source is not None and record_id is not None:
            store.add_source(
                self._source_row(now, resident_id, source, record_id, demographics, flags)
            )
        review_rows = [
            {
                "resident_id": resident_id,
                "candidate_id": cand.resident.resident_id,
                "score": cand.probability,
                "reason": "; ".join(
                    (["identifier conflict"] if cand.resident.resident_id in kept_apart else [])
                    + list(cand.agreements)
                )
                or "demographics",
                "status": ReviewStatus.OPEN.value,
                "created_at": now,
            }
            for rank, cand in enumerate(scored)
            if (rank < 5 and cand.decision != Decision.NEW)
            or cand.resident.resident_id in kept_apart
        ]
        reviews = store.add_reviews(review_rows) if review_rows else []
        return Enrolment(
            resident=resident,
            created=True,
            warnings=warnings,
            reviews=tuple(reviews),
            flags=flags,
        )

    def _attach(
        self,
        store: DirectStore,
        resident_id: str,
        bidxs: list[tuple[IdentifierKind, str, str, bytes]],
        present: set[tuple[str, str, bytes]],
        prepared: PreparedRecord,
    ) -> bool:
        """Give the resident the identifiers and the source record it lacks; whether
        anything was written."""
        source, record_id = prepared.source, prepared.record_id
        new_source = False
        if source is not None and record_id is not None:
            holder = store.source_holder(source, record_id)
            if holder is not None and holder != resident_id:
                raise IdentifierConflictError(
                    f"record {record_id} of {source} is already linked to resident {holder}",
                    kind="record_id",
                    holder=holder,
                )
            new_source = holder is None
        rows, added = self._identifier_rows(store.now, resident_id, bidxs, present)
        store.add_identifiers(resident_id, rows, added)
        if new_source and source is not None and record_id is not None:
            store.add_source(
                self._source_row(
                    store.now, resident_id, source, record_id, prepared.demographics, prepared.flags
                )
            )
            return True
        return bool(rows)

    def _source_row(
        self,
        now: dt.datetime,
        resident_id: str,
        source: str,
        record_id: str,
        data: dict[str, Any],
        flags: Sequence[str],
    ) -> dict[str, Any]:
        row_id = new_id()
        return {
            "id": row_id,
            "resident_id": resident_id,
            "source": source,
            "record_id": record_id,
            "data_ct": self._codec.seal(
                "empi_source_records", "data_ct", row_id, json.dumps(data).encode()
            ),
            "created_at": now,
            "flags": " ".join(flags),
        }

    @staticmethod
    def _id_number_conflict(
        resident: Resident, bidxs: list[tuple[IdentifierKind, str, str, bytes]]
    ) -> IdentifierConflictError | None:
        given = [
            value
            for kind, _issuer, value, _bidx in bidxs
            if kind is IdentifierKind.ID_NUMBER and len(value) == 18
        ]
        numbers = {
            i.value
            for i in resident.identifiers
            if i.kind is IdentifierKind.ID_NUMBER and len(i.value) == 18
        }
        if given and numbers and given[0] not in numbers:
            return IdentifierConflictError(
                f"resident {resident.resident_id} already has another ID number;"
                " nothing was written",
                kind=IdentifierKind.ID_NUMBER.value,
                holder=resident.resident_id,
                hint="the card or other identifier given belongs to someone else, or the ID "
                "number was mistyped: check the identity document",
            )
        return None

"""The resident master index: enrol, look up, cross-reference, merge and unmerge.

One resident, one record (R-EMPI-2): :meth:`ResidentIndex.enrol` returns the resident
that already holds any of the identifiers given. When none matches, the demographics
are scored against the residents that share a blocking key: a ``link`` returns that
resident (unless their ID numbers differ), a ``review`` creates the new record *and*
puts the pair on the review queue, so a possible duplicate is never silent. A link on
demographics also needs a phone, address or ID number that agrees; without one it is
a review.

Every personal value is encrypted by the :class:`~hcmiddleware.empi.protection.Protector`
before it reaches the database; lookups go through blind indexes.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from hcmiddleware import storage
from hcmiddleware.empi.blocking import blocking_keys, probe_keys
from hcmiddleware.empi.identity import ChildNumber, IdNumber, parse_identity
from hcmiddleware.empi.matching import Decision, MatchModel, Thresholds
from hcmiddleware.empi.normalize import (
    normalize_address,
    normalize_code,
    normalize_name,
    normalize_phone,
    normalize_text,
)
from hcmiddleware.empi.protection import Protector
from hcmiddleware.empi.records import (
    Candidate,
    DuplicatePair,
    Enrolment,
    MergeEvent,
    ReviewItem,
)
from hcmiddleware.empi.regions import check_id_region
from hcmiddleware.empi.schema import (
    IdentifierKind,
    ResidentStatus,
    ReviewStatus,
    new_id,
)
from hcmiddleware.empi.store import (
    BLOCKS,
    IDENTIFIERS,
    MERGES,
    MODELS,
    Q_HOLDER,
    RESIDENTS,
    REVIEWS,
    SOURCES,
    BatchStore,
    DirectStore,
    RowCodec,
    aware,
    id_number_of,
    now_for,
)
from hcmiddleware.errors import (
    IdentifierConflictError,
    IdentityError,
    MergeError,
    ResidentIndexError,
)
from hcmiddleware.models import Identifier, Resident, Sex

__all__ = ["SCOPES", "PreparedRecord", "ResidentIndex"]

#: Tables whose rows carry ciphertexts; each gets its own data key.
SCOPES = ("empi_residents", "empi_identifiers", "empi_source_records")

#: Name, sex and birth date are shared by too many people to link on alone (王芳 born on
#: the same day is not rare in a city): an automatic link also needs one of these.
_CORROBORATING = frozenset(
    {"phone: same", "id_number: same", "address: same", "address: very similar"}
)

#: Kinds whose value is assigned by an issuer that must be named.
_ISSUED = {IdentifierKind.HOSPITAL_PATIENT_ID, IdentifierKind.REGIONAL_INDEX_ID}


@dataclass(frozen=True, slots=True)
class PreparedRecord:
    """A record validated and normalised by :meth:`ResidentIndex.prepare`, ready to enrol.

    Holds personal data, so its repr shows only the source record it came from.
    """

    wanted: list[tuple[IdentifierKind, str, str]] = field(repr=False)
    demographics: dict[str, Any] = field(repr=False)
    clean_name: str = field(repr=False)
    source: str | None
    record_id: str | None
    warnings: tuple[str, ...]
    # Keyed hashes, computed once: identifiers (kind, issuer, value, HMAC), the record
    # for scoring, blocking keys to look up and to store.
    idents: list[tuple[IdentifierKind, str, str, bytes]] = field(repr=False, default_factory=list)
    probe: dict[str, Any] = field(repr=False, default_factory=dict)
    query_blocks: list[bytes] = field(repr=False, default_factory=list)
    stored_blocks: list[bytes] = field(repr=False, default_factory=list)


class ResidentIndex:
    """The master patient index over one database (SQLite embedded, PostgreSQL shared).

    ``ResidentIndex(engine, protector)`` migrates the database to the newest schema
    (unless ``migrate=False``) and binds the protector's data keys to it. ``thresholds``
    set the link/review/new outcomes of demographic matching; with ``auto_link`` off,
    enrolment never links on demographics alone (everything above ``review`` is queued).
    ``max_block`` caps how many candidates one search compares.
    """

    def __init__(
        self,
        engine: Engine,
        protector: Protector,
        *,
        migrate: bool = True,
        thresholds: Thresholds | None = None,
        auto_link: bool = True,
        max_block: int = 2000,
    ) -> None:
        if migrate:
            storage.upgrade(engine)
        protector.bind(engine, SCOPES)
        self._engine = engine
        self._protector = protector
        self._codec = RowCodec(protector)
        self._auto_link = auto_link
        self._max_block = max_block
        self._model = self._stored_model(thresholds or Thresholds())

    @property
    def protector(self) -> Protector:
        """The keys this index encrypts with (other parts add their own data-key scopes)."""
        return self._protector

    def _stored_model(self, thresholds: Thresholds) -> MatchModel:
        with self._engine.connect() as conn:
            params = conn.scalar(sa.select(MODELS.c.params).order_by(MODELS.c.id.desc()).limit(1))
        if params is None:
            return MatchModel(thresholds=thresholds)
        return MatchModel.from_json(params, thresholds=thresholds)

    def __repr__(self) -> str:
        return f"ResidentIndex({self._engine.url.render_as_string(hide_password=True)!r})"

    # --- value handling --------------------------------------------------------------

    def _canonical(self, kind: IdentifierKind, value: str) -> str:
        if kind is IdentifierKind.ID_NUMBER:
            return parse_identity(value).value
        canonical = normalize_code(value)
        if not canonical:
            raise IdentityError(f"the {kind.value} is empty", field=kind.value)
        return canonical

    def _ident_bidx(self, kind: IdentifierKind, canonical: str) -> bytes:
        return self._protector.blind_index(f"identifier:{kind.value}", canonical)

    # --- reading ---------------------------------------------------------------------

    def get(self, resident_id: str, *, follow_merges: bool = True) -> Resident:
        """The resident with this id; a merged id gives its survivor unless told otherwise."""
        with self._engine.connect() as conn:
            return self._codec.resident(
                conn, self._codec.row(conn, resident_id, follow=follow_merges)
            )

    def lookup(
        self, kind: IdentifierKind | str, value: str, *, assigner: str | None = None
    ) -> Resident | None:
        """Exact lookup by an identifier; ``None`` when no resident holds it.

        ``assigner`` names the hospital or index that assigned a hospital patient ID or
        a regional index ID (the other kinds have none). The value and the assigner's
        code are normalised first (full-width, spaces, dashes,
        ``x``; a 15-digit ID number is converted), so it is found however it was typed.
        An invalid ID number raises :class:`~hcmiddleware.errors.IdentityError` rather
        than finding nothing.
        """
        kind = IdentifierKind(kind)
        bidx = self._ident_bidx(kind, self._canonical(kind, value))
        issuer = normalize_code(assigner or "")
        with self._engine.connect() as conn:
            resident_id = conn.scalar(
                Q_HOLDER, {"kind": kind.value, "issuer": issuer, "bidx": bidx}
            )
            if resident_id is None:
                return None
            return self._codec.resident(conn, self._codec.row(conn, resident_id, follow=True))

    def count(self, *, status: ResidentStatus = ResidentStatus.ACTIVE) -> int:
        """How many residents have this status."""
        with self._engine.connect() as conn:
            return int(
                conn.scalar(sa.select(sa.func.count()).where(RESIDENTS.c.status == status.value))
                or 0
            )

    # --- enrolment -------------------------------------------------------------------

    def prepare(
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
    ) -> PreparedRecord:
        """Validate and normalise a record for :meth:`enrol` / :meth:`enrol_batch`.

        Validates everything before writing (a typed ``IdentityError`` names the field):
        a non-empty name, the ID number with birth date and sex cross-checked, the
        region code (a retired one is returned as a warning). ``source``/``record_id``
        keep the source system's record with the resident. If the identifiers given
        belong to two different residents, nothing is written and
        :class:`~hcmiddleware.errors.IdentifierConflictError` says so.
        """
        clean_name = normalize_name(name)
        if not clean_name:
            raise IdentityError(
                "the name is empty", field="name", hint="enter the name as on the ID card"
            )
        try:
            sex = Sex(int(sex))
        except ValueError:
            raise IdentityError(
                "sex must be a GB/T 2261.1 code: 0 unknown, 1 male, 2 female, 9 unspecified",
                field="sex",
            ) from None
        if (source is None) != (record_id is None):
            raise ResidentIndexError(
                "source and record_id go together",
                hint="pass both the source system's name and its record id, or neither",
            )
        warnings: list[str] = []
        region_code: str | None = None
        wanted: list[tuple[IdentifierKind, str, str]] = []
        if id_number is not None and normalize_code(id_number):
            parsed: IdNumber | ChildNumber = parse_identity(
                id_number, birth_date=birth_date, sex=sex, today=today
            )
            if isinstance(parsed, IdNumber):
                birth_date = birth_date or parsed.birth_date
                if sex not in (Sex.MALE, Sex.FEMALE):
                    sex = parsed.sex
                region_code = parsed.region_code
            elif sex not in (Sex.MALE, Sex.FEMALE):
                sex = parsed.sex
            region_of = (
                parsed.region_code if isinstance(parsed, IdNumber) else parsed.parent.region_code
            )
            check = check_id_region(region_of)
            if check.warning:
                warnings.append(check.warning)
            wanted.append((IdentifierKind.ID_NUMBER, "", parsed.value))
        if birth_date is not None and birth_date > (today or dt.date.today()):
            raise IdentityError("the birth date is in the future", field="birth_date")
        for kind, raw in (
            (IdentifierKind.CARD_NUMBER, card_number),
            (IdentifierKind.ECARD_ID, ecard_id),
        ):
            if raw is not None and normalize_code(raw):
                wanted.append((kind, "", normalize_code(raw)))
        for ident in identifiers:
            issuer = normalize_code(ident.assigner or "")
            if ident.kind in _ISSUED and not issuer:
                raise IdentityError(
                    f"a {ident.kind.value} needs the code of its issuer", field=ident.kind.value
                )
            wanted.append((ident.kind, issuer, self._canonical(ident.kind, ident.value)))
        demographics = {
            "name": normalize_text(name),
            "sex": int(sex),
            "birth_date": birth_date.isoformat() if birth_date else None,
            "phone": normalize_phone(phone) if phone else None,
            "address": normalize_address(address) if address else None,
            "region_code": region_code,
        }
        probe = self._probe(demographics, wanted)
        # The stored keys are a subset of the looked-up ones (see blocking): hash each once.
        hashed = self._block_bidxs(probe)
        query_blocks = list(hashed.values())
        stored_blocks = [hashed[k] for k in sorted(blocking_keys(probe))]
        return PreparedRecord(
            wanted,
            demographics,
            clean_name,
            source,
            record_id,
            tuple(warnings),
            idents=[(k, i, v, self._ident_bidx(k, v)) for k, i, v in wanted],
            probe=probe,
            query_blocks=query_blocks,
            stored_blocks=stored_blocks,
        )

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
    ) -> Enrolment:
        """Enrol a person, or return the resident who already holds one of the identifiers.

        Everything is validated first (see :meth:`prepare`); nothing is written when a
        field is invalid or the identifiers given belong to two different residents.
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
        )
        for attempt in range(2):
            try:
                with storage.begin_write(self._engine) as conn:
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
        sources: list[tuple[str, str]] = []
        for prepared in batch:
            idents.extend((k.value, i, b) for k, i, _v, b in prepared.idents)
            blocks.append(prepared.query_blocks)
            if prepared.source is not None and prepared.record_id is not None:
                sources.append((prepared.source, prepared.record_id))
        store.prefetch(idents, blocks, sources)

    def _enrol_in(self, store: DirectStore, prepared: PreparedRecord) -> Enrolment:
        # Every check comes before the first write, so a refusal leaves nothing behind
        # (a batch has no savepoint to roll back to).
        demographics = prepared.demographics
        source, record_id, warnings = prepared.source, prepared.record_id, prepared.warnings
        bidxs = prepared.idents
        found = store.holders([(k.value, i, b) for k, i, _v, b in bidxs])
        holders: dict[str, IdentifierKind] = {}
        present: set[tuple[str, str, bytes]] = set()
        for kind, issuer, _value, bidx in bidxs:
            holder = found.get((kind.value, issuer, bidx))
            if holder is not None:
                holders.setdefault(holder, kind)
                present.add((kind.value, issuer, bidx))
        if len(holders) > 1:
            first = next(iter(holders.values()))
            raise IdentifierConflictError(
                "the identifiers given belong to different residents "
                f"({', '.join(sorted(holders))}); nothing was written",
                kind=first.value,
                holder=",".join(sorted(holders)),
            )
        if holders:
            resident_id, matched_on = next(iter(holders.items()))
            self._check_id_number_conflict(store.resident(resident_id), bidxs)
            self._attach(store, resident_id, bidxs, present, source, record_id, demographics)
            return Enrolment(
                resident=store.resident(resident_id),
                created=False,
                matched_on=matched_on,
                warnings=warnings,
            )

        probe = prepared.probe
        candidates = self._score(probe, store.candidates(prepared.query_blocks), limit=5)
        top = candidates[0] if candidates else None
        if (
            top is not None
            and top.decision == Decision.LINK
            and self._auto_link
            and not self._id_conflict(top.resident, probe)
            and _CORROBORATING & set(top.agreements)
        ):
            found_id = top.resident.resident_id
            self._attach(store, found_id, bidxs, set(), source, record_id, demographics)
            return Enrolment(
                resident=store.resident(found_id),
                created=False,
                linked_by_demographics=top.probability,
                warnings=warnings,
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
        )
        store.add_resident(
            {
                "id": resident_id,
                "status": ResidentStatus.ACTIVE.value,
                "merged_into": None,
                "data_ct": self._codec.seal(
                    "empi_residents", "data_ct", resident_id, json.dumps(demographics).encode()
                ),
                "created_at": now,
                "updated_at": now,
            },
            resident,
            prepared.stored_blocks,
        )
        store.add_identifiers(resident_id, rows, [])
        if source is not None and record_id is not None:
            store.add_source(self._source_row(now, resident_id, source, record_id, demographics))
        review_rows = [
            {
                "resident_id": resident_id,
                "candidate_id": cand.resident.resident_id,
                "score": cand.probability,
                "reason": "; ".join(cand.agreements) or "demographics",
                "status": ReviewStatus.OPEN.value,
                "created_at": now,
            }
            for cand in candidates
            if cand.decision != Decision.NEW
        ]
        reviews = store.add_reviews(review_rows) if review_rows else []
        return Enrolment(resident=resident, created=True, warnings=warnings, reviews=tuple(reviews))

    def _attach(
        self,
        store: DirectStore,
        resident_id: str,
        bidxs: list[tuple[IdentifierKind, str, str, bytes]],
        present: set[tuple[str, str, bytes]],
        source: str | None,
        record_id: str | None,
        demographics: dict[str, Any],
    ) -> None:
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
                self._source_row(store.now, resident_id, source, record_id, demographics)
            )

    def _identifier_rows(
        self,
        now: dt.datetime,
        resident_id: str,
        bidxs: list[tuple[IdentifierKind, str, str, bytes]],
        present: set[tuple[str, str, bytes]],
    ) -> tuple[list[dict[str, Any]], list[Identifier]]:
        rows = []
        added = []
        for kind, issuer, value, bidx in bidxs:
            if (kind.value, issuer, bidx) in present:
                continue
            present.add((kind.value, issuer, bidx))
            ident_id = new_id()
            rows.append(
                {
                    "id": ident_id,
                    "resident_id": resident_id,
                    "kind": kind.value,
                    "issuer": issuer,
                    "value_bidx": bidx,
                    "value_ct": self._codec.seal(
                        "empi_identifiers", "value_ct", ident_id, value.encode()
                    ),
                    "created_at": now,
                }
            )
            added.append(Identifier(kind=kind, value=value, assigner=issuer or None))
        return rows, added

    def _source_row(
        self, now: dt.datetime, resident_id: str, source: str, record_id: str, data: dict[str, Any]
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
        }

    # --- demographic matching --------------------------------------------------------

    @staticmethod
    def _probe(
        demographics: dict[str, Any], wanted: list[tuple[IdentifierKind, str, str]]
    ) -> dict[str, Any]:
        born = demographics.get("birth_date")
        id_number = next((v for k, _i, v in wanted if k is IdentifierKind.ID_NUMBER), None)
        return {
            "name": demographics.get("name"),
            "sex": demographics.get("sex"),
            "birth_date": dt.date.fromisoformat(born) if isinstance(born, str) else born,
            "phone": demographics.get("phone"),
            "address": demographics.get("address"),
            "id_number": id_number,
        }

    @staticmethod
    def _as_record(resident: Resident) -> dict[str, Any]:
        return {
            "name": resident.name,
            "sex": int(resident.sex),
            "birth_date": resident.birth_date,
            "phone": resident.phone,
            "address": resident.address,
            "id_number": resident.identifier(IdentifierKind.ID_NUMBER),
        }

    @staticmethod
    def _id_conflict(resident: Resident, probe: dict[str, Any]) -> bool:
        # Two different full ID numbers are two people, whatever the rest says.
        mine = probe.get("id_number")
        theirs = resident.identifier(IdentifierKind.ID_NUMBER)
        return bool(mine and theirs and len(mine) == 18 and len(theirs) == 18 and mine != theirs)

    def _block_bidxs(self, probe: dict[str, Any]) -> dict[str, bytes]:
        """Each key to look up for a probe with its hash, in key order."""
        return {k: self._protector.blind_index("block", k) for k in sorted(probe_keys(probe))}

    def _score(
        self, probe: dict[str, Any], residents: Iterable[Resident], *, limit: int
    ) -> list[Candidate]:
        scored = []
        for resident in residents:
            score = self._model.score(probe, self._as_record(resident))
            scored.append(
                Candidate(
                    resident=resident,
                    weight=score.weight,
                    probability=score.probability,
                    decision=score.decision,
                    agreements=score.agreements,
                )
            )
        scored.sort(key=lambda c: c.weight, reverse=True)
        return scored[:limit]

    def search(
        self,
        *,
        name: str | None = None,
        sex: Sex | int | None = None,
        birth_date: dt.date | None = None,
        phone: str | None = None,
        address: str | None = None,
        id_number: str | None = None,
        limit: int = 10,
        include_new: bool = False,
    ) -> list[Candidate]:
        """Residents that may be this person, best first, each with what agreed (R-EMPI-1).

        Candidates are drawn through blocking keys (see :mod:`hcmiddleware.empi.blocking`)
        and scored with the Fellegi–Sunter model; those the model calls ``new`` are left
        out unless ``include_new``.
        """
        id_value = None
        if id_number and normalize_code(id_number):
            id_value = parse_identity(id_number).value
        probe = {
            "name": normalize_text(name) if name else None,
            "sex": int(sex) if sex is not None else None,
            "birth_date": birth_date,
            "phone": normalize_phone(phone) if phone else None,
            "address": normalize_address(address) if address else None,
            "id_number": id_value,
        }
        with self._engine.connect() as conn:
            store = DirectStore(self._codec, conn, max_block=self._max_block)
            found = self._score(
                probe,
                store.candidates(list(self._block_bidxs(probe).values())),
                limit=limit if include_new else 10 * limit,
            )
        if not include_new:
            found = [c for c in found if c.decision != Decision.NEW]
        return found[:limit]

    @property
    def model(self) -> MatchModel:
        """The Fellegi–Sunter model in use (trained, or the built-in starting values)."""
        return self._model

    def _active_records(
        self, *, max_residents: int | None = None, seed: int = 1
    ) -> dict[str, dict[str, Any]]:
        import random

        with self._engine.connect() as conn:
            ids = list(
                conn.scalars(
                    sa.select(RESIDENTS.c.id)
                    .where(RESIDENTS.c.status == ResidentStatus.ACTIVE.value)
                    .order_by(RESIDENTS.c.id)
                )
            )
            if max_residents is not None and len(ids) > max_residents:
                random.Random(seed).shuffle(ids)
                ids = ids[:max_residents]
            records: dict[str, dict[str, Any]] = {}
            for start in range(0, len(ids), 500):
                for resident in self._codec.load(conn, ids[start : start + 500]):
                    records[resident.resident_id] = self._as_record(resident)
        return records

    @staticmethod
    def _pairs_within(
        records: dict[str, dict[str, Any]], *, max_block: int
    ) -> list[tuple[str, str]]:
        blocks: dict[str, list[str]] = {}
        for rid, record in records.items():
            for key in probe_keys(record):
                blocks.setdefault(key, []).append(rid)
        pairs: set[tuple[str, str]] = set()
        for members in blocks.values():
            if len(members) > max_block:
                continue  # a huge block (a common name alone) costs much and says little
            for i, a in enumerate(members):
                for b in members[i + 1 :]:
                    pairs.add((a, b) if a < b else (b, a))
        return sorted(pairs)

    def train_model(self, *, max_residents: int = 20000, seed: int = 1) -> int:
        """Learn the model's m/u weights and prior from the index itself (EM, no labels).

        Compares, within each shared blocking key, up to ``max_residents`` residents
        (a random sample), trains, stores the parameters and uses them from now on.
        Returns the number of pairs it learnt from.
        """
        records = self._active_records(max_residents=max_residents, seed=seed)
        pairs = self._pairs_within(records, max_block=200)
        if not pairs:
            return 0
        gammas = np.array(
            [self._model.levels(records[a], records[b]) for a, b in pairs], dtype=np.int16
        )
        model = MatchModel(self._model.comparisons, thresholds=self._model.thresholds)
        model.train(gammas)
        with storage.begin_write(self._engine) as conn:
            conn.execute(
                sa.insert(MODELS).values(
                    params=model.to_json(), pairs=len(pairs), trained_at=now_for(conn)
                )
            )
        self._model = model
        return len(pairs)

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

    @staticmethod
    def _check_id_number_conflict(
        resident: Resident, bidxs: list[tuple[IdentifierKind, str, str, bytes]]
    ) -> None:
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
            raise IdentifierConflictError(
                f"resident {resident.resident_id} already has another ID number;"
                " nothing was written",
                kind=IdentifierKind.ID_NUMBER.value,
                holder=resident.resident_id,
                hint="the card or other identifier given belongs to someone else, or the ID "
                "number was mistyped: check the identity document",
            )

    def refresh_statistics(self) -> None:
        """Let the database re-plan after a bulk load (PostgreSQL ANALYZE, SQLite optimize).

        Without it PostgreSQL may keep planning lookups for the empty tables it saw
        before an import.
        """
        with self._engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                for table in (RESIDENTS, IDENTIFIERS, BLOCKS, SOURCES):
                    conn.exec_driver_sql(f"ANALYZE {table.name}")
            elif conn.dialect.name == "sqlite":
                conn.exec_driver_sql("PRAGMA optimize")
                conn.commit()

    def known_records(self, source: str, record_ids: Iterable[str]) -> set[str]:
        """Which of these record ids of ``source`` are already in the index (for resuming)."""
        wanted = list(dict.fromkeys(record_ids))
        found: set[str] = set()
        with self._engine.connect() as conn:
            for start in range(0, len(wanted), 500):
                found.update(
                    conn.scalars(
                        sa.select(SOURCES.c.record_id).where(
                            SOURCES.c.source == source,
                            SOURCES.c.record_id.in_(wanted[start : start + 500]),
                        )
                    )
                )
        return found

    def source_records(self, resident_id: str) -> list[tuple[str, str]]:
        """``(source, record_id)`` of every source record linked to the resident."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.select(SOURCES.c.source, SOURCES.c.record_id)
                .where(SOURCES.c.resident_id == resident_id)
                .order_by(SOURCES.c.source, SOURCES.c.record_id)
            ).all()
            return [(r[0], r[1]) for r in rows]

    # --- hospital cross-reference (R-EMPI-4) -----------------------------------------

    def link_hospital_id(self, resident_id: str, hospital_code: str, patient_id: str) -> Identifier:
        """Record the hospital's own patient id for the resident; idempotent.

        Raises :class:`IdentifierConflictError` when that hospital's patient id already
        belongs to another resident (the HIS has two records: merge them first).
        """
        return self._link(
            resident_id, IdentifierKind.HOSPITAL_PATIENT_ID, hospital_code, patient_id
        )

    def link_regional_id(self, resident_id: str, index_code: str, regional_id: str) -> Identifier:
        """Record the id the regional or national index gave the resident; idempotent."""
        return self._link(resident_id, IdentifierKind.REGIONAL_INDEX_ID, index_code, regional_id)

    def _link(self, resident_id: str, kind: IdentifierKind, issuer: str, value: str) -> Identifier:
        issuer = normalize_code(issuer)
        if not issuer:
            raise IdentityError(f"a {kind.value} needs the code of its issuer", field="issuer")
        canonical = self._canonical(kind, value)
        bidx = self._ident_bidx(kind, canonical)
        with storage.begin_write(self._engine) as conn:
            target = self._codec.row(conn, resident_id, follow=True)["id"]
            holder = conn.scalar(Q_HOLDER, {"kind": kind.value, "issuer": issuer, "bidx": bidx})
            if holder is not None and holder != target:
                raise IdentifierConflictError(
                    f"that {kind.value} of {issuer} already belongs to resident {holder}",
                    kind=kind.value,
                    holder=holder,
                )
            if holder is None:
                store = DirectStore(self._codec, conn, max_block=self._max_block)
                rows, added = self._identifier_rows(
                    store.now, target, [(kind, issuer, canonical, bidx)], set()
                )
                store.add_identifiers(target, rows, added)
        return Identifier(kind=kind, value=canonical, assigner=issuer)

    def hospital_id(self, resident_id: str, hospital_code: str) -> str | None:
        """The hospital's patient id for the resident (the first one linked), or ``None``."""
        resident = self.get(resident_id)
        return resident.identifier(
            IdentifierKind.HOSPITAL_PATIENT_ID, normalize_code(hospital_code)
        )

    # --- merge and unmerge -----------------------------------------------------------

    def merge(self, survivor: str, merged: str, *, reason: str, operator: str) -> MergeEvent:
        """Merge resident ``merged`` into ``survivor``: its identifiers and records move.

        ``merged`` stays in the database with status ``merged`` (lookups of its id lead
        to the survivor) and the event records exactly what moved, for :meth:`unmerge`.
        """
        if not reason.strip() or not operator.strip():
            raise MergeError("a merge needs a reason and the operator's name", hint="fill in both")
        with storage.begin_write(self._engine) as conn:
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

    # --- review queue ----------------------------------------------------------------

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

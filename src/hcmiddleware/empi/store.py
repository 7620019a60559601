"""How the index's rows are read and written: statements, decryption, units of work.

:class:`RowCodec` turns rows into :class:`~hcmiddleware.models.Resident` models
(decrypting them; an identifier's stored issuer ``""`` becomes ``assigner=None``) and
seals values for a cell. Enrolment talks to a *store*: :class:`DirectStore` reads and
writes at once (one enrolment, one transaction); :class:`BatchStore` reads what a whole
batch needs in a few queries up front, answers from memory (including what the batch
itself added) and writes everything with one ``executemany`` per table at
:meth:`BatchStore.flush` — the bulk-import path.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from hcmiddleware.empi.blocking import SMALL_BLOCK, choose_candidates
from hcmiddleware.empi.protection import Protector
from hcmiddleware.empi.schema import (
    Blob,
    BlockingKeyRow,
    BulkLoadRow,
    IdentifierKind,
    IdentifierRow,
    MatchModelRow,
    MergeEventRow,
    ResidentRow,
    ResidentStatus,
    ReviewRow,
    SourceRecordRow,
    utcnow,
)
from hcmiddleware.errors import ResidentIndexError, ResidentNotFoundError
from hcmiddleware.models import Identifier, Resident, Sex

__all__ = [
    "BLOCKS",
    "BULK_LOADS",
    "IDENTIFIERS",
    "MERGES",
    "MODELS",
    "RESIDENTS",
    "REVIEWS",
    "SOURCES",
    "BatchStore",
    "DirectStore",
    "RowCodec",
    "aware",
    "now_for",
]

_CHUNK = 500

RESIDENTS = cast(sa.Table, ResidentRow.__table__)
IDENTIFIERS = cast(sa.Table, IdentifierRow.__table__)
SOURCES = cast(sa.Table, SourceRecordRow.__table__)
MERGES = cast(sa.Table, MergeEventRow.__table__)
REVIEWS = cast(sa.Table, ReviewRow.__table__)
BLOCKS = cast(sa.Table, BlockingKeyRow.__table__)
MODELS = cast(sa.Table, MatchModelRow.__table__)
BULK_LOADS = cast(sa.Table, BulkLoadRow.__table__)

# Statements built once: building a statement costs more than running it on SQLite.


class PerDialect:
    """One statement built twice: a list parameter as ``= ANY(array)`` on PostgreSQL,
    as an expanding ``IN (…)`` elsewhere.

    An expanding ``IN`` of a few hundred keys is a new statement text with as many
    parameters for PostgreSQL to parse each time; one array parameter is one plan.
    ``stmt(conn)`` gives the statement for the connection's database.
    """

    def __init__(self, build: Callable[[Callable[..., Any]], Any]) -> None:
        self._postgresql = build(self._any)
        self._other = build(self._in)

    @staticmethod
    def _any(column: Any, name: str, item: Any) -> Any:
        return column == sa.any_(sa.bindparam(name, type_=postgresql.ARRAY(item)))

    @staticmethod
    def _in(column: Any, name: str, item: Any) -> Any:
        return column.in_(sa.bindparam(name, expanding=True))

    def __call__(self, conn: Connection) -> Any:
        return self._postgresql if conn.dialect.name == "postgresql" else self._other


Q_IDENTS_OF = PerDialect(
    lambda member_of: (
        sa.select(IDENTIFIERS)
        .where(member_of(IDENTIFIERS.c.resident_id, "ids", sa.String))
        .order_by(IDENTIFIERS.c.created_at, IDENTIFIERS.c.id)
    )
)
Q_RESIDENTS_IN = PerDialect(
    lambda member_of: sa.select(RESIDENTS).where(member_of(RESIDENTS.c.id, "ids", sa.String))
)
Q_RESIDENT = sa.select(RESIDENTS).where(RESIDENTS.c.id == sa.bindparam("id"))
Q_HOLDER = sa.select(IDENTIFIERS.c.resident_id).where(
    IDENTIFIERS.c.kind == sa.bindparam("kind"),
    IDENTIFIERS.c.issuer == sa.bindparam("issuer"),
    IDENTIFIERS.c.value_bidx == sa.bindparam("bidx"),
)
Q_SOURCE_HOLDER = sa.select(SOURCES.c.resident_id).where(
    SOURCES.c.source == sa.bindparam("source"),
    SOURCES.c.record_id == sa.bindparam("record_id"),
)
INS_RESIDENT = sa.insert(RESIDENTS)
INS_IDENTIFIER = sa.insert(IDENTIFIERS)
INS_SOURCE = sa.insert(SOURCES)
INS_BLOCK = sa.insert(BLOCKS)

# By kind and issuer as well as hash: the unique index is (kind, issuer, value_bidx),
# so the hash alone cannot use it — SQLite without statistics (a first import) and
# PostgreSQL (no skip scan) would read the whole table for every chunk.
Q_HOLDERS_ACTIVE = PerDialect(
    lambda member_of: (
        sa.select(
            IDENTIFIERS.c.kind,
            IDENTIFIERS.c.issuer,
            IDENTIFIERS.c.value_bidx,
            IDENTIFIERS.c.resident_id,
            RESIDENTS.c.status,
        )
        .join(RESIDENTS, RESIDENTS.c.id == IDENTIFIERS.c.resident_id)
        .where(
            IDENTIFIERS.c.kind == sa.bindparam("kind"),
            IDENTIFIERS.c.issuer == sa.bindparam("issuer"),
            member_of(IDENTIFIERS.c.value_bidx, "bidxs", Blob),
        )
    )
)
# Members of blocks, merged residents included (their keys stay for an unmerge): the
# few chosen are loaded and the inactive dropped then, which costs far less than
# looking up every member's status here.
Q_BLOCK_MEMBERS = PerDialect(
    lambda member_of: sa.select(BLOCKS.c.key_bidx, BLOCKS.c.resident_id).where(
        member_of(BLOCKS.c.key_bidx, "keys", Blob)
    )
)
Q_SOURCES_IN = PerDialect(
    lambda member_of: sa.select(SOURCES.c.source, SOURCES.c.record_id, SOURCES.c.resident_id).where(
        SOURCES.c.source == sa.bindparam("source"),
        member_of(SOURCES.c.record_id, "record_ids", sa.String),
    )
)
INS_REVIEW = sa.insert(REVIEWS)
Q_RUNNING_LOAD = (
    sa.select(BULK_LOADS.c.source, BULK_LOADS.c.started_at)
    .where(BULK_LOADS.c.state == "running")
    .limit(1)
)

# The SQL, the columns in the order it binds them, whether it binds by position, and
# the (index, converter) of each value that needs converting.
_BulkPlan = tuple[str, tuple[str, ...], bool, tuple[tuple[int, Callable[[Any], Any]], ...]]
_BULK_PLANS: dict[tuple[str, str, tuple[str, ...]], _BulkPlan] = {}


def _copy_rows(
    conn: Connection, table: sa.Table, names: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    """PostgreSQL's ``COPY … FROM STDIN`` through psycopg, in the open transaction.

    COPY streams rows without a bind/execute round per row: on this machine it wrote
    an import batch in less than half the time ``executemany`` took. A constraint violation
    comes back as SQLAlchemy's :class:`~sqlalchemy.exc.IntegrityError`, as from an
    ``executemany``, so callers handle both alike.
    """
    import psycopg

    columns = ", ".join(f'"{name}"' for name in names)
    sql = f'COPY "{table.name}" ({columns}) FROM STDIN'
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        with cursor.copy(sql) as copy:
            for row in rows:
                copy.write_row(row)
    except psycopg.errors.IntegrityError as exc:
        raise IntegrityError(sql, None, exc) from exc
    finally:
        cursor.close()


def bulk_insert(conn: Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert many rows with one statement handed straight to the driver.

    On PostgreSQL (psycopg) the rows are streamed with ``COPY``; elsewhere they go in
    one ``executemany``. The statement is compiled once per table, dialect and set of
    columns; each value is converted only where its column type needs it (dates on
    SQLite), so a batch of thousands of rows does not pay SQLAlchemy's per-value
    processing. Rows with different sets of columns are inserted in groups.
    """
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row), []).append(row)
    dialect = conn.dialect
    for keys, members in groups.items():
        plan = _BULK_PLANS.get((table.name, dialect.name, keys))
        if plan is None:
            compiled = table.insert().compile(dialect=dialect, column_keys=list(keys))
            positional = compiled.positiontup is not None
            names = tuple(compiled.positiontup) if compiled.positiontup is not None else keys
            found: list[tuple[int, Callable[[Any], Any]]] = []
            for i, name in enumerate(names):
                convert = table.c[name].type.bind_processor(dialect)
                if convert is not None:
                    found.append((i, convert))
            plan = (compiled.string, names, positional, tuple(found))
            _BULK_PLANS[(table.name, dialect.name, keys)] = plan
        sql, names, positional, converters = plan
        converted: list[list[Any]] = []
        for row in members:
            values = [row[name] for name in names]
            for i, to_driver in converters:
                if values[i] is not None:
                    values[i] = to_driver(values[i])
            converted.append(values)
        if dialect.name == "postgresql" and dialect.driver == "psycopg":
            # COPY has no statement to bind enums through: send their values
            _copy_rows(
                conn,
                table,
                names,
                ([v.value if isinstance(v, enum.Enum) else v for v in vs] for vs in converted),
            )
        elif positional:
            conn.exec_driver_sql(sql, [tuple(vs) for vs in converted])
        else:
            conn.exec_driver_sql(sql, [dict(zip(names, vs, strict=True)) for vs in converted])


def by_issuer(keys: Iterable[tuple[str, str, bytes]]) -> dict[tuple[str, str], list[bytes]]:
    """Identifier keys (kind, issuer, hash) grouped by kind and issuer, hashes sorted."""
    groups: dict[tuple[str, str], set[bytes]] = {}
    for kind, issuer, bidx in keys:
        groups.setdefault((kind, issuer), set()).add(bidx)
    return {group: sorted(bidxs) for group, bidxs in groups.items()}


def _with_evidence(
    chosen: list[str],
    evidence_blocks: Sequence[bytes],
    members: dict[bytes, list[str]],
    also: Iterable[str],
) -> list[str]:
    """The chosen candidates, then every member of the small evidence blocks and ``also``.

    An evidence block (an unverified ID number) of more than ``SMALL_BLOCK`` members is
    a placeholder many records carry, not evidence: it is left out.
    """
    out = dict.fromkeys(chosen)
    for key in evidence_blocks:
        held = dict.fromkeys(members.get(key, ()))
        if len(held) <= SMALL_BLOCK:
            out.update(held)
    out.update(dict.fromkeys(also))
    return list(out)


def naive_utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is None else value.astimezone(dt.UTC).replace(tzinfo=None)


def id_number_of(identifiers: Iterable[Identifier]) -> str | None:
    """The first ID number among the identifiers (a model's ``id_number``), if any."""
    return next((i.value for i in identifiers if i.kind is IdentifierKind.ID_NUMBER), None)


def now_for(conn: Connection) -> dt.datetime:
    # SQLite has no zoned timestamps: store naive UTC there, aware UTC elsewhere.
    now = utcnow()
    return naive_utc(now) if conn.dialect.name == "sqlite" else now


def aware(value: dt.datetime) -> dt.datetime:
    # SQLite gives timestamps back without a zone; they were written as UTC.
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value


class RowCodec:
    """Seals values for their cells and turns rows back into decrypted models."""

    def __init__(self, protector: Protector) -> None:
        self._protector = protector

    def seal(self, table: str, column: str, row_id: str, data: bytes) -> bytes:
        """Encrypt ``data`` for one cell, bound to its table, column and row id."""
        return self._protector.encrypt(table, data, f"{table}.{column}:{row_id}")

    def open(self, table: str, column: str, row_id: str, data: bytes) -> bytes:
        """Decrypt one cell sealed by :meth:`seal`."""
        return self._protector.decrypt(data, f"{table}.{column}:{row_id}")

    def identifiers_of(
        self, conn: Connection, resident_ids: Sequence[str]
    ) -> dict[str, list[Identifier]]:
        """The decrypted identifiers of each resident, oldest first."""
        out: dict[str, list[Identifier]] = {rid: [] for rid in resident_ids}
        if not resident_ids:
            return out
        rows = conn.execute(Q_IDENTS_OF(conn), {"ids": list(resident_ids)}).mappings()
        for row in rows:
            value = self.open("empi_identifiers", "value_ct", row["id"], row["value_ct"])
            # Rows this index wrote itself: no need to validate them again.
            out[row["resident_id"]].append(
                Identifier.model_construct(
                    kind=IdentifierKind(row["kind"]),
                    value=value.decode(),
                    assigner=row["issuer"] or None,
                )
            )
        return out

    def to_resident(self, row: Any, identifiers: Iterable[Identifier]) -> Resident:
        """A resident row and its identifiers as a decrypted model."""
        data = json.loads(self.open("empi_residents", "data_ct", row["id"], row["data_ct"]))
        born = data.get("birth_date")
        held = tuple(identifiers)
        return Resident.model_construct(
            resident_id=row["id"],
            status=ResidentStatus(row["status"]),
            merged_into=row["merged_into"],
            name=data["name"],
            sex=Sex(data["sex"]),
            birth_date=dt.date.fromisoformat(born) if born else None,
            id_number=id_number_of(held),
            ethnicity=None,
            phone=data.get("phone"),
            address=data.get("address"),
            region_code=data.get("region_code"),
            identifiers=held,
            created_at=aware(row["created_at"]),
            unverified_id_number=data.get("id_unverified"),
            flags=tuple(data.get("flags", ())),
        )

    def load(self, conn: Connection, resident_ids: Sequence[str]) -> list[Resident]:
        """Residents by id (missing ids left out), in the order asked."""
        if not resident_ids:
            return []
        rows = {
            r["id"]: r
            for r in conn.execute(Q_RESIDENTS_IN(conn), {"ids": list(resident_ids)}).mappings()
        }
        idents = self.identifiers_of(conn, [rid for rid in resident_ids if rid in rows])
        return [self.to_resident(rows[rid], idents[rid]) for rid in resident_ids if rid in rows]

    def resident(self, conn: Connection, row: Any) -> Resident:
        """The model of one resident row."""
        return self.to_resident(row, self.identifiers_of(conn, [row["id"]])[row["id"]])

    def row(self, conn: Connection, resident_id: str, *, follow: bool) -> Any:
        """A resident's row; with ``follow``, the survivor's row if it was merged."""
        seen: set[str] = set()
        current = resident_id
        while True:
            row = conn.execute(Q_RESIDENT, {"id": current}).mappings().first()
            if row is None:
                raise ResidentNotFoundError(f"no resident with id {current}")
            if row["status"] == ResidentStatus.ACTIVE or not follow:
                return row
            if current in seen or row["merged_into"] is None:
                raise ResidentIndexError(
                    f"resident {resident_id} is merged but its chain does not end",
                    hint="report this to the index administrator; the merge history is damaged",
                )
            seen.add(current)
            current = row["merged_into"]


class DirectStore:
    """What enrolment reads and writes, done at once on one connection."""

    def __init__(self, codec: RowCodec, conn: Connection, *, max_block: int) -> None:
        self.codec = codec
        self.conn = conn
        self.now = now_for(conn)
        self._max_block = max_block

    def holders(self, keys: Sequence[tuple[str, str, bytes]]) -> dict[tuple[str, str, bytes], str]:
        """Which active resident holds each identifier key (kind, issuer, HMAC)."""
        found: dict[tuple[str, str, bytes], str] = {}
        if not keys:
            return found
        for (kind, issuer), bidxs in by_issuer(keys).items():
            rows = self.conn.execute(
                Q_HOLDERS_ACTIVE(self.conn), {"kind": kind, "issuer": issuer, "bidxs": bidxs}
            )
            for kind_, issuer_, bidx, resident_id, status in rows:
                if status != ResidentStatus.ACTIVE:
                    resident_id = self.codec.row(self.conn, resident_id, follow=True)["id"]
                found[(kind_, issuer_, bidx)] = resident_id
        return found

    def resident(self, resident_id: str) -> Resident:
        """The resident as it stands now in this unit of work."""
        return self.codec.resident(self.conn, self.codec.row(self.conn, resident_id, follow=False))

    def candidates(
        self,
        block_keys: Sequence[bytes],
        evidence_blocks: Sequence[bytes] = (),
        also: Iterable[str] = (),
    ) -> list[Resident]:
        """Active residents worth comparing: see :func:`choose_candidates` (≤ max_block),
        every member of the ``evidence_blocks`` and the residents named in ``also``."""
        keys = [*block_keys, *evidence_blocks]
        members: dict[bytes, list[str]] = {}
        if keys:
            for key, resident_id in self.conn.execute(Q_BLOCK_MEMBERS(self.conn), {"keys": keys}):
                members.setdefault(key, []).append(resident_id)
        ids = _with_evidence(
            choose_candidates(block_keys, members, limit=self._max_block),
            evidence_blocks,
            members,
            also,
        )
        return [r for r in self.codec.load(self.conn, ids) if r.status == ResidentStatus.ACTIVE]

    def source_holder(self, source: str, record_id: str) -> str | None:
        """The active resident a source record is linked to, if it is in already."""
        holder = self.conn.scalar(Q_SOURCE_HOLDER, {"source": source, "record_id": record_id})
        if holder is None:
            return None
        return cast(str, self.codec.row(self.conn, holder, follow=True)["id"])

    def add_resident(
        self, row: dict[str, Any], resident: Resident, blocks: Sequence[bytes]
    ) -> None:
        """Write a new resident row and its blocking keys."""
        self.conn.execute(INS_RESIDENT, row)
        if blocks:
            self.conn.execute(
                INS_BLOCK, [{"resident_id": row["id"], "key_bidx": b} for b in blocks]
            )

    def add_identifiers(
        self, resident_id: str, rows: list[dict[str, Any]], added: list[Identifier]
    ) -> None:
        """Write identifier rows of a resident."""
        if rows:
            self.conn.execute(INS_IDENTIFIER, rows)

    def add_source(self, row: dict[str, Any]) -> None:
        """Write a source-record row."""
        self.conn.execute(INS_SOURCE, row)

    def add_reviews(self, rows: list[dict[str, Any]]) -> list[int]:
        """Write review-queue rows; their ids."""
        ids = []
        for row in rows:
            ids.append(int(self.conn.execute(INS_REVIEW, row).inserted_primary_key[0]))  # type: ignore[index]
        return ids


class BatchStore(DirectStore):
    """A unit of work for a batch: reads up front, answers from memory, writes at flush.

    :meth:`prefetch` loads the identifier holders, blocking-key members and source
    records the whole batch can touch; enrolments then see the database *and* what the
    batch added before them. Nothing is written until :meth:`flush`, so a row refused
    midway leaves no trace, and the batch costs a handful of statements.
    """

    def __init__(self, codec: RowCodec, conn: Connection, *, max_block: int) -> None:
        super().__init__(codec, conn, max_block=max_block)
        self._holders: dict[tuple[str, str, bytes], str] = {}
        self._members: dict[bytes, list[str]] = {}
        self._residents: dict[str, Resident] = {}
        self._sources: dict[tuple[str, str], str] = {}
        self._pending: dict[str, list[dict[str, Any]]] = {
            "residents": [], "blocks": [], "identifiers": [], "sources": []
        }  # fmt: skip

    def prefetch(
        self,
        identifier_keys: Iterable[tuple[str, str, bytes]],
        record_blocks: Sequence[Sequence[bytes]],
        sources: Iterable[tuple[str, str]],
        evidence_blocks: Sequence[bytes] = (),
    ) -> None:
        """Read everything the batch may need, in chunks of a few hundred keys.

        ``record_blocks`` holds each record's blocking keys: the members of every block
        are read (ids only), and only the residents :func:`choose_candidates` picks for
        some record are loaded and decrypted.
        """
        conn = self.conn
        wanted_ids: set[str] = set()
        for (kind, issuer), bidxs in by_issuer(identifier_keys).items():
            for start in range(0, len(bidxs), _CHUNK):
                rows = conn.execute(
                    Q_HOLDERS_ACTIVE(conn),
                    {"kind": kind, "issuer": issuer, "bidxs": bidxs[start : start + _CHUNK]},
                )
                for kind_, issuer_, bidx, resident_id, status in rows:
                    if status != ResidentStatus.ACTIVE:
                        resident_id = self.codec.row(conn, resident_id, follow=True)["id"]
                    self._holders[(kind_, issuer_, bidx)] = resident_id
                    wanted_ids.add(resident_id)
        blocks = sorted({key for keys in record_blocks for key in keys} | set(evidence_blocks))
        for start in range(0, len(blocks), _CHUNK):
            members = conn.execute(Q_BLOCK_MEMBERS(conn), {"keys": blocks[start : start + _CHUNK]})
            for key, resident_id in members:
                self._members.setdefault(key, []).append(resident_id)
        for keys in record_blocks:
            wanted_ids.update(choose_candidates(keys, self._members, limit=self._max_block))
        for key in evidence_blocks:
            held = set(self._members.get(key, ()))
            if len(held) <= SMALL_BLOCK:
                wanted_ids.update(held)
        by_source: dict[str, list[str]] = {}
        for source, record_id in sources:
            by_source.setdefault(source, []).append(record_id)
        for source, record_ids in by_source.items():
            for start in range(0, len(record_ids), _CHUNK):
                linked = conn.execute(
                    Q_SOURCES_IN(conn),
                    {"source": source, "record_ids": record_ids[start : start + _CHUNK]},
                )
                for src, record_id, resident_id in linked:
                    self._sources[(src, record_id)] = resident_id
        ids = sorted(wanted_ids)
        for start in range(0, len(ids), _CHUNK):
            for resident in self.codec.load(conn, ids[start : start + _CHUNK]):
                self._residents[resident.resident_id] = resident

    def holders(self, keys: Sequence[tuple[str, str, bytes]]) -> dict[tuple[str, str, bytes], str]:
        """Holders from the prefetch and from this batch."""
        return {k: self._holders[k] for k in keys if k in self._holders}

    def resident(self, resident_id: str) -> Resident:
        """The resident with what this batch added to it."""
        if resident_id not in self._residents:
            self._residents[resident_id] = super().resident(resident_id)
        return self._residents[resident_id]

    def candidates(
        self,
        block_keys: Sequence[bytes],
        evidence_blocks: Sequence[bytes] = (),
        also: Iterable[str] = (),
    ) -> list[Resident]:
        """Candidates from the prefetch and from this batch (see :func:`choose_candidates`)."""
        ids = _with_evidence(
            choose_candidates(block_keys, self._members, limit=self._max_block),
            evidence_blocks,
            self._members,
            also,
        )
        found = [self.resident(rid) for rid in ids]
        return [r for r in found if r.status == ResidentStatus.ACTIVE]

    def source_holder(self, source: str, record_id: str) -> str | None:
        """Where a source record went, from the prefetch and from this batch."""
        return self._sources.get((source, record_id))

    def add_resident(
        self, row: dict[str, Any], resident: Resident, blocks: Sequence[bytes]
    ) -> None:
        """Queue a new resident; later rows of the batch already see it."""
        self._pending["residents"].append(row)
        self._residents[resident.resident_id] = resident
        for key in blocks:
            self._pending["blocks"].append({"resident_id": resident.resident_id, "key_bidx": key})
            self._members.setdefault(key, []).append(resident.resident_id)

    def add_identifiers(
        self, resident_id: str, rows: list[dict[str, Any]], added: list[Identifier]
    ) -> None:
        """Queue identifiers; later rows of the batch find the resident by them."""
        self._pending["identifiers"].extend(rows)
        for row in rows:
            self._holders[(row["kind"], row["issuer"], row["value_bidx"])] = resident_id
        resident = self.resident(resident_id)
        held = (*resident.identifiers, *added)
        self._residents[resident_id] = resident.model_copy(
            update={"identifiers": held, "id_number": id_number_of(held)}
        )

    def add_source(self, row: dict[str, Any]) -> None:
        """Queue a source record."""
        self._pending["sources"].append(row)
        self._sources[(row["source"], row["record_id"])] = row["resident_id"]

    def add_reviews(self, rows: list[dict[str, Any]]) -> list[int]:
        """Reviews are rare: write what is pending so they can refer to it, then them."""
        self.flush()
        return super().add_reviews(rows)

    def flush(self) -> None:
        """Write everything queued, one executemany per table, parents first."""
        for key, table in (
            ("residents", RESIDENTS),
            ("blocks", BLOCKS),
            ("identifiers", IDENTIFIERS),
            ("sources", SOURCES),
        ):
            rows = self._pending[key]
            if rows:
                bulk_insert(self.conn, table, rows)
                self._pending[key] = []

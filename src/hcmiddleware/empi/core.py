"""What every part of the resident index shares: its state, identifier values, plain reads.

:class:`IndexCore` declares what :class:`~hcmiddleware.empi.index.ResidentIndex` sets
up (the engine, the keys, the row codec, the match model), turns an identifier into its
canonical form and blind index, builds identifier rows, and answers the plain reads: a
resident by id or by identifier, counts, source records.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from hcmiddleware.empi.blocking import record_keys
from hcmiddleware.empi.identity import parse_identity
from hcmiddleware.empi.matching import MatchModel, TermFrequencies
from hcmiddleware.empi.normalize import normalize_code
from hcmiddleware.empi.protection import Protector
from hcmiddleware.empi.schema import IdentifierKind, ResidentStatus, new_id
from hcmiddleware.empi.store import (
    BLOCKS,
    IDENTIFIERS,
    Q_HOLDER,
    Q_RUNNING_LOAD,
    RESIDENTS,
    SOURCES,
    RowCodec,
)
from hcmiddleware.errors import BulkLoadRunningError, IdentityError
from hcmiddleware.models import Identifier, Resident

__all__ = ["IndexCore"]


class IndexCore:
    """State, value handling and reads shared by the parts of the resident index."""

    _engine: Engine
    _protector: Protector
    _codec: RowCodec
    _auto_link: bool
    _max_block: int
    _model: MatchModel

    @property
    def protector(self) -> Protector:
        """The keys this index encrypts with (other parts add their own data-key scopes)."""
        return self._protector

    @property
    def model(self) -> MatchModel:
        """The Fellegi–Sunter model in use (trained, or the built-in starting values)."""
        return self._model

    @staticmethod
    def _refuse_during_bulk_load(conn: Any) -> None:
        """Raise :class:`BulkLoadRunningError` while a bulk load runs (or stopped midway):
        its matching holds the index in memory, and a write beside it would go unseen."""
        running = conn.execute(Q_RUNNING_LOAD).first()
        if running is not None:
            raise BulkLoadRunningError(
                f"a bulk load of {running.source} is running since "
                f"{running.started_at:%Y-%m-%d %H:%M}; the index takes no other writes "
                "until it ends",
                source=running.source,
            )

    def _open_frequencies(self, row: Any) -> dict[str, TermFrequencies]:
        """The term frequencies stored with a match-model row (decrypted), if any."""
        if row.frequencies_ct is None:
            return {}
        data = json.loads(
            self._codec.open(
                "empi_residents", "frequencies_ct", f"model:{row.id}", row.frequencies_ct
            )
        )
        return {f: TermFrequencies.from_json(text) for f, text in data.items()}

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

    def _block_bidxs(self, probe: dict[str, Any]) -> tuple[list[bytes], list[bytes], list[bytes]]:
        """The hashes of a probe's keys to store, to look up and of its evidence keys
        (see :func:`~hcmiddleware.empi.blocking.record_keys`), each in key order."""
        stored, query, evidence = record_keys(probe)
        hashed = {
            k: self._protector.blind_index("block", k) for k in sorted(stored | query | evidence)
        }
        return (
            [hashed[k] for k in sorted(stored)],
            [hashed[k] for k in sorted(query)],
            [hashed[k] for k in sorted(evidence)],
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

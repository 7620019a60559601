"""The issuers' revocation lists: canonical bytes, checks, and the store they live in.

An update is applied only when all of this holds, else it is refused with
:class:`~hcmiddleware.errors.EhcRevocationListError` and the list in force stays as
it was:

* the issuer and the key id are configured (``[ehc.keys]``), the key is that issuer's;
* the signature verifies over :func:`signed_bytes` with that key;
* a full list is newer than the one held; a delta names the version held as its
  ``base_version`` (a delta from any other version would skip or repeat changes) and
  is newer than it.

It is then applied in one transaction: the list in force is either the old one or the
new one, never a mix. E-card IDs are kept as SHA-256 digests.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from hcmiddleware import storage
from hcmiddleware.ehc.tables import EhcRevocationState, EhcRevokedCard
from hcmiddleware.errors import EhcRevocationListError
from hcmiddleware.models import EhcRevocation, EhcRevocationList

if TYPE_CHECKING:
    from hcmiddleware.ehc.crypto import PublicKey

__all__ = [
    "MAX_UPDATE",
    "ListState",
    "RevocationStore",
    "card_digest",
    "check_signature",
    "check_update",
    "check_version",
    "parse_list",
    "signed_bytes",
    "touch",
    "utc_text",
]

_STATE = cast(sa.Table, EhcRevocationState.__table__)
_REVOKED = cast(sa.Table, EhcRevokedCard.__table__)


def card_digest(ecard_id: str) -> str:
    """The SHA-256 (hex) of an e-card ID in its canonical (upper-case) form."""
    return hashlib.sha256(ecard_id.upper().encode("ascii")).hexdigest()


def utc_text(value: datetime) -> str:
    """A time as the lists spell it: ``YYYY-MM-DDTHH:MM:SSZ`` (naive times are UTC)."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    if value.year < 1000:  # strftime's %Y does not pad; isoformat would
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    # the same text as that strftime, at a fraction of its cost (a list has many times)
    return value.replace(microsecond=0).isoformat() + "Z"


def signed_bytes(update: EhcRevocationList | Mapping[str, Any]) -> bytes:
    """The bytes an issuer signs: the list without its signature, as canonical JSON.

    Canonical: keys sorted, no spaces, ASCII only, times as :func:`utc_text`, entries
    in the order given.
    """
    data = update.model_dump() if isinstance(update, EhcRevocationList) else dict(update)
    body = {
        "issuer": data["issuer"],
        "key_id": data["key_id"],
        "version": data["version"],
        "base_version": data.get("base_version"),
        "issued_at": _as_text(data["issued_at"]),
        "revoked": [
            {
                "ecard_id": entry["ecard_id"],
                "revoked_at": _as_text(entry["revoked_at"]),
                "reason": entry.get("reason", "closed"),
            }
            for entry in (
                e.model_dump() if isinstance(e, EhcRevocation) else dict(e)
                for e in data.get("revoked", ())
            )
        ],
        "restored": list(data.get("restored", ())),
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _as_text(value: Any) -> str:
    return utc_text(value) if isinstance(value, datetime) else str(value)


def _naive(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


_LOOKUP_SQL = "SELECT issuer, revoked_at FROM ehc_revoked_cards WHERE card_digest = {}"
_DELETE_SQL = "DELETE FROM ehc_revoked_cards WHERE card_digest = ? AND issuer = ?"
_INSERT_SQL = (
    "INSERT INTO ehc_revoked_cards (card_digest, issuer, revoked_at, reason) VALUES (?, ?, ?, ?)"
)
_PG_DELETE_SQL = "DELETE FROM ehc_revoked_cards WHERE card_digest = ANY(%s) AND issuer = %s"
_PG_INSERT_SQL = (
    "INSERT INTO ehc_revoked_cards (card_digest, issuer, revoked_at, reason) "
    "SELECT unnest(%s::text[]), %s, unnest(%s::timestamp[]), unnest(%s::text[])"
)


def _sqlite_time(value: datetime) -> str:
    """A naive UTC time as SQLAlchemy writes it into SQLite."""
    return _naive(value).isoformat(sep=" ", timespec="microseconds")


def _read_time(value: datetime | str) -> datetime:
    """A time read with the driver's cursor (SQLite hands back text)."""
    return datetime.fromisoformat(value) if isinstance(value, str) else value


@dataclass(frozen=True)
class ListState:
    """The list in force for one issuer."""

    issuer: str
    version: int
    key_id: str
    issued_at: datetime
    synced_at: datetime
    entries: int


#: the largest update read (bytes of JSON): about 2.5 million entries
MAX_UPDATE = 512 * 1024 * 1024


def parse_list(data: bytes | str | Mapping[str, Any]) -> EhcRevocationList:
    """A revocation list (or delta) from its JSON, or from the JSON already parsed.

    :raises EhcRevocationListError: ``format``: not JSON, not a list's fields, a field
        of the wrong type or shape (an e-card ID that is not 64 hex digits …).
    """
    from pydantic import ValidationError

    if isinstance(data, bytes | str) and len(data) > MAX_UPDATE:
        raise EhcRevocationListError(
            f"the revocation update is larger than {MAX_UPDATE:,} bytes", reason="format"
        )
    try:
        if isinstance(data, bytes | str):
            return EhcRevocationList.model_validate_json(data)
        return EhcRevocationList.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "the list"
        raise EhcRevocationListError(
            f"not a revocation list: {where}: {first['msg']}", reason="format"
        ) from None
    except (ValueError, TypeError, RecursionError):
        raise EhcRevocationListError("not a revocation list", reason="format") from None


def check_signature(update: EhcRevocationList, keys: Mapping[str, tuple[str, PublicKey]]) -> None:
    """Refuse an update that is not signed by one of its issuer's keys.

    :raises EhcRevocationListError: with ``reason`` ``issuer`` or ``signature``.
    """
    entry = keys.get(update.key_id)
    if entry is None or entry[0] != update.issuer:
        raise EhcRevocationListError(
            f"revocation list of issuer {update.issuer!r} signed with key "
            f"{update.key_id!r}, which is not one of that issuer's keys here",
            reason="issuer",
            hint="add the issuer's key under [ehc.keys], or check where the list came from",
        )
    signature = bytes.fromhex(update.signature)
    if not entry[1].verify(signature, signed_bytes(update)):
        raise EhcRevocationListError(
            f"the revocation list of {update.issuer!r} (version {update.version}) is not "
            "signed by the issuer's key",
            reason="signature",
        )


def check_update(
    update: EhcRevocationList,
    keys: Mapping[str, tuple[str, PublicKey]],
    held: ListState | None,
) -> None:
    """Refuse an update that is not the issuer's or does not follow the list held.

    ``keys`` maps key ids to ``(issuer, public key)``.

    :raises EhcRevocationListError: with ``reason`` ``issuer``, ``signature`` or
        ``version``.
    """
    check_signature(update, keys)
    check_version(update, held)


def check_version(update: EhcRevocationList, held: ListState | None) -> None:
    """Refuse an update that does not follow the list held (``reason`` ``version``)."""
    current = held.version if held is not None else None
    if update.base_version is None:
        if current is not None and update.version <= current:
            raise EhcRevocationListError(
                f"the full list (version {update.version}) is not newer than the one in "
                f"force (version {current})",
                reason="version",
            )
        return
    if current is None or update.base_version != current or update.version <= current:
        raise EhcRevocationListError(
            f"a change from version {update.base_version} to {update.version} does not "
            f"follow the list in force (version {current if current is not None else 'none'})",
            reason="version",
            hint="nothing was changed; sync again to get a full list",
        )


class RevocationStore:
    """The revocation lists in the installation's database.

    A check first looks at a sorted array of the listed digests' first 64 bits kept in
    memory (a few microseconds at a million entries, 8 bytes each); only a hit asks the
    database. The array is rebuilt when a list changes: at once for a list applied
    through this store, and within ``fresh`` seconds for one applied by another
    process sharing the database (the versions held are read at most that often).
    """

    def __init__(self, engine: Engine, *, fresh: float = 1.0) -> None:
        self.engine = engine
        self._fresh = fresh
        self._lock = threading.Lock()
        self._filter: npt.NDArray[np.uint64] | None = None
        self._filter_of: tuple[tuple[str, int], ...] = ()
        self._checked_at = 0.0
        self._lookup: str | None = None

    def _forget_filter(self) -> None:
        with self._lock:
            self._filter = None

    def _absorb(self, update: EhcRevocationList, held: ListState | None) -> None:
        """Bring the filter up to a delta just applied here, without reading the list.

        The delta's new entries join the filter; restored ones stay in it (a stale
        prefix only costs one database lookup). A full list, or a filter not built on
        the version the delta follows, is dropped and built again on the next check.
        """
        with self._lock:
            before = (update.issuer, held.version) if held is not None else None
            if (
                update.base_version is None
                or self._filter is None
                or (before not in self._filter_of)
            ):
                self._filter = None
                return
            added = np.fromiter(
                (int(card_digest(e.ecard_id)[:16], 16) for e in update.revoked),
                dtype=np.uint64,
                count=len(update.revoked),
            )
            added.sort()
            # merged in order (np.union1d re-sorts the whole million); a prefix twice
            # does no harm to the binary search
            self._filter = np.insert(self._filter, np.searchsorted(self._filter, added), added)
            self._filter_of = tuple(
                sorted((i, update.version if i == update.issuer else v) for i, v in self._filter_of)
            )

    def _listed_prefixes(self) -> npt.NDArray[np.uint64]:
        moment = time.monotonic()
        with self._lock:
            if self._filter is not None and moment - self._checked_at < self._fresh:
                return self._filter
        with self.engine.connect() as conn:
            held = tuple(
                (str(r.issuer), int(r.version))
                for r in conn.execute(
                    sa.select(_STATE.c.issuer, _STATE.c.version).order_by(_STATE.c.issuer)
                )
            )
            with self._lock:
                if self._filter is not None and held == self._filter_of:
                    self._checked_at = moment
                    return self._filter
            digests = conn.execute(sa.select(_REVOKED.c.card_digest)).scalars().all()
        prefixes = np.sort(np.fromiter((int(d[:16], 16) for d in digests), dtype=np.uint64,
                                       count=len(digests)))  # fmt: skip
        # each once; sorted and compared rather than np.unique, which builds a hash table
        # first since numpy 2.3 (about 20 times slower on a million distinct prefixes)
        if len(prefixes):
            prefixes = prefixes[np.concatenate(([True], prefixes[1:] != prefixes[:-1]))]
        with self._lock:
            self._filter, self._filter_of, self._checked_at = prefixes, held, moment
        return prefixes

    def _maybe_listed(self, digest: str) -> bool:
        prefixes = self._listed_prefixes()
        if not len(prefixes):
            return False
        key = np.uint64(int(digest[:16], 16))
        at = int(np.searchsorted(prefixes, key))
        return at < len(prefixes) and prefixes[at] == key

    def state(self, issuer: str) -> ListState | None:
        """The list in force for ``issuer``, or None if none was ever applied."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(_STATE).where(_STATE.c.issuer == issuer)).first()
        return None if row is None else ListState(**row._mapping)

    def states(self) -> list[ListState]:
        """Every issuer's list in force."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(_STATE).order_by(_STATE.c.issuer)).all()
        return [ListState(**row._mapping) for row in rows]

    def revoked(self, ecard_id: str, issuers: Iterable[str] | None = None) -> datetime | None:
        """When the e-card was revoked (the earliest listing), or None if it is not listed.

        ``issuers`` limits the search (a dynamic code's issuer); None searches all.
        """
        digest = card_digest(ecard_id)
        if not self._maybe_listed(digest):
            return None
        # a hit asks the database with the driver's cursor straight from the pool:
        # SQLAlchemy's statement layer would cost more than the indexed lookup
        if self._lookup is None:
            mark = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
            self._lookup = _LOOKUP_SQL.format(mark)
        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute(self._lookup, (digest,))
            rows = cursor.fetchall()
            cursor.close()
        finally:
            raw.close()
        wanted = None if issuers is None else set(issuers)
        times = [_read_time(at) for issuer, at in rows if wanted is None or issuer in wanted]
        return min(times) if times else None

    def apply(
        self,
        update: EhcRevocationList,
        keys: Mapping[str, tuple[str, PublicKey]],
        *,
        now: datetime | None = None,
    ) -> ListState:
        """Check ``update`` against the list held and apply it atomically.

        :raises EhcRevocationListError: refused; nothing was changed.
        """
        synced = _naive(now or datetime.now(UTC))
        # a refusal never takes the write lock: signature and version are checked first,
        # and the version once more under the lock (another process may have synced)
        check_signature(update, keys)
        check_version(update, self.state(update.issuer))
        with storage.begin_write(self.engine) as conn:
            held = self._state_in(conn, update.issuer)
            check_version(update, held)
            entries = self._write_entries(conn, update, held)
            state: dict[str, Any] = {
                "issuer": update.issuer,
                "version": update.version,
                "key_id": update.key_id,
                "issued_at": _naive(update.issued_at),
                "synced_at": synced,
                "entries": entries,
            }
            if held is None:
                conn.execute(_STATE.insert(), state)
            else:
                conn.execute(_STATE.update().where(_STATE.c.issuer == update.issuer), state)
        self._absorb(update, held)
        return ListState(**state)

    @staticmethod
    def _write_entries(conn: Connection, update: EhcRevocationList, held: ListState | None) -> int:
        """Change the issuer's entries as ``update`` says; how many it has afterwards.

        The count is kept from the rows each statement touched (counting a million
        entries would cost more than the whole delta); each statement goes to the
        driver as one batch.
        """
        issuer = update.issuer
        revoked = {card_digest(e.ecard_id): e for e in update.revoked}
        postgres = conn.dialect.name == "postgresql"
        cursor: Any = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            if update.base_version is None:
                conn.execute(_REVOKED.delete().where(_REVOKED.c.issuer == issuer))
                entries = 0
            else:
                # a restored e-card goes; one revoked again is written anew
                gone = sorted({card_digest(i) for i in update.restored} | revoked.keys())
                deleted = 0
                if gone and postgres:  # one statement over an array: no per-row round trip
                    cursor.execute(_PG_DELETE_SQL, (gone, issuer))
                    deleted = int(cursor.rowcount or 0)
                elif gone:  # SQLite's executemany loops in C
                    cursor.executemany(_DELETE_SQL, [(digest, issuer) for digest in gone])
                    deleted = int(cursor.rowcount or 0)
                entries = (held.entries if held is not None else 0) - deleted
            if revoked and postgres:
                cursor.execute(
                    _PG_INSERT_SQL,
                    (
                        list(revoked),
                        issuer,
                        [_naive(e.revoked_at) for e in revoked.values()],
                        [e.reason for e in revoked.values()],
                    ),
                )
            elif revoked:
                cursor.executemany(
                    _INSERT_SQL,
                    [(digest, issuer, _sqlite_time(e.revoked_at), e.reason)
                     for digest, e in revoked.items()],
                )  # fmt: skip
            entries += len(revoked)
        finally:
            cursor.close()
        return entries

    @staticmethod
    def _state_in(conn: Connection, issuer: str) -> ListState | None:
        row = conn.execute(sa.select(_STATE).where(_STATE.c.issuer == issuer)).first()
        return None if row is None else ListState(**row._mapping)


def touch(engine: Engine, issuer: str, *, now: datetime | None = None) -> bool:
    """Record that ``issuer``'s list in force was found current; False if none is held."""
    synced = _naive(now or datetime.now(UTC))
    with storage.begin_write(engine) as conn:
        done = conn.execute(
            _STATE.update().where(_STATE.c.issuer == issuer).values(synced_at=synced)
        )
    return bool(done.rowcount)

"""An in-memory index of the listed cards: the usual read (a card on no list) never
asks the database.

The index is a sorted array of one 64-bit fingerprint per listed card — Python's own
string hash, keyed afresh in every process — 8 bytes a card. It only ever says "on no
list" or "maybe listed": a card it may hold is looked up in the database, which stays
the truth for the state, the source and the date. It may therefore hold more than is
listed (a card taken off the list stays in it until the next rebuild; two numbers may
share a fingerprint), never less.

It is used only while it is known to be current. It is built under the versions of
every source's list (``card_list_versions``), read in the same snapshot as the cards,
and before each use it checks, cheaply, whether the database may have changed since:

* SQLite: ``PRAGMA data_version`` on a connection of its own (a few microseconds; it
  changes when any other connection, of this or another process, commits);
* PostgreSQL: ``LISTEN`` on a connection of its own — every write to the lists sends a
  ``NOTIFY`` in its transaction, delivered when it commits; polling the socket for one
  is a non-blocking read.

When something changed, the versions are read again (a tiny table); if they differ
from the index's, the index is set aside — the checks ask the database — and brought up
to date in a background thread: from the version it holds, it reads only the entries the
newer versions wrote (``card_list_entries.list_version``; a delta's cards, not the
million; all of a new source's), or everything when a source went back or is gone (a
database restored). The versions are also read at least every 10 s, changed or not. An
update applied through
this process joins the index at once (:meth:`CardIndex.will_add`): its cards are added
before its transaction commits, so the index is a superset both before and after. When
the watching connection fails, the index is set aside the same way. Cards taken off a
list stay in the index until a full rebuild, made once they are a quarter of it.
An in-memory SQLite database, or another database, is never indexed.
"""

from __future__ import annotations

import abc
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

__all__ = ["CHANNEL", "CardIndex", "IndexStatus", "fingerprints"]

log = logging.getLogger(__name__)

#: the PostgreSQL channel a write to the lists notifies (the payload: its schema)
CHANNEL = "hcm_card_lists"
#: rows fetched at a time while building (bounds the memory a build needs on top)
_CHUNK = 65_536
#: a failed build is tried again after this many seconds (checks ask the database)
_RETRY_AFTER = 5.0
#: the versions are read again at least this often, changed or not: a connection cut
#: without a word (a network fault) loses notifications and says nothing
_VERIFY_EVERY = 10.0
#: libpq's CONNECTION_OK
_CONNECTION_OK = 0
_VERSIONS_SQL = "SELECT source, version FROM card_list_versions"
_COUNTS_SQL = "SELECT source, version, entries FROM card_list_versions"
_ALL_SQL = "SELECT card_number FROM card_list_entries"
#: the entries a source's versions after the one given wrote (SQLite's and psycopg's marks)
_SINCE_SQL = {
    "qmark": "SELECT card_number FROM card_list_entries WHERE source = ? AND list_version > ?",
    "format": "SELECT card_number FROM card_list_entries WHERE source = %s AND list_version > %s",
}

Keys = npt.NDArray[np.int64]
Versions = dict[str, int]


def fingerprints(numbers: Sequence[str]) -> Keys:
    """The sorted, distinct fingerprints of card numbers."""
    return _distinct(np.fromiter(map(hash, numbers), dtype=np.int64, count=len(numbers)))


def _distinct(keys: Keys) -> Keys:
    """Sorted, each once: np.unique builds a hash table first since numpy 2.3, about 20
    times slower than sorting on a million distinct fingerprints."""
    keys = np.sort(keys)
    if len(keys) < 2:
        return keys
    keep = np.empty(len(keys), dtype=bool)
    keep[0] = True
    np.not_equal(keys[1:], keys[:-1], out=keep[1:])
    return keys[keep]


def _merge(keys: Keys, more: Keys) -> Keys:
    """``keys`` with ``more`` (both sorted, distinct) merged in, in order."""
    if not len(more):
        return keys
    if not len(keys):
        return more
    at = np.minimum(np.searchsorted(keys, more), len(keys) - 1)
    fresh = more[keys[at] != more]
    return np.insert(keys, np.searchsorted(keys, fresh), fresh) if len(fresh) else keys


@dataclass(frozen=True)
class IndexStatus:
    """What the index holds: whether it is in use, its size, and what it was built on."""

    #: built, and known to match the lists in the database
    current: bool
    #: fingerprints held (listed cards, plus any taken off since the last build)
    entries: int
    #: the memory the fingerprints take
    nbytes: int
    #: each source's list version it covers
    versions: dict[str, int]
    #: why there is no index on this database (``None`` when there can be one)
    unavailable: str | None = None


class _Watch(abc.ABC):
    """Tells, cheaply, whether the lists may have changed since it last said."""

    @abc.abstractmethod
    def changed(self) -> bool: ...

    @abc.abstractmethod
    def versions(self) -> Versions: ...

    @abc.abstractmethod
    def close(self) -> None: ...


class _SqliteWatch(_Watch):
    def __init__(self, engine: Engine) -> None:
        # a connection of its own, out of the pool: data_version counts the others' commits
        self._con: Any = _own_connection(engine)
        self._cursor = self._con.cursor()
        self._seen = self._data_version()

    def _data_version(self) -> int:
        # fetchall steps the statement to its end, so no read transaction stays open
        # (one would hold the WAL back from checkpoints and slow every other reader)
        ((version,),) = self._cursor.execute("PRAGMA data_version").fetchall()
        return int(version)

    def changed(self) -> bool:
        seen = self._data_version()
        if seen == self._seen:
            return False
        self._seen = seen
        return True

    def versions(self) -> Versions:
        return {str(s): int(v) for s, v in self._cursor.execute(_VERSIONS_SQL).fetchall()}

    def close(self) -> None:
        self._cursor.close()
        self._con.close()


class _PostgresWatch(_Watch):
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        # out of the pool, held for good: LISTEN lasts as long as the connection
        con: Any = _own_connection(engine)
        con.rollback()
        con.autocommit = True
        self._schema = str(con.execute("SELECT current_schema()").fetchone()[0]).encode()
        con.execute(f"LISTEN {CHANNEL}")
        # an idle connection hears nothing but notifications: anything else is the
        # server's last word (terminated, shutting down), read before the socket closes
        self._troubled = False
        con.add_notice_handler(self._trouble)
        self._con = con
        self._pg = con.pgconn

    def _trouble(self, _diagnostic: object) -> None:
        self._troubled = True

    def changed(self) -> bool:
        # reads what has arrived on the socket, without waiting (libpq's socket does
        # not block); raises when the connection is gone
        self._pg.consume_input()
        changed = False
        while (note := self._pg.notifies()) is not None:
            changed = changed or note.extra == self._schema
        if self._troubled or self._pg.status != _CONNECTION_OK:
            raise ConnectionError("the listening connection was closed by the server")
        return changed

    def versions(self) -> Versions:
        # on a pooled connection: a query on the listening one could swallow a
        # notification that arrives meanwhile
        with self._engine.connect() as conn:
            return {str(s): int(v) for s, v in conn.exec_driver_sql(_VERSIONS_SQL).all()}

    def close(self) -> None:
        self._con.close()


def _own_connection(engine: Engine) -> Any:
    """A driver connection made as the pool makes them (same settings), not pooled."""
    raw = engine.raw_connection()
    con = raw.driver_connection
    raw.detach()  # closing it later closes the connection; the pool forgets it
    return con


def _why_not(engine: Engine) -> str | None:
    name = engine.dialect.name
    if name == "sqlite":
        database = engine.url.database or ""
        if database in ("", ":memory:") or engine.url.query.get("mode") == "memory":
            return "an in-memory SQLite database has no other connection to watch it"
        return None
    if name == "postgresql" and engine.dialect.driver == "psycopg":
        return None
    return f"no cheap change check on {name} ({engine.dialect.driver})"


def _make_watch(engine: Engine) -> _Watch:
    if engine.dialect.name == "sqlite":
        return _SqliteWatch(engine)
    return _PostgresWatch(engine)


@dataclass
class _Held:
    """Fingerprints and the snapshot they were read from."""

    keys: Keys
    #: each source's list version, and its number of entries at that version
    versions: Versions
    entries: dict[str, int]


class CardIndex:
    """The fingerprints of the listed cards, and whether they can be trusted now."""

    def __init__(self, engine: Callable[[], Engine]) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        #: the index in use; None while it is not known to be current
        self._held: _Held | None = None
        #: the last index in use, once it fell behind: what a catch-up starts from
        self._behind: _Held | None = None
        #: updates being applied here: source -> (version before, after, their cards)
        self._pending: dict[str, tuple[int | None, int, Keys]] = {}
        #: read the versions at the next check, changed or not (after a build)
        self._verify = False
        #: fingerprints of cards no longer listed (a rebuild drops them)
        self._surplus = 0
        self._watch: _Watch | None = None
        self._builder: threading.Thread | None = None
        self._failed_at: float | None = None
        self._verified_at = 0.0
        self._generation = 0

    # -- the check -------------------------------------------------------------------

    def unlisted(self, card_number: str) -> bool:
        """True when the card is on no list, for sure; False: ask the database."""
        with self._lock:
            held = self._held
            if held is None or not self._still_current():
                self._build_soon()
                return False
            keys = held.keys
        key = hash(card_number)
        at = int(keys.searchsorted(key))
        return at == len(keys) or int(keys[at]) != key

    def _still_current(self) -> bool:
        """Under the lock: the index matches the database, else it is set aside."""
        watch, held = self._watch, self._held
        if watch is None or held is None:  # closed
            self._held = None
            return False
        try:
            now = time.monotonic()
            if not (watch.changed() or self._verify or now - self._verified_at > _VERIFY_EVERY):
                return True
            self._verify, self._verified_at = False, now
            if self._matches(watch.versions()):
                return True
            reason = "another process changed a list"
        except Exception as exc:  # the watching connection failed: trust the database
            log.warning("card index: the change check failed (%s); checks ask the database "
                        "until it is brought up to date", type(exc).__name__)  # fmt: skip
            self._close_watch()
            reason = "the change check failed"
        log.debug("card index set aside: %s", reason)
        self._held, self._behind = None, held
        return False

    def _matches(self, versions: Versions) -> bool:
        held = self._held
        assert held is not None
        if versions == held.versions:
            return True
        # an update applied here may have committed before it was marked applied: its
        # cards are in the index already
        ahead = dict(held.versions)
        for source, (before, after, _keys) in self._pending.items():
            if held.versions.get(source) == before:
                ahead[source] = after
        return versions == ahead

    # -- updates applied here ----------------------------------------------------------

    def will_add(self, source: str, before: int | None, after: int, numbers: Sequence[str]) -> None:
        """In an update's transaction, before it commits: its cards join the index.

        ``before`` is the source's version held, ``after`` the update's. Call
        :meth:`settle` once the transaction ended, committed or not.
        """
        added = fingerprints(numbers)
        with self._lock:
            self._pending[source] = (before, after, added)
            held = self._held
        # merged outside the lock (a million fingerprints take milliseconds to copy),
        # so checks go on meanwhile; it only ever grows the index
        merged = None if held is None else _merge(held.keys, added)
        with self._lock:
            if held is not None and self._held is held and merged is not None:
                held.keys = merged
            elif self._held is not None:  # rebuilt meanwhile (with the pending cards)
                self._held.keys = _merge(self._held.keys, added)

    def settle(self, source: str, removed: int | None, entries: int = 0) -> None:
        """The update's transaction ended: committed, having removed ``removed`` of the
        source's entries and left ``entries``, or (``None``) rolled back — its cards may
        stay in the index."""
        with self._lock:
            pending = self._pending.pop(source, None)
            held = self._held
            if removed is None or pending is None or held is None:
                return
            before, after, _added = pending
            if held.versions.get(source) != before:
                return  # not built on that version: the next check finds out
            held.versions[source] = after
            held.entries[source] = entries
            self._surplus += removed
            if self._surplus > max(10_000, len(held.keys) // 4):
                self._build_soon()  # the index in use stays meanwhile

    # -- building ----------------------------------------------------------------------

    def _build_soon(self) -> None:
        """Under the lock: start a build in the background, unless one runs or failed."""
        if self._builder is not None:
            return
        if self._failed_at is not None and time.monotonic() - self._failed_at < _RETRY_AFTER:
            return
        if _why_not(self._engine()) is not None:
            return
        self._builder = threading.Thread(
            target=self._build, args=(self._generation,), name="hcm-card-index", daemon=True
        )
        self._builder.start()

    def build(self) -> IndexStatus:
        """Build the index now, in this thread, unless it is current (a service calls
        it as it starts, so that its first card reads do not ask the database).

        :raises Exception: what reading the database raised (the checks then ask it).
        """
        if _why_not(self._engine()) is not None:
            return self.status()
        while True:
            with self._lock:
                if self._held is not None and self._still_current():
                    return self._status()
                if self._builder is None:
                    self._builder = threading.current_thread()
                    generation = self._generation
                    break
                builder = self._builder
            builder.join()
        self._build(generation, background=False)
        return self.status()

    def _build(self, generation: int, *, background: bool = True) -> None:
        """Bring the index up to date: catch up from the one set aside, or read it all."""
        try:
            engine = self._engine()
            with self._lock:
                if generation != self._generation:
                    return  # closed meanwhile
                if self._watch is None:  # watching starts before the snapshot is read
                    self._watch = _make_watch(engine)
                # a catch-up starts from the index set aside; a build for too many
                # cards no longer listed starts afresh
                base = self._behind or self._held
                if self._surplus > max(10_000, (len(base.keys) if base else 0) // 4):
                    base = None
            fresh, removed = self._read(engine, base)
            with self._lock:
                if generation != self._generation:
                    return
                for _before, _after, added in self._pending.values():
                    fresh.keys = _merge(fresh.keys, added)
                self._held, self._behind = fresh, None
                self._surplus = removed if base is None else self._surplus + removed
                self._verify, self._failed_at = True, None
            log.debug("card index up to date: %d fingerprints", len(fresh.keys))
        except Exception as exc:
            with self._lock:
                self._failed_at = time.monotonic()
            log.warning("card index: building failed (%s); checks ask the database",
                        type(exc).__name__)  # fmt: skip
            if not background:
                raise
        finally:
            with self._lock:
                if self._builder is threading.current_thread():
                    self._builder = None

    @staticmethod
    def _read(engine: Engine, base: _Held | None) -> tuple[_Held, int]:
        """The index as of one snapshot of the database, and how many of its fingerprints
        are of cards no longer listed.

        From ``base``, only the entries written by the versions after it are read (a
        delta another process applied: its cards, not the million); without one, or
        when a source is new or went back (a database restored), every entry is.
        """
        options = {"isolation_level": "REPEATABLE READ"} if engine.dialect.name != "sqlite" else {}
        since_sql = _SINCE_SQL["qmark" if engine.dialect.paramstyle == "qmark" else "format"]
        with engine.connect().execution_options(**options) as conn, conn.begin():
            listed = conn.exec_driver_sql(_COUNTS_SQL)
            versions: Versions = {}
            entries: dict[str, int] = {}
            for source, version, count in listed.all():
                versions[str(source)], entries[str(source)] = int(version), int(count)
            if base is not None and any(
                versions.get(source, -1) < version for source, version in base.versions.items()
            ):
                base = None  # a source gone or gone back: start afresh
            cursor: Any = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            try:
                parts: list[Keys] = []
                removed = 0
                if base is None:
                    cursor.execute(_ALL_SQL)
                    parts.extend(_fetch(cursor))
                else:
                    parts.append(base.keys)
                    for source, version in versions.items():
                        since = base.versions.get(source)
                        if since == version:
                            continue
                        cursor.execute(since_sql, (source, since or 0))
                        new = list(_fetch(cursor))
                        parts.extend(new)
                        # what the source had, plus what it wrote, less what it has now
                        written = sum(len(p) for p in new)
                        removed += max(0, base.entries.get(source, 0) + written - entries[source])
            finally:
                cursor.close()
        keys = _distinct(np.concatenate(parts)) if parts else np.empty(0, dtype=np.int64)
        return _Held(keys, versions, entries), removed

    # -- state ---------------------------------------------------------------------------

    def status(self) -> IndexStatus:
        """What the index holds now (checking first that it is still current)."""
        why = _why_not(self._engine())
        with self._lock:
            if self._held is not None:
                self._still_current()
            status = self._status()
        if why is not None:
            return IndexStatus(False, 0, 0, {}, unavailable=why)
        return status

    def _status(self) -> IndexStatus:
        held = self._held
        if held is None:
            return IndexStatus(False, 0, 0, {})
        return IndexStatus(True, len(held.keys), int(held.keys.nbytes), dict(held.versions))

    def _close_watch(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None:
            try:
                watch.close()
            except Exception:  # already broken: nothing to release
                log.debug("card index: closing the watching connection failed")

    def close(self) -> None:
        """Drop the index and its watching connection (the Middleware is closing)."""
        with self._lock:
            self._generation += 1
            self._held = self._behind = None
            self._pending, self._surplus = {}, 0
            self._close_watch()
            self._failed_at = None


def _fetch(cursor: Any) -> Iterator[Keys]:
    """The fingerprints of the card numbers a query returns, a chunk at a time."""
    while chunk := cursor.fetchmany(_CHUNK):
        yield np.fromiter((hash(row[0]) for row in chunk), np.int64, len(chunk))

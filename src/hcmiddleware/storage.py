"""Database engines for the index and the journal: SQLite by default, PostgreSQL shared."""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import DeclarativeBase

from hcmiddleware._optional import needs_extra
from hcmiddleware.errors import MissingExtraError, StorageError

__all__ = [
    "Base",
    "WriteBusyError",
    "begin_write",
    "create_engine",
    "current_revision",
    "fold_log",
    "head_revision",
    "ping",
    "upgrade",
    "urgent_waiting",
    "writing",
]


class Base(DeclarativeBase):
    """Declarative base shared by every table of the product (index, faces, journal)."""


#: how long a SQLite connection waits for another connection's lock
_BUSY_TIMEOUT_MS = 5000


class WriteBusyError(Exception):
    """:func:`begin_write` with ``wait=False`` found the write lock taken; nothing was
    begun. Not an error of the installation: the caller writes later, or elsewhere."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # The sqlite3 module opens transactions on its own, late (only before a write) and
    # commits on SAVEPOINT release; leave transactions to SQLAlchemy instead (_sqlite_begin),
    # so a transaction is one from its first read and savepoints nest inside it.
    dbapi_connection.isolation_level = None
    # WAL lets readers work while one writer commits; synchronous=FULL because the
    # journal must survive a power cut between "written" and "sent".
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
    # The default page cache is 2 MiB; the index's B-trees of random 32-byte keys
    # (blind indexes) then miss on almost every insert and lookup once the file is a
    # few hundred MB. 64 MiB per connection keeps their inner pages in memory.
    cursor.execute("PRAGMA cache_size=-65536")
    # Beyond that, read pages through a memory map rather than a read() call each: a
    # million-resident index is a few GB, and importing into it read gigabytes a minute
    # through syscalls. SQLite caps the map at its build's maximum (2 GiB here).
    cursor.execute("PRAGMA mmap_size=2147483648")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    # A transaction that will write takes the write lock up front (IMMEDIATE): in WAL mode
    # a reader that later tries to write fails at once with SQLITE_BUSY if another writer
    # committed meanwhile, whereas waiting for the lock is covered by busy_timeout.
    if conn.get_execution_options().get("hcm_write"):
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.exec_driver_sql("BEGIN")


def create_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine for ``url``; SQLite connections get WAL and durable commits."""
    try:
        with needs_extra(f"databases at {sa.engine.make_url(url).drivername}"):
            engine = sa.create_engine(url, **kwargs)
    except MissingExtraError:
        raise
    except Exception as exc:  # bad URL, another driver not installed
        raise StorageError(
            f"cannot use database {sa.engine.make_url(url).render_as_string(hide_password=True)}"
            f": {exc}",
            hint="check [database] url in the config file and that its driver is installed",
        ) from exc
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        sa.event.listen(engine, "begin", _sqlite_begin)
    return engine


#: One writer at a time per SQLite engine inside this process (see :func:`begin_write`).
_WRITERS: weakref.WeakKeyDictionary[Engine, _Turn] = weakref.WeakKeyDictionary()
_WRITERS_LOCK = threading.Lock()
#: seconds a writer waits for the process's turn (SQLite's busy_timeout is as long)
_WRITER_WAIT = 5.0


class _Turn:
    """The process's turn to write on one SQLite engine: one writer at a time, again
    for the thread that holds it (nested), and urgent writers waiting go first.

    A lock of Python's own has no order among its waiters: a writer that must not wait
    (an alarm) could lose the turn to each of a stream of others (positions, audit
    entries). Here a writer that is not urgent does not take the turn while an urgent
    one waits; one in progress is never interrupted.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition(threading.Lock())
        self._owner: int | None = None
        self._depth = 0
        self._urgent = 0

    def acquire(self, *, urgent: bool, timeout: float) -> bool:
        me = threading.get_ident()
        with self._changed:
            if self._owner == me:
                self._depth += 1
                return True
            deadline = time.monotonic() + timeout
            if urgent:
                self._urgent += 1
            try:
                while self._owner is not None or (self._urgent and not urgent):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self._changed.wait(left)
                self._owner, self._depth = me, 1
                return True
            finally:
                if urgent:
                    self._urgent -= 1
                    if self._owner != me:  # gave up: the others may go now
                        self._changed.notify_all()

    def release(self) -> None:
        with self._changed:
            self._depth -= 1
            if self._depth == 0:
                self._owner = None
                self._changed.notify_all()

    @property
    def urgent_waiting(self) -> bool:
        """Is an urgent writer waiting for the turn?"""
        return self._urgent > 0


def _writer_turn(engine: Engine) -> _Turn:
    with _WRITERS_LOCK:
        turn = _WRITERS.get(engine)
        if turn is None:
            turn = _WRITERS[engine] = _Turn()
        return turn


@contextmanager
def begin_write(
    engine: Engine, *, durable: bool = True, urgent: bool = False, wait: bool = True
) -> Iterator[Connection]:
    """A transaction that will write: like ``engine.begin()``, but on SQLite it takes the
    write lock at its start, so concurrent writers queue instead of failing.

    On SQLite the threads of this process queue for the write lock on a turn of their
    own first: SQLite's busy handler waits for a lock held by another connection by
    sleeping and polling (1, 2, 5, 10 … ms), so threads that each wait there lose
    milliseconds per commit; a thread waiting here starts as soon as the writer before it
    commits. Other processes still meet the database's own lock (``busy_timeout``).

    ``urgent=True`` goes before the writers waiting that are not urgent (a ward alarm
    before a batch of positions); it does not interrupt one in progress, so the others
    keep their transactions short. On SQLite an urgent commit also leaves folding the
    write-ahead log into the database (a checkpoint: copying pages, syncing the file)
    to the other commits or to :func:`fold_log`, unless the log has grown past
    10,000 pages.

    ``durable=False`` commits without waiting for the disk (SQLite: ``synchronous=NORMAL``
    for this commit; PostgreSQL: ``synchronous_commit=off``): safe against a crash of the
    process, not of the machine, and the next durable commit carries it to disk. For
    writes whose loss in a power cut costs nothing (a band's latest position).

    ``wait=False`` takes the write lock only if it is free at once — no writer of this
    process has the turn or waits for it urgently, and no other connection holds the
    database's lock — and otherwise raises :class:`WriteBusyError` with nothing begun: for a
    thread that must not wait (an event loop). Only SQLite can promise that; on other
    databases it raises :class:`WriteBusyError` at once.
    """
    if not wait and engine.dialect.name != "sqlite":
        raise WriteBusyError(f"a {engine.dialect.name} transaction cannot promise not to wait")
    held = _held()
    held.append(engine)
    try:
        if engine.dialect.name == "sqlite":
            turn = _writer_turn(engine)
            # as long as SQLite's own busy_timeout; past it, SQLite's lock decides as before
            got = turn.acquire(urgent=urgent, timeout=_WRITER_WAIT if wait else 0.0)
            if not got and not wait:
                raise WriteBusyError("another writer of this process has the turn")
            try:
                with _begin_write(engine, durable=durable, urgent=urgent, wait=wait) as conn:
                    yield conn
            finally:
                if got:
                    turn.release()
        else:
            with _begin_write(engine, durable=durable) as conn:
                yield conn
    finally:
        held.pop()


def urgent_waiting(engine: Engine) -> bool:
    """Is an urgent writer of this process waiting for its turn on ``engine``? A long
    series of writes that are not urgent may let it go first between two transactions."""
    if engine.dialect.name != "sqlite":
        return False
    return _writer_turn(engine).urgent_waiting


def writing(engine: Engine) -> bool:
    """True inside a :func:`begin_write` transaction on ``engine`` in this thread."""
    return any(e is engine for e in _held())


_THREAD = threading.local()


def _held() -> list[Engine]:
    held: list[Engine] | None = getattr(_THREAD, "engines", None)
    if held is None:
        held = _THREAD.engines = []
    return held


#: SQLite's own default: the commit that takes the write-ahead log past this many pages
#: copies it into the database (a checkpoint, with a sync of the database file)
_AUTOCHECKPOINT = 1000
#: for an urgent commit: the checkpoint is left to the others, unless the log is huge
_URGENT_AUTOCHECKPOINT = 10_000


@contextmanager
def _begin_write(
    engine: Engine, *, durable: bool, urgent: bool = False, wait: bool = True
) -> Iterator[Connection]:
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        raw: Any = conn.connection.driver_connection
        if sqlite and not durable:
            raw.execute("PRAGMA synchronous=NORMAL")
        if sqlite and urgent:
            raw.execute(f"PRAGMA wal_autocheckpoint={_URGENT_AUTOCHECKPOINT}")
        if sqlite and not wait:
            raw.execute("PRAGMA busy_timeout=0")
        try:
            write = conn.execution_options(hcm_write=True)
            try:
                transaction = write.begin()  # SQLite: BEGIN IMMEDIATE, the write lock
            except sa.exc.OperationalError as exc:
                if sqlite and not wait and _locked(exc):
                    raise WriteBusyError(
                        "another connection holds the database's write lock"
                    ) from exc
                raise
            with transaction:
                if not durable and conn.dialect.name == "postgresql":
                    write.exec_driver_sql("SET LOCAL synchronous_commit = off")
                yield write
        finally:
            if sqlite and not durable:
                raw.execute("PRAGMA synchronous=FULL")
            if sqlite and urgent:
                raw.execute(f"PRAGMA wal_autocheckpoint={_AUTOCHECKPOINT}")
            if sqlite and not wait:
                raw.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")


def _locked(exc: sa.exc.OperationalError) -> bool:
    """SQLITE_BUSY (or SQLITE_LOCKED): another connection has the lock."""
    code = getattr(exc.orig, "sqlite_errorcode", None)
    if code is not None:
        return int(code) & 0xFF in (5, 6)
    return "locked" in str(exc.orig) or "busy" in str(exc.orig)


def fold_log(engine: Engine) -> None:
    """SQLite: copy what the write-ahead log holds into the database now, as far as it
    can without waiting for anyone (a passive checkpoint), outside the writers' turn —
    so that no writer's commit has to (see ``urgent`` in :func:`begin_write`). Nothing
    on other databases."""
    if engine.dialect.name != "sqlite":
        return
    with engine.connect() as conn:
        raw: Any = conn.connection.driver_connection  # outside any transaction
        raw.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


def ping(engine: Engine) -> None:
    """Open a connection and run a trivial query; raise StorageError if that fails."""
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:
        raise StorageError(
            f"cannot reach database {engine.url.render_as_string(hide_password=True)}: "
            f"{type(exc).__name__}",
            hint="check that the database server is running and [database] url is right",
        ) from exc


def _alembic_config() -> Any:
    from alembic.config import Config

    config = Config()
    # The environment ships inside the package, so no alembic.ini is needed at run time.
    config.set_main_option(
        "script_location", str(resources.files("hcmiddleware").joinpath("migrations"))
    )
    return config


def head_revision() -> str:
    """The newest migration this installation ships."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None  # the package always ships at least one revision
    return head


def current_revision(engine: Engine) -> str | None:
    """The migration the database is at, or ``None`` for an empty database."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


#: Alembic's migration context is one per process: two threads migrating at once (the
#: index and the e-card service opening on first use) would share it.
_UPGRADE_LOCK = threading.Lock()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database's tables up to ``revision`` (default: the newest), in one transaction.

    Safe to call at every start: a database already at the head is left as it is. One
    migration runs at a time in a process.
    """
    from alembic import command

    config = _alembic_config()
    try:
        with _UPGRADE_LOCK, engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
    except Exception as exc:
        raise StorageError(
            f"cannot migrate database {engine.url.render_as_string(hide_password=True)} "
            f"to {revision}: {type(exc).__name__}: {exc}",
            hint="check that the database user may create tables, and that no newer "
            "version of hcmiddleware migrated this database already",
        ) from exc

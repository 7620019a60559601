"""``middleware.audit``: append to the chain, announce, checkpoint, list, verify, export."""

from __future__ import annotations

import logging
import socket
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from hcmiddleware import storage
from hcmiddleware.access.context import counted as _counted
from hcmiddleware.access.context import current as _acting
from hcmiddleware.access.service import SYSTEM_ROLE
from hcmiddleware.audit import chain
from hcmiddleware.audit.tables import HEAD_ID, AuditCheckpointRow, AuditHeadRow, AuditLogRow
from hcmiddleware.errors import AuditAlgorithmError, AuditError, AuditInputError, HcmError
from hcmiddleware.models import AuditCheckpoint, AuditEntry, AuditEvent

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

    from hcmiddleware.audit.verify import VerifyReport
    from hcmiddleware.runtime import Middleware

__all__ = ["Audit", "Held", "Outcome"]

log = logging.getLogger("hcmiddleware.audit")

Outcome = Literal["ok", "refused", "failed"]
_OUTCOMES = frozenset({"ok", "refused", "failed"})

_LOG: sa.Table = AuditLogRow.__table__  # type: ignore[assignment]
_HEAD: sa.Table = AuditHeadRow.__table__  # type: ignore[assignment]
_CHECKPOINTS: sa.Table = AuditCheckpointRow.__table__  # type: ignore[assignment]

#: The append runs on the driver's cursor, in the caller's transaction: through
#: SQLAlchemy's statement layer the three statements cost more than the work they do.
#: The head row is locked first (an UPDATE: a row lock on PostgreSQL; on SQLite the
#: write transaction holds the database).
_NEXT = (
    "UPDATE audit_head SET seq = seq + 1 WHERE id = 1 "
    "RETURNING seq, hash, algorithm, checkpoint_seq, checkpoint_at"
)
_SQLITE_ADD = (
    "INSERT INTO audit_log (seq, at, action, actor, subject, outcome, user_id, role, "
    "terminal, details, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_SQLITE_SET = "UPDATE audit_head SET hash = ?, algorithm = coalesce(algorithm, ?) WHERE id = 1"
#: PostgreSQL: the entry and the head's new hash in one round trip
_PG_ADD_SET = (
    "WITH entry AS (INSERT INTO audit_log (seq, at, action, actor, subject, outcome, "
    "user_id, role, terminal, details, prev_hash, hash) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)) "
    "UPDATE audit_head SET hash = %s, algorithm = coalesce(algorithm, %s) WHERE id = 1"
)
#: PostgreSQL, when this process wrote the last entry: one round trip, no rows back. The
#: head moves only if it still is where this process left it (its UPDATE takes the row
#: lock, held to the end of the transaction), and the entry is inserted only if the head
#: moved: the row count says which (0: someone else appended since, nothing was written,
#: and the append takes the head's lock and reads it). Prepared on the connection.
_PG_AFTER_OWN = (
    "WITH head AS (UPDATE audit_head SET seq = %s, hash = %s "
    "WHERE id = 1 AND seq = %s AND hash = %s AND algorithm = %s RETURNING 1) "
    "INSERT INTO audit_log (seq, at, action, actor, subject, outcome, user_id, role, "
    "terminal, details, prev_hash, hash) "
    "SELECT %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s FROM head"
)
assert HEAD_ID == 1  # the statements above name the head row
_SET_HASH = _HEAD.update().where(_HEAD.c.id == HEAD_ID)
_READ_HEAD = sa.select(_HEAD).where(_HEAD.c.id == HEAD_ID)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _aware(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _default_terminal() -> str:
    name = "".join(ch for ch in socket.gethostname() if ch.isprintable()).strip()
    return (name or "terminal")[:64]


class _Pending:
    """An entry waiting for the group commit that writes it (:meth:`Audit._commit_own`)."""

    __slots__ = ("details", "entry", "error", "fields", "shown")

    def __init__(self, fields: tuple[Any, ...], details: Mapping[str, str]) -> None:
        self.fields = fields
        self.details = details
        self.entry: AuditEntry | None = None
        self.error: HcmError | None = None
        #: in an :meth:`Audit.grouped` block: the entry handed out before its commit
        self.shown: AuditEntry | None = None


class Held:
    """The entries an :meth:`Audit.held` block recorded, until :meth:`Audit.commit_held`."""

    __slots__ = ("pending",)

    def __init__(self) -> None:
        self.pending: list[_Pending] = []

    def __len__(self) -> int:
        return len(self.pending)


def _show(committed: list[_Pending]) -> None:
    """Give the entries a :meth:`Audit.held` block handed back their place in the chain."""
    for held in committed:
        if held.shown is not None and held.entry is not None:
            held.shown.__dict__.update(
                seq=held.entry.seq, prev_hash=held.entry.prev_hash, hash=held.entry.hash
            )


#: the entries an :meth:`Audit.grouped` block holds, and the log they are for
_GROUPED: ContextVar[tuple[Audit, list[_Pending]] | None] = ContextVar(
    "hcm_audit_grouped", default=None
)


class Audit:
    """The tamper-evident audit log of one Middleware (``middleware.audit``, R-SEC-1).

    Call it as before — ``mw.audit("card.read", actor="kiosk-7", subject=rid,
    reader=name)`` — and the act is appended to a hash chain in the installation's
    database, then announced through ``hcm_audit_event``. :meth:`record` with
    ``connection=`` (from :meth:`transaction` or :func:`hcmiddleware.storage.begin_write`)
    writes the entry in the act's own transaction: both commit, or neither.

    Every ``[audit] checkpoint_every`` entries or ``checkpoint_minutes`` minutes, and
    when the Middleware closes, the last entry's number and hash are signed and pushed
    out through ``hcm_audit_checkpoint``. :meth:`verify` finds any entry changed,
    removed, inserted or reordered since, and names the first.

    An act that cannot be audited fails with :class:`~hcmiddleware.errors.AuditError`;
    an entry holding what the log must not (an ID number, a phone number, control
    characters) with :class:`~hcmiddleware.errors.AuditInputError`.
    """

    def __init__(self, middleware: Middleware, *, engine: Engine | None = None) -> None:
        self._mw = middleware
        self._own_engine = engine
        self.settings = middleware.config.audit
        #: this terminal's ID in entries and checkpoints
        self.terminal = self.settings.terminal or _default_terminal()
        #: the user entries of unbound calls name ([access] system_user)
        self._system_user = middleware.config.access.system_user
        self._lock = threading.Lock()
        self._opened: Engine | None = None
        self._algorithm: str | None = None
        #: entries written in a caller's transaction, by connection, until it ends
        self._held: weakref.WeakKeyDictionary[Connection, list[AuditEntry]] = (
            weakref.WeakKeyDictionary()
        )
        #: per connection: how many entries it held when each open savepoint began
        self._savepoints: weakref.WeakKeyDictionary[Connection, list[int]] = (
            weakref.WeakKeyDictionary()
        )
        self._held_lock = threading.Lock()
        #: appends in transactions of their own, waiting for the next group commit
        self._group = threading.Condition()
        self._waiting: list[_Pending] = []
        self._leading = False
        #: engines whose transactions are followed (see :meth:`attach`)
        self._attached: weakref.WeakSet[Engine] = weakref.WeakSet()
        #: committed entries not yet announced through hcm_audit_event
        self._committed: deque[AuditEntry] = deque()
        self._due = False
        self._appended = False
        #: PostgreSQL: the last entry this process wrote (number, hash, hash function)
        self._tail: tuple[int, bytes, str] | None = None
        #: PostgreSQL: the head's last checkpoint as this process last saw it (number,
        #: time); a checkpoint found not due refreshes it
        self._mark: tuple[int, datetime | None] | None = None

        self._signing: Ed25519PrivateKey | None = None
        self._keys: dict[str, Ed25519PublicKey] | None = None
        if engine is not None:
            self.attach(engine)

    # -- set-up -----------------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        """The database the chain lives in (the installation's)."""
        return self._own_engine if self._own_engine is not None else self._mw.engine

    @property
    def algorithm(self) -> str:
        """The chain's hash function: the configured one until the chain has started."""
        return self._algorithm or self.settings.hash

    def open(self) -> None:
        """Migrate the database and check the chain's hash function against the config.

        Done on first use; call it at start to fail early.

        :raises AuditAlgorithmError: ``[audit] hash`` is not the chain's.
        """
        engine = self.engine
        if self._opened is engine:
            return
        with self._lock:
            if self._opened is engine:
                return
            storage.upgrade(engine)
            with engine.connect() as conn:
                self._check_head(conn)
            self._opened = engine

    def _check_head(self, conn: Connection) -> None:
        try:
            head = conn.execute(_READ_HEAD).first()
        except sa.exc.DBAPIError as exc:
            raise AuditError(
                f"the audit log's tables cannot be read ({type(exc.orig).__name__})",
                hint="migrate the database first: start the Middleware once, or 'hcm doctor'",
            ) from exc
        if head is None:
            raise AuditError(
                "the audit log's head row is missing: the table was emptied by hand",
                hint="restore the database from a backup, then run 'hcm audit verify'",
            )
        if head.algorithm is not None:
            self._check_algorithm(head.algorithm)
            self._algorithm = head.algorithm

    def _check_algorithm(self, chain_algorithm: str) -> None:
        if chain_algorithm != self.settings.hash:
            source = self._mw.config.source
            raise AuditAlgorithmError(
                f"the audit chain uses {chain_algorithm} but [audit] hash is {self.settings.hash}",
                chain=chain_algorithm,
                configured=self.settings.hash,
                file=str(source) if source else None,
            )

    @property
    def signing_key(self) -> Ed25519PrivateKey | None:
        """The terminal's checkpoint key (``[audit] signing_key``), or ``None``."""
        if self._signing is None and self.settings.signing_key is not None:
            from hcmiddleware.audit.signing import private_key_from_text

            self._signing = private_key_from_text(self.settings.signing_key.get_secret_value())
        return self._signing

    def public_keys(self) -> dict[str, Ed25519PublicKey]:
        """Keys checkpoints may be signed with, by key ID: this terminal's and ``verify_keys``."""
        if self._keys is None:
            from hcmiddleware.audit.signing import key_id, public_key_from_file

            keys: dict[str, Ed25519PublicKey] = {}
            for path in self.settings.verify_keys:
                public = public_key_from_file(path)
                keys[key_id(public)] = public
            own = self.signing_key
            if own is not None:
                keys[key_id(own)] = own.public_key()
            self._keys = keys
        return self._keys

    # -- appending --------------------------------------------------------------------

    def __call__(
        self,
        action: str,
        *,
        actor: str,
        subject: str | None = None,
        outcome: Outcome = "ok",
        user: str | None = None,
        role: str | None = None,
        terminal: str | None = None,
        **details: str,
    ) -> AuditEntry:
        """Append one audited act in a transaction of its own, and announce it.

        :param action: dotted verb (``card.read``, ``money.pay``).
        :param actor: the operator or terminal that acted.
        :param subject: an opaque ID (resident ID, transaction ID) — never a name or an
            ID number.
        :param user: the signed-in user's opaque ID; ``role`` the role they acted in.
        :param terminal: where; default ``[audit] terminal``.
        :param details: short text values (``reader="R0"``, ``count="3"``).
        :return: the entry as stored, with its number and hash.
        """
        return self.record(
            action,
            actor=actor,
            subject=subject,
            outcome=outcome,
            user=user,
            role=role,
            terminal=terminal,
            details=details,
        )

    def record(
        self,
        action: str,
        *,
        actor: str,
        subject: str | None = None,
        outcome: Outcome = "ok",
        details: Mapping[str, str] | None = None,
        user: str | None = None,
        role: str | None = None,
        terminal: str | None = None,
        connection: Connection | None = None,
    ) -> AuditEntry:
        """Like calling the log, with the details as a mapping — and, with ``connection``,
        in the caller's own transaction (from :meth:`transaction`, or
        :func:`hcmiddleware.storage.begin_write` on ``mw.engine``): the act and its entry
        commit together, or neither; the entry is announced after the commit.
        """
        return self._append(
            datetime.now(UTC),
            action,
            actor,
            subject,
            outcome,
            user,
            role,
            terminal,
            details or {},
            connection,
        )

    def append(self, event: AuditEvent, *, connection: Connection | None = None) -> AuditEntry:
        """Append an :class:`AuditEvent` made elsewhere (its time is kept)."""
        return self._append(
            _aware(event.at),
            event.action,
            event.actor,
            event.subject,
            event.outcome,
            event.user,
            event.role,
            event.terminal,
            event.details,
            connection,
        )

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction on the log's database for an act and its entries.

        ::

            with mw.audit.transaction() as conn:
                conn.execute(...)                                   # the act
                mw.audit.record("x.done", actor=who, connection=conn)

        Both commit at the end of the block, or neither; the entries are announced after.
        """
        self.open()
        with storage.begin_write(self.engine) as conn:
            yield conn
        self.flush()

    @contextmanager
    def grouped(self) -> Iterator[None]:
        """Commit the entries recorded in the block outside a transaction together: one
        group commit (:meth:`record_many`'s) when the block ends — also when it raises —
        instead of a commit each.

        For one step's acts that have no transaction to share, with nothing slow
        between them (the card read and the identification it makes, the card written
        and the visit's entry): an entry waits at most for the end of the block, and
        the block does not end before its entries are committed. Entries written in a
        transaction (``connection=``) are not held. Inside, :meth:`record` returns the
        entry as it will be stored; the commit sets its ``seq`` and hashes. A block
        inside another commits with the outer one.

        :raises AuditError: the entries could not be committed (none of them was).
        """
        with self.held() as entries:
            try:
                yield
            finally:
                self.commit_held([entries])

    @contextmanager
    def held(self) -> Iterator[Held]:
        """Hold the entries recorded in the block outside a transaction, for the caller
        to commit with :meth:`commit_held` — in another thread, together with other
        blocks' — before anything the acts produced is shown.

        For an act whose only effect is what it shows (a lookup): its answer waits for
        the commit, but the thread that made it need not. Leaving the block commits
        nothing; entries held and never committed are lost, so commit in a ``finally``.
        Inside :meth:`grouped` or another ``held`` block the outer block's commit takes
        them (the handle stays empty).
        """
        outer = _GROUPED.get()
        entries = Held()
        if outer is not None and outer[0] is self:
            yield entries
            return
        token = _GROUPED.set((self, entries.pending))
        try:
            yield entries
        finally:
            _GROUPED.reset(token)

    def commit_held(self, blocks: Iterable[Held]) -> None:
        """Commit the entries of :meth:`held` blocks in one group commit (with whatever
        else is being appended), then announce them.

        :raises AuditError: the entries could not be committed (none of them was).
        """
        waiting = [p for block in blocks for p in block.pending]
        if not waiting:
            return
        self.open()
        self._commit_own(waiting)
        _show(waiting)
        self.flush()

    def commit_held_now(self, blocks: Iterable[Held]) -> bool:
        """Commit the entries of :meth:`held` blocks in this thread if that needs no
        wait for anyone — no group commit under way or forming in this process, the
        database's write lock free (SQLite only: :func:`storage.begin_write` with
        ``wait=False``) — and return True once they are committed. Return False with
        nothing written when it would have to wait: then :meth:`commit_held`, from a
        thread that may.

        Nothing is announced and no checkpoint is made here (the commit leaves folding
        SQLite's write-ahead log to other commits, as an urgent one does): call
        :meth:`flush` later, from a thread that may wait. For an event loop with nothing
        else to do, which would otherwise wake a thread to commit and be woken by it.

        :raises AuditError: the commit was tried and failed (none of the entries was
            written).
        """
        waiting = [p for block in blocks for p in block.pending]
        if not waiting:
            return True
        if self._opened is not self.engine or storage.writing(self.engine):
            return False
        with self._group:
            if self._leading:
                return False
            # this thread leads a group of its own, as _commit_own's leader does; entries
            # already waiting with no group under way are riding along (``ride_along``)
            # and are taken with it
            self._waiting.extend(waiting)
            self._leading = True
        batch: list[_Pending] = []
        try:
            entries = self._commit_batch(batch, urgent=True, wait=False)
        except storage.WriteBusyError:
            with self._group:  # nothing was taken: the others' entries wait on
                mine = {id(p) for p in waiting}
                self._waiting = [p for p in self._waiting if id(p) not in mine]
                self._leading = False
                self._group.notify_all()
            return False
        except HcmError as exc:
            self._end_group(waiting, batch, [], exc)
            raise
        except BaseException:  # an interrupt: nothing of the group was committed
            self._end_group(waiting, batch, [], AuditError("the audit log was not written"))
            raise
        self._end_group(waiting, batch, entries, None)
        _show(waiting)
        return True

    def record_many(
        self, entries: Iterable[Mapping[str, Any]], *, ride_along: float = 0.0
    ) -> list[AuditEntry]:
        """Append several entries — each the keyword arguments of :meth:`record`, without
        ``connection`` — committed together, and with whatever else is being appended.

        :param ride_along: seconds the entries may wait for another caller's commit to
            take them along before committing on their own: entries nobody waits for
            (the agent's record of each call) then cost no commit of their own while
            the log is busy. The call returns once they are committed either way.
        :raises AuditInputError: an entry the log must not hold; none is written.
        """
        at = datetime.now(UTC)
        pending = [
            _Pending(
                *self._prepare(
                    at,
                    e["action"],
                    e["actor"],
                    e.get("subject"),
                    e.get("outcome", "ok"),
                    e.get("user"),
                    e.get("role"),
                    e.get("terminal"),
                    e.get("details") or {},
                )
            )
            for e in entries
        ]
        if not pending:
            return []
        self.open()
        made = self._commit_own(pending, ride_along=ride_along)
        self.flush()
        return made

    def _prepare(
        self,
        at: datetime,
        action: str,
        actor: str,
        subject: str | None,
        outcome: str,
        user: str | None,
        role: str | None,
        terminal: str | None,
        details: Mapping[str, str],
    ) -> tuple[tuple[Any, ...], Mapping[str, str]]:
        """An entry's stored fields and its details, checked; the caller's identity
        filled in from the session the call is made in."""
        if outcome not in _OUTCOMES:
            raise AuditInputError(f"audit outcome {outcome!r} is not ok, refused or failed")
        if not action or not actor:
            raise AuditInputError("an audit entry needs an action and an actor")
        acting = _acting()
        if user is None and role is None:
            if acting is not None:  # a session's call: the caller's identity
                # and the caller's terminal, also where the service names its own (the
                # e-card's terminal ID, a payment's till)
                user, role = acting.caller.user, acting.caller.role
                terminal = acting.caller.terminal
                if acting.grant is not None and acting.marker not in details:
                    details = {**details, acting.marker: acting.grant}
            else:  # the embedding process, a plugin, the core: the system caller
                user, role = self._system_user, SYSTEM_ROLE
        terminal = terminal or self.terminal
        chain.check_fields(
            {
                "action": action,
                "actor": actor,
                "subject": subject or None,
                "user": user or None,
                "role": role or None,
                "terminal": terminal,
            },
            details,
        )
        if acting is not None:  # the session audits a call whose service wrote nothing
            acting.entries += 1
            if subject:
                acting.subjects.add(subject)
        _counted()
        fields = (
            at.astimezone(UTC).replace(tzinfo=None),
            action,
            actor,
            subject or None,
            outcome,
            user or None,
            role or None,
            terminal,
            chain.canonical_details(details),
        )
        return fields, details

    def _append(
        self,
        at: datetime,
        action: str,
        actor: str,
        subject: str | None,
        outcome: str,
        user: str | None,
        role: str | None,
        terminal: str | None,
        details: Mapping[str, str],
        connection: Connection | None,
    ) -> AuditEntry:
        fields, details = self._prepare(
            at, action, actor, subject, outcome, user, role, terminal, details
        )
        if connection is not None:
            if connection.engine is not self.engine and connection.engine.url != self.engine.url:
                raise AuditError(
                    "the connection given is not to the audit log's database",
                    hint="pass a connection from mw.audit.transaction() or of mw.engine",
                )
            if self._opened is not self.engine:
                with self._lock:
                    self._check_head(connection)
            entry = self._write(connection, fields, details)
            self._hold(connection, entry)
            return entry
        grouped = _GROUPED.get()
        if grouped is not None and grouped[0] is self:
            waiting = _Pending(fields, details)
            waiting.shown = _unwritten(fields, details)
            grouped[1].append(waiting)
            return waiting.shown
        self.open()
        (entry,) = self._commit_own([_Pending(fields, details)])
        self.flush()
        return entry

    def _commit_own(self, pending: list[_Pending], *, ride_along: float = 0.0) -> list[AuditEntry]:
        """Commit entries in a transaction of their own — together with the entries other
        threads are appending at the same moment (a group commit).

        The first thread to find no commit under way leads: once it holds the write
        transaction it takes every entry waiting by then, writes them in order and
        commits once; the others wait for that commit, or lead the next one. A caller
        returns only once its own entries are committed — as durable as a commit of
        their own — but appends made at once share one wait for the disk instead of
        queueing for one each. If the commit fails, every entry of the group fails with
        the same error. With ``ride_along`` a caller leads only after waiting that long
        for another to take its entries.
        """
        if storage.writing(self.engine):
            # inside this thread's own write transaction: a group's leader would wait for
            # it to end, and it for the group; write on its own, as always
            made = self._commit_batch(list(pending))
            self._committed.extend(made)
            return made
        group = self._group
        deadline = time.monotonic() + ride_along
        with group:
            self._waiting.extend(pending)
            while True:
                open_ = any(p.entry is None and p.error is None for p in pending)
                left = deadline - time.monotonic()
                if not open_ or (not self._leading and left <= 0):
                    break
                group.wait(None if self._leading else left)
            lead = open_
            if lead:
                self._leading = True
        if lead:
            batch: list[_Pending] = []
            entries: list[AuditEntry] = []
            error: HcmError | None = None
            try:
                entries = self._commit_batch(batch)
            except HcmError as exc:
                error = exc
            except BaseException:  # an interrupt: nothing of the group was committed
                self._end_group(pending, batch, [], AuditError("the audit log was not written"))
                raise
            self._end_group(pending, batch, entries, error)
        for waiting in pending:
            if waiting.error is not None:
                raise waiting.error
        return [p.entry for p in pending if p.entry is not None]

    def _commit_batch(
        self, batch: list[_Pending], *, urgent: bool = False, wait: bool = True
    ) -> list[AuditEntry]:
        """Write ``batch`` in one transaction; into an empty list, the entries waiting
        once the transaction holds the write lock (SQLite: the whole database).
        ``urgent`` and ``wait`` are :func:`storage.begin_write`'s (``WriteBusyError``
        passes through, nothing taken)."""
        try:
            with storage.begin_write(self.engine, urgent=urgent, wait=wait) as conn:
                if not batch:
                    with self._group:
                        batch.extend(self._waiting)
                        self._waiting.clear()
                return [self._write(conn, p.fields, p.details) for p in batch]
        except HcmError:
            raise
        except sa.exc.SQLAlchemyError as exc:
            raise self._write_error(exc) from exc

    def _end_group(
        self,
        leader: list[_Pending],
        batch: list[_Pending],
        entries: list[AuditEntry],
        error: HcmError | None,
    ) -> None:
        """Hand the group's outcome to its callers and let the next group begin."""
        with self._group:
            if error is None:
                for waiting, entry in zip(batch, entries, strict=True):
                    waiting.entry = entry
                self._committed.extend(entries)
            else:
                for waiting in batch:
                    waiting.error = error
                if not batch:  # failed before taking the group: the others wait on
                    for waiting in leader:
                        waiting.error = error
                    self._waiting = [w for w in self._waiting if w.error is None]
            self._leading = False
            self._group.notify_all()

    def _write(
        self, conn: Connection, fields: tuple[Any, ...], given: Mapping[str, str]
    ) -> AuditEntry:
        """Append in ``conn``'s transaction: lock the head, insert, move the head."""
        at, action, actor, subject, outcome, user, role, terminal, details = fields
        if not conn.in_transaction():
            conn.begin()  # what SQLAlchemy's autobegin would do for a statement of its own
        dialect = conn.dialect
        sqlite = dialect.name == "sqlite"
        cursor: Any = (
            conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            if sqlite
            else _cursor(conn)
        )
        seq = 0
        try:
            tail, mark = self._tail, self._mark
            if not sqlite and tail is not None and mark is not None:
                done = self._after_own(cursor, tail, mark, fields)
                if done is not None:
                    return self._written(conn, fields, given, done)
            cursor.execute(_NEXT)
            head = cursor.fetchone()
            if head is None:
                raise AuditError(
                    "the audit log's head row is missing: the table was emptied by hand",
                    hint="run 'hcm audit verify' and restore the database from a backup",
                )
            seq, prev, algorithm, checkpoint_seq, checkpoint_at = head
            prev = bytes(prev) if prev is not None else chain.GENESIS
            if algorithm is None:
                algorithm = self.settings.hash
            elif algorithm != self._algorithm:
                self._check_algorithm(algorithm)
                self._algorithm = algorithm
            stamp = chain.format_at(at)
            data = chain.canonical(
                seq, stamp, action, actor, subject, outcome, user, role, terminal, details
            )
            new = chain.digest(algorithm)(prev + data)
            row = (seq, at, action, actor, subject, outcome, user, role, terminal, details)
            if sqlite:
                cursor.execute(_SQLITE_ADD, (seq, stamp, *row[2:], prev, new))
                cursor.execute(_SQLITE_SET, (new, algorithm))
                if isinstance(checkpoint_at, str):
                    checkpoint_at = datetime.fromisoformat(checkpoint_at)
            else:
                cursor.execute(_PG_ADD_SET, (*row, prev, new, new, algorithm))
        except HcmError:
            raise
        except dialect.dbapi.IntegrityError as exc:  # type: ignore[union-attr]
            raise AuditError(
                f"the audit table already holds an entry {seq}, which the head does not "
                "count: the table was edited by hand",
                hint="run 'hcm audit verify' and restore the table from a backup",
            ) from exc
        except dialect.dbapi.Error as exc:  # type: ignore[union-attr]
            raise self._write_error(exc) from exc
        finally:
            if sqlite:
                cursor.close()
        self._mark = (int(checkpoint_seq), checkpoint_at)
        return self._written(
            conn, fields, given, (seq, prev, new, algorithm, checkpoint_seq, checkpoint_at)
        )

    def _after_own(
        self,
        cursor: Any,
        tail: tuple[int, bytes, str],
        mark: tuple[int, datetime | None],
        fields: tuple[Any, ...],
    ) -> tuple[int, bytes, bytes, str, int, datetime | None] | None:
        """PostgreSQL: append after the entry this process wrote last, in one round trip;
        ``None`` when someone else has appended since (then nothing was written)."""
        at, action, actor, subject, outcome, user, role, terminal, details = fields
        last, prev, algorithm = tail
        seq = last + 1
        data = chain.canonical(
            seq, chain.format_at(at), action, actor, subject, outcome, user, role, terminal,
            details,
        )  # fmt: skip
        new = chain.digest(algorithm)(prev + data)
        cursor.execute(
            _PG_AFTER_OWN,
            (
                seq, new, last, prev, algorithm,
                seq, at, action, actor, subject, outcome, user, role, terminal, details, prev,
                new,
            ),
            prepare=True,
        )  # fmt: skip
        if cursor.rowcount != 1:
            return None
        return seq, prev, new, algorithm, mark[0], mark[1]

    def _written(
        self,
        conn: Connection,
        fields: tuple[Any, ...],
        given: Mapping[str, str],
        done: tuple[int, bytes, bytes, str, int, datetime | None],
    ) -> AuditEntry:
        at = fields[0]
        seq, prev, new, algorithm, checkpoint_seq, checkpoint_at = done
        self._algorithm = algorithm
        self._tail = (seq, new, algorithm)
        self._appended = True
        if self._checkpoint_due(seq, checkpoint_seq, checkpoint_at, at):
            self._due = True
        return _entry(fields, given, seq=seq, prev_hash=prev.hex(), hash_=new.hex())

    @staticmethod
    def _write_error(exc: Exception) -> AuditError:
        orig = getattr(exc, "orig", None) or exc
        reason = type(orig).__name__
        return AuditError(
            f"the audit log could not be written ({reason}: {orig})"[:300],
            hint="check the database ('hcm doctor'); in your own transaction on SQLite, "
            "begin it with mw.audit.transaction() or storage.begin_write()",
        )

    def _checkpoint_due(
        self, seq: int, checkpoint_seq: int, checkpoint_at: datetime | None, at: datetime
    ) -> bool:
        if seq - int(checkpoint_seq) >= self.settings.checkpoint_every:
            return True
        if checkpoint_at is None:
            return True
        return at - checkpoint_at >= timedelta(minutes=self.settings.checkpoint_minutes)

    # -- a caller's transaction ---------------------------------------------------------

    def attach(self, engine: Engine) -> None:
        """Follow the transactions of ``engine`` (the Middleware calls this when it makes
        its engine): entries written in a caller's transaction are announced once it
        commits, and forgotten when it — or the savepoint they were in — rolls back."""
        with self._held_lock:
            if engine in self._attached:
                return
            self._attached.add(engine)
        self._listen(engine)

    def _listen(self, target: Engine | Connection) -> None:
        sa.event.listen(target, "commit", self._on_commit)
        sa.event.listen(target, "rollback", self._on_rollback)
        sa.event.listen(target, "savepoint", self._on_savepoint)
        sa.event.listen(target, "rollback_savepoint", self._on_rollback_savepoint)
        sa.event.listen(target, "release_savepoint", self._on_release_savepoint)

    def _hold(self, conn: Connection, entry: AuditEntry) -> None:
        with self._held_lock:
            held = self._held.get(conn)
            if held is None:
                held = self._held[conn] = []
                if conn.engine not in self._attached:  # another engine on the same database
                    self._listen(conn)
            held.append(entry)

    def _on_commit(self, conn: Connection) -> None:
        with self._held_lock:
            held = self._held.get(conn)
            if held:
                self._committed.extend(held)
                held.clear()
            self._forget_savepoints(conn)

    def _on_rollback(self, conn: Connection) -> None:
        with self._held_lock:
            held = self._held.get(conn)
            if held:
                held.clear()
            self._forget_savepoints(conn)

    def _on_savepoint(self, conn: Connection, _name: str | None) -> None:
        # savepoints nest: a stack of marks (the event does not know the name yet)
        with self._held_lock:
            self._savepoints.setdefault(conn, []).append(len(self._held.get(conn) or ()))

    def _on_rollback_savepoint(self, conn: Connection, _name: str, _context: Any) -> None:
        with self._held_lock:
            marks = self._savepoints.get(conn)
            held = self._held.get(conn)
            if marks:
                mark = marks.pop()
                if held is not None:
                    del held[mark:]

    def _on_release_savepoint(self, conn: Connection, _name: str, _context: Any) -> None:
        with self._held_lock:
            marks = self._savepoints.get(conn)
            if marks:
                marks.pop()

    def _forget_savepoints(self, conn: Connection) -> None:
        self._savepoints.pop(conn, None)

    def flush(self, *, checkpoint: bool = True) -> None:
        """Announce committed entries (``hcm_audit_event``) and checkpoint when due.

        Runs after every append of its own and at the end of :meth:`transaction`; call
        it after committing a transaction of your own that holds entries.
        ``checkpoint=False`` only announces: a checkpoint that is due (a signature and a
        durable commit) is left to the next flush that allows it, for a caller on a path
        that must not wait for one (a ward alarm on its way to the nurse station).
        """
        while True:
            try:
                entry = self._committed.popleft()
            except IndexError:
                break
            self._mw.dispatcher.call("hcm_audit_event", event=entry)
        if self._due and checkpoint:
            self._due = False
            try:
                self.checkpoint(only_if_due=True)
            except HcmError as exc:  # the entries are safe; the next append tries again
                self._due = True
                log.error("audit checkpoint failed: %s", exc)

    # -- checkpoints --------------------------------------------------------------------

    def checkpoint(self, *, only_if_due: bool = False) -> AuditCheckpoint | None:
        """Sign the chain's last entry and push the checkpoint out; ``None`` if nothing new.

        Stored in the database and handed to every ``hcm_audit_checkpoint`` plugin (the
        built-in file sink writes ``[audit] checkpoint_file``).
        """
        self.open()
        from hcmiddleware.audit.signing import sign

        try:
            with storage.begin_write(self.engine) as conn:
                query = _READ_HEAD
                if conn.dialect.name == "postgresql":
                    query = query.with_for_update()
                head = conn.execute(query).one()
                # what the appends compare with (another process may have checkpointed)
                self._mark = (int(head.checkpoint_seq), head.checkpoint_at)
                if head.seq == 0 or head.seq == head.checkpoint_seq or head.hash is None:
                    return None
                now = _now()
                if only_if_due and not self._checkpoint_due(
                    head.seq, head.checkpoint_seq, head.checkpoint_at, now
                ):
                    return None
                made = AuditCheckpoint(
                    seq=head.seq,
                    hash=head.hash.hex(),
                    algorithm=head.algorithm,
                    at=now.replace(tzinfo=UTC),
                    terminal=self.terminal,
                )
                key = self.signing_key
                if key is not None:
                    made = sign(made, key)
                conn.execute(
                    _CHECKPOINTS.insert(),
                    {
                        "seq": made.seq,
                        "hash": head.hash,
                        "algorithm": made.algorithm,
                        "at": now,
                        "terminal": made.terminal,
                        "key_id": made.key_id,
                        "signature": _b64(made.signature),
                    },
                )
                conn.execute(_SET_HASH, {"checkpoint_seq": made.seq, "checkpoint_at": now})
        except HcmError:
            raise
        except sa.exc.SQLAlchemyError as exc:
            raise self._write_error(exc) from exc
        self._mark = (made.seq, now)
        self._mw.dispatcher.call("hcm_audit_checkpoint", checkpoint=made)
        return made

    def checkpoints(self) -> list[AuditCheckpoint]:
        """The checkpoints kept in the database, oldest first."""
        self.open()
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(_CHECKPOINTS).order_by(_CHECKPOINTS.c.seq)).all()
        return [checkpoint_from_row(r) for r in rows]

    # -- reading ------------------------------------------------------------------------

    def head(self) -> tuple[int, str | None]:
        """The number of the last entry (0 for none) and the chain's hash function."""
        self.open()
        with self.engine.connect() as conn:
            head = conn.execute(_READ_HEAD).one()
        return int(head.seq), head.algorithm

    def entries(
        self,
        *,
        resident: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        start: int | None = None,
        end: int | None = None,
        limit: int | None = None,
        review: bool = False,
    ) -> list[AuditEntry]:
        """Entries in chain order; ``limit`` keeps the most recent ones.

        :param resident: entries whose subject is this opaque ID.
        :param action: an action (``card.read``), or a prefix ending in ``*``
            (``flow.outpatient.*``).
        :param since: at or after this time (naive = UTC); ``until`` before it.
        :param start: from this entry number; ``end`` up to and including it.
        :param review: only the entries made under emergency access (break glass), which
            are to be reviewed (``hcm audit list --review``).
        """
        return list(
            self.iter_entries(
                resident=resident,
                action=action,
                since=since,
                until=until,
                start=start,
                end=end,
                limit=limit,
                review=review,
            )
        )

    def iter_entries(
        self,
        *,
        resident: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        start: int | None = None,
        end: int | None = None,
        limit: int | None = None,
        review: bool = False,
    ) -> Iterator[AuditEntry]:
        """Like :meth:`entries`, streamed (for exports of the whole log)."""
        self.open()
        query = sa.select(_LOG)
        if review:  # details are canonical JSON: the key is written exactly so
            query = query.where(_LOG.c.details.like('%"break\\_glass":%', escape="\\"))
        if resident is not None:
            query = query.where(_LOG.c.subject == resident)
        if action is not None:
            if action.endswith("*"):
                prefix = action[:-1].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                query = query.where(_LOG.c.action.like(prefix + "%", escape="\\"))
            else:
                query = query.where(_LOG.c.action == action)
        if since is not None:
            query = query.where(_LOG.c.at >= _naive(since))
        if until is not None:
            query = query.where(_LOG.c.at < _naive(until))
        if start is not None:
            query = query.where(_LOG.c.seq >= start)
        if end is not None:
            query = query.where(_LOG.c.seq <= end)
        if limit is not None:
            newest = query.order_by(_LOG.c.seq.desc()).limit(limit).subquery()
            query = sa.select(newest)
        query = query.order_by(sa.column("seq"))
        with self.engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=2000).execute(query)
            for row in result:
                entry = entry_from_row(row)
                if review and "break_glass" not in entry.details:
                    continue  # the text matched inside another detail's value
                yield entry

    # -- verifying and exporting ------------------------------------------------------

    def verify(
        self,
        *,
        start: int | None = None,
        end: int | None = None,
        checkpoints: Path | Iterable[AuditCheckpoint] | None = None,
        actor: str = "audit",
    ) -> VerifyReport:
        """Check the chain (or entries ``start``..``end``) and its checkpoints.

        Checkpoints come from the database, from ``[audit] checkpoint_file`` when it
        exists, and from ``checkpoints`` (a file the sink wrote, or checkpoints
        gathered elsewhere). The report names the first entry that is wrong and what
        is wrong with it; the check itself is audited (``audit.verify``).
        """
        from hcmiddleware.audit.verify import read_checkpoint_file, verify_chain

        self.open()
        gathered: list[tuple[str, AuditCheckpoint]] = []
        configured = self.settings.checkpoint_file
        if configured is not None and configured.exists():
            gathered += [(str(configured), c) for c in read_checkpoint_file(configured)]
        if isinstance(checkpoints, Path | str):
            path = Path(checkpoints)
            if path != configured:
                gathered += [(str(path), c) for c in read_checkpoint_file(path)]
        elif checkpoints is not None:
            gathered += [("given", c) for c in checkpoints]
        report = verify_chain(
            self.engine,
            start=start,
            end=end,
            external=gathered,
            keys=self.public_keys(),
            signing_expected=self.signing_key is not None,
        )
        first = report.first
        try:
            details = {"entries": str(report.entries)}
            if first is not None:
                details |= {"first_bad": str(first.seq), "problem": first.kind}
            self.record(
                "audit.verify",
                actor=actor,
                outcome="ok" if report.ok else "failed",
                details=details,
            )
        except AuditError as exc:  # a damaged table may refuse it; the report says why
            log.error("the verification could not be audited: %s", exc.message)
        return report

    def export(
        self,
        fmt: Literal["fhir", "atna"],
        *,
        actor: str = "audit",
        **filters: Any,
    ) -> Iterator[str]:
        """The entries (filtered as in :meth:`entries`) as FHIR R4 AuditEvent JSON, one
        resource a line, or as IHE ATNA (RFC 3881 / DICOM) XML messages, one a line.

        The export itself is audited (``audit.export``) once it is complete.
        """
        from hcmiddleware.audit import export

        site = self._mw.config.middleware.site_name
        render = export.to_fhir_json if fmt == "fhir" else export.to_atna_xml
        count = 0
        for entry in self.iter_entries(**filters):
            count += 1
            yield render(entry, site=site)
        self("audit.export", actor=actor, format=fmt, entries=str(count))

    # -- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        """Announce what is left and checkpoint the entries written since the last one."""
        if not self._appended:
            return
        try:
            self.flush()
            self.checkpoint()
        except HcmError as exc:
            log.error("audit log not checkpointed at close: %s", exc)
        self._appended = False
        self._opened = None


def _entry(
    fields: tuple[Any, ...], details: Mapping[str, str], *, seq: int, prev_hash: str, hash_: str
) -> AuditEntry:
    """The entry of stored ``fields`` (see ``_prepare``), at its place in the chain."""
    at, action, actor, subject, outcome, user, role, terminal, _ = fields
    return AuditEntry.model_construct(
        at=at.replace(tzinfo=UTC),
        actor=actor,
        action=action,
        subject=subject,
        outcome=outcome,
        details=dict(details),
        user=user,
        role=role,
        terminal=terminal,
        seq=seq,
        prev_hash=prev_hash,
        hash=hash_,
    )


def _unwritten(fields: tuple[Any, ...], details: Mapping[str, str]) -> AuditEntry:
    """An entry held for a group commit, as it will be stored (no number or hash yet)."""
    return _entry(fields, details, seq=0, prev_hash="", hash_="")


def _cursor(conn: Connection) -> Any:
    """The cursor appends use on ``conn``'s database connection: made once, kept with the
    pooled connection (its ``info``, which lives and dies with it)."""
    pooled = conn.connection
    cursor = pooled.info.get("hcm_audit_cursor")
    if cursor is None or cursor.closed:
        driver: Any = pooled.driver_connection
        cursor = pooled.info["hcm_audit_cursor"] = driver.cursor()
    return cursor


def _naive(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(tzinfo=None) if at.tzinfo else at


def _b64(text: str | None) -> bytes | None:
    import base64

    return None if text is None else base64.b64decode(text)


def chain_details(text: str) -> dict[str, str]:
    """The details of a stored entry (canonical JSON) as a dict."""
    import json

    return cast(dict[str, str], json.loads(text))


def entry_from_row(row: Any) -> AuditEntry:
    """An :class:`AuditEntry` from a row of ``audit_log``."""
    return AuditEntry.model_construct(
        at=row.at.replace(tzinfo=UTC),
        actor=row.actor,
        action=row.action,
        subject=row.subject,
        outcome=row.outcome,
        details=chain_details(row.details),
        user=row.user_id,
        role=row.role,
        terminal=row.terminal,
        seq=int(row.seq),
        prev_hash=bytes(row.prev_hash).hex(),
        hash=bytes(row.hash).hex(),
    )


def checkpoint_from_row(row: Any) -> AuditCheckpoint:
    """An :class:`AuditCheckpoint` from a row of ``audit_checkpoints``."""
    import base64

    return AuditCheckpoint(
        seq=int(row.seq),
        hash=bytes(row.hash).hex(),
        algorithm=row.algorithm,
        at=row.at.replace(tzinfo=UTC),
        terminal=row.terminal,
        key_id=row.key_id,
        signature=None
        if row.signature is None
        else base64.b64encode(bytes(row.signature)).decode(),
    )

"""The physical card's life at the terminal (``middleware.cards``).

Every source of refused cards — the card's issuer, the bank behind its account — sends
signed full and delta lists through ``hcm_card_blacklist_updates``; the terminal checks
each signature with the source's public key, applies each update in one transaction,
and keeps the lists in the installation's database. Every card read and every money
movement checks them offline first: a loss-reported, cancelled or replaced card is
refused with :class:`~hcmiddleware.errors.CardRefusedError`; a frozen one reads but
moves no money. A loss reported at a kiosk refuses the card here at once and goes to
the issuer through ``hcm_card_report_loss``, after the cardholder was identified.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa

from hcmiddleware import storage
from hcmiddleware.cards.tables import CardListEntry, CardListVersion
from hcmiddleware.errors import (
    CardListError,
    CardNotActivatedError,
    CardRefusedError,
    HcmError,
    IdentityError,
    ResidentIndexError,
)
from hcmiddleware.models import (
    REFUSED_STATES,
    BlacklistEntry,
    BlacklistUpdate,
    CardListStatus,
    CardState,
    CheckResult,
    IdentifierKind,
    LossReport,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

    from hcmiddleware.cards.index import CardIndex, IndexStatus
    from hcmiddleware.cards.lists import PublicKey, Row
    from hcmiddleware.runtime import Middleware

__all__ = ["MEANING", "Cards", "SyncReport"]

#: the source of losses reported at this installation's own terminals
LOCAL_SOURCE = "local"

_VERSIONS: sa.Table = CardListVersion.__table__  # type: ignore[assignment]
_ENTRIES: sa.Table = CardListEntry.__table__  # type: ignore[assignment]
#: which state wins when sources disagree: the most final one
_SEVERITY = {
    CardState.CANCELLED: 5,
    CardState.REPLACED: 4,
    CardState.LOSS_REPORTED: 3,
    CardState.FROZEN: 2,
    CardState.ISSUED: 1,
}
#: states in which a card reads (the resident is identified) but moves no money
_NO_MONEY = frozenset({CardState.FROZEN, CardState.ISSUED})
#: what each state means at the terminal (``hcm cards status``)
MEANING = {
    CardState.ACTIVE: "reads and moves money",
    CardState.ISSUED: "not activated yet: reads, moves no money until activated",
    CardState.FROZEN: "reads, moves no money",
    CardState.LOSS_REPORTED: "refused",
    CardState.CANCELLED: "refused",
    CardState.REPLACED: "refused: the replacement card is the resident's card",
}
_LISTED_SQL = "SELECT source, state, listed_at FROM card_list_entries WHERE card_number = {}"
# A delta's statements, each sent to the driver as one batch. An added card is inserted
# unless the source lists it already; only then (a changed state) is it updated, so the
# usual delta — new cards — costs one insert a card and no delete.
_DELETE_SQL = "DELETE FROM card_list_entries WHERE source = ? AND card_number = ?"
_INSERT_SQL = (
    "INSERT INTO card_list_entries (source, card_number, state, listed_at, list_version) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (source, card_number) DO NOTHING"
)
_UPDATE_SQL = (
    "UPDATE card_list_entries SET state = ?, listed_at = ?, list_version = ? "
    "WHERE source = ? AND card_number = ? AND (state IS NOT ? OR listed_at IS NOT ?)"
)
# PostgreSQL: one statement each over a JSON array (json.dumps is C; psycopg's own
# array adapter formats and quotes element by element in Python)
_PG_DELETE_SQL = (
    "DELETE FROM card_list_entries WHERE source = %s "
    "AND card_number = ANY(ARRAY(SELECT json_array_elements_text(%s::json)))"
)
_PG_INSERT_SQL = (
    "INSERT INTO card_list_entries (source, card_number, state, listed_at, list_version) "
    "SELECT %s, r->>0, r->>1, (r->>2)::timestamptz, %s "
    "FROM json_array_elements(%s::json) AS r ON CONFLICT (source, card_number) DO NOTHING"
)
_PG_UPDATE_SQL = (
    "UPDATE card_list_entries AS e "
    "SET state = r->>1, listed_at = (r->>2)::timestamptz, list_version = %s "
    "FROM json_array_elements(%s::json) AS r WHERE e.source = %s AND e.card_number = r->>0 "
    "AND (e.state, e.listed_at) IS DISTINCT FROM (r->>1, (r->>2)::timestamptz)"
)
_PG_COPY_SQL = (
    "COPY card_list_entries (source, card_number, state, listed_at, list_version) FROM STDIN"
)
_PG_NOTIFY_SQL = sa.text("SELECT pg_notify(:channel, current_schema())")


def mask(card_number: str) -> str:
    """A card number as a receipt or log shows it: the first four and last four digits."""
    if len(card_number) <= 8:
        return "*" * len(card_number)
    return card_number[:4] + "*" * (len(card_number) - 8) + card_number[-4:]


def _aware(moment: datetime | str) -> datetime:
    # SQLite hands times back without their zone (and, read raw, as text); stored in UTC
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass
class SyncReport:
    """What one sync did: the lists now held, and the updates refused (each kept out)."""

    applied: list[CardListStatus] = field(default_factory=list)
    refused: list[CardListError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no update was refused."""
        return not self.refused


class Cards:
    """Card lifecycle and the lists of refused cards of one Middleware."""

    def __init__(self, middleware: Middleware) -> None:
        self._mw = middleware
        self._lock = threading.Lock()
        self._ready = False
        self._keys: dict[str, PublicKey] | None = None
        self._sql: str | None = None
        self._index_of: CardIndex | None = None

    # -- storage ------------------------------------------------------------------------

    @property
    def _engine(self) -> Engine:
        engine = self._mw.engine
        with self._lock:
            if not self._ready:
                storage.upgrade(engine)
                self._ready = True
        return engine

    @property
    def _index(self) -> CardIndex:
        # numpy is imported with the index, on the first check, not with the package
        with self._lock:
            if self._index_of is None:
                from hcmiddleware.cards.index import CardIndex

                self._index_of = CardIndex(lambda: self._engine)
            return self._index_of

    def load_index(self) -> IndexStatus:
        """Build the in-memory index of listed cards now, unless it is current.

        A card on no list is then answered from memory (microseconds) instead of the
        database; a service calls this as it starts. Without it the index is built in
        the background on the first check, which asks the database meanwhile. Returns
        what the index holds (its size, the list versions it covers).
        """
        return self._index.build()

    def index_status(self) -> IndexStatus:
        """The in-memory index: whether it is current, its size, its memory."""
        return self._index.status()

    def close(self) -> None:
        """Drop the in-memory index and its connection (``Middleware.close``)."""
        with self._lock:
            index, self._index_of = self._index_of, None
        if index is not None:
            index.close()

    def _source_keys(self) -> dict[str, PublicKey]:
        from hcmiddleware.cards.lists import load_public_key

        with self._lock:
            if self._keys is None:
                self._keys = {
                    source: load_public_key(path, source=source)
                    for source, path in self._mw.config.cards.list_keys.items()
                }
            return self._keys

    # -- checking a card ------------------------------------------------------------------

    def _listed(self, card_number: str) -> list[tuple[str, str, datetime | str]]:
        # On every card read and payment. A card on no list is answered from memory;
        # one that may be listed is looked up with the driver's cursor straight from the
        # pool (SQLAlchemy's statement layer costs several times the indexed lookup).
        if self._index.unlisted(card_number):
            return []
        engine = self._engine
        if self._sql is None:
            mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
            self._sql = _LISTED_SQL.format(mark)
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute(self._sql, (card_number,))
            rows = [tuple(r) for r in cursor.fetchall()]
            cursor.close()
        finally:
            raw.close()
        return rows

    def entry(self, card_number: str) -> BlacklistEntry | None:
        """The listing that decides the card's state (the most final of all sources)."""
        rows = self._listed(card_number)
        if not rows:
            return None
        source, state, listed_at = max(rows, key=lambda r: _SEVERITY[CardState(r[1])])
        return BlacklistEntry(
            card_number=card_number,
            reason=state,
            listed_at=_aware(listed_at),
            source=source,
        )

    def state(self, card_number: str) -> CardState:
        """The card's state as the lists held here say (``active`` when on none)."""
        found = self.entry(card_number)
        return CardState.ACTIVE if found is None else CardState(found.reason)

    def check(
        self, card_number: str, *, for_payment: bool = False, actor: str = "terminal"
    ) -> None:
        """Refuse a listed card, offline: before a card is used, and before money moves.

        :raises CardRefusedError: loss-reported, cancelled or replaced — or frozen, when
            ``for_payment``. The refusal is audited.
        :raises CardNotActivatedError: (a kind of ``CardRefusedError``) the card was
            issued but is not activated yet, when ``for_payment``: it reads and
            identifies the resident, but moves no money.
        """
        found = self.entry(card_number)
        if found is None:
            return
        state = CardState(found.reason)
        if state not in REFUSED_STATES and not (for_payment and state in _NO_MONEY):
            return
        self._mw.audit(
            "card.refused",
            actor=actor,
            outcome="refused",
            state=state.value,
            source=found.source,
            card=mask(card_number),
        )
        fields = {
            "state": state.value,
            "listed_at": found.listed_at.isoformat(),
            "source": found.source,
            "card": mask(card_number),
        }
        if state is CardState.ISSUED:
            raise CardNotActivatedError(
                f"card {mask(card_number)} is not activated yet: it identifies the resident "
                f"but moves no money (issued, listed by {found.source} on "
                f"{found.listed_at:%Y-%m-%d})",
                **fields,
            )
        words = {
            CardState.LOSS_REPORTED: "was reported lost",
            CardState.CANCELLED: "was cancelled",
            CardState.REPLACED: "was replaced by a new card",
            CardState.FROZEN: "is frozen: it moves no money",
        }
        hints = {
            CardState.REPLACED: "ask the resident for the replacement card; this one is void",
            CardState.FROZEN: "take payment another way; the resident can ask the bank to "
            "unfreeze the account",
        }
        raise CardRefusedError(
            f"card {mask(card_number)} {words[state]} "
            f"(listed by {found.source} on {found.listed_at:%Y-%m-%d})",
            hint=hints.get(state),
            **fields,
        )

    # -- the lists -------------------------------------------------------------------------

    def status(self) -> list[CardListStatus]:
        """Each list held: its version, when issued and synced, its size, whether stale."""
        limit = timedelta(hours=self._mw.config.cards.max_list_age_hours)
        now = datetime.now(UTC)
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(_VERSIONS).order_by(_VERSIONS.c.source)).all()
        return [
            CardListStatus(
                source=r.source,
                version=r.version,
                issued_at=_aware(r.issued_at),
                synced_at=_aware(r.synced_at),
                entries=r.entries,
                stale=now - _aware(r.synced_at) > limit,
            )
            for r in rows
        ]

    def apply(self, update: BlacklistUpdate) -> CardListStatus:
        """Check an update's signature and version and apply it in one transaction.

        :raises CardListError: unknown source, bad signature, an old version, or a
            delta that does not start at the version held; the list held is unchanged.
        """
        from hcmiddleware.cards.lists import verify_update

        key = self._source_keys().get(update.source)
        if key is None:
            raise CardListError(
                f"list updates from {update.source} are not accepted here",
                source=update.source,
                version=update.version,
                reason="unknown_source",
                hint=f"add the source's public key as [cards] list_keys.{update.source}",
            )
        rows = verify_update(update, key)  # before anything is read or written
        # a stale or replayed update is refused without the write lock (a flood of them
        # does not hold up the writers); the version is checked again under it
        with self._engine.connect() as conn:
            self._check_version(
                update,
                conn.execute(
                    sa.select(_VERSIONS.c.version).where(_VERSIONS.c.source == update.source)
                ).scalar(),
            )
        synced = datetime.now(UTC)
        removed: int | None = None
        indexing, entries = False, 0
        try:
            with storage.begin_write(self._engine) as conn:
                held = conn.execute(
                    sa.select(_VERSIONS.c.version, _VERSIONS.c.entries)
                    .where(_VERSIONS.c.source == update.source)
                    .with_for_update()  # PostgreSQL: a concurrent sync waits, then sees ours
                ).first()
                before = None if held is None else held.version
                self._check_version(update, before)
                self._index.will_add(
                    update.source, before, update.version, [row[0] for row in rows]
                )
                indexing = True
                entries, gone = self._write_entries(
                    conn, update, rows, 0 if held is None else held.entries
                )
                self._store_version(
                    conn, update.source, update.version, update.issued_at, entries,
                    held is not None, synced,
                )  # fmt: skip
                self._announce(conn)
            removed = gone
        finally:
            if indexing:
                self._index.settle(update.source, removed, entries)
        self._link_replacements(update.added)
        self._mw.audit(
            "card.list_applied",
            actor="card-list",
            source=update.source,
            kind=update.kind,
            version=str(update.version),
            added=str(len(update.added)),
            removed=str(len(update.removed)),
        )
        return CardListStatus(
            source=update.source,
            version=update.version,
            issued_at=update.issued_at,
            synced_at=synced,
            entries=entries,
            stale=False,
        )

    @staticmethod
    def _announce(conn: Connection) -> None:
        """Tell the other processes' indexes, when this transaction commits."""
        if conn.dialect.name == "postgresql":
            from hcmiddleware.cards.index import CHANNEL

            conn.execute(_PG_NOTIFY_SQL, {"channel": CHANNEL})

    @staticmethod
    def _check_version(update: BlacklistUpdate, held: int | None) -> None:
        if held is not None and update.version <= held:
            raise CardListError(
                f"the list update {update.source} v{update.version} is not newer than "
                f"v{held}, which is held",
                source=update.source,
                version=update.version,
                reason="old_version",
                hint="nothing to do: an update is applied once",
            )
        if update.kind == "delta" and update.base_version != held:
            raise CardListError(
                f"the delta {update.source} v{update.version} applies to "
                f"v{update.base_version}, but v{held} is held"
                if held is not None
                else f"the delta {update.source} v{update.version} needs a full list first",
                source=update.source,
                version=update.version,
                reason="skipped_version",
                hint="the previous list stays in force; the next sync asks for a full list",
            )

    @staticmethod
    def _write_entries(
        conn: Connection, update: BlacklistUpdate, rows: list[Row], held: int
    ) -> tuple[int, int]:
        """Change the source's entries as ``update`` says (its :func:`canonical_rows`).

        Returns how many entries the source has afterwards and how many were removed.
        The count is kept from the rows each statement touched — counting a source's
        million entries would cost more than the whole delta.
        """
        source, version = update.source, update.version
        postgres = conn.dialect.name == "postgresql"
        cursor: Any = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            if update.kind == "full":
                removed = conn.execute(sa.delete(_ENTRIES).where(_ENTRIES.c.source == source))
                gone = int(removed.rowcount)
            elif not update.removed:
                gone = 0
            elif postgres:  # one statement over an array: no per-row round trip
                cursor.execute(_PG_DELETE_SQL, (source, json.dumps(update.removed)))
                gone = int(cursor.rowcount)
            else:  # SQLite's executemany loops in C
                cursor.executemany(_DELETE_SQL, [(source, number) for number in update.removed])
                gone = int(cursor.rowcount)
            inserted = 0
            if rows and postgres and update.kind == "full":
                # the source's entries are gone: nothing to conflict with, and COPY takes a
                # million rows in about half the time of one INSERT over JSON
                with cursor.copy(_PG_COPY_SQL) as copy:
                    for card, state, when, _r in rows:
                        copy.write_row((source, card, state, _stored(when), version))
                inserted = len(rows)
            elif rows and postgres:
                batch = json.dumps([(card, state, _stored(when)) for card, state, when, _r in rows])
                cursor.execute(_PG_INSERT_SQL, (source, version, batch))
                inserted = int(cursor.rowcount)
                if inserted < len(rows):  # some were listed already: their state changed
                    cursor.execute(_PG_UPDATE_SQL, (version, batch, source))
            elif rows:
                values = [
                    (source, card, state, _sqlite_text(when), version)
                    for card, state, when, _r in rows
                ]
                cursor.executemany(_INSERT_SQL, values)
                inserted = int(cursor.rowcount)
                if inserted < len(rows):
                    cursor.executemany(
                        _UPDATE_SQL,
                        [(s, t, version, source, c, s, t) for _src, c, s, t, _v in values],
                    )
        finally:
            cursor.close()
        return held - gone + inserted, gone

    @staticmethod
    def _store_version(
        conn: Connection,
        source: str,
        version: int,
        issued_at: datetime,
        entries: int,
        exists: bool,
        synced_at: datetime,
    ) -> None:
        values = {
            "version": version,
            "issued_at": issued_at,
            "synced_at": synced_at,
            "entries": entries,
        }
        if exists:
            conn.execute(sa.update(_VERSIONS).where(_VERSIONS.c.source == source).values(**values))
        else:
            conn.execute(sa.insert(_VERSIONS).values(source=source, **values))

    def _link_replacements(self, entries: Iterable[BlacklistEntry]) -> None:
        """Link each replacement card to the resident of the card it replaces."""
        replaced = CardState.REPLACED.value
        for e in entries:
            if e.reason != replaced or not e.replaced_by:
                continue
            try:
                resident = self._mw.residents.lookup(IdentifierKind.CARD_NUMBER, e.card_number)
                if resident is not None:
                    self._mw.residents.link_card(resident.resident_id, e.replaced_by)
            except (IdentityError, ResidentIndexError) as exc:
                # the list is applied; the link is the index's business (a review)
                self._mw.audit(
                    "card.replacement_not_linked",
                    actor="card-list",
                    outcome="failed",
                    card=mask(e.card_number),
                    error=type(exc).__name__,
                )

    def sync(self) -> SyncReport:
        """Ask every source for what is newer than the lists held, and apply it.

        A refused update is reported and leaves that source's list as it was; the
        other sources' updates are still applied. A list plugin that fails or does not
        answer in time is reported too (``no_answer``).
        """
        held = {s.source: s.version for s in self.status()}
        report = SyncReport()
        updates: list[BlacklistUpdate] = []
        answers = self._mw.dispatcher.call_each("hcm_card_blacklist_updates", since=held)
        for plugin, batch in answers:
            if isinstance(batch, HcmError):
                # a feed that timed out or failed is a failed sync, not an empty one
                report.refused.append(
                    CardListError(
                        f"the list plugin {plugin!r} gave no updates: {batch.message}",
                        source=None,
                        version=None,
                        reason="no_answer",
                        hint="the lists held stay in force; check the plugin and its "
                        "source (a large full list may need a longer "
                        f"[plugins] timeouts.{plugin})",
                    )
                )
                continue
            for item in batch or []:
                if not isinstance(item, BlacklistUpdate):
                    report.refused.append(
                        CardListError(
                            f"a list plugin answered a {type(item).__name__}, "
                            "not a BlacklistUpdate",
                            source=None,
                            version=None,
                            reason="malformed",
                            hint="update the plugin; the hook's contract is in docs/hooks.md",
                        )
                    )
                    continue
                updates.append(item)
        broken: set[str] = set()
        for update in sorted(updates, key=lambda u: (u.source, u.version)):
            if update.source in broken:
                continue  # a later delta cannot apply on top of a refused one
            try:
                self.apply(update)
            except CardListError as exc:
                report.refused.append(exc)
                if exc.reason != "old_version":
                    broken.add(update.source)
        report.applied = self.status()
        return report

    # -- reports from the terminal -------------------------------------------------------------

    def report_loss(
        self,
        card_number: str,
        *,
        resident_id: str,
        id_number: str | None = None,
        face: bytes | None = None,
        terminal: str = "kiosk",
    ) -> str | None:
        """The cardholder reports the card lost: refused here at once, told to the issuer.

        The cardholder is identified first, by the ID number on their identity card
        (``id_number``) or a live photo matching their enrolled face (``face``); the card
        must be theirs in the index. Returns the issuer's reference (``None`` when no
        plugin tells the issuer: the local refusal still stands).

        :raises IdentityError: the person was not identified as the card's holder.
        """
        how = self._identify(card_number, resident_id, id_number=id_number, face=face)
        now = datetime.now(UTC)
        removed: int | None = None
        indexing, entries = False, 0
        try:
            with storage.begin_write(self._engine) as conn:
                held = conn.execute(
                    sa.select(_VERSIONS.c.version, _VERSIONS.c.entries)
                    .where(_VERSIONS.c.source == LOCAL_SOURCE)
                    .with_for_update()
                ).first()
                before = None if held is None else held.version
                version = 1 if before is None else before + 1
                self._index.will_add(LOCAL_SOURCE, before, version, [card_number])
                indexing = True
                replaced = conn.execute(
                    sa.delete(_ENTRIES).where(
                        _ENTRIES.c.source == LOCAL_SOURCE, _ENTRIES.c.card_number == card_number
                    )
                ).rowcount
                conn.execute(
                    sa.insert(_ENTRIES).values(
                        source=LOCAL_SOURCE,
                        card_number=card_number,
                        state=CardState.LOSS_REPORTED.value,
                        listed_at=now,
                        list_version=version,
                    )
                )
                entries = (0 if held is None else held.entries) - replaced + 1
                self._store_version(
                    conn, LOCAL_SOURCE, version, now, entries, held is not None, now
                )
                self._announce(conn)
            removed = int(replaced)
        finally:
            if indexing:
                self._index.settle(LOCAL_SOURCE, removed, entries)
        report = LossReport(
            card_number=card_number,
            resident_id=resident_id,
            identified_by=how,
            reported_at=now,
            terminal=terminal,
        )
        reference = self._mw.hooks.hcm_card_report_loss(report=report)
        self._mw.audit(
            "card.loss_reported",
            actor=terminal,
            subject=resident_id,
            card=mask(card_number),
            identified_by=how,
            issuer_reference=str(reference or ""),
        )
        return None if reference is None else str(reference)

    def _identify(
        self, card_number: str, resident_id: str, *, id_number: str | None, face: bytes | None
    ) -> Literal["face", "id_number"]:
        holder = self._mw.residents.lookup(IdentifierKind.CARD_NUMBER, card_number)
        if holder is None or holder.resident_id != self._mw.residents.get(resident_id).resident_id:
            self._refuse_report(resident_id, "card_not_theirs")
            raise IdentityError(
                "this card is not the resident's in the index",
                field="card_number",
                hint="check the card number with the resident; a card not in the index "
                "is reported at the issuer's counter",
            )
        if id_number is not None:
            from hcmiddleware.empi.identity import parse_identity

            theirs = holder.identifier(IdentifierKind.ID_NUMBER)
            try:
                given = parse_identity(id_number).value
            except IdentityError:
                given = None
            if theirs is not None and given == theirs:
                return "id_number"
            self._refuse_report(resident_id, "id_number_mismatch")
            raise IdentityError(
                "the ID number does not match the resident's",
                field="id_number",
                hint="read the number from the resident's identity card again",
            )
        if face is not None:
            hits = self._mw.faces.search(face, top=1, actor="loss-report")
            limit = self._mw.config.face.thresholds.enrolled
            if hits and hits[0].resident_id == holder.resident_id and hits[0].distance <= limit:
                return "face"
            self._refuse_report(resident_id, "face_mismatch")
            raise IdentityError(
                "the face does not match the resident's enrolled face",
                field="face",
                hint="identify the resident by the ID number on their identity card",
            )
        raise IdentityError(
            "the cardholder must be identified before a loss is reported",
            field="identity",
            hint="give the ID number from their identity card, or a live photo",
        )

    def _refuse_report(self, resident_id: str, why: str) -> None:
        self._mw.audit(
            "card.loss_reported", actor="terminal", subject=resident_id, outcome="refused",
            reason=why,
        )  # fmt: skip

    # -- health ------------------------------------------------------------------------------

    def notice(self) -> str | None:
        """What a terminal shows its operator while a list is stale or was never synced.

        ``None`` when every configured source's list is current. A kiosk or desk screen
        shows it (a stale list lets a lost card pay); ``hcm doctor`` fails on the same.
        """
        failing = [r for r in self.check_lists() if not r.ok]
        if not failing:
            return None
        named = "; ".join(f"{r.name}: {r.detail}" for r in failing)
        return f"lost and cancelled cards may not be refused here ({named})"

    def check_lists(self) -> list[CheckResult]:
        """``hcm doctor``: every configured source has a list, none older than allowed."""
        try:
            held = {s.source: s for s in self.status()}
        except HcmError as exc:
            return [CheckResult(name="card lists", ok=False, detail=exc.message, hint=exc.hint)]
        results: list[CheckResult] = []
        hours = self._mw.config.cards.max_list_age_hours
        for source in sorted(self._mw.config.cards.list_keys):
            status = held.get(source)
            if status is None:
                results.append(
                    CheckResult(
                        name=f"card list {source}",
                        ok=False,
                        detail="never synced: listed cards would not be refused",
                        hint="run 'hcm cards sync' (and schedule it)",
                    )
                )
            else:
                age = datetime.now(UTC) - status.synced_at
                results.append(
                    CheckResult(
                        name=f"card list {source}",
                        ok=not status.stale,
                        detail=f"v{status.version}, {status.entries} cards, synced "
                        f"{age.total_seconds() / 3600:.1f} h ago",
                        hint=f"older than {hours:g} h: run 'hcm cards sync' and check "
                        "that it runs on schedule"
                        if status.stale
                        else "",
                    )
                )
        return results


def _stored(when: str) -> str:
    """A canonical list time as stored: four-digit years (the canonical text of a year
    before 1000 has fewer digits)."""
    return when.zfill(27)


def _sqlite_text(when: str) -> str:
    """A canonical list time as SQLAlchemy writes times into SQLite (UTC, no zone)."""
    when = _stored(when)
    return f"{when[:10]} {when[11:26]}"

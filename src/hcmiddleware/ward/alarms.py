"""Alarms from active bands: stored first, folded per band, escalated, acknowledged.

:meth:`AlarmDesk.receive` stores a batch's alarm events in one small write transaction
and returns only once it is committed (durably, ahead of any other writer waiting): a
device plugin acknowledges the events to the device (an MQTT PUBACK, a gateway's ACK
line) after that, so an alarm is either stored or redelivered — never dropped. An event
the desk has stored already (same band and event ID) is taken once.

While a band's alarm of one kind is open, further events of that band and kind fold
into it (``count``): a faulty band's storm is one alarm at the nurse station, not a
thousand.

Location reports keep the last known location per band. Taken with
``defer_locations=True``, they are only noted in memory — the newest per band, which
:meth:`AlarmDesk.location` answers from at once — and :meth:`AlarmDesk.write_locations`
writes them later, a few bands per transaction: a stream of positions then costs no
transaction per report and never holds an alarm's commit for long. A position lost in a
crash is replaced by the band's next fix.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from hcmiddleware import storage
from hcmiddleware.errors import UnknownAlarmError
from hcmiddleware.models import Alarm, BandEvent, LocationReport
from hcmiddleware.ward.bands import Audited, utcnow
from hcmiddleware.ward.settings import AlarmSettings
from hcmiddleware.ward.tables import AlarmEventRow, AlarmRow, LocationRow, RejectRow, WristbandRow

__all__ = ["AlarmDesk", "Received", "Reject"]

_ALARMS: sa.Table = AlarmRow.__table__  # type: ignore[assignment]
_EVENTS: sa.Table = AlarmEventRow.__table__  # type: ignore[assignment]
_LOCATIONS: sa.Table = LocationRow.__table__  # type: ignore[assignment]
_REJECTS: sa.Table = RejectRow.__table__  # type: ignore[assignment]
_BANDS: sa.Table = WristbandRow.__table__  # type: ignore[assignment]

#: what a reject keeps of the message
MAX_REJECT_BYTES = 4096
#: bands whose positions one transaction writes: an alarm waits for one such at most
LOCATION_CHUNK = 50

#: Prepared once: building a statement costs more than running it on SQLite.
_LAST_SEEN = sa.select(
    _LOCATIONS.c.wristband_id, _LOCATIONS.c.location, _LOCATIONS.c.seen_at
).where(_LOCATIONS.c.wristband_id.in_(sa.bindparam("bands", expanding=True)))
_ADD_LOCATION = _LOCATIONS.insert()
_MOVE = (
    _LOCATIONS.update()
    .where(_LOCATIONS.c.wristband_id == sa.bindparam("band"))
    .values(
        location=sa.bindparam("where"),
        seen_at=sa.bindparam("seen"),
        received_at=sa.bindparam("now"),
    )
)
_EVENT_SEEN = sa.select(_EVENTS.c.alarm_id).where(
    _EVENTS.c.wristband_id == sa.bindparam("band"), _EVENTS.c.event_id == sa.bindparam("event")
)
_OPEN_ALARM = sa.select(_ALARMS).where(_ALARMS.c.open_key == sa.bindparam("key"))
_ALARM_BY_ID = sa.select(_ALARMS).where(_ALARMS.c.alarm_id == sa.bindparam("alarm"))
_ADD_EVENT = _EVENTS.insert()
_FOLD = (
    _ALARMS.update()
    .where(_ALARMS.c.alarm_id == sa.bindparam("alarm"))
    .values(
        count=sa.bindparam("count"),
        last_at=sa.bindparam("last"),
        location=sa.func.coalesce(sa.bindparam("where"), _ALARMS.c.location),
    )
)
_ADD_ALARM = _ALARMS.insert()
_BAND_STAY = sa.select(_BANDS.c.admission_id, _BANDS.c.ward, _BANDS.c.bed).where(
    _BANDS.c.active_band == sa.bindparam("band")
)


_UPSERTS: dict[str, Any] = {}


def _upsert_location(dialect: str) -> Any:
    """Insert a band's fix, or update its row unless that holds a newer one: one
    statement (SQLite, PostgreSQL), prepared once per dialect; ``None`` elsewhere."""
    if dialect not in ("sqlite", "postgresql") or dialect in _UPSERTS:
        return _UPSERTS.get(dialect)
    from sqlalchemy.dialects import postgresql, sqlite

    new = (sqlite.insert if dialect == "sqlite" else postgresql.insert)(_LOCATIONS)
    _UPSERTS[dialect] = new.on_conflict_do_update(
        index_elements=[_LOCATIONS.c.wristband_id],
        set_={
            "location": new.excluded.location,
            "seen_at": new.excluded.seen_at,
            "received_at": new.excluded.received_at,
        },
        where=new.excluded.seen_at >= _LOCATIONS.c.seen_at,
    )
    return _UPSERTS[dialect]


def _naive(moment: datetime) -> datetime:
    """As the tables keep times: naive UTC (a device's naive time is local wall time)."""
    return moment.astimezone(UTC).replace(tzinfo=None)


def _aware(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.replace(tzinfo=UTC)


def to_alarm(found: Any) -> Alarm:
    """An ``ward_alarms`` row as the domain model (times in UTC)."""
    row = found._mapping  # a Row's .count is tuple.count, not the column
    return Alarm(
        alarm_id=row["alarm_id"],
        wristband_id=row["wristband_id"],
        kind=row["kind"],
        state=row["state"],
        raised_at=_aware(row["raised_at"]),
        last_at=_aware(row["last_at"]),
        received_at=_aware(row["received_at"]),
        count=row["count"],
        level=row["level"],
        location=row["location"],
        admission_id=row["admission_id"],
        ward=row["ward"],
        bed=row["bed"],
        bound=row["bound"],
        acknowledged_by=row["acknowledged_by"],
        acknowledged_at=_aware(row["acknowledged_at"]),
    )


@dataclass
class Received:
    """What one batch of events did: new alarms, folded ones, moved bands, repeats."""

    raised: list[Alarm] = field(default_factory=list)
    folded: list[Alarm] = field(default_factory=list)
    moved: list[LocationReport] = field(default_factory=list)
    duplicates: int = 0
    stale: int = 0


@dataclass(frozen=True)
class Reject:
    """A device message kept because it could not be read."""

    id: int
    received_at: datetime
    source: str
    reason: str
    payload: bytes


class AlarmDesk:
    """The alarm and location tables of one installation."""

    def __init__(self, engine: Engine, settings: AlarmSettings) -> None:
        self.engine = engine
        self.settings = settings
        self._where_lock = threading.Lock()
        #: the newest fix of each band seen (naive UTC, location), written or not
        self._known: dict[str, tuple[datetime, str]] = {}
        #: the fixes not written yet: band → (seen, location, received)
        self._unwritten: dict[str, tuple[datetime, str, datetime]] = {}
        #: one writer of positions at a time
        self._writing = threading.Lock()

    # -- receiving ----------------------------------------------------------------------

    def receive(
        self,
        events: Iterable[BandEvent],
        *,
        on_raised: Callable[[Connection, Alarm], None] | None = None,
        defer_locations: bool = False,
    ) -> Received:
        """Store a batch of events; see the module docstring.

        The alarm events (every kind but ``location``) are stored in one durable
        transaction that goes before the other writers waiting (``urgent``);
        ``on_raised(conn, alarm)`` is called in it for each new alarm (the audit entry
        commits with the alarm, in one durable commit). The positions (location reports,
        and an alarm event's location) are then noted per band, and written at once
        unless ``defer_locations`` (then :meth:`write_locations` writes them).
        """
        done = Received()
        now = utcnow()
        batch = list(events)
        if not batch:
            return done
        alarms = [e for e in batch if e.kind != "location"]
        if alarms:
            # an alarm is on disk before its band hears back
            with storage.begin_write(self.engine, urgent=True) as conn:
                for event in alarms:
                    self._alarm(conn, event, now, done)
                if on_raised is not None:
                    for alarm in done.raised:
                        on_raised(conn, alarm)
        fixes = [e for e in batch if e.kind == "location" or e.location]
        if fixes:
            self._note(fixes, now, done)
            if not defer_locations:
                self.write_locations()
        return done

    def _note(self, events: list[BandEvent], now: datetime, done: Received) -> None:
        """Keep each band's newest fix of the batch, if newer than the one known."""
        newest: dict[str, tuple[datetime, str]] = {}
        for event in events:
            if not event.location:
                continue
            seen = _naive(event.at)
            known = newest.get(event.wristband_id)
            if known is not None and known[0] > seen:
                done.stale += 1
                continue
            if known is not None:
                done.stale += 1  # replaced by a newer fix of the same batch
            newest[event.wristband_id] = (seen, event.location)
        if not newest:
            return
        # a band not seen since the start: what the table knows of it (a read; it does
        # not wait for the writers)
        unknown = [band for band in newest if band not in self._known]
        stored: dict[str, tuple[datetime, str]] = {}
        if unknown:
            with self.engine.connect() as conn:
                stored = {
                    r.wristband_id: (r.seen_at, r.location)
                    for r in conn.execute(_LAST_SEEN, {"bands": unknown})
                }
        with self._where_lock:
            for band, found in stored.items():
                known = self._known.get(band)
                if known is None or known[0] < found[0]:
                    self._known[band] = found
            for band, (seen, where) in newest.items():
                before = self._known.get(band)
                if before is not None and before[0] > seen:
                    done.stale += 1  # an older fix, delivered late: the newer one stands
                    continue
                self._known[band] = (seen, where)
                self._unwritten[band] = (seen, where, now)
                if before is not None and before[1] == where:
                    continue
                done.moved.append(
                    LocationReport(
                        wristband_id=band, seen_at=seen.replace(tzinfo=UTC), location=where
                    )
                )

    def write_locations(self) -> int:
        """Write the positions noted and not written yet (the newest per band), up to
        :data:`LOCATION_CHUNK` bands per transaction, none of them durable; the number of
        bands written. What fails to be written is kept for the next call."""
        with self._writing:
            with self._where_lock:
                todo, self._unwritten = list(self._unwritten.items()), {}
            written = 0
            try:
                for start in range(0, len(todo), LOCATION_CHUNK):
                    chunk = todo[start : start + LOCATION_CHUNK]
                    with storage.begin_write(self.engine, durable=False) as conn:
                        self._write_chunk(conn, chunk)
                    written += len(chunk)
                    # the interpreter to the other threads (the broker's, the alarms')
                    # between two chunks: positions can wait, they cannot
                    time.sleep(0)
            finally:
                if written < len(todo):
                    with self._where_lock:
                        for band, fix in todo[written:]:
                            newer = self._unwritten.get(band)
                            if newer is None or newer[0] < fix[0]:
                                self._unwritten[band] = fix
        return written

    @staticmethod
    def _write_chunk(
        conn: Connection, chunk: list[tuple[str, tuple[datetime, str, datetime]]]
    ) -> None:
        upsert = _upsert_location(conn.dialect.name)
        if upsert is not None:  # one statement a band: a newer stored fix stands
            conn.execute(
                upsert,
                [
                    {"wristband_id": band, "location": where, "seen_at": seen, "received_at": at}
                    for band, (seen, where, at) in chunk
                ],
            )
            return
        stored = {
            r.wristband_id: r.seen_at
            for r in conn.execute(_LAST_SEEN, {"bands": [band for band, _fix in chunk]})
        }
        added, moved = [], []
        for band, (seen, where, at) in chunk:
            before = stored.get(band)
            if before is None:
                added.append(
                    {"wristband_id": band, "location": where, "seen_at": seen, "received_at": at}
                )
            elif before <= seen:  # else another process stored a newer fix: it stands
                moved.append({"band": band, "where": where, "seen": seen, "now": at})
        if added:
            conn.execute(_ADD_LOCATION, added)
        if moved:
            conn.execute(_MOVE, moved)

    @property
    def unwritten_locations(self) -> int:
        """Bands whose newest position is noted and not written yet."""
        with self._where_lock:
            return len(self._unwritten)

    def _alarm(self, conn: Connection, event: BandEvent, now: datetime, done: Received) -> None:
        seen = conn.execute(
            _EVENT_SEEN, {"band": event.wristband_id, "event": event.event_id}
        ).first()
        if seen is not None:
            done.duplicates += 1
            return
        at = _naive(event.at)
        key = f"{event.wristband_id}|{event.kind}"
        row = conn.execute(_OPEN_ALARM, {"key": key}).first()
        if row is not None:
            conn.execute(
                _FOLD,
                {
                    "alarm": row.alarm_id,
                    "count": row._mapping["count"] + 1,
                    "last": max(row.last_at, at),
                    "where": event.location or None,
                },
            )
            alarm_id = row.alarm_id
            folded = True
        else:
            band = conn.execute(_BAND_STAY, {"band": event.wristband_id}).first()
            alarm_id = str(uuid.uuid4())
            conn.execute(
                _ADD_ALARM,
                dict(
                    alarm_id=alarm_id,
                    wristband_id=event.wristband_id,
                    kind=event.kind,
                    state="open",
                    open_key=key,
                    raised_at=at,
                    last_at=at,
                    received_at=now,
                    count=1,
                    level=0,
                    escalated_at=None,
                    location=event.location,
                    admission_id=band.admission_id if band else None,
                    ward=band.ward if band else None,
                    bed=band.bed if band else None,
                    bound=band is not None,
                    acknowledged_by=None,
                    acknowledged_at=None,
                ),
            )
            folded = False
        conn.execute(
            _ADD_EVENT,
            {
                "wristband_id": event.wristband_id,
                "event_id": event.event_id,
                "alarm_id": alarm_id,
                "at": at,
                "received_at": now,
            },
        )
        alarm = to_alarm(conn.execute(_ALARM_BY_ID, {"alarm": alarm_id}).one())
        (done.folded if folded else done.raised).append(alarm)

    # -- the nurse station ----------------------------------------------------------------

    def get(self, alarm_id: str) -> Alarm:
        """One alarm; UnknownAlarmError if there is none with this ID."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(_ALARMS).where(_ALARMS.c.alarm_id == alarm_id)).first()
        if row is None:
            raise UnknownAlarmError(f"no alarm {alarm_id}")
        return to_alarm(row)

    def alarms(self, *, open_only: bool = True, limit: int = 200) -> list[Alarm]:
        """Alarms, newest first; only those not acknowledged unless ``open_only=False``."""
        query = sa.select(_ALARMS).order_by(_ALARMS.c.received_at.desc()).limit(limit)
        if open_only:
            query = query.where(_ALARMS.c.state != "acknowledged")
        with self.engine.connect() as conn:
            return [to_alarm(r) for r in conn.execute(query)]

    def acknowledge(
        self, alarm_id: str, nurse_id: str, *, audited: Audited | None = None
    ) -> tuple[Alarm, bool]:
        """Mark the alarm taken by ``nurse_id``: ``(alarm, changed)``; again is a no-op.
        ``audited(conn, admission_id)`` is called in the transaction of a change."""
        with storage.begin_write(self.engine) as conn:
            row = conn.execute(sa.select(_ALARMS).where(_ALARMS.c.alarm_id == alarm_id)).first()
            if row is None:
                raise UnknownAlarmError(f"no alarm {alarm_id}")
            if row.state == "acknowledged":
                return to_alarm(row), False
            conn.execute(
                _ALARMS.update()
                .where(_ALARMS.c.alarm_id == alarm_id)
                .values(
                    state="acknowledged",
                    open_key=None,
                    acknowledged_by=nurse_id[:40],
                    acknowledged_at=utcnow(),
                )
            )
            row = conn.execute(sa.select(_ALARMS).where(_ALARMS.c.alarm_id == alarm_id)).one()
            if audited is not None:
                audited(conn, row.admission_id)
        return to_alarm(row), True

    def escalate_due(
        self,
        now: datetime | None = None,
        *,
        audited: Callable[[Connection, Alarm], None] | None = None,
    ) -> list[Alarm]:
        """Escalate every alarm nobody acknowledged in time; the escalated ones.
        ``audited(conn, alarm)`` is called in the transaction for each."""
        at = _naive(now) if now is not None else utcnow()
        first = at - timedelta(seconds=self.settings.escalate_after)
        again = at - timedelta(seconds=self.settings.repeat_every)
        escalated: list[Alarm] = []
        with storage.begin_write(self.engine) as conn:
            due = conn.execute(
                sa.select(_ALARMS.c.alarm_id, _ALARMS.c.level).where(
                    _ALARMS.c.state != "acknowledged",
                    _ALARMS.c.level < self.settings.max_level,
                    sa.or_(
                        sa.and_(_ALARMS.c.level == 0, _ALARMS.c.received_at <= first),
                        sa.and_(_ALARMS.c.level > 0, _ALARMS.c.escalated_at <= again),
                    ),
                )
            ).all()
            for alarm_id, level in due:
                conn.execute(
                    _ALARMS.update()
                    .where(_ALARMS.c.alarm_id == alarm_id)
                    .values(state="escalated", level=level + 1, escalated_at=at)
                )
                escalated.append(
                    to_alarm(
                        conn.execute(sa.select(_ALARMS).where(_ALARMS.c.alarm_id == alarm_id)).one()
                    )
                )
                if audited is not None:
                    audited(conn, escalated[-1])
        return escalated

    # -- locations and rejects ------------------------------------------------------------

    def location(self, wristband_id: str) -> LocationReport | None:
        """The band's last known location, or ``None`` if it never reported one: the
        newest of the one noted here (written or not) and the stored one."""
        with self._where_lock:
            known = self._known.get(wristband_id)
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(_LOCATIONS.c.seen_at, _LOCATIONS.c.location).where(
                    _LOCATIONS.c.wristband_id == wristband_id
                )
            ).first()
        if row is not None and (known is None or known[0] < row.seen_at):
            known = (row.seen_at, row.location)
        if known is None:
            return None
        return LocationReport(
            wristband_id=wristband_id, seen_at=known[0].replace(tzinfo=UTC), location=known[1]
        )

    def reject(self, source: str, payload: bytes, reason: str) -> Reject:
        """Keep a device message that could not be read."""
        now = utcnow()
        with storage.begin_write(self.engine) as conn:
            new_id = conn.execute(
                _REJECTS.insert().values(
                    received_at=now,
                    source=source[:120],
                    reason=reason[:200],
                    payload=payload[:MAX_REJECT_BYTES],
                )
            ).inserted_primary_key
        return Reject(
            id=int(new_id[0]) if new_id else 0,
            received_at=now.replace(tzinfo=UTC),
            source=source[:120],
            reason=reason[:200],
            payload=payload[:MAX_REJECT_BYTES],
        )

    def rejects(self, *, limit: int = 100) -> list[Reject]:
        """The device messages kept as unreadable, newest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(_REJECTS).order_by(_REJECTS.c.id.desc()).limit(limit)
            ).all()
        return [
            Reject(
                id=r.id,
                received_at=r.received_at.replace(tzinfo=UTC),
                source=r.source,
                reason=r.reason,
                payload=r.payload,
            )
            for r in rows
        ]

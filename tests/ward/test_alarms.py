"""Alarms and locations from active bands, through the in-process path (no broker)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from hcmiddleware import Middleware
from hcmiddleware.errors import UnknownAlarmError
from hcmiddleware.models import BandEvent
from hcmiddleware.ward.tables import LocationRow

from .conftest import Stay


def event(band: str, n: int, kind: str = "emergency", **fields: object) -> BandEvent:
    return BandEvent.model_validate(
        {
            "event_id": f"{band}-{n}",
            "wristband_id": band,
            "kind": kind,
            "at": datetime.now(UTC),
            **fields,
        }
    )


def test_an_emergency_is_stored_routed_and_acknowledged(stay: Stay) -> None:
    done = stay.mw.ward.receive([event(stay.band, 1, location="5A-corridor")])
    (alarm,) = done.raised
    assert (alarm.state, alarm.bed, alarm.ward, alarm.bound) == ("open", "12", "5A", True)
    assert alarm.admission_id == stay.admission.admission_id
    assert stay.station.alarms == [("raised", alarm)]
    assert stay.station.calls[0].alarm_id == alarm.alarm_id
    assert stay.station.calls[0].location == "5A-corridor"
    assert stay.mw.ward.alarms() == [alarm]
    taken = stay.mw.ward.acknowledge(alarm.alarm_id, "N-007")
    assert (taken.state, taken.acknowledged_by) == ("acknowledged", "N-007")
    assert stay.station.alarms[-1][0] == "acknowledged"
    assert stay.mw.ward.alarms() == []
    assert stay.mw.ward.acknowledge(alarm.alarm_id, "N-008").acknowledged_by == "N-007"
    # after acknowledgement a new call is a new alarm
    again = stay.mw.ward.receive([event(stay.band, 2)])
    assert again.raised[0].alarm_id != alarm.alarm_id


def test_a_storm_from_one_band_is_one_alarm_and_redeliveries_count_once(stay: Stay) -> None:
    storm = [event(stay.band, n) for n in range(200)]
    done = stay.mw.ward.receive(storm)
    assert len(done.raised) == 1
    assert len(done.folded) == 199
    redelivered = stay.mw.ward.receive(storm[:50])
    assert redelivered.duplicates == 50
    (alarm,) = stay.mw.ward.alarms()
    assert alarm.count == 200
    assert [c for c, _a in stay.station.alarms] == ["raised"]
    assert len(stay.station.calls) == 1


def test_alarms_of_different_bands_and_kinds_stay_apart(stay: Stay) -> None:
    done = stay.mw.ward.receive(
        [event(stay.band, 1), event(stay.band, 2, kind="battery", battery=5), event("WB-7777", 1)]
    )
    assert len(done.raised) == 3
    stray = next(a for a in done.raised if a.wristband_id == "WB-7777")
    assert stray.bound is False  # a band nobody wears is still an alarm, never dropped
    assert stray.admission_id is None


def test_an_alarm_nobody_takes_is_escalated_then_repeated(stay: Stay) -> None:
    (alarm,) = stay.mw.ward.receive([event(stay.band, 1)]).raised
    now = datetime.now(UTC)
    assert stay.mw.ward.escalate_due(now) == []
    first = stay.mw.ward.escalate_due(now + timedelta(seconds=61))
    assert [(a.alarm_id, a.level, a.state) for a in first] == [(alarm.alarm_id, 1, "escalated")]
    assert stay.mw.ward.escalate_due(now + timedelta(seconds=62)) == []
    second = stay.mw.ward.escalate_due(now + timedelta(seconds=122))
    assert second[0].level == 2
    assert [c for c, _a in stay.station.alarms] == ["raised", "escalated", "escalated"]
    stay.mw.ward.acknowledge(alarm.alarm_id, "N-007")
    assert stay.mw.ward.escalate_due(now + timedelta(hours=1)) == []


def test_the_escalation_thread_runs_on_its_own(make_ward_mw: Any) -> None:
    mw = make_ward_mw(ward={"alarms": {"escalate_after": 0.2, "check_every": 0.05}})
    (alarm,) = mw.ward.receive([event("WB-0500", 1)]).raised
    deadline = datetime.now() + timedelta(seconds=5)
    while datetime.now() < deadline and mw.ward.alarm(alarm.alarm_id).level == 0:
        time.sleep(0.05)
    assert mw.ward.alarm(alarm.alarm_id).state == "escalated"


def test_the_last_known_location_is_kept_per_band(stay: Stay) -> None:
    t0 = datetime.now(UTC)
    stay.mw.ward.receive([event(stay.band, 1, "location", location="5A-12", at=t0)])
    stay.mw.ward.receive(
        [event(stay.band, 2, "location", location="5A-12", at=t0 + timedelta(seconds=5))]
    )
    stay.mw.ward.receive(
        [event(stay.band, 3, "location", location="5A-toilet", at=t0 + timedelta(seconds=9))]
    )
    late = stay.mw.ward.receive(
        [event(stay.band, 4, "location", location="5A-12", at=t0 + timedelta(seconds=7))]
    )
    assert late.stale == 1
    where = stay.mw.ward.location(stay.band)
    assert where is not None
    assert where.location == "5A-toilet"
    assert [m.location for m in stay.station.moves] == ["5A-12", "5A-toilet"]
    assert stay.mw.ward.location("WB-4242") is None


def test_unknown_alarms_and_unreadable_messages(stay: Stay) -> None:
    with pytest.raises(UnknownAlarmError):
        stay.mw.ward.acknowledge("no-such-alarm", "N-007")
    kept = stay.mw.ward.reject("hcm/ward/bands/WB-1/event", b"\xff{not json", "not JSON")
    (listed,) = stay.mw.ward.rejects()
    assert (listed.id, listed.payload, listed.reason) == (kept.id, b"\xff{not json", "not JSON")


def test_each_new_alarm_is_audited_once_with_the_alarm(stay: Stay) -> None:
    first = stay.mw.ward.receive([event(stay.band, 1), event("WB-7777", 1, location="5B-lift")])
    stay.mw.ward.receive([event(stay.band, 2, location="5A-corridor")])  # folds: no entry
    entries = stay.mw.audit.entries(action="ward.alarm")
    assert sorted(e.details["alarm"] for e in entries) == sorted(a.alarm_id for a in first.raised)
    assert {e.actor for e in entries} == {stay.band, "WB-7777"}
    # the fold kept the newer location; a fold without one keeps the known one
    (mine,) = [a for a in stay.mw.ward.alarms() if a.wristband_id == stay.band]
    assert (mine.count, mine.location) == (2, "5A-corridor")
    stay.mw.ward.receive([event(stay.band, 3)])
    assert stay.mw.ward.alarm(mine.alarm_id).location == "5A-corridor"
    assert stay.mw.audit.verify().ok


def stored_where(mw: Middleware, band: str) -> tuple[str, datetime] | None:
    """The band's row in the locations table: (location, seen)."""
    table = LocationRow.__table__
    with mw.engine.connect() as conn:
        row = conn.execute(
            sa.select(table.c.location, table.c.seen_at).where(table.c.wristband_id == band)
        ).first()
    return None if row is None else (row.location, row.seen_at.replace(tzinfo=UTC))


def known_where(mw: Middleware, band: str) -> tuple[str, datetime] | None:
    """What ``mw.ward.location`` answers: (location, seen)."""
    where = mw.ward.location(band)
    return None if where is None else (where.location, where.seen_at)


def fix(band: str, n: int, where: str, at: datetime) -> BandEvent:
    return event(band, n, "location", location=where, at=at)


def test_positions_are_noted_at_once_and_written_per_band_later(make_ward_mw: Any) -> None:
    mw = make_ward_mw(ward={"alarms": {"locations_every": 60}})  # the test writes them
    t0 = datetime.now(UTC).replace(microsecond=0)
    for n in range(5):  # five fixes of one band: one row, the newest
        mw.ward.receive([fix("WB-0001", n, f"5A-{n}", t0 + timedelta(seconds=n))])
    mw.ward.receive([fix(f"WB-{n:04d}", 1, "5B", t0) for n in range(2, 252)])
    newest = ("5A-4", t0 + timedelta(seconds=4))
    assert known_where(mw, "WB-0001") == newest  # answered before it is written
    assert stored_where(mw, "WB-0001") is None
    assert mw.ward.desk.unwritten_locations == 251
    commits: list[int] = []
    sa.event.listen(mw.engine, "commit", lambda _conn: commits.append(1))
    assert mw.ward.desk.write_locations() == 251
    assert len(commits) == 6  # 50 bands a transaction: an alarm never waits for more
    assert mw.ward.desk.unwritten_locations == 0
    assert stored_where(mw, "WB-0001") == newest
    assert stored_where(mw, "WB-0251") == ("5B", t0)
    # an older fix delivered late replaces the newer one neither in memory nor on disk
    late = mw.ward.receive([fix("WB-0001", 9, "5A-2", t0)])
    assert late.stale == 1
    assert mw.ward.desk.write_locations() == 0
    assert known_where(mw, "WB-0001") == newest
    assert stored_where(mw, "WB-0001") == newest


def test_a_newer_position_stored_by_another_process_stands(stay: Stay) -> None:
    mw, t0 = stay.mw, datetime.now(UTC).replace(microsecond=0)
    mw.ward.receive([fix(stay.band, 1, "5A-12", t0)])
    mw.ward.desk.write_locations()
    table = LocationRow.__table__
    later = t0 + timedelta(seconds=30)
    with mw.engine.begin() as conn:  # another process, further on
        conn.execute(
            table.update()
            .where(table.c.wristband_id == stay.band)
            .values(location="5A-lift", seen_at=later.replace(tzinfo=None))
        )
    mw.ward.receive([fix(stay.band, 2, "5A-toilet", t0 + timedelta(seconds=10))])
    assert known_where(mw, stay.band) == ("5A-lift", later)  # the newest of memory and disk
    mw.ward.desk.write_locations()
    assert stored_where(mw, stay.band) == ("5A-lift", later)


def test_the_noted_positions_are_written_by_their_thread_and_at_close(
    make_ward_mw: Any, tmp_path: Path
) -> None:
    at = datetime.now(UTC).replace(microsecond=0)
    mw = make_ward_mw(ward={"alarms": {"locations_every": 0.05}})
    mw.ward.receive([fix("WB-0001", 1, "5A-12", at)])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and stored_where(mw, "WB-0001") is None:
        time.sleep(0.02)
    assert stored_where(mw, "WB-0001") == ("5A-12", at)
    slow = make_ward_mw(ward={"alarms": {"locations_every": 60}}, data_dir=tmp_path / "slow")
    slow.ward.receive([fix("WB-0002", 1, "5B-3", at)])
    assert stored_where(slow, "WB-0002") is None
    slow.close()  # not written yet: closing writes it
    again = make_ward_mw(data_dir=tmp_path / "slow")
    assert known_where(again, "WB-0002") == ("5B-3", at)
    # once closed, positions are written as they come
    slow.ward.receive([fix("WB-0002", 2, "5B-4", at + timedelta(seconds=1))])
    assert slow.ward.desk.unwritten_locations == 0
    assert known_where(again, "WB-0002") == ("5B-4", at + timedelta(seconds=1))


def test_an_alarm_is_stored_with_its_position_noted(stay: Stay) -> None:
    at = datetime.now(UTC).replace(microsecond=0)
    (alarm,) = stay.mw.ward.receive([event(stay.band, 1, location="5A-corridor", at=at)]).raised
    assert stay.mw.ward.alarm(alarm.alarm_id).location == "5A-corridor"  # on disk already
    assert known_where(stay.mw, stay.band) == ("5A-corridor", at)


def test_an_audit_checkpoint_falling_due_is_made_off_the_alarms_path(
    make_ward_mw: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    mw = make_ward_mw(ward={"alarms": {"check_every": 0.05}}, audit={"checkpoint_every": 3})
    made_in: list[str] = []
    checkpoint = mw.audit.checkpoint

    def watched(**kwargs: Any) -> Any:
        made = checkpoint(**kwargs)
        if made is not None:
            made_in.append(threading.current_thread().name)
        return made

    monkeypatch.setattr(mw.audit, "checkpoint", watched)
    for n in range(6):  # six new alarms: six entries, a checkpoint due twice
        mw.ward.receive([event(f"WB-{n:04d}", 1)])
    assert threading.current_thread().name not in made_in
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not made_in:
        time.sleep(0.02)
    assert made_in
    assert set(made_in) == {"hcm-ward-escalation"}
    assert mw.audit.verify().ok


def test_positions_are_written_on_either_database(make_ward_mw: Any, fresh_database: str) -> None:
    mw = make_ward_mw(ward={"alarms": {"locations_every": 60}}, database={"url": fresh_database})
    t0 = datetime.now(UTC).replace(microsecond=0)
    mw.ward.receive([fix("WB-0001", 1, "5A-12", t0), fix("WB-0002", 1, "5B-1", t0)])
    assert mw.ward.desk.write_locations() == 2
    table = LocationRow.__table__
    later = t0 + timedelta(seconds=30)
    with mw.engine.begin() as conn:  # another process, further on, for one band
        conn.execute(
            table.update()
            .where(table.c.wristband_id == "WB-0002")
            .values(location="5B-lift", seen_at=later.replace(tzinfo=None))
        )
    mw.ward.receive(
        [fix("WB-0001", 2, "5A-toilet", t0 + timedelta(seconds=5)), fix("WB-0002", 2, "5B-2", t0)]
    )
    assert mw.ward.desk.write_locations() == 2  # the table keeps the newer of the two
    assert stored_where(mw, "WB-0001") == ("5A-toilet", t0 + timedelta(seconds=5))
    assert stored_where(mw, "WB-0002") == ("5B-lift", later)

"""Each ward act and its audit entry commit together: an entry that cannot be written
leaves the act undone, and a written act always has its entry."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hcmiddleware.errors import AuditError
from hcmiddleware.models import BedsideExecution

from .conftest import Stay, admit
from .test_alarms import event
from .test_checks import infusion, scan_for


@contextmanager
def entry_fails(stay: Stay, action: str) -> Iterator[list[str]]:
    """Make the audit entry ``action`` fail when written in an act's transaction."""
    audit = stay.mw.audit
    real = audit.record
    tried: list[str] = []

    def record(name: str, **kw: Any) -> Any:
        if name == action and kw.get("connection") is not None:
            tried.append(name)
            raise AuditError("the audit log is full (injected)")
        return real(name, **kw)

    audit.record = record  # type: ignore[method-assign]
    try:
        yield tried
    finally:
        del audit.record


def entries(stay: Stay, action: str) -> list[Any]:
    return stay.mw.audit.entries(action=action)


def test_a_band_is_not_bound_without_its_entry(stay: Stay) -> None:
    later, card = admit(stay.mw, bed="14")
    with entry_fails(stay, "ward.bind") as tried, pytest.raises(AuditError):
        stay.mw.ward.bind("WB-0009", later, card_number=card)
    assert tried == ["ward.bind"]
    assert stay.mw.ward.bands.latest("WB-0009") is None
    # and once the log takes entries again, the bind and its entry go together
    before = len(entries(stay, "ward.bind"))
    bound = stay.mw.ward.bind("WB-0009", later, card_number=card)
    (entry,) = entries(stay, "ward.bind")[before:]
    assert (entry.subject, entry.details["band"]) == (bound.resident_id, "WB-0009")


@pytest.mark.parametrize(
    ("action", "act", "unchanged"),
    [
        (
            "ward.rebind",
            lambda s: s.mw.ward.rebind(s.band, "WB-0002", reason="lost", actor="N-7"),
            lambda s: s.mw.ward.binding(s.band).wristband_id == s.band,
        ),
        (
            "ward.unbind",
            lambda s: s.mw.ward.unbind(s.band, actor="N-7"),
            lambda s: s.mw.ward.binding(s.band).status == "active",
        ),
        (
            "ward.move",
            lambda s: s.mw.ward.move(s.band, ward="5B", bed="3", actor="N-7"),
            lambda s: s.mw.ward.binding(s.band).bed == "12",
        ),
    ],
)
def test_a_band_act_is_not_made_without_its_entry(
    stay: Stay, action: str, act: Callable[[Stay], Any], unchanged: Callable[[Stay], bool]
) -> None:
    resident = stay.mw.ward.binding(stay.band).resident_id
    before = len(entries(stay, action))
    with entry_fails(stay, action) as tried, pytest.raises(AuditError):
        act(stay)
    assert tried == [action]
    assert unchanged(stay)
    assert len(entries(stay, action)) == before
    act(stay)
    (entry,) = entries(stay, action)[before:]
    assert (entry.subject, entry.actor) == (resident, "N-7")


def test_the_bedside_checks_are_not_recorded_without_their_entries(stay: Stay) -> None:
    order = infusion(stay)
    scan = scan_for(stay, order)
    with entry_fails(stay, "ward.check"), pytest.raises(AuditError):
        stay.mw.ward.begin(scan)
    assert stay.mw.ward.executions(stay.admission.admission_id) == []
    started = stay.mw.ward.begin(scan)
    (before,) = entries(stay, "ward.check")
    assert before.details == {
        "order": order.order_id,
        "check": "before",
        "execution": started.execution_id,
    }
    with entry_fails(stay, "ward.check"), pytest.raises(AuditError):
        stay.mw.ward.check(started.execution_id, scan)
    assert stay.mw.ward.execution(started.execution_id).state == "during"
    during = stay.mw.ward.check(started.execution_id, scan)
    assert during.state == "after"
    # the upload's answer and its entry: the HIS has it, the store says so only with
    # the entry (a failed write leaves it pending, for resend())
    with entry_fails(stay, "ward.execute"), pytest.raises(AuditError):
        stay.mw.ward.check(started.execution_id, scan)
    done: BedsideExecution = stay.mw.ward.execution(started.execution_id)
    assert (done.state, done.his_state) == ("done", "pending")
    (resent,) = stay.mw.ward.resend()
    assert resent.his_state == "recorded"
    (executed,) = entries(stay, "ward.execute")
    assert (executed.subject, executed.details["his"]) == (stay.admission.admission_id, "recorded")
    assert [e.details["check"] for e in entries(stay, "ward.check")] == [
        "before",
        "during",
        "after",
    ]


def test_an_abandon_is_not_made_without_its_entry(stay: Stay) -> None:
    started = stay.mw.ward.begin(scan_for(stay, infusion(stay)))
    with entry_fails(stay, "ward.abandon"), pytest.raises(AuditError):
        stay.mw.ward.abandon(started.execution_id, reason="asleep", actor="N-7")
    assert stay.mw.ward.execution(started.execution_id).state == "during"
    stay.mw.ward.abandon(started.execution_id, reason="asleep", actor="N-7")
    (entry,) = entries(stay, "ward.abandon")
    assert (entry.subject, entry.details["reason"]) == (stay.admission.admission_id, "asleep")


def test_an_alarm_is_not_taken_or_escalated_without_its_entry(stay: Stay) -> None:
    (alarm,) = stay.mw.ward.receive([event(stay.band, 1)]).raised
    later = datetime.now(UTC) + timedelta(seconds=61)
    with entry_fails(stay, "ward.escalate"), pytest.raises(AuditError):
        stay.mw.ward.escalate_due(later)
    assert stay.mw.ward.alarm(alarm.alarm_id).level == 0
    (escalated,) = stay.mw.ward.escalate_due(later)
    assert escalated.level == 1
    (entry,) = entries(stay, "ward.escalate")
    assert entry.details == {"alarm": alarm.alarm_id, "level": "1"}
    with entry_fails(stay, "ward.acknowledge"), pytest.raises(AuditError):
        stay.mw.ward.acknowledge(alarm.alarm_id, "N-007")
    assert stay.mw.ward.alarm(alarm.alarm_id).state == "escalated"
    taken = stay.mw.ward.acknowledge(alarm.alarm_id, "N-007")
    assert taken.state == "acknowledged"
    (entry,) = entries(stay, "ward.acknowledge")
    assert (entry.actor, entry.subject) == ("N-007", stay.admission.admission_id)
    assert stay.mw.audit.verify().ok

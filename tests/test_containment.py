"""A plugin that raises, hangs or answers the wrong type never crashes or stalls the core.

One test per kind of hook: ``firstresult`` (one answer is needed), collecting (every
plugin's answer is gathered), notification (fire and forget), and money-moving (the
journal must end every movement in a known or explicitly unknown state).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from hcmiddleware import Middleware, Resident, Sex, hookimpl
from hcmiddleware.card.emulator import EmulatedCard
from hcmiddleware.errors import (
    PluginCallError,
    PluginResultError,
    PluginTimeoutError,
    PluginUnavailableError,
)
from hcmiddleware.models import Charge, PaymentStatus, Settlement, SettlementRequest
from hcmiddleware.testing.plugin import embedded_config
from test_access import KEYS, PROFILE

TIMEOUT = 0.3


class Misbehaving:
    """Answers every hook it implements in the way ``mode`` says."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.release = threading.Event()
        self.calls = 0

    def act(self, good: Any, wrong: Any) -> Any:
        self.calls += 1
        if self.mode == "raise":
            raise RuntimeError("adapter bug")
        if self.mode == "hang":
            self.release.wait(30)
            return good
        if self.mode == "wrong":
            return wrong
        return good


class FirstResult(Misbehaving):
    @hookimpl
    def hcm_his_lookup_patient(self, resident: Resident, hospital_code: str) -> Any:
        return self.act(None, {"patient_id": "P1"})

    @hookimpl
    def hcm_sam_provider(self, middleware: Any) -> Any:
        return self.act(None, "a SAM")


class Collecting(Misbehaving):
    @hookimpl
    def hcm_doctor_checks(self, middleware: Any) -> Any:
        return self.act([], "all fine")


class Listening(Misbehaving):
    @hookimpl
    def hcm_card_read(self, reader: str, card: Any) -> Any:
        return self.act(None, 42)


class Insurer(Misbehaving):
    @hookimpl
    def hcm_insurance_settle(self, request: SettlementRequest) -> Any:
        good = Settlement(
            message_id=request.message_id, settlement_id="S1", status="settled",
            total=request.total, fund_paid=Decimal("60.00"), patient_paid=Decimal("40.00"),
        )  # fmt: skip
        return self.act(good, {"settlement_id": "S1", "status": "settled"})

    @hookimpl
    def hcm_insurance_reverse(self, original_message_id: str, message_id: str) -> Any:
        return "yes"  # not True: a reversal it cannot prove


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Any]:
    made: list[tuple[Middleware, Misbehaving]] = []

    def build(plugin: Misbehaving, **sections: Any) -> Middleware:
        config = embedded_config(
            tmp_path / f"hcm-{len(made)}",
            middleware={"institution_code": "H00000000001"},
            plugins={"timeouts": {"bad": TIMEOUT}, "max_stalled_calls": 2},
            **sections,
        )
        mw = Middleware(config, plugins={"bad": plugin})
        made.append((mw, plugin))
        return mw

    yield build
    for mw, plugin in made:
        plugin.release.set()  # let hung calls end
        mw.close()


def resident(mw: Middleware) -> Resident:
    return mw.residents.enrol(name="王五", sex=Sex.MALE, record_id="desk-1")


def timed(call: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    try:
        return call(), time.perf_counter() - started
    except Exception as exc:
        return exc, time.perf_counter() - started


@pytest.mark.parametrize("mode", ["raise", "hang", "wrong"])
def test_firstresult_hook(make: Any, mode: str) -> None:
    plugin = FirstResult(mode)
    mw = make(plugin, sam={"keys": str(KEYS)})
    someone = resident(mw)
    outcome, took = timed(lambda: mw.his.find(someone))
    expected = {"raise": PluginCallError, "hang": PluginTimeoutError, "wrong": PluginResultError}
    assert isinstance(outcome, expected[mode])
    assert (outcome.plugin, outcome.hook) == ("bad", "hcm_his_lookup_patient")
    assert took < TIMEOUT + 2
    # the SAM provider is a firstresult hook too; a wrong SAM is named, never used
    sam_outcome, _ = timed(lambda: mw.terminal.sam)
    if mode == "wrong":
        assert isinstance(sam_outcome, PluginResultError)
        assert sam_outcome.hook == "hcm_sam_provider"
    # the core goes on: other work is unaffected
    assert mw.residents.get(someone.resident_id).resident_id == someone.resident_id
    assert mw.audit.verify().ok


@pytest.mark.parametrize("mode", ["raise", "hang", "wrong"])
def test_collecting_hook(make: Any, mode: str) -> None:
    mw = make(Collecting(mode))
    rows, took = timed(mw.doctor)
    assert isinstance(rows, list)
    mine = [r for plugin, r in rows if plugin == "bad"]
    assert len(mine) == 1
    assert not mine[0].ok
    assert {"raise": "adapter bug", "hang": "did not answer", "wrong": "not a list"}[mode] in mine[
        0
    ].detail
    # the other plugins' checks are all there
    assert any(r.name == "database" and r.ok for _p, r in rows)
    assert took < TIMEOUT + 10


@pytest.mark.parametrize("mode", ["raise", "hang", "wrong"])
def test_notification_hook(make: Any, mode: str) -> None:
    plugin = Listening(mode)
    mw = make(plugin, sam={"keys": str(KEYS)})
    times = []
    for _ in range(4):
        card, took = timed(lambda: mw.terminal.read(EmulatedCard.from_files(PROFILE, KEYS)))
        assert card.cardholder.name  # the read itself is never lost
        times.append(took)
    health = mw.dispatcher.health["bad"]
    if mode == "hang":
        # two hung calls at most (max_stalled_calls): later reads do not wait at all
        assert health.stalled == 2
        assert plugin.calls == 2
        assert times[-1] < TIMEOUT
    elif mode == "raise":
        assert health.failures == 4
    assert mw.audit.entries(action="card.read")[-1].outcome == "ok"


@pytest.mark.parametrize("mode", ["raise", "hang", "wrong"])
def test_money_moving_hook(make: Any, mode: str) -> None:
    mw = make(Insurer(mode))
    charges = [
        Charge(charge_id="C1", patient_id="P1", visit_id="V1", item_code="X", item_name="x",
               quantity=Decimal(1), unit_price="100.00", amount="100.00")
    ]  # fmt: skip
    movement, took = timed(
        lambda: mw.journal.settle(
            key="visit-1",
            scheme="basic",
            insured_id="I-1",
            patient_id="P1",
            visit_id="V1",
            charges=charges,
            total="100.00",
        )
    )
    assert not isinstance(movement, Exception), movement
    # never confirmed on a broken answer, never lost: an unknown outcome is kept to settle
    assert movement.state == PaymentStatus.UNKNOWN
    assert mw.journal.get(movement.transaction_id).state == PaymentStatus.UNKNOWN
    assert took < TIMEOUT * 3 + 5
    assert mw.audit.verify().ok


def test_an_unavailable_plugin_is_refused_at_once(make: Any) -> None:
    plugin = FirstResult("hang")
    mw = make(plugin)
    someone = resident(mw)
    for _ in range(2):
        assert isinstance(timed(lambda: mw.his.find(someone))[0], PluginTimeoutError)
    refused, took = timed(lambda: mw.his.find(someone))
    assert isinstance(refused, PluginUnavailableError)
    assert took < TIMEOUT

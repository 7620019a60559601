"""The ward against the reference HIS over real MLLP, on the installation's SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
from hcm_his_hl7 import Hl7His
from hcm_his_reference import ReferenceHis

from hcmiddleware import Middleware, hookimpl
from hcmiddleware.card.emulator import EmulatedCard
from hcmiddleware.flows.inpatient import InpatientFlow
from hcmiddleware.models import Admission, Alarm, EmergencyCall, LocationReport, OrderExecution
from hcmiddleware.sam.samples import TEST_ISSUER_KEYS

HOSPITAL = "210100000001"
PROFILE = Path(str(files("hcmiddleware.card.samples"))) / "resident-profile.json"


class NurseStation:
    """A nurse-station plugin: keeps what the ward announces to it."""

    hcm_plugin_name = "nurse-station"

    def __init__(self) -> None:
        self.alarms: list[tuple[str, Alarm]] = []
        self.calls: list[EmergencyCall] = []
        self.moves: list[LocationReport] = []
        self.executed: list[OrderExecution] = []

    @hookimpl
    def hcm_ward_alarm(self, alarm: Alarm, change: str) -> None:
        self.alarms.append((change, alarm))

    @hookimpl
    def hcm_ward_emergency_call(self, call: EmergencyCall) -> None:
        self.calls.append(call)

    @hookimpl
    def hcm_ward_location(self, report: LocationReport) -> None:
        self.moves.append(report)

    @hookimpl
    def hcm_ward_order_executed(self, execution: OrderExecution) -> None:
        self.executed.append(execution)


@dataclass
class Stay:
    """An admitted patient with a band: what the ward tests start from."""

    mw: Middleware
    his: ReferenceHis
    admission: Admission
    card_number: str
    band: str
    station: NurseStation


@pytest.fixture
def reference_his(tmp_path: Path) -> Iterator[ReferenceHis]:
    """The reference HIS on loopback."""
    with ReferenceHis(tmp_path / "his.db", hospital_code=HOSPITAL) as his:
        yield his


@pytest.fixture
def station() -> NurseStation:
    """The nurse station's plugin."""
    return NurseStation()


@pytest.fixture
def make_ward_mw(
    reference_his: ReferenceHis, hcm_make_middleware: Any, station: NurseStation
) -> Any:
    """A Middleware on the reference HIS (HL7 over MLLP) with the nurse station."""

    def make(
        ward: dict[str, Any] | None = None,
        *,
        plugins: dict[str, object] | None = None,
        settings: dict[str, dict[str, Any]] | None = None,
        data_dir: Path | None = None,
        **sections: Any,
    ) -> Middleware:
        site = {"institution_code": HOSPITAL, "site_name": "Test hospital"}
        if data_dir is not None:
            site["data_dir"] = str(data_dir)
        host, port = reference_his.mllp_address
        mw: Middleware = hcm_make_middleware(
            plugins={"his-hl7": Hl7His(), "nurse-station": station, **(plugins or {})},
            settings={"his-hl7": {"host": host, "port": port, "timeout": 2.0}, **(settings or {})},
            middleware=site,
            sam={"keys": str(TEST_ISSUER_KEYS)},
            ward=ward or {},
            **sections,
        )
        return mw

    return make


@pytest.fixture
def ward_mw(make_ward_mw: Any) -> Middleware:
    """A started Middleware for the ward."""
    mw: Middleware = make_ward_mw()
    return mw


def admit(
    mw: Middleware, *, ward: str = "5A", bed: str = "12", at: datetime | None = None
) -> tuple[Admission, str]:
    """Admit the sample card's holder now; ``(admission, card number)``."""
    flow = InpatientFlow(mw, actor="admissions-1")
    card = EmulatedCard.from_files(PROFILE, TEST_ISSUER_KEYS)
    who = flow.identify(card)
    patient = flow.patient(who)
    admitted = (at or datetime.now()).replace(second=0, microsecond=0)
    admission = flow.admit(patient, department_code="NEI", ward=ward, bed=bed, admitted_at=admitted)
    return admission, who.card.issuer.card_number


@pytest.fixture
def stay(ward_mw: Middleware, reference_his: ReferenceHis, station: NurseStation) -> Stay:
    """The sample card's holder admitted to 5A bed 12 now, wearing band WB-0001."""
    admission, card_number = admit(ward_mw)
    ward_mw.ward.bind("WB-0001", admission, card_number=card_number, kind="active")
    return Stay(ward_mw, reference_his, admission, card_number, "WB-0001", station)

"""``hcm demo``: the patient journey on embedded defaults, one numbered step at a time.

Everything runs on this machine: a SQLite database in a temporary folder and the sample
HIS adapter (``adapters/his/sample``). Each step prints what it did; a failing step
prints why and what to do, and the demo stops there.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from hcmiddleware.config import parse_config
from hcmiddleware.errors import HcmError
from hcmiddleware.models import Resident, Sex
from hcmiddleware.registry import installed_plugins
from hcmiddleware.runtime import Middleware

__all__ = ["run_demo"]

Echo = Callable[[str], None]
DEMO_HIS = "sample-his"


@dataclass
class Journey:
    """What the steps hand on to each other."""

    mw: Middleware
    values: dict[str, Any] = field(default_factory=dict)


def _resident() -> Resident:
    # The resident on the sample card (test data; the ID number has a valid check digit).
    return Resident(
        resident_id="demo-resident-0001",
        name="李明",
        sex=Sex.MALE,
        birth_date=date(1985, 6, 15),
        id_number="210102198506150012",
    )


def _step_doctor(j: Journey) -> str:
    rows = j.mw.doctor()
    bad = [f"{p}: {r.name} — {r.detail}" for p, r in rows if not r.ok]
    if bad:
        raise HcmError("health checks failed: " + "; ".join(bad), hint="run 'hcm doctor'")
    return f"{len(rows)} checks passed"


def _step_patient(j: Journey) -> str:
    resident = _resident()
    code = j.mw.config.middleware.institution_code
    patient = j.mw.hooks.hcm_his_lookup_patient(resident=resident, hospital_code=code)
    if patient is None:
        patient = j.mw.hooks.hcm_his_register_patient(
            resident=resident, card=None, hospital_code=code
        )
    j.values["patient"] = patient
    how = "created" if patient.created else "found"
    return f"hospital patient ID {patient.patient_id} ({how} by the HIS)"


def _step_register(j: Journey) -> str:
    start = (datetime.now() + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    from hcmiddleware.models import RegistrationRequest

    request = RegistrationRequest(
        department_code="NEI",
        slot_start=start,
        slot_end=start + timedelta(minutes=30),
        fee="12.00",
        request_id=uuid.uuid4().hex,
    )
    reg = j.mw.hooks.hcm_his_register_visit(patient=j.values["patient"], request=request)
    j.values["registration"] = reg
    pos = j.mw.hooks.hcm_his_queue_position(registration=reg)
    return (
        f"registration {reg.registration_id}, {start:%H:%M}–{reg.slot_end:%H:%M}, "
        f"queue number {pos.queue_number} ({pos.ahead} ahead)"
    )


def _step_charges(j: Journey) -> str:
    reg = j.values["registration"]
    charges = j.mw.hooks.hcm_his_list_charges(
        patient=j.values["patient"], visit_id=reg.registration_id
    )
    total = sum((c.amount for c in charges), start=0)
    return f"{len(charges)} charges, total {total:.2f} yuan"


STEPS: list[tuple[str, Callable[[Journey], str]]] = [
    ("Check the installation", _step_doctor),
    ("Find or create the hospital patient", _step_patient),
    ("Register the visit and join the queue", _step_register),
    ("List the visit's charges", _step_charges),
]


def run_demo(*, data_dir: str | None = None, echo: Echo = print) -> bool:
    """Run every step; True when all passed."""
    if DEMO_HIS not in installed_plugins():
        echo(
            "the demo needs the sample HIS adapter: "
            "pip install -e adapters/his/sample (tox -e demo does this)"
        )
        return False
    folder = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="hcm-demo-"))
    config = parse_config(
        {
            "middleware": {
                "data_dir": str(folder),
                "site_name": "Demo hospital",
                "institution_code": "210100000001",
            },
            "plugins": {"enabled": [DEMO_HIS]},
        }
    )
    echo(f"hcmiddleware demo — data in {folder}")
    started = time.perf_counter()
    with Middleware(config) as mw:
        journey = Journey(mw)
        for number, (title, step) in enumerate(STEPS, start=1):
            t0 = time.perf_counter()
            try:
                outcome = step(journey)
            except HcmError as exc:
                echo(f"[{number}/{len(STEPS)}] {title}: FAILED — {exc}")
                return False
            ms = (time.perf_counter() - t0) * 1000
            echo(f"[{number}/{len(STEPS)}] {title}: {outcome} ({ms:.0f} ms)")
    echo(f"journey complete in {(time.perf_counter() - started) * 1000:.0f} ms")
    return True

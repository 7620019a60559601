"""Sample HIS adapter: a small hospital system of its own behind the HIS hooks.

It shows the shape every HIS adapter has: a settings model declared through
``hcm_add_config``, set-up in ``hcm_configure``, health checks, and idempotent
handlers (registering the same resident or the same request twice gives the same
answer, so a retried flow never creates duplicates).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from pydantic import Field

from hcmiddleware import Middleware, Secret, SettingsModel, hookimpl
from hcmiddleware.errors import HisError
from hcmiddleware.models import (
    Charge,
    CheckResult,
    HospitalPatient,
    Order,
    QueuePosition,
    Registration,
    RegistrationRequest,
    Report,
    ReportResult,
    Resident,
)

__all__ = ["SampleHis", "SampleHisSettings"]

NAME = "sample-his"

SCHEMA = """
CREATE TABLE IF NOT EXISTS patient (
    patient_id TEXT PRIMARY KEY,
    resident_id TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS paid_charge (
    charge_id TEXT PRIMARY KEY,
    transaction_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS registration (
    registration_id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL UNIQUE,
    patient_id TEXT NOT NULL REFERENCES patient(patient_id),
    department_code TEXT NOT NULL,
    doctor_code TEXT,
    slot_start TEXT NOT NULL,
    slot_end TEXT NOT NULL,
    queue_number INTEGER NOT NULL,
    fee TEXT
);
CREATE TABLE IF NOT EXISTS signed_report (
    report_id TEXT PRIMARY KEY,
    issued_at TEXT NOT NULL
);
"""

#: The blood count the sample lab reports once it signs a visit's report off:
#: (code, name, value, unit, reference range, flag)
BLOOD_COUNT = (
    ("WBC", "白细胞计数", "6.1", "10^9/L", "3.5-9.5", "N"),
    ("RBC", "红细胞计数", "4.62", "10^12/L", "4.3-5.8", "N"),
    ("HGB", "血红蛋白", "128", "g/L", "130-175", "L"),
    ("PLT", "血小板计数", "215", "10^9/L", "125-350", "N"),
    ("NEUT%", "中性粒细胞百分比", "78.4", "%", "40-75", "H"),
)


class SampleHisSettings(SettingsModel):
    """``[plugins.sample-his]``."""

    hospital_code: str = Field("H0001", pattern=r"^[A-Za-z0-9]{1,12}$")
    store: Path | None = Field(None, description="SQLite file; default <data_dir>/sample-his.db")
    minutes_per_patient: int = Field(8, ge=1, le=120)
    api_token: Secret | None = None


class SampleHis:
    """The plugin object (the entry point names this class; it is created with no args)."""

    hcm_plugin_name = NAME

    def __init__(self) -> None:
        self.settings = SampleHisSettings()
        self._path: Path | None = None
        self._lock = threading.Lock()

    # -- setup -------------------------------------------------------------------------

    @hookimpl
    def hcm_add_config(self, settings: object) -> None:
        settings.add(NAME, SampleHisSettings)  # type: ignore[attr-defined]

    @hookimpl
    def hcm_configure(self, middleware: Middleware) -> None:
        settings = middleware.plugin_settings(NAME)
        if isinstance(settings, SampleHisSettings):
            self.settings = settings
        self._path = self.settings.store or middleware.config.middleware.data_dir / "sample-his.db"
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db.executescript(SCHEMA)

    @hookimpl
    def hcm_unconfigure(self) -> None:
        self._path = None

    @hookimpl
    def hcm_doctor_checks(self) -> list[CheckResult]:
        try:
            with self._db() as db:
                count = db.execute("SELECT count(*) FROM patient").fetchone()[0]
        except (sqlite3.Error, HisError) as exc:
            return [
                CheckResult(
                    name="store",
                    ok=False,
                    detail=str(exc),
                    hint="check [plugins.sample-his] store is writable",
                )
            ]
        return [CheckResult(name="store", ok=True, detail=f"{self._path} ({count} patients)")]

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        if self._path is None:
            raise HisError("the sample HIS is not configured", hint="start the Middleware first")
        # One connection per call: hooks run on the runtime's worker threads.
        db = sqlite3.connect(self._path, timeout=5)
        try:
            with db:
                yield db
        finally:
            db.close()

    # -- patients ------------------------------------------------------------------------

    def _patient(
        self, resident_id: str, hospital_code: str, created: bool
    ) -> HospitalPatient | None:
        with self._db() as db:
            row = db.execute(
                "SELECT patient_id FROM patient WHERE resident_id = ?", (resident_id,)
            ).fetchone()
        if row is None:
            return None
        return HospitalPatient(
            hospital_code=hospital_code,
            patient_id=row[0],
            resident_id=resident_id,
            created=created,
        )

    @hookimpl
    def hcm_his_lookup_patient(
        self, resident: Resident, hospital_code: str
    ) -> HospitalPatient | None:
        return self._patient(resident.resident_id, hospital_code, created=False)

    @hookimpl
    def hcm_his_register_patient(
        self, resident: Resident, hospital_code: str
    ) -> HospitalPatient | None:
        with self._lock, self._db() as db:
            row = db.execute(
                "SELECT patient_id FROM patient WHERE resident_id = ?", (resident.resident_id,)
            ).fetchone()
            if row is not None:
                return HospitalPatient(
                    hospital_code=hospital_code,
                    patient_id=row[0],
                    resident_id=resident.resident_id,
                    created=False,
                )
            number = db.execute("SELECT count(*) FROM patient").fetchone()[0] + 1
            patient_id = f"{self.settings.hospital_code}{number:08d}"
            db.execute(
                "INSERT INTO patient VALUES (?, ?, ?)",
                (patient_id, resident.resident_id, datetime.now(UTC).isoformat()),
            )
        return HospitalPatient(
            hospital_code=hospital_code,
            patient_id=patient_id,
            resident_id=resident.resident_id,
            created=True,
        )

    # -- registration and queue -------------------------------------------------------------

    @staticmethod
    def _registration(row: tuple[object, ...]) -> Registration:
        reg_id, _req, patient_id, dept, doctor, start, end, number, fee = row
        return Registration(
            registration_id=str(reg_id),
            patient_id=str(patient_id),
            department_code=str(dept),
            doctor_code=doctor if doctor is None else str(doctor),
            slot_start=datetime.fromisoformat(str(start)),
            slot_end=datetime.fromisoformat(str(end)),
            queue_number=int(str(number)),
            fee=Decimal(str(fee)) if fee else None,
        )

    @hookimpl
    def hcm_his_register_visit(
        self, patient: HospitalPatient, request: RegistrationRequest
    ) -> Registration | None:
        with self._lock, self._db() as db:
            row = db.execute(
                "SELECT * FROM registration WHERE request_id = ?", (request.request_id,)
            ).fetchone()
            if row is not None:
                return self._registration(row)
            known = db.execute(
                "SELECT 1 FROM patient WHERE patient_id = ?", (patient.patient_id,)
            ).fetchone()
            if known is None:
                raise HisError(
                    f"patient {patient.patient_id} is not registered in this HIS",
                    hint="register the patient first",
                )
            number = (
                db.execute(
                    "SELECT count(*) FROM registration WHERE department_code = ? AND "
                    "substr(slot_start, 1, 10) = ?",
                    (request.department_code, request.slot_start.date().isoformat()),
                ).fetchone()[0]
                + 1
            )
            reg_id = f"R{request.slot_start:%Y%m%d}{request.department_code}{number:04d}"
            row = (
                reg_id,
                request.request_id,
                patient.patient_id,
                request.department_code,
                request.doctor_code,
                request.slot_start.isoformat(),
                request.slot_end.isoformat(),
                number,
                str(request.fee) if request.fee is not None else None,
            )
            db.execute("INSERT INTO registration VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
        return self._registration(row)

    @hookimpl
    def hcm_his_queue_position(self, registration: Registration) -> QueuePosition | None:
        with self._db() as db:
            ahead = db.execute(
                "SELECT count(*) FROM registration WHERE department_code = ? AND "
                "substr(slot_start, 1, 10) = ? AND queue_number < ?",
                (
                    registration.department_code,
                    registration.slot_start.date().isoformat(),
                    registration.queue_number or 0,
                ),
            ).fetchone()[0]
        return QueuePosition(
            registration_id=registration.registration_id,
            queue_number=registration.queue_number or 0,
            ahead=ahead,
            estimated_wait_minutes=ahead * self.settings.minutes_per_patient,
        )

    # -- orders, charges, reports (the sample HIS has a fixed consultation order set) -------

    @hookimpl
    def hcm_his_list_orders(self, patient: HospitalPatient, visit_id: str) -> list[Order] | None:
        return [
            Order(
                order_id=f"{visit_id}-O1",
                patient_id=patient.patient_id,
                visit_id=visit_id,
                kind="lab",
                code="CBC",
                name="Complete blood count",
            )
        ]

    @hookimpl
    def hcm_his_charges_paid(
        self, patient: HospitalPatient, charge_ids: list[str], transaction_id: str
    ) -> bool | None:
        with self._lock, self._db() as db:
            known: set[str] = set()
            for reg_id, fee in db.execute(
                "SELECT registration_id, fee FROM registration WHERE patient_id = ?",
                (patient.patient_id,),
            ):
                known.add(f"{reg_id}-C1")
                if fee:
                    known.add(f"{reg_id}-C0")
            unknown = sorted(set(charge_ids) - known)
            if unknown:
                raise HisError(
                    f"charges {', '.join(unknown)} are not this patient's; nothing was paid",
                    hint="list the visit's charges again and pay those",
                )
            for charge_id in charge_ids:
                # the same transaction again is a retry; another one would pay twice
                row = db.execute(
                    "SELECT transaction_id FROM paid_charge WHERE charge_id = ?", (charge_id,)
                ).fetchone()
                if row is not None and row[0] != transaction_id:
                    raise HisError(
                        f"charge {charge_id} is already paid by another transaction",
                        hint="refund one of the two payments at the cashier",
                    )
                db.execute(
                    "INSERT OR IGNORE INTO paid_charge VALUES (?, ?)", (charge_id, transaction_id)
                )
        return True

    @hookimpl
    def hcm_his_list_charges(self, patient: HospitalPatient, visit_id: str) -> list[Charge] | None:
        with self._db() as db:
            row = db.execute(
                "SELECT fee FROM registration WHERE registration_id = ?", (visit_id,)
            ).fetchone()
            paid = {r[0] for r in db.execute("SELECT charge_id FROM paid_charge")}
        charges = [
            Charge(
                charge_id=f"{visit_id}-C1",
                patient_id=patient.patient_id,
                visit_id=visit_id,
                item_code="CBC",
                item_name="Complete blood count",
                quantity=Decimal(1),
                unit_price=Decimal("25.00"),
                amount=Decimal("25.00"),
                insurance_category="A",
            )
        ]
        if row is not None and row[0]:
            charges.insert(
                0,
                Charge(
                    charge_id=f"{visit_id}-C0",
                    patient_id=patient.patient_id,
                    visit_id=visit_id,
                    item_code="REG",
                    item_name="Registration fee",
                    quantity=Decimal(1),
                    unit_price=Decimal(row[0]),
                    amount=Decimal(row[0]),
                ),
            )
        return [c.model_copy(update={"paid": c.charge_id in paid}) for c in charges]

    def sign_off_report(self, report_id: str) -> None:
        """The sample lab signs a report off: from now on it is final, with its results."""
        with self._lock, self._db() as db:
            db.execute(
                "INSERT OR IGNORE INTO signed_report VALUES (?, ?)",
                (report_id, datetime.now(UTC).isoformat(timespec="seconds")),
            )

    @hookimpl
    def hcm_his_list_reports(self, patient: HospitalPatient, visit_id: str) -> list[Report] | None:
        report_id = f"{visit_id}-L1"
        with self._db() as db:
            signed = db.execute(
                "SELECT issued_at FROM signed_report WHERE report_id = ?", (report_id,)
            ).fetchone()
        if signed is None:
            return [
                Report(
                    report_id=report_id,
                    patient_id=patient.patient_id,
                    visit_id=visit_id,
                    kind="lab",
                    title="Complete blood count",
                    status="pending",
                )
            ]
        return [
            Report(
                report_id=report_id,
                patient_id=patient.patient_id,
                visit_id=visit_id,
                kind="lab",
                title="血常规 Complete blood count",
                issued_at=datetime.fromisoformat(signed[0]),
                status="final",
                summary="血红蛋白略低，中性粒细胞比例偏高，请结合临床。",
                results=tuple(
                    ReportResult(
                        code=code, name=name, value=value, unit=unit, reference_range=ref, flag=flag
                    )
                    for code, name, value, unit, ref, flag in BLOOD_COUNT
                ),
                department="NEI",
                signed_by="检验科 L01",
            )
        ]

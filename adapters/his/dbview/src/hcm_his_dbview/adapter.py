"""The database-view HIS adapter: every HIS hook as one SQL statement from the config.

Reads are ``SELECT``\\ s from the HIS's views; writes call its stored procedures, which
must be idempotent on the key the hook passes (resident ID, request ID, transaction
ID) and return the record made. Statements are SQLAlchemy ``text()`` with named bind
parameters; the columns they return are matched by name to the models' fields. The
defaults fit the reference HIS's database (``hcm_his_reference.dbview``).

Errors: a procedure refuses by raising with one of ``refusal_sqlstates`` (PostgreSQL's
``RAISE EXCEPTION`` is ``P0001``) and a message ``code: text`` → HisRejectedError; a
database that cannot be reached or times out → HisUnavailableError (the statement is
tried again, at most ``attempts`` times, as every statement is a read or an idempotent
procedure); SQL that fails otherwise is a site configuration fault → HisError naming
the statement to fix.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, get_args

from pydantic import Field, ValidationError
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from hcmiddleware import Middleware, Secret, SettingsModel, hookimpl
from hcmiddleware.errors import HisError, HisProtocolError, HisRejectedError, HisUnavailableError
from hcmiddleware.models import (
    Admission,
    AdmissionRequest,
    Bill,
    Charge,
    CheckResult,
    Deposit,
    Discharge,
    HospitalPatient,
    Order,
    OrderExecution,
    QueuePosition,
    Registration,
    RegistrationRequest,
    Report,
    Resident,
    Sex,
    WardOrderType,
)

__all__ = ["NAME", "DbViewHis", "DbViewHisSettings", "DbViewStatements"]

NAME = "his-dbview"

SEX = {Sex.MALE: "M", Sex.FEMALE: "F", Sex.UNKNOWN: "U", Sex.UNSPECIFIED: "U"}
#: the ward's order types (the ``order_type`` column of ``list_orders``)
WARD_ORDER_TYPES = frozenset(get_args(WardOrderType))


def _describe(exc: DBAPIError) -> str:
    """The driver's error without the values it may quote (names, ID numbers).

    Only syntax and undefined-object errors (SQLSTATE class 42) and connection
    failures (08, or none) quote identifiers and hosts rather than data.
    """
    state = str(getattr(exc.orig, "sqlstate", "") or "")
    kind = type(exc.orig).__name__
    if state[:2] in ("", "08", "42", "57"):
        first = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else ""
        return f"{kind}: {first[:200]}"
    return f"{kind} (SQLSTATE {state})"


def _local(moment: datetime) -> datetime:
    """``moment`` as the HIS's columns hold times: naive local wall-clock time.

    The ward's executions carry aware times (UTC); a ``timestamp`` parameter given an
    aware value would be ``timestamptz`` to the database, and no procedure takes that.
    """
    if moment.tzinfo is None:
        return moment
    return moment.astimezone().replace(tzinfo=None)


class DbViewStatements(SettingsModel):
    """``[plugins.his-dbview.statements]``: one SQL statement per operation.

    Parameters (``:name``) and the columns each must return are listed in docs/his.md.
    """

    lookup_patient: str = "SELECT patient_id FROM v_patient WHERE resident_id = :resident_id"
    register_patient: str = (
        "SELECT patient_id, created FROM register_patient(:resident_id, :name, :sex, "
        ":birth_date, :id_number, :hospital_code)"
    )
    register_visit: str = (
        "SELECT registration_id, patient_id, department_code, doctor_code, slot_start, "
        "slot_end, queue_number, fee, ahead FROM register_visit(:patient_id, :request_id, "
        ":kind, :department_code, :doctor_code, :slot_start, :slot_end, :fee)"
    )
    registration: str = (
        "SELECT registration_id, patient_id, department_code, doctor_code, slot_start, "
        "slot_end, queue_number, fee, ahead FROM v_registration "
        "WHERE registration_id = :registration_id"
    )
    list_orders: str = (
        "SELECT order_id, patient_id, visit_id, kind, code, name, dose, concentration, route, "
        "frequency, scheduled_at, status, ordered_by, order_type, window_start, window_end "
        "FROM v_order WHERE patient_id = :patient_id AND visit_id = :visit_id ORDER BY order_id"
    )
    list_charges: str = (
        "SELECT charge_id, patient_id, visit_id, item_code, item_name, quantity, unit_price, "
        "amount, insurance_category, paid FROM v_charge "
        "WHERE visit_id = :visit_id AND patient_id = :patient_id ORDER BY charge_id"
    )
    charges_paid: str = "SELECT pay_charges(:patient_id, :charge_ids, :transaction_id) AS ok"
    list_reports: str = (
        "SELECT report_id, patient_id, visit_id, kind, title, issued_at, status, summary "
        "FROM v_report WHERE patient_id = :patient_id AND visit_id = :visit_id ORDER BY report_id"
    )
    admit: str = (
        "SELECT admission_id, patient_id, ward, bed, admitted_at, discharged_at, "
        "deposit_balance FROM admit(:patient_id, :request_id, :department_code, :ward, :bed, "
        ":admitted_at)"
    )
    admission: str = (
        "SELECT admission_id, patient_id, ward, bed, admitted_at, discharged_at, "
        "deposit_balance FROM v_admission WHERE admission_id = :admission_id"
    )
    record_deposit: str = (
        "SELECT admission_id, patient_id, ward, bed, admitted_at, discharged_at, "
        "deposit_balance FROM record_deposit(:admission_id, :deposit_id, :amount, :paid_at, "
        ":transaction_id)"
    )
    discharge: str = (
        "SELECT admission_id, patient_id, ward, bed, admitted_at, discharged_at, "
        "deposit_balance FROM discharge(:admission_id, :discharged_at)"
    )
    order_executed: str = "SELECT order_executed(:order_id, :executed_at, :executed_by) AS ok"


class DbViewHisSettings(SettingsModel):
    """``[plugins.his-dbview]``: the HIS database and the SQL to use on it."""

    url: str = Field(
        "postgresql+psycopg://127.0.0.1/his",
        description="SQLAlchemy URL without the password",
    )
    password: Secret | None = Field(None, description="the database password, if any")
    connect_args: dict[str, str | int | float] = Field(
        default_factory=lambda: dict[str, str | int | float](connect_timeout=3),
        description="passed to the database driver",
    )
    session_sql: list[str] = Field(
        default_factory=list,
        description="run on every new connection, e.g. SET search_path / statement_timeout",
    )
    refusal_sqlstates: list[str] = Field(
        default_factory=lambda: ["P0001"],
        description="SQLSTATEs with which the HIS's procedures refuse a request",
    )
    attempts: int = Field(
        2, ge=1, le=10, description="tries per statement when the DB is unreachable"
    )
    backoff: float = Field(0.2, ge=0, le=10, description="pause before the first retry; doubles")
    minutes_per_patient: int = Field(8, ge=1, le=120)
    statements: DbViewStatements = Field(default_factory=DbViewStatements)


class DbViewHis:
    """The plugin object (the entry point names this class; created with no arguments)."""

    hcm_plugin_name = NAME

    def __init__(self) -> None:
        self.settings = DbViewHisSettings()
        self.engine: Engine | None = None
        self._hospital_code = ""

    # -- setup ------------------------------------------------------------------------

    @hookimpl
    def hcm_add_config(self, settings: object) -> None:
        settings.add(NAME, DbViewHisSettings)  # type: ignore[attr-defined]

    @hookimpl
    def hcm_configure(self, middleware: Middleware) -> None:
        settings = middleware.plugin_settings(NAME)
        if isinstance(settings, DbViewHisSettings):
            self.settings = settings
        s = self.settings
        self._hospital_code = middleware.config.middleware.institution_code
        try:
            url: URL = make_url(s.url)
        except ArgumentError as exc:
            raise HisError(
                f"[plugins.{NAME}] url is not a database URL: {exc}",
                hint="write it as dialect+driver://user@host/database",
            ) from None
        if s.password is not None:
            url = url.set(password=s.password.get_secret_value())
        engine = create_engine(url, pool_pre_ping=True, connect_args=dict(s.connect_args))
        if s.session_sql:

            @event.listens_for(engine, "connect")
            def _session(dbapi_connection: Any, _record: Any) -> None:
                cursor = dbapi_connection.cursor()
                try:
                    for statement in s.session_sql:
                        cursor.execute(statement)
                finally:
                    cursor.close()
                dbapi_connection.commit()

        self.engine = engine

    @hookimpl
    def hcm_unconfigure(self) -> None:
        if self.engine is not None:
            self.engine.dispose()
            self.engine = None

    @hookimpl
    def hcm_doctor_checks(self) -> list[CheckResult]:
        try:
            self._rows("lookup_patient", {"resident_id": "hcm-doctor-probe"})
        except HisError as exc:
            return [CheckResult(name="database", ok=False, detail=exc.message, hint=exc.hint)]
        url = make_url(self.settings.url).render_as_string(hide_password=True)
        return [CheckResult(name="database", ok=True, detail=f"{url} answers the lookup view")]

    # -- plumbing -------------------------------------------------------------------------

    def _rows(self, statement: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        if self.engine is None:
            raise HisError(
                "the database-view adapter is not configured", hint="start the Middleware first"
            )
        sql = getattr(self.settings.statements, statement)
        failure: DBAPIError | None = None
        for attempt in range(1, self.settings.attempts + 1):
            if attempt > 1:
                time.sleep(self.settings.backoff * 2 ** (attempt - 2))
            try:
                with self.engine.begin() as conn:
                    return [dict(r) for r in conn.execute(text(sql), dict(params)).mappings()]
            except (OperationalError, InterfaceError) as exc:
                failure = exc  # unreachable, dropped or timed out: worth another try
            except PoolTimeoutError:
                raise HisUnavailableError("no free database connection in time") from None
            except DBAPIError as exc:
                refusal = self._refusal(exc)
                if refusal is not None:
                    raise refusal from None
                state = str(getattr(exc.orig, "sqlstate", "") or "")
                if state.startswith("XX"):
                    raise HisProtocolError(
                        f"the HIS database failed internally (SQLSTATE {state})",
                        hint="tell the HIS's database administrators; nothing was recorded",
                    ) from None
                raise HisError(
                    f"the configured SQL for {statement} failed: {_describe(exc)}",
                    hint=f"check [plugins.{NAME}.statements] {statement} against the HIS's views",
                ) from None
        assert failure is not None
        raise HisUnavailableError(
            f"HIS database unreachable or too slow: {_describe(failure)} "
            f"(after {self.settings.attempts} tries, {statement})"
        )

    def _refusal(self, exc: DBAPIError) -> HisRejectedError | None:
        state = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        if state not in self.settings.refusal_sqlstates:
            return None
        diag = getattr(exc.orig, "diag", None)
        message = getattr(diag, "message_primary", None) or str(exc.orig).splitlines()[0]
        code, _, reason = str(message).partition(": ")
        if not reason:
            code, reason = str(state), str(message)
        return HisRejectedError(
            f"the HIS refused the request ({code}): {reason}", code=code, status=str(state)
        )

    def _one(self, statement: str, params: Mapping[str, Any]) -> dict[str, Any]:
        rows = self._rows(statement, params)
        if len(rows) != 1:
            raise HisProtocolError(
                f"the HIS's {statement} returned {len(rows)} rows where one was expected",
                hint=f"check [plugins.{NAME}.statements] {statement}",
            )
        return rows[0]

    @staticmethod
    def _model(kind: type[Any], row: Mapping[str, Any], statement: str, **extra: Any) -> Any:
        fields = set(kind.model_fields)
        data = {k: v for k, v in row.items() if k in fields}
        data.update(extra)
        try:
            return kind(**data)
        except ValidationError as exc:
            raise HisProtocolError(
                f"the HIS's {statement} returned a row that is not a valid {kind.__name__}: "
                f"{exc.errors()[0]['loc']} {exc.errors()[0]['msg']}",
                hint=f"check the columns of [plugins.{NAME}.statements] {statement}",
            ) from None

    # -- patients -------------------------------------------------------------------------

    @hookimpl
    def hcm_his_lookup_patient(
        self, resident: Resident, hospital_code: str
    ) -> HospitalPatient | None:
        rows = self._rows("lookup_patient", {"resident_id": resident.resident_id})
        if not rows:
            return None
        if len(rows) > 1:
            raise HisProtocolError(
                f"the HIS holds {len(rows)} patients for one resident",
                hint="ask the HIS administrators to merge the duplicate patient records",
            )
        return HospitalPatient(
            hospital_code=hospital_code,
            patient_id=str(rows[0]["patient_id"]),
            resident_id=resident.resident_id,
        )

    @hookimpl
    def hcm_his_register_patient(
        self, resident: Resident, hospital_code: str
    ) -> HospitalPatient | None:
        row = self._one(
            "register_patient",
            {
                "resident_id": resident.resident_id,
                "name": resident.name,
                "sex": SEX[resident.sex],
                "birth_date": resident.birth_date,
                "id_number": resident.id_number,
                "hospital_code": hospital_code,
            },
        )
        return HospitalPatient(
            hospital_code=hospital_code,
            patient_id=str(row["patient_id"]),
            resident_id=resident.resident_id,
            created=bool(row.get("created", False)),
        )

    # -- outpatient ---------------------------------------------------------------------------

    @hookimpl
    def hcm_his_register_visit(
        self, patient: HospitalPatient, request: RegistrationRequest
    ) -> Registration | None:
        row = self._one(
            "register_visit",
            {
                "patient_id": patient.patient_id,
                "request_id": request.request_id,
                "kind": request.kind,
                "department_code": request.department_code,
                "doctor_code": request.doctor_code,
                "slot_start": request.slot_start,
                "slot_end": request.slot_end,
                "fee": request.fee,
            },
        )
        return self._model(Registration, row, "register_visit")  # type: ignore[no-any-return]

    @hookimpl
    def hcm_his_queue_position(self, registration: Registration) -> QueuePosition | None:
        rows = self._rows("registration", {"registration_id": registration.registration_id})
        if not rows:
            return None
        ahead = int(rows[0]["ahead"])
        return QueuePosition(
            registration_id=registration.registration_id,
            queue_number=int(rows[0]["queue_number"]),
            ahead=ahead,
            estimated_wait_minutes=ahead * self.settings.minutes_per_patient,
        )

    @hookimpl
    def hcm_his_list_orders(self, patient: HospitalPatient, visit_id: str) -> list[Order] | None:
        rows = self._rows("list_orders", {"patient_id": patient.patient_id, "visit_id": visit_id})
        return [self._order(r) for r in rows]

    def _order(self, row: Mapping[str, Any]) -> Order:
        """One row of ``list_orders``; the ward's order type and window checked as the
        other adapters check them (an order the ward cannot check is refused, not guessed).
        """
        order_id = str(row.get("order_id", "?"))
        order_type = row.get("order_type")
        if order_type is not None and order_type not in WARD_ORDER_TYPES:
            raise HisProtocolError(
                f"order {order_id}: order type {str(order_type)[:20]!r} is not one of "
                f"{', '.join(sorted(WARD_ORDER_TYPES))}",
                hint="map the HIS's order types to the ward's in "
                f"[plugins.{NAME}.statements] list_orders (a CASE expression)",
            )
        order: Order = self._model(Order, row, "list_orders")
        start, end = order.window_start, order.window_end
        if start is not None and end is not None and end <= start:
            raise HisProtocolError(
                f"order {order_id}: its window ends ({end:%Y-%m-%d %H:%M}) before it starts "
                f"({start:%Y-%m-%d %H:%M})",
                hint="the order cannot be checked at the bedside; ask the HIS to correct it",
            )
        return order

    @hookimpl
    def hcm_his_list_charges(self, patient: HospitalPatient, visit_id: str) -> list[Charge] | None:
        rows = self._rows("list_charges", {"patient_id": patient.patient_id, "visit_id": visit_id})
        return [self._model(Charge, r, "list_charges") for r in rows]

    @hookimpl
    def hcm_his_charges_paid(
        self, patient: HospitalPatient, charge_ids: list[str], transaction_id: str
    ) -> bool | None:
        self._one(
            "charges_paid",
            {
                "patient_id": patient.patient_id,
                "charge_ids": list(charge_ids),
                "transaction_id": transaction_id,
            },
        )
        return True

    @hookimpl
    def hcm_his_list_reports(self, patient: HospitalPatient, visit_id: str) -> list[Report] | None:
        rows = self._rows("list_reports", {"patient_id": patient.patient_id, "visit_id": visit_id})
        return [self._model(Report, r, "list_reports") for r in rows]

    # -- inpatient ----------------------------------------------------------------------------

    def _admission(self, row: Mapping[str, Any], statement: str) -> Admission:
        return self._model(Admission, row, statement)  # type: ignore[no-any-return]

    @hookimpl
    def hcm_his_admit(
        self, patient: HospitalPatient, request: AdmissionRequest
    ) -> Admission | None:
        row = self._one(
            "admit",
            {
                "patient_id": patient.patient_id,
                "request_id": request.request_id,
                "department_code": request.department_code,
                "ward": request.ward,
                "bed": request.bed,
                "admitted_at": request.admitted_at,
            },
        )
        return self._admission(row, "admit")

    @hookimpl
    def hcm_his_record_deposit(self, admission: Admission, deposit: Deposit) -> Admission | None:
        row = self._one(
            "record_deposit",
            {
                "admission_id": admission.admission_id,
                "deposit_id": deposit.deposit_id,
                "amount": deposit.amount,
                "paid_at": deposit.paid_at,
                "transaction_id": deposit.transaction_id,
            },
        )
        return self._admission(row, "record_deposit")

    @hookimpl
    def hcm_his_inpatient_bill(self, admission: Admission) -> Bill | None:
        stay = self._admission(
            self._one("admission", {"admission_id": admission.admission_id}), "admission"
        )
        rows = self._rows(
            "list_charges", {"patient_id": stay.patient_id, "visit_id": stay.admission_id}
        )
        items = [self._model(Charge, r, "list_charges") for r in rows]
        total = sum((c.amount for c in items), Decimal("0.00"))
        paid = sum((c.amount for c in items if c.paid), Decimal("0.00"))
        return Bill(
            patient_id=stay.patient_id,
            admission_id=stay.admission_id,
            items=tuple(items),
            total=total,
            deposits=stay.deposit_balance,
            balance=total - paid - stay.deposit_balance,
        )

    @hookimpl
    def hcm_his_discharge(self, admission: Admission, bill: Bill) -> Discharge | None:
        at = datetime.now().replace(microsecond=0)
        stay = self._admission(
            self._one("discharge", {"admission_id": admission.admission_id, "discharged_at": at}),
            "discharge",
        )
        final = self.hcm_his_inpatient_bill(stay) or bill
        return Discharge(
            admission_id=stay.admission_id, discharged_at=stay.discharged_at or at, final_bill=final
        )

    @hookimpl
    def hcm_his_order_executed(self, execution: OrderExecution) -> bool | None:
        self._one(
            "order_executed",
            {
                "order_id": execution.order_id,
                "executed_at": _local(execution.executed_at),
                "executed_by": execution.executed_by,
            },
        )
        return True

"""The database-view adapter against the reference HIS's PostgreSQL face (views and
stored procedures in a schema of its own), over a real connection to 127.0.0.1:5432."""

from __future__ import annotations

import contextlib
import socket
import threading
import uuid
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
from hcm_his_dbview import DbViewHis
from hcm_his_reference import dbview

from hcmiddleware import Middleware
from hcmiddleware.errors import (
    HisError,
    HisProtocolError,
    HisRejectedError,
    HisUnavailableError,
    VerificationFailedError,
)
from hcmiddleware.models import (
    Admission,
    AdmissionRequest,
    BedsideScan,
    HospitalPatient,
    RegistrationRequest,
    Resident,
    Sex,
)
from hcmiddleware.registry import installed_plugins
from hcmiddleware.testing.conformance import HisConformance

psycopg = pytest.importorskip("psycopg")

pytestmark = pytest.mark.postgres

DSN = "host=127.0.0.1 port=5432 dbname=test user=postgres"
URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture
def his_schema() -> Iterator[str]:
    """A fresh reference HIS in a uniquely named schema, dropped afterwards."""
    schema = f"his_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(DSN) as conn:
        dbview.install(conn, schema)
    yield schema
    with psycopg.connect(DSN) as conn:
        dbview.drop(conn, schema)


def settings_for(schema: str, **overrides: Any) -> dict[str, Any]:
    return {
        "url": URL,
        "session_sql": [f"SET search_path TO {schema}", "SET statement_timeout = 3000"],
        "attempts": 2,
        "backoff": 0.01,
        **overrides,
    }


@pytest.fixture
def relay() -> Iterator[CommitLosingRelay]:
    """A relay in front of PostgreSQL that can lose the answer to a COMMIT."""
    made = CommitLosingRelay()
    yield made
    made.close()


class TestDbViewConformance(HisConformance):
    plugin_name = "his-dbview"

    @pytest.fixture
    def plugin(self) -> object:
        return installed_plugins()["his-dbview"].entry_point.load()()

    @pytest.fixture
    def plugin_settings(self, his_schema: str, relay: CommitLosingRelay) -> dict[str, Any]:
        return settings_for(
            his_schema,
            url=f"postgresql+psycopg://postgres@127.0.0.1:{relay.port}/test",
            session_sql=[f"SET search_path TO {his_schema}", "SET statement_timeout = 400"],
        )

    @pytest.fixture
    def his_faults(self, his_schema: str, relay: CommitLosingRelay) -> DatabaseFaults:
        return DatabaseFaults(his_schema, relay)


class DatabaseFaults:
    """The HisFaults switches: the reference HIS database's fault table, and a relay."""

    def __init__(self, schema: str, relay: CommitLosingRelay) -> None:
        self.schema = schema
        self.relay = relay

    def _set(self, mode: str | None, seconds: float = 0) -> None:
        with psycopg.connect(DSN) as conn:
            conn.execute(f"DELETE FROM {self.schema}.fault")
            if mode:
                conn.execute(f"INSERT INTO {self.schema}.fault VALUES (%s, %s)", (mode, seconds))

    def refuse(self) -> None:
        self._set("refuse")

    def down(self) -> None:
        self._set("down")

    def slow(self) -> None:
        self._set("slow", 1.0)

    def garbage(self) -> None:
        self._set("garbage")

    def lose_next_write_answer(self) -> None:
        # every write is one procedure call in one transaction: lose its COMMIT's answer
        self.relay.armed = True

    def clear(self) -> None:
        self._set(None)


# --- the adapter on its own ------------------------------------------------------------

RESIDENT = Resident(
    resident_id="R-0001", name="欧阳娜娜", sex=Sex.FEMALE, birth_date=date(1992, 5, 17)
)
NOW = datetime(2026, 11, 27, 9, 30, 0)


class CommitLosingRelay:
    """A TCP relay to PostgreSQL that, when armed, lets the next COMMIT reach the server
    but drops the connection instead of relaying the server's answer: the write is
    done, its answer lost."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.armed = False
        self.dropped = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", 5432))
            state = {"drop_answer": False}
            threading.Thread(target=self._up, args=(client, server, state), daemon=True).start()
            threading.Thread(target=self._down, args=(server, client, state), daemon=True).start()

    @staticmethod
    def _hang_up(*socks: socket.socket) -> None:
        # shutdown, not just close: the other relay thread may be blocked in recv
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _up(self, client: socket.socket, server: socket.socket, state: dict[str, bool]) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                if self.armed and b"COMMIT" in data:
                    state["drop_answer"] = True
                    self.armed = False
                server.sendall(data)
        self._hang_up(client, server)

    def _down(self, server: socket.socket, client: socket.socket, state: dict[str, bool]) -> None:
        with contextlib.suppress(OSError):
            while data := server.recv(65536):
                if state["drop_answer"]:
                    self.dropped += 1
                    break
                client.sendall(data)
        self._hang_up(client, server)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def adapter(his_schema: str, hcm_make_middleware: Any) -> Any:
    def make(**overrides: Any) -> tuple[Middleware, DbViewHis]:
        plugin = DbViewHis()
        mw = hcm_make_middleware(
            plugins={"his-dbview": plugin},
            settings={"his-dbview": settings_for(his_schema, **overrides)},
        )
        return mw, plugin

    return make


def _count(schema: str, table: str) -> int:
    with psycopg.connect(DSN) as conn:
        row = conn.execute(f"SELECT count(*) FROM {schema}.{table}").fetchone()
    assert row is not None
    return int(row[0])


def test_lost_commit_answer_is_retried_without_a_duplicate(adapter: Any, his_schema: str) -> None:
    proxy = CommitLosingRelay()
    try:
        mw, _plugin = adapter(url=f"postgresql+psycopg://postgres@127.0.0.1:{proxy.port}/test")
        proxy.armed = True
        patient = mw.hooks.hcm_his_register_patient(
            resident=RESIDENT, card=None, hospital_code="H1"
        )
        assert proxy.dropped == 1, "the answer to the COMMIT was lost"
        assert _count(his_schema, "patient") == 1
        found = mw.hooks.hcm_his_lookup_patient(resident=RESIDENT, hospital_code="H1")
        assert found is not None
        assert found.patient_id == patient.patient_id
    finally:
        proxy.close()


def test_refusal_carries_the_procedures_code(adapter: Any) -> None:
    mw, _plugin = adapter()
    stranger = HospitalPatient(hospital_code="H1", patient_id="NOBODY", resident_id="x")
    request = RegistrationRequest(
        department_code="NEI", slot_start=NOW, slot_end=NOW + timedelta(minutes=20), request_id="R1"
    )
    with pytest.raises(HisRejectedError) as caught:
        mw.hooks.hcm_his_register_visit(patient=stranger, request=request)
    assert (caught.value.code, caught.value.status) == ("unknown-patient", "P0001")
    assert caught.value.plugin == "his-dbview"  # type: ignore[attr-defined]
    assert "NOBODY" in caught.value.message


def test_discharge_with_an_unpaid_bill_is_refused(adapter: Any, his_schema: str) -> None:
    mw, _plugin = adapter()
    patient = mw.hooks.hcm_his_register_patient(resident=RESIDENT, card=None, hospital_code="H1")
    stay = mw.hooks.hcm_his_admit(
        patient=patient,
        request=AdmissionRequest(
            department_code="NEI", ward="W3", bed="07", admitted_at=NOW, request_id="A-1"
        ),
    )
    bill = mw.hooks.hcm_his_inpatient_bill(admission=stay)
    assert bill.total == Decimal("95.50")  # bed 60.00 + nursing 30.00 + saline 5.50
    with pytest.raises(HisRejectedError) as caught:
        mw.hooks.hcm_his_discharge(admission=stay, bill=bill)
    assert caught.value.code == "bill-unsettled"
    with psycopg.connect(DSN) as conn:
        row = conn.execute(f"SELECT discharged_at FROM {his_schema}.admission").fetchone()
    assert row == (None,)


def test_wrong_sql_in_the_config_names_the_statement(adapter: Any) -> None:
    mw, _plugin = adapter(
        statements={"list_orders": "SELECT * FROM no_such_view WHERE :visit_id = :patient_id"}
    )
    patient = HospitalPatient(hospital_code="H1", patient_id="P1", resident_id="x")
    with pytest.raises(HisError) as caught:
        mw.hooks.hcm_his_list_orders(patient=patient, visit_id="V1")
    assert "list_orders" in caught.value.message
    assert "[plugins.his-dbview.statements] list_orders" in caught.value.hint


def test_columns_that_do_not_fit_are_a_protocol_error(adapter: Any) -> None:
    mw, _plugin = adapter(
        statements={
            "list_reports": "SELECT 'x' AS report_id, 'nonsense' AS kind"
            " WHERE :visit_id <> :patient_id"
        }
    )
    patient = HospitalPatient(hospital_code="H1", patient_id="P1", resident_id="x")
    with pytest.raises(HisProtocolError, match="not a valid Report"):
        mw.hooks.hcm_his_list_reports(patient=patient, visit_id="V1")


def test_database_not_listening_is_unavailable(hcm_make_middleware: Any, his_schema: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mw = hcm_make_middleware(
        plugins={"his-dbview": DbViewHis()},
        settings={
            "his-dbview": settings_for(
                his_schema, url=f"postgresql+psycopg://postgres@127.0.0.1:{port}/test"
            )
        },
    )
    with pytest.raises(HisUnavailableError) as caught:
        mw.hooks.hcm_his_lookup_patient(resident=RESIDENT, hospital_code="H1")
    assert "2 tries" in caught.value.message
    assert [c.ok for name, c in mw.doctor() if name == "his-dbview"] == [False]


def test_doctor_reaches_the_lookup_view(adapter: Any) -> None:
    mw, _plugin = adapter()
    assert [c.ok for name, c in mw.doctor() if name == "his-dbview"] == [True]


def test_database_errors_do_not_quote_the_values_sent(adapter: Any) -> None:
    mw, _plugin = adapter(
        statements={
            "list_orders": "SELECT * FROM v_order WHERE visit_id = CAST(:visit_id AS date)::text"
        }
    )
    patient = HospitalPatient(hospital_code="H1", patient_id="P1", resident_id="x")
    with pytest.raises(HisError) as caught:
        mw.hooks.hcm_his_list_orders(patient=patient, visit_id="欧阳娜娜")
    assert "22007" in caught.value.message or "22008" in caught.value.message
    assert "欧阳娜娜" not in str(caught.value)


def test_simultaneous_registrations_of_one_resident_make_one_patient(
    adapter: Any, his_schema: str
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    mw, _plugin = adapter()
    with ThreadPoolExecutor(max_workers=5) as pool:
        made = list(
            pool.map(
                lambda _: mw.hooks.hcm_his_register_patient(
                    resident=RESIDENT, card=None, hospital_code="H0001"
                ),
                range(5),
            )
        )
    assert len({p.patient_id for p in made}) == 1
    assert _count(his_schema, "patient") == 1


# --- orders that carry what the bedside checks need ---------------------------------------

HOSPITAL = "210100000001"


def _add_order(schema: str, admission_id: str, patient_id: str, **values: Any) -> str:
    """A doctor's order in the HIS database (its add_order procedure); the order ID."""
    columns: dict[str, Any] = {"kind": "drug", "code": "X", "name": "X", "price": 1, "at": None}
    columns.update(values)
    named = ", ".join(f"{k} => %({k})s" for k in columns)
    with psycopg.connect(DSN) as conn:
        conn.execute(f"SET search_path TO {schema}")
        row = conn.execute(
            f"SELECT add_order(%(patient)s, %(stay)s, {named})",
            {"patient": patient_id, "stay": admission_id, **columns},
        ).fetchone()
    assert row is not None
    return str(row[0])


def _spoil(schema: str, order_id: str, column: str, value: object) -> None:
    """What a faulty HIS view returns for an order (its add_order refuses these)."""
    with psycopg.connect(DSN) as conn:
        conn.execute(
            f"UPDATE {schema}.orders SET {column} = %s WHERE order_id = %s", (value, order_id)
        )


@pytest.fixture
def ward_stay(his_schema: str, hcm_make_middleware: Any) -> tuple[Middleware, Admission, str]:
    """The sample card's holder admitted through the adapter (5A bed 12), wearing WB-0001."""
    from hcmiddleware.card.emulator import EmulatedCard
    from hcmiddleware.flows.inpatient import InpatientFlow
    from hcmiddleware.sam.samples import TEST_ISSUER_KEYS

    mw: Middleware = hcm_make_middleware(
        plugins={"his-dbview": DbViewHis()},
        settings={"his-dbview": settings_for(his_schema)},
        middleware={"institution_code": HOSPITAL, "site_name": "Test hospital"},
        sam={"keys": str(TEST_ISSUER_KEYS)},
    )
    profile = Path(str(files("hcmiddleware.card.samples"))) / "resident-profile.json"
    flow = InpatientFlow(mw, actor="admissions-1")
    who = flow.identify(EmulatedCard.from_files(profile, TEST_ISSUER_KEYS))
    patient = flow.patient(who)
    at = datetime.now().replace(second=0, microsecond=0)
    admission = flow.admit(patient, department_code="NEI", ward="5A", bed="12", admitted_at=at)
    assert who.card is not None
    mw.ward.bind("WB-0001", admission, card_number=who.card.issuer.card_number)
    return mw, admission, his_schema


def test_orders_carry_the_ward_order_type_and_window(
    ward_stay: tuple[Middleware, Admission, str],
) -> None:
    mw, admission, schema = ward_stay
    start = datetime.now().replace(second=0, microsecond=0)
    skin = _add_order(
        schema,
        admission.admission_id,
        admission.patient_id,
        code="PNC-ST",
        name="青霉素皮试 Penicillin skin test",
        dose="0.1 ml",
        conc="500 U/ml",
        route="ID",
        freq="ONCE",
        order_type="skin_test",
        window_start=start,
        window_end=start + timedelta(hours=1),
        ordered_by="D-017",
    )
    blood = _add_order(
        schema,
        admission.admission_id,
        admission.patient_id,
        kind="specimen",
        code="BLD-CUL",
        name="血培养 Blood culture",
        order_type="specimen",
        window_start=start,
        window_end=start + timedelta(minutes=90),
    )
    orders = {o.order_id: o for o in mw.ward.orders("WB-0001")}
    assert (orders[skin].order_type, orders[skin].ordered_by) == ("skin_test", "D-017")
    assert (orders[skin].window_start, orders[skin].window_end) == (
        start,
        start + timedelta(hours=1),
    )
    assert orders[skin].scheduled_at is None
    assert (orders[blood].kind, orders[blood].order_type) == ("specimen", "specimen")
    drip = next(o for o in orders.values() if o.code == "NS250")
    assert (drip.order_type, drip.window_start) == ("infusion", None)
    assert drip.scheduled_at is not None


def test_the_rule_of_the_hiss_order_type_applies_at_the_bedside(
    ward_stay: tuple[Middleware, Admission, str],
) -> None:
    mw, admission, schema = ward_stay
    start = datetime.now().replace(second=0, microsecond=0)
    # a drug by the intradermal route that the HIS types as a skin test: a second nurse
    skin = _add_order(
        schema,
        admission.admission_id,
        admission.patient_id,
        code="PNC-ST",
        name="青霉素皮试",
        dose="0.1 ml",
        route="ID",
        order_type="skin_test",
        window_start=start - timedelta(minutes=5),
        window_end=start + timedelta(minutes=30),
    )
    scan = BedsideScan(
        wristband_id="WB-0001",
        nurse_id="N-001",
        order_id=skin,
        bed="12",
        drug_code="PNC-ST",
        dose="0.1 ml",
        route="ID",
    )
    with pytest.raises(VerificationFailedError) as caught:
        mw.ward.begin(scan)
    assert caught.value.failed == ("second_nurse",)
    # its own window, not the rule's minutes around a schedule: an hour later is too late
    late = scan.model_copy(
        update={"second_nurse_id": "N-002", "scanned_at": start + timedelta(hours=1)}
    )
    verdict = mw.ward.verify(late)
    assert verdict.failed == ("time",)
    assert verdict.order_type == "skin_test"
    done = mw.ward.execute(scan.model_copy(update={"second_nurse_id": "N-002"}))
    assert (done.state, done.order_type, done.his_state) == ("done", "skin_test", "recorded")
    with psycopg.connect(DSN) as conn:
        rows = conn.execute(f"SELECT order_id, executed_at FROM {schema}.execution").fetchall()
    assert done.executed_at is not None
    # the HIS's times are local wall-clock times; the ward's are aware
    assert rows == [(skin, done.executed_at.astimezone().replace(tzinfo=None))]


@pytest.mark.parametrize(
    ("column", "value", "match"),
    [
        ("order_type", "transfusion", "transfusion"),
        ("window_end", datetime(2000, 1, 1), "ends"),
    ],
)
def test_an_order_the_ward_cannot_check_is_refused(
    ward_stay: tuple[Middleware, Admission, str], column: str, value: object, match: str
) -> None:
    mw, admission, schema = ward_stay
    start = datetime.now().replace(second=0, microsecond=0)
    order_id = _add_order(
        schema,
        admission.admission_id,
        admission.patient_id,
        code="CEF",
        name="头孢曲松",
        dose="1 g",
        route="IVGTT",
        order_type="infusion",
        window_start=start,
        window_end=start + timedelta(hours=1),
    )
    _spoil(schema, order_id, column, value)
    with pytest.raises(HisProtocolError, match=match) as caught:
        mw.ward.orders("WB-0001")
    assert caught.value.hint
    assert order_id in caught.value.message


def test_the_his_database_refuses_orders_the_ward_could_not_check(
    ward_stay: tuple[Middleware, Admission, str],
) -> None:
    _mw, admission, schema = ward_stay
    start = datetime(2026, 11, 27, 9, 0)
    for bad in (
        {"order_type": "transfusion", "at": start},
        {"at": None},
        {"at": None, "window_start": start, "window_end": start},
    ):
        with pytest.raises(psycopg.errors.RaiseException, match="invalid-order"):
            _add_order(schema, admission.admission_id, admission.patient_id, dose="1 ml", **bad)

"""The reference HIS's own records: patients, visits, stays, orders, charges, reports.

Both protocol fronts (HL7 v2 over MLLP, FHIR R4 over HTTP) work on this one store, so
an adapter of either kind sees the same hospital. Every write that a client may retry
is keyed by the client's own idempotency key (resident ID, request ID, transaction ID),
so a resent request finds the first answer instead of making a second record.

Registering a visit plays the doctor too: a consultation produces a fixed order set
(a blood count and a drug), its charges and a pending lab report; an admission produces
a nursing order, an infusion and the first day's bed charge. Tests may add more with
:meth:`Store.add_order`, :meth:`Store.add_charge` and :meth:`Store.issue_report`.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

__all__ = ["ORDER_TYPES", "HisFaultError", "Store"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS patient (
    patient_id TEXT PRIMARY KEY,
    resident_id TEXT NOT NULL UNIQUE,
    id_number TEXT,
    name TEXT NOT NULL,
    sex TEXT NOT NULL,
    birth_date TEXT,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS visit (
    visit_id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL UNIQUE,
    patient_id TEXT NOT NULL REFERENCES patient(patient_id),
    kind TEXT NOT NULL,
    department TEXT NOT NULL,
    doctor TEXT,
    slot_start TEXT NOT NULL,
    slot_end TEXT NOT NULL,
    queue_number INTEGER NOT NULL,
    fee TEXT
);
CREATE TABLE IF NOT EXISTS admission (
    admission_id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL UNIQUE,
    patient_id TEXT NOT NULL REFERENCES patient(patient_id),
    department TEXT NOT NULL,
    ward TEXT NOT NULL,
    bed TEXT NOT NULL,
    admitted_at TEXT NOT NULL,
    discharged_at TEXT
);
CREATE TABLE IF NOT EXISTS orders (
    order_id TEXT PRIMARY KEY,
    patient_id TEXT NOT NULL,
    visit_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    code TEXT NOT NULL,
    name TEXT NOT NULL,
    dose TEXT,
    concentration TEXT,
    route TEXT,
    frequency TEXT,
    scheduled_at TEXT,
    status TEXT NOT NULL,
    ordered_by TEXT,
    order_type TEXT,
    window_start TEXT,
    window_end TEXT
);
CREATE TABLE IF NOT EXISTS charge (
    charge_id TEXT PRIMARY KEY,
    patient_id TEXT NOT NULL,
    visit_id TEXT NOT NULL,
    item_code TEXT NOT NULL,
    item_name TEXT NOT NULL,
    quantity TEXT NOT NULL,
    unit_price TEXT NOT NULL,
    amount TEXT NOT NULL,
    category TEXT,
    paid_by TEXT
);
CREATE TABLE IF NOT EXISTS report (
    report_id TEXT PRIMARY KEY,
    patient_id TEXT NOT NULL,
    visit_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    title TEXT NOT NULL,
    issued_at TEXT,
    status TEXT NOT NULL,
    summary TEXT
);
CREATE TABLE IF NOT EXISTS deposit (
    transaction_id TEXT PRIMARY KEY,
    deposit_id TEXT NOT NULL,
    admission_id TEXT NOT NULL REFERENCES admission(admission_id),
    amount TEXT NOT NULL,
    paid_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS execution (
    order_id TEXT NOT NULL REFERENCES orders(order_id),
    executed_at TEXT NOT NULL,
    executed_by TEXT NOT NULL,
    PRIMARY KEY (order_id, executed_at)
);
CREATE TABLE IF NOT EXISTS specimen (
    specimen_id TEXT PRIMARY KEY,
    client_key TEXT NOT NULL UNIQUE,
    order_id TEXT NOT NULL REFERENCES orders(order_id),
    collected_at TEXT NOT NULL,
    collected_by TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS message (
    control_id TEXT PRIMARY KEY,
    answer BLOB NOT NULL
);
"""


class HisFaultError(Exception):
    """The HIS refuses a request; ``code`` is a short machine code, ``text`` says why.

    The MLLP front answers it with a NAK (``AE`` and an ERR segment carrying the code),
    the FHIR front with an OperationOutcome.
    """

    def __init__(self, code: str, text: str, *, status: int = 422) -> None:
        super().__init__(f"{code}: {text}")
        self.code = code
        self.text = text
        self.status = status


Row = dict[str, Any]


@dataclass(frozen=True)
class _OrderSet:
    kind: str
    code: str
    name: str
    price: str
    dose: str | None = None
    concentration: str | None = None
    route: str | None = None
    frequency: str | None = None
    #: the ward's order type (skin_test, specimen, infusion, injection, oral, other)
    order_type: str | None = None


#: the order types a ward tells apart; what the HIS may send as an order's type
ORDER_TYPES = ("skin_test", "specimen", "infusion", "injection", "oral", "other")

CONSULTATION = (
    _OrderSet("lab", "CBC", "血常规 Complete blood count", "25.00"),
    _OrderSet("drug", "AMX500", "阿莫西林胶囊 Amoxicillin", "18.60", "0.5 g", None, "PO", "TID"),
)
STAY = (
    _OrderSet("nursing", "N2", "二级护理 Level II nursing", "30.00"),
    _OrderSet(
        "drug",
        "NS250",
        "0.9%氯化钠注射液 Sodium chloride",
        "5.50",
        "250 ml",
        "0.9%",
        "IVGTT",
        "QD",
        "infusion",
    ),
)
BED_DAY = ("BED", "床位费 Bed, one day", "60.00")


class Store:
    """The reference HIS's SQLite store; thread-safe (one lock, one connection)."""

    def __init__(self, path: Path | str = ":memory:", *, hospital_code: str = "H0001") -> None:
        self.hospital_code = hospital_code
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        # WAL with NORMAL sync: durable across a process crash, one fsync per checkpoint
        # instead of one per message (which would dominate every round trip)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic unit of work: all of it is written, or none of it."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _one(self, sql: str, *args: Any) -> Row | None:
        with self._lock:
            row = self._db.execute(sql, args).fetchone()
        return dict(row) if row is not None else None

    def _all(self, sql: str, *args: Any) -> list[Row]:
        with self._lock:
            return [dict(r) for r in self._db.execute(sql, args).fetchall()]

    def _count(self, db: sqlite3.Connection, table: str) -> int:
        return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608

    # -- message log (HL7 duplicate detection) ------------------------------------------

    def answered(self, control_id: str) -> bytes | None:
        """The answer already given to a message with this control ID, if any."""
        row = self._one("SELECT answer FROM message WHERE control_id = ?", control_id)
        return None if row is None else bytes(row["answer"])

    def remember_answer(self, control_id: str, answer: bytes) -> None:
        """Keep the answer to a message, so a resend gets the same answer."""
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO message VALUES (?, ?)", (control_id, answer))

    # -- patients ---------------------------------------------------------------------

    def patient(self, patient_id: str) -> Row:
        """The patient with this hospital ID; HisFaultError ``unknown-patient`` if none."""
        row = self._one("SELECT * FROM patient WHERE patient_id = ?", patient_id)
        if row is None:
            raise HisFaultError("unknown-patient", f"no patient {patient_id}", status=404)
        return row

    def find_patient(
        self, *, resident_id: str | None = None, id_number: str | None = None
    ) -> Row | None:
        """The patient known by the resident index ID (or else the ID number), if any."""
        if resident_id:
            row = self._one("SELECT * FROM patient WHERE resident_id = ?", resident_id)
            if row is not None:
                return row
        if id_number:
            return self._one("SELECT * FROM patient WHERE id_number = ?", id_number)
        return None

    def register_patient(
        self,
        *,
        resident_id: str,
        name: str,
        sex: str = "U",
        birth_date: str | None = None,
        id_number: str | None = None,
    ) -> tuple[Row, bool]:
        """Create the patient record, or find the one this resident already has.

        :return: the record and whether it was created now.
        """
        if not resident_id or not name:
            raise HisFaultError(
                "required-field-missing", "a patient needs a resident ID and a name"
            )
        with self.transaction() as db:
            row = db.execute(
                "SELECT * FROM patient WHERE resident_id = ?", (resident_id,)
            ).fetchone()
            if row is not None:
                return dict(row), False
            patient_id = f"{self.hospital_code}{self._count(db, 'patient') + 1:08d}"
            db.execute(
                "INSERT INTO patient VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    patient_id,
                    resident_id,
                    id_number,
                    name,
                    sex,
                    birth_date,
                    datetime.now().isoformat(timespec="seconds"),
                ),
            )
        return self.patient(patient_id), True

    # -- outpatient -------------------------------------------------------------------

    def visit(self, visit_id: str) -> Row:
        """A registration by its ID; HisFaultError ``unknown-visit`` if none."""
        row = self._one("SELECT * FROM visit WHERE visit_id = ?", visit_id)
        if row is None:
            raise HisFaultError("unknown-visit", f"no registration {visit_id}", status=404)
        return row

    def visit_by_request(self, request_id: str) -> Row | None:
        """The registration made for a client's request ID, if any."""
        return self._one("SELECT * FROM visit WHERE request_id = ?", request_id)

    def register_visit(
        self,
        *,
        patient_id: str,
        request_id: str,
        department: str,
        slot_start: datetime,
        slot_end: datetime,
        doctor: str | None = None,
        fee: Decimal | None = None,
        kind: str = "registration",
    ) -> Row:
        """Register a visit (挂号) or book an appointment; once per ``request_id``."""
        if not request_id or not department:
            raise HisFaultError(
                "required-field-missing", "a registration needs a request ID and a department"
            )
        if slot_end <= slot_start or (slot_end - slot_start).total_seconds() > 3600:
            raise HisFaultError(
                "invalid-slot", "a slot ends after it starts and lasts at most an hour"
            )
        with self.transaction() as db:
            row = db.execute("SELECT * FROM visit WHERE request_id = ?", (request_id,)).fetchone()
            if row is not None:
                return dict(row)
            if (
                db.execute("SELECT 1 FROM patient WHERE patient_id = ?", (patient_id,)).fetchone()
                is None
            ):
                raise HisFaultError("unknown-patient", f"no patient {patient_id}", status=404)
            day = slot_start.date().isoformat()
            number = (
                int(
                    db.execute(
                        "SELECT count(*) FROM visit WHERE department = ?"
                        " AND substr(slot_start, 1, 10) = ?",
                        (department, day),
                    ).fetchone()[0]
                )
                + 1
            )
            visit_id = f"V{slot_start:%Y%m%d}{department}{number:04d}"
            db.execute(
                "INSERT INTO visit VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    visit_id,
                    request_id,
                    patient_id,
                    kind,
                    department,
                    doctor,
                    slot_start.isoformat(),
                    slot_end.isoformat(),
                    number,
                    str(fee) if fee is not None else None,
                ),
            )
            if fee is not None:
                self._charge(
                    db, patient_id, visit_id, "REG", "挂号费 Registration", fee, Decimal(1)
                )
            for item in CONSULTATION:
                self._order(db, patient_id, visit_id, item, slot_start, doctor)
            db.execute(
                "INSERT INTO report VALUES (?, ?, ?, 'lab', ?, NULL, 'pending', NULL)",
                (f"{visit_id}-R1", patient_id, visit_id, CONSULTATION[0].name),
            )
        return self.visit(visit_id)

    def queue(self, visit_id: str) -> tuple[int, int]:
        """``(queue_number, ahead)`` of a registration in its department's day queue."""
        visit = self.visit(visit_id)
        ahead = self._one(
            "SELECT count(*) AS n FROM visit WHERE department = ? AND "
            "substr(slot_start, 1, 10) = ? AND queue_number < ?",
            visit["department"],
            visit["slot_start"][:10],
            visit["queue_number"],
        )
        return int(visit["queue_number"]), int(ahead["n"] if ahead else 0)

    # -- orders, charges, reports -----------------------------------------------------------

    def _order(
        self,
        db: sqlite3.Connection,
        patient_id: str,
        visit_id: str,
        item: _OrderSet,
        at: datetime | None,
        doctor: str | None = None,
        window: tuple[datetime | None, datetime | None] = (None, None),
    ) -> None:
        n = int(
            db.execute("SELECT count(*) FROM orders WHERE visit_id = ?", (visit_id,)).fetchone()[0]
        )
        db.execute(
            "INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'ordered', ?, ?, ?, ?)",
            (
                f"{visit_id}-O{n + 1}",
                patient_id,
                visit_id,
                item.kind,
                item.code,
                item.name,
                item.dose,
                item.concentration,
                item.route,
                item.frequency,
                at.isoformat() if at is not None else None,
                doctor,
                item.order_type,
                window[0].isoformat() if window[0] is not None else None,
                window[1].isoformat() if window[1] is not None else None,
            ),
        )
        self._charge(
            db, patient_id, visit_id, item.code, item.name, Decimal(item.price), Decimal(1), "A"
        )

    def _charge(
        self,
        db: sqlite3.Connection,
        patient_id: str,
        visit_id: str,
        code: str,
        name: str,
        unit_price: Decimal,
        quantity: Decimal,
        category: str | None = None,
    ) -> str:
        n = int(
            db.execute("SELECT count(*) FROM charge WHERE visit_id = ?", (visit_id,)).fetchone()[0]
        )
        charge_id = f"{visit_id}-C{n + 1}"
        amount = (unit_price * quantity).quantize(Decimal("0.01"))
        db.execute(
            "INSERT INTO charge VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
            (
                charge_id,
                patient_id,
                visit_id,
                code,
                name,
                str(quantity),
                str(unit_price),
                str(amount),
                category,
            ),
        )
        return charge_id

    def add_charge(
        self, visit_id: str, code: str, name: str, unit_price: Decimal, quantity: Decimal
    ) -> str:
        """Add a charge to a visit or stay (as a cashier or a ward would)."""
        patient_id = self._patient_of(visit_id)
        with self.transaction() as db:
            return self._charge(db, patient_id, visit_id, code, name, unit_price, quantity)

    def add_order(
        self,
        visit_id: str,
        kind: str,
        code: str,
        name: str,
        *,
        scheduled_at: datetime | None,
        dose: str | None = None,
        concentration: str | None = None,
        route: str | None = None,
        frequency: str | None = None,
        price: str = "10.00",
        ordered_by: str | None = None,
        order_type: str | None = None,
        window_start: datetime | None = None,
        window_end: datetime | None = None,
    ) -> str:
        """A doctor's new order on a visit or stay (with its charge); its order ID.

        ``order_type`` is the ward's type of the order (:data:`ORDER_TYPES`), which
        chooses the bedside rule; ``window_start``/``window_end`` when it may be carried
        out (else the ward takes its rule's minutes around ``scheduled_at``).
        """
        if order_type is not None and order_type not in ORDER_TYPES:
            raise HisFaultError("invalid-order", f"no order type {order_type!r}")
        if scheduled_at is None and (window_start is None or window_end is None):
            raise HisFaultError("invalid-order", "an order needs a scheduled time or a window")
        if window_start is not None and window_end is not None and window_end <= window_start:
            raise HisFaultError("invalid-order", "an order's window ends after it starts")
        patient_id = self._patient_of(visit_id)
        item = _OrderSet(kind, code, name, price, dose, concentration, route, frequency, order_type)
        with self.transaction() as db:
            self._order(
                db,
                patient_id,
                visit_id,
                item,
                scheduled_at,
                ordered_by,
                (window_start, window_end),
            )
            row = db.execute(
                "SELECT order_id FROM orders WHERE visit_id = ? ORDER BY rowid DESC LIMIT 1",
                (visit_id,),
            ).fetchone()
        return str(row[0])

    def cancel_order(self, order_id: str) -> None:
        """The doctor withdrew the order."""
        with self.transaction() as db:
            db.execute("UPDATE orders SET status = 'cancelled' WHERE order_id = ?", (order_id,))

    def _patient_of(self, visit_id: str) -> str:
        row = self._one("SELECT patient_id FROM visit WHERE visit_id = ?", visit_id) or self._one(
            "SELECT patient_id FROM admission WHERE admission_id = ?", visit_id
        )
        if row is None:
            raise HisFaultError("unknown-visit", f"no registration or stay {visit_id}", status=404)
        return str(row["patient_id"])

    def orders(self, patient_id: str, visit_id: str) -> list[Row]:
        """The orders of a visit or stay."""
        return self._all(
            "SELECT * FROM orders WHERE patient_id = ? AND visit_id = ? ORDER BY rowid",
            patient_id,
            visit_id,
        )

    def order(self, order_id: str) -> Row:
        """One order; HisFaultError ``unknown-order`` if none."""
        row = self._one("SELECT * FROM orders WHERE order_id = ?", order_id)
        if row is None:
            raise HisFaultError("unknown-order", f"no order {order_id}", status=404)
        return row

    def charges(self, patient_id: str, visit_id: str) -> list[Row]:
        """The charges of a visit or stay, paid and unpaid."""
        return self._all(
            "SELECT * FROM charge WHERE patient_id = ? AND visit_id = ? ORDER BY rowid",
            patient_id,
            visit_id,
        )

    def charge(self, charge_id: str) -> Row:
        """One charge; HisFaultError ``unknown-charge`` if none."""
        row = self._one("SELECT * FROM charge WHERE charge_id = ?", charge_id)
        if row is None:
            raise HisFaultError("unknown-charge", f"no charge {charge_id}", status=404)
        return row

    def pay_charges(self, patient_id: str, charge_ids: list[str], transaction_id: str) -> None:
        """Mark charges paid by one transaction; all of them or none; once per transaction."""
        if not charge_ids or not transaction_id:
            raise HisFaultError("required-field-missing", "name the charges and the transaction")
        with self.transaction() as db:
            for charge_id in charge_ids:
                row = db.execute(
                    "SELECT patient_id, paid_by FROM charge WHERE charge_id = ?", (charge_id,)
                ).fetchone()
                if row is None or row["patient_id"] != patient_id:
                    raise HisFaultError(
                        "unknown-charge", f"no charge {charge_id} for this patient", status=404
                    )
                if row["paid_by"] not in (None, transaction_id):
                    raise HisFaultError(
                        "already-paid",
                        f"charge {charge_id} was paid by another transaction",
                        status=409,
                    )
            db.executemany(
                "UPDATE charge SET paid_by = ? WHERE charge_id = ?",
                [(transaction_id, c) for c in charge_ids],
            )

    def reports(self, patient_id: str, visit_id: str) -> list[Row]:
        """The reports of a visit or stay."""
        return self._all(
            "SELECT * FROM report WHERE patient_id = ? AND visit_id = ? ORDER BY rowid",
            patient_id,
            visit_id,
        )

    def issue_report(self, report_id: str, summary: str, *, status: str = "final") -> None:
        """The lab signs a report off (as the lab system would)."""
        with self.transaction() as db:
            db.execute(
                "UPDATE report SET status = ?, summary = ?, issued_at = ? WHERE report_id = ?",
                (status, summary, datetime.now().isoformat(timespec="seconds"), report_id),
            )

    def order_executed(self, order_id: str, executed_at: datetime, executed_by: str) -> None:
        """Record a bedside execution; once per ``(order_id, executed_at)``."""
        with self.transaction() as db:
            if (
                db.execute("SELECT 1 FROM orders WHERE order_id = ?", (order_id,)).fetchone()
                is None
            ):
                raise HisFaultError("unknown-order", f"no order {order_id}", status=404)
            db.execute(
                "INSERT OR IGNORE INTO execution VALUES (?, ?, ?)",
                (order_id, executed_at.isoformat(), executed_by),
            )
            db.execute("UPDATE orders SET status = 'done' WHERE order_id = ?", (order_id,))

    def executions(self, order_id: str) -> list[Row]:
        """The recorded executions of an order."""
        return self._all("SELECT * FROM execution WHERE order_id = ?", order_id)

    def record_specimen(
        self, order_id: str, client_key: str, collected_at: datetime, collected_by: str
    ) -> tuple[Row, bool]:
        """A specimen collected for a specimen order (a lab test's sample); once per
        ``client_key``. The record and whether it was made now.

        :raises HisFaultError: ``unknown-order``, or ``not-a-specimen-order`` for an order
            that takes no specimen (a drug, a nursing task), or one cancelled.
        """
        with self.transaction() as db:
            known = db.execute(
                "SELECT * FROM specimen WHERE client_key = ?", (client_key,)
            ).fetchone()
            if known is not None:
                return dict(known), False
            order = db.execute("SELECT * FROM orders WHERE order_id = ?", (order_id,)).fetchone()
            if order is None:
                raise HisFaultError("unknown-order", f"no order {order_id}", status=404)
            takes_one = order["kind"] in ("specimen", "lab") or order["order_type"] == "specimen"
            if not takes_one:
                raise HisFaultError(
                    "not-a-specimen-order", f"order {order_id} takes no specimen", status=422
                )
            if order["status"] == "cancelled":
                raise HisFaultError("invalid-order", f"order {order_id} is cancelled", status=422)
            n = db.execute(
                "SELECT count(*) FROM specimen WHERE order_id = ?", (order_id,)
            ).fetchone()[0]
            specimen_id = f"{order_id}-S{n + 1}"
            db.execute(
                "INSERT INTO specimen VALUES (?, ?, ?, ?, ?)",
                (specimen_id, client_key, order_id, collected_at.isoformat(), collected_by),
            )
            made = db.execute(
                "SELECT * FROM specimen WHERE specimen_id = ?", (specimen_id,)
            ).fetchone()
        return dict(made), True

    def specimens(self, order_id: str) -> list[Row]:
        """The specimens collected for an order, first first."""
        return self._all("SELECT * FROM specimen WHERE order_id = ? ORDER BY rowid", order_id)

    def specimen(self, specimen_id: str) -> Row:
        """One specimen; HisFaultError ``unknown-specimen`` if none."""
        row = self._one("SELECT * FROM specimen WHERE specimen_id = ?", specimen_id)
        if row is None:
            raise HisFaultError("unknown-specimen", f"no specimen {specimen_id}", status=404)
        return row

    # -- inpatient ----------------------------------------------------------------------------

    def admission(self, admission_id: str) -> Row:
        """A stay with its deposit balance; HisFaultError ``unknown-admission`` if none."""
        row = self._one("SELECT * FROM admission WHERE admission_id = ?", admission_id)
        if row is None:
            raise HisFaultError("unknown-admission", f"no stay {admission_id}", status=404)
        row["deposits"] = self.deposits_total(admission_id)
        return row

    def admission_by_request(self, request_id: str) -> Row | None:
        """The stay made for a client's request ID, if any."""
        row = self._one("SELECT admission_id FROM admission WHERE request_id = ?", request_id)
        return None if row is None else self.admission(str(row["admission_id"]))

    def admit(
        self,
        *,
        patient_id: str,
        request_id: str,
        department: str,
        ward: str,
        bed: str,
        admitted_at: datetime,
    ) -> Row:
        """Admit a patient; once per ``request_id``; one open stay per bed."""
        if not (request_id and department and ward and bed):
            raise HisFaultError(
                "required-field-missing",
                "an admission needs a request ID, department, ward and bed",
            )
        with self.transaction() as db:
            row = db.execute(
                "SELECT admission_id FROM admission WHERE request_id = ?", (request_id,)
            ).fetchone()
            if row is not None:
                admission_id = str(row["admission_id"])
            else:
                if (
                    db.execute(
                        "SELECT 1 FROM patient WHERE patient_id = ?", (patient_id,)
                    ).fetchone()
                    is None
                ):
                    raise HisFaultError("unknown-patient", f"no patient {patient_id}", status=404)
                if db.execute(
                    "SELECT 1 FROM admission WHERE ward = ? AND bed = ? AND discharged_at IS NULL",
                    (ward, bed),
                ).fetchone():
                    raise HisFaultError("bed-occupied", f"bed {ward}/{bed} is occupied", status=409)
                admission_id = f"A{self._count(db, 'admission') + 1:08d}"
                db.execute(
                    "INSERT INTO admission VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
                    (
                        admission_id,
                        request_id,
                        patient_id,
                        department,
                        ward,
                        bed,
                        admitted_at.isoformat(),
                    ),
                )
                self._charge(
                    db, patient_id, admission_id, *BED_DAY[:2], Decimal(BED_DAY[2]), Decimal(1)
                )
                for item in STAY:
                    self._order(db, patient_id, admission_id, item, admitted_at)
        return self.admission(admission_id)

    def record_deposit(
        self,
        *,
        admission_id: str,
        deposit_id: str,
        amount: Decimal,
        paid_at: datetime,
        transaction_id: str,
    ) -> Row:
        """Record a deposit or top-up; once per ``transaction_id``."""
        if amount <= 0:
            raise HisFaultError("invalid-amount", "a deposit is a positive amount")
        with self.transaction() as db:
            stay = db.execute(
                "SELECT discharged_at FROM admission WHERE admission_id = ?", (admission_id,)
            ).fetchone()
            if stay is None:
                raise HisFaultError("unknown-admission", f"no stay {admission_id}", status=404)
            known = db.execute(
                "SELECT admission_id FROM deposit WHERE transaction_id = ?", (transaction_id,)
            ).fetchone()
            if known is None:
                if stay["discharged_at"] is not None:
                    raise HisFaultError("discharged", f"stay {admission_id} is closed", status=409)
                db.execute(
                    "INSERT INTO deposit VALUES (?, ?, ?, ?, ?)",
                    (transaction_id, deposit_id, admission_id, str(amount), paid_at.isoformat()),
                )
            elif known["admission_id"] != admission_id:
                raise HisFaultError(
                    "duplicate-transaction", "transaction already used for another stay", status=409
                )
        return self.admission(admission_id)

    def deposits_total(self, admission_id: str) -> Decimal:
        """The sum of a stay's deposits."""
        rows = self._all("SELECT amount FROM deposit WHERE admission_id = ?", admission_id)
        return sum((Decimal(r["amount"]) for r in rows), Decimal("0.00"))

    def deposits(self, admission_id: str) -> list[Row]:
        """A stay's deposits."""
        return self._all(
            "SELECT * FROM deposit WHERE admission_id = ? ORDER BY rowid", admission_id
        )

    def bill(self, admission_id: str) -> tuple[Row, list[Row], Decimal, Decimal, Decimal]:
        """``(stay, charges, total, paid, deposits)`` of a stay."""
        stay = self.admission(admission_id)
        items = self.charges(str(stay["patient_id"]), admission_id)
        total = sum((Decimal(c["amount"]) for c in items), Decimal("0.00"))
        paid = sum((Decimal(c["amount"]) for c in items if c["paid_by"]), Decimal("0.00"))
        return stay, items, total, paid, stay["deposits"]

    def discharge(self, admission_id: str, discharged_at: datetime) -> Row:
        """Close a stay once nothing is owed; discharging twice answers the first discharge."""
        _stay, _items, total, paid, deposits = self.bill(admission_id)
        if total - paid - deposits > 0:
            raise HisFaultError(
                "bill-unsettled",
                f"stay {admission_id} still owes {total - paid - deposits}",
                status=409,
            )
        with self.transaction() as db:
            db.execute(
                "UPDATE admission SET discharged_at = ?"
                " WHERE admission_id = ? AND discharged_at IS NULL",
                (discharged_at.isoformat(), admission_id),
            )
        return self.admission(admission_id)

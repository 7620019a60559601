"""``middleware.receipts``: print receipts, lists, bills and reports; reprint them.

Printing comes after the act it documents, and never undoes it. A top-up is in the
journal, confirmed, before its receipt is made; when the printer fails the failure is
recorded in the print log (``print_jobs``) and audited (``print.failed``), the money
stays moved, and the receipt is printed again from the journal with
``middleware.receipts.reprint(transaction_id)`` or ``hcm receipt reprint ID``.

Each attempt is one row of the print log with the document as printed, so a reprint
gives the same paper (a payment list keeps its items) marked as a copy.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from hcmiddleware import storage
from hcmiddleware.errors import (
    HcmError,
    PrintError,
    UnknownTransactionError,
)
from hcmiddleware.journal.records import Movement
from hcmiddleware.models import (
    Admission,
    Bill,
    Charge,
    HospitalPatient,
    PaymentStatus,
    PrintDocument,
    Report,
)
from hcmiddleware.printing import documents
from hcmiddleware.printing.tables import PrintJobRow

if TYPE_CHECKING:
    from hcmiddleware.runtime import Middleware

__all__ = ["PrintJob", "Receipts"]

log = logging.getLogger("hcmiddleware.printing")

_JOBS: sa.Table = PrintJobRow.__table__  # type: ignore[assignment]
_ACTOR = "printing"


@dataclass(frozen=True)
class PrintJob:
    """One attempt to print a document, as the print log keeps it."""

    job_id: int
    document_id: str
    transaction_id: str | None
    kind: str
    medium: str
    state: Literal["printed", "failed"]
    printer: str | None
    reference: str | None
    error: str | None
    reprint: bool
    at: datetime

    @property
    def ok(self) -> bool:
        """True when the printer took the document."""
        return self.state == "printed"

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (the time ISO 8601 UTC)."""
        data = dict(self.__dict__)
        data["at"] = self.at.isoformat() + "Z"
        return data


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


class Receipts:
    """The kiosk's printing: receipts of the journal's movements, payment lists, the
    inpatient bill, lab and exam reports — and reprints of any of them."""

    def __init__(self, middleware: Middleware) -> None:
        self._mw = middleware
        self._engine: Engine | None = None
        self._lock = threading.Lock()

    @property
    def engine(self) -> Engine:
        """The installation's database, migrated once on first use."""
        with self._lock:
            if self._engine is None:
                engine = self._mw.engine
                storage.upgrade(engine)
                self._engine = engine
            return self._engine

    @property
    def site_name(self) -> str:
        """The name printed at the top of every document (``[middleware] site_name``)."""
        return self._mw.config.middleware.site_name

    def available(self) -> bool:
        """True when some printer plugin (``hcm_print``) is enabled."""
        return bool(self._mw.dispatcher.implementers("hcm_print"))

    # -- printing -----------------------------------------------------------------------

    def print(self, document: PrintDocument) -> PrintJob:
        """Hand ``document`` to the printers and record the attempt.

        :raises PrintError: no printer took it, or the printer failed; the attempt is
            recorded first (``jobs(state="failed")``), so it can be printed again.
        """
        printer: str | None = None
        reference: str | None = None
        failure: HcmError | None = None
        if not self.available():
            failure = PrintError(
                "no printer is set up",
                document_id=document.document_id,
                hint="set [printing] escpos_device, escpos_host or pdf_dir, or enable a "
                "printer plugin",
            )
        else:
            try:
                printer, answer = self._mw.dispatcher.call_first("hcm_print", document=document)
            except HcmError as exc:
                printer = str(getattr(exc, "plugin", "") or getattr(exc, "printer", "")) or None
                failure = exc
            else:
                if answer is None:
                    failure = PrintError(
                        f"no printer takes {document.medium} documents",
                        document_id=document.document_id,
                        hint="set [printing] pdf_dir for pages, escpos_device or escpos_host "
                        "for receipts",
                    )
                elif not isinstance(answer, str):
                    failure = PrintError(
                        f"printer {printer} answered a {type(answer).__name__}, not the job's "
                        "reference",
                        printer=printer or "",
                        document_id=document.document_id,
                        hint="the printer plugin must return a text or raise: report it to "
                        "its vendor",
                    )
                else:
                    reference = answer[:255]
        job = self._record(document, printer, reference, failure)
        if failure is not None:
            if isinstance(failure, PrintError):
                raise failure
            raise PrintError(
                f"{document.title} {document.document_id} was not printed: {failure.message}",
                printer=printer or "",
                document_id=document.document_id,
            ) from failure
        return job

    def _record(
        self,
        document: PrintDocument,
        printer: str | None,
        reference: str | None,
        failure: HcmError | None,
    ) -> PrintJob:
        values = {
            "document_id": document.document_id,
            "transaction_id": document.transaction_id,
            "kind": document.kind,
            "medium": document.medium,
            "state": "failed" if failure is not None else "printed",
            "printer": printer,
            "reference": reference,
            "error": None if failure is None else failure.message[:300],
            "reprint": document.reprint,
            "document": document.model_dump_json(),
            "at": _now(),
        }
        audit = self._mw.audit
        # the attempt and its audit entry commit together, in one durable commit
        with storage.begin_write(self.engine) as conn:
            inserted = conn.execute(_JOBS.insert(), values).inserted_primary_key
            audit.record(
                f"print.{values['state']}",
                actor=_ACTOR,
                subject=document.document_id,
                outcome="failed" if failure is not None else "ok",
                details={
                    "kind": document.kind,
                    "printer": printer or "none",
                    "reprint": "yes" if document.reprint else "no",
                },
                connection=conn,
            )
        audit.flush()
        assert inserted is not None
        return _job({**values, "id": int(inserted[0])})

    # -- what is printed ----------------------------------------------------------------

    def movement(
        self,
        movement: Movement | str,
        *,
        charges: Sequence[Charge] = (),
        patient_id: str | None = None,
    ) -> PrintJob:
        """Print the receipt of a confirmed journal movement — with ``charges``, the
        payment list (缴费清单) of a payment: every item it paid.

        :raises NothingToPrintError: the movement did not move money.
        :raises UnknownTransactionError: no such movement in the journal.
        :raises PrintError: the printer failed (recorded; the movement stands).
        """
        moved = self._mw.journal.get(movement) if isinstance(movement, str) else movement
        if charges:
            document = documents.payment_list(
                moved, charges, site_name=self.site_name, patient_id=patient_id
            )
        else:
            document = documents.movement_receipt(
                moved, site_name=self.site_name, patient_id=patient_id
            )
        return self.print(document)

    def bill(self, bill: Bill, admission: Admission | None = None) -> PrintJob:
        """Print the inpatient bill (住院费用清单) on the page printer."""
        return self.print(
            documents.bill_document(bill, site_name=self.site_name, admission=admission)
        )

    def report(self, report: Report) -> PrintJob:
        """Print a lab or exam report on the page printer.

        :raises NothingToPrintError: the report is still pending.
        """
        again = self._printed(report.report_id)  # a second paper is marked as a copy
        return self.print(
            documents.report_document(report, site_name=self.site_name, reprint=again)
        )

    def reports(
        self, patient: HospitalPatient, visit_id: str, *, again: bool = False
    ) -> list[PrintJob]:
        """The self-service report printer: print the visit's reports that are ready and
        not printed yet (``again``: those printed before too). A pending report is left
        for later; a failed one is recorded and the others are still printed.
        """
        jobs: list[PrintJob] = []
        for report in self._mw.his.reports(patient, visit_id):
            if report.status == "pending":
                continue
            if not again and self._printed(report.report_id):
                continue
            try:
                jobs.append(self.report(report))
            except PrintError as exc:
                log.warning("report %s was not printed: %s", report.report_id, exc.message)
                jobs.append(self.jobs(document_id=report.report_id, limit=1)[0])
        return jobs

    def after_movement(
        self,
        movement: Movement,
        *,
        charges: Sequence[Charge] = (),
        patient_id: str | None = None,
    ) -> PrintJob | None:
        """The payment flows' receipt: printed when ``[printing] receipts`` is on, a
        printer is there and the movement has no printed receipt yet. Never raises: a
        failure is recorded and logged, and the movement it documents stands."""
        if (
            not self._mw.config.printing.receipts
            or movement.state is not PaymentStatus.CONFIRMED
            or not self.available()
            or self._printed(movement.transaction_id)  # a retried request: printed already
        ):
            return None
        try:
            return self.movement(movement, charges=charges, patient_id=patient_id)
        except HcmError as exc:
            log.warning(
                "the receipt of %s was not printed: %s", movement.transaction_id, exc.message
            )
            return None

    # -- reprints -------------------------------------------------------------------------

    def reprint(self, document_id: str) -> PrintJob:
        """Print a document again, marked as a copy: the last one made for
        ``document_id`` (a transaction ID, a report ID, a bill's document ID), or — for a
        movement never printed — its receipt made from the journal.

        :raises UnknownTransactionError: nothing was printed under that ID and the
            journal has no such movement.
        :raises NothingToPrintError: the movement did not move money.
        :raises PrintError: the printer failed again (recorded).
        """
        stored = self.document(document_id)
        if stored is None:
            try:
                moved = self._mw.journal.get(document_id)
            except UnknownTransactionError:
                raise UnknownTransactionError(
                    f"nothing was printed as {document_id!r} and the journal has no such movement",
                    transaction_id=document_id,
                    hint="give a transaction ID (`hcm journal list`) or a printed document's "
                    "ID (`hcm receipt list`)",
                ) from None
            stored = documents.movement_receipt(moved, site_name=self.site_name)
        copy = self._printed(stored.document_id) or self._printed(stored.transaction_id)
        now = datetime.now(UTC).replace(microsecond=0)
        return self.print(stored.model_copy(update={"printed_at": now, "reprint": copy}))

    def document(self, document_id: str) -> PrintDocument | None:
        """The last document made under ``document_id`` (or for that transaction)."""
        query = (
            sa.select(_JOBS.c.document)
            .where(
                sa.or_(_JOBS.c.document_id == document_id, _JOBS.c.transaction_id == document_id)
            )
            .order_by(_JOBS.c.id.desc())
            .limit(1)
        )
        with self.engine.connect() as conn:
            text = conn.execute(query).scalar()
        return None if text is None else PrintDocument.model_validate_json(text)

    def _printed(self, document_id: str | None) -> bool:
        if document_id is None:
            return False
        query = sa.select(_JOBS.c.id).where(_matches(document_id), _JOBS.c.state == "printed")
        with self.engine.connect() as conn:
            return conn.execute(query.limit(1)).first() is not None

    # -- the print log ------------------------------------------------------------------

    def jobs(
        self,
        *,
        document_id: str | None = None,
        state: Literal["printed", "failed"] | None = None,
        limit: int | None = None,
    ) -> list[PrintJob]:
        """Print attempts, newest first; ``document_id`` matches a transaction ID too."""
        query = sa.select(_JOBS).order_by(_JOBS.c.id.desc())
        if document_id is not None:
            query = query.where(_matches(document_id))
        if state is not None:
            query = query.where(_JOBS.c.state == state)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [_job(row._mapping) for row in conn.execute(query)]

    def unprinted(self) -> list[PrintJob]:
        """Documents whose last attempt failed: what is still to be printed again."""
        last = sa.select(sa.func.max(_JOBS.c.id)).group_by(_JOBS.c.document_id)
        query = (
            sa.select(_JOBS)
            .where(_JOBS.c.id.in_(last), _JOBS.c.state == "failed")
            .order_by(_JOBS.c.id)
        )
        with self.engine.connect() as conn:
            return [_job(row._mapping) for row in conn.execute(query)]


def _matches(document_id: str) -> sa.ColumnElement[bool]:
    """A document's own ID, or the transaction it is the receipt of."""
    return sa.or_(_JOBS.c.document_id == document_id, _JOBS.c.transaction_id == document_id)


def _job(row: Any) -> PrintJob:
    return PrintJob(
        job_id=int(row["id"]),
        document_id=row["document_id"],
        transaction_id=row["transaction_id"],
        kind=row["kind"],
        medium=row["medium"],
        state=row["state"],
        printer=row["printer"],
        reference=row["reference"],
        error=row["error"],
        reprint=bool(row["reprint"]),
        at=row["at"],
    )

"""Daily reconciliation of the journal against the bank's and the insurer's statements.

Each confirmed journal entry of the day expects one statement line with the same
transaction (message) ID and amount — for the bank the movement's amount, for the
insurer the fund's part. The report sorts every ID into matched, missing at the
remote side, missing in the journal (the remote side moved money the journal does
not hold as confirmed), or amount mismatch. Entries still in flight are listed apart:
they are settled by recovery, not by reconciliation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, Literal

from hcmiddleware.errors import HcmError
from hcmiddleware.journal.movements import Journal, Movement
from hcmiddleware.journal.states import IN_FLIGHT
from hcmiddleware.models import PaymentStatus, Statement

__all__ = ["Discrepancy", "ReconciliationReport", "SourceReport", "compare", "reconcile"]

Kind = Literal["missing_at_remote", "missing_in_journal", "amount_mismatch"]


@dataclass(frozen=True)
class Discrepancy:
    """One transaction the two sides disagree on."""

    kind: Kind
    transaction_id: str
    journal_amount: Decimal | None
    remote_amount: Decimal | None
    journal_state: str | None = None


@dataclass
class SourceReport:
    """Reconciliation against one statement (``bank`` or ``insurer``)."""

    source: str
    available: bool = True
    error: str | None = None
    matched: list[str] = field(default_factory=list)
    discrepancies: list[Discrepancy] = field(default_factory=list)
    in_flight: list[str] = field(default_factory=list)
    journal_total: Decimal = Decimal("0.00")
    remote_total: Decimal = Decimal("0.00")

    @property
    def ok(self) -> bool:
        """True when every line matched and nothing is in flight."""
        return self.available and not self.discrepancies and not self.in_flight


@dataclass
class ReconciliationReport:
    """The day's reconciliation, per source."""

    day: date
    sources: list[SourceReport]

    @property
    def ok(self) -> bool:
        """True when every available source reconciled cleanly."""
        return all(s.ok for s in self.sources if s.available)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form (amounts as strings)."""

        def money(v: Decimal | None) -> str | None:
            return None if v is None else f"{v:.2f}"

        return {
            "day": self.day.isoformat(),
            "ok": self.ok,
            "sources": [
                {
                    "source": s.source,
                    "available": s.available,
                    "error": s.error,
                    "ok": s.ok,
                    "matched": len(s.matched),
                    "journal_total": money(s.journal_total),
                    "remote_total": money(s.remote_total),
                    "in_flight": s.in_flight,
                    "discrepancies": [
                        {
                            "kind": d.kind,
                            "transaction_id": d.transaction_id,
                            "journal_amount": money(d.journal_amount),
                            "remote_amount": money(d.remote_amount),
                            "journal_state": d.journal_state,
                        }
                        for d in s.discrepancies
                    ],
                }
                for s in self.sources
            ],
        }

    def render(self) -> str:
        """The report as a cashier's office would read it."""
        out = [f"Reconciliation for {self.day.isoformat()}: {'OK' if self.ok else 'DIFFERENCES'}"]
        for s in self.sources:
            out.append("")
            if not s.available:
                out.append(f"{s.source}: not reconciled ({s.error})")
                continue
            out.append(
                f"{s.source}: {len(s.matched)} matched; journal {s.journal_total:.2f}, "
                f"{s.source} {s.remote_total:.2f}"
            )
            for d in s.discrepancies:
                ours = "-" if d.journal_amount is None else f"{d.journal_amount:.2f}"
                theirs = "-" if d.remote_amount is None else f"{d.remote_amount:.2f}"
                label = d.kind.replace("_", " ")
                out.append(f"  {label:<20} {d.transaction_id}  journal {ours}  {s.source} {theirs}")
            for tid in s.in_flight:
                out.append(f"  {'in flight':<20} {tid}  (settled by `hcm journal recover`)")
        return "\n".join(out)


def _expected(entry: Movement) -> Decimal:
    if entry.channel == "insurer":
        return entry.fund_paid if entry.fund_paid is not None else Decimal("0.00")
    return entry.amount


def compare(source: str, entries: list[Movement], statement: Statement) -> SourceReport:
    """Compare the journal's entries of one channel with a statement."""
    report = SourceReport(source=source)
    ours = {e.transaction_id: e for e in entries}
    theirs: dict[str, Decimal] = {}
    for line in statement.lines:
        theirs[line.transaction_id] = theirs.get(line.transaction_id, Decimal(0)) + line.amount
        report.remote_total += line.amount
    for tid, entry in ours.items():
        if entry.state in IN_FLIGHT:
            report.in_flight.append(tid)
            continue
        if entry.state is not PaymentStatus.CONFIRMED:
            if tid in theirs:
                report.discrepancies.append(
                    Discrepancy("missing_in_journal", tid, None, theirs[tid], entry.state.value)
                )
            continue
        expected = _expected(entry)
        report.journal_total += expected
        if tid not in theirs:
            report.discrepancies.append(
                Discrepancy("missing_at_remote", tid, expected, None, entry.state.value)
            )
        elif theirs[tid] != expected:
            report.discrepancies.append(
                Discrepancy("amount_mismatch", tid, expected, theirs[tid], entry.state.value)
            )
        else:
            report.matched.append(tid)
    for tid, amount in theirs.items():
        if tid not in ours:
            report.discrepancies.append(Discrepancy("missing_in_journal", tid, None, amount))
    return report


def reconcile(journal: Journal, day: date) -> ReconciliationReport:
    """Reconcile the journal's entries created on ``day`` (UTC) against both statements.

    A source without an enabled adapter, or whose statement cannot be fetched, is
    reported as not reconciled rather than as empty.
    """
    sources: list[SourceReport] = []
    fetchers: dict[str, Callable[[], Statement | None]] = {
        "bank": lambda: journal.mw.hooks.hcm_bank_statement(day=day),
        "insurer": lambda: journal.mw.hooks.hcm_insurance_reconcile(date_from=day, date_to=day),
    }
    for source, fetch in fetchers.items():
        channel = "bank" if source == "bank" else "insurer"
        entries = journal.entries(day=day, channel=channel)
        try:
            statement = fetch()
        except HcmError as exc:
            sources.append(SourceReport(source=source, available=False, error=exc.message))
            continue
        if statement is None:
            if entries:
                sources.append(
                    SourceReport(source=source, available=False, error="no adapter enabled")
                )
            continue
        sources.append(compare(source, entries, statement))
    return ReconciliationReport(day=day, sources=sources)

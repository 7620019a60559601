"""Settling an entry: recording an answer, handling a failed send, resolving what is unknown.

An error from a send closes the entry as ``failed`` only when it certainly came before
the request left; otherwise the outcome is established by :meth:`Resolution.resolve`
(bank: query, then reversal; insurer: reversal or a repeated cancellation).
:meth:`Resolution.recover` does the same for everything a crashed process left in flight.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from hcmiddleware.errors import (
    AmountError,
    HcmError,
    MalformedResponseError,
    NoHandlerError,
    OutcomeUnknownError,
    PluginUnavailableError,
    RemoteUnavailableError,
)
from hcmiddleware.journal.records import Movement, RecoveryReport
from hcmiddleware.journal.rows import _ENTRY, SETTLE, EntryStore, _Later, _now, _write
from hcmiddleware.journal.states import IN_FLIGHT, PaymentStatus
from hcmiddleware.models import PaymentResult, Settlement

__all__ = ["Resolution"]

log = logging.getLogger("hcmiddleware.journal")

P = PaymentStatus


def _outcome_unknown(exc: BaseException) -> bool:
    """Whether an error raised by a money hook leaves the outcome open.

    Only refusals that certainly happened before anything was sent close it: no plugin
    answers the hook, the plugin was refused at once for hung calls, the adapter
    refused the amount, the remote side could not be reached at all. Anything else —
    timeouts, faults, malformed answers, an adapter that crashed — may have happened
    after the request left, so the bank is asked.
    """
    return not isinstance(
        exc, NoHandlerError | PluginUnavailableError | AmountError | RemoteUnavailableError
    )


class Resolution(EntryStore):
    """How answers, errors and unknown outcomes settle an entry."""

    def _record_result(self, seq: int, expected: PaymentStatus, result: PaymentResult) -> Any:
        state = P.CONFIRMED if result.status == P.CONFIRMED else P.FAILED
        return self._transition(
            seq, expected, state, remote_reference=result.bank_reference, reason=result.reason
        )

    def _after_error(self, seq: int, exc: HcmError) -> Movement:
        note = f"{type(exc).__name__}: {exc.message}"[:200]
        if not _outcome_unknown(exc):
            self._transition(seq, P.SENT, P.FAILED, reason=note)
            return self._snapshot(seq)
        self._transition(seq, P.SENT, P.UNKNOWN, reason=note)
        self._crash("after_unknown")
        return self.resolve(self._row(seq).transaction_id)

    def _record_settlement(self, seq: int, expected: PaymentStatus, result: Settlement) -> None:
        wanted = "settled" if self._row(seq).kind == SETTLE else "cancelled"
        if result.status == wanted:
            self._transition(
                seq,
                expected,
                P.CONFIRMED,
                settlement_id=result.settlement_id,
                fund_paid=result.fund_paid,
                patient_paid=result.patient_paid,
                remote_reference=result.settlement_id,
            )
        else:
            self._transition(seq, expected, P.FAILED, reason=f"insurer answered {result.status}")

    def resolve(self, transaction_id: str) -> Movement:
        """Establish the outcome of an entry in flight; never guess, never resend money.

        ``pending`` was never sent: ``failed``. Bank ``sent``/``unknown``: the bank is
        asked; if it has the transaction its answer is taken, if not it is reversed.
        Insurer settlement: reversed by its original message ID. Insurer cancellation:
        asked again (idempotent). If the remote side cannot be reached, the entry stays
        ``unknown`` and a later :meth:`recover` tries again.
        """
        row = self._by_tid(transaction_id)
        seq, state = row.seq, P(row.state)
        if state is P.PENDING:
            self._transition(
                seq, P.PENDING, P.FAILED, reason="not sent: interrupted before sending"
            )
            return self._snapshot(seq)
        if state not in IN_FLIGHT:
            return self._snapshot(seq)
        try:
            if row.channel == "bank":
                self._resolve_bank(row)
            elif row.kind == SETTLE:
                self._resolve_settlement(row)
            else:
                self._resolve_cancel(row)
        except HcmError as exc:
            log.warning("transaction %s still unknown: %s", transaction_id, exc.message)
            if P(self._row(seq).state) is P.SENT:
                self._transition(seq, P.SENT, P.UNKNOWN, reason=exc.message[:200])
        return self._snapshot(seq)

    def _resolve_bank(self, row: Any) -> None:
        state = P(row.state)
        if not row.reversal_requested:
            result = self.mw.hooks.hcm_bank_query(transaction_id=row.transaction_id)
            self._crash("after_query")
            if isinstance(result, PaymentResult):
                if result.transaction_id != row.transaction_id:
                    raise MalformedResponseError(
                        "the bank's query answered for another transaction",
                        transaction_id=row.transaction_id,
                    )
                self._record_result(row.seq, state, result)
                return
            self._request_reversal(row.seq)
            self._crash("after_reversal_requested")
        # only True confirms: anything else an adapter answers leaves the outcome unknown
        if self.mw.hooks.hcm_bank_reverse(transaction_id=row.transaction_id) is not True:
            raise OutcomeUnknownError(
                "the bank did not confirm the reversal", transaction_id=row.transaction_id
            )
        self._crash("after_reverse")
        self._transition(row.seq, state, P.REVERSED, reason="reversed: outcome was unknown")

    def _request_reversal(self, seq: int) -> None:
        # durable: once a reversal may be on its way, no later query may confirm
        later: _Later = []
        with _write(self.engine, durable=True) as conn:
            row = conn.execute(
                _ENTRY.update()
                .where(_ENTRY.c.seq == seq)
                .values(reversal_requested=True, updated_at=_now())
                .returning(_ENTRY.c.transaction_id, _ENTRY.c.terminal_id, _ENTRY.c.state)
            ).one()
            self._audit_in(
                conn,
                later,
                "journal.reversal_requested",
                row.transaction_id,
                row.terminal_id,
                state=row.state,
            )
        self._audited(later)

    def _resolve_settlement(self, row: Any) -> None:
        state = P(row.state)
        if not row.reversal_requested:
            self._request_reversal(row.seq)
            self._crash("after_reversal_requested")
        confirmed = self.mw.hooks.hcm_insurance_reverse(
            original_message_id=row.transaction_id, message_id=self.new_message_id()
        )
        if confirmed is not True:
            raise OutcomeUnknownError(
                "the insurer did not confirm the reversal", transaction_id=row.transaction_id
            )
        self._crash("after_reverse")
        self._transition(row.seq, state, P.REVERSED, reason="reversed: outcome was unknown")

    def _resolve_cancel(self, row: Any) -> None:
        result = self.mw.hooks.hcm_insurance_cancel(
            settlement_id=row.settlement_id, message_id=row.transaction_id
        )
        self._crash("after_answer")
        if result is None:
            raise OutcomeUnknownError(
                "no insurance adapter answered", transaction_id=row.transaction_id
            )
        if not isinstance(result, Settlement):
            raise MalformedResponseError(
                f"the insurance adapter answered a {type(result).__name__}, not a Settlement",
                transaction_id=row.transaction_id,
            )
        self._record_settlement(row.seq, P(row.state), result)

    def recover(self, *, min_age: timedelta = timedelta(0)) -> RecoveryReport:
        """Settle every entry left in flight.

        At start, with nothing running, everything in flight is settled. While other
        terminals are paying, pass ``min_age`` (e.g. two minutes): an entry changed
        more recently may still be in a live call, and recovering it would reverse a
        payment its terminal is about to see confirmed (safely — the compare-and-set
        keeps one outcome — but needlessly).
        """
        report = RecoveryReport()
        cutoff = _now() - min_age
        with self.engine.connect() as conn:
            ids = (
                conn.execute(
                    sa.select(_ENTRY.c.transaction_id)
                    .where(
                        _ENTRY.c.state.in_([s.value for s in IN_FLIGHT]),
                        _ENTRY.c.updated_at <= cutoff,
                    )
                    .order_by(_ENTRY.c.seq)
                )
                .scalars()
                .all()
            )
        for tid in ids:
            report.examined += 1
            moved = self.resolve(tid)
            report.count(moved.state)
            if moved.state in IN_FLIGHT:
                report.still_unknown.append(tid)
        if report.examined:
            log.info("journal recovery: %s", report.outcomes)
        return report

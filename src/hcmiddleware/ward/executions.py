"""Bedside executions: one row per order occurrence, moved through the three checks.

An order occurrence (the order and its scheduled time) is executed once: the row holds
a ``live_key`` while it is not abandoned, and the database refuses a second one. The
state is the next check due; a check asked out of turn is refused.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from hcmiddleware import storage
from hcmiddleware.errors import AlreadyExecutedError, ExecutionStateError, WardError
from hcmiddleware.models import BedsideExecution, BedsideScan, Order
from hcmiddleware.ward.bands import Audited, utcnow
from hcmiddleware.ward.tables import ExecutionRow

__all__ = ["ExecutionStore", "live_key"]

_EXEC: sa.Table = ExecutionRow.__table__  # type: ignore[assignment]


def live_key(order: Order) -> str:
    """The occurrence an execution is for: the order and its scheduled time."""
    when = order.scheduled_at.isoformat() if order.scheduled_at else "-"
    return f"{order.order_id}@{when}"[:128]


def _cut(text: str | None, size: int) -> str | None:
    return text[:size] if text else None


def _aware(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.replace(tzinfo=UTC)


def to_execution(row: Any) -> BedsideExecution:
    """A row as the domain model."""
    return BedsideExecution(
        execution_id=row.execution_id,
        order_id=row.order_id,
        admission_id=row.admission_id,
        wristband_id=row.wristband_id,
        nurse_id=row.nurse_id,
        second_nurse=row.second_nurse_id,
        order_type=row.order_type,
        state=row.state,
        checks=json.loads(row.checks),
        started_at=_aware(row.started_at),
        executed_at=_aware(row.executed_at),
        his_state=row.his_state,
        his_error=row.his_error,
        patient_id=row.patient_id,
        drug_code=row.drug_code,
        dose=row.dose,
        route=row.route,
    )


class ExecutionStore:
    """The ``ward_executions`` table."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(self, execution_id: str) -> BedsideExecution:
        """One execution; WardError if there is none."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(_EXEC).where(_EXEC.c.execution_id == execution_id)).first()
        if row is None:
            raise WardError(
                f"no execution {execution_id}",
                hint="start the order's execution with a scan first",
            )
        return to_execution(row)

    def live(self, order: Order) -> BedsideExecution | None:
        """The execution of this occurrence that is not abandoned, if any."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(_EXEC).where(_EXEC.c.live_key == live_key(order))).first()
        return None if row is None else to_execution(row)

    def of_stay(self, admission_id: str) -> list[BedsideExecution]:
        """The stay's executions, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(_EXEC)
                .where(_EXEC.c.admission_id == admission_id)
                .order_by(_EXEC.c.started_at)
            ).all()
        return [to_execution(r) for r in rows]

    def pending_uploads(self) -> list[BedsideExecution]:
        """Done executions the HIS has not recorded yet."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(_EXEC).where(
                    _EXEC.c.state == "done", _EXEC.c.his_state.in_(("pending", "failed"))
                )
            ).all()
        return [to_execution(r) for r in rows]

    def start(
        self,
        order: Order,
        *,
        admission_id: str,
        wristband_id: str,
        nurse_id: str,
        second_nurse: str | None,
        order_type: str,
        checks: dict[str, bool],
        next_state: str,
        at: datetime,
        given: BedsideScan | None = None,
        patient_id: str | None = None,
        audited: Audited | None = None,
    ) -> BedsideExecution:
        """Record the passed check before execution; AlreadyExecutedError if it was.
        ``audited(conn, execution_id)`` writes the act's audit entry in its transaction."""
        execution_id = str(uuid.uuid4())
        naive = at.astimezone(UTC).replace(tzinfo=None)  # a naive time is local wall time
        try:
            with storage.begin_write(self.engine) as conn:
                conn.execute(
                    _EXEC.insert().values(
                        execution_id=execution_id,
                        live_key=live_key(order),
                        order_id=order.order_id,
                        scheduled_at=order.scheduled_at,
                        admission_id=admission_id,
                        wristband_id=wristband_id,
                        nurse_id=nurse_id[:40],
                        second_nurse_id=second_nurse[:40] if second_nurse else None,
                        order_type=order_type,
                        patient_id=patient_id,
                        drug_code=_cut(given.drug_code if given else None, 40),
                        dose=_cut(given.dose if given else None, 40),
                        route=_cut(given.route if given else None, 20),
                        state=next_state,
                        checks=json.dumps(checks, sort_keys=True),
                        started_at=naive,
                        updated_at=utcnow(),
                        executed_at=naive if next_state == "done" else None,
                        his_state="pending",
                        his_error=None,
                    )
                )
                if audited is not None:
                    audited(conn, execution_id)
        except IntegrityError:
            existing = self.live(order)
            raise self.already(order, existing) from None
        return self.get(execution_id)

    @staticmethod
    def already(order: Order, existing: BedsideExecution | None) -> AlreadyExecutedError:
        """The refusal of a second execution of ``order``'s occurrence."""
        if existing is None:  # pragma: no cover - the unique key names a live row
            return AlreadyExecutedError(
                f"order {order.order_id} is being executed already",
                order_id=order.order_id,
                execution_id="?",
                state="?",
            )
        what = "was executed" if existing.state == "done" else "is being executed"
        when = existing.executed_at or existing.started_at
        return AlreadyExecutedError(
            f"order {order.order_id} {what} already (by {existing.nurse_id}, {when:%H:%M})",
            order_id=order.order_id,
            execution_id=existing.execution_id,
            state=existing.state,
        )

    def advance(
        self,
        execution_id: str,
        *,
        expected: str,
        next_state: str,
        checks: dict[str, bool],
        executed_at: datetime | None,
        audited: Audited | None = None,
    ) -> BedsideExecution:
        """Move from ``expected`` to ``next_state`` (compare-and-set); ``audited`` is
        called in the transaction once the move is made."""
        with storage.begin_write(self.engine) as conn:
            values: dict[str, Any] = {
                "state": next_state,
                "checks": json.dumps(checks, sort_keys=True),
                "updated_at": utcnow(),
            }
            if executed_at is not None:
                values["executed_at"] = executed_at.astimezone(UTC).replace(tzinfo=None)
            done = conn.execute(
                _EXEC.update()
                .where(_EXEC.c.execution_id == execution_id, _EXEC.c.state == expected)
                .values(values)
            ).rowcount
            if done == 1 and audited is not None:
                audited(conn, execution_id)
        if done != 1:
            now = self.get(execution_id)
            raise ExecutionStateError(
                f"execution {execution_id} is at {now.state!r}, not {expected!r}",
                execution_id=execution_id,
                state=now.state,
            )
        return self.get(execution_id)

    def abandon(self, execution_id: str, *, audited: Audited | None = None) -> BedsideExecution:
        """Give up an execution not done yet; the occurrence may be started again."""
        with storage.begin_write(self.engine) as conn:
            done = conn.execute(
                _EXEC.update()
                .where(
                    _EXEC.c.execution_id == execution_id,
                    _EXEC.c.state.in_(("before", "during", "after")),
                )
                .values(state="abandoned", live_key=None, updated_at=utcnow())
            ).rowcount
            if done == 1 and audited is not None:
                audited(conn, execution_id)
        if done != 1:
            now = self.get(execution_id)
            raise ExecutionStateError(
                f"execution {execution_id} is {now.state} and cannot be abandoned",
                execution_id=execution_id,
                state=now.state,
                hint="a done execution stands; record a correction in the HIS",
            )
        return self.get(execution_id)

    def uploaded(
        self, execution_id: str, *, ok: bool, error: str | None, audited: Audited | None = None
    ) -> BedsideExecution:
        """Record the HIS's answer to the upload."""
        with storage.begin_write(self.engine) as conn:
            conn.execute(
                _EXEC.update()
                .where(_EXEC.c.execution_id == execution_id)
                .values(
                    his_state="recorded" if ok else "failed",
                    his_error=None if ok else (error or "")[:200],
                )
            )
            if audited is not None:
                audited(conn, execution_id)
        return self.get(execution_id)

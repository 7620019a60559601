"""The money journal: write before send, idempotency, reversal, recovery, reconciliation.

See ``docs/money.md``. The public names::

    from hcmiddleware.journal import Journal, Movement, reconcile
"""

from __future__ import annotations

from hcmiddleware.journal.movements import CrashPoint, Journal, Movement, RecoveryReport
from hcmiddleware.journal.reconciliation import ReconciliationReport, reconcile
from hcmiddleware.journal.states import FINAL, IN_FLIGHT

__all__ = [
    "FINAL",
    "IN_FLIGHT",
    "CrashPoint",
    "Journal",
    "Movement",
    "ReconciliationReport",
    "RecoveryReport",
    "reconcile",
]

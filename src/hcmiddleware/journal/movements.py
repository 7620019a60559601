"""The journal: every money movement is written before it is sent, and settled after.

The order of writes is the whole design:

1. ``pending`` is committed with the idempotency key before anything else happens;
   a second request with the same key finds it and never moves money again.
2. ``sent`` is committed *before* the bank or insurer is called. So after a crash an
   entry still ``pending`` was certainly never sent (it is marked ``failed``), and an
   entry ``sent`` may have been (its outcome is established by asking).
3. The answer is committed: ``confirmed`` or ``failed``. A timeout, a dropped
   connection, a SOAP fault or a malformed reply is ``unknown``: the outcome is then
   asked for (bank: query) and, when the remote side has no record, reversed (冲正)
   so that a late delivery cannot move money either. Nothing is ever guessed.

:meth:`Journal.recover` runs that same resolution for whatever a crashed process left
in flight. Every state change is a compare-and-set on the row, so two resolvers
cannot both apply a change.

Each concern has a module of its own, and :class:`Journal` combines them:

- :mod:`~hcmiddleware.journal.rows`: inserting an entry, the compare-and-set state
  change, row lookups, and the write transaction that decides what is forced to disk;
- :mod:`~hcmiddleware.journal.bank`: top-up, payment and refund;
- :mod:`~hcmiddleware.journal.insurer`: settlement and its cancellation;
- :mod:`~hcmiddleware.journal.resolution`: recording answers, resolving unknown
  outcomes (query, reversal), and recovery;
- :mod:`~hcmiddleware.journal.queries`: reading entries and their history;
- :mod:`~hcmiddleware.journal.records`: :class:`Movement`, :class:`RecoveryReport`.
"""

from __future__ import annotations

from hcmiddleware.journal.bank import BankMovements
from hcmiddleware.journal.insurer import InsurerSettlements
from hcmiddleware.journal.queries import Queries
from hcmiddleware.journal.records import Movement, RecoveryReport
from hcmiddleware.journal.records import mask_card as mask_card
from hcmiddleware.journal.rows import CANCEL as CANCEL
from hcmiddleware.journal.rows import DURABLE_STATES as DURABLE_STATES
from hcmiddleware.journal.rows import SETTLE as SETTLE
from hcmiddleware.journal.rows import CrashPoint

__all__ = ["CrashPoint", "Journal", "Movement", "RecoveryReport"]


class Journal(BankMovements, InsurerSettlements, Queries):
    """Journalled money movements through the bank and insurance hooks.

    :param middleware: the started Middleware whose hooks reach the adapters.
    :param engine: the database; default the Middleware's.
    :param crash_point: called between writes with the point's name (fault injection).
    :param migrate: bring the database up to the newest migration first (safe at every
        start; pass ``False`` when the caller has already done so).
    """

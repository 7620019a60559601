"""Writes audit events to the ``hcmiddleware.audit`` logger (a baseline audit sink).

Events carry opaque subjects (resident or transaction IDs), never names or ID numbers,
so the log line is safe to ship to a central log store.
"""

from __future__ import annotations

import json
import logging

from hcmiddleware.hookspecs import hookimpl
from hcmiddleware.models import AuditEvent

NAME = "hcm.audit-log"
log = logging.getLogger("hcmiddleware.audit")


@hookimpl(trylast=True)
def hcm_audit_event(event: AuditEvent) -> None:
    """Log the event as one JSON line at INFO."""
    if log.isEnabledFor(logging.INFO):  # made only when it is written: once per audited act
        log.info(json.dumps(event.model_dump(mode="json"), ensure_ascii=False, sort_keys=True))

"""The tamper-evident audit log (R-SEC-1): a hash chain in the installation's database.

``middleware.audit`` is an :class:`Audit`. See ``docs/audit.md``.

- :mod:`.chain` — hash functions and the canonical encoding of an entry
- :mod:`.tables` — the chain, its head and its checkpoints
- :mod:`.service` — :class:`Audit`: append, announce, checkpoint, list
- :mod:`.verify` — :class:`VerifyReport`: what is wrong, and where first
- :mod:`.signing` — the terminal's Ed25519 checkpoint key
- :mod:`.export` — FHIR R4 AuditEvent, IHE ATNA messages over RFC 5424 syslog
"""

from __future__ import annotations

from hcmiddleware.audit.service import Audit, Held
from hcmiddleware.audit.verify import Problem, VerifyReport, read_checkpoint_file

__all__ = ["Audit", "Held", "Problem", "VerifyReport", "read_checkpoint_file"]

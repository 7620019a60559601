"""Appends every audit checkpoint to ``[audit] checkpoint_file`` (one JSON object a line).

Put the file on another disk than the database (or a share another machine backs up):
a rewrite of the whole audit table is then caught by verifying the chain against this
file (``hcm audit verify --checkpoints FILE``). Each line is written and forced to disk
before the call returns.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from hcmiddleware.hookspecs import hookimpl
from hcmiddleware.models import AuditCheckpoint

NAME = "hcm.audit-checkpoints"


class CheckpointFile:
    """The built-in checkpoint sink: one JSON line per checkpoint, appended and synced."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    @hookimpl
    def hcm_audit_checkpoint(self, checkpoint: AuditCheckpoint) -> None:
        """Append the checkpoint and force it to disk."""
        line = checkpoint.model_dump_json() + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                os.write(fd, line.encode("utf-8"))
                os.fsync(fd)
            finally:
                os.close(fd)

"""The agent's own audit entries (``agent.call``), written behind the answers in batches.

Each call's service acts are audited by the service, synchronously, in the act's own
transaction (``mw.acting_as``). The agent's entry — who called which endpoint, with
what status — is queued as the answer goes out; one thread collects the queue for
``delay`` seconds and hands the batch to the audit log's group commit, where it rides
along with the next commit of the services' own entries (or commits on its own after
``delay`` more, when the log is quiet). So the HTTP path waits for no commit of its
own, and a busy agent spends no extra commit on them. The queue is drained when the
agent stops; an entry is at most about twice ``delay`` (or one batch) behind its call.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import TYPE_CHECKING, Any

from hcmiddleware.errors import HcmError

if TYPE_CHECKING:
    from hcmiddleware.runtime import Middleware

__all__ = ["CallLog"]

log = logging.getLogger("hcmiddleware.agent")
_BATCH = 256


class CallLog:
    """A queue of ``agent.call`` entries and the thread that writes them."""

    def __init__(self, mw: Middleware, *, delay: float = 0.05) -> None:
        self._mw = mw
        self._delay = delay
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._idle = threading.Condition()
        self._pending = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hcm-agent-audit", daemon=True)
        self._thread.start()

    def put(self, entry: dict[str, Any]) -> None:
        """Queue one entry (the keyword arguments of ``Audit.record``)."""
        with self._idle:
            self._pending += 1
        self._queue.put(entry)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued entry is written; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued and stop the thread."""
        self._stopping.set()
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            batch = [] if first is None else [first]
            stop = first is None
            if not stop:
                # let the batch fill for ``delay`` instead of waking for every entry: one
                # thread switch per batch, not per call
                self._stopping.wait(self._delay)
            try:
                while len(batch) < _BATCH:
                    item = self._queue.get_nowait()
                    if item is None:
                        stop = True
                        continue
                    batch.append(item)
            except queue.Empty:
                pass
            if batch:
                self._write(batch)

    def _write(self, batch: list[dict[str, Any]]) -> None:
        audit = self._mw._raw("audit")
        try:
            # taken along by the next commit of the calls' own entries when there is one
            audit.record_many(
                ({"action": "agent.call", **entry} for entry in batch), ride_along=self._delay
            )
        except HcmError:
            log.exception("%d agent calls could not be audited", len(batch))
        finally:
            with self._idle:
                self._pending -= len(batch)
                self._idle.notify_all()

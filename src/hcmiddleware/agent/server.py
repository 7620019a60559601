"""``hcm agent serve``: the application under uvicorn, and a clean stop on SIGTERM.

On SIGTERM (or Ctrl-C) the server stops accepting connections, ends the event streams,
lets the calls in flight finish (``[agent] shutdown_grace`` seconds), waits for every
money movement under way to be journalled in its final state, then closes the
Middleware (the audit log's last checkpoint, the SAM, the database).
"""

from __future__ import annotations

import logging
import signal
from types import FrameType
from typing import TYPE_CHECKING

import uvicorn

from hcmiddleware.agent.app import AgentState, create_app

if TYPE_CHECKING:
    from hcmiddleware.config import AgentSection
    from hcmiddleware.runtime import Middleware

__all__ = ["serve"]

log = logging.getLogger("hcmiddleware.agent")


class _Server(uvicorn.Server):
    """uvicorn's server, ending the event streams as soon as it is told to stop."""

    def __init__(self, config: uvicorn.Config, state: AgentState) -> None:
        super().__init__(config)
        self.agent = state

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.agent.events.close()
        super().handle_exit(sig, frame)


def serve(mw: Middleware, settings: AgentSection, *, ready: str | None = None) -> None:
    """Serve the agent on ``settings.host:port`` until SIGTERM/SIGINT; closes ``mw``.

    :param ready: a line printed on stdout once the socket listens (for supervisors).
    """
    app = create_app(mw, settings)
    state: AgentState = app.state.agent
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        access_log=False,  # our own access log holds no path values and no query
        log_config=None,
        timeout_graceful_shutdown=int(settings.shutdown_grace),
        server_header=False,
        lifespan="off",
        # the agent is called on loopback, never through a proxy: X-Forwarded-For from
        # a local page must not change whom the rate limit counts
        proxy_headers=False,
    )
    server = _Server(config, state)
    watcher = None
    try:
        try:
            watcher = mw.terminal.watch()
            watcher.start()
        except Exception as exc:  # no pcsc extra or no PC/SC service: no card events
            log.warning("card events are off: %s", type(exc).__name__)
            watcher = None
        _load_card_index(mw)
        if ready:
            _announce_when_started(server, ready)
        # uvicorn raises the signal again once it has stopped, with the handler found
        # before it started: that must not end the process before the Middleware is closed
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, _stopped)
        server.run()
    finally:
        if not state.wait_idle(settings.shutdown_grace):
            log.error("a money movement was still under way at shutdown; run hcm journal recover")
        if watcher is not None:
            watcher.stop()
        state.close()
        mw.close()
        log.info("agent stopped")


def _load_card_index(mw: Middleware) -> None:
    """Build the in-memory index of listed cards before the first call, so the first
    card checks are answered from memory rather than the database. A failure only
    leaves the index to be built on the first check: the agent starts either way."""
    try:
        status = mw._raw("cards").load_index()
    except Exception as exc:
        log.warning("the card index was not built at start: %s", type(exc).__name__)
        return
    if status.unavailable:
        log.info("no in-memory card index: %s", status.unavailable)
    else:
        log.info("card index ready: %d entries", status.entries)


def _stopped(sig: int, frame: FrameType | None) -> None:
    """The signal uvicorn hands back after it stopped: the close follows in serve()."""


def _announce_when_started(server: uvicorn.Server, line: str) -> None:
    import threading
    import time

    def wait() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.02)
        if server.started:
            print(line, flush=True)

    threading.Thread(target=wait, name="hcm-agent-ready", daemon=True).start()

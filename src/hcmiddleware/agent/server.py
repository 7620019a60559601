"""``hcm agent serve``: the application under uvicorn, and a clean stop on SIGTERM.

On SIGTERM (or Ctrl-C) the server stops accepting connections, ends the event streams,
lets the calls in flight finish (``[agent] shutdown_grace`` seconds), waits for every
money movement under way to be journalled in its final state, then closes the
Middleware (the audit log's last checkpoint, the SAM, the database).
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
from types import FrameType
from typing import TYPE_CHECKING

import uvicorn

from hcmiddleware.agent.app import AgentState, create_app
from hcmiddleware.errors import AgentListenError

if TYPE_CHECKING:
    from hcmiddleware.config import AgentSection
    from hcmiddleware.runtime import Middleware

__all__ = ["listen", "serve"]

log = logging.getLogger("hcmiddleware.agent")


class _Server(uvicorn.Server):
    """uvicorn's server, ending the event streams as soon as it is told to stop."""

    def __init__(self, config: uvicorn.Config, state: AgentState) -> None:
        super().__init__(config)
        self.agent = state

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.agent.events.close()
        super().handle_exit(sig, frame)


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on ``host:port``, for :func:`serve`.

    Made before anything else is opened, so that a port another program holds is said
    at once, in one line, with nothing of the installation touched. On Windows the port
    is taken for this process alone (``SO_EXCLUSIVEADDRUSE``: there ``SO_REUSEADDR``
    would let a second program bind the same port and take calls meant for the agent).

    :raises AgentListenError: the port is taken, the host is not an address of this
        machine or cannot be resolved, or the port needs a privilege.
    """
    where = f"{host}:{port}"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror:
        raise AgentListenError(
            f"cannot listen on {where}: {host!r} is not a name this machine can resolve",
            host=host, port=port,
            hint="set [agent] host (or --host) to 127.0.0.1, the default, or an address "
            "of this machine",
        ) from None  # fmt: skip
    sock = socket.socket(family, kind, proto)
    try:
        if os.name == "nt":
            sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_EXCLUSIVEADDRUSE", 0), 1)
        else:  # a restart may bind while the last run's connections are in TIME_WAIT
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise _listen_error(exc, host, port) from None
    sock.setblocking(False)
    return sock


def _listen_error(exc: OSError, host: str, port: int) -> AgentListenError:
    where = f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE or getattr(exc, "winerror", None) == 10048:
        return AgentListenError(
            f"cannot listen on {where}: another program holds the port (another hcm agent?)",
            host=host, port=port,
            hint=f"stop that program (Linux: ss -ltnp 'sport = :{port}'; Windows: netstat "
            f"-ano | findstr :{port} names it), or choose another port with --port or "
            "[agent] port and tell the HIS",
        )  # fmt: skip
    if exc.errno == errno.EADDRNOTAVAIL or getattr(exc, "winerror", None) == 10049:
        return AgentListenError(
            f"cannot listen on {where}: {host} is not an address of this machine",
            host=host, port=port,
            hint="set [agent] host (or --host) to 127.0.0.1, the default, or an address "
            "of this machine",
        )  # fmt: skip
    if exc.errno in (errno.EACCES, errno.EPERM):
        return AgentListenError(
            f"cannot listen on {where}: not permitted (a port below 1024 needs a privilege)",
            host=host, port=port,
            hint="use a port from 1024 up, such as the default 8765",
        )  # fmt: skip
    return AgentListenError(
        f"cannot listen on {where}: {exc.strerror or type(exc).__name__}", host=host, port=port
    )


def serve(
    mw: Middleware,
    settings: AgentSection,
    *,
    ready: str | None = None,
    sock: socket.socket | None = None,
) -> None:
    """Serve the agent on ``settings.host:port`` until SIGTERM/SIGINT; closes ``mw``.

    :param ready: a line printed on stdout once the socket listens (for supervisors).
    :param sock: the socket :func:`listen` made (the command line makes it before it
        opens the Middleware); by default one is made here.
    :raises AgentListenError: ``sock`` was not given and the address cannot be listened
        on; ``mw`` is closed.
    """
    if sock is None:
        try:
            sock = listen(settings.host, settings.port)
        except AgentListenError:
            mw.close()
            raise
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
            # a PC/SC service not up yet (or restarted later) is waited for: the events
            # begin, or begin again, once it answers
            watcher = mw.terminal.watch(wait_for_service=True)
            watcher.start()
            state.card_events = watcher
            state.events.cards = watcher.cards
        except Exception as exc:  # no pcsc extra: no card events
            log.warning("card events are off: %s", type(exc).__name__)
            watcher = None
        _load_card_index(mw)
        if ready:
            _announce_when_started(server, ready)
        # uvicorn raises the signal again once it has stopped, with the handler found
        # before it started: that must not end the process before the Middleware is closed
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, _stopped)
        server.run(sockets=[sock])
    finally:
        if not state.wait_idle(settings.shutdown_grace):
            log.error("a money movement was still under way at shutdown; run hcm journal recover")
        if watcher is not None:
            watcher.stop()
        state.close()
        mw.close()
        sock.close()
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

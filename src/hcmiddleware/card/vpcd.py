"""The virtual-card side of the vpcd protocol: puts any card object behind pcscd.

vpcd (vsmartcard) is a PC/SC reader driver that listens on TCP; a virtual card
connects to it, and from then on the reader sees a card. Every message is a 2-byte
big-endian length and a payload: a 1-byte payload is a control code (0 power off,
1 power on, 2 reset, 4 get ATR — only 4 is answered, with the ATR), anything longer a
command APDU answered with the response APDU.

:class:`VpcdCard` serves any object with ``atr: bytes`` and ``transmit(apdu) -> bytes``
(the emulator, a SAM emulator, a replay) from a background thread. ``TCP_QUICKACK`` is
set before each ``recv``: vpcd writes the length and the payload separately, and
without it each APDU waits ~40 ms for a delayed ACK.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from types import TracebackType
from typing import Protocol

from hcmiddleware.errors import CardAbsentError, ReaderError

__all__ = ["DEFAULT_PORT", "SAM_PORT", "ServedCard", "VpcdCard"]

log = logging.getLogger(__name__)

#: vpcd's port of reader 0 (``Virtual PCD 00 00``): the user card.
DEFAULT_PORT = 35963
#: vpcd's port of reader 1 (``Virtual PCD 00 01``): the SAM.
SAM_PORT = 35964

_POWER_OFF, _POWER_ON, _RESET, _GET_ATR = 0, 1, 2, 4


class ServedCard(Protocol):
    """What :class:`VpcdCard` needs from a card."""

    @property
    def atr(self) -> bytes:
        """The card's answer-to-reset."""
        ...

    def transmit(self, apdu: bytes) -> bytes:
        """Execute a command APDU and return the response APDU."""
        ...


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    """``n`` bytes, or ``None`` when the peer closed the connection."""
    buf = bytearray()
    while len(buf) < n:
        with contextlib.suppress(OSError):  # not on every platform
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


class VpcdCard:
    """Connect ``card`` to vpcd at 127.0.0.1:``port`` — the card is then "inserted".

    :meth:`start` returns once connected (or raises :class:`ReaderError` after
    ``connect_timeout`` seconds when nothing listens: pcscd with the vpcd driver is not
    running). :meth:`stop` removes the card. A card whose ``transmit`` raises
    :class:`CardAbsentError` (an emulator pulled for a tear test) drops the connection,
    so pcscd sees the removal.
    """

    def __init__(
        self,
        card: ServedCard,
        port: int = DEFAULT_PORT,
        *,
        host: str = "127.0.0.1",
        connect_timeout: float = 5.0,
    ) -> None:
        self.card = card
        self.port = port
        self.host = host
        self.connect_timeout = connect_timeout
        self.apdus = 0
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def __enter__(self) -> VpcdCard:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """True while the card is connected to vpcd."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Connect to vpcd and serve in a daemon thread."""
        if self.running:
            return
        self._stopping.clear()
        deadline = time.monotonic() + self.connect_timeout
        while True:
            try:
                sock = socket.create_connection((self.host, self.port), timeout=1.0)
                break
            except OSError:
                if time.monotonic() >= deadline:
                    raise ReaderError(
                        f"no virtual reader listens on {self.host}:{self.port}",
                        hint="start pcscd with the vpcd driver (package vsmartcard-vpcd)",
                    ) from None
                time.sleep(0.05)
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self._thread = threading.Thread(
            target=self._serve, name=f"vpcd-card-{self.port}", daemon=True
        )
        self._thread.start()

    def serve_forever(self) -> None:
        """Start, then block until :meth:`stop` or the connection ends (for the CLI)."""
        self.start()
        assert self._thread is not None
        while self._thread.is_alive():
            self._thread.join(0.2)

    def stop(self) -> None:
        """Disconnect (the reader sees the card removed) and wait for the thread."""
        self._stopping.set()
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5.0)
        self._thread = None

    def _send(self, sock: socket.socket, payload: bytes) -> None:
        sock.sendall(len(payload).to_bytes(2, "big") + payload)

    def _serve(self) -> None:
        sock = self._sock
        if sock is None:
            return
        reset = getattr(self.card, "reset", None)
        try:
            while not self._stopping.is_set():
                header = _recv_exact(sock, 2)
                if header is None:
                    break
                payload = _recv_exact(sock, int.from_bytes(header, "big"))
                if payload is None:
                    break
                if len(payload) == 1:
                    code = payload[0]
                    if code == _GET_ATR:
                        self._send(sock, self.card.atr)
                    elif code in (_POWER_ON, _RESET) and callable(reset):
                        reset()
                    continue
                self.apdus += 1
                try:
                    response = self.card.transmit(payload)
                except CardAbsentError:
                    log.debug("served card pulled; dropping the vpcd connection")
                    break
                except Exception:  # a card fault must not kill the reader's link
                    log.exception("served card failed on an APDU; answering 6F00")
                    response = b"\x6f\x00"
                self._send(sock, response)
        except OSError:
            if not self._stopping.is_set():
                log.debug("vpcd connection on port %d lost", self.port)
        finally:
            with contextlib.suppress(OSError):
                sock.close()

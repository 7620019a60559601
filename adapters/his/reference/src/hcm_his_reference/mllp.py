"""MLLP (HL7's Minimal Lower Layer Protocol) listener on loopback.

A message travels as ``0x0B`` + message bytes + ``0x1C 0x0D``. The listener keeps a
connection open for as many messages as the client sends, answers each in turn, and
lets the fault switch delay, drop or spoil answers. Stopping it ends the connections
clients keep open too.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
import time
from collections.abc import Callable

from hcm_his_reference.faults import FaultSwitch

__all__ = ["END", "START", "MllpServer"]

START = b"\x0b"
END = b"\x1c\x0d"
MAX_MESSAGE = 1 << 20

Handler = Callable[[bytes], bytes]


class _Connection(socketserver.BaseRequestHandler):
    server: _Server

    def setup(self) -> None:
        sock: socket.socket = self.request
        # one answer per message, each in one write: nothing for Nagle to hold back
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.live_lock:
            self.server.live.add(sock)

    def finish(self) -> None:
        with self.server.live_lock:
            self.server.live.discard(self.request)

    def handle(self) -> None:
        buffer = b""
        sock: socket.socket = self.request
        while True:
            while END not in buffer:
                chunk = sock.recv(65536)
                if not chunk or len(buffer) > MAX_MESSAGE:
                    return
                buffer += chunk
            frame, _, buffer = buffer.partition(END)
            start = frame.find(START)
            if start < 0:
                return  # not MLLP: hang up, as a real listener would
            if not self._answer(sock, frame[start + 1 :]):
                return

    def _answer(self, sock: socket.socket, message: bytes) -> bool:
        header = message.split(b"\r", 1)[0].split(b"|")
        write = not (len(header) > 8 and header[8].startswith(b"QBP"))
        fault = self.server.faults.take(write=write)
        if fault.drop == "before":
            return False
        answer = self.server.handle_message(message, fault)
        if fault.delay:
            time.sleep(fault.delay)
        if fault.drop == "after":
            return False
        if fault.garbage:
            sock.sendall(START + b"\x00\xffnot hl7 at all\xfe" + END)
            return True
        if fault.truncate:
            sock.sendall(START + answer[: len(answer) // 2])
            return False
        sock.sendall(START + answer + END)
        return True


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], faults: FaultSwitch, handle: Callable[..., bytes]
    ) -> None:
        super().__init__(address, _Connection)
        self.faults = faults
        self.handle_message = handle
        #: connections open now (a client keeps one for its next message)
        self.live: set[socket.socket] = set()
        self.live_lock = threading.Lock()

    def close_connections(self) -> None:
        """End every open connection: a stopped HIS answers nothing more."""
        with self.live_lock:
            live = list(self.live)
        for sock in live:
            with contextlib.suppress(OSError):  # already closed by the client
                sock.shutdown(socket.SHUT_RDWR)


class MllpServer:
    """An MLLP listener on ``host:port`` (port 0: any free port) in a background thread."""

    def __init__(
        self,
        handle: Callable[..., bytes],
        faults: FaultSwitch,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._server = _Server((host, port), faults, handle)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="his-mllp",
            daemon=True,
        )

    @property
    def address(self) -> tuple[str, int]:
        """The host and port it listens on."""
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        """Start listening."""
        self._thread.start()

    def stop(self) -> None:
        """Stop listening and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        self._server.close_connections()
        self._thread.join(timeout=5)

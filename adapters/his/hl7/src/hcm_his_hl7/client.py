"""An MLLP client that sends one HL7 message and waits for its acknowledgment.

Retry policy: when the HIS cannot be reached, does not answer within ``timeout``, drops
the connection, or answers with something unreadable, the *same bytes* — hence the same
control ID (MSH-10) — are sent again, at most ``attempts`` times in all, with a growing
pause between tries. A HIS that follows HL7's original acknowledgment rules answers a
resent control ID with its first answer instead of acting twice, so a retry can never
register a patient or a payment twice. A NAK (``AE``/``AR``) is an answer, not a
failure of transport: it is never resent.

Connections: an exchange that went well leaves its connection open for the next one
(``keep_alive`` seconds at most; MLLP carries any number of messages on one connection,
one answer after each), so a visit's messages do not each pay a TCP connection — and a
thread of the HIS's listener — of their own. A kept connection the HIS has closed
meanwhile is seen before it is used (a peek finds its end) and left; one that fails
during an exchange is closed, and the try is a try like any other. ``keep_alive=0``: a
connection per exchange.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import dataclass

from hcm_his_hl7.er7 import Er7Message
from hcm_his_hl7.messages import CHARSETS
from hcmiddleware.errors import HisError, HisProtocolError, HisRejectedError, HisUnavailableError

__all__ = ["MllpClient", "RetryPolicy"]

log = logging.getLogger("hcm_his_hl7")

START = b"\x0b"
END = b"\x1c\x0d"
MAX_ANSWER = 4 << 20
#: MSH-18 → codec, for decoding answers.
CODECS = {"": "utf-8", **{msh18: codec for msh18, codec in CHARSETS.values()}}


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to resend one message."""

    attempts: int = 3
    timeout: float = 2.0
    backoff: float = 0.2

    def worst_case(self) -> float:
        """Seconds one call can take at most: every try timing out, every pause taken."""
        pauses = sum(self.backoff * 2**n for n in range(self.attempts - 1))
        return float(self.attempts * self.timeout + pauses)

    def pause(self, attempt: int) -> float:
        """Seconds to wait before try number ``attempt + 1`` (doubling each time)."""
        return float(self.backoff * (2 ** (attempt - 1)))


def _still_open(sock: socket.socket) -> bool:
    """Is an idle connection still open: nothing to read, no end of stream, no error?"""
    try:
        sock.setblocking(False)
        try:
            sock.recv(1, socket.MSG_PEEK)  # the end of the stream, or bytes unasked for
            return False
        finally:
            sock.setblocking(True)
    except BlockingIOError:
        return True
    except OSError:
        return False


class _TransportError(Exception):
    """One try failed below HL7 (no connection, no answer, unreadable answer)."""

    def __init__(self, kind: type[HisError], text: str) -> None:
        super().__init__(text)
        self.kind = kind
        self.text = text


class MllpClient:
    """Sends messages to one HIS MLLP endpoint, on connections kept for the next one."""

    def __init__(
        self,
        host: str,
        port: int,
        policy: RetryPolicy,
        codec: str = "utf-8",
        *,
        keep_alive: float = 30.0,
    ) -> None:
        self.host = host
        self.port = port
        self.policy = policy
        self.codec = codec
        #: seconds an idle connection is kept for the next exchange (0: none is kept)
        self.keep_alive = keep_alive
        #: tries made since start (resends included), for tests and ``hcm doctor``
        self.sent = 0
        #: connections opened since start, for tests
        self.connections = 0
        #: idle connections and since when (the exchanges of several threads at once
        #: each take one of their own)
        self._idle: list[tuple[socket.socket, float]] = []
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the idle connections (the next exchange opens one again)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for sock, _since in idle:
            sock.close()

    def _connection(self) -> socket.socket:
        """An idle connection still open, else a new one."""
        now = time.monotonic()
        while True:
            with self._lock:
                if not self._idle:
                    break
                sock, since = self._idle.pop()
            if now - since <= self.keep_alive and _still_open(sock):
                return sock
            sock.close()
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.policy.timeout)
        except OSError as exc:
            raise _TransportError(
                HisUnavailableError, f"cannot connect ({exc.strerror or exc})"
            ) from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connections += 1
        return sock

    def _keep(self, sock: socket.socket) -> None:
        if self.keep_alive <= 0:
            sock.close()
            return
        with self._lock:
            self._idle.append((sock, time.monotonic()))

    def exchange(self, text: str, control_id: str) -> Er7Message:
        """Send ``text``; return the accepted answer (``MSA-1`` = ``AA``).

        :raises HisRejectedError: the HIS answered ``AE``/``AR``.
        :raises HisUnavailableError: no answer after every try.
        :raises HisProtocolError: the answers were not HL7 or not for this message.
        """
        payload = START + text.encode(self.codec) + END
        failure: _TransportError | None = None
        for attempt in range(1, self.policy.attempts + 1):
            if attempt > 1:
                time.sleep(self.policy.pause(attempt - 1))
                log.info("resending control ID %s (try %d)", control_id, attempt)
            try:
                raw = self._send(payload)
                answer = self._decode(raw)
            except _TransportError as exc:
                failure = exc
                continue
            return self._check(answer, control_id)
        assert failure is not None
        raise failure.kind(
            f"HIS at {self.host}:{self.port}: {failure.text} (after {self.policy.attempts} tries, "
            f"control ID {control_id})"
        )

    def _send(self, payload: bytes) -> bytes:
        self.sent += 1
        deadline = time.monotonic() + self.policy.timeout
        sock = self._connection()
        kept = False
        try:
            try:
                sock.settimeout(max(deadline - time.monotonic(), 0.001))
                sock.sendall(payload)
                buffer = b""
                while END not in buffer:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError
                    sock.settimeout(left)
                    chunk = sock.recv(65536)
                    if not chunk:
                        kind = HisProtocolError if buffer else HisUnavailableError
                        what = (
                            "truncated answer" if buffer else "connection closed without an answer"
                        )
                        raise _TransportError(kind, what)
                    buffer += chunk
                    if len(buffer) > MAX_ANSWER:
                        raise _TransportError(HisProtocolError, "answer too long")
            except TimeoutError:
                raise _TransportError(
                    HisUnavailableError, f"no answer within {self.policy.timeout:g} s"
                ) from None
            except OSError as exc:
                raise _TransportError(
                    HisUnavailableError, f"connection failed ({exc.strerror or exc})"
                ) from None
            frame, _, rest = buffer.partition(END)
            if not frame.startswith(START):
                raise _TransportError(HisProtocolError, "answer is not MLLP-framed")
            if not rest:  # nothing after the answer: the connection can carry the next
                self._keep(sock)
                kept = True
            return frame[1:]
        finally:
            if not kept:
                sock.close()

    @staticmethod
    def _decode(raw: bytes) -> Er7Message:
        header = raw.split(b"\r", 1)[0].decode("latin-1")
        if not header.startswith("MSH|"):
            raise _TransportError(HisProtocolError, "answer is not an HL7 message")
        fields = header.split("|")
        charset = fields[17].strip() if len(fields) > 17 else ""
        codec = CODECS.get(charset)
        if codec is None:
            raise _TransportError(
                HisProtocolError, f"answer declares an unknown character set {charset[:20]!r}"
            )
        try:
            text = raw.decode(codec)
        except UnicodeDecodeError:
            raise _TransportError(
                HisProtocolError, f"answer is not valid {charset or 'UTF-8'} as MSH-18 declares"
            ) from None
        try:
            return Er7Message(text)
        except HisProtocolError as exc:
            raise _TransportError(HisProtocolError, exc.message) from None

    def _check(self, answer: Er7Message, control_id: str) -> Er7Message:
        code = answer.get("MSA", 1)
        if answer.get("MSA", 2) != control_id:
            raise HisProtocolError(
                f"HIS at {self.host}:{self.port} acknowledged control ID "
                f"{answer.get('MSA', 2)[:20]!r}, not {control_id!r}"
            )
        if code in ("AA", "CA"):
            return answer
        his_code = answer.get("ERR", 5) or answer.get("ERR", 3) or code
        text = answer.get("ERR", 8) or answer.get("MSA", 3) or "no reason given"
        raise HisRejectedError(
            f"the HIS refused the message ({code} {his_code}): {text}",
            code=his_code,
            status=code,
        )

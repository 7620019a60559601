"""A small SOAP 1.1 server on loopback with fault injection, for reference peers.

The reference bank and the reference insurer (``adapters/bank/soap``,
``adapters/insurance/soap``) serve their hand-written WSDLs through it; an integrator
writing another SOAP adapter can build its reference peer on it too. Needs ``lxml``
(the ``soap`` extra).

Why not spyne: the WSDL is written by hand as the interface contract, and a plain
``http.server`` lets the server do what a framework hides — commit and then drop the
connection, answer late, deliver a request twice — with no Python-version risk.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from lxml import etree  # type: ignore[import-untyped]

__all__ = ["FaultPlan", "SoapFaultError", "SoapServer", "SoapService"]

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"


class SoapFaultError(Exception):
    """A SOAP fault to answer with (``Client`` for bad requests, ``Server`` otherwise)."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


@dataclass
class FaultPlan:
    """Which faults the server injects, how often, drawn from a seeded generator.

    Rates are probabilities per request of an operation in ``operations``:

    - ``delay``: answer after ``delay_seconds`` (beyond the client's timeout); the
      request is processed after the delay, as a slow bank or insurer would.
    - ``fault``: answer with a SOAP fault; nothing is processed.
    - ``drop``: process and commit, then close the connection without an answer.
    - ``duplicate``: process the request twice, as a redelivering network would.
    - ``malformed``: process and commit, then answer with a broken body.
    - ``statement``: (statement operations only) a wrong amount on one line.
    """

    seed: int = 0
    delay: float = 0.0
    delay_seconds: float = 0.3
    fault: float = 0.0
    drop: float = 0.0
    duplicate: float = 0.0
    malformed: float = 0.0
    statement: float = 0.0
    operations: frozenset[str] = field(default_factory=frozenset)


class SoapService(Protocol):
    """What the server serves: a WSDL and a handler per operation."""

    namespace: str

    def wsdl(self, address: str) -> bytes:
        """The WSDL with the service address set to ``address``."""

    def handle(self, operation: str, body: etree._Element, tamper: bool) -> etree._Element:
        """Answer one operation; raise SoapFaultError to refuse it."""


class SoapServer:
    """Serve ``service`` on 127.0.0.1 (port 0 picks a free one) in a background thread."""

    def __init__(
        self,
        service: SoapService,
        *,
        path: str,
        port: int = 0,
        faults: FaultPlan | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.service = service
        self.path = path
        self.faults = faults or FaultPlan()
        self.username = username
        self.password = password
        self.injected: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()
        self._rng = random.Random(self.faults.seed)
        self._lock = threading.Lock()
        self.stopped = threading.Event()
        self._httpd = _QuietServer(("127.0.0.1", port), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The service's address."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}{self.path}"

    @property
    def wsdl_url(self) -> str:
        """Where the WSDL is served."""
        return self.url + "?wsdl"

    def set_faults(self, faults: FaultPlan) -> None:
        """Replace the fault plan (and reseed its generator)."""
        with self._lock:
            self.faults = faults
            self._rng = random.Random(faults.seed)

    def start(self) -> SoapServer:
        """Start serving; returns self."""
        # a short poll interval: stop() waits for the loop to notice, up to one interval
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.02},
            name=f"soap{self.path}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket; late (delayed) requests are dropped."""
        self.stopped.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> SoapServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def draw(self, operation: str) -> set[str]:
        """The faults to inject into this request (counted in ``injected``)."""
        plan = self.faults
        with self._lock:
            self.requests[operation] += 1
            chosen: set[str] = set()
            if operation not in plan.operations:
                return chosen
            for name in ("delay", "fault", "drop", "duplicate", "malformed", "statement"):
                rate = getattr(plan, name)
                if rate and self._rng.random() < rate:
                    chosen.add(name)
            # one way of losing the answer per request is enough
            if "fault" in chosen:
                chosen -= {"drop", "malformed", "duplicate"}
            if "drop" in chosen:
                chosen.discard("malformed")
            for name in chosen:
                self.injected[name] += 1
            return chosen

    def authorised(self, envelope: etree._Element) -> bool:
        """Whether the WS-Security UsernameToken matches (always, without credentials)."""
        if self.username is None:
            return True
        user = envelope.findtext(f".//{{{WSSE}}}Username")
        password = envelope.findtext(f".//{{{WSSE}}}Password")
        return bool(user == self.username and password == self.password)


class _QuietServer(ThreadingHTTPServer):
    """A server that does not print a traceback when a client hangs up on it.

    Clients give up on late answers by design (the delay fault); the server's write
    then fails with a broken pipe, which is expected here, not an error.
    """

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Say nothing: clients hang up on late answers by design."""
        return


def envelope(body: etree._Element) -> bytes:
    """A SOAP 1.1 envelope around ``body``."""
    env = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap={"soap-env": SOAP_ENV})
    etree.SubElement(env, f"{{{SOAP_ENV}}}Body").append(body)
    return bytes(etree.tostring(env, xml_declaration=True, encoding="utf-8"))


def fault_envelope(code: str, text: str) -> bytes:
    """A SOAP 1.1 fault envelope."""
    fault = etree.Element(f"{{{SOAP_ENV}}}Fault")
    etree.SubElement(fault, "faultcode").text = f"soap-env:{code}"
    etree.SubElement(fault, "faultstring").text = text
    return envelope(fault)


def _handler_for(server: SoapServer) -> Callable[..., Any]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # one write per answer and no Nagle: otherwise headers and body go out in two
        # segments and the client's delayed ACK adds ~40 ms to every call
        wbufsize = -1
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            return  # the tests' output stays readable; counters say what happened

        def _send(self, status: int, data: bytes, ctype: str = "text/xml; charset=utf-8") -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()

        def do_GET(self) -> None:
            if self.path.split("?")[0] == server.path and self.path.endswith("?wsdl"):
                self._send(200, server.service.wsdl(server.url))
            else:
                self._send(404, b"not found", "text/plain")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            try:
                env = etree.fromstring(raw, parser=etree.XMLParser(resolve_entities=False))
                body = env.find(f"{{{SOAP_ENV}}}Body")
                request = body[0] if body is not None and len(body) else None
            except etree.XMLSyntaxError:
                request = None
            if request is None:
                self._send(500, fault_envelope("Client", "not a SOAP 1.1 envelope"))
                return
            if not server.authorised(env):
                self._send(500, fault_envelope("Client", "authentication failed"))
                return
            operation = etree.QName(request).localname
            faults = server.draw(operation)
            if "delay" in faults:
                time.sleep(server.faults.delay_seconds)
                if server.stopped.is_set():
                    return
            if "fault" in faults:
                self._send(500, fault_envelope("Server", "injected fault: service unavailable"))
                return
            try:
                answer = server.service.handle(operation, request, "statement" in faults)
                if "duplicate" in faults:
                    answer = server.service.handle(operation, request, "statement" in faults)
            except SoapFaultError as fault:
                self._send(500, fault_envelope(fault.code, fault.text))
                return
            if "drop" in faults:
                # committed, and the answer is lost: the client must find out by asking
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            data = envelope(answer)
            if "malformed" in faults:
                data = data[: len(data) // 2]
            self._send(200, data)

    return Handler

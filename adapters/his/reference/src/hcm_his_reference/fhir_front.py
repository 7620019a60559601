"""The reference HIS's FHIR R4 front over HTTP (JSON), on loopback."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from hcm_his_reference.faults import FaultSwitch
from hcm_his_reference.store import HisFaultError, Store

__all__ = ["FhirServer", "operation_outcome"]


def operation_outcome(code: str, text: str, severity: str = "error") -> dict[str, Any]:
    """An OperationOutcome with one issue; ``code`` is our code, kept in details."""
    issue_code = {"unknown-patient": "not-found", "unknown-visit": "not-found"}.get(
        code, "processing"
    )
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": severity,
                "code": issue_code,
                "details": {
                    "coding": [{"system": "urn:hcm:reference-his", "code": code}],
                    "text": text,
                },
            }
        ],
    }


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # headers and body go out in separate writes: without TCP_NODELAY each answer waits
    # ~40 ms for the client's delayed ACK
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/fhir+json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        fault = self.server.faults.take(write=method != "GET")
        if fault.drop == "before":
            self.close_connection = True
            return
        if fault.nak:
            status, answer = (
                (422 if fault.nak == "AE" else 400),
                operation_outcome("refused", "refused by fault switch"),
            )
        else:
            try:
                status, answer = self.server.route(method, self.path, self.headers, body)
            except HisFaultError as exc:
                status, answer = exc.status, operation_outcome(exc.code, exc.text)
            except (ValueError, KeyError, TypeError) as exc:
                status, answer = (
                    400,
                    operation_outcome("invalid-resource", f"{type(exc).__name__}: {exc}"),
                )
        if fault.delay:
            time.sleep(fault.delay)
        if fault.drop == "after":
            self.close_connection = True
            return
        if fault.garbage:
            data = b"\x00\xffnot json"
            self.send_response(200)
            self.send_header("Content-Type", "application/fhir+json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        self._send(status, answer)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], store: Store, faults: FaultSwitch) -> None:
        super().__init__(address, _Handler)
        self.store = store
        self.faults = faults
        from hcm_his_reference.fhir_resources import FhirRoutes

        self.route = FhirRoutes(store).route


class FhirServer:
    """The FHIR R4 HTTP server in a background thread."""

    def __init__(
        self, store: Store, faults: FaultSwitch, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self._server = _Server((host, port), store, faults)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="his-fhir",
            daemon=True,
        )

    @property
    def base_url(self) -> str:
        """The FHIR base URL."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/fhir"

    def start(self) -> None:
        """Start serving."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

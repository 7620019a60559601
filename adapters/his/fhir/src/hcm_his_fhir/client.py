"""A FHIR R4 REST client: validated resources out, validated resources in, typed errors.

Every resource sent is validated with fhir.resources first (an invalid one is never
sent); every resource received is validated too, so garbage from the HIS becomes a
:class:`~hcmiddleware.errors.HisProtocolError` instead of a ``KeyError`` deep in a flow.

Retry policy: a request whose answer never came (connection refused or dropped,
timeout) or came back as 502/503/504 is sent again, identical, at most ``attempts``
times in all with a doubling pause. That is safe because every write the adapter makes
is idempotent on the server: creates are conditional on an identifier
(``If-None-Exist``), operations carry the journal's transaction ID, and updates are
PUTs of the whole resource.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx

from hcmiddleware.errors import HisError, HisProtocolError, HisRejectedError, HisUnavailableError

__all__ = ["FhirClient", "RetryPolicy", "validate"]

log = logging.getLogger("hcm_his_fhir")

RETRY_STATUSES = frozenset({502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to resend one request."""

    attempts: int = 3
    timeout: float = 2.0
    backoff: float = 0.2

    def worst_case(self) -> float:
        """Seconds one call can take at most: every try timing out, every pause taken."""
        pauses = sum(self.backoff * 2**n for n in range(self.attempts - 1))
        return float(self.attempts * self.timeout + pauses)


def validate(resource: dict[str, Any], *, inbound: bool) -> None:
    """Validate a resource with fhir.resources' R4 definitions (the R4B package).

    :param inbound: whether the HIS sent it (then a failure is the HIS's protocol
        error) or the adapter is about to send it (then it is the adapter's fault).
    """
    from fhir.resources.R4B import get_fhir_model_class

    kind = resource.get("resourceType")
    try:
        get_fhir_model_class(str(kind)).model_validate(resource)
    except Exception as exc:  # pydantic's ValidationError and unknown types alike
        if inbound:
            raise HisProtocolError(
                f"the HIS sent a {kind} that is not valid FHIR R4: {type(exc).__name__}"
            ) from exc
        raise HisError(
            f"the adapter built a {kind} that fails FHIR R4 validation",
            hint="nothing was sent; report this to the adapter's maintainers",
        ) from exc


class _RetryableError(Exception):
    def __init__(self, kind: type[HisError], text: str) -> None:
        super().__init__(text)
        self.kind = kind
        self.text = text


class FhirClient:
    """Talks to one FHIR server (base URL) with one pooled HTTP client."""

    def __init__(self, base_url: str, policy: RetryPolicy, token: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.policy = policy
        headers = {"Accept": "application/fhir+json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(timeout=policy.timeout, headers=headers)
        #: requests made since start (resends included)
        self.sent = 0

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        resource: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """One request; ``(status, resource)`` of a 2xx answer.

        :raises HisRejectedError: 4xx/5xx with an OperationOutcome (or without).
        :raises HisUnavailableError: no answer after every try.
        :raises HisProtocolError: the answer was not a valid FHIR resource.
        """
        body = None
        if resource is not None:
            validate(resource, inbound=False)
            body = json.dumps(resource, ensure_ascii=False).encode("utf-8")
        send_headers = {"Content-Type": "application/fhir+json; charset=utf-8", **(headers or {})}
        url = f"{self.base_url}/{path}"
        failure: _RetryableError | None = None
        for attempt in range(1, self.policy.attempts + 1):
            if attempt > 1:
                time.sleep(self.policy.backoff * 2 ** (attempt - 2))
                log.info("resending %s %s (try %d)", method, path, attempt)
            try:
                return self._once(method, url, body, params, send_headers)
            except _RetryableError as exc:
                failure = exc
        assert failure is not None
        raise failure.kind(
            f"FHIR server {self.base_url}: {failure.text} "
            f"(after {self.policy.attempts} tries, {method} {path})"
        )

    def _once(
        self,
        method: str,
        url: str,
        body: bytes | None,
        params: dict[str, str] | None,
        headers: dict[str, str],
    ) -> tuple[int, dict[str, Any]]:
        self.sent += 1
        try:
            answer = self._http.request(method, url, content=body, params=params, headers=headers)
        except httpx.TimeoutException:
            raise _RetryableError(
                HisUnavailableError, f"no answer within {self.policy.timeout:g} s"
            ) from None
        except httpx.ConnectError as exc:
            raise _RetryableError(HisUnavailableError, f"cannot connect ({exc})") from None
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            raise _RetryableError(
                HisUnavailableError, f"connection dropped without an answer ({exc})"
            ) from None
        if answer.status_code in RETRY_STATUSES:
            raise _RetryableError(HisUnavailableError, f"HTTP {answer.status_code}")
        try:
            data = json.loads(answer.content.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise _RetryableError(
                HisProtocolError, f"answer (HTTP {answer.status_code}) is not FHIR JSON"
            ) from None
        if not isinstance(data, dict) or "resourceType" not in data:
            raise _RetryableError(HisProtocolError, "answer is not a FHIR resource")
        if answer.status_code >= 400:
            raise self._rejected(answer.status_code, data)
        validate(data, inbound=True)
        return answer.status_code, data

    @staticmethod
    def _rejected(status: int, data: dict[str, Any]) -> HisRejectedError:
        code, text = f"http-{status}", "no OperationOutcome given"
        if data.get("resourceType") == "OperationOutcome":
            validate(data, inbound=True)
            issue = (data.get("issue") or [{}])[0]
            details = issue.get("details") or {}
            coding = (details.get("coding") or [{}])[0]
            code = coding.get("code") or issue.get("code") or code
            text = details.get("text") or issue.get("diagnostics") or text
        return HisRejectedError(
            f"the FHIR server refused the request (HTTP {status} {code}): {text}",
            code=str(code),
            status=str(status),
        )

"""What every request passes before it reaches a service, as one ASGI middleware.

In order: the browser's origin (``[agent] allowed_origins``; CORS preflights are
answered here), the workstation token (→ the caller; missing and wrong tokens are
counted per address and limited), the workstation's rate, the body's size
(``Content-Length`` first, then the bytes as they arrive). A refusal is a typed
problem+json answer and an audit entry; nothing reaches a service.

After the answer, one access-log line (workstation, method, route *template*, status,
milliseconds — never the path's values, the query or a body: no personal data) and,
for a call that nothing else audited (the services audit what they do, a role's refusal
too) or that failed with a 5xx, one audit entry (``agent.call``: the caller, the
operation, the status).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hcmiddleware.access.context import tally
from hcmiddleware.agent.auditing import CallLog
from hcmiddleware.agent.callers import Caller, TokenBook
from hcmiddleware.agent.problems import MEDIA_TYPE, problem_of, status_of
from hcmiddleware.agent.workers import service_time
from hcmiddleware.errors import (
    AgentAuthError,
    AgentError,
    AgentOriginError,
    AgentRateLimitError,
    AgentRequestError,
    HcmError,
)

if TYPE_CHECKING:
    from hcmiddleware.config import AgentSection
    from hcmiddleware.runtime import Middleware

__all__ = ["PUBLIC_PATHS", "Guard", "RateLimiter"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

access_log = logging.getLogger("hcmiddleware.agent.access")
log = logging.getLogger("hcmiddleware.agent")

#: Paths that need no token: the console page (it holds no data; its calls carry the
#: token), the OpenAPI document and the liveness probe.
PUBLIC_PATHS = frozenset({"/", "/console", "/console/console.js", "/openapi.json", "/v1/health"})


#: Buckets kept before full ones are dropped (addresses come and go on a network).
_MAX_BUCKETS = 4096


class RateLimiter:
    """A token bucket per workstation: ``rate`` a second, ``burst`` at once."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, who: str) -> None:
        """Spend one request of ``who``'s; :raises AgentRateLimitError: none left."""
        wait = self._spend(who, spend=True)
        if wait:
            raise AgentRateLimitError(
                f"more than {self.rate:g} requests a second from this workstation",
                retry_after=round(wait, 3),
            )

    def wait(self, who: str) -> float:
        """Seconds until ``who`` has a request to spend again (0: it has one now)."""
        return self._spend(who, spend=False)

    def spend(self, who: str) -> bool:
        """Spend one of ``who``'s if there is one; ``False`` when the bucket is empty."""
        return not self._spend(who, spend=True)

    def _spend(self, who: str, *, spend: bool) -> float:
        now = time.monotonic()
        with self._lock:
            level, then = self._buckets.get(who, (self.burst, now))
            level = min(self.burst, level + (now - then) * self.rate)
            if level < 1.0:
                self._buckets[who] = (level, now)
                return (1.0 - level) / self.rate
            self._buckets[who] = (level - 1.0 if spend else level, now)
            if len(self._buckets) > _MAX_BUCKETS:
                self._forget_full(now)
            return 0.0

    def _forget_full(self, now: float) -> None:
        """Drop buckets that have filled up again: they hold nothing a new one would not."""
        for key, (level, then) in list(self._buckets.items()):
            if level + (now - then) * self.rate >= self.burst:
                del self._buckets[key]


@dataclass
class _Call:
    workstation: str = "-"
    caller: Caller | None = None
    status: int = 0
    error: str = ""


class Guard:
    """The ASGI middleware described in the module docstring."""

    def __init__(
        self,
        app: App,
        *,
        mw: Middleware,
        settings: AgentSection,
        tokens: TokenBook,
        calls: CallLog,
    ) -> None:
        self.app = app
        self.mw = mw
        self.settings = settings
        self.tokens = tokens
        self.calls = calls
        self.origins = frozenset(settings.allowed_origins)
        self.rates = RateLimiter(settings.rate_limit, settings.rate_burst)
        self.auth_failures = RateLimiter(
            settings.auth_failures_per_minute / 60.0, settings.auth_failure_burst
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        call = _Call()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        origin = headers.get("origin")
        with tally() as audited, service_time() as spent:
            await self._guarded(scope, receive, send, call, headers, origin, audited, spent)

    async def _guarded(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        call: _Call,
        headers: dict[str, str],
        origin: str | None,
        audited: list[int],
        spent: list[float],
    ) -> None:
        started = time.perf_counter()

        async def answer(message: Message) -> None:
            if message["type"] == "http.response.start":
                call.status = int(message["status"])
                extra = [(b"server-timing", b"svc;dur=%.3f" % (spent[0] * 1000))]
                if origin is not None and origin in self.origins:
                    extra += _cors(origin)
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        try:
            self._check_origin(origin, headers, scope)
            if scope["method"] == "OPTIONS" and origin is not None:
                await _preflight(answer)
                return
            path = scope["path"]
            client = scope.get("client")
            address = f"ip:{client[0] if client else '-'}"
            if path not in PUBLIC_PATHS:
                call.workstation, call.caller = self._authenticate(headers, address)
                scope.setdefault("state", {})["caller"] = call.caller
                scope["state"]["workstation"] = call.workstation
            self.rates.take(call.workstation if call.caller else address)
            receive = self._limited(headers, receive)
            await self.app(scope, receive, answer)
        except AgentError as exc:
            call.error = type(exc).__name__
            await send_problem(answer, exc)
        finally:
            ms = (time.perf_counter() - started) * 1000
            route = scope.get("route")
            template = getattr(route, "path", None) or (
                scope["path"] if scope["path"] in PUBLIC_PATHS else "(unrouted)"
            )
            access_log.info(
                "%s %s %s %d %.1fms", call.workstation, scope["method"], template, call.status, ms
            )
            # a call the services audited (a lookup, a card read, a refusal of the role)
            # is not audited twice; one they did not, or one that failed after, is
            if (scope["path"] not in PUBLIC_PATHS or call.error) and (
                not audited[0] or call.status >= 500
            ):
                self._audit(scope, call, template)

    def _authenticate(self, headers: dict[str, str], address: str) -> tuple[str, Caller]:
        """The token's workstation and caller; wrong tokens are counted per address.

        An address that sent more than ``auth_failure_burst`` requests with a missing or
        wrong token (refilled at ``auth_failures_per_minute``) is refused with 429 before
        its token is looked at — a right one too, or the answer would tell a guess that
        hit from one that missed — until its budget has refilled by one.
        """
        wait = self.auth_failures.wait(address)
        if wait:
            raise AgentRateLimitError(
                "too many requests with a missing or wrong token from this address",
                retry_after=round(wait, 3),
                hint="check the workstation's token (hcm agent token NAME makes a new one); "
                "the address may try again after Retry-After seconds",
            )
        try:
            return self.tokens.resolve(headers.get("authorization"))
        except AgentAuthError:
            self.auth_failures.spend(address)
            if self.auth_failures.wait(address):  # this one emptied the budget
                log.warning(
                    "agent: %s sent more than %d requests with a missing or wrong token; "
                    "its requests are refused (429) until its budget refills",
                    address,
                    self.settings.auth_failure_burst,
                )
            raise

    def _check_origin(self, origin: str | None, headers: dict[str, str], scope: Scope) -> None:
        if origin is None or origin in self.origins:
            return
        host = headers.get("host", "")
        if origin in (f"http://{host}", f"https://{host}"):  # the agent's own console
            return
        raise AgentOriginError(
            "the page calling the agent is not from an allowed origin", origin=origin
        )

    def _limited(self, headers: dict[str, str], receive: Receive) -> Receive:
        limit = self.settings.max_body_bytes
        length = headers.get("content-length")
        if length is not None:
            try:
                announced = int(length)
            except ValueError:
                raise AgentRequestError("Content-Length is not a number", status=400) from None
            if announced > limit:
                raise _too_large(limit)
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _too_large(limit)
            return message

        return limited

    def _audit(self, scope: Scope, call: _Call, template: str) -> None:
        caller = call.caller
        outcome = "ok" if call.status < 400 else ("refused" if call.status < 500 else "failed")
        if call.status in (501, 502, 503, 504):
            outcome = "failed"
        details = {
            "operation": f"{scope['method']} {template}"[:100],
            "status": str(call.status),
        }
        if call.error:
            details["error"] = call.error
        self.calls.put(
            {
                "actor": call.workstation if caller else "agent",
                "outcome": outcome,
                "user": caller.user if caller else None,
                "role": caller.role if caller else None,
                "terminal": caller.terminal if caller else None,
                "details": details,
            }
        )


def _too_large(limit: int) -> AgentRequestError:
    return AgentRequestError(
        f"the request body is larger than {limit} bytes",
        status=413,
        hint="send less (a photo as JPEG under the limit); [agent] max_body_bytes sets it",
    )


def _cors(origin: str) -> list[tuple[bytes, bytes]]:
    return [
        (b"access-control-allow-origin", origin.encode("latin-1")),
        (b"vary", b"Origin"),
        (b"access-control-expose-headers", b"Retry-After, Server-Timing"),
    ]


async def _preflight(send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 204,
            "headers": [
                (b"access-control-allow-methods", b"GET, POST, DELETE, OPTIONS"),
                (b"access-control-allow-headers", b"Authorization, Content-Type"),
                (b"access-control-max-age", b"600"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b""})


async def send_problem(send: Send, exc: HcmError) -> None:
    """Answer with ``exc`` as problem+json (the Retry-After of a rate limit too)."""
    body = json.dumps(problem_of(exc), ensure_ascii=False).encode("utf-8")
    headers = [(b"content-type", MEDIA_TYPE.encode()), (b"content-length", str(len(body)).encode())]
    if isinstance(exc, AgentRateLimitError):
        headers.append((b"retry-after", str(max(1, math.ceil(exc.retry_after))).encode()))
    await send({"type": "http.response.start", "status": status_of(exc), "headers": headers})
    await send({"type": "http.response.body", "body": body})

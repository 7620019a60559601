"""Who is calling: a workstation token becomes a caller, and the caller a session.

Every request resolves its token to a :class:`Caller` (user, role, terminal) and calls
the typed services through :func:`session_for` — ``mw.acting_as(caller)`` when the
Middleware offers it (the roles part: it checks the role's operations, withholds fields
outside the role's data categories and audits with the caller). Until then this module
checks the role's operations itself from :data:`OPERATIONS`, and is the one place to
change when the roles part arrives.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from hcmiddleware.errors import AgentAuthError, AgentRoleError

if TYPE_CHECKING:
    from hcmiddleware.config import AgentToken
    from hcmiddleware.runtime import Middleware

__all__ = ["OPERATIONS", "Caller", "Session", "TokenBook", "allowed", "check", "session_for"]


class Caller(BaseModel):
    """Who acts: the user's opaque ID, the role they act in, and the terminal."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    user: str = Field(description="the user's opaque ID")
    role: str = Field(description="the role acted in")
    terminal: str = Field(description="the workstation's terminal ID")


#: What each role may call, as ``service.method`` patterns. The roles part replaces this
#: with ``[access.roles]``; the names are the same.
OPERATIONS: Mapping[str, tuple[str, ...]] = {
    "kiosk": (
        "terminal.read", "residents.lookup", "residents.enrol_from_card", "faces.verify_card",
        "his.find_or_register", "his.register_visit", "his.queue_position", "his.charges",
        "journal.pay", "journal.top_up", "ehc.verify", "ward.summary",
    ),
    "registration": (
        "terminal.*", "residents.*", "faces.*", "his.find*", "his.register*",
        "his.queue_position", "his.charges", "ehc.*", "cards.*", "journal.top_up",
        "journal.get",
    ),
    "cashier": (
        "terminal.read", "residents.lookup", "residents.get", "his.find*", "his.charges",
        "his.charges_paid", "journal.*", "cards.check",
    ),
    "doctor": (
        "terminal.read", "residents.lookup", "residents.get", "residents.search",
        "his.find*", "his.orders", "his.reports", "his.charges", "ehc.verify",
    ),
    "nurse": (
        "terminal.read", "residents.lookup", "residents.get", "his.find*", "his.orders",
        "ward.*",
    ),
    "pharmacist": ("terminal.read", "residents.lookup", "residents.get", "his.orders"),
    "administrator": ("*",),
    "auditor": ("audit.*", "journal.entries", "journal.get", "journal.reconcile", "console.*"),
}  # fmt: skip


def allowed(role: str, operation: str) -> bool:
    """Whether ``role`` may call ``operation`` (``service.method``)."""
    return any(fnmatch.fnmatchcase(operation, p) for p in OPERATIONS.get(role, ()))


def check(caller: Caller, operation: str) -> None:
    """Refuse ``operation`` (one that is no service method: ``console.status``) unless
    the caller's role may do it.

    :raises AgentRoleError: naming the role and the operation.
    """
    if not allowed(caller.role, operation):
        raise AgentRoleError(
            f"role {caller.role!r} may not call {operation}",
            role=caller.role,
            operation=operation,
        )


class Session(Protocol):
    """The typed services, as one caller sees them (what ``mw.acting_as`` returns)."""

    @property
    def caller(self) -> Caller: ...

    def __getattr__(self, name: str) -> Any: ...


class _Checked:
    """One service whose methods check the caller's role before they run."""

    def __init__(self, name: str, service: object, caller: Caller) -> None:
        self._name = name
        self._service = service
        self._caller = caller

    def __getattr__(self, method: str) -> Any:
        check(self._caller, f"{self._name}.{method}")
        return getattr(self._service, method)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:  # mw.audit(...)
        return self.__getattr__("__call__")(*args, **kwargs)


_SERVICES = ("terminal", "residents", "faces", "his", "cards", "ehc", "journal", "ward", "audit")


@dataclass(frozen=True)
class _InterimSession:
    """The services of ``mw`` with the caller's role checked on every method."""

    mw: Middleware
    caller: Caller

    def __getattr__(self, name: str) -> Any:
        if name not in _SERVICES:
            raise AttributeError(name)
        return _Checked(name, getattr(self.mw, name), self.caller)


def session_for(mw: Middleware, caller: Caller) -> Session:
    """The services as ``caller`` may use them: ``mw.acting_as(caller)`` when the
    Middleware has it, else the role's operations checked here."""
    acting_as = getattr(mw, "acting_as", None)
    if acting_as is not None:
        session: Session = acting_as(caller)
        return session
    return _InterimSession(mw, caller)


class TokenBook:
    """The configured workstation tokens, looked up without timing leaks.

    Tokens are kept as SHA-256 digests; a presented token is hashed and compared with
    :func:`hmac.compare_digest` against every digest, so the time taken does not depend
    on how much of a token was right.
    """

    def __init__(self, tokens: Mapping[str, AgentToken]) -> None:
        self._entries = [
            (_digest(t.token.get_secret_value()), name, Caller(user=t.user, role=t.role,
             terminal=t.terminal))
            for name, t in tokens.items()
        ]  # fmt: skip

    def __len__(self) -> int:
        return len(self._entries)

    def resolve(self, authorization: str | None) -> tuple[str, Caller]:
        """``(workstation, caller)`` for an ``Authorization`` header value.

        :raises AgentAuthError: no bearer token, or one no workstation holds.
        """
        if not authorization:
            raise AgentAuthError("no token: the request has no Authorization header")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AgentAuthError("the Authorization header is not 'Bearer <token>'")
        presented = _digest(token.strip())
        found: tuple[str, Caller] | None = None
        for digest, name, caller in self._entries:
            if hmac.compare_digest(digest, presented):
                found = (name, caller)
        if found is None:
            raise AgentAuthError("the token is not one of this agent's workstation tokens")
        return found


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()

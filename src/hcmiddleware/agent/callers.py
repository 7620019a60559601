"""Who is calling: a workstation token becomes a :class:`~hcmiddleware.Caller`, and the
caller a session (``mw.acting_as(caller)``).

The session checks each call against the caller's role (``[access.roles]``), withholds
the fields of categories the role may not see, and audits with user, role and terminal
(``docs/access.md``). The agent adds nothing to that policy: what a role may do over
HTTP is what it may do in Python. The few things the agent shows that are no service
method (the operator console) are granted by a service operation
(:data:`AGENT_OPERATIONS`).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import TYPE_CHECKING

from hcmiddleware.access import Caller, Session
from hcmiddleware.config import token_digest
from hcmiddleware.errors import AccessDeniedError, AgentAuthError, NoAdapterError

if TYPE_CHECKING:
    from hcmiddleware.config import AgentToken
    from hcmiddleware.runtime import Middleware

__all__ = [
    "AGENT_OPERATIONS",
    "Caller",
    "Session",
    "TokenBook",
    "check",
    "need",
    "provided",
    "session_for",
]

#: The agent's own operations, and the service operation a role needs for each.
AGENT_OPERATIONS: Mapping[str, str] = {
    "console.status": "journal.entries",  # hospital IT and auditors (the defaults)
    "journal.reconcile": "journal.entries",
    "events.ward": "ward.alarms",  # ward alarms on the event stream
}


def session_for(mw: Middleware, caller: Caller) -> Session:
    """The services as ``caller`` may use them (``mw.acting_as``)."""
    return mw.acting_as(caller)


def check(session: Session, operation: str) -> None:
    """Refuse one of the agent's own operations (:data:`AGENT_OPERATIONS`) unless the
    caller's role grants the service operation behind it.

    :raises AccessDeniedError: naming the role and the operation.
    """
    needed = AGENT_OPERATIONS.get(operation, operation)
    if not session.may(needed):
        raise AccessDeniedError(
            f"{session.caller.role} may not perform {operation} (it needs {needed})",
            role=session.caller.role,
            operation=operation,
        )


def need(session: Session, step: str, *operations: str) -> None:
    """Refuse a call that goes on to several operations unless the caller's role grants
    each of them — before the first runs (``session.require``).

    Each operation would be refused on its own by the session, but only when its turn
    came: a deposit's payment would be taken and then its record in the HIS refused.
    The agent's own operations (:data:`AGENT_OPERATIONS`) stand for the service
    operation behind them. The refusal is audited with ``step``.

    :raises AccessDeniedError: naming the role and the first operation it lacks.
    """
    session.require(step, [AGENT_OPERATIONS.get(op, op) for op in operations])


def provided(mw: Middleware, capability: str, *hooks: str) -> None:
    """Refuse, before anything is written or sent, a call whose capability no enabled
    plugin provides (a payment with no bank adapter answers 501, not a failed entry).

    :raises NoAdapterError: naming the capability and the first hook nobody implements.
    """
    for hook in hooks:
        if not mw.dispatcher.implementers(hook):
            raise NoAdapterError(capability, hook)


class TokenBook:
    """The configured workstation tokens, looked up without timing leaks.

    Tokens are kept as SHA-256 digests; a presented token is hashed and compared with
    :func:`hmac.compare_digest` against every digest, so the time taken does not depend
    on how much of a token was right.
    """

    def __init__(self, tokens: Mapping[str, AgentToken]) -> None:
        self._entries = [
            (
                t.digest,
                name,
                Caller(user=t.user, role=t.role, terminal=t.terminal),
            )
            for name, t in tokens.items()
        ]

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
        presented = token_digest(token.strip())
        found: tuple[str, Caller] | None = None
        for digest, name, caller in self._entries:
            if hmac.compare_digest(digest, presented):
                found = (name, caller)
        if found is None:
            raise AgentAuthError("the token is not one of this agent's workstation tokens")
        return found

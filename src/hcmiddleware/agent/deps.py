"""The request's caller and session, as FastAPI dependencies.

Both are coroutines: a plain function would be run in the thread pool, one more hop
per dependency and request. Neither waits for anything once a workstation's first
session is made (see :meth:`~hcmiddleware.agent.app.AgentState.session`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from hcmiddleware.agent.callers import Caller, Session
from hcmiddleware.errors import AgentAuthError

__all__ = ["As", "Who", "caller", "session"]


async def caller(request: Request) -> Caller:
    """The caller the guard resolved from the request's token."""
    found = request.scope.get("state", {}).get("caller")
    if not isinstance(found, Caller):  # the guard lets no call through without one
        raise AgentAuthError("no token: the request has no caller")
    return found


async def session(request: Request) -> Session:
    """The services as the caller may use them (``mw.acting_as``).

    It finds the caller itself rather than through :func:`caller` as a dependency of
    its own: each level of dependencies is work FastAPI does again on every request.
    """
    made: Session = await request.app.state.agent.session(await caller(request))
    return made


#: a route's session parameter
As = Annotated[Session, Depends(session)]
#: a route's caller parameter
Who = Annotated[Caller, Depends(caller)]

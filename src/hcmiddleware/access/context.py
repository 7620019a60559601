"""The caller a call is made for, carried through the call (and into plugin threads).

A session sets it around each call it makes on a service; the audit log fills an
entry's user, role and terminal from it, and the unbound services check it when
``[access] require_caller`` is on. Plugin calls and the core's own threads run as the
trusted system.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from hcmiddleware.access.caller import Caller

__all__ = [
    "Acting",
    "acting",
    "counted",
    "current",
    "in_step",
    "in_system",
    "step",
    "system",
    "tally",
    "within",
]


@dataclass(eq=False)
class Acting:
    """A caller at work: who, and the grant the call relies on, if any (break glass, or
    a reason given for the resident: ``grant_kind``)."""

    caller: Caller
    grant: str | None = None
    grant_kind: str = "break_glass"
    #: audit entries written for the caller in the block so far, and the subjects they
    #: name: a session writes an entry of its own for a call only when the service wrote
    #: none (about the resident the call is about)
    entries: int = field(default=0, compare=False)
    subjects: set[str] = field(default_factory=set, compare=False)

    @property
    def marker(self) -> str:
        """The detail that marks the audit entries made under the grant."""
        return "break_glass" if self.grant_kind == "break_glass" else "reason_grant"


_ACTING: ContextVar[Acting | None] = ContextVar("hcm_acting", default=None)
_TALLY: ContextVar[list[int] | None] = ContextVar("hcm_audit_tally", default=None)
_SYSTEM: ContextVar[bool] = ContextVar("hcm_system", default=False)
_STEP: ContextVar[bool] = ContextVar("hcm_step", default=False)


def current() -> Acting | None:
    """The caller the running call is made for, or None (the embedding process)."""
    return _ACTING.get()


def in_system() -> bool:
    """True inside a plugin's hook implementation or the core's own background work
    (trusted in-process callers)."""
    return _SYSTEM.get()


@contextmanager
def acting(
    caller: Caller, grant: str | None = None, grant_kind: str = "break_glass"
) -> Iterator[Acting]:
    """Make the calls inside the block on ``caller``'s behalf."""
    with within(Acting(caller, grant, grant_kind)) as made:
        yield made


@contextmanager
def within(made: Acting) -> Iterator[Acting]:
    """Go on with ``made``'s call inside the block (a streamed answer read later)."""
    token = _ACTING.set(made)
    try:
        yield made
    finally:
        _ACTING.reset(token)


@contextmanager
def system() -> Iterator[None]:
    """Mark the calls inside the block as trusted in-process work (a plugin's hook
    implementation, the core's own threads): allowed while ``require_caller``."""
    token = _SYSTEM.set(True)
    try:
        yield
    finally:
        _SYSTEM.reset(token)


def in_step() -> bool:
    """True inside a journey's step that writes the audit entry of its service calls."""
    return _STEP.get()


@contextmanager
def step() -> Iterator[None]:
    """Mark the calls inside the block as part of a journey's step whose own entry
    (``flow.outpatient.register``) records them, in success and failure: a session
    then writes no entry of its own for them (a service's own entries are written)."""
    token = _STEP.set(True)
    try:
        yield
    finally:
        _STEP.reset(token)


@contextmanager
def tally() -> Iterator[list[int]]:
    """Count the audit entries prepared inside the block: ``[n]``, also in the threads
    the block's context is copied to (the agent's workers). The agent writes its own
    entry for a request only when nothing else was audited for it."""
    cell = [0]
    token = _TALLY.set(cell)
    try:
        yield cell
    finally:
        _TALLY.reset(token)


def counted() -> None:
    """One audit entry more for the block's :func:`tally`, if it keeps one."""
    cell = _TALLY.get()
    if cell is not None:
        cell[0] += 1

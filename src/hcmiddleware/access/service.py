"""``middleware.access``: the roles, the sessions, break glass, reasons and identifications.

Kept in the installation's database (``access_grants``, ``access_identifications``), so
an emergency grant, a reason given for a resident and a resident's identification at a
terminal survive a restart, and all end on their own: a grant at ``expires_at``, an
identification after ``[access] identification_minutes`` or when the visit ends.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict

from hcmiddleware import storage
from hcmiddleware.access import context
from hcmiddleware.access.caller import Caller
from hcmiddleware.access.policy import (
    ROLES,
    Category,
    RoleGrant,
    expand_operations,
)
from hcmiddleware.access.scoping import Scope
from hcmiddleware.access.tables import GrantRow, IdentificationRow
from hcmiddleware.errors import (
    AccessDeniedError,
    BreakGlassError,
    HcmError,
    UnknownRoleError,
    UnknownTerminalError,
)
from hcmiddleware.models import CheckResult

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from hcmiddleware.access.session import Session
    from hcmiddleware.runtime import Middleware

__all__ = ["SYSTEM_ROLE", "Access", "Grant", "Identification"]

log = logging.getLogger("hcmiddleware.access")

#: the role audit entries of unbound calls (the embedding process, plugins) name
SYSTEM_ROLE = "system"

_GRANTS: sa.Table = GrantRow.__table__  # type: ignore[assignment]
_IDS: sa.Table = IdentificationRow.__table__  # type: ignore[assignment]

#: Asked on every call of a session: made once (building a statement per call costs
#: more than running it).
_IDENTIFIED = (
    sa.select(_IDS.c.id)
    .where(
        _IDS.c.resident_id == sa.bindparam("resident_id"),
        _IDS.c.terminal == sa.bindparam("terminal"),
        _IDS.c.at >= sa.bindparam("since"),
        _IDS.c.at <= sa.bindparam("now"),
        _IDS.c.ended_at.is_(None),
    )
    .limit(1)
)
_ACTIVE = sa.select(_GRANTS).where(
    _GRANTS.c.kind == sa.bindparam("kind"),
    _GRANTS.c.user_id == sa.bindparam("user_id"),
    _GRANTS.c.role == sa.bindparam("role"),
    _GRANTS.c.terminal == sa.bindparam("terminal"),
    _GRANTS.c.expires_at > sa.bindparam("now"),
    _GRANTS.c.opened_at <= sa.bindparam("now"),
)
#: grants for anyone; and those for anyone or for one resident
_ACTIVE_ANYONE = _ACTIVE.where(_GRANTS.c.resident_id.is_(None)).order_by(_GRANTS.c.opened_at)
_ACTIVE_FOR = _ACTIVE.where(
    sa.or_(_GRANTS.c.resident_id.is_(None), _GRANTS.c.resident_id == sa.bindparam("resident_id"))
).order_by(_GRANTS.c.opened_at)

#: what a break-glass reason must not hold: an ID number or a mobile number
_PERSONAL = re.compile(r"\d{17}[\dXx]|(?<!\d)1[3-9]\d{9}(?!\d)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

Method = Literal["card", "ecard", "face"]
GrantKind = Literal["break_glass", "reason"]


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Grant(BaseModel):
    """An emergency access grant ("break glass"), or a reason given for one resident
    (``kind`` ``reason``); every entry made under it is marked."""

    model_config = ConfigDict(frozen=True)

    grant_id: str
    kind: GrantKind = "break_glass"
    user: str
    role: str
    terminal: str
    categories: frozenset[Category]
    resident_id: str | None
    reason: str
    opened_at: datetime
    expires_at: datetime
    reviewed_at: datetime | None = None
    reviewed_by: str | None = None

    def active(self, at: datetime | None = None) -> bool:
        """True until it expires."""
        moment = at or datetime.now(UTC)
        return moment < self.expires_at


class Identification(BaseModel):
    """A resident identified at a terminal."""

    model_config = ConfigDict(frozen=True)

    resident_id: str
    terminal: str
    method: str
    user: str
    at: datetime
    ended_at: datetime | None = None


def _grant(row: sa.Row[tuple[object, ...]]) -> Grant:
    return _grant_from(dict(row._mapping))


def _grant_from(m: Mapping[str, Any]) -> Grant:
    return Grant(
        grant_id=m["grant_id"],
        kind=m.get("kind") or "break_glass",
        user=m["user_id"],
        role=m["role"],
        terminal=m["terminal"],
        categories=frozenset(Category(c) for c in str(m["categories"]).split(",") if c),
        resident_id=m["resident_id"],
        reason=m["reason"],
        opened_at=m["opened_at"].replace(tzinfo=UTC),
        expires_at=m["expires_at"].replace(tzinfo=UTC),
        reviewed_at=m["reviewed_at"].replace(tzinfo=UTC) if m["reviewed_at"] else None,
        reviewed_by=m["reviewed_by"],
    )


class Access:
    """Roles and sessions of one Middleware (``middleware.access``, R-SEC-2).

    ``mw.acting_as(caller)`` (:meth:`session`) checks the caller and hands out a
    :class:`~hcmiddleware.access.session.Session`; see ``docs/access.md``.
    """

    def __init__(self, middleware: Middleware) -> None:
        self._mw = middleware
        self.settings = middleware.config.access
        self._roles: dict[str, RoleGrant] = {}
        self._lock = threading.Lock()
        #: the categories of the answers' fields (``[access.fields]``, ``[access.kinds]``)
        self.scope = Scope(
            {str(model): named for model, named in self.settings.fields.items()},
            {str(model): named for model, named in self.settings.kinds.items()},
        )

    # -- roles ---------------------------------------------------------------------------

    def role(self, name: str) -> RoleGrant:
        """What role ``name`` may do and see.

        :raises UnknownRoleError: no such role.
        """
        grant = self._roles.get(name)
        if grant is not None:
            return grant
        section = self.settings.role(name)
        if section is None:
            raise UnknownRoleError(
                f"role {name[:32]!r} is not configured", role=name, reason="unknown_role"
            )
        made = RoleGrant(
            role=name,
            operations=expand_operations(section.operations),
            categories=frozenset(Category(c) for c in section.categories),
            step_by_step=frozenset(Category(c) for c in section.step_by_step),
            break_glass=frozenset(Category(c) for c in section.break_glass),
            own_only=section.own_only,
            by_reason=section.by_reason,
        )
        with self._lock:
            self._roles[name] = made
        return made

    def roles(self) -> dict[str, RoleGrant]:
        """Every role, as configured (or by default)."""
        return {name: self.role(name) for name in ROLES}

    # -- callers ----------------------------------------------------------------------------

    def session(self, caller: Caller) -> Session:
        """The Middleware's services as ``caller`` may use them (``mw.acting_as``).

        :raises UnknownRoleError: the caller's role is not configured (audited).
        :raises UnknownTerminalError: ``[access] terminals`` is set and does not list
            the caller's terminal (audited).
        """
        from hcmiddleware.access.session import Session

        if not isinstance(caller, Caller):
            raise AccessDeniedError(
                f"acting_as takes a Caller, not a {type(caller).__name__}",
                reason="caller",
                hint="pass hcmiddleware.Caller(user=…, role=…, terminal=…)",
            )
        try:
            grant = self.role(caller.role)
        except UnknownRoleError:
            self.audit_refusal(caller, {"operation": "acting_as", "reason": "unknown_role"})
            raise
        allowed = self.settings.terminals
        if allowed and caller.terminal not in allowed:
            self.audit_refusal(caller, {"operation": "acting_as", "reason": "terminal"})
            raise UnknownTerminalError(
                "the caller's terminal is not one of [access] terminals",
                role=caller.role,
                reason="terminal",
            )
        return Session(self._mw, caller, grant)

    def audit_refusal(
        self, caller: Caller, details: Mapping[str, str], *, subject: str | None = None
    ) -> None:
        """Write the refusal to the audit log (never lets a failing log hide it)."""
        try:
            self._mw._raw("audit").record(
                "access.refused",
                actor=caller.user,
                subject=subject,
                outcome="refused",
                details=details,
                user=caller.user,
                role=caller.role,
                terminal=caller.terminal,
            )
        except HcmError as exc:
            log.error("a refusal could not be audited: %s", exc.message)

    def unbound(self, service: str) -> None:
        """Called for every unbound service access: refused while ``require_caller``."""
        if not self.settings.require_caller:
            return
        if context.current() is not None or context.in_system():
            return
        raise AccessDeniedError(
            f"mw.{service} was used without a caller, and [access] require_caller is on",
            operation=service,
            reason="require_caller",
            hint=f"call it through mw.acting_as(Caller(user=…, role=…, terminal=…)).{service}",
        )

    # -- storage ---------------------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        """The installation's database (migrated on first use)."""
        audit = self._mw._raw("audit")
        audit.open()  # migrates the database
        return self._mw.engine

    # -- identifications ------------------------------------------------------------------

    def identify(
        self, resident_id: str, terminal: str, method: Method, *, caller: Caller
    ) -> Identification:
        """Record that ``resident_id`` was identified at ``terminal`` now (by ``method``).

        Committed without waiting for the disk: a power cut that loses it only closes
        the resident's step-by-step data again until the next identification."""
        now = _now()
        with storage.begin_write(self.engine, durable=False) as conn:
            conn.execute(
                _IDS.insert(),
                {
                    "resident_id": resident_id,
                    "terminal": terminal,
                    "method": method,
                    "user_id": caller.user,
                    "at": now,
                },
            )
        return Identification(
            resident_id=resident_id,
            terminal=terminal,
            method=method,
            user=caller.user,
            at=now.replace(tzinfo=UTC),
        )

    def is_identified(self, resident_id: str, terminal: str, *, at: datetime | None = None) -> bool:
        """True when the resident was identified at ``terminal`` within
        ``[access] identification_minutes`` and the visit has not ended since."""
        now = _naive(at) if at is not None else _now()
        since = now - timedelta(minutes=self.settings.identification_minutes)
        with self.engine.connect() as conn:
            found = conn.execute(
                _IDENTIFIED,
                {"resident_id": resident_id, "terminal": terminal, "since": since, "now": now},
            ).first()
        return found is not None

    def end_visit(self, resident_id: str, terminal: str, *, caller: Caller | None = None) -> int:
        """End the resident's visit at ``terminal``: its identifications stop opening data."""
        with self.engine.begin() as conn:
            done = conn.execute(
                _IDS.update()
                .where(
                    _IDS.c.resident_id == resident_id,
                    _IDS.c.terminal == terminal,
                    _IDS.c.ended_at.is_(None),
                )
                .values(ended_at=_now())
            ).rowcount
        who = caller.user if caller is not None else self.settings.system_user
        self._mw._raw("audit").record(
            "access.visit_ended", actor=who, subject=resident_id, details={"count": str(done)}
        )
        return int(done or 0)

    # -- break glass ------------------------------------------------------------------------

    def break_glass(
        self,
        caller: Caller,
        role: RoleGrant,
        reason: str,
        *,
        minutes: float | None = None,
        categories: Iterable[Category | str] | None = None,
        resident_id: str | None = None,
    ) -> Grant:
        """Open more categories for ``caller`` in an emergency (``session.break_glass``)."""
        limit = self.settings.break_glass_max_minutes
        opened: frozenset[Category] = frozenset()
        problem = (
            f"{caller.role} may not break the glass"
            if not role.break_glass
            else _reason_problem(reason, minutes, limit, "emergency access")
        )
        if problem is None:
            try:
                opened = (
                    role.break_glass
                    if categories is None
                    else frozenset(Category(c) for c in categories)
                )
            except ValueError:
                problem = "an unknown category was named"
            else:
                if not opened or not opened <= role.break_glass:
                    problem = (
                        f"{caller.role} may open only "
                        f"{', '.join(sorted(role.break_glass))} this way"
                    )
        if problem is not None:
            self.audit_refusal(
                caller, {"operation": "break_glass", "reason": "break_glass"}, subject=resident_id
            )
            raise BreakGlassError(
                problem, role=caller.role, operation="break_glass", reason="break_glass"
            )
        return self._open(
            "break_glass", caller, opened, reason, minutes or limit, resident_id=resident_id
        )

    def open_with_reason(
        self,
        caller: Caller,
        role: RoleGrant,
        resident_id: str,
        reason: str,
        *,
        minutes: float | None = None,
    ) -> Grant:
        """Open the role's step-by-step categories of one resident not identified at the
        caller's terminal, for a short time, with a reason (``session.open_with_reason``).

        The level below break glass: only what the role sees after an identification,
        only this resident, only this user at this terminal, for at most ``[access]
        reason_minutes``; audited as ``access.reason``, and every entry made under it
        carries the detail ``reason_grant``.

        :raises BreakGlassError: the role may not, no resident, no reason, too long.
        """
        limit = self.settings.reason_minutes
        opened = role.step_by_step & role.categories
        problem: str | None = None
        if not role.by_reason or not opened or role.own_only:
            problem = f"{caller.role} may not open a resident's data by giving a reason"
        elif not isinstance(resident_id, str) or not resident_id.strip():
            problem = "a reason opens one resident's data: name the resident"
        else:
            problem = _reason_problem(reason, minutes, limit, "a reason")
        if problem is not None:
            self.audit_refusal(
                caller,
                {"operation": "open_with_reason", "reason": "by_reason"},
                subject=resident_id if isinstance(resident_id, str) else None,
            )
            raise BreakGlassError(
                problem,
                role=caller.role,
                operation="open_with_reason",
                reason="by_reason",
                hint=f"give a reason of 3 to 200 characters and at most {limit:g} minutes; "
                "or identify the resident here (card, e-card or face)",
            )
        return self._open(
            "reason", caller, opened, reason, minutes or limit, resident_id=resident_id
        )

    def _open(
        self,
        kind: GrantKind,
        caller: Caller,
        opened: frozenset[Category],
        reason: str,
        minutes: float,
        *,
        resident_id: str | None,
    ) -> Grant:
        audit = self._mw._raw("audit")
        audit.open()  # migrated before the clock starts
        now = _now()
        expires = now + timedelta(minutes=minutes)
        grant_id = secrets.token_hex(8)
        row = {
            "grant_id": grant_id,
            "kind": kind,
            "user_id": caller.user,
            "role": caller.role,
            "terminal": caller.terminal,
            "categories": ",".join(sorted(opened)),
            "resident_id": resident_id,
            "reason": reason.strip(),
            "opened_at": now,
            "expires_at": expires,
        }
        marker = "break_glass" if kind == "break_glass" else "reason_grant"
        with audit.transaction() as conn:
            conn.execute(_GRANTS.insert(), row)
            audit.record(
                f"access.{kind}",
                actor=caller.user,
                subject=resident_id,
                details={
                    marker: grant_id,
                    "categories": row["categories"],
                    "minutes": f"{(expires - now).total_seconds() / 60:g}",
                    "reason": row["reason"],
                },
                user=caller.user,
                role=caller.role,
                terminal=caller.terminal,
                connection=conn,
            )
        return _grant_from({**row, "reviewed_at": None, "reviewed_by": None})

    def active_grants(
        self,
        caller: Caller,
        resident_id: str | None = None,
        *,
        at: datetime | None = None,
        kind: GrantKind = "break_glass",
    ) -> list[Grant]:
        """The caller's grants of ``kind`` not yet expired (for ``resident_id``, or for
        anyone)."""
        now = _naive(at) if at is not None else _now()
        params = {
            "kind": kind,
            "user_id": caller.user,
            "role": caller.role,
            "terminal": caller.terminal,
            "now": now,
        }
        with self.engine.connect() as conn:
            if resident_id is None:
                rows = conn.execute(_ACTIVE_ANYONE, params).all()
            else:
                rows = conn.execute(_ACTIVE_FOR, {**params, "resident_id": resident_id}).all()
        return [_grant(r) for r in rows]

    def grants(
        self,
        *,
        unreviewed: bool = False,
        limit: int | None = None,
        kind: GrantKind = "break_glass",
    ) -> list[Grant]:
        """Every break-glass grant (or, with ``kind="reason"``, every reason given),
        newest first (``unreviewed``: those still to review)."""
        query = (
            sa.select(_GRANTS).where(_GRANTS.c.kind == kind).order_by(_GRANTS.c.opened_at.desc())
        )
        if unreviewed:
            query = query.where(_GRANTS.c.reviewed_at.is_(None))
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [_grant(r) for r in conn.execute(query).all()]

    def review(self, grant_id: str, *, reviewer: str) -> Grant:
        """Mark a grant reviewed (audited as ``access.reviewed``).

        :raises AccessDeniedError: no such grant (reason ``break_glass``).
        """
        audit = self._mw._raw("audit")
        with audit.transaction() as conn:
            done = conn.execute(
                _GRANTS.update()
                .where(_GRANTS.c.grant_id == grant_id)
                .values(reviewed_at=_now(), reviewed_by=reviewer)
            ).rowcount
            if not done:
                raise AccessDeniedError(
                    "no break-glass grant with that ID",
                    reason="break_glass",
                    hint="list them with 'hcm access review'",
                )
            audit.record(
                "access.reviewed", actor=reviewer, details={"break_glass": grant_id},
                connection=conn,
            )  # fmt: skip
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(_GRANTS).where(_GRANTS.c.grant_id == grant_id)).one()
        return _grant(row)

    # -- hcm doctor -----------------------------------------------------------------------

    def check(self) -> list[CheckResult]:
        """``hcm doctor``'s lines: a role that grants nothing, or everything."""
        results: list[CheckResult] = []
        for name, grant in self.roles().items():
            if grant.grants_nothing:
                results.append(
                    CheckResult(
                        name=f"access role {name}",
                        ok=False,
                        detail=f"warning: role {name} grants no operation; its callers are "
                        "refused everything",
                        hint=f"give [access.roles.{name}] operations, or remove the section "
                        "for the safe defaults",
                    )
                )
            elif grant.grants_everything:
                results.append(
                    CheckResult(
                        name=f"access role {name}",
                        ok=False,
                        detail=f"warning: role {name} grants every operation and category, "
                        "clinical data without identification",
                        hint="grant the role what its desk needs (docs/access.md)",
                    )
                )
        if not results:
            results.append(
                CheckResult(
                    name="access roles",
                    ok=True,
                    detail=f"{len(ROLES)} roles; require_caller "
                    f"{'on' if self.settings.require_caller else 'off'}",
                )
            )
        return results


def _reason_problem(reason: object, minutes: float | None, limit: float, what: str) -> str | None:
    """What is wrong with a reason and a length asked for, or None."""
    if not isinstance(reason, str) or len(reason.strip()) < 3:
        return f"{what} needs a reason (at least 3 characters)"
    if len(reason) > 200 or _CONTROL.search(reason):
        return "the reason is longer than 200 characters or holds control characters"
    if _PERSONAL.search(reason):
        return "the reason holds what looks like an ID number or a phone number"
    if minutes is not None and not (0 < minutes <= limit):
        return f"{what} lasts more than 0 and at most {limit:g} minutes"
    return None


def _naive(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(tzinfo=None) if at.tzinfo else at

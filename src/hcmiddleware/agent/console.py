"""The operator console: one page for hospital IT, in Chinese and English.

``/console`` is a static page (no data in it) whose script asks ``/v1/console/status``
with the workstation token typed in once (kept in the tab's session storage): readers
and SAM, the enabled plugins and ``hcm doctor``'s checks, today's journal movements with
their states, today's reconciliation, the audit chain's status and the ward's open
alarms; card and alarm events arrive live from ``/v1/events``. A panel whose part is
not configured, or that the caller's role may not see, says so instead of failing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from importlib.resources import files
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from hcmiddleware.agent.callers import Caller, Session, check
from hcmiddleware.agent.deps import As, Who
from hcmiddleware.agent.problems import problem_of
from hcmiddleware.errors import HcmError

if TYPE_CHECKING:
    from hcmiddleware.agent.app import AgentState

__all__ = ["ConsoleStatus", "Panel", "add_console"]


class Panel(BaseModel):
    """One panel of the console: its data, or the problem that kept it empty."""

    ok: bool
    data: Any = None
    problem: dict[str, Any] | None = None


class ConsoleStatus(BaseModel):
    """Everything the console shows, at one moment."""

    site: str
    version: str
    at: dt.datetime
    caller: Caller
    panels: dict[str, Panel] = Field(description="readers, plugins, doctor, journal, "
                                     "reconciliation, audit, alarms")  # fmt: skip


def _panel(work: Callable[[], Any]) -> Panel:
    try:
        return Panel(ok=True, data=work())
    except HcmError as exc:
        return Panel(ok=False, problem=problem_of(exc))


def _readers(state: AgentState) -> dict[str, Any]:
    config = state.mw.config.readers
    present: list[str] | None
    try:
        from smartcard.System import readers

        present = [str(r) for r in readers()]
    except Exception:  # no pcsc extra, or no PC/SC service: shown as unknown
        present = None
    sam = "keys" if state.mw.config.sam.keys else ("card" if config.sam else "none")
    watched = state.card_events
    return {
        # the card events the browser hears: on, off (why, e.g. no PC/SC service), or
        # not watched by this agent at all (None)
        "card_events": None
        if watched is None
        else {"on": watched.on, "off_reason": watched.off_reason},
        "present": present,
        "user": config.user,
        "user_present": None if present is None or not config.user else config.user in present,
        "sam": config.sam,
        "sam_present": None if present is None or not config.sam else config.sam in present,
        "sam_kind": sam,
    }


def status(state: AgentState, s: Session, who: Caller) -> ConsoleStatus:
    """The console's data; each panel on its own."""
    from hcmiddleware import __version__
    from hcmiddleware.journal import reconcile

    check(s, "console.status")
    mw = state.mw
    today = dt.datetime.now(dt.UTC).date()

    def journal() -> list[dict[str, Any]]:
        entries = s.journal.entries(day=today)
        return [e.as_dict() for e in entries[-50:]][::-1]

    def reconciliation() -> dict[str, Any]:
        check(s, "journal.reconcile")
        report: dict[str, Any] = reconcile(mw.journal, today).as_dict()
        return report

    def audit() -> dict[str, Any]:
        report: dict[str, Any] = s.audit.verify(actor=who.user).as_dict()
        return report

    def alarms() -> list[dict[str, Any]]:
        return [a.model_dump(mode="json") for a in s.ward.alarms(open_only=True, limit=50)]

    panels = {
        "readers": _panel(lambda: _readers(state)),
        "plugins": _panel(
            lambda: [
                {
                    "name": p.name,
                    "origin": p.origin,
                    "enabled": p.enabled,
                    "version": p.version,
                    "hooks": len(p.hooks),
                }
                for p in mw.plugins()
                if p.enabled
            ]
        ),
        "doctor": _panel(
            lambda: [{"plugin": plugin, **r.model_dump()} for plugin, r in mw.doctor()]
        ),
        "journal": _panel(journal),
        "reconciliation": _panel(reconciliation),
        "audit": _panel(audit),
        "alarms": _panel(alarms),
    }
    return ConsoleStatus(
        site=mw.config.middleware.site_name,
        version=__version__,
        at=dt.datetime.now(dt.UTC),
        caller=who,
        panels=panels,
    )


def add_console(app: FastAPI, state: AgentState) -> None:
    """Add the console page, its script and its status call to ``app``.

    The page and the script are answered from memory, on the event loop (coroutines);
    the status call runs in the agent's workers like every service call.
    """
    page = files("hcmiddleware.agent").joinpath("console.html").read_text(encoding="utf-8")
    script = files("hcmiddleware.agent").joinpath("console.js").read_text(encoding="utf-8")

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/console")

    @app.get("/console", include_in_schema=False)
    async def console_page() -> HTMLResponse:
        return HTMLResponse(
            page,
            headers={
                "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'",
                "Cache-Control": "no-store",
            },
        )

    @app.get("/console/console.js", include_in_schema=False)
    async def console_script() -> Response:
        return Response(script, media_type="text/javascript; charset=utf-8")

    @app.get("/v1/console/status", tags=["console"])
    def console_status(s: As, who: Who) -> ConsoleStatus:
        """What the operator console shows: readers, plugins, doctor, journal,
        reconciliation, audit chain, ward alarms."""
        return status(state, s, who)

"""``hcm journal``: list and show money movements, recover, reconcile a day."""

from __future__ import annotations

import json
from datetime import date, timedelta

import click

from hcmiddleware.cli.context import CliState
from hcmiddleware.journal import reconcile
from hcmiddleware.models import PaymentStatus
from hcmiddleware.runtime import Middleware

__all__ = ["journal_group"]

STATES = [s.value for s in PaymentStatus]


def _middleware(ctx: click.Context) -> Middleware:
    state = ctx.find_object(CliState) or CliState()
    return Middleware(state.load())


@click.group("journal")
def journal_group() -> None:
    """The money journal: movements, recovery and daily reconciliation."""


@journal_group.command("list")
@click.option("--state", type=click.Choice(STATES), help="only entries in this state")
@click.option("--limit", type=click.IntRange(1), default=None, help="at most this many")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def journal_list(ctx: click.Context, state: str | None, limit: int | None, as_json: bool) -> None:
    """List journal entries, oldest first."""
    with _middleware(ctx) as mw:
        entries = mw.journal.entries(state=state, limit=limit)
    if as_json:
        click.echo(json.dumps([e.as_dict() for e in entries], indent=2))
        return
    if not entries:
        click.echo("no entries")
        return
    for e in entries:
        click.echo(
            f"{e.transaction_id}  {e.created_at:%Y-%m-%d %H:%M:%S}  {e.channel:<7} "
            f"{e.kind:<7} {e.amount:>10.2f} {e.currency}  {e.state.value}"
        )


@journal_group.command("show")
@click.argument("transaction_id")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def journal_show(ctx: click.Context, transaction_id: str, as_json: bool) -> None:
    """Show one entry and every state it went through."""
    with _middleware(ctx) as mw:
        journal = mw.journal
        entry = journal.get(transaction_id)
        history = journal.history(transaction_id)
    if as_json:
        data = entry.as_dict()
        data["history"] = [
            {"at": at.isoformat() + "Z", "state": s, "note": note} for at, s, note in history
        ]
        click.echo(json.dumps(data, indent=2))
        return
    for key, value in entry.as_dict().items():
        if value is not None:
            click.echo(f"{key:<24} {value}")
    click.echo("history:")
    for at, s, note in history:
        click.echo(f"  {at:%Y-%m-%d %H:%M:%S.%f}  {s:<9} {note or ''}".rstrip())


@journal_group.command("recover")
@click.option(
    "--min-age",
    type=click.FloatRange(0),
    default=120.0,
    show_default=True,
    help="seconds since an entry last changed; younger ones may still be in a live call",
)
@click.pass_context
def journal_recover(ctx: click.Context, min_age: float) -> None:
    """Settle every entry left in flight (query the bank, reverse what it lacks)."""
    with _middleware(ctx) as mw:
        report = mw.journal.recover(min_age=timedelta(seconds=min_age))
    click.echo(f"examined {report.examined}: {report.outcomes or 'nothing in flight'}")
    if report.still_unknown:
        click.echo(f"still unknown: {', '.join(report.still_unknown)}")
        ctx.exit(1)


@journal_group.command("reconcile")
@click.option(
    "--date",
    "day",
    required=True,
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="the business day (UTC), YYYY-MM-DD",
)
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def journal_reconcile(ctx: click.Context, day: object, as_json: bool) -> None:
    """Reconcile a day against the bank's and the insurer's statements (exit 1 on differences)."""
    the_day: date = day.date()  # type: ignore[attr-defined]
    with _middleware(ctx) as mw:
        report = reconcile(mw.journal, the_day)
    click.echo(json.dumps(report.as_dict(), indent=2) if as_json else report.render())
    if not report.ok:
        ctx.exit(1)

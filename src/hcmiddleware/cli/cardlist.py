"""``hcm cards``: the card's lifecycle — sync the lists of refused cards, one card's state."""

from __future__ import annotations

import json
import sys

import click

from hcmiddleware.cli.context import open_middleware

__all__ = ["card_list"]


@click.group("cards")
def card_list() -> None:
    """Lists of refused cards (loss-reported, cancelled, replaced, frozen, not activated)."""


@card_list.command("sync")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def sync_command(ctx: click.Context, as_json: bool) -> None:
    """Fetch and apply every source's signed updates; exit 1 if one was refused.

    A refused update leaves that source's list as it was.
    """
    report = open_middleware(ctx).cards.sync()
    if as_json:
        click.echo(
            json.dumps(
                {
                    "lists": [s.model_dump(mode="json") for s in report.applied],
                    "refused": [e.details() for e in report.refused],
                },
                ensure_ascii=False,
            )
        )
    else:
        for status in report.applied:
            click.echo(f"{status.source}: v{status.version}, {status.entries} cards")
        for error in report.refused:
            click.echo(f"refused: {error}", err=True)
    sys.exit(0 if report.ok else 1)


@card_list.command("lists")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def lists_command(ctx: click.Context, as_json: bool) -> None:
    """The lists held: version, size, when synced; exit 1 if one is stale."""
    lists = open_middleware(ctx).cards.status()
    if as_json:
        click.echo(json.dumps([s.model_dump(mode="json") for s in lists]))
    else:
        if not lists:
            click.echo("no lists held: run 'hcm cards sync'")
        for s in lists:
            flag = "STALE" if s.stale else "ok"
            click.echo(
                f"{flag:5} {s.source}: v{s.version}, {s.entries} cards, "
                f"issued {s.issued_at:%Y-%m-%d %H:%M}, synced {s.synced_at:%Y-%m-%d %H:%M} UTC"
            )
    sys.exit(1 if any(s.stale for s in lists) else 0)


@card_list.command("status")
@click.argument("card_number")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def status_command(ctx: click.Context, card_number: str, as_json: bool) -> None:
    """CARD_NUMBER's state and what it means here; exit 1 unless it is active.

    Listed cards are refused (loss-reported, cancelled, replaced) or read without
    moving money (frozen; issued — handed out, not activated yet).
    """
    from hcmiddleware.cards import MEANING, mask
    from hcmiddleware.models import CardState

    cards = open_middleware(ctx).cards
    found = cards.entry(card_number)
    state = CardState.ACTIVE if found is None else CardState(found.reason)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "card": mask(card_number),
                    "state": state.value,
                    "meaning": MEANING[state],
                    "source": None if found is None else found.source,
                    "listed_at": None if found is None else found.listed_at.isoformat(),
                }
            )
        )
    elif found is None:
        click.echo(f"{mask(card_number)}: active (on no list)")
    else:
        click.echo(
            f"{mask(card_number)}: {found.reason}, listed by {found.source} on "
            f"{found.listed_at:%Y-%m-%d} — {MEANING[state]}"
        )
    sys.exit(0 if found is None else 1)

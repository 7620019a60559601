"""``hcm access``: the roles as configured, and emergency access to review."""

from __future__ import annotations

import json

import click

from hcmiddleware.cli.audit import _middleware

__all__ = ["access_group"]


@click.group("access")
def access_group() -> None:
    """Roles and emergency access (break glass): list, review."""


@access_group.command("roles")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def access_roles(ctx: click.Context, as_json: bool) -> None:
    """Each role's operations and categories, as configured (or by default)."""
    mw = _middleware(ctx)
    roles = mw.access.roles()
    if as_json:
        data = {
            name: {
                "operations": sorted(g.operations),
                "categories": sorted(g.categories),
                "step_by_step": sorted(g.step_by_step),
                "break_glass": sorted(g.break_glass),
                "own_only": g.own_only,
                "by_reason": g.by_reason,
            }
            for name, g in roles.items()
        }
        click.echo(json.dumps(data, indent=2))
        return
    for name, g in roles.items():
        step = f"; step by step: {', '.join(sorted(g.step_by_step))}" if g.step_by_step else ""
        glass = f"; break glass: {', '.join(sorted(g.break_glass))}" if g.break_glass else ""
        own = "; own data only" if g.own_only else ""
        reason = "; or with a reason" if g.by_reason else ""
        click.echo(
            f"{name:<14} {len(g.operations):>3} operations; sees "
            f"{', '.join(sorted(g.categories)) or 'no personal data'}{step}{reason}{glass}{own}"
        )


@access_group.command("review")
@click.option("--all", "show_all", is_flag=True, help="reviewed grants too")
@click.option("--done", "grant_id", help="mark this grant reviewed")
@click.option("--reviewer", help="who reviewed it (with --done)")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def access_review(
    ctx: click.Context,
    show_all: bool,
    grant_id: str | None,
    reviewer: str | None,
    as_json: bool,
) -> None:
    """Emergency access grants still to review, with the entries made under each.

    ``--done GRANT --reviewer USER`` marks one reviewed.
    """
    mw = _middleware(ctx)
    if grant_id is not None:
        if not reviewer:
            raise click.UsageError("--done needs --reviewer")
        grant = mw.access.review(grant_id, reviewer=reviewer)
        click.echo(f"grant {grant.grant_id} reviewed by {grant.reviewed_by}")
        return
    grants = mw.access.grants(unreviewed=not show_all)
    marked = mw.audit.entries(review=True)
    used: dict[str, int] = {}
    for entry in marked:
        used[entry.details["break_glass"]] = used.get(entry.details["break_glass"], 0) + 1
    if as_json:
        rows = [{**g.model_dump(mode="json"), "entries": used.get(g.grant_id, 0)} for g in grants]
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not grants:
        click.echo("no emergency access to review")
        return
    for g in grants:
        status = f"reviewed by {g.reviewed_by}" if g.reviewed_by else "to review"
        click.echo(
            f"{g.grant_id}  {g.opened_at:%Y-%m-%d %H:%M} → {g.expires_at:%H:%M}  "
            f"{g.user} ({g.role}) at {g.terminal}  {','.join(sorted(g.categories))}  "
            f"resident {g.resident_id or 'any'}  {used.get(g.grant_id, 0)} entries  "
            f"{status}  reason: {g.reason}"
        )

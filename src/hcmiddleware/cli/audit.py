"""``hcm audit``: verify the tamper-evident log, list and export its entries, checkpoint."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import click

from hcmiddleware.cli.context import CliState
from hcmiddleware.runtime import Middleware

__all__ = ["audit_group"]

ACTOR = "cli"


def _middleware(ctx: click.Context) -> Middleware:
    state = ctx.find_object(CliState) or CliState()
    mw = Middleware(state.load())
    ctx.call_on_close(mw.close)
    return mw


def _when(value: datetime | None) -> datetime | None:
    """A time given on the command line is UTC (as the log keeps it)."""
    return None if value is None else value.replace(tzinfo=UTC)


_TIME = click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"])


def _filters(
    resident: str | None,
    action: str | None,
    since: datetime | None,
    start: int | None,
    end: int | None,
    limit: int | None,
) -> dict[str, Any]:
    return {
        "resident": resident,
        "action": action,
        "since": _when(since),
        "start": start,
        "end": end,
        "limit": limit,
    }


@click.group("audit")
def audit_group() -> None:
    """The tamper-evident audit log: verify, list, export, checkpoint."""


@audit_group.command("verify")
@click.option("--from", "start", type=click.IntRange(1), help="first entry number to check")
@click.option("--to", "end", type=click.IntRange(1), help="last entry number to check")
@click.option(
    "--checkpoints",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="a checkpoint file kept elsewhere (default: [audit] checkpoint_file if set)",
)
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def audit_verify(
    ctx: click.Context, start: int | None, end: int | None, checkpoints: Path | None, as_json: bool
) -> None:
    """Check every entry and checkpoint; name the first bad entry. Exit 1 if any."""
    mw = _middleware(ctx)
    report = mw.audit.verify(start=start, end=end, checkpoints=checkpoints, actor=ACTOR)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2, ensure_ascii=False))
    else:
        click.echo(report.render())
    ctx.exit(0 if report.ok else 1)


@audit_group.command("list")
@click.option("--resident", help="entries about this resident (their opaque ID)")
@click.option("--action", help="an action, or a prefix ending in * (flow.outpatient.*)")
@click.option("--since", type=_TIME, help="at or after this time (UTC), YYYY-MM-DD[THH:MM:SS]")
@click.option("--limit", type=click.IntRange(1), default=None, help="the most recent N")
@click.option(
    "--review", is_flag=True, help="only entries made under emergency access (break glass)"
)
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def audit_list(
    ctx: click.Context,
    resident: str | None,
    action: str | None,
    since: datetime | None,
    limit: int | None,
    review: bool,
    as_json: bool,
) -> None:
    """List entries, oldest first (with --limit: the most recent N)."""
    mw = _middleware(ctx)
    entries = mw.audit.entries(
        **_filters(resident, action, since, None, None, limit), review=review
    )
    if as_json:
        click.echo(json.dumps([e.model_dump(mode="json") for e in entries], indent=2))
        return
    if not entries:
        click.echo("no entries")
        return
    for e in entries:
        details = " ".join(f"{k}={v}" for k, v in sorted(e.details.items()))
        who = e.actor + (f" ({e.user}, {e.role})" if e.user or e.role else "")
        click.echo(
            f"{e.seq:>8}  {e.at:%Y-%m-%d %H:%M:%S}  {e.terminal or '-':<12} {who:<16} "
            f"{e.action:<28} {e.outcome:<7} {e.subject or '-'}  {details}".rstrip()
        )


@audit_group.command("export")
@click.option(
    "--format", "fmt", type=click.Choice(["fhir", "atna"]), required=True, help="output format"
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="write to this file (default: standard output)",
)
@click.option(
    "--syslog",
    "syslog_to",
    metavar="HOST:PORT",
    help="atna: send each message to this syslog server (RFC 5424 over TCP, octet counting)",
)
@click.option("--resident", help="entries about this resident (their opaque ID)")
@click.option("--action", help="an action, or a prefix ending in *")
@click.option("--since", type=_TIME, help="at or after this time (UTC)")
@click.option("--from", "start", type=click.IntRange(1), help="first entry number")
@click.option("--to", "end", type=click.IntRange(1), help="last entry number")
@click.pass_context
def audit_export(
    ctx: click.Context,
    fmt: str,
    out: Path | None,
    syslog_to: str | None,
    resident: str | None,
    action: str | None,
    since: datetime | None,
    start: int | None,
    end: int | None,
) -> None:
    """Export entries as FHIR R4 AuditEvent (NDJSON) or IHE ATNA messages (one per line)."""
    if syslog_to is not None and fmt != "atna":
        raise click.UsageError("--syslog sends ATNA messages: use it with --format atna")
    mw = _middleware(ctx)
    lines = mw.audit.export(
        fmt,  # type: ignore[arg-type]
        actor=ACTOR,
        **_filters(resident, action, since, start, end, None),
    )
    if syslog_to is not None:
        from hcmiddleware.audit.export import SyslogSender, syslog_message

        host, _, port = syslog_to.rpartition(":")
        if not host or not port.isdigit():
            raise click.BadParameter("give HOST:PORT", param_hint="--syslog")
        with SyslogSender(host, int(port)) as sender:
            for xml in lines:
                sender.send(syslog_message(xml, hostname=mw.audit.terminal))
        click.echo(f"sent {sender.sent} messages to {host}:{port}", err=True)
        return
    stream: TextIO
    if out is None:
        stream = sys.stdout
        count = _write(stream, lines)
    else:
        with out.open("w", encoding="utf-8") as stream:
            count = _write(stream, lines)
    click.echo(f"exported {count} entries", err=True)


def _write(stream: TextIO, lines: Any) -> int:
    count = 0
    for line in lines:
        stream.write(line + "\n")
        count += 1
    stream.flush()
    return count


@audit_group.command("checkpoint")
@click.pass_context
def audit_checkpoint(ctx: click.Context) -> None:
    """Sign the last entry now and push the checkpoint out (e.g. from cron)."""
    mw = _middleware(ctx)
    made = mw.audit.checkpoint()
    if made is None:
        click.echo("nothing new since the last checkpoint")
        return
    signed = f"signed by key {made.key_id}" if made.signature else "UNSIGNED (no signing key)"
    click.echo(f"checkpoint at entry {made.seq}: {made.algorithm} {made.hash} ({signed})")

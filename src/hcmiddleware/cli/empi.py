"""``hcm empi``: import, search, merge and inspect the resident index from a shell.

Every command goes through the installation's resident service (``Middleware.residents``),
as a HIS would: merges, unmerges and imports are announced to the enabled plugins
(``hcm_empi_*``) and audited. By default the installation's index is used: the config
file's database and ``[empi]`` keys (``hcm --config hcm.toml empi stats``). Another
index database can be named with its keys, from options or the environment:
``HCM_EMPI_DATABASE`` (an SQLAlchemy URL), ``HCM_EMPI_MASTER_KEYS``
(``id=base64[,id=base64…]``), ``HCM_EMPI_CURRENT_KEY`` (default: the last id listed) and
``HCM_EMPI_INDEX_KEY`` (base64). Keys are never printed.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from hcmiddleware import storage
from hcmiddleware.empi.index import ResidentIndex
from hcmiddleware.empi.protection import ProtectionSettings, Protector
from hcmiddleware.errors import ConfigError, HcmError
from hcmiddleware.residents import Residents

__all__ = ["empi"]


def _settings(master_keys: str, current: str | None, index_key: str) -> ProtectionSettings:
    keys: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in master_keys.split(","))):
        key_id, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(
                "each master key is written id=base64",
                key="HCM_EMPI_MASTER_KEYS",
                hint="for example HCM_EMPI_MASTER_KEYS=2026a=<44 base64 characters>",
            )
        keys[key_id.strip()] = value.strip()
    try:
        return ProtectionSettings(
            master_keys=keys,
            current_key=current or (list(keys)[-1] if keys else ""),
            index_key=index_key,
        )
    except ValidationError as exc:
        # Only the messages: pydantic would echo the offending input, i.e. the key.
        problems = "; ".join(str(e["msg"]) for e in exc.errors())
        raise ConfigError(
            f"the EMPI keys are not usable: {problems}",
            key="HCM_EMPI_MASTER_KEYS",
            hint="give 32-byte keys in base64 and name the current one",
        ) from None


def _open(ctx: click.Context) -> Residents:
    """The resident service every command goes through (hooks fire, actions are audited)."""
    obj: dict[str, Any] = ctx.ensure_object(dict)
    if "residents" in obj:
        residents: Residents = obj["residents"]
        return residents
    from hcmiddleware.cli.context import open_middleware

    if obj["database"] is None:
        # The installation's index: the config's database, [empi] keys and plugins.
        residents = open_middleware(ctx).residents
    else:
        # Another index: its own database and keys; it is no installation, so no
        # installation's plugins are told of its changes.
        from hcmiddleware.runtime import Middleware

        settings = _settings(obj["master_keys"], obj["current_key"], obj["index_key"])
        engine = storage.create_engine(obj["database"])
        ctx.call_on_close(engine.dispose)
        bare = Middleware()
        ctx.call_on_close(bare.close)
        residents = Residents(bare, index=ResidentIndex(engine, Protector.from_settings(settings)))
    obj["residents"] = residents
    return residents


def _fail(exc: HcmError) -> None:
    click.echo(f"error: {exc}", err=True)
    sys.exit(2 if isinstance(exc, ConfigError) else 1)


@click.group()
@click.option(
    "--database",
    envvar="HCM_EMPI_DATABASE",
    default=None,
    help="SQLAlchemy URL of another index database (then give its keys too); default: "
    "the config's database and [empi] keys.",
)
@click.option(
    "--master-keys",
    envvar="HCM_EMPI_MASTER_KEYS",
    default="",
    help="id=base64 master keys, comma separated (prefer the environment).",
)
@click.option(
    "--current-key",
    envvar="HCM_EMPI_CURRENT_KEY",
    default=None,
    help="Id of the master key new data keys are wrapped with.",
)
@click.option(
    "--index-key",
    envvar="HCM_EMPI_INDEX_KEY",
    default="",
    help="base64 key of the blind indexes (prefer the environment).",
)
@click.pass_context
def empi(
    ctx: click.Context,
    database: str | None,
    master_keys: str,
    current_key: str | None,
    index_key: str,
) -> None:
    """The resident master index: import, search, merge, statistics."""
    ctx.ensure_object(dict).update(
        database=database, master_keys=master_keys, current_key=current_key, index_key=index_key
    )


@empi.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--source", default=None, help="Name of the source system (default: file stem).")
@click.option(
    "--encoding",
    default="auto",
    show_default=True,
    help="auto (UTF-8, else GBK), utf-8, gbk or gb18030.",
)
@click.option(
    "--batch-size",
    default=10000,
    show_default=True,
    type=click.IntRange(1, 100000),
    help="Rows per transaction; progress is shown after each batch.",
)
@click.option(
    "--bulk",
    is_flag=True,
    help="The bulk initial load: rows prepared on every core, matched in memory with the "
    "same rules, written in large batches; other writers are refused until it ends. Run "
    "again to resume one that stopped.",
)
@click.option(
    "--workers",
    default=None,
    type=click.IntRange(0, 64),
    help="With --bulk: processes preparing rows (default: one per core; 0: none).",
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the bad rows to this CSV (line, record_id, field, error).",
)
@click.pass_context
def import_command(
    ctx: click.Context,
    file: Path,
    source: str | None,
    encoding: str,
    batch_size: int,
    bulk: bool,
    workers: int | None,
    report_path: Path | None,
) -> None:
    """Import residents from FILE (CSV); run again to resume, bad rows are reported.

    Every row that names a person is kept; faults are flagged and counted by kind.
    Exit code 0: every row was imported (flagged or not) or was in already; 1: rows were
    refused (listed) or the file could not be read; 2: the configuration or keys are
    unusable.
    """
    try:
        residents = _open(ctx)
        _ = residents.index  # keys and database first: an error, not a progress bar
        lines = max(file.read_bytes().count(b"\n") - 1, 1)
        with click.progressbar(length=lines, label="importing", file=sys.stderr) as bar:
            report = residents.import_csv(
                file,
                source=source,
                encoding=encoding,
                batch_size=batch_size,
                progress=bar.update,
                bulk=bulk,
                workers=workers,
            )
    except HcmError as exc:
        _fail(exc)
        return
    click.echo(
        f"{report.rows} rows ({report.encoding}): {report.created} new residents, "
        f"{report.linked} linked to existing ones, {report.skipped} already imported, "
        f"{report.reviews} sent to review, {len(report.bad_rows)} bad rows",
        err=True,
    )
    if report.flags:
        counts = ", ".join(f"{code} {n}" for code, n in sorted(report.flags.items()))
        click.echo(f"{report.flagged} records flagged, kept: {counts}", err=True)
    for bad in report.bad_rows[:20]:
        click.echo(
            f"  line {bad.line} (record {bad.record_id}): {bad.field}: {bad.message}", err=True
        )
    if len(report.bad_rows) > 20:
        click.echo(f"  … and {len(report.bad_rows) - 20} more", err=True)
    if report.notices:
        click.echo(f"{len(report.notices)} rows read with an assumption:", err=True)
        for note in report.notices[:20]:
            click.echo(f"  line {note.line} (record {note.record_id}): {note.message}", err=True)
        if len(report.notices) > 20:
            click.echo(f"  … and {len(report.notices) - 20} more", err=True)
    if report_path is not None:
        with report_path.open("w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(["line", "record_id", "field", "error"])
            for bad in report.bad_rows:
                writer.writerow([bad.line, bad.record_id, bad.field, bad.message])
    if report.bad_rows:
        sys.exit(1)


@empi.command("search")
@click.option("--name", default=None)
@click.option("--sex", type=click.IntRange(0, 9), default=None)
@click.option("--birth-date", type=click.DateTime(["%Y-%m-%d"]), default=None)
@click.option("--phone", default=None)
@click.option("--address", default=None)
@click.option("--id-number", default=None)
@click.option("--limit", default=10, show_default=True)
@click.pass_context
def search_command(
    ctx: click.Context,
    name: str | None,
    sex: int | None,
    birth_date: dt.datetime | None,
    phone: str | None,
    address: str | None,
    id_number: str | None,
    limit: int,
) -> None:
    """Scored candidates for the demographics given, with what agreed (JSON lines)."""
    try:
        found = _open(ctx).search(
            name=name,
            sex=sex,
            birth_date=birth_date.date() if birth_date else None,
            phone=phone,
            address=address,
            id_number=id_number,
            limit=limit,
        )
    except HcmError as exc:
        _fail(exc)
        return
    for cand in found:
        click.echo(
            json.dumps(
                {
                    "resident_id": cand.resident.resident_id,
                    "probability": round(cand.probability, 6),
                    "decision": cand.decision,
                    "agreements": list(cand.agreements),
                },
                ensure_ascii=False,
            )
        )


@empi.command("duplicates")
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True
)
@click.option("--links-only", is_flag=True, help="Leave out the pairs that need review.")
@click.pass_context
def duplicates_command(ctx: click.Context, fmt: str, links_only: bool) -> None:
    """Pairs of residents that look like one person, by record_id, with score and decision."""
    try:
        pairs = _open(ctx).duplicates(include_review=not links_only)
    except HcmError as exc:
        _fail(exc)
        return
    if fmt == "json":
        for pair in pairs:
            click.echo(pair.model_dump_json())
        return
    writer = csv.writer(sys.stdout)
    writer.writerow(["record_ids_a", "record_ids_b", "resident_a", "resident_b",
                     "probability", "decision", "agreements"])  # fmt: skip
    for pair in pairs:
        writer.writerow([
            " ".join(pair.record_ids_a), " ".join(pair.record_ids_b), pair.resident_a,
            pair.resident_b, f"{pair.probability:.6f}", pair.decision, "; ".join(pair.agreements),
        ])  # fmt: skip


@empi.command("export")
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True
)
@click.option("--source", default=None, help="Only the records of this source system.")
@click.pass_context
def export_command(ctx: click.Context, fmt: str, source: str | None) -> None:
    """The linkage: one row per source record with its resident, status and flags.

    CSV columns record_id,source,resident_id,status,flags (flags space-separated);
    JSON is one object per line. status: review (the resident has an open review
    item), linked (other records share the resident) or single.
    """
    try:
        rows = _open(ctx).linkage(source=source)
        if fmt == "json":
            for row in rows:
                click.echo(row.model_dump_json())
            return
        writer = csv.writer(sys.stdout)
        writer.writerow(["record_id", "source", "resident_id", "status", "flags"])
        for row in rows:
            writer.writerow(
                [row.record_id, row.source, row.resident_id, row.status, " ".join(row.flags)]
            )
    except HcmError as exc:
        _fail(exc)


@empi.command("merge")
@click.argument("survivor")
@click.argument("merged")
@click.option("--reason", required=True)
@click.option("--operator", required=True)
@click.pass_context
def merge_command(
    ctx: click.Context, survivor: str, merged: str, reason: str, operator: str
) -> None:
    """Merge resident MERGED into SURVIVOR (identifiers and records move; undoable)."""
    try:
        event = _open(ctx).merge(survivor, merged, reason=reason, operator=operator)
    except HcmError as exc:
        _fail(exc)
        return
    click.echo(event.model_dump_json())


@empi.command("unmerge")
@click.argument("merged")
@click.option("--reason", required=True)
@click.option("--operator", required=True)
@click.pass_context
def unmerge_command(ctx: click.Context, merged: str, reason: str, operator: str) -> None:
    """Undo the latest merge of resident MERGED."""
    try:
        event = _open(ctx).unmerge(merged, reason=reason, operator=operator)
    except HcmError as exc:
        _fail(exc)
        return
    click.echo(event.model_dump_json())


@empi.command("rewrap")
@click.pass_context
def rewrap_command(ctx: click.Context) -> None:
    """Re-wrap every data key under the current master key (after a master-key change).

    Safe while the index is in use. When it reports that no other master key is in use,
    the old key can be removed from the configuration.
    """
    try:
        count, in_use = _open(ctx).rewrap()
    except HcmError as exc:
        _fail(exc)
        return
    click.echo(json.dumps({"rewrapped": count, "master_keys_in_use": in_use}))


@empi.command("train")
@click.option("--max-residents", default=20000, show_default=True, type=click.IntRange(2))
@click.pass_context
def train_command(ctx: click.Context, max_residents: int) -> None:
    """Learn the matching weights from the index itself (EM, no labels) and keep them."""
    try:
        pairs = _open(ctx).train(max_residents=max_residents)
    except HcmError as exc:
        _fail(exc)
        return
    click.echo(json.dumps({"pairs": pairs}))


@empi.command("stats")
@click.pass_context
def stats_command(ctx: click.Context) -> None:
    """Counts: residents (active, merged), open reviews, model state."""
    try:
        stats = _open(ctx).stats()
    except HcmError as exc:
        _fail(exc)
        return
    click.echo(json.dumps(stats))

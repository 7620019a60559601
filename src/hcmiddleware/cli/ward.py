"""``hcm ward``: bind bands, print labels, run a bedside check, list and take alarms,
and play ward devices against the broker.

Exit codes: 0 done (a check passed); 1 refused (a verification failed, a band that
cannot be used, an alarm that does not exist, calls the middleware did not confirm);
2 the configuration, an extra not installed, or the command line is wrong.
"""

from __future__ import annotations

import importlib
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from hcmiddleware.cli.context import open_middleware
from hcmiddleware.errors import MissingExtraError
from hcmiddleware.models import Admission, BedsideScan

__all__ = ["ward"]


@click.group()
def ward() -> None:
    """Wristbands, the bedside checks, alarms (docs/ward.md)."""


@ward.command("bind")
@click.argument("band")
@click.option("--card", "card_number", required=True, help="the health card's number")
@click.option("--admission", "admission_id", required=True, help="the stay's admission ID")
@click.option("--patient", "patient_id", required=True, help="the HIS's patient ID")
@click.option("--ward", "ward_name", required=True, help="the ward (病区)")
@click.option("--bed", required=True, help="the bed")
@click.option("--admitted-at", type=click.DateTime(), default=None, help="default: now")
@click.option("--active", is_flag=True, help="an active band (call button, location)")
@click.option("--actor", default="admissions", show_default=True)
@click.pass_context
def bind_command(
    ctx: click.Context,
    band: str,
    card_number: str,
    admission_id: str,
    patient_id: str,
    ward_name: str,
    bed: str,
    admitted_at: datetime | None,
    active: bool,
    actor: str,
) -> None:
    """Bind BAND to a stay at admission (the card's holder must be in the index)."""
    mw = open_middleware(ctx)
    stay = Admission(
        admission_id=admission_id,
        patient_id=patient_id,
        ward=ward_name,
        bed=bed,
        admitted_at=admitted_at or datetime.now().replace(microsecond=0),
    )
    binding = mw.ward.bind(
        band, stay, card_number=card_number, kind="active" if active else "passive", actor=actor
    )
    click.echo(f"bound {binding.wristband_id} to stay {binding.admission_id} ({ward_name}-{bed})")


@ward.command("rebind")
@click.argument("old")
@click.argument("new")
@click.option("--reason", default="lost", show_default=True)
@click.option("--actor", default="ward", show_default=True)
@click.pass_context
def rebind_command(ctx: click.Context, old: str, new: str, reason: str, actor: str) -> None:
    """Replace band OLD (lost, broken: dead at once) by NEW for the same stay."""
    made = open_middleware(ctx).ward.rebind(old, new, reason=reason, actor=actor)
    click.echo(f"{old} is dead; {made.wristband_id} now identifies stay {made.admission_id}")


@ward.command("unbind")
@click.argument("band")
@click.option("--reason", default="discharged", show_default=True)
@click.option("--actor", default="ward", show_default=True)
@click.pass_context
def unbind_command(ctx: click.Context, band: str, reason: str, actor: str) -> None:
    """End BAND's binding (discharge)."""
    done = open_middleware(ctx).ward.unbind(band, reason=reason, actor=actor)
    click.echo(f"{band} released from stay {done.admission_id}")


@ward.command("label")
@click.argument("band")
@click.option("--format", "kind", type=click.Choice(["zpl", "png"]), default="zpl")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.pass_context
def label_command(ctx: click.Context, band: str, kind: str, output: Path | None) -> None:
    """Print BAND's label: ZPL to send to the band printer, or a PNG (needs -o)."""
    made = open_middleware(ctx).ward.label(band, kind=kind)
    if output is not None:
        output.write_bytes(made)
        click.echo(f"wrote {output}")
    elif kind == "png":
        raise click.UsageError("a PNG label needs -o FILE")
    else:
        click.echo(made.decode("utf-8"), nl=False)


@ward.command("verify")
@click.argument("band")
@click.argument("order")
@click.option("--nurse", required=True, help="the nurse's badge")
@click.option("--bed", default=None, help="the bed-head tag scanned")
@click.option("--drug", default=None, help="the drug code on the label")
@click.option("--dose", default=None, help="e.g. '0.5 g'")
@click.option("--concentration", default=None, help="e.g. '0.9%'")
@click.option("--route", default=None, help="e.g. IVGTT, 口服")
@click.option("--name", "patient_name", default=None, help="the name the patient gave")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def verify_command(
    ctx: click.Context,
    band: str,
    order: str,
    nurse: str,
    bed: str | None,
    drug: str | None,
    dose: str | None,
    concentration: str | None,
    route: str | None,
    patient_name: str | None,
    as_json: bool,
) -> None:
    """The seven verifications of BAND against ORDER, without executing anything."""
    scan = BedsideScan(
        wristband_id=band,
        nurse_id=nurse,
        order_id=order,
        bed=bed,
        drug_code=drug,
        dose=dose,
        concentration=concentration,
        route=route,
        patient_name=patient_name,
    )
    verdict = open_middleware(ctx).ward.verify(scan)
    if as_json:
        rows = [
            {"verification": r.name, "outcome": r.outcome, "reason": r.reason}
            for r in verdict.results
        ]
        click.echo(
            json.dumps(
                {"ok": verdict.ok, "order_type": verdict.order_type, "results": rows},
                ensure_ascii=False,
            )
        )
    else:
        for r in verdict.results:
            mark = {"passed": "ok  ", "failed": "FAIL", "not_applicable": "n/a "}[r.outcome]
            click.echo(f"{mark} {r.name:<14} {r.reason}".rstrip())
        click.echo("passed: the order may be carried out" if verdict.ok else "refused")
    if not verdict.ok:
        sys.exit(1)


@ward.command("alarms")
@click.option("--all", "show_all", is_flag=True, help="also the acknowledged ones")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def alarms_command(ctx: click.Context, show_all: bool, as_json: bool) -> None:
    """The alarms nobody has taken yet (newest first)."""
    alarms = open_middleware(ctx).ward.alarms(open_only=not show_all)
    if as_json:
        click.echo(json.dumps([a.model_dump(mode="json") for a in alarms], ensure_ascii=False))
        return
    if not alarms:
        click.echo("no open alarms")
    for a in alarms:
        where = f"{a.ward}-{a.bed}" if a.bound else "band not bound"
        click.echo(
            f"{a.alarm_id}  {a.kind:<9} {a.state:<12} level {a.level}  {a.wristband_id}  "
            f"{where}  {a.location or ''}  ×{a.count}  {a.raised_at:%H:%M:%S}".rstrip()
        )


@ward.command("ack")
@click.argument("alarm")
@click.option("--nurse", required=True)
@click.pass_context
def ack_command(ctx: click.Context, alarm: str, nurse: str) -> None:
    """Take ALARM (the band is told)."""
    taken = open_middleware(ctx).ward.acknowledge(alarm, nurse)
    click.echo(f"{taken.alarm_id} acknowledged by {taken.acknowledged_by}")


@ward.command("resend")
@click.pass_context
def resend_command(ctx: click.Context) -> None:
    """Upload again the executions the HIS has not recorded."""
    sent = open_middleware(ctx).ward.resend()
    left = [e for e in sent if e.his_state != "recorded"]
    click.echo(f"{len(sent) - len(left)} recorded, {len(left)} still not recorded")
    if left:
        sys.exit(1)


@ward.command("rejects")
@click.option("--limit", default=20, show_default=True)
@click.pass_context
def rejects_command(ctx: click.Context, limit: int) -> None:
    """Device messages that could not be read (kept, not acted on)."""
    for r in open_middleware(ctx).ward.rejects(limit=limit):
        click.echo(f"{r.received_at:%Y-%m-%d %H:%M:%S}  {r.source}  {r.reason}")


@ward.command("simulate")
@click.option("--bands", default=50, show_default=True, help="active bands")
@click.option("--rate", default=100.0, show_default=True, help="events a second")
@click.option("--seconds", default=5.0, show_default=True)
@click.option("--emergency-share", default=0.01, show_default=True, help="share of calls")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=1883, show_default=True)
@click.option("--prefix", default="hcm/ward", show_default=True)
@click.option("--wait", default=5.0, show_default=True, help="seconds to wait for confirmations")
@click.option("--json", "as_json", is_flag=True)
def simulate_command(
    bands: int,
    rate: float,
    seconds: float,
    emergency_share: float,
    host: str,
    port: int,
    prefix: str,
    wait: float,
    as_json: bool,
) -> None:
    """Play active bands against the MQTT broker, as the ward-mqtt plugin's devices.

    The middleware (with the ward-mqtt plugin on the same prefix) must be running to
    confirm the calls; exit 1 if any call was not confirmed.
    """
    try:  # the device side belongs to the plugin: imported by name, not a dependency
        simulator: Any = importlib.import_module("hcm_ward_mqtt").Simulator
    except ModuleNotFoundError:
        raise MissingExtraError(
            "the ward simulator is part of the ward-mqtt plugin, which is not installed",
            extra="ward",
            module="hcm_ward_mqtt",
            hint="pip install 'hcmiddleware[ward]' and the hcm-ward-mqtt plugin "
            "(plugins/ward-mqtt)",
        ) from None
    names = [f"SIM-{n:04d}" for n in range(bands)]
    try:
        with simulator(host, port, prefix=prefix) as sim:
            report = sim.play(
                names, rate=rate, seconds=seconds, emergency_share=emergency_share, wait=wait
            )
    except ConnectionError as exc:
        click.echo(f"error: {exc} — start the broker or give --host/--port", err=True)
        sys.exit(1)
    out: dict[str, Any] = {
        "bands": report.bands,
        "seconds": report.seconds,
        "rate": round(report.rate, 1),
        "locations": report.locations,
        "emergencies": report.emergencies,
        "confirmed": report.confirmed,
        "unconfirmed": len(report.unconfirmed),
    }
    if as_json:
        click.echo(json.dumps(out))
    else:
        click.echo(
            f"{report.locations} locations and {report.emergencies} calls from {bands} bands "
            f"at {report.rate:.0f}/s; {report.confirmed} calls confirmed, "
            f"{len(report.unconfirmed)} not"
        )
    if report.unconfirmed:
        sys.exit(1)

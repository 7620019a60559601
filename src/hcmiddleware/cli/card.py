"""``hcm card``: read a health card, run the card emulator behind vpcd, show APDU logs."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import click

from hcmiddleware.card.data import CardRead, Issuer
from hcmiddleware.card.transport import TracingTransport, Transport, read_trace
from hcmiddleware.errors import HcmError

__all__ = ["card"]

_INS = {
    0xA4: "SELECT",
    0xB2: "READ RECORD",
    0xB0: "READ BINARY",
    0xD6: "UPDATE BINARY",
    0xDC: "UPDATE RECORD",
    0x84: "GET CHALLENGE",
    0x82: "EXTERNAL AUTH",
    0x88: "INTERNAL AUTH",
    0xC0: "GET RESPONSE",
    0xD2: "MARK VALID",
    0x0C: "MARK INVALID",
}


def _fail(exc: HcmError) -> click.ClickException:
    """The error as click shows it: message and hint on stderr, exit code 1."""
    return click.ClickException(str(exc))


def _open(reader: str | None, sam_keys: str | None, trace: Any) -> tuple[Any, Any]:
    from hcmiddleware.card.pcsc import PcscTransport
    from hcmiddleware.card.session import CardSession

    sam = None
    if sam_keys:
        from hcmiddleware.sam.software import SoftwareSam

        sam = SoftwareSam.from_file(sam_keys)
    transport: Transport = PcscTransport(reader)
    if trace is not None:
        transport = TracingTransport(transport, trace)
    return CardSession(transport, sam), transport


@click.group("card")
def card() -> None:
    """The resident health card: read it, emulate it, trace its APDUs."""


@card.command("read")
@click.option("--reader", help="Reader name (or a unique part of it); default: first with a card.")
@click.option("--json", "as_json", is_flag=True, help="Print the data as JSON.")
@click.option(
    "--sam-keys",
    type=click.Path(exists=True, dir_okay=False),
    help="Issuer key-set JSON for a software SAM; without it only issuer data is read.",
)
@click.option("--photo", type=click.Path(dir_okay=False), help="Save the photo (JPEG) here.")
@click.option("--trace", type=click.Path(dir_okay=False), help="Append the APDU log here.")
def read(
    reader: str | None, as_json: bool, sam_keys: str | None, photo: str | None, trace: str | None
) -> None:
    """Print everything readable on the card in the reader."""
    try:
        session, transport = _open(reader, sam_keys, trace)
        try:
            data: CardRead | Issuer = (
                session.read_all() if session.sam is not None else session.read_issuer()
            )
        finally:
            transport.close()
    except HcmError as exc:
        raise _fail(exc) from None
    if photo and isinstance(data, CardRead):
        Path(photo).write_bytes(data.photo)
    if as_json:
        click.echo(data.model_dump_json(indent=2))
        return
    _print(data.model_dump(), "")


def _print(value: Any, indent: str) -> None:
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        label = f"{indent}{key}:"
        if isinstance(item, list) and all(isinstance(x, str | int) for x in item):
            click.echo(f"{label} {', '.join(str(x) for x in item)}")
        elif isinstance(item, dict | list) and item:
            click.echo(label)
            _print(item, indent + "  ")
        elif isinstance(item, bytes):
            kind = "JPEG, " if item.startswith(b"\xff\xd8") else ""
            click.echo(f"{label} <{kind}{len(item)} bytes>")
        else:
            click.echo(f"{label} {item}")


@card.command("emulate")
@click.option(
    "--profile",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Card profile JSON (sample: hcmiddleware/card/samples/resident-profile.json).",
)
@click.option(
    "--keys",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Issuer key-set JSON the card's keys are diversified from.",
)
@click.option("--port", default=35963, show_default=True, help="vpcd port of the reader.")
def emulate(profile: str, keys: str, port: int) -> None:
    """Insert a software health card into vpcd's reader until Ctrl-C."""
    from hcmiddleware.card.emulator import EmulatedCard
    from hcmiddleware.card.vpcd import VpcdCard

    try:
        emulated = EmulatedCard.from_files(profile, keys)
        link = VpcdCard(emulated, port)
        link.start()
    except HcmError as exc:
        raise _fail(exc) from None
    click.echo(f"card inserted in the vpcd reader on port {port}; Ctrl-C removes it")
    try:
        link.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        link.stop()
    click.echo(f"card removed after {link.apdus} APDUs")


@card.command("trace")
@click.argument("log", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("--reader", help="Reader to read when no LOG is given.")
@click.option("--sam-keys", type=click.Path(exists=True, dir_okay=False))
def trace(log: str | None, reader: str | None, sam_keys: str | None) -> None:
    """Show an APDU log; without LOG, read the card and show its APDUs (masked)."""
    try:
        if log is not None:
            atr, entries = read_trace(log)
        else:
            sink = io.StringIO()
            session, transport = _open(reader, sam_keys, sink)
            try:
                if session.sam is not None:
                    session.read_all()
                else:
                    session.read_issuer()
            finally:
                transport.close()
            atr, entries = read_trace(sink.getvalue().splitlines())
    except HcmError as exc:
        raise _fail(exc) from None
    click.echo(f"ATR {atr.hex().upper()}")
    total = 0
    for e in entries:
        command, response = e["c"], e["r"]
        ins = int(command[2:4], 16) if len(command) >= 4 and "*" not in command[2:4] else -1
        name = _INS.get(ins, "?")
        sw = response[-4:] if len(response) >= 4 else "----"
        total += int(e["us"])
        extra = f"  {e['error']}" if "error" in e else ""
        click.echo(
            f"{e['n']:4d} {name:<14} {command:<40.40} -> {len(response) // 2 - 2:4d} B "
            f"SW {sw} {int(e['us']) / 1000:7.2f} ms{extra}"
        )
    click.echo(f"{len(entries)} APDUs, {total / 1000:.2f} ms")

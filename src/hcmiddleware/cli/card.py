"""``hcm card``: read a health card, personalise and emulate cards behind vpcd, APDU logs."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from pydantic import BaseModel

from hcmiddleware.card.data import CardRead, Issuer, PartialModel
from hcmiddleware.card.filemap import CardPart, parse_parts
from hcmiddleware.card.transport import TracingTransport, Transport, read_trace
from hcmiddleware.errors import (
    CardAbsentError,
    CardDataError,
    CardPartError,
    HcmError,
    NoHandlerError,
    SamUnavailableError,
)

if TYPE_CHECKING:
    from hcmiddleware.sam.base import Sam

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


#: The environment variable the SAM card's PIN is read from unless --sam-pin-env names one.
DEFAULT_PIN_ENV = "HCM_SAM_PIN"


@dataclass
class _SamChoice:
    """Which SAM the command was told to use: a key set, or a SAM card in a reader."""

    keys: str | None = None
    reader: str | None = None
    pin_env: str = DEFAULT_PIN_ENV


def _sam_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--sam-keys, --sam-reader and --sam-pin-env, shared by read and trace."""
    command = click.option(
        "--sam-pin-env",
        default=DEFAULT_PIN_ENV,
        show_default=True,
        metavar="VAR",
        help="Environment variable holding the SAM card's PIN (never give a PIN as an "
        "argument: it would show in the process list and shell history).",
    )(command)
    command = click.option(
        "--sam-reader",
        metavar="NAME",
        help="Reader holding the SAM card (PC/SC SAM), e.g. 'Virtual PCD 00 01'.",
    )(command)
    return click.option(
        "--sam-keys",
        type=click.Path(exists=True, dir_okay=False),
        help="Issuer key-set JSON for a software SAM; without a SAM only issuer data is read.",
    )(command)


def _sam_choice(sam_keys: str | None, sam_reader: str | None, sam_pin_env: str) -> _SamChoice:
    if sam_keys and sam_reader:
        raise click.UsageError("give --sam-keys or --sam-reader, not both")
    if sam_reader and not os.environ.get(sam_pin_env):
        raise click.UsageError(
            f"the SAM card's PIN is not set: export {sam_pin_env} with it (or name another "
            "variable with --sam-pin-env); nothing was sent to the SAM"
        )
    return _SamChoice(sam_keys, sam_reader, sam_pin_env)


def _open_sam(choice: _SamChoice) -> tuple[Sam | None, list[Callable[[], None]]]:
    if choice.keys:
        from hcmiddleware.sam.software import SoftwareSam

        sam = SoftwareSam.from_file(choice.keys)
        return sam, [sam.close]
    if choice.reader is None:
        return None, []
    pin = os.environ.get(choice.pin_env, "")
    from hcmiddleware.card.pcsc import PcscTransport
    from hcmiddleware.sam.pcsc import PcscSam

    slot = PcscTransport(choice.reader)
    try:
        card_sam = PcscSam(slot, pin)
    except BaseException:
        slot.close()
        raise
    return card_sam, [card_sam.close, slot.close]


def _user_transport(reader: str | None, sam_reader: str | None) -> Transport:
    """The user card's reader; with no name, the first reader with a card but the SAM's."""
    from hcmiddleware.card.pcsc import PcscTransport, list_readers

    if reader is not None or sam_reader is None:
        return PcscTransport(reader)
    sam_names = [r for r in list_readers() if r == sam_reader] or [
        r for r in list_readers() if sam_reader in r
    ]
    for name in list_readers():
        if name in sam_names:
            continue
        try:
            return PcscTransport(name)
        except CardAbsentError:
            continue
    raise CardAbsentError("no card in any reader but the SAM's")


def _read_through_terminal(
    reader: str | None, choice: _SamChoice, trace: Any, parts: frozenset[CardPart] | None = None
) -> CardRead | Issuer:
    """Read the card through a terminal of the installation (audited, announced).

    The SAM is the one named on the command line, else the installation's own
    (``[sam]``); with neither, only the issuer data is read. ``parts``: what to read
    (default: everything).
    """
    from hcmiddleware.cli.context import open_middleware
    from hcmiddleware.terminal import Terminal

    mw = open_middleware(click.get_current_context())
    sam, closers = _open_sam(choice)
    terminal = mw.terminal if sam is None else Terminal(mw, sam=sam)
    try:
        if sam is None and choice.keys is None and choice.reader is None:
            try:
                sam = terminal.sam
            except NoHandlerError:
                sam = None  # no SAM anywhere: the issuer data alone
        transport: Transport = _user_transport(reader, choice.reader)
        if trace is not None:
            transport = TracingTransport(transport, trace)
        try:
            if sam is None:
                if parts is not None and set(parts) - {CardPart.ISSUER}:
                    raise SamUnavailableError(
                        "reading the parts asked for needs the terminal's SAM, and none is "
                        "configured; without one only the issuer data can be read",
                        hint="give --sam-keys or --sam-reader, or set [sam] in the config",
                    )
                return terminal.read_issuer(transport, actor="cli")
            return terminal.read(transport, actor="cli", parts=parts)
        finally:
            with contextlib.suppress(HcmError, OSError):
                transport.close()
    finally:
        for close in closers:
            with contextlib.suppress(HcmError, OSError):
                close()


@click.group("card")
def card() -> None:
    """The resident health card: read it, emulate it, trace its APDUs."""


@card.command("read")
@click.option("--reader", help="Reader name (or a unique part of it); default: first with a card.")
@click.option("--json", "as_json", is_flag=True, help="Print the data as JSON.")
@_sam_options
@click.option("--photo", type=click.Path(dir_okay=False), help="Save the photo (JPEG) here.")
@click.option("--trace", type=click.Path(dir_okay=False), help="Append the APDU log here.")
@click.option(
    "--parts",
    metavar="LIST",
    help="Read only these parts, comma-separated (identity, insurance, phones, photo, "
    "contacts, social, documents, basics, allergies, immunisations, visits, issuer; "
    "groups cardholder, validity, personal, clinical, all). Default: all.",
)
def read(
    reader: str | None,
    as_json: bool,
    sam_keys: str | None,
    sam_reader: str | None,
    sam_pin_env: str,
    photo: str | None,
    trace: str | None,
    parts: str | None,
) -> None:
    """Print what is readable on the card in the reader (all of it, or --parts).

    The SAM is a software SAM (--sam-keys) or a SAM card in a second reader
    (--sam-reader, its PIN from the environment variable named by --sam-pin-env).
    """
    choice = _sam_choice(sam_keys, sam_reader, sam_pin_env)
    wanted: frozenset[CardPart] | None = None  # everything
    if parts is not None:
        try:
            wanted = parse_parts(parts)
        except CardPartError as exc:
            raise click.BadParameter(exc.message, param_hint="--parts") from None
        if photo:
            wanted |= {CardPart.PHOTO}  # --photo asks for it
    try:
        data = _read_through_terminal(reader, choice, trace, wanted)
    except HcmError as exc:
        raise _fail(exc) from None
    if photo and isinstance(data, CardRead):
        Path(photo).write_bytes(data.photo)
    if as_json:
        click.echo(data.model_dump_json(indent=2))
        return
    _print(_read_fields(data), "")


def _read_fields(model: BaseModel, *, top: bool = True) -> dict[str, Any]:
    """The model as data, without the fields of parts that were not read.

    The parts read are listed once, at the top.
    """
    out: dict[str, Any] = {}
    guarded = model.FIELD_PARTS if isinstance(model, PartialModel) else {}
    read = set(model.parts) if isinstance(model, PartialModel) else set()
    for name in type(model).model_fields:
        if name in guarded and not read.intersection(guarded[name]):
            continue
        if name == "parts" and not top:
            continue
        value = getattr(model, name)
        out[name] = _plain(value)
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return _read_fields(value, top=False)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value.value if isinstance(value, Enum) else value


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


@card.command("personalise")
@click.option(
    "--profile",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Card profile JSON (sample: hcmiddleware/card/samples/resident-profile.json).",
)
@click.option(
    "--issuer-keys",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Issuer key-set JSON (master keys) of the card's city.",
)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Card image to write.")
@click.option("--force", is_flag=True, help="Overwrite an existing card image.")
def personalise(profile: str, issuer_keys: str, out: str, force: bool) -> None:
    """Make a card image: the profile's data with the card's own diversified keys.

    The image holds key material: it is written with mode 600 and no key is printed.
    """
    import json

    from hcmiddleware.card.image import personalise as make_image
    from hcmiddleware.card.image import write_image
    from hcmiddleware.sam.keyset import load_keyset

    path = Path(profile)
    try:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CardDataError(
                f"the card profile {path} cannot be read ({type(exc).__name__})",
                hint="check the path and that the file is JSON",
            ) from None
        image = make_image(data, load_keyset(issuer_keys), base_dir=path.parent)
        written = write_image(image, out, overwrite=force)
    except HcmError as exc:
        raise _fail(exc) from None
    refs = " ".join(f"{k.ref:02X}" for k in image.keys)
    click.echo(f"card image written to {written} (mode 600), keys {refs}")
    click.echo(
        "it holds the card's keys: keep it like a key file, never share or log it",
        err=True,
    )


@card.command("emulate")
@click.option(
    "--profile",
    type=click.Path(exists=True, dir_okay=False),
    help="Card profile JSON (sample: hcmiddleware/card/samples/resident-profile.json).",
)
@click.option(
    "--keys",
    "--issuer-keys",
    "keys",
    type=click.Path(exists=True, dir_okay=False),
    help="Issuer key-set JSON the card's keys are diversified from (with --profile).",
)
@click.option(
    "--image",
    type=click.Path(exists=True, dir_okay=False),
    help="Card image from 'hcm card personalise' (instead of --profile and --keys).",
)
@click.option("--port", default=35963, show_default=True, help="vpcd port of the reader.")
def emulate(profile: str | None, keys: str | None, image: str | None, port: int) -> None:
    """Insert a software health card into vpcd's reader until Ctrl-C (or SIGTERM)."""
    import signal

    from hcmiddleware.card.emulator import EmulatedCard
    from hcmiddleware.card.vpcd import VpcdCard

    if (image is None) == (profile is None) or (profile is None) != (keys is None):
        raise click.UsageError("give either --image, or --profile with --keys")
    try:
        emulated = (
            EmulatedCard.from_image(image)
            if image is not None
            else EmulatedCard.from_files(str(profile), str(keys))
        )
        link = VpcdCard(emulated, port)
        link.start()
    except HcmError as exc:
        raise _fail(exc) from None
    click.echo(f"card inserted in the vpcd reader on port {port}; Ctrl-C removes it")

    def _stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # A service manager stops it with SIGTERM; started in the background, a shell may
    # have set SIGINT to be ignored, so SIGTERM is the stop that always arrives.
    signal.signal(signal.SIGTERM, _stop)
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
@_sam_options
def trace(
    log: str | None,
    reader: str | None,
    sam_keys: str | None,
    sam_reader: str | None,
    sam_pin_env: str,
) -> None:
    """Show an APDU log; without LOG, read the card and show its APDUs (masked)."""
    choice = _sam_choice(sam_keys, sam_reader, sam_pin_env)
    try:
        if log is not None:
            atr, entries = read_trace(log)
        else:
            sink = io.StringIO()
            _read_through_terminal(reader, choice, sink)
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

"""``hcm ehc``: electronic health card codes from the command line.

``verify`` exits 0 when the code is accepted and 1 when it is refused (the reason is
printed, or given as ``reason`` with ``--json``); ``issue``, ``sync`` and ``keygen``
exit 0 on success and 1 on failure. A bad configuration is exit 2, as everywhere.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from hcmiddleware.errors import EhcError

__all__ = ["ehc"]


@click.group()
def ehc() -> None:
    """The electronic health card: issue, verify and sync e-card QR codes."""


def _mw() -> Any:
    from hcmiddleware.cli.context import open_middleware

    return open_middleware(click.get_current_context())


@ehc.command()
@click.option("--resident", "resident_id", help="open (or reuse) this resident's e-card")
@click.option("--ecard", "ecard_id", help="an e-card ID already issued (64 hex digits)")
@click.option("--dynamic", is_flag=True, help="a signed, short-lived code (default: static)")
@click.option("--png", "png", type=click.Path(dir_okay=False, path_type=Path), help="write PNG")
@click.option("--svg", "svg", type=click.Path(dir_okay=False, path_type=Path), help="write SVG")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def issue(
    resident_id: str | None,
    ecard_id: str | None,
    dynamic: bool,
    png: Path | None,
    svg: Path | None,
    as_json: bool,
) -> None:
    """Print an e-card code (the issuer's side: the demo, tests, a kiosk showing one).

    With --resident the resident's e-card is opened at the platform (or by [ehc.issuer])
    and bound in the index first.
    """
    if (resident_id is None) == (ecard_id is None):
        raise click.UsageError("give one of --resident or --ecard")
    mw = _mw()
    card = mw.ehc.issue(resident_id, actor="cli") if resident_id else ecard_id
    text = mw.ehc.dynamic_code(card) if dynamic else mw.ehc.static_code(card)
    if png is not None or svg is not None:
        from hcmiddleware.ehc.qr import render

        if png is not None:
            png.write_bytes(render(text, kind="png"))
        if svg is not None:
            svg.write_bytes(render(text, kind="svg"))
    if as_json:
        click.echo(json.dumps({"ecard_id": card, "kind": "dynamic" if dynamic else "static",
                               "code": text}))  # fmt: skip
    else:
        click.echo(text)


@ehc.command()
@click.argument("text", required=False)
@click.option(
    "--image", type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="read the code from a photo or screenshot instead",
)  # fmt: skip
@click.option("--step", "care_step", default="registration", show_default=True,
              help="the care step the code is used for")  # fmt: skip
@click.option("--terminal", "terminal_id", help="this terminal's ID (default [ehc] terminal_id)")
@click.option("--id-digits", "digits", help="a static code's second factor: last ID digits")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def verify(
    text: str | None,
    image: Path | None,
    care_step: str,
    terminal_id: str | None,
    digits: str | None,
    as_json: bool,
) -> None:
    """Check a scanned code here: exit 0 accepted, 1 refused (with the reason)."""
    if (text is None) == (image is None):
        raise click.UsageError("give the code's TEXT or --image FILE")
    from hcmiddleware.ehc.service import IdDigitsFactor

    mw = _mw()
    factor = IdDigitsFactor(digits) if digits else None
    try:
        if image is not None:
            result = mw.ehc.verify_image(
                image.read_bytes(), care_step=care_step, terminal_id=terminal_id,
                factor=factor, actor="cli",
            )  # fmt: skip
        else:
            assert text is not None
            result = mw.ehc.verify(text, care_step=care_step, terminal_id=terminal_id,
                                   factor=factor, actor="cli")  # fmt: skip
    except EhcError as exc:
        reason = str(getattr(exc, "reason", type(exc).__name__))
        if as_json:
            click.echo(json.dumps({"status": "refused", "reason": reason, **exc.details()},
                                  ensure_ascii=False, default=str))  # fmt: skip
        else:
            click.echo(f"refused ({reason}): {exc}", err=True)
        sys.exit(1)
    if as_json:
        data = result.model_dump(mode="json", exclude={"resident", "ecard_id"})
        click.echo(json.dumps({"status": "accepted",
                               "resident_id": result.resident.resident_id, **data}))  # fmt: skip
    else:
        click.echo(
            f"accepted: resident {result.resident.resident_id}, {result.kind} code checked "
            f"{result.checked}, {result.care_step} at {result.terminal_id}"
        )


@ehc.command()
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def sync(as_json: bool) -> None:
    """Fetch every issuer's revocation list (or its changes) and apply it."""
    mw = _mw()
    states = mw.ehc.sync_revocations(actor="cli")
    if as_json:
        click.echo(json.dumps([
            {"issuer": s.issuer, "version": s.version, "entries": s.entries,
             "synced_at": s.synced_at.isoformat()}
            for s in states
        ]))  # fmt: skip
        return
    if not states:
        click.echo("no revocation list published yet")
    for s in states:
        click.echo(f"{s.issuer}: version {s.version}, {s.entries} closed e-cards")


@ehc.command()
@click.argument("key_id")
@click.option(
    "--algorithm", type=click.Choice(["sm2", "ecdsa-p256", "ed25519"]), default="sm2",
    show_default=True, help="signature algorithm",
)  # fmt: skip
@click.option("--issuer", default="LOCAL", show_default=True, help="the issuer's code")
@click.option(
    "--dir", "folder", type=click.Path(file_okay=False, path_type=Path), default=Path("keys"),
    show_default=True, help="where to write the key pair",
)  # fmt: skip
def keygen(key_id: str, algorithm: str, issuer: str, folder: Path) -> None:
    """Make an issuer key pair and print the [ehc] lines that use it.

    The private key (mode 600) signs codes here ([ehc.issuer]); give only the public
    key to the terminals that check them. An existing pair is not overwritten.
    """
    import re

    from hcmiddleware.config import EHC_KEY_ID
    from hcmiddleware.ehc.keyfiles import key_paths, write_key_pair

    if not re.fullmatch(EHC_KEY_ID, key_id):
        raise click.BadParameter("1-16 upper-case letters, digits or dashes", param_hint="KEY_ID")
    if any(p.exists() for p in key_paths(folder, key_id)):
        raise click.ClickException(f"key {key_id} already exists in {folder}; nothing was written")
    private, public = (p.absolute() for p in write_key_pair(folder, key_id, algorithm))
    click.echo(f"# wrote {private} (keep it secret) and {public}")
    click.echo(f'[ehc.keys.{key_id}]\nissuer = "{issuer}"\nalgorithm = "{algorithm}"')
    click.echo(f'public_key = "{public}"\n')
    click.echo(f'[ehc.issuer]\nkey_id = "{key_id}"\nprivate_key = {{ file = "{private}" }}')

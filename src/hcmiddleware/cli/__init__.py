"""The ``hcm`` command line.

Exit codes: 0 success; 1 the operation failed or a check did not pass; 2 the
configuration, a plugin, an extra not installed, or the command line is wrong (fix it
and run again).
Errors print one clear message to stderr; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import logging
import sys
import traceback
from typing import Any

import click

from hcmiddleware import __version__
from hcmiddleware._optional import missing_extra
from hcmiddleware.cli.access import access_group
from hcmiddleware.cli.audit import audit_group
from hcmiddleware.cli.card import card
from hcmiddleware.cli.cardlist import card_list
from hcmiddleware.cli.context import CliState
from hcmiddleware.cli.core import config_group, demo, doctor, plugins_group
from hcmiddleware.cli.ehc import ehc
from hcmiddleware.cli.empi import empi
from hcmiddleware.cli.face import face
from hcmiddleware.cli.init import init
from hcmiddleware.cli.journal import journal_group
from hcmiddleware.cli.receipt import receipt_group
from hcmiddleware.cli.ward import ward
from hcmiddleware.errors import ConfigError, HcmError, MissingExtraError, PluginLoadError

__all__ = ["main"]


class _Main(click.Group):
    """Turns every error into one readable line and the documented exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            try:
                return super().invoke(ctx)
            except ModuleNotFoundError as exc:
                # an optional part imported outside needs_extra(): still one line
                missing = missing_extra(exc, "this command")
                if missing is None:
                    raise
                raise missing from exc
        except HcmError as exc:
            debug = bool(ctx.meta.get("hcm.debug"))
            if debug:
                traceback.print_exc()
            click.echo(f"error: {exc}", err=True)
            for other in getattr(exc, "related", []):
                click.echo(f"error: {other}", err=True)
            code = 2 if isinstance(exc, ConfigError | PluginLoadError | MissingExtraError) else 1
            ctx.exit(code)


@click.group(cls=_Main)
@click.version_option(__version__, prog_name="hcm")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    envvar="HCM_CONFIG",
    help="config file (TOML); default: $HCM_CONFIG, else embedded defaults",
)
@click.option("--debug", is_flag=True, help="show tracebacks and debug logging")
@click.pass_context
def main(ctx: click.Context, config_path: str | None, debug: bool) -> None:
    """Resident Health Card middleware: cards, SAM, resident index, adapters."""
    ctx.meta["hcm.debug"] = debug
    ctx.obj = CliState(config_path=config_path, debug=debug)
    # The command line configures logging (the library adds only a NullHandler): other
    # libraries' warnings and up on stderr; the hcmiddleware loggers at the config's
    # [logging] level (set when the config is loaded), everything with --debug.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, handlers=[handler])
    logging.getLogger("hcmiddleware").setLevel(logging.DEBUG if debug else logging.WARNING)


main.add_command(plugins_group)
main.add_command(config_group)
main.add_command(init)
main.add_command(doctor)
main.add_command(demo)
main.add_command(journal_group)
main.add_command(access_group)
main.add_command(card)
main.add_command(card_list)
main.add_command(empi)
main.add_command(face)
main.add_command(ehc)
main.add_command(ward)
main.add_command(audit_group)
main.add_command(receipt_group)

"""The ``hcm`` command line."""

from __future__ import annotations

import click

from hcmiddleware import __version__


@click.group()
@click.version_option(__version__, prog_name="hcm")
def main() -> None:
    """Resident Health Card middleware: cards, SAM, resident index, adapters."""


# Command groups of the product's parts register here, one line each:
# from hcmiddleware.cli.card import card
# main.add_command(card)
from hcmiddleware.cli.face import face  # noqa: E402

main.add_command(face)

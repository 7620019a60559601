"""What every ``hcm`` command shares: the config file chosen and the debug switch."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import click

from hcmiddleware.config import Config, load_config

if TYPE_CHECKING:
    from hcmiddleware.runtime import Middleware


@dataclass
class CliState:
    """Options of the ``hcm`` group, handed to each command."""

    config_path: str | None = None
    debug: bool = False

    def load(self) -> Config:
        """The configuration from ``--config`` / ``$HCM_CONFIG``, or the defaults.

        Its ``[logging] level`` is applied to the ``hcmiddleware`` loggers (``--debug``
        shows everything): the command line, not the library, configures logging.
        """
        config = load_config(self.config_path) if self.config_path else Config()
        level = logging.DEBUG if self.debug else config.logging.level
        logging.getLogger("hcmiddleware").setLevel(level)
        return config


def open_middleware(ctx: click.Context) -> Middleware:
    """A started Middleware on the command's configuration, closed with the command."""
    from hcmiddleware.runtime import Middleware

    state = ctx.find_object(CliState) or CliState()
    mw = Middleware(state.load())
    ctx.call_on_close(mw.close)
    return mw

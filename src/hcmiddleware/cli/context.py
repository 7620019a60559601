"""What every ``hcm`` command shares: the config file chosen and the debug switch."""

from __future__ import annotations

from dataclasses import dataclass

from hcmiddleware.config import Config, load_config


@dataclass
class CliState:
    """Options of the ``hcm`` group, handed to each command."""

    config_path: str | None = None
    debug: bool = False

    def load(self) -> Config:
        """The configuration from ``--config`` / ``$HCM_CONFIG``, or the defaults."""
        if self.config_path:
            return load_config(self.config_path)
        return Config()

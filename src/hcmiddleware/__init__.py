"""hcmiddleware: the Resident Health Card middleware SDK a hospital system embeds.

The public API is what this module exports; everything else may change between
releases. Adapters import only from here (and from ``hcmiddleware.models``,
``hcmiddleware.errors``, ``hcmiddleware.config`` which this module re-exports).
"""

from __future__ import annotations

from hcmiddleware import errors, models
from hcmiddleware.config import Config, Secret, SettingsModel, load_config
from hcmiddleware.hookspecs import hookimpl, hookspec
from hcmiddleware.runtime import Middleware, PluginInfo

__version__ = "0.1.0"

__all__ = [
    "Config",
    "Middleware",
    "PluginInfo",
    "Secret",
    "SettingsModel",
    "__version__",
    "errors",
    "hookimpl",
    "hookspec",
    "load_config",
    "models",
]

"""Finding, loading and describing plugins.

Plugins are installed Python distributions that declare an entry point in the group
``hcmiddleware``; the entry point's name is the plugin's name (``sample-his``). A plugin
that is installed but not listed in ``[plugins] enabled`` is never imported, so a broken
or unwanted plugin cannot affect a site that does not use it.

The entry point may name a module or a class; a class is instantiated with no
arguments. Hook implementations are functions whose name starts with ``hcm_``
(decorating them with :data:`hcmiddleware.hookimpl` is optional, and needed only for
options such as ``trylast``); any other method is ignored, so an adapter class can have
ordinary methods.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import pluggy
from pydantic import BaseModel, ValidationError

from hcmiddleware import hookspecs
from hcmiddleware._optional import extra_for
from hcmiddleware.config import SettingsModel, config_error_from_validation
from hcmiddleware.errors import ConfigError, PluginLoadError

__all__ = [
    "ENTRY_POINT_GROUP",
    "HcmPluginManager",
    "InstalledPlugin",
    "SettingsRegistry",
    "hook_names",
    "implemented_hooks",
    "installed_plugins",
    "load_plugin",
]

ENTRY_POINT_GROUP = "hcmiddleware"
HOOK_PREFIX = "hcm_"


def hook_names() -> list[str]:
    """The names of every hook spec, in the order they are declared."""
    return [
        name
        for name, obj in vars(hookspecs).items()
        if name.startswith(HOOK_PREFIX) and callable(obj)
    ]


class HcmPluginManager(pluggy.PluginManager):
    """A pluggy manager that treats every ``hcm_*`` function as a hook implementation."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.add_hookspecs(hookspecs)

    def parse_hookimpl_opts(self, plugin: object, name: str) -> Any:
        opts = super().parse_hookimpl_opts(plugin, name)
        if opts is None and name.startswith(HOOK_PREFIX):
            method = getattr(plugin, name, None)
            if inspect.isroutine(method):
                return {}
        if opts is not None and (opts.get("hookwrapper") or opts.get("wrapper")):
            raise PluginLoadError(
                f"{name} is a hook wrapper; hcmiddleware calls each implementation on "
                "its own, with a timeout, and does not support wrappers",
                plugin=self.get_name(plugin) or repr(plugin),
                hint="implement the hook as a plain function",
            )
        return opts


def implemented_hooks(pm: pluggy.PluginManager, plugin: object) -> list[str]:
    """Names of the hooks ``plugin`` implements, sorted."""
    callers = pm.get_hookcallers(plugin) or []
    return sorted(caller.name for caller in callers)


@dataclass(frozen=True)
class InstalledPlugin:
    """A plugin found through its entry point (not yet imported)."""

    name: str
    target: str
    distribution: str
    version: str
    entry_point: metadata.EntryPoint = field(repr=False, compare=False)


def installed_plugins() -> dict[str, InstalledPlugin]:
    """Every plugin installed in this Python environment, by name."""
    found: dict[str, InstalledPlugin] = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist
        found[ep.name] = InstalledPlugin(
            name=ep.name,
            target=ep.value,
            distribution=dist.metadata["Name"] if dist else "?",
            version=dist.version if dist else "?",
            entry_point=ep,
        )
    return found


def load_plugin(name: str, installed: dict[str, InstalledPlugin]) -> object:
    """Import the plugin ``name``; PluginLoadError says what is installed if it is not."""
    info = installed.get(name)
    if info is None:
        names = sorted(installed)
        close = difflib.get_close_matches(name, names, n=1)
        hint = (f"did you mean {close[0]!r}? " if close else "") + (
            "installed plugins: " + ", ".join(names)
            if names
            else "no plugins are installed; install the adapter's package first"
        )
        raise PluginLoadError(
            f"plugin {name!r} is enabled in the config but not installed",
            plugin=name,
            installed=names,
            hint=hint,
        )
    try:
        obj = info.entry_point.load()
        if inspect.isclass(obj):
            obj = obj()
    except Exception as exc:
        extra = extra_for(exc.name) if isinstance(exc, ModuleNotFoundError) else None
        raise PluginLoadError(
            f"plugin {name!r} ({info.distribution} {info.version}) failed to load: "
            f"{type(exc).__name__}: {exc}",
            plugin=name,
            installed=sorted(installed),
            hint=f"it needs the '{extra}' extra: pip install 'hcmiddleware[{extra}]'"
            if extra
            else "reinstall the plugin or disable it; run with --debug for the traceback",
        ) from exc
    return obj


class SettingsRegistry:
    """Collects each plugin's settings model (``hcm_add_config``) and validates sections."""

    def __init__(self) -> None:
        self._models: dict[str, type[SettingsModel]] = {}

    def add(self, plugin: str, model: type[SettingsModel]) -> None:
        """Declare that ``[plugins.<plugin>]`` is validated by ``model``."""
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise TypeError(f"settings model for {plugin!r} must be a pydantic model class")
        self._models[plugin] = model

    def model_for(self, plugin: str) -> type[SettingsModel] | None:
        """The model declared for ``plugin``, if any."""
        return self._models.get(plugin)

    def validate(
        self,
        plugin: str,
        section: dict[str, Any] | None,
        *,
        file: str | None,
        base_dir: Path | None = None,
    ) -> SettingsModel | None:
        """Validate a plugin's raw section; ConfigError names ``plugins.<plugin>.<key>``.

        Relative paths and ``{file = …}`` secrets in it are taken from ``base_dir`` (the
        config file's folder).
        """
        model = self._models.get(plugin)
        if model is None:
            if section:
                raise ConfigError(
                    "this plugin takes no settings",
                    file=file,
                    key=f"plugins.{plugin}",
                    hint="remove the section, or check the plugin's documentation",
                )
            return None
        try:
            context = {"base_dir": str(base_dir)} if base_dir else None
            return model.model_validate(section or {}, context=context)
        except ValidationError as exc:
            raise config_error_from_validation(
                exc, file=file, model=model, prefix=("plugins", plugin)
            ) from None


def plugin_objects(pm: pluggy.PluginManager) -> Iterable[tuple[str, object]]:
    """``(name, plugin)`` for every registered plugin, in registration order."""
    for name, plugin in pm.list_name_plugin():
        if plugin is not None:
            yield name, plugin


PluginFactory = Callable[[], object]

"""The Middleware: the object a HIS embeds. It loads plugins and owns the flows.

Typical embedding::

    from hcmiddleware import Middleware

    with Middleware.from_file("/etc/hcm/hcm.toml") as mw:
        card = mw.terminal.read()
        resident = mw.residents.enrol_from_card(card)
        patient = mw.his.find_or_register(resident, card=card)

Start-up order: built-in plugins are registered; each plugin enabled in
``[plugins] enabled`` is imported through its entry point and registered under its
entry-point name; plugin objects passed to the constructor are registered; unknown
``hcm_*`` hooks are refused (``check_pending``); every plugin declares its settings
(``hcm_add_config``), its ``[plugins.<name>]`` section is validated; then every plugin
sets itself up (``hcm_configure``). Any failure stops start-up with a typed error naming
the plugin, and nothing is left half-started.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import pluggy
from sqlalchemy.engine import Engine

from hcmiddleware import storage
from hcmiddleware.access import Access, Caller, Session
from hcmiddleware.audit import Audit
from hcmiddleware.builtin import audit_checkpoints, audit_log, core_checks, sam_provider
from hcmiddleware.cards import Cards
from hcmiddleware.config import RESERVED_PLUGIN_KEYS, Config, SettingsModel, load_config
from hcmiddleware.dispatch import Dispatcher, HookProxy
from hcmiddleware.ehc.service import Ehc
from hcmiddleware.errors import HcmError, PluginLoadError
from hcmiddleware.faces import Faces
from hcmiddleware.his import His
from hcmiddleware.models import CheckResult
from hcmiddleware.printing.service import Receipts
from hcmiddleware.registry import (
    HcmPluginManager,
    InstalledPlugin,
    SettingsRegistry,
    implemented_hooks,
    installed_plugins,
    load_plugin,
)
from hcmiddleware.residents import Residents
from hcmiddleware.terminal import Terminal
from hcmiddleware.ward.service import Ward

if TYPE_CHECKING:
    from hcmiddleware.journal import Journal

__all__ = ["Middleware", "PluginInfo"]

log = logging.getLogger("hcmiddleware")

BUILTIN_PLUGINS: tuple[tuple[str, object], ...] = (
    (audit_log.NAME, audit_log),
    (core_checks.NAME, core_checks),
    (sam_provider.NAME, sam_provider),
)


@dataclass(frozen=True)
class PluginInfo:
    """What ``hcm plugins list`` shows for one plugin."""

    name: str
    origin: Literal["builtin", "entry point", "object"]
    enabled: bool
    distribution: str | None
    version: str | None
    hooks: tuple[str, ...]


class Middleware:
    """The runtime: plugin manager, configuration, hooks with containment, storage.

    :param config: the configuration; defaults run on embedded defaults (SQLite in
        ``./hcm-data``, no plugins).
    :param plugins: extra plugin objects to register as enabled, by name (a mapping)
        or named by their ``hcm_plugin_name`` attribute or class name (a sequence).
        This is how a HIS vendor embeds its own adapter without packaging it.
    :param start: start at once (default). Pass ``False`` to call :meth:`start` later.
    """

    def __init__(
        self,
        config: Config | None = None,
        *,
        plugins: Mapping[str, object] | Iterable[object] = (),
        start: bool = True,
    ) -> None:
        self.config = config if config is not None else Config()
        self.pm: pluggy.PluginManager = HcmPluginManager()
        self.dispatcher = Dispatcher(
            self.pm,
            default_timeout=self.config.plugins.call_timeout,
            timeouts=self.config.plugins.timeouts,
            max_stalled_calls=self.config.plugins.max_stalled_calls,
        )
        #: ``middleware.hooks.hcm_…(**kwargs)`` calls a hook with containment.
        self.hooks = HookProxy(self.dispatcher)
        self.settings = SettingsRegistry()
        self._extra = self._name_plugins(plugins)
        self._plugin_settings: dict[str, SettingsModel | None] = {}
        self._origins: dict[str, Literal["builtin", "entry point", "object"]] = {}
        self._installed: dict[str, InstalledPlugin] = {}
        self._engine: Engine | None = None
        self._engine_lock = threading.Lock()
        self._journal: Journal | None = None
        #: roles, sessions, break glass (``middleware.acting_as(caller)``)
        self.access = Access(self)
        # the services; reached through the properties below (see ``require_caller``)
        self._terminal = Terminal(self)
        self._residents = Residents(self)
        self._faces = Faces(self)
        self._his = His(self)
        self._cards = Cards(self)
        self._ehc = Ehc(self)
        self._ward = Ward(self)
        self._audit = Audit(self)
        self._receipts = Receipts(self)
        self._loaded = False
        self._configuring = False
        self._started = False
        if start:
            self.start()

    # -- the services --------------------------------------------------------------------

    def acting_as(self, caller: Caller) -> Session:
        """The services as ``caller`` (user, role, terminal) may use them.

        ``session.terminal``, ``.residents``, ``.faces``, ``.his``, ``.cards``, ``.ehc``,
        ``.ward``, ``.journal``, ``.receipts``, ``.audit`` have the methods of the services
        here; each call is checked against the role, cut to what it may see, and audited
        with the caller's identity (``docs/access.md``).

        :raises UnknownRoleError: the role is not configured.
        :raises UnknownTerminalError: ``[access] terminals`` does not list the terminal.
        """
        return self.access.session(caller)

    def _raw(self, name: str) -> Any:
        """A service without the ``require_caller`` check (sessions, the core itself)."""
        if name == "journal":
            return self._journal_service()
        return getattr(self, f"_{name}")

    @property
    def terminal(self) -> Terminal:
        """The card reader and the SAM (``middleware.terminal.read()``)."""
        self.access.unbound("terminal")
        return self._terminal

    @property
    def residents(self) -> Residents:
        """The resident index (``middleware.residents.enrol_from_card(card)``)."""
        self.access.unbound("residents")
        return self._residents

    @property
    def faces(self) -> Faces:
        """Face checks (``middleware.faces.verify_card(live, card, resident_id=…)``)."""
        self.access.unbound("faces")
        return self._faces

    @property
    def his(self) -> His:
        """The hospital's HIS (``middleware.his.find_or_register(resident)``)."""
        self.access.unbound("his")
        return self._his

    @property
    def cards(self) -> Cards:
        """The card's lifecycle and the lists of refused cards (``middleware.cards``)."""
        self.access.unbound("cards")
        return self._cards

    @property
    def ehc(self) -> Ehc:
        """The electronic health card (``middleware.ehc.verify(text, care_step=…)``)."""
        self.access.unbound("ehc")
        return self._ehc

    @property
    def ward(self) -> Ward:
        """Wristbands, bedside checks, alarms (``middleware.ward.begin(scan)``)."""
        self.access.unbound("ward")
        return self._ward

    @property
    def audit(self) -> Audit:
        """The tamper-evident audit log (``middleware.audit("card.read", actor=…)``)."""
        self.access.unbound("audit")
        return self._audit

    @property
    def receipts(self) -> Receipts:
        """Receipts, bills and reports on the kiosk's printers (``middleware.receipts``)."""
        self.access.unbound("receipts")
        return self._receipts

    @classmethod
    def from_file(cls, path: str | Path, **kwargs: Any) -> Middleware:
        """Load the TOML config at ``path`` and start a Middleware on it."""
        return cls(load_config(path), **kwargs)

    @staticmethod
    def _name_plugins(plugins: Mapping[str, object] | Iterable[object]) -> dict[str, object]:
        if isinstance(plugins, Mapping):
            return dict(plugins)
        named: dict[str, object] = {}
        for plugin in plugins:
            name = getattr(plugin, "hcm_plugin_name", None) or type(plugin).__name__
            named[str(name)] = plugin
        return named

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Load, validate and configure every plugin; see the module docstring."""
        if self._started:
            return
        try:
            self.load_plugins()
            self._configuring = True
            self.dispatcher.call("hcm_configure", middleware=self)
        except BaseException:
            self._teardown_plugins()
            self._loaded = False
            raise
        self._started = True
        log.info("started with plugins: %s", ", ".join(self.enabled_plugins()) or "(none)")

    def load_plugins(self) -> None:
        """Register and validate every plugin and its settings, without configuring any.

        ``hcm config check`` stops here: nothing is connected or started.
        """
        if self._loaded:
            return
        self._load()
        self._validate_settings()
        self._loaded = True

    def _load(self) -> None:
        for name, module in BUILTIN_PLUGINS:
            self._register(name, module, "builtin")
        # the audit log's logger sink runs for every audited act: in the caller's thread
        self.dispatcher.trust(audit_log.NAME)
        if self.config.audit.checkpoint_file is not None:
            sink = audit_checkpoints.CheckpointFile(self.config.audit.checkpoint_file)
            self._register(audit_checkpoints.NAME, sink, "builtin")
        self._register_printers()
        enabled = self.config.plugins.enabled
        if enabled:
            self._installed = installed_plugins()
        for name in enabled:
            if name in self._extra:
                continue
            try:
                self._register(name, load_plugin(name, self._installed), "entry point")
            except PluginLoadError as exc:
                if self.config.source is not None:
                    exc.file, exc.key = str(self.config.source), "plugins.enabled"
                raise
        for name, plugin in self._extra.items():
            self._register(name, plugin, "object")
        self._check_pending()

    def _register_printers(self) -> None:
        """The built-in printers ``[printing]`` sets up (imported only when it does)."""
        printing = self.config.printing
        receipts = printing.escpos_device is not None or printing.escpos_host is not None
        if receipts:
            from hcmiddleware.printing.printers import ESCPOS_NAME, EscposPrinter

            self._register(ESCPOS_NAME, EscposPrinter(printing), "builtin")
        if printing.pdf_dir is not None:
            from hcmiddleware.printing.printers import PDF_NAME, PdfPrinter

            self._register(PDF_NAME, PdfPrinter(printing, receipts=not receipts), "builtin")

    def _check_pending(self) -> None:
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            plugin = self.pm.get_name(exc.plugin) or "?"
            raise PluginLoadError(
                f"plugin {plugin!r} implements a hook that does not exist: {exc}",
                plugin=plugin,
                hint="check the hook's spelling against docs/hooks.md",
            ) from None

    def _register(
        self, name: str, plugin: object, origin: Literal["builtin", "entry point", "object"]
    ) -> None:
        if name in RESERVED_PLUGIN_KEYS:
            raise PluginLoadError(
                f"{name!r} cannot be a plugin's name: it is a key of [plugins]",
                plugin=name,
                hint="rename the plugin's entry point",
            )
        try:
            self.pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            raise PluginLoadError(
                f"plugin {name!r} is not valid: {exc}",
                plugin=name,
                hint="check its hook implementations' names and arguments against docs/hooks.md",
            ) from None
        except ValueError as exc:
            raise PluginLoadError(
                f"plugin {name!r} cannot be registered: {exc}",
                plugin=name,
                hint="each plugin may be enabled once",
            ) from None
        self._origins[name] = origin

    def _validate_settings(self) -> None:
        self.dispatcher.call("hcm_add_config", settings=self.settings)
        sections = self.config.plugins.sections()
        file = str(self.config.source) if self.config.source else None
        for name in self.enabled_plugins():
            self._plugin_settings[name] = self.settings.validate(
                name, sections.get(name), file=file, base_dir=self.config.base_dir
            )

    def register(self, plugin: object, name: str) -> None:
        """Add a plugin to a running Middleware: settings, validation, set-up.

        The plugin's ``[plugins.<name>]`` section is taken from the configuration as
        for any other plugin. On failure the plugin is removed again.
        """
        self._register(name, plugin, "object")
        try:
            self._check_pending()
            self.dispatcher.call_for(name, "hcm_add_config", settings=self.settings)
            file = str(self.config.source) if self.config.source else None
            self._plugin_settings[name] = self.settings.validate(
                name,
                self.config.plugins.sections().get(name),
                file=file,
                base_dir=self.config.base_dir,
            )
            if self._started:
                self.dispatcher.call_for(name, "hcm_configure", middleware=self)
        except BaseException:
            self.pm.unregister(plugin, name=name)
            self._origins.pop(name, None)
            self._plugin_settings.pop(name, None)
            raise

    def close(self) -> None:
        """Checkpoint the audit log, unconfigure every plugin (failures are logged),
        release the SAM and the database."""
        self._audit.close()
        self._terminal.close()
        self._ward.close()
        self._cards.close()
        if self._started or self._loaded:
            self._teardown_plugins()
            self._started = self._loaded = False
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
        self.dispatcher.close()

    def _teardown_plugins(self) -> None:
        if self._configuring:
            self._configuring = False
            try:
                self.dispatcher.call("hcm_unconfigure", middleware=self)
            except HcmError:
                log.exception("a plugin failed to unconfigure")
        for name, plugin in list(self.pm.list_name_plugin()):
            if plugin is not None:
                self.pm.unregister(plugin, name=name)

    def __enter__(self) -> Middleware:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- plugins -----------------------------------------------------------------------

    def enabled_plugins(self) -> list[str]:
        """Names of the enabled (non-builtin) plugins, in registration order."""
        return [n for n, origin in self._origins.items() if origin != "builtin"]

    def plugin_settings(self, name: str) -> Any:
        """The validated settings object of plugin ``name`` (``None`` if it has none)."""
        if name not in self._plugin_settings:
            raise KeyError(f"plugin {name!r} is not enabled")
        return self._plugin_settings[name]

    def plugins(self) -> list[PluginInfo]:
        """Every installed or registered plugin, enabled or not, with its hooks."""
        infos: list[PluginInfo] = []
        for name, origin in self._origins.items():
            plugin = self.pm.get_plugin(name)
            inst = self._installed.get(name)
            infos.append(
                PluginInfo(
                    name=name,
                    origin=origin,
                    enabled=True,
                    distribution=inst.distribution if inst else None,
                    version=inst.version if inst else None,
                    hooks=tuple(implemented_hooks(self.pm, plugin)) if plugin else (),
                )
            )
        for name, inst in sorted((self._installed or installed_plugins()).items()):
            if name not in self._origins:
                infos.append(
                    PluginInfo(
                        name=name,
                        origin="entry point",
                        enabled=False,
                        distribution=inst.distribution,
                        version=inst.version,
                        hooks=(),
                    )
                )
        return infos

    # -- services -----------------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        """The database engine (created on first use; SQLite's folder is created too)."""
        with self._engine_lock:
            if self._engine is None:
                if not self.config.database.url:
                    self.config.middleware.data_dir.mkdir(parents=True, exist_ok=True)
                self._engine = storage.create_engine(self.config.database_url)
                # before any connection exists: the log follows its transactions
                self._audit.attach(self._engine)
            return self._engine

    @property
    def journal(self) -> Journal:
        """The money journal: every top-up, payment, refund and settlement goes through it.

        Money moves only here (``middleware.journal.pay(...)``): it is written before it
        is sent, and what a crash leaves in flight is settled by ``recover()``.
        """
        self.access.unbound("journal")
        return self._journal_service()

    def _journal_service(self) -> Journal:
        with self._engine_lock:
            journal = self._journal
        if journal is None:
            from hcmiddleware.journal import Journal

            made = Journal(self)
            with self._engine_lock:
                if self._journal is None:
                    self._journal = made
                journal = self._journal
        return journal

    def doctor(self) -> list[tuple[str, CheckResult]]:
        """Every plugin's checks, as ``(plugin, result)``; a failing check is a result."""
        rows: list[tuple[str, CheckResult]] = []
        for plugin, outcome in self.dispatcher.call_each("hcm_doctor_checks", middleware=self):
            if isinstance(outcome, HcmError):
                rows.append(
                    (
                        plugin,
                        CheckResult(
                            name="checks", ok=False, detail=str(outcome.message), hint=outcome.hint
                        ),
                    )
                )
                continue
            if not isinstance(outcome, list | tuple) or not all(
                isinstance(r, CheckResult) for r in outcome
            ):  # a plugin breaking the hook's contract is a failing line, not a crash
                rows.append(
                    (
                        plugin,
                        CheckResult(
                            name="checks",
                            ok=False,
                            detail=f"the plugin answered hcm_doctor_checks with a "
                            f"{type(outcome).__name__}, not a list of CheckResult",
                            hint="update the plugin, or report it to its vendor (docs/hooks.md)",
                        ),
                    )
                )
                continue
            for result in outcome:
                rows.append((plugin, result))
        return rows

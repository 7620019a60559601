"""``hcm plugins``, ``hcm config``, ``hcm doctor`` and ``hcm demo``."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import click

from hcmiddleware.cli.context import CliState
from hcmiddleware.config import load_config
from hcmiddleware.errors import ConfigError, HcmError
from hcmiddleware.registry import installed_plugins
from hcmiddleware.runtime import Middleware

__all__ = ["config_group", "demo", "doctor", "plugins_group"]

OK = "ok  "
FAIL = "FAIL"


def _state(ctx: click.Context) -> CliState:
    state = ctx.find_object(CliState)
    return state if state is not None else CliState()


# --- plugins ----------------------------------------------------------------------


@click.group("plugins")
def plugins_group() -> None:
    """Installed and enabled plugins."""


@plugins_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def plugins_list(ctx: click.Context, as_json: bool) -> None:
    """List plugins: installed, enabled, version, and the hooks each implements."""
    config = _state(ctx).load()
    with Middleware(config) as mw:
        infos = mw.plugins()
    if as_json:
        click.echo(json.dumps([asdict(i) for i in infos], indent=2))
        return
    if not infos:
        click.echo("no plugins")
        return
    width = max(len(i.name) for i in infos)
    for info in infos:
        state = "enabled " if info.enabled else "disabled"
        version = f"{info.distribution} {info.version}" if info.distribution else info.origin
        click.echo(f"{info.name:<{width}}  {state}  {version}")
        if info.hooks:
            click.echo(f"{'':<{width}}    hooks: {', '.join(info.hooks)}")


@plugins_group.command("hooks")
def plugins_hooks() -> None:
    """Print the hook reference (every hook, its signature and contract) as Markdown."""
    from hcmiddleware.hookdoc import render_hooks_markdown

    click.echo(render_hooks_markdown(), nl=False)


# --- config -----------------------------------------------------------------------


@click.group("config")
def config_group() -> None:
    """Check the configuration file."""


@config_group.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
def config_check(file: str) -> None:
    """Validate FILE: syntax, every key, secrets, and each enabled plugin's section.

    The enabled plugins are loaded (to validate their sections) but not configured:
    nothing connects anywhere.
    """
    config = load_config(file)
    mw = Middleware(config, start=False)
    mw.load_plugins()
    enabled = mw.enabled_plugins()
    sections = config.plugins.sections()
    click.echo(f"{file}: ok")
    click.echo(f"  plugins enabled: {', '.join(enabled) or 'none'}")
    click.echo(f"  database: {config.database_url}")
    for name in sorted(set(sections) - set(enabled)):
        click.echo(f"  note: [plugins.{name}] is present but {name} is not enabled")


# --- doctor -----------------------------------------------------------------------


def _row(plugin: str, name: str, ok: bool, detail: str = "", hint: str = "") -> dict[str, Any]:
    return {"plugin": plugin, "check": name, "ok": ok, "detail": detail, "hint": hint}


@click.command()
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def doctor(ctx: click.Context, as_json: bool) -> None:
    """Check config, every enabled plugin, the database and the readers.

    One line per check with ok/FAIL and what to do. Exit 0 when all pass, 1 when a
    check failed, 2 when the configuration itself cannot be used.
    """
    state = _state(ctx)
    rows: list[dict[str, Any]] = []
    code = 0
    try:
        config = state.load()
        rows.append(_row("core", "config", True, state.config_path or "embedded defaults"))
    except ConfigError as exc:
        rows.append(_row("core", "config", False, str(exc.message), exc.hint))
        config = None
        code = 2
    if config is not None:
        try:
            mw = Middleware(config)
        except HcmError as exc:
            plugin = getattr(exc, "plugin", "core") or "core"
            rows.append(_row(plugin, "start", False, exc.message, exc.hint))
            code = 2 if isinstance(exc, ConfigError) else 1
        else:
            with mw:
                installed = installed_plugins()
                for name in mw.enabled_plugins():
                    inst = installed.get(name)
                    version = f"{inst.distribution} {inst.version}" if inst else "embedded"
                    rows.append(_row(name, "loaded", True, version))
                for plugin, result in mw.doctor():
                    rows.append(_row(plugin, result.name, result.ok, result.detail, result.hint))
    if code == 0 and not all(r["ok"] for r in rows):
        code = 1
    if as_json:
        click.echo(json.dumps({"ok": code == 0, "checks": rows}, indent=2, ensure_ascii=False))
    else:
        for r in rows:
            line = f"{OK if r['ok'] else FAIL}  {r['plugin']}: {r['check']}"
            if r["detail"]:
                line += f" — {r['detail']}"
            click.echo(line)
            if not r["ok"] and r["hint"]:
                click.echo(f"      what to do: {r['hint']}")
    ctx.exit(code)


# --- demo -------------------------------------------------------------------------


@click.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="where the demo keeps its files (default: a fresh temporary folder)",
)
@click.option("--step", type=int, default=None, help="stop after step N (1 is the first)")
@click.option("--json", "as_json", is_flag=True, help="print one JSON document, for scripts")
@click.option(
    "--no-pcsc", is_flag=True, help="keep the card and SAM in-process even where pcscd is installed"
)
@click.option(
    "--broker",
    default="127.0.0.1:1883",
    show_default=True,
    help="the MQTT broker the ward's bands use; without one they go in-process",
)
@click.pass_context
def demo(
    ctx: click.Context,
    data_dir: str | None,
    step: int | None,
    as_json: bool,
    no_pcsc: bool,
    broker: str,
) -> None:
    """Run the whole patient journey on embedded defaults, step by step.

    Exit code 0 when every step passed, 1 when one failed (it says what to do), 2 when
    the demo could not start, 130 when interrupted.
    """
    from hcmiddleware.demo import run_demo

    code = run_demo(
        data_dir=data_dir,
        echo=click.echo,
        step=step,
        as_json=as_json,
        pcsc=not no_pcsc,
        broker=broker,
    )
    ctx.exit(code)

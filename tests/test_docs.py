"""Every code block of README.md and docs/*.md is run or checked, so the docs cannot rot.

What each kind of block gets:

- ``python``: executed, each in a fresh temporary directory as the working directory.
  The blocks of one page run in order in one namespace, so a block may use what an
  earlier block of the same page defined. The only names a page gets from outside are
  in ``GIVEN`` (with the reason). Every class a block defines with ``hcm_*`` methods
  is registered as a plugin in ``Middleware(plugins=..., start=False)`` and loaded, so
  pluggy checks each implementation's name and arguments against the specs. In
  ``docs/hooks.md`` each hook is checked on its own: its signature stub must match the
  spec, and its example must implement that hook.
- ``toml``: parsed; a configuration is validated with ``parse_config`` and then
  loaded like ``hcm config check`` does (the enabled plugins are imported and their
  ``[plugins.<name>]`` sections validated; every plugin a page enables is a first-party
  adapter, installed in the test environment). Secrets the block names get a value:
  ``{env = …}`` a variable, ``{file = …}`` a file in the temporary directory. Blocks
  that are not configurations are listed in ``OTHER_TOML`` with what checks them.
- ``json``: parsed; an issuer key set is loaded with ``load_keyset``; a ward device
  message (``"v": 1``, ``docs/ward.md``) is read by the ward-mqtt plugin's protocol.
- ``sh`` / ``console``: every ``hcm …`` command line must exist: its subcommand path
  answers ``--help`` through click, and every ``--option`` it shows is an option of
  that command. Other lines (pip, apt, tox, pcscd, python) are not run.
- no language: text (trees, diagrams, lists). Such a block may not hold an ``hcm``
  command line: commands go in ``sh`` blocks, where they are checked.
"""

from __future__ import annotations
import __future__

import base64
import inspect
import json
import os
import re
import shlex
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from hcmiddleware import Middleware, hookspecs
from hcmiddleware.cli import main
from hcmiddleware.config import parse_config
from hcmiddleware.registry import hook_names, implemented_hooks

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
HOOKS_PAGE = "docs/hooks.md"
LANGUAGES = {"python", "toml", "json", "sh", "console", ""}

#: Names a page's python blocks get from the harness, and why.
GIVEN: dict[str, dict[str, str]] = {
    # "Tests start and stop it": the block is the body of a test, tmp_path its fixture.
    "docs/his.md": {"tmp_path": "the pytest fixture the block is written for"},
}

#: Functions a page defines for a site to call, and the harness calls with a started
#: Middleware (the sample HIS, the software SAM's test keys, [empi] keys) and the sample
#: card in place of the reader — twice, since a desk may press twice.
DRIVEN: dict[str, str] = {
    "README.md": "at_the_desk",
    "docs/services.md": "register_at_the_desk",
}

#: TOML blocks that are not hcm configurations: (page, first line) → (what, checker).
OTHER_TOML: dict[tuple[str, str], str] = {
    ("docs/plugins.md", "[project.entry-points.hcmiddleware]"): "pyproject",
    ("docs/plugins.md", '[project.entry-points."hcmiddleware.demo"]'): "pyproject",
    ("docs/money.md", "[faults]"): "faults",
}

_FENCE = re.compile(r"^(\s*)```(\S*)\s*$")
_HOOK_HEADING = re.compile(r"^## `(hcm_\w+)`$")


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    lang: str
    text: str
    section: str  # the hook of docs/hooks.md the block is under, else ""

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def _blocks(path: Path) -> Iterator[Block]:
    page = path.relative_to(ROOT).as_posix()
    lines = path.read_text(encoding="utf-8").splitlines()
    section = ""
    i = 0
    while i < len(lines):
        heading = _HOOK_HEADING.match(lines[i])
        if heading:
            section = heading.group(1)
        fence = _FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        indent, lang = fence.groups()
        end = i + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        assert end < len(lines), f"{page}:{i + 1}: code block never closed"
        body = [line.removeprefix(indent) for line in lines[i + 1 : end]]
        yield Block(page, i + 1, lang, "\n".join(body) + "\n", section)
        i = end + 1


ALL_BLOCKS = [block for path in PAGES for block in _blocks(path)]


def _of(lang: str, *, hooks: bool | None = None) -> list[Block]:
    return [
        b
        for b in ALL_BLOCKS
        if b.lang == lang and (hooks is None or (b.page == HOOKS_PAGE) == hooks)
    ]


def test_the_pages_have_blocks_of_every_kind() -> None:
    assert {b.lang for b in ALL_BLOCKS} <= LANGUAGES, "a block the harness cannot check"
    for lang in ("python", "toml", "json", "sh"):
        assert _of(lang), lang
    hooks = {b.section for b in ALL_BLOCKS if b.page == HOOKS_PAGE and b.lang == "python"}
    assert hooks == set(hook_names())


# --- python -----------------------------------------------------------------------------


def _register_plugins(namespace: dict[str, Any], module: str) -> tuple[Middleware, list[object]]:
    """Load every plugin class the block defined into a Middleware, as pluggy checks them."""
    classes = [
        obj
        for obj in namespace.values()
        if isinstance(obj, type)
        and obj.__module__ == module
        and any(name.startswith("hcm_") for name in vars(obj))
    ]
    plugins = [cls() for cls in classes]
    mw = Middleware(plugins=plugins, start=False)
    if plugins:
        mw.load_plugins()
    return mw, plugins


def _run(block: Block, namespace: dict[str, Any]) -> None:
    code = compile(block.text, block.where, "exec")
    exec(code, namespace)


python_pages = sorted({b.page for b in _of("python", hooks=False)})


@pytest.mark.parametrize("page", python_pages)
def test_python_blocks_run(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    module = "docs_" + re.sub(r"\W", "_", page)
    namespace: dict[str, Any] = {"__name__": module}
    given = {"tmp_path": tmp_path}
    namespace.update({name: given[name] for name in GIVEN.get(page, {})})
    for block in (b for b in _of("python") if b.page == page):
        _run(block, namespace)
        _register_plugins(namespace, module)
    if page in DRIVEN:
        _drive(namespace[DRIVEN[page]], tmp_path)


def _drive(function: Any, tmp_path: Path) -> None:
    from hcmiddleware.card.emulator import EmulatedCard
    from hcmiddleware.demo import SAMPLE_PROFILE
    from hcmiddleware.sam.samples import TEST_ISSUER_KEYS

    keys = {}
    for name in ("master", "index"):
        keys[name] = tmp_path / f"{name}.key"
        keys[name].write_text(base64.b64encode(os.urandom(32)).decode(), encoding="ascii")
    config = parse_config(
        {
            "middleware": {"data_dir": str(tmp_path / "site"), "institution_code": "210100000001"},
            "sam": {"keys": str(TEST_ISSUER_KEYS)},
            "empi": {
                "master_keys": {"k1": {"file": str(keys["master"])}},
                "index_key": {"file": str(keys["index"])},
            },
            "plugins": {"enabled": ["sample-his"]},
        }
    )
    card = EmulatedCard.from_files(SAMPLE_PROFILE, TEST_ISSUER_KEYS)
    with Middleware(config) as mw:
        first = function(mw, card)
        again = function(mw, card)
    assert first is not None
    assert getattr(again, "patient_id", again) == getattr(first, "patient_id", first)


hook_blocks = _of("python", hooks=True)


@pytest.mark.parametrize("hook", hook_names())
def test_hook_reference_blocks(hook: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    stub, example = (b for b in hook_blocks if b.section == hook)
    # the signature stub: the spec's own parameters, annotations as in hookspecs.py
    scope: dict[str, Any] = {}
    exec(compile(stub.text, stub.where, "exec", flags=__future__.annotations.compiler_flag), scope)
    assert list(inspect.signature(scope[hook]).parameters) == list(
        inspect.signature(getattr(hookspecs, hook)).parameters
    ), stub.where
    # the example: a plugin class implementing this hook, accepted by pluggy
    namespace: dict[str, Any] = {"__name__": "docs_hook_example"}
    _run(example, namespace)
    mw, plugins = _register_plugins(namespace, "docs_hook_example")
    assert plugins, f"{example.where}: the example defines no plugin class"
    implementations = {name for plugin in plugins for name in implemented_hooks(mw.pm, plugin)}
    assert hook in implementations, f"{example.where}: the example does not implement {hook}"


# --- toml -----------------------------------------------------------------------------


def _first_line(text: str) -> str:
    """The first line that is not blank, without its comment."""
    return next(s for line in text.splitlines() if (s := line.split("#")[0].strip()))


def _provide_secrets(value: Any, base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Give every ``{env = …}`` / ``{file = …}`` secret of a block a value."""
    if isinstance(value, dict):
        if set(value) == {"env"}:
            monkeypatch.setenv(str(value["env"]), "secret-from-the-environment")
        elif set(value) == {"file"}:
            path = base / str(value["file"])
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(base64.b64encode(os.urandom(32)).decode() + "\n", encoding="utf-8")
        else:
            for item in value.values():
                _provide_secrets(item, base, monkeypatch)
    elif isinstance(value, list):
        for item in value:
            _provide_secrets(item, base, monkeypatch)


@pytest.mark.parametrize("block", _of("toml"), ids=lambda b: b.where)
def test_toml_blocks_are_valid(
    block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tomllib.loads(block.text)
    other = OTHER_TOML.get((block.page, _first_line(block.text)))
    if other == "pyproject":
        # an adapter's own pyproject.toml: the entry-point tables hcm reads
        points = data["project"]["entry-points"]
        assert set(points) <= {"hcmiddleware", "hcmiddleware.demo"}
        for targets in points.values():
            assert all(re.fullmatch(r"[\w.]+(:[\w.]+)?", t) for t in targets.values())
        return
    if other == "faults":
        # the reference servers' fault file, read as they read it
        from hcmiddleware.testing.soap import FaultPlan

        FaultPlan(**data["faults"])
        return
    assert other is None
    monkeypatch.chdir(tmp_path)
    _provide_secrets(data, tmp_path, monkeypatch)
    config = parse_config(data, base_dir=tmp_path)
    Middleware(config, start=False).load_plugins()  # as `hcm config check`


# --- json -----------------------------------------------------------------------------


@pytest.mark.parametrize("block", _of("json"), ids=lambda b: b.where)
def test_json_blocks_are_valid(block: Block, tmp_path: Path) -> None:
    from hcmiddleware.sam.keyset import load_keyset

    data = json.loads(block.text)
    if data.get("v") == 1:
        _ward_message(block, data)
        return
    assert {"city_code", "keys"} <= set(data), "only key sets and ward messages are JSON"
    path = tmp_path / "keys.json"
    path.write_text(block.text, encoding="utf-8")
    path.chmod(0o600)
    assert load_keyset(path).city_code == data["city_code"]


def _ward_message(block: Block, data: dict[str, Any]) -> None:
    """A band event, a handheld request or a reply, as the plugin reads or writes it."""
    from hcm_ward_mqtt.protocol import decode, event_from, scan_from

    decoded = decode(block.where, block.text.encode("utf-8"))
    if "kind" in data:
        event_from(block.where, decoded, "WB-0001")
    elif "op" in data:
        if "scan" in data:
            scan_from(block.where, decoded)
    else:
        assert isinstance(data.get("ok"), bool), f"{block.where}: a reply says ok or not"
        assert (
            ("result" in data) if data["ok"] else {"error", "message", "hint"} <= set(data["error"])
        )


# --- sh / console -----------------------------------------------------------------------


def _command_lines(text: str) -> Iterator[list[str]]:
    """The ``hcm`` command lines of a shell block, as tokens (prompts and env stripped)."""
    joined = re.sub(r"\\\n\s*", " ", text)
    for raw in joined.splitlines():
        line = raw.strip().removeprefix("$ ")
        if not line or line.startswith("#"):
            continue
        tokens = shlex.split(line, comments=True)
        command: list[str] = []
        for token in [*tokens, ";"]:
            if token in ("&&", ";", "&", "||"):
                while command and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", command[0]):
                    command.pop(0)  # VAR=value before the command
                if command and command[0] == "hcm":
                    yield command
                command = []
            else:
                command.append(token)


def _options(command: click.Command) -> set[str]:
    return {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}


def _check_hcm_line(tokens: list[str], where: str) -> None:
    command: click.Command = main
    path: list[str] = []
    rest = tokens[1:]
    while isinstance(command, click.Group) and rest and rest[0] in command.commands:
        path.append(rest.pop(0))
        command = command.commands[path[-1]]
    assert not isinstance(command, click.Group), f"{where}: `hcm {' '.join(path)}` is a group"
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, (where, result.output)
    assert "Usage:" in result.output, (where, result.output)
    known = _options(command) | {"--help"}
    for token in rest:
        option = re.match(r"^[\[(|]*(--[a-z][\w-]*)", token)
        if option:
            assert option.group(1) in known, f"{where}: hcm {' '.join(path)} {option.group(1)}"


shell_blocks = [b for b in ALL_BLOCKS if b.lang in ("sh", "console")]


@pytest.mark.parametrize("block", shell_blocks, ids=lambda b: b.where)
def test_hcm_command_lines_exist(block: Block) -> None:
    for tokens in _command_lines(block.text):
        _check_hcm_line(tokens, block.where)


def test_the_command_line_check_can_fail() -> None:
    (good,) = _command_lines("HCM_SAM_PIN=1 hcm card read --reader R --json &\n")
    _check_hcm_line(good, "here")
    (no_option,) = _command_lines("hcm card read [--no-such-option]\n")
    with pytest.raises(AssertionError):
        _check_hcm_line(no_option, "here")
    (no_command,) = _command_lines("hcm card frobnicate\n")
    with pytest.raises(AssertionError):
        _check_hcm_line(no_command, "here")


@pytest.mark.parametrize("block", _of(""), ids=lambda b: b.where)
def test_text_blocks_hold_no_commands(block: Block) -> None:
    commands = [line for line in block.text.splitlines() if re.match(r"\s*(\$ )?hcm\s", line)]
    assert not commands, "put hcm command lines in an sh block, where they are checked"

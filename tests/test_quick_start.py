"""The README's quick start: its two commands are all a fresh machine needs.

The first command (``python3 -m pip install tox && tox -e demo``) runs the demo, the
second (``… && tox``) the checks and the tests. The fast test here keeps the README's
commands and ``tox.ini`` in step. The slow one (``tox -e fresh``; skipped otherwise)
makes a clean clone of the repository — what is committed, nothing from this working
folder — and runs the first command's ``tox -e demo`` there with a tox work folder of
its own, so tox builds the demo's environment from nothing; the journey must finish.
The second command is what CI runs (``.ci/run``): it is not run again in the clone.
"""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
QUICK_START = re.compile(r"^## Quick start\n(.*?)^## ", re.MULTILINE | re.DOTALL)
#: the tox environments CI's plain ``tox`` runs, and the slow ones it leaves out
DEFAULT_ENVS = {"lint", "type", "py311", "docs"}
OPT_IN_ENVS = {"fresh", "demo-interrupt"}


def readme_commands() -> list[str]:
    """The shell commands of the README's quick start, comments and blanks left out."""
    section = QUICK_START.search((ROOT / "README.md").read_text(encoding="utf-8"))
    assert section, "README.md has no '## Quick start' section"
    (block,) = re.findall(r"```sh\n(.*?)```", section[1], re.DOTALL)
    return [
        line.strip()
        for line in block.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def tox_ini() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(ROOT / "tox.ini", encoding="utf-8")
    return parser


def test_the_readmes_two_commands_are_the_ones_tox_defines() -> None:
    commands = [c for c in readme_commands() if "tox" in c]
    assert commands == [
        "python3 -m pip install tox && tox -e demo",
        "python3 -m pip install tox && tox",
    ], commands
    ini = tox_ini()
    env_list = set(ini["tox"]["env_list"].replace(",", " ").split())
    assert env_list == DEFAULT_ENVS
    assert ini.has_section("testenv:demo")
    assert ini["testenv:demo"]["commands"].strip().startswith("hcm demo")
    for env in OPT_IN_ENVS:  # slow: run on purpose, never by the plain `tox`
        assert ini.has_section(f"testenv:{env}"), env
        assert env not in env_list, env
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    testing = (ROOT / "docs" / "testing.md").read_text(encoding="utf-8")
    for env in OPT_IN_ENVS:
        assert f"tox -e {env}" in readme, f"README.md does not mention tox -e {env}"
        assert f"tox -e {env}" in testing, f"docs/testing.md does not mention tox -e {env}"


def _tox() -> list[str]:
    """How to run tox here: this interpreter's, else the one on PATH."""
    try:
        import tox  # noqa: F401
    except ImportError:
        found = shutil.which("tox")
        if found is None:
            pytest.skip("tox is not installed (tox -e fresh installs it)")
        return [found]
    return [sys.executable, "-m", "tox"]


def _clean_environment(home: Path) -> dict[str, str]:
    """The environment of a shell on a fresh machine: nothing of this checkout or of the
    tox run around this test (its virtualenv, its PYTHONPATH, HCM_* settings)."""
    keep = {"PATH", "HOME", "LANG", "LC_ALL", "TERM", "USER", "LOGNAME", "TMPDIR"}
    env = {k: v for k, v in os.environ.items() if k in keep or k.startswith("PIP_")}
    venv = os.environ.get("VIRTUAL_ENV")
    if venv:  # the virtualenv this test runs in is not on a fresh machine's PATH
        env["PATH"] = os.pathsep.join(
            p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(venv)
        )
    env["TMPDIR"] = str(home)
    return env


@pytest.mark.fresh
@pytest.mark.timeout(3600)
def test_the_first_command_runs_the_demo_in_a_clean_clone(tmp_path: Path) -> None:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: there is nothing to clone")
    tox = _tox()
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=300)
    head = subprocess.run(
        ["git", "-C", str(clone), "log", "-1", "--format=%h %s"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    first = readme_commands()[0]
    assert first.endswith("tox -e demo"), first
    env = _clean_environment(tmp_path)
    started = time.monotonic()
    done = subprocess.run(
        [*tox, "-e", "demo", "--workdir", str(tmp_path / "tox")],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=3300,
        check=False,
    )
    took = time.monotonic() - started
    out = done.stdout + done.stderr
    print(f"clone of {head}: tox -e demo took {took:.0f} s, exit {done.returncode}")
    assert done.returncode == 0, out[-6000:]
    assert "Traceback" not in out, out[-6000:]
    assert "FAILED" not in done.stdout, done.stdout[-6000:]
    steps = re.findall(r"^\[(\d+)/(\d+)\] ", done.stdout, re.MULTILINE)
    assert steps, done.stdout[-6000:]
    last = int(steps[-1][1])
    assert [int(n) for n, _of in steps] == list(range(1, last + 1))
    assert "journey complete in" in done.stdout
    # the second command's tox.ini is whole in the clone (its run is CI's own)
    listed = subprocess.run(
        [*tox, "list", "--no-desc", "--workdir", str(tmp_path / "tox")],
        cwd=clone, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert set(listed.stdout.split()) >= DEFAULT_ENVS, listed.stdout

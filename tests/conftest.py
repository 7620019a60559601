"""Shared fixtures. The Middleware fixtures come from hcmiddleware.testing (pytest11)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from importlib import invalidate_caches
from pathlib import Path

import pytest
import sqlalchemy as sa

Installer = Callable[..., str]

PG_URL = os.environ.get("HCM_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def fresh_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each kind, as a URL (PostgreSQL: a schema of its own)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    name = f"hcm_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{name}"'))
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{name}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{name}" CASCADE'))
        admin.dispose()


@pytest.fixture(autouse=True)
def default_data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config without data_dir keeps its data in the test's folder, not the user's."""
    folder = tmp_path / "default-data"
    monkeypatch.setenv("HCM_DATA_DIR", str(folder))
    return folder


@pytest.fixture
def install_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Installer:
    """Install a plugin distribution into a folder on sys.path, as pip would lay it out.

    ``install_plugin(name, source, target="mod:attr")`` writes the module ``source`` and
    a ``*.dist-info`` with an ``hcmiddleware`` entry point, so discovery goes through
    ``importlib.metadata`` exactly as for a pip-installed adapter.
    """
    site = tmp_path / "site-packages"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    added: list[str] = []

    def install(name: str, source: str, *, target: str | None = None, version: str = "1.0") -> str:
        module = "hcm_test_" + name.replace("-", "_")
        (site / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        dist = site / f"{module}-{version}.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {module}\nVersion: {version}\n", encoding="utf-8"
        )
        (dist / "entry_points.txt").write_text(
            f"[hcmiddleware]\n{name} = {target or module}\n", encoding="utf-8"
        )
        added.append(module)
        invalidate_caches()
        return module

    yield install  # type: ignore[misc]
    for module in added:
        sys.modules.pop(module, None)


def _orphaned_pcscds() -> set[int]:
    """pcscd processes whose starter is gone (adopted by init), by their program name.

    Only orphans count: a pcscd another test run on the machine started, and still owns,
    is not this suite's business.
    """
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                program = (entry / "cmdline").read_bytes().split(b"\0")[0]
                parent = (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
            except (OSError, IndexError):
                continue
            if program.endswith(b"pcscd") and parent == "1":
                found.add(int(entry.name))
    return found


@pytest.fixture(autouse=True, scope="module")
def _no_pcscd_left_running(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test module that orphans a pcscd fails by name, and the orphan is stopped.

    pcscd runs in a session of its own (a Ctrl-C must reach the program that started it,
    not pcscd), so a program killed without its cleanup leaves it running; the orphan
    then owns the machine's PC/SC socket and later modules would fail in its stead.
    """
    before = _orphaned_pcscds()
    yield
    deadline = time.monotonic() + 10
    while (left := _orphaned_pcscds() - before) and time.monotonic() < deadline:
        time.sleep(0.1)
    if left:
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        pytest.fail(f"{request.module.__name__} left pcscd running (pids {sorted(left)})")

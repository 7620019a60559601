"""Shared fixtures. The Middleware fixtures come from hcmiddleware.testing (pytest11)."""

from __future__ import annotations

import os
import sys
import textwrap
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


#: markers of slow tests that run only in their own tox environment, selected with -m
OPT_IN = {"fresh": "tox -e fresh", "interrupt_matrix": "tox -e demo-interrupt"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the opt-in tests unless the marker expression names their marker."""
    chosen = str(config.getoption("markexpr") or "")
    for item in items:
        for marker, where in OPT_IN.items():
            if item.get_closest_marker(marker) is not None and marker not in chosen:
                item.add_marker(pytest.mark.skip(reason=f"slow: runs in '{where}'"))

"""Shared fixtures. The Middleware fixtures come from hcmiddleware.testing (pytest11)."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable
from importlib import invalidate_caches
from pathlib import Path

import pytest

Installer = Callable[..., str]


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

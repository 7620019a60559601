"""The pytest plugin: fixtures for a Middleware on embedded defaults and a hook recorder."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

import pytest

from hcmiddleware.config import Config, parse_config
from hcmiddleware.runtime import Middleware
from hcmiddleware.testing import audit_key, empi_keys
from hcmiddleware.testing.recorder import HookRecorder


class MiddlewareFactory(Protocol):
    """The type of the ``hcm_make_middleware`` fixture."""

    def __call__(
        self,
        *,
        plugins: Mapping[str, object] | Iterable[object] = (),
        enabled: Iterable[str] = (),
        settings: Mapping[str, Mapping[str, Any]] | None = None,
        **sections: Mapping[str, Any],
    ) -> Middleware: ...


def embedded_config(data_dir: Path, **sections: Any) -> Config:
    """A Config on embedded defaults with its data (index keys, audit key) in ``data_dir``."""
    data: dict[str, Any] = {"middleware": {"data_dir": str(data_dir)}}
    for name, section in sections.items():
        data.setdefault(name, {}).update(section)
    keys = Path(data["middleware"]["data_dir"]) / "keys"
    if "empi" not in sections:
        # in the data folder actually used: two Middlewares on one folder share keys
        data["empi"] = empi_keys(keys)
    if "signing_key" not in data.get("audit", {}):
        data.setdefault("audit", {}).update(audit_key(keys))
    return parse_config(data, base_dir=data_dir)


@pytest.fixture
def hcm_config(tmp_path: Path) -> Config:
    """A Config on embedded defaults whose data folder is the test's temporary folder."""
    return embedded_config(tmp_path / "hcm-data")


@pytest.fixture
def hcm_make_middleware(tmp_path: Path) -> Iterator[MiddlewareFactory]:
    """Factory for started Middlewares; each is closed at the end of the test."""
    made: list[Middleware] = []

    def make(
        *,
        plugins: Mapping[str, object] | Iterable[object] = (),
        enabled: Iterable[str] = (),
        settings: Mapping[str, Mapping[str, Any]] | None = None,
        **sections: Mapping[str, Any],
    ) -> Middleware:
        plugin_section: dict[str, Any] = dict(sections.pop("plugins", {}))
        plugin_section["enabled"] = list(enabled)
        for name, values in (settings or {}).items():
            plugin_section[name] = dict(values)
        config = embedded_config(
            tmp_path / f"hcm-data-{len(made)}", plugins=plugin_section, **sections
        )
        mw = Middleware(config, plugins=plugins)
        made.append(mw)
        return mw

    yield make
    for mw in reversed(made):
        mw.close()


@pytest.fixture
def hcm_middleware(hcm_make_middleware: MiddlewareFactory) -> Middleware:
    """A started Middleware on embedded defaults, with no plugins but the built-ins."""
    return hcm_make_middleware()


@pytest.fixture
def hcm_recorder(hcm_middleware: Middleware) -> Iterator[HookRecorder]:
    """Records every hook call made through ``hcm_middleware``."""
    recorder = HookRecorder(hcm_middleware)
    yield recorder
    recorder.detach()

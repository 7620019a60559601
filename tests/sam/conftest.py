"""Fixtures of the SAM tests."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sam_vectors import golden_keyset_data

from hcmiddleware.card.guard import PROCESS_GUARD
from hcmiddleware.sam.keyset import KeySet


@pytest.fixture
def golden_keyset() -> KeySet:
    return KeySet.from_data(golden_keyset_data())


@pytest.fixture
def golden_keyset_3des() -> KeySet:
    return KeySet.from_data(golden_keyset_data("3DES"))


@pytest.fixture
def write_json(tmp_path: Path) -> Callable[..., Path]:
    def write(data: object, name: str = "keys.json") -> Path:
        path = tmp_path / name
        path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
        return path

    return write


@pytest.fixture(autouse=True)
def _fresh_process_guard() -> Iterator[None]:
    """Every test starts with a process guard that holds no card back."""
    PROCESS_GUARD.clear()
    yield
    PROCESS_GUARD.clear()

"""Fixtures: a migrated database on SQLite and on the real PostgreSQL, and key material."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from hcmiddleware import storage
from hcmiddleware.empi.index import ResidentIndex
from hcmiddleware.empi.protection import Protector

PG_URL = os.environ.get("HCM_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture
def pg_schema() -> Iterator[tuple[str, str]]:
    """A uniquely named schema in the test database, dropped afterwards."""
    name = f"empi_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{name}"'))
    try:
        yield PG_URL, name
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{name}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An empty database of each kind."""
    if request.param == "sqlite":
        eng = storage.create_engine(f"sqlite:///{tmp_path / 'empi.db'}")
        yield eng
        eng.dispose()
        return
    url, schema = request.getfixturevalue("pg_schema")
    eng = storage.create_engine(url, connect_args={"options": f"-csearch_path={schema}"})
    yield eng
    eng.dispose()


def make_keys() -> dict[str, bytes]:
    """Fresh random master and index keys."""
    return {"2026a": os.urandom(32), "2026b": os.urandom(32), "index": os.urandom(32)}


@pytest.fixture
def keys() -> dict[str, bytes]:
    return make_keys()


@pytest.fixture
def protector(keys: dict[str, bytes]) -> Protector:
    return Protector({"2026a": keys["2026a"]}, "2026a", keys["index"])


@pytest.fixture
def index(engine: Engine, protector: Protector) -> ResidentIndex:
    return ResidentIndex(engine, protector)

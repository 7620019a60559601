"""Two terminals' processes on one database: a copied code is accepted once per terminal
and step, whoever is quicker, on SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from hcmiddleware import Middleware
from hcmiddleware.errors import EhcReplayError
from hcmiddleware.testing import ehc_keys, empi_keys
from hcmiddleware.testing.plugin import embedded_config

from .conftest import enrol

PG = "postgresql+psycopg://postgres@127.0.0.1:5432"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'shared.db'}"
        return
    admin = sa.create_engine(f"{PG}/test", isolation_level="AUTOCOMMIT")
    name = f"hcm_ehc_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{PG}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_a_copied_code_is_accepted_once(database_url: str, tmp_path: Path) -> None:
    def terminal(n: int) -> Middleware:
        config = embedded_config(
            tmp_path / f"terminal-{n}",
            database={"url": database_url},
            empi=empi_keys(tmp_path / "index-keys"),
            ehc=ehc_keys(tmp_path / "ehc-keys", algorithm="ed25519"),
        )
        return Middleware(config)

    terminals = [terminal(n) for n in range(4)]
    try:
        resident = enrol(terminals[0])
        codes = [terminals[0].ehc.dynamic_code(terminals[0].ehc.issue(resident.resident_id))
                 for _ in range(5)]  # fmt: skip
        for mw in terminals:  # open everything before the race
            mw.ehc.replay.purge()
            assert mw.ehc.keys
            assert mw.residents.index
        for code in codes:
            accepted: list[int] = []
            refused: list[int] = []
            start = threading.Barrier(len(terminals))

            def scan(
                n: int,
                mw: Middleware,
                code: str = code,
                start: threading.Barrier = start,
                accepted: list[int] = accepted,
                refused: list[int] = refused,
            ) -> None:
                start.wait()
                try:
                    mw.ehc.verify(code, care_step="registration", terminal_id="kiosk-1")
                    accepted.append(n)
                except EhcReplayError:
                    refused.append(n)

            threads = [
                threading.Thread(target=scan, args=(n, mw)) for n, mw in enumerate(terminals)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
            assert len(accepted) == 1, (accepted, refused)
            assert len(refused) == len(terminals) - 1
    finally:
        for mw in terminals:
            mw.close()

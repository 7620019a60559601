"""A batch racing another writer on a shared (PostgreSQL) index: retried, nobody doubled.

On SQLite a batch holds the write lock from its first read, so nothing can come in
between; on PostgreSQL another hospital's enrolment can commit between the batch's
reads and its COPY. The unique identifier then stops the COPY, and the batch runs
again and links to what the other writer made.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from hcmiddleware.empi.identity import Sex
from hcmiddleware.empi.index import Enrolment, ResidentIndex
from hcmiddleware.empi.protection import Protector
from hcmiddleware.empi.store import BatchStore

PG_ONLY = pytest.mark.parametrize(
    "engine", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)

ZHANG: dict[str, Any] = {
    "name": "张秀英",
    "sex": Sex.FEMALE,
    "id_number": "11010519491231002X",
    "card_number": "H11010500000001",
}
LI: dict[str, Any] = {
    "name": "李建国",
    "sex": Sex.MALE,
    "id_number": "110105194912310038",
}


def _count(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(sa.text(f"SELECT count(*) FROM {table}")) or 0)


@PG_ONLY
def test_batch_that_loses_a_race_is_retried_and_links(
    engine: Engine, index: ResidentIndex, keys: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    other = ResidentIndex(
        engine, Protector({"2026a": keys["2026a"]}, "2026a", keys["index"]), migrate=False
    )
    batch = [
        index.prepare(**ZHANG, source="file", record_id="1"),
        index.prepare(**LI, source="file", record_id="2"),
    ]
    prefetch = BatchStore.prefetch
    raced: list[str] = []

    def prefetch_then_lose_the_race(self: BatchStore, *args: Any, **kwargs: Any) -> None:
        prefetch(self, *args, **kwargs)
        if not raced:  # the kiosk commits Zhang after the batch has looked for her
            raced.append(other.enrol(**ZHANG, source="kiosk", record_id="k1").resident.resident_id)

    monkeypatch.setattr(BatchStore, "prefetch", prefetch_then_lose_the_race)
    results = index.enrol_batch(batch)

    assert all(isinstance(r, Enrolment) for r in results), results
    zhang, li = (r for r in results if isinstance(r, Enrolment))
    assert not zhang.created
    assert zhang.resident.resident_id == raced[0]
    assert li.created
    assert _count(engine, "empi_residents") == 2
    assert _count(engine, "empi_source_records") == 3
    assert index.known_records("file", ["1", "2"]) == {"1", "2"}

"""After an import, neither the SQLite file nor a PostgreSQL dump holds plaintext identity."""

from __future__ import annotations

import datetime as dt
import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa

from hcmiddleware import storage
from hcmiddleware.empi.identity import check_character
from hcmiddleware.empi.index import ResidentIndex
from hcmiddleware.empi.protection import Protector

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂"


def _people(n: int, seed: int = 7) -> list[dict[str, object]]:
    rng = random.Random(seed)
    people = []
    for i in range(n):
        born = dt.date(1930, 1, 1) + dt.timedelta(days=rng.randrange(30000))
        body = f"440305{born:%Y%m%d}{rng.randrange(1000):03d}"
        check = check_character(body)
        # Every fourth number fails its check character: kept unverified, as encrypted.
        dirty = i % 4 == 3
        if dirty:
            check = "0" if check != "0" else "1"
        people.append(
            {
                "name": rng.choice(SURNAMES) + "".join(rng.choices(GIVEN, k=2)),
                "sex": 1 if int(body[16]) % 2 else 2,
                "strict": not dirty,
                "id_number": body + check,
                "phone": f"13{rng.randrange(10**9):09d}",
                "address": f"广东省深圳市南山区科技园{i}号",
                "card_number": f"H44030{i:09d}",
                "source": "import",
                "record_id": f"R{i}",
            }
        )
    return people


def _needles(people: list[dict[str, object]]) -> dict[str, bytes]:
    needles: dict[str, bytes] = {}
    for p in people:
        for field in ("id_number", "phone", "name", "address"):
            text = str(p[field])
            needles[f"{field} utf-8 {text}"] = text.encode()
            if not text.isascii():
                needles[f"{field} gbk {text}"] = text.encode("gbk")
        # The birth-date run of the ID number would betray it too.
        needles[f"id body {p['id_number']}"] = str(p["id_number"])[6:17].encode()
    return needles


def _assert_clean(blob: bytes, needles: dict[str, bytes]) -> None:
    found = [label for label, needle in needles.items() if needle in blob]
    assert found == [], f"plaintext found: {found[:5]}"


def _import(index: ResidentIndex, people: list[dict[str, object]]) -> None:
    for person in people:
        index.enrol(**person)  # type: ignore[arg-type]


def test_sqlite_file_holds_no_plaintext(tmp_path: Path) -> None:
    people = _people(200)
    path = tmp_path / "empi.db"
    engine = storage.create_engine(f"sqlite:///{path}")
    protector = Protector({"k1": os.urandom(32)}, "k1", os.urandom(32))
    index = ResidentIndex(engine, protector)
    _import(index, people)
    # The positive control: the data really is there and readable through the index.
    assert index.lookup("id_number", str(people[0]["id_number"])) is not None
    (dirty,) = index.search(id_number=str(people[3]["id_number"]), include_new=True)
    assert dirty.resident.unverified_id_number == people[3]["id_number"]
    blob = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("empi.db"))
    assert len(blob) > 100_000
    _assert_clean(blob, _needles(people))
    engine.dispose()
    # After the WAL is folded into the main file, still nothing.
    _assert_clean(path.read_bytes(), _needles(people))


def test_scan_would_see_plaintext(tmp_path: Path) -> None:
    # Guard against a scan that cannot fail: a plaintext column is found by the same scan.
    people = _people(5)
    path = tmp_path / "plain.db"
    engine = storage.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (v TEXT)"))
        conn.execute(sa.text("INSERT INTO t VALUES (:v)"), [{"v": p["name"]} for p in people])
    engine.dispose()
    with pytest.raises(AssertionError, match="plaintext found"):
        _assert_clean(path.read_bytes(), _needles(people))


@pytest.mark.postgres
def test_postgresql_dump_holds_no_plaintext(pg_schema: tuple[str, str]) -> None:
    pg_dump = shutil.which("pg_dump")
    assert pg_dump, "pg_dump is needed (Debian package postgresql-client)"
    url, schema = pg_schema
    people = _people(200, seed=11)
    engine = storage.create_engine(url, connect_args={"options": f"-csearch_path={schema}"})
    index = ResidentIndex(engine, Protector({"k1": os.urandom(32)}, "k1", os.urandom(32)))
    _import(index, people)
    engine.dispose()
    parsed = sa.engine.make_url(url)
    dump = subprocess.run(
        [
            pg_dump,
            "-h",
            parsed.host or "127.0.0.1",
            "-p",
            str(parsed.port or 5432),
            "-U",
            parsed.username or "postgres",
            "-n",
            schema,
            "--data-only",
            parsed.database or "test",
        ],
        check=True,
        capture_output=True,
    ).stdout
    assert b"COPY" in dump
    assert f"R{len(people) - 1}".encode() in dump
    _assert_clean(dump, _needles(people))
    # bytea is dumped as hex: the plaintext in hex must not be there either.
    hex_needles = {k: v.hex().encode() for k, v in _needles(people).items()}
    _assert_clean(dump, hex_needles)

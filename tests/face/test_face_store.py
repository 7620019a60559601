"""Encrypted template store on SQLite and PostgreSQL, and enrolment kept in step."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import sample_faces as faces
import sqlalchemy as sa
from aesgcm_cipher import AesGcmCipher, AesGcmKeyRing
from sqlalchemy.engine import Engine

from hcmiddleware.errors import FaceTemplateError, NoFaceError, StorageError
from hcmiddleware.face.enrolment import FaceEnrolment
from hcmiddleware.face.store import FaceTemplateRow, TemplateStore
from hcmiddleware.face.verify import FaceService
from hcmiddleware.storage import Base, create_engine

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _random_templates(n: int, seed: int = 1) -> np.ndarray:
    m = np.random.default_rng(seed).normal(size=(n, 128)).astype(np.float32)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'faces.db'}")
    Base.metadata.create_all(engine, tables=[FaceTemplateRow.__table__])  # type: ignore[list-item]
    yield engine
    engine.dispose()


@pytest.fixture
def pg_engine() -> Iterator[Engine]:
    schema = f"face_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    engine = create_engine(PG_URL, connect_args={"options": f"-csearch_path={schema}"})
    try:
        Base.metadata.create_all(engine, tables=[FaceTemplateRow.__table__])  # type: ignore[list-item]
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest) -> Engine:
    name = "sqlite_engine" if request.param == "sqlite" else "pg_engine"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


def _store(engine: Engine, cipher: AesGcmCipher | None = None) -> TemplateStore:
    return TemplateStore(
        engine, cipher or AesGcmCipher(), key_id="k1", backend="dlib", dimension=128
    )


def test_save_load_replace_delete(engine: Engine) -> None:
    store = _store(engine)
    a, b = _random_templates(2)
    assert store.load("R1") is None
    store.save("R1", a)
    loaded = store.load("R1")
    assert loaded is not None
    np.testing.assert_allclose(loaded, a, atol=1e-6)
    store.save("R1", b)  # re-enrolment replaces
    loaded = store.load("R1")
    assert loaded is not None
    np.testing.assert_allclose(loaded, b, atol=1e-6)
    assert store.count() == 1
    assert store.delete("R1") is True
    assert store.delete("R1") is False
    assert store.load("R1") is None


def test_iter_templates_streams_every_row(engine: Engine) -> None:
    store = _store(engine)
    m = _random_templates(1200)  # more than one fetch batch
    assert store.save_many((f"R{i:05d}", t) for i, t in enumerate(m)) == 1200
    got = dict(store.iter_templates())
    assert len(got) == 1200
    np.testing.assert_allclose(got["R00042"], m[42], atol=1e-6)


def test_nothing_readable_at_rest(engine: Engine) -> None:
    store = _store(engine)
    t = _random_templates(1)[0]
    # A long id, so that random ciphertext cannot contain it by chance.
    store.save("RESIDENT-0000042", t)
    with engine.connect() as conn:
        row = conn.execute(sa.select(FaceTemplateRow.__table__)).one()
    raw = bytes(row.template)
    assert t.astype("<f4").tobytes()[:16] not in raw
    assert b"RESIDENT-0000042" not in raw
    assert b"HCMFT1" not in raw
    assert row.key_id == "k1"
    assert row.backend == "dlib"
    assert row.created is not None


def test_sqlite_file_holds_no_template_bytes(sqlite_engine: Engine, tmp_path: Path) -> None:
    store = _store(sqlite_engine)
    templates = _random_templates(20)
    for i, t in enumerate(templates):
        store.save(f"R{i}", t)
    sqlite_engine.dispose()
    blob = b"".join(p.read_bytes() for p in tmp_path.glob("faces.db*"))
    for t in templates:
        assert t.astype("<f4").tobytes()[:8] not in blob


def test_swapped_ciphertexts_are_refused(engine: Engine) -> None:
    # Someone with write access copies their own template onto a victim's row.
    store = _store(engine)
    victim, attacker = _random_templates(2)
    store.save("VICTIM", victim)
    store.save("ATTACKER", attacker)
    table = FaceTemplateRow.__table__
    with engine.begin() as conn:
        stolen = conn.execute(
            sa.select(table.c.template).where(table.c.resident_id == "ATTACKER")
        ).scalar_one()
        conn.execute(table.update().where(table.c.resident_id == "VICTIM").values(template=stolen))
    with pytest.raises(FaceTemplateError, match="belongs to another row"):
        store.load("VICTIM")
    with pytest.raises(FaceTemplateError):
        list(store.iter_templates())


def test_wrong_key_and_altered_bytes_are_refused(engine: Engine) -> None:
    store = _store(engine)
    store.save("R1", _random_templates(1)[0])
    with pytest.raises(FaceTemplateError, match="does not decrypt") as info:
        _store(engine, AesGcmCipher()).load("R1")
    assert info.value.hint
    table = FaceTemplateRow.__table__
    with engine.begin() as conn:
        ct = bytearray(conn.execute(sa.select(table.c.template)).scalar_one())
        ct[20] ^= 0x01
        conn.execute(table.update().values(template=bytes(ct)))
    with pytest.raises(FaceTemplateError, match="does not decrypt"):
        store.load("R1")


def test_templates_of_another_backend_are_not_loaded(engine: Engine) -> None:
    cipher = AesGcmCipher()
    other = TemplateStore(engine, cipher, key_id="k1", backend="other", dimension=128)
    other.save("R1", _random_templates(1)[0])
    mine = TemplateStore(engine, cipher, key_id="k1", backend="dlib", dimension=128)
    assert list(mine.iter_templates()) == []
    with pytest.raises(FaceTemplateError, match="made by backend 'other'"):
        mine.load("R1")


def test_missing_table_is_a_storage_error(tmp_path: Path) -> None:
    store = _store(create_engine(f"sqlite:///{tmp_path / 'empty.db'}"))
    with pytest.raises(StorageError, match="face_templates"):
        store.save("R1", _random_templates(1)[0])
    with pytest.raises(StorageError):
        store.load("R1")


def test_repr_shows_no_template() -> None:
    row = FaceTemplateRow(resident_id="R1", backend="dlib", template=b"secret", key_id="k1")
    assert "secret" not in repr(row)


# --- enrolment: store + gallery ------------------------------------------------------


@pytest.fixture
def enrolment(engine: Engine, service: FaceService) -> FaceEnrolment:
    return FaceEnrolment.open(service, _store(engine))


def test_enrol_then_search_then_reload(
    enrolment: FaceEnrolment,
    engine: Engine,
    service: FaceService,
    people: dict[str, np.ndarray],
) -> None:
    for name in ("astronaut", "hopper", "hanks", "t1_0"):
        result = enrolment.enrol(name, faces.card_photo(people[name]))
        assert result.status == "enrolled"
    hits = enrolment.search(faces.to_jpeg(faces.noise(people["hopper"])), top=2)
    assert hits[0].resident_id == "hopper"
    assert hits[0].distance <= service.settings.thresholds.enrolled
    # A restart loads the same gallery from the encrypted store.
    again = FaceEnrolment.open(service, enrolment.store)
    assert len(again.gallery) == 4
    assert again.search(faces.to_jpeg(people["hanks"]), top=1)[0].resident_id == "hanks"


def test_same_face_under_a_second_record_is_a_duplicate(
    enrolment: FaceEnrolment, people: dict[str, np.ndarray]
) -> None:
    enrolment.enrol("R-first", faces.card_photo(people["t1_2"]))
    enrolment.enrol("R-other", faces.card_photo(people["t1_3"]))
    result = enrolment.enrol("R-second", faces.to_jpeg(faces.light(people["t1_2"], 1.3)))
    assert result.status == "duplicate"
    assert [d.resident_id for d in result.duplicates] == ["R-first"]
    assert "R-second" not in enrolment.gallery
    assert enrolment.store.load("R-second") is None
    # After review, the operator may enrol anyway.
    forced = enrolment.enrol(
        "R-second", faces.to_jpeg(faces.light(people["t1_2"], 1.3)), allow_duplicates=True
    )
    assert forced.status == "enrolled"
    assert forced.duplicates[0].resident_id == "R-first"


def test_re_enrolling_the_same_resident_is_not_a_duplicate(
    enrolment: FaceEnrolment, people: dict[str, np.ndarray]
) -> None:
    enrolment.enrol("R1", faces.card_photo(people["hanks"]))
    result = enrolment.enrol("R1", faces.to_jpeg(people["hanks"]))
    assert result.status == "enrolled"
    assert result.duplicates == []
    assert len(enrolment.gallery) == 1
    assert enrolment.store.count() == 1


def test_unusable_photo_enrols_nothing(
    enrolment: FaceEnrolment, people: dict[str, np.ndarray]
) -> None:
    with pytest.raises(NoFaceError):
        enrolment.enrol("R1", faces.to_jpeg(np.full((300, 300, 3), 200, np.uint8)))
    assert len(enrolment.gallery) == 0
    assert enrolment.store.count() == 0


def test_remove_forgets_in_store_and_gallery(
    enrolment: FaceEnrolment, people: dict[str, np.ndarray]
) -> None:
    enrolment.enrol("R1", faces.card_photo(people["hopper"]))
    assert enrolment.remove("R1") is True
    assert enrolment.remove("R1") is False
    assert enrolment.search(faces.to_jpeg(people["hopper"])) == []
    assert enrolment.store.load("R1") is None


def test_failed_write_leaves_the_gallery_unchanged(
    enrolment: FaceEnrolment, engine: Engine, people: dict[str, np.ndarray]
) -> None:
    FaceTemplateRow.__table__.drop(engine)  # type: ignore[attr-defined]
    with pytest.raises(StorageError):
        enrolment.enrol("R1", faces.card_photo(people["hopper"]))
    assert "R1" not in enrolment.gallery


def test_concurrent_enrolments_of_one_face_store_only_one(
    enrolment: FaceEnrolment, people: dict[str, np.ndarray]
) -> None:
    photos = [faces.to_jpeg(faces.light(people["t1_0"], f)) for f in (0.8, 1.0, 1.2, 1.3)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda i: enrolment.enrol(f"R{i}", photos[i]), range(len(photos))))
    assert sorted(r.status for r in results) == ["duplicate"] * 3 + ["enrolled"]
    assert enrolment.store.count() == 1
    assert len(enrolment.gallery) == 1


def test_reload_sees_what_another_process_enrolled(
    engine: Engine, service: FaceService, people: dict[str, np.ndarray]
) -> None:
    cipher = AesGcmCipher()
    here = FaceEnrolment.open(service, _store(engine, cipher))
    there = FaceEnrolment.open(service, _store(engine, cipher))
    there.enrol("R1", faces.card_photo(people["hanks"]))
    assert here.search(faces.to_jpeg(people["hanks"])) == []
    here.reload()
    assert here.search(faces.to_jpeg(people["hanks"]))[0].resident_id == "R1"


def test_key_rotation_reencrypts_old_rows_in_batches(engine: Engine) -> None:
    old, new = os.urandom(32), os.urandom(32)
    templates = _random_templates(7)
    before = TemplateStore(
        engine, AesGcmKeyRing({"k1": old}, "k1"), key_id="k1", backend="dlib", dimension=128
    )
    for i, t in enumerate(templates):
        before.save(f"R{i}", t)
    ring = AesGcmKeyRing({"k1": old, "k2": new}, "k2")
    after = TemplateStore(engine, ring, key_id="k2", backend="dlib", dimension=128)
    after.save("R0", templates[0])  # already under k2: left alone by reencrypt
    assert after.reencrypt(batch=2) == 6
    assert after.reencrypt(batch=2) == 0
    table = FaceTemplateRow.__table__
    with engine.connect() as conn:
        assert set(conn.execute(sa.select(table.c.key_id)).scalars()) == {"k2"}
    # The old key can now be retired: every row opens with the new one alone.
    retired = TemplateStore(
        engine, AesGcmKeyRing({"k2": new}, "k2"), key_id="k2", backend="dlib", dimension=128
    )
    loaded = dict(retired.iter_templates())
    for i, t in enumerate(templates):
        np.testing.assert_allclose(loaded[f"R{i}"], t, atol=1e-6)


def test_reencrypt_refuses_a_swapped_row_and_keeps_the_rest(engine: Engine) -> None:
    ring = AesGcmKeyRing({"k1": os.urandom(32)}, "k1")
    store = TemplateStore(engine, ring, key_id="k1", backend="dlib", dimension=128)
    a, b = _random_templates(2)
    store.save("A", a)
    store.save("B", b)
    table = FaceTemplateRow.__table__
    with engine.begin() as conn:
        stolen = conn.execute(
            sa.select(table.c.template).where(table.c.resident_id == "B")
        ).scalar_one()
        conn.execute(table.update().where(table.c.resident_id == "A").values(template=stolen))
    ring.current = "k2"
    ring._keys["k2"] = ring._keys["k1"]
    rotated = TemplateStore(engine, ring, key_id="k2", backend="dlib", dimension=128)
    with pytest.raises(FaceTemplateError, match="another row"):
        rotated.reencrypt()
    with engine.connect() as conn:
        # The failed batch rolled back: nothing half-rotated.
        assert set(conn.execute(sa.select(table.c.key_id)).scalars()) == {"k1"}


@pytest.mark.parametrize("resident_id", ["", "R" * 65])
def test_resident_id_length_is_checked_before_writing(engine: Engine, resident_id: str) -> None:
    store = _store(engine)
    with pytest.raises(FaceTemplateError, match="1 to 64 characters"):
        store.save(resident_id, _random_templates(1)[0])
    assert store.count() == 0


def test_save_many_is_all_or_nothing(engine: Engine) -> None:
    store = _store(engine)
    m = _random_templates(3)
    with pytest.raises(FaceTemplateError):
        store.save_many([("A", m[0]), ("B", m[1]), ("C", np.zeros(128, np.float32))])
    assert store.count() == 0
    store.save_many([("A", m[0]), ("B", m[1])])
    store.save_many([("B", m[2]), ("C", m[2])])  # B replaced, C added
    loaded = store.load("B")
    assert loaded is not None
    np.testing.assert_allclose(loaded, m[2], atol=1e-6)
    assert store.count() == 3

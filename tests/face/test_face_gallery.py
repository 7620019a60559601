"""1:N gallery: exact answers, the same with numpy and faiss, kept in step."""

from __future__ import annotations

import sys
from collections.abc import Callable

import numpy as np
import pytest
import sample_faces as faces

from hcmiddleware.errors import FaceBackendError, GalleryError
from hcmiddleware.face.backend import Template
from hcmiddleware.face.dlib_backend import DlibBackend
from hcmiddleware.face.gallery import Engine, FaceGallery

ENGINES: list[Engine] = ["numpy", "faiss", "faiss-fp16"]


def _random_templates(n: int, dim: int = 128, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    m = rng.normal(size=(n, dim)).astype(np.float32)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def _brute_force(
    ids: list[str], matrix: np.ndarray, query: np.ndarray, k: int
) -> list[tuple[str, float]]:
    d = np.linalg.norm(matrix.astype(np.float64) - query.astype(np.float64), axis=1)
    order = np.argsort(d)[:k]
    return [(ids[i], float(d[i])) for i in order]


@pytest.mark.parametrize("engine", ENGINES)
def test_search_is_exact(engine: Engine) -> None:
    ids = [f"r{i}" for i in range(3000)]
    matrix = _random_templates(3000)
    gallery = FaceGallery.from_templates(
        zip(ids, matrix, strict=True), dimension=128, engine=engine
    )
    assert len(gallery) == 3000
    for query in _random_templates(20, seed=7):
        hits = gallery.search(query, top=10)
        expected = _brute_force(ids, matrix, query, 10)
        assert [h.resident_id for h in hits] == [e[0] for e in expected]
        assert [h.distance for h in hits] == pytest.approx([e[1] for e in expected], abs=1e-4)


def test_every_engine_gives_the_same_answers_through_edits() -> None:
    matrix = _random_templates(2000, seed=3)
    replacements = _random_templates(300, seed=4)
    galleries = [FaceGallery(128, engine=e) for e in ENGINES]
    for g in galleries:
        g.add_many([f"r{i}" for i in range(2000)], matrix)
        for i in range(0, 2000, 7):
            assert g.remove(f"r{i}")
        for i in range(300):
            g.replace(f"r{i * 5}", replacements[i])
        g.add("new", matrix[0])
    assert len({len(g) for g in galleries}) == 1
    for query in _random_templates(25, seed=9):
        first, *others = (g.search(query, top=8) for g in galleries)
        for other in others:
            assert [h.resident_id for h in other] == [h.resident_id for h in first]
            assert [h.distance for h in other] == pytest.approx(
                [h.distance for h in first], abs=1e-5
            )


@pytest.mark.parametrize("engine", ENGINES)
def test_kept_in_step_add_replace_remove(engine: Engine) -> None:
    a, b, c = _random_templates(3, seed=11)
    g = FaceGallery(128, engine=engine)
    g.add("alice", a)
    g.add("bob", b)
    assert g.search(a, top=1)[0].resident_id == "alice"
    assert g.search(a, top=1)[0].distance == pytest.approx(0.0, abs=1e-3)
    g.replace("alice", c)
    assert all(h.distance > 0.5 for h in g.search(a, top=2))  # a is gone
    assert g.search(c, top=1)[0].resident_id == "alice"
    assert g.remove("bob") is True
    assert g.remove("bob") is False
    assert "bob" not in g
    assert [h.resident_id for h in g.search(b, top=5)] == ["alice"]
    g.replace("carol", b)  # replace adds when absent
    assert len(g) == 2


@pytest.mark.parametrize("engine", ENGINES)
def test_empty_gallery_and_top_larger_than_gallery(engine: Engine) -> None:
    g = FaceGallery(128, engine=engine)
    q = _random_templates(1)[0]
    assert g.search(q, top=5) == []
    g.add("only", q)
    assert len(g.search(q, top=5)) == 1


def test_misuse_is_a_gallery_error_and_changes_nothing() -> None:
    m = _random_templates(3)
    g = FaceGallery(128)
    g.add("a", m[0])
    with pytest.raises(GalleryError):
        g.add("a", m[1])
    with pytest.raises(GalleryError):
        g.add_many(["b", "a"], m[1:3])  # one duplicate: none added
    with pytest.raises(GalleryError):
        g.add_many(["b", "b"], m[1:3])
    with pytest.raises(GalleryError):
        g.add_many(["b"], m[1:3])
    with pytest.raises(GalleryError):
        g.add("c", np.ones(64, np.float32))
    with pytest.raises(GalleryError):
        g.add("c", np.zeros(128, np.float32))
    with pytest.raises(GalleryError):
        g.search(np.full(128, np.inf, np.float32))
    with pytest.raises(ValueError):
        g.search(m[0], top=0)
    assert len(g) == 1
    with pytest.raises(GalleryError):
        FaceGallery.from_templates([("x", m[0]), ("x", m[1])], dimension=128)


def test_unnormalised_templates_are_normalised() -> None:
    m = _random_templates(2)
    g = FaceGallery(128)
    g.add("a", m[0] * 3.0)
    assert g.search(m[0] * 0.5, top=1)[0].distance == pytest.approx(0.0, abs=1e-3)


def test_faiss_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "faiss", None)
    for engine in ("faiss", "faiss-fp16"):
        with pytest.raises(FaceBackendError, match="faiss is not installed") as info:
            FaceGallery(128, engine=engine)  # type: ignore[arg-type]
        assert "gallery_engine" in info.value.hint


@pytest.mark.parametrize("engine", ENGINES)
def test_real_faces_find_their_owner_first(
    engine: Engine,
    people: dict[str, np.ndarray],
    encode_cached: Callable[[str, bytes], Template],
    backend: DlibBackend,
) -> None:
    cards = {n: encode_cached(f"{n}/card", faces.card_photo(img)) for n, img in people.items()}
    g = FaceGallery.from_templates(cards.items(), dimension=128, engine=engine)
    for name in ("astronaut", "hopper", "t1_3"):
        probe = encode_cached(f"{name}/orig", faces.to_jpeg(people[name]))
        hits = g.search(probe, top=3)
        assert hits[0].resident_id == name
        assert hits[0].distance == pytest.approx(backend.compare(probe, cards[name]), abs=1e-4)
        assert hits[0].distance < hits[1].distance


def test_fp16_shortlist_is_proved_on_ordinary_queries() -> None:
    matrix = _random_templates(5000, seed=21)
    g = FaceGallery(128, engine="faiss-fp16")
    g.add_many([f"r{i}" for i in range(5000)], matrix)
    rows = g._rows
    assert 0.0 < rows.max_error < 1e-3  # type: ignore[attr-defined]
    for query in _random_templates(30, seed=22):
        g.search(query, top=5)
    assert rows.fallbacks == 0  # type: ignore[attr-defined]


def test_fp16_shortlist_falls_back_when_it_cannot_prove_the_answer() -> None:
    # 300 residents whose templates differ by less than fp16 can tell apart: the
    # shortlist of 64 cannot be proved to hold the true top-5, so the float32 rows are
    # searched, and the answer is still the exact one.
    rng = np.random.default_rng(5)
    base = _random_templates(1, seed=6)[0]
    near = base + 1e-3 * rng.standard_normal((300, 128)).astype(np.float32)
    near /= np.linalg.norm(near, axis=1, keepdims=True)
    ids = [f"r{i}" for i in range(300)]
    g = FaceGallery(128, engine="faiss-fp16")
    g.add_many(ids, near)
    hits = g.search(base, top=5)
    assert g._rows.fallbacks == 1  # type: ignore[attr-defined]
    # float64 distances agree to float32 precision (near 0, d = sqrt(2 - 2s) magnifies
    # the rounding of s; ranks of near-ties may differ).
    expected = _brute_force(ids, near, base, 5)
    assert [h.distance for h in hits] == pytest.approx([e[1] for e in expected], abs=1e-4)
    reference = FaceGallery(128, engine="numpy")
    reference.add_many(ids, near)
    assert hits == reference.search(base, top=5)


def test_unknown_engine_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown gallery engine"):
        FaceGallery(128, engine="annoy")  # type: ignore[arg-type]

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

ENGINES: list[Engine] = ["numpy", "faiss", "faiss-fp16", "faiss-sq8"]


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
    for engine in ("faiss", "faiss-fp16", "faiss-sq8"):
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


def _numpy_twin(ids: list[str], matrix: np.ndarray) -> FaceGallery:
    reference = FaceGallery(128, engine="numpy")
    reference.add_many(ids, matrix)
    return reference


def _same_answers(g: FaceGallery, reference: FaceGallery, query: np.ndarray, top: int) -> None:
    hits = g.search(query, top=top)
    expected = reference.search(query, top=top)
    assert [h.resident_id for h in hits] == [h.resident_id for h in expected]
    assert [h.distance for h in hits] == pytest.approx([h.distance for h in expected], abs=1e-5)


def test_sq8_scan_sums_are_exact_integers() -> None:
    # The proof relies on faiss adding integer codes times integer query values
    # exactly; check it on the installed faiss, at the dimensions templates have.
    faiss = pytest.importorskip("faiss")
    rng = np.random.default_rng(30)
    for dim in (128, 512):
        codes = rng.integers(-127, 128, (3000, dim)).astype(np.float32)
        index = faiss.IndexScalarQuantizer(
            dim, faiss.ScalarQuantizer.QT_8bit_direct_signed, faiss.METRIC_INNER_PRODUCT
        )
        index.add(codes)
        probe = rng.integers(-127, 128, (1, dim)).astype(np.float32)
        expected = codes.astype(np.int64) @ probe[0].astype(np.int64)
        sums, rows = index.search(probe, 50)
        assert sums[0].astype(np.int64).tolist() == expected[rows[0]].tolist()
        assert sorted(expected[rows[0]].tolist()) == sorted(expected)[-50:]


def test_sq8_bound_holds_for_every_row() -> None:
    matrix = _random_templates(5000, seed=31)
    g = FaceGallery(128, engine="faiss-sq8")
    g.add_many([f"r{i}" for i in range(5000)], matrix)
    rows = g._rows
    assert rows.fits == 1  # type: ignore[attr-defined]
    assert rows.aside == 0  # type: ignore[attr-defined]
    assert 0.0 < rows.max_error < 0.02  # type: ignore[attr-defined]
    codes, errors = rows._encode(matrix)  # type: ignore[attr-defined]
    assert errors.max() == rows.max_error  # type: ignore[attr-defined]
    for query in _random_templates(20, seed=32):
        probe, factor, query_term = rows._probe(query)  # type: ignore[attr-defined]
        assert 0.0 < query_term < 0.02
        approx = (codes.astype(np.float64) @ probe[0].astype(np.float64)) / factor
        exact = matrix.astype(np.float64) @ query.astype(np.float64)
        bound = rows.max_error + query_term  # type: ignore[attr-defined]
        gap = np.abs(exact - approx).max()
        assert gap <= bound
        assert gap > bound / 10  # the bound is not vacuous


def test_sq8_shortlist_is_proved_on_ordinary_queries() -> None:
    matrix = _random_templates(5000, seed=21)
    ids = [f"r{i}" for i in range(5000)]
    g = FaceGallery(128, engine="faiss-sq8")
    g.add_many(ids, matrix)
    reference = _numpy_twin(ids, matrix)
    queries = _random_templates(30, seed=22)
    queries[:15] = matrix[:15] + 0.02 * queries[:15]  # returning residents
    for query in queries:
        _same_answers(g, reference, query, 5)
    assert g._rows.fallbacks == 0  # type: ignore[attr-defined]


def _cluster(n: int, seed: int, spread: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = _random_templates(1, seed=seed + 1)[0]
    near = base + spread * rng.standard_normal((n, 128)).astype(np.float32)
    return base, near / np.linalg.norm(near, axis=1, keepdims=True)


def test_sq8_second_scan_when_the_shortlist_cannot_prove_the_answer() -> None:
    # 1000 residents closer together than 8 bits can tell apart among 9000 others:
    # the 256-row shortlist cannot be proved, a second 8-bit scan fetches 4096 rows,
    # which is proved to hold the top 5, and the answer is the exact one.
    base, near = _cluster(1000, seed=40)
    matrix = np.concatenate([_random_templates(9000, seed=42), near])
    ids = [f"r{i}" for i in range(len(matrix))]
    g = FaceGallery(128, engine="faiss-sq8")
    g.add_many(ids, matrix)
    _same_answers(g, _numpy_twin(ids, matrix), base, 5)
    assert g._rows.fallbacks == 1  # type: ignore[attr-defined]
    assert g._rows.full_scans == 0  # type: ignore[attr-defined]


def test_sq8_full_scan_when_the_second_shortlist_cannot_prove_it_either() -> None:
    base, near = _cluster(5000, seed=43)
    ids = [f"r{i}" for i in range(5000)]
    g = FaceGallery(128, engine="faiss-sq8")
    g.add_many(ids, near)
    _same_answers(g, _numpy_twin(ids, near), base, 5)
    assert g._rows.fallbacks == 1  # type: ignore[attr-defined]
    assert g._rows.full_scans == 1  # type: ignore[attr-defined]


def test_sq8_near_ties_and_duplicates() -> None:
    # Rows whose scores against the query step by 1e-5, far finer than the 8-bit
    # error, plus an exact duplicate template (two residents, one face).
    rng = np.random.default_rng(50)
    query = _random_templates(1, seed=51)[0]
    others = _random_templates(4000, seed=52)
    others -= np.outer(others @ query, query)  # orthogonal to the query
    others /= np.linalg.norm(others, axis=1, keepdims=True)
    cosines = 0.9 - 1e-5 * np.arange(40)
    ties = cosines[:, None] * query + np.sqrt(1 - cosines**2)[:, None] * others[:40]
    matrix = np.concatenate([_random_templates(4000, seed=53), ties, ties[3:4]])
    order = rng.permutation(len(matrix))
    matrix = matrix[order].astype(np.float32)
    ids = [f"r{i}" for i in range(len(matrix))]
    g = FaceGallery(128, engine="faiss-sq8")
    g.add_many(ids, matrix)
    reference = _numpy_twin(ids, matrix)
    for top in (1, 5, 12, 40):
        _same_answers(g, reference, query, top)


def test_sq8_rows_outside_the_fitted_range_are_kept_aside_then_refitted() -> None:
    # Fitted on rows with small values in dimension 0; rows added later that are
    # mostly along dimension 0 would be clipped, so they are searched exactly
    # instead, until there are enough of them to fit the scale again.
    matrix = _random_templates(3000, seed=60)
    matrix[:, 0] *= 0.1
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    g = FaceGallery(128, engine="faiss-sq8")
    ids = [f"r{i}" for i in range(3000)]
    g.add_many(ids, matrix)
    rows = g._rows
    assert rows.fits == 1  # type: ignore[attr-defined]
    assert rows.aside == 0  # type: ignore[attr-defined]
    late = _random_templates(600, seed=61)
    late[:, 0] = 3.0
    late /= np.linalg.norm(late, axis=1, keepdims=True)
    late_ids = [f"late{i}" for i in range(600)]
    for rid, row in zip(late_ids, late, strict=True):
        g.add(rid, row)
    assert rows.aside == 600  # type: ignore[attr-defined]
    reference = _numpy_twin(ids + late_ids, np.concatenate([matrix, late]))
    axis = np.zeros(128, np.float32)
    axis[0] = 1.0
    for query in [axis, late[7], *_random_templates(10, seed=62)]:
        _same_answers(g, reference, query, 5)
    # Removing a row aside and one in the 8-bit index keeps both in step.
    for rid in ("late7", "r5"):
        assert g.remove(rid)
        assert reference.remove(rid)
    _same_answers(g, reference, late[7], 5)
    more = _random_templates(500, seed=63)
    more[:, 0] = -3.0
    more /= np.linalg.norm(more, axis=1, keepdims=True)
    more_ids = [f"more{i}" for i in range(500)]
    g.add_many(more_ids, more)
    reference.add_many(more_ids, more)
    assert rows.fits == 2  # type: ignore[attr-defined]
    assert rows.aside == 0  # type: ignore[attr-defined]
    for query in [axis, -axis, more[3], *_random_templates(10, seed=64)]:
        _same_answers(g, reference, query, 5)


def test_sq8_small_gallery_is_searched_exactly_without_a_fit() -> None:
    matrix = _random_templates(1024, seed=70)
    ids = [f"r{i}" for i in range(1024)]
    g = FaceGallery(128, engine="faiss-sq8")
    g.add_many(ids, matrix)
    assert g._rows.fits == 0  # type: ignore[attr-defined]
    assert g._rows.aside == 1024  # type: ignore[attr-defined]
    _same_answers(g, _numpy_twin(ids, matrix), matrix[9], 5)
    g.add("one-more", _random_templates(1, seed=71)[0])
    assert g._rows.fits == 1  # type: ignore[attr-defined]
    assert g._rows.aside == 0  # type: ignore[attr-defined]


def test_sq8_random_galleries_through_edits_match_numpy() -> None:
    rng = np.random.default_rng(80)
    for trial in range(4):
        n = int(rng.integers(1500, 6000))
        matrix = _random_templates(n, seed=100 + trial)
        ids = [f"r{i}" for i in range(n)]
        g = FaceGallery(128, engine="faiss-sq8")
        reference = FaceGallery(128, engine="numpy")
        for gallery in (g, reference):
            gallery.add_many(ids, matrix)
        for i in rng.choice(n, 200, replace=False).tolist():
            for gallery in (g, reference):
                gallery.remove(f"r{i}")
        fresh = _random_templates(300, seed=200 + trial)
        for j, i in enumerate(rng.choice(n, 300, replace=False).tolist()):
            for gallery in (g, reference):
                gallery.replace(f"r{i}", fresh[j])
        queries = _random_templates(20, seed=300 + trial)
        queries[:10] = fresh[:10] + 0.01 * queries[:10]
        for query in queries:
            _same_answers(g, reference, query, int(rng.integers(1, 20)))


@pytest.mark.parametrize("small", [0.0, 1e-20, 1e-4])
def test_sq8_dimensions_of_tiny_range_do_not_loosen_the_bound(small: float) -> None:
    # Templates whose dimensions 5 and 6 are (next to) zero everywhere: the query's
    # values there must not swamp its rounding, or every search would fall back.
    matrix = _random_templates(3000, seed=90)
    matrix[:, 5:7] = small * np.sign(matrix[:, 5:7])
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    ids = [f"r{i}" for i in range(3000)]
    g = FaceGallery(128, engine="faiss-sq8")
    g.add_many(ids, matrix)
    reference = _numpy_twin(ids, matrix)
    for query in _random_templates(20, seed=91):
        _same_answers(g, reference, query, 5)
    assert g._rows.fallbacks == 0  # type: ignore[attr-defined]

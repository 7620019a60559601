"""1:N: an in-memory exact index of every enrolled face template.

Templates are unit-length float32 vectors, so the nearest by Euclidean distance is the
one with the largest inner product, and ``distance = sqrt(2 - 2·ip)``: one
matrix-vector product ranks the whole gallery. Search is exact — at enrolment a
missed duplicate is a person with two records — with numpy by default or faiss's
``IndexFlatIP`` (same answers, faster on large galleries) as an option.

The gallery is loaded from the template store at start and kept in step with it by
``add``/``replace``/``remove``; a lock makes each of these and ``search`` atomic, so a
kiosk server's threads can share one gallery.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
from numpy.typing import NDArray

from hcmiddleware.errors import FaceBackendError, GalleryError
from hcmiddleware.face.backend import Template

__all__ = ["Engine", "FaceGallery", "GalleryHit"]

#: The exact search engines a gallery can use.
Engine = Literal["numpy", "faiss", "faiss-fp16"]
_LOAD_CHUNK = 8192


@dataclass(frozen=True, slots=True)
class GalleryHit:
    """One search result: a resident and how far their template is from the probe."""

    resident_id: str
    distance: float


class _Rows(Protocol):
    """Row storage and exact inner-product search, addressed by int64 labels."""

    def add(self, labels: NDArray[np.int64], vectors: NDArray[np.float32]) -> None: ...
    def remove(self, label: int) -> None: ...
    def search(self, query: NDArray[np.float32], k: int) -> tuple[list[int], list[float]]: ...


class _NumpyRows:
    """A growable matrix; a removed row is filled with the last one."""

    def __init__(self, dimension: int) -> None:
        self._matrix = np.zeros((1024, dimension), dtype=np.float32)
        self._labels = np.zeros(1024, dtype=np.int64)
        self._row_of: dict[int, int] = {}
        self._n = 0

    def add(self, labels: NDArray[np.int64], vectors: NDArray[np.float32]) -> None:
        m = labels.shape[0]
        if self._n + m > self._matrix.shape[0]:
            # Doubling keeps loading at amortised O(1) a row.
            capacity = max(self._n + m, 2 * self._matrix.shape[0])
            matrix = np.zeros((capacity, self._matrix.shape[1]), dtype=np.float32)
            matrix[: self._n] = self._matrix[: self._n]
            grown = np.zeros(capacity, dtype=np.int64)
            grown[: self._n] = self._labels[: self._n]
            self._matrix, self._labels = matrix, grown
        self._matrix[self._n : self._n + m] = vectors
        self._labels[self._n : self._n + m] = labels
        for i, label in enumerate(labels.tolist()):
            self._row_of[label] = self._n + i
        self._n += m

    def __len__(self) -> int:
        return self._n

    def scores_of(
        self, labels: NDArray[np.int64], query: NDArray[np.float32]
    ) -> NDArray[np.float32]:
        """Exact inner products of the rows with these labels."""
        rows = np.fromiter(
            (self._row_of[int(x)] for x in labels), dtype=np.int64, count=len(labels)
        )
        scores: NDArray[np.float32] = self._matrix[rows] @ query
        return scores

    def remove(self, label: int) -> None:
        row = self._row_of.pop(label)
        last = self._n - 1
        if row != last:
            self._matrix[row] = self._matrix[last]
            moved = int(self._labels[last])
            self._labels[row] = moved
            self._row_of[moved] = row
        self._n = last

    def search(self, query: NDArray[np.float32], k: int) -> tuple[list[int], list[float]]:
        scores = self._matrix[: self._n] @ query
        k = min(k, self._n)
        if k <= 0:
            return [], []
        if k < self._n:
            top = np.argpartition(-scores, k - 1)[:k]
            top = top[np.argsort(-scores[top], kind="stable")]
        else:
            top = np.argsort(-scores, kind="stable")
        return [int(x) for x in self._labels[top]], [float(x) for x in scores[top]]


class _FaissRows:
    """faiss ``IndexFlatIP`` (exact) behind an id map, so rows can be removed."""

    def __init__(self, dimension: int) -> None:
        faiss = _import_faiss("faiss")
        self._index: Any = faiss.IndexIDMap2(faiss.IndexFlatIP(dimension))

    def add(self, labels: NDArray[np.int64], vectors: NDArray[np.float32]) -> None:
        self._index.add_with_ids(vectors, labels)

    def remove(self, label: int) -> None:
        self._index.remove_ids(np.array([label], dtype=np.int64))

    def search(self, query: NDArray[np.float32], k: int) -> tuple[list[int], list[float]]:
        k = min(k, int(self._index.ntotal))
        if k <= 0:
            return [], []
        scores, labels = self._index.search(query.reshape(1, -1), k)
        return [int(x) for x in labels[0]], [float(x) for x in scores[0]]


def _import_faiss(engine: str) -> Any:
    try:
        import faiss
    except ImportError:
        raise FaceBackendError(
            f"faiss is not installed, but [face] gallery_engine is {engine!r}",
            backend="faiss",
            hint="pip install faiss-cpu, or set [face] gallery_engine = 'numpy'",
        ) from None
    return faiss


class _Fp16ShortlistRows:
    """Exact search: an fp16 shortlist, re-ranked on float32, proved or redone."""

    #: Rows fetched from the fp16 index per query, before exact re-ranking.
    shortlist = 64
    # Slack for float32 accumulation in both score computations.
    _EPS = 1e-5

    def __init__(self, dimension: int) -> None:
        faiss = _import_faiss("faiss-fp16")
        self._exact = _NumpyRows(dimension)
        self._sq: Any = faiss.IndexScalarQuantizer(
            dimension, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
        )
        self._index: Any = faiss.IndexIDMap2(self._sq)
        #: Largest ||row - fp16(row)|| ever added; for unit rows and a unit query it
        #: bounds |exact score - shortlist score|.
        self.max_error = 0.0
        #: How many searches could not be proved from the shortlist.
        self.fallbacks = 0

    def add(self, labels: NDArray[np.int64], vectors: NDArray[np.float32]) -> None:
        error = 0.0
        for start in range(0, len(vectors), _LOAD_CHUNK):
            chunk = vectors[start : start + _LOAD_CHUNK]
            diff = self._sq.sa_decode(self._sq.sa_encode(chunk)) - chunk
            error = max(error, float(np.sqrt(np.einsum("ij,ij->i", diff, diff).max())))
        self._exact.add(labels, vectors)
        self._index.add_with_ids(vectors, labels)
        # Never lowered on removal: a larger bound only costs a few more fallbacks.
        self.max_error = max(self.max_error, error)

    def remove(self, label: int) -> None:
        self._exact.remove(label)
        self._index.remove_ids(np.array([label], dtype=np.int64))

    def search(self, query: NDArray[np.float32], k: int) -> tuple[list[int], list[float]]:
        n = len(self._exact)
        k = min(k, n)
        if k <= 0:
            return [], []
        wanted = min(n, max(k, self.shortlist))
        approx, labels = self._index.search(query.reshape(1, -1), wanted)
        found = labels[0]
        exact = self._exact.scores_of(found, query)
        order = np.argsort(-exact, kind="stable")[:k]
        # Every row not shortlisted scored at most approx[-1] in fp16, so at most
        # approx[-1] + max_error exactly. If the k-th exact score reaches that, no
        # row outside the shortlist can belong to the top k.
        if wanted == n or exact[order[-1]] >= approx[0][-1] + self.max_error + self._EPS:
            return [int(x) for x in found[order]], [float(x) for x in exact[order]]
        self.fallbacks += 1
        return self._exact.search(query, k)


class FaceGallery:
    """Every enrolled template, one per resident, searchable by nearest face."""

    def __init__(self, dimension: int, *, engine: Engine = "numpy") -> None:
        if dimension <= 0:
            raise ValueError("dimension must be positive")
        self.dimension = dimension
        self.engine: Engine = engine
        self._rows: _Rows
        if engine == "faiss":
            self._rows = _FaissRows(dimension)
        elif engine == "faiss-fp16":
            self._rows = _Fp16ShortlistRows(dimension)
        elif engine == "numpy":
            self._rows = _NumpyRows(dimension)
        else:
            raise ValueError(f"unknown gallery engine {engine!r}")
        self._label_of: dict[str, int] = {}
        self._resident_of: dict[int, str] = {}
        self._next_label = 0
        self._lock = threading.RLock()

    @classmethod
    def from_templates(
        cls,
        templates: Iterable[tuple[str, Template]],
        *,
        dimension: int,
        engine: Engine = "numpy",
    ) -> FaceGallery:
        """A gallery holding every ``(resident_id, template)``; a resident id given
        twice is a GalleryError (the store holds one template per resident)."""
        gallery = cls(dimension, engine=engine)
        ids: list[str] = []
        rows: list[NDArray[np.float32]] = []
        for resident_id, template in templates:
            ids.append(resident_id)
            rows.append(np.asarray(template, dtype=np.float32).reshape(-1))
            if len(ids) == _LOAD_CHUNK:
                gallery.add_many(ids, np.stack(rows))
                ids, rows = [], []
        if ids:
            gallery.add_many(ids, np.stack(rows))
        return gallery

    def __len__(self) -> int:
        return len(self._label_of)

    def __contains__(self, resident_id: object) -> bool:
        return resident_id in self._label_of

    def _matrix(self, templates: NDArray[np.floating]) -> NDArray[np.float32]:
        mat = np.asarray(templates, dtype=np.float32)
        if mat.ndim == 1:
            mat = mat.reshape(1, -1)
        if mat.ndim != 2 or mat.shape[1] != self.dimension:
            raise GalleryError(
                f"template has {mat.shape[-1]} values, the gallery holds {self.dimension}",
                hint="templates of another backend cannot be mixed; re-enrol with this one",
            )
        # einsum: several times faster than linalg.norm(axis=1) on a million rows.
        norms = np.sqrt(np.einsum("ij,ij->i", mat, mat))[:, None]
        if not np.all(np.isfinite(norms)) or np.any(norms == 0.0):
            raise GalleryError(
                "template is zero or not finite", hint="re-enrol the resident's face"
            )
        return np.ascontiguousarray(mat / norms, dtype=np.float32)

    def _vector(self, template: Template) -> NDArray[np.float32]:
        vec: NDArray[np.float32] = self._matrix(template)[0]
        return vec

    def add(self, resident_id: str, template: Template) -> None:
        """Add a new resident's template; GalleryError if they already have one."""
        self.add_many([resident_id], self._matrix(template))

    def add_many(self, resident_ids: list[str], templates: NDArray[np.floating]) -> None:
        """Add many new residents at once (one row of ``templates`` each); nothing is
        added if any id is already in the gallery or given twice."""
        mat = self._matrix(templates)
        if mat.shape[0] != len(resident_ids):
            raise GalleryError(
                f"{len(resident_ids)} resident ids for {mat.shape[0]} templates",
                hint="give exactly one template per resident",
            )
        with self._lock:
            if len(set(resident_ids)) != len(resident_ids) or any(
                rid in self._label_of for rid in resident_ids
            ):
                raise GalleryError(
                    "a resident already has a face template in the gallery",
                    hint="use replace() to re-enrol a face; the store holds one per resident",
                )
            labels = np.arange(
                self._next_label, self._next_label + len(resident_ids), dtype=np.int64
            )
            self._next_label += len(resident_ids)
            self._rows.add(labels, mat)
            for rid, label in zip(resident_ids, labels.tolist(), strict=True):
                self._label_of[rid] = label
                self._resident_of[label] = rid

    def replace(self, resident_id: str, template: Template) -> None:
        """Set the resident's template, adding it if they had none."""
        vec = self._vector(template)
        with self._lock:
            if resident_id in self._label_of:
                self._delete(resident_id)
            self._insert(resident_id, vec)

    def remove(self, resident_id: str) -> bool:
        """Remove the resident's template; False if they had none."""
        with self._lock:
            if resident_id not in self._label_of:
                return False
            self._delete(resident_id)
            return True

    def search(self, template: Template, *, top: int = 5) -> list[GalleryHit]:
        """The ``top`` nearest residents to ``template``, nearest first."""
        if top <= 0:
            raise ValueError("top must be positive")
        query = self._vector(template)
        with self._lock:
            labels, scores = self._rows.search(query, top)
            residents = [self._resident_of[label] for label in labels]
        return [
            GalleryHit(resident_id=rid, distance=float(np.sqrt(max(0.0, 2.0 - 2.0 * s))))
            for rid, s in zip(residents, scores, strict=True)
        ]

    def _insert(self, resident_id: str, vec: NDArray[np.float32]) -> None:
        label = self._next_label
        self._next_label += 1
        self._rows.add(np.array([label], dtype=np.int64), vec.reshape(1, -1))
        self._label_of[resident_id] = label
        self._resident_of[label] = resident_id

    def _delete(self, resident_id: str) -> None:
        label = self._label_of.pop(resident_id)
        del self._resident_of[label]
        self._rows.remove(label)

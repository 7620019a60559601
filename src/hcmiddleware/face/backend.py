"""What a face backend must do, and how one is chosen by name.

A backend finds faces (``detect``), turns one face into a template (``encode``) and
says how far apart two templates are (``compare``). Templates are unit-length float32
vectors and ``compare`` is the Euclidean distance between them (0 = identical, 2 =
opposite), so the 1:N gallery's inner-product search ranks exactly as 1:1 comparisons
do, and the thresholds in :class:`~hcmiddleware.face.settings.FaceSettings` mean the
same thing for both.

Backends other than the built-in ``dlib`` one are found through the entry-point group
``hcmiddleware.face_backends``: the entry point's name is the name used in the config,
its object a callable returning a :class:`FaceBackend`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from hcmiddleware.errors import FaceBackendError, FaceTemplateError

__all__ = [
    "BACKEND_ENTRY_POINT_GROUP",
    "FaceBackend",
    "FaceBox",
    "Image",
    "Template",
    "as_template",
    "euclidean",
    "load_backend",
]

#: An RGB image as decoded for analysis: shape (height, width, 3), dtype uint8.
Image = NDArray[np.uint8]
#: A face template: a unit-length float32 vector of the backend's dimension.
Template = NDArray[np.float32]

BACKEND_ENTRY_POINT_GROUP = "hcmiddleware.face_backends"


@dataclass(frozen=True, slots=True)
class FaceBox:
    """A face's bounding box in image pixels (``right``/``bottom`` exclusive)."""

    top: int
    right: int
    bottom: int
    left: int

    @property
    def width(self) -> int:
        """Width in pixels."""
        return self.right - self.left

    @property
    def height(self) -> int:
        """Height in pixels."""
        return self.bottom - self.top

    @property
    def size(self) -> int:
        """The short side in pixels: what the minimum face size is checked against."""
        return min(self.width, self.height)


@runtime_checkable
class FaceBackend(Protocol):
    """A face detector and encoder. Implementations need not be thread-safe."""

    @property
    def name(self) -> str:
        """Short name used in config and stored with every template (e.g. ``"dlib"``)."""
        ...

    @property
    def dimension(self) -> int:
        """Length of the templates ``encode`` returns."""
        ...

    def detect(self, image: Image) -> list[FaceBox]:
        """Every face found in ``image`` (RGB uint8), in no particular order."""
        ...

    def encode(self, image: Image, box: FaceBox) -> Template:
        """The unit-length float32 template of the face in ``box``."""
        ...

    def compare(self, a: Template, b: Template) -> float:
        """Distance between two templates; smaller is more alike."""
        ...


def as_template(vector: NDArray[np.floating] | list[float], *, dimension: int) -> Template:
    """``vector`` as a unit-length float32 template of ``dimension``; a zero or wrongly
    sized vector is a :class:`FaceTemplateError` (it cannot be a face)."""
    arr = np.asarray(vector, dtype=np.float32).reshape(-1)
    if arr.shape[0] != dimension:
        raise FaceTemplateError(
            f"face template has {arr.shape[0]} values, the backend makes {dimension}",
            hint="templates from another backend cannot be compared; re-enrol the face",
        )
    norm = float(np.linalg.norm(arr))
    if not np.isfinite(norm) or norm == 0.0:
        raise FaceTemplateError(
            "face template is zero or not finite",
            hint="the template is damaged; re-enrol the face",
        )
    return (arr / norm).astype(np.float32)


def euclidean(a: Template, b: Template) -> float:
    """Euclidean distance between two templates."""
    return float(np.linalg.norm(np.asarray(a, np.float32) - np.asarray(b, np.float32)))


def _builtin_backends() -> dict[str, Callable[[], FaceBackend]]:
    # Imported here so that naming a backend never pulls in another one's library.
    from hcmiddleware.face.dlib_backend import DlibBackend

    return {"dlib": DlibBackend}


def load_backend(name: str) -> FaceBackend:
    """Build the backend called ``name``: built-in first, then the entry points."""
    builtin = _builtin_backends()
    if name in builtin:
        return builtin[name]()
    found = entry_points(group=BACKEND_ENTRY_POINT_GROUP, name=name)
    for ep in found:
        try:
            factory = ep.load()
            backend = factory()
        except FaceBackendError:
            raise
        except Exception as exc:
            raise FaceBackendError(
                f"face backend {name!r} failed to load: {type(exc).__name__}: {exc}",
                backend=name,
                hint="check that the plugin providing it is installed with its dependencies",
            ) from exc
        if not isinstance(backend, FaceBackend):
            raise FaceBackendError(
                f"face backend {name!r} does not implement detect/encode/compare",
                backend=name,
                hint="the plugin providing it is incompatible with this hcmiddleware version",
            )
        return backend
    known = sorted(set(builtin) | {ep.name for ep in entry_points(group=BACKEND_ENTRY_POINT_GROUP)})
    raise FaceBackendError(
        f"no face backend named {name!r}",
        backend=name,
        hint=f"set [face] backend to one of: {', '.join(known)}",
    )

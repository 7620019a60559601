"""Quality gates a photo must pass before a face in it is encoded.

Each gate that fails raises a typed :class:`~hcmiddleware.errors.UnusablePhotoError`
subclass, in this order: unreadable or too large (``decode_photo``), no face, several
faces (none is picked: checking the wrong person is worse than asking again), face too
small. A photo larger than ``max_image_side`` is scaled down first, which bounds the
time detection takes.
"""

from __future__ import annotations

from dataclasses import dataclass

from hcmiddleware.errors import FaceTooSmallError, MultipleFacesError, NoFaceError
from hcmiddleware.face.backend import FaceBackend, FaceBox
from hcmiddleware.face.image import DecodedPhoto, decode_photo
from hcmiddleware.face.settings import FaceSettings

__all__ = ["UsableFace", "check_photo", "single_face"]


@dataclass(frozen=True, slots=True)
class UsableFace:
    """A photo that passed every gate, with its one face.

    ``face_px`` is the face's short side in the photo's own pixels.
    """

    photo: DecodedPhoto
    box: FaceBox
    face_px: int


def single_face(
    photo: DecodedPhoto,
    boxes: list[FaceBox],
    *,
    role: str,
    min_face_px: int,
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
            f"{min_face_px} px needed",
            photo=role,
            face_px=face_px,
            min_face_px=min_face_px,
        )
    return UsableFace(photo=photo, box=box, face_px=face_px)


def check_photo(
    data: bytes, backend: FaceBackend, settings: FaceSettings, *, role: str
) -> UsableFace:
    """Decode ``data``, find its faces with ``backend`` and apply every gate.

    ``role`` names the photo in errors (``"live"``, ``"reference"``, ``"probe"``).
    """
    photo = decode_photo(
        data,
        photo=role,
        max_side=settings.max_image_side,
        max_pixels=settings.max_image_pixels,
    )
    return single_face(
        photo, backend.detect(photo.image), role=role, min_face_px=settings.min_face_px
    )

"""What the person at the kiosk should change when a live photo is unusable.

The photo is measured where the face is, or seems to be (a weak guess of the fallback
detector, else the middle of the frame): its brightness, its contrast, how sharp it is
and, when there are eye and nose points, how far the head is turned or tilted. The
first measure out of range chooses the advice; each advice has a stable ``code`` and a
text in Chinese and English for the kiosk's screen.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict

from hcmiddleware.face.backend import FaceBox, Image

__all__ = ["ADVICE", "FaceAdvice", "PhotoMeasures", "advice_for", "measure_photo"]


class FaceAdvice(BaseModel):
    """One thing to change, for the screen: ``code`` is stable, ``zh``/``en`` are shown."""

    model_config = ConfigDict(frozen=True)

    code: str
    zh: str
    en: str


#: Every advice there is, by code.
ADVICE: dict[str, FaceAdvice] = {
    a.code: a
    for a in (
        FaceAdvice(
            code="move_closer",
            zh="请再靠近摄像头一些",
            en="Please come a little closer to the camera",
        ),
        FaceAdvice(
            code="more_light",
            zh="脸部光线不足，请到光线充足、均匀的地方",
            en="Your face is not lit well enough: please move into bright, even light",
        ),
        FaceAdvice(
            code="hold_still",
            zh="请保持不动，等待拍照完成",
            en="Please hold still until the photo is taken",
        ),
        FaceAdvice(
            code="face_camera",
            zh="请正对摄像头，头部摆正",
            en="Please look straight at the camera and hold your head upright",
        ),
        FaceAdvice(
            code="one_person",
            zh="请确保镜头前只有一个人",
            en="Please make sure only one person is in front of the camera",
        ),
        FaceAdvice(
            code="retake",
            zh="照片无法使用，请重新拍照",
            en="The photo could not be used: please take it again",
        ),
        FaceAdvice(
            code="see_staff",
            zh="证件照片无法用于比对，请到人工窗口办理",
            en="The photo on record cannot be used for the check: please see the staff",
        ),
    )
}

# Limits, measured on the kiosk set (docs/face.md, "Advice"): luma 0..255 in the face
# region; contrast is the spread between its 5th and 95th percentile; sharpness the
# mean absolute Laplacian per unit of contrast times the face's size in pixels (edges
# across the face: the same for a sharp face of 38 px and of 110 px, 5–6, and 1.5–2.6
# when blurred); yaw the nose's offset from the eyes' midpoint in eye distances.
DARK_BELOW = 70.0
FLAT_BELOW = 80.0
BLURRED_BELOW = 3.0
SMALL_BELOW = 60
TILTED_DEGREES = 12.0
TURNED_ABOVE = 0.35


@dataclass(frozen=True, slots=True)
class PhotoMeasures:
    """What was measured, for the advice and for logs (no pixels)."""

    brightness: float
    contrast: float
    sharpness: float | None
    roll_degrees: float | None = None
    yaw: float | None = None
    face_px: int | None = None


def _luma(image: Image) -> NDArray[np.float32]:
    rgb = image.astype(np.float32)
    luma: NDArray[np.float32] = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    return luma


def measure_photo(
    image: Image,
    box: FaceBox | None = None,
    keypoints: tuple[tuple[float, float], ...] = (),
) -> PhotoMeasures:
    """Measure ``image`` around ``box`` (the face, or a guess of it; None: the middle
    half of the frame). ``keypoints`` are BlazeFace's (right eye, left eye, nose, …)."""
    h, w = image.shape[0], image.shape[1]
    if box is not None:
        # the face and a little around it, where light and focus matter
        pad = box.size // 4
        y0, y1 = max(0, box.top - pad), min(h, box.bottom + pad)
        x0, x1 = max(0, box.left - pad), min(w, box.right + pad)
    else:
        y0, y1, x0, x1 = h // 4, h - h // 4, w // 4, w - w // 4
    region = _luma(image[y0:y1, x0:x1]) if y1 - y0 > 2 and x1 - x0 > 2 else _luma(image)
    lo, hi = np.percentile(region, [5, 95])
    contrast = float(hi - lo)
    lap = (
        4 * region[1:-1, 1:-1]
        - region[:-2, 1:-1]
        - region[2:, 1:-1]
        - region[1:-1, :-2]
        - region[1:-1, 2:]
    )
    sharpness = None
    if box is not None and lap.size:
        sharpness = float(np.abs(lap).mean() / max(contrast, 1.0) * box.size)
    roll = yaw = None
    if len(keypoints) >= 3:
        (rx, ry), (lx, ly), (nx, _ny) = keypoints[:3]
        eye_dist = float(np.hypot(lx - rx, ly - ry))
        if eye_dist > 1.0:
            roll = float(np.degrees(np.arctan2(ly - ry, lx - rx)))
            yaw = float((nx - (rx + lx) / 2) / eye_dist)
    return PhotoMeasures(
        brightness=float(region.mean()),
        contrast=contrast,
        sharpness=sharpness,
        roll_degrees=roll,
        yaw=yaw,
        face_px=box.size if box is not None else None,
    )


def advice_for(reason: str, photo: str, measures: PhotoMeasures | None = None) -> FaceAdvice:
    """The advice for a photo that failed the gate ``reason`` (an UnusablePhotoError's
    code). A reference photo cannot be retaken at the kiosk: the person is sent to the
    staff."""
    if photo == "reference":
        return ADVICE["see_staff"]
    if reason == "face_too_small":
        return ADVICE["move_closer"]
    if reason == "multiple_faces":
        return ADVICE["one_person"]
    if reason != "no_face" or measures is None:
        return ADVICE["retake"]
    m = measures
    if m.brightness < DARK_BELOW or m.contrast < FLAT_BELOW:
        return ADVICE["more_light"]
    if m.sharpness is not None and m.sharpness < BLURRED_BELOW:
        return ADVICE["hold_still"]
    if m.face_px is not None and m.face_px < SMALL_BELOW:
        return ADVICE["move_closer"]
    if m.roll_degrees is not None and abs(m.roll_degrees) > TILTED_DEGREES:
        return ADVICE["face_camera"]
    if m.yaw is not None and abs(m.yaw) > TURNED_ABOVE:
        return ADVICE["face_camera"]
    return ADVICE["face_camera"]

"""Real faces that ship inside installed packages, and the augmentations tests apply.

Provenance (read from the installed packages at test time, nothing is committed):
- ``astronaut``: scikit-image's ``skimage.data.astronaut()``, Eileen Collins, a NASA
  photo in the public domain.
- ``hopper``: matplotlib's ``mpl-data/sample_data/grace_hopper.jpg``, Grace Hopper, a
  U.S. Navy photo in the public domain.
- ``t1_0`` … ``t1_5``: the six people of the group photo ``insightface/data/images/t1.jpg``
  shipped in the ``insightface`` wheel (MIT-licensed package; the photo's own origin is
  not stated there). Installed with ``pip install --no-deps insightface`` so that only
  its files arrive; its code is never imported, and no model weights are used.
- ``hanks``: ``insightface/data/images/Tom_Hanks_54745.png``, a 112×112 aligned face
  from the same wheel: about card-photo size.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageEnhance

# the photo helpers are the kiosk set's: one way to find and cut the shipped photos
from hcmiddleware.face.kiosk_set import (
    _ASTRONAUT_BOX,
    _HOPPER_BOX,
    _T1_BOXES,
    _cut,
    _rgb,
    package_file,
)

RGB = NDArray[np.uint8]


def hopper_path() -> Path:
    """matplotlib's Grace Hopper photo."""
    return package_file("matplotlib", "matplotlib/mpl-data/sample_data/grace_hopper.jpg")


def load_people() -> dict[str, RGB]:
    """One portrait per person, keyed by a short name."""
    from skimage import data

    people: dict[str, RGB] = {
        "astronaut": _cut(np.asarray(data.astronaut()), _ASTRONAUT_BOX, margin=2.2),
        "hopper": _cut(_rgb(hopper_path()), _HOPPER_BOX, margin=1.9),
        "hanks": _rgb(package_file("insightface", "insightface/data/images/Tom_Hanks_54745.png")),
    }
    group = _rgb(package_file("insightface", "insightface/data/images/t1.jpg"))
    for i, box in enumerate(_T1_BOXES):
        people[f"t1_{i}"] = _cut(group, box, margin=1.55)
    return people


def group_photo() -> bytes:
    """The six-person photo as its original JPEG bytes."""
    return package_file("insightface", "insightface/data/images/t1.jpg").read_bytes()


def to_jpeg(img: RGB, *, quality: int = 90) -> bytes:
    """``img`` encoded as a JPEG."""
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def to_png(img: RGB) -> bytes:
    """``img`` encoded as a PNG."""
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


# --- augmentations: each returns a new RGB image ------------------------------------


def crop(img: RGB, frac: float = 0.08) -> RGB:
    """Cut ``frac`` off each side (an off-centre, tighter framing)."""
    h, w = img.shape[:2]
    dy, dx = int(h * frac), int(w * frac)
    return np.ascontiguousarray(img[dy : h - dy // 2, dx // 2 : w - dx])


def rotate(img: RGB, degrees: float = 10.0) -> RGB:
    """Rotate about the centre (a tilted head or camera)."""
    return np.asarray(
        Image.fromarray(img).rotate(
            degrees, resample=Image.Resampling.BICUBIC, fillcolor=(128, 128, 128)
        )
    )


def light(img: RGB, factor: float = 0.6) -> RGB:
    """Darker (<1) or brighter (>1) exposure."""
    return np.asarray(ImageEnhance.Brightness(Image.fromarray(img)).enhance(factor))


def noise(img: RGB, sigma: float = 8.0, seed: int = 5) -> RGB:
    """Gaussian sensor noise."""
    rng = np.random.default_rng(seed)
    noisy = img.astype(np.float32) + rng.normal(0.0, sigma, img.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def card_size(img: RGB, size: tuple[int, int] = (100, 125)) -> RGB:
    """Fit to a card photo's ~100×125 portrait frame (cropping to its aspect first)."""
    h, w = img.shape[:2]
    target = size[1] / size[0]
    if h / w > target:
        new_h = int(w * target)
        y0 = (h - new_h) // 3
        img = img[y0 : y0 + new_h]
    else:
        new_w = int(h / target)
        x0 = (w - new_w) // 2
        img = img[:, x0 : x0 + new_w]
    return np.asarray(
        Image.fromarray(np.ascontiguousarray(img)).resize(size, Image.Resampling.LANCZOS)
    )


#: DDF1/EF07 holds 3,072 bytes: a 2-byte length, then the JPEG.
CARD_PHOTO_MAX_BYTES = 3070


def card_photo(img: RGB) -> bytes:
    """What the card holds: a ~100×125 JPEG at the best quality that fits in EF07."""
    small = card_size(img)
    for quality in range(85, 9, -5):
        data = to_jpeg(small, quality=quality)
        if len(data) <= CARD_PHOTO_MAX_BYTES:
            return data
    raise ValueError("cannot fit the card photo into EF07")


AUGMENTATIONS = {
    "crop": crop,
    "rotate": rotate,
    "dark": light,
    "bright": lambda img: light(img, 1.4),
    "noise": noise,
}

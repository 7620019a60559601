"""A kiosk-like face set, built the same way on every run from photos shipped in packages.

What a kiosk meets in the field: a **card photo** as small as the card holds (102×126,
at most 3,070 bytes of JPEG, the best quality that fits) and **live frames** from the
kiosk camera (640×480) with the face at several sizes and in several conditions —
clean, dark, blurred, low contrast, turned ±15° and compressed to JPEG quality 12.
Every live frame is paired with its person's card photo (genuine) and with every other
person's card photo (impostor), so false accepts can be counted.

Nothing is stored in the repository: the faces are read at run time from packages whose
licences allow it (see :func:`load_people`) and composed here with a fixed random seed,
so the set is byte-for-byte the same on every run with the same Pillow.

Used by ``tests/face`` (a few pairs) and ``benchmarks/bench_face.py`` (the whole set).
It needs numpy and Pillow (the ``face`` extra) and, for the faces, scikit-image,
matplotlib and ``insightface`` (installed ``--no-deps``, its files only)::

    from hcmiddleware.face.kiosk_set import build_kiosk_set

    kiosk = build_kiosk_set(sizes=(52,), conditions=("clean", "dark"))
    for live in kiosk.live:
        reference = kiosk.cards[live.person]  # the genuine pair
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageEnhance, ImageFilter

__all__ = [
    "CARD_PHOTO_MAX_BYTES",
    "CARD_SIZE",
    "CONDITIONS",
    "FACE_SIZES",
    "FRAME_SIZE",
    "KioskSet",
    "LivePhoto",
    "build_kiosk_set",
    "card_photo",
    "group_photo",
    "live_frame",
    "load_people",
    "package_file",
]

RGB = NDArray[np.uint8]

#: The card photo's pixel size (width, height).
CARD_SIZE = (102, 126)
#: DDF1/EF07 holds 3,072 bytes: a 2-byte length, then the JPEG.
CARD_PHOTO_MAX_BYTES = 3070
#: A kiosk camera frame (width, height).
FRAME_SIZE = (640, 480)
#: Face sizes in live frames: the short side of the face box, in frame pixels.
FACE_SIZES = (38, 52, 72, 110)

# Face boxes (top, right, bottom, left) of the six people in insightface's t1.jpg as
# dlib's HOG finds them without upsampling; each is cut out with a margin that stays
# clear of the neighbours.
_T1_BOXES = [
    (284, 169, 388, 65),
    (365, 837, 469, 734),
    (284, 1217, 388, 1114),
    (300, 577, 424, 452),
    (179, 362, 266, 275),
    (89, 987, 192, 883),
]
# The whole astronaut photo also holds a mission patch that HOG takes for a face once
# the photo is JPEG-compressed; the portraits are head-and-shoulders cuts.
_ASTRONAUT_BOX = (83, 266, 170, 179)
_HOPPER_BOX = (137, 376, 352, 161)

# Where the face is in each portrait that load_people() returns (top, right, bottom,
# left): HOG's box on the clean portrait, measured once. It places and scales the face
# when a frame or a card photo is composed, so building the set needs no detector.
_PORTRAIT_FACES = {
    "astronaut": (74, 141, 160, 54),
    "hopper": (154, 293, 333, 114),
    "hanks": (26, 102, 112, 16),
    "t1_0": (54, 135, 158, 31),
    "t1_1": (54, 135, 158, 31),
    "t1_2": (54, 135, 158, 31),
    "t1_3": (51, 162, 176, 37),
    "t1_4": (35, 102, 121, 16),
    "t1_5": (42, 135, 146, 31),
}

_INSTALL = {
    "matplotlib": "pip install matplotlib",
    "insightface": "pip install --no-deps insightface==2.1",
    "scikit-image": "pip install scikit-image",
}


def package_file(dist: str, path: str) -> Path:
    """A file inside an installed distribution, found without importing it."""
    try:
        found = Path(str(distribution(dist).locate_file(path)))
    except PackageNotFoundError:
        raise RuntimeError(
            f"the kiosk face set reads real faces from {dist}: {_INSTALL.get(dist, dist)}"
        ) from None
    if not found.is_file():
        raise FileNotFoundError(f"{path} is not in the installed {dist}")
    return found


def _rgb(path: Path) -> RGB:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def _cut(img: RGB, box: tuple[int, int, int, int], margin: float) -> RGB:
    top, right, bottom, left = box
    w, h = right - left, bottom - top
    cx, cy = (left + right) / 2, (top + bottom) / 2
    half_w, half_h = w * margin / 2, h * margin * 1.25 / 2
    x0, x1 = max(0, int(cx - half_w)), min(img.shape[1], int(cx + half_w))
    y0, y1 = max(0, int(cy - half_h)), min(img.shape[0], int(cy + half_h))
    return np.ascontiguousarray(img[y0:y1, x0:x1])


def load_people() -> dict[str, RGB]:
    """One portrait per person (nine people), keyed by a short name.

    - ``astronaut``: scikit-image's ``skimage.data.astronaut()``, Eileen Collins, a
      NASA photo in the public domain;
    - ``hopper``: matplotlib's ``mpl-data/sample_data/grace_hopper.jpg``, Grace Hopper,
      a U.S. Navy photo in the public domain;
    - ``hanks``: ``insightface/data/images/Tom_Hanks_54745.png``, a 112×112 aligned
      face, and ``t1_0`` … ``t1_5``: the six people of the group photo
      ``insightface/data/images/t1.jpg``, both from the MIT-licensed ``insightface``
      wheel (the photos' own origin is not stated there; only its files are used).
    """
    try:
        from skimage import data
    except ImportError:
        raise RuntimeError(
            f"the kiosk face set reads real faces from scikit-image: {_INSTALL['scikit-image']}"
        ) from None
    hopper = package_file("matplotlib", "matplotlib/mpl-data/sample_data/grace_hopper.jpg")
    people: dict[str, RGB] = {
        "astronaut": _cut(np.asarray(data.astronaut()), _ASTRONAUT_BOX, margin=2.2),
        "hopper": _cut(_rgb(hopper), _HOPPER_BOX, margin=1.9),
        "hanks": _rgb(package_file("insightface", "insightface/data/images/Tom_Hanks_54745.png")),
    }
    group = _rgb(package_file("insightface", "insightface/data/images/t1.jpg"))
    for i, box in enumerate(_T1_BOXES):
        people[f"t1_{i}"] = _cut(group, box, margin=1.55)
    return people


def group_photo() -> bytes:
    """insightface's six-person photo as its original JPEG bytes."""
    return package_file("insightface", "insightface/data/images/t1.jpg").read_bytes()


def _jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _seed(*parts: object) -> int:
    return zlib.crc32("/".join(map(str, parts)).encode())


def _feather(size: tuple[int, int], border: int) -> Image.Image:
    """An alpha mask that fades to nothing over ``border`` pixels at the edges."""
    w, h = size
    x = np.minimum(np.arange(w), np.arange(w)[::-1]) / max(1, border)
    y = np.minimum(np.arange(h), np.arange(h)[::-1]) / max(1, border)
    alpha = np.clip(np.minimum.outer(y, x), 0.0, 1.0)
    return Image.fromarray((alpha * 255).astype(np.uint8), "L")


def _place(
    canvas: Image.Image,
    portrait: RGB,
    face: tuple[int, int, int, int],
    face_px: float,
    at: tuple[float, float],
    degrees: float = 0.0,
) -> None:
    """Paste ``portrait`` scaled so its face is ``face_px`` wide, turned ``degrees``
    (counter-clockwise) about the face's centre, with the face's centre at ``at``."""
    top, right, bottom, left = face
    scale = face_px / (right - left)
    src = Image.fromarray(portrait)
    w, h = max(1, round(src.width * scale)), max(1, round(src.height * scale))
    resample = Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.BICUBIC
    scaled = src.resize((w, h), resample).convert("RGBA")
    scaled.putalpha(_feather((w, h), max(2, round(min(w, h) * 0.08))))
    # the face centre, relative to the portrait's centre
    dx, dy = (left + right) / 2 * scale - w / 2, (top + bottom) / 2 * scale - h / 2
    if degrees:
        scaled = scaled.rotate(degrees, resample=Image.Resampling.BICUBIC, expand=True)
        rad = np.deg2rad(degrees)
        # Pillow turns counter-clockwise on screen (y points down)
        dx, dy = dx * np.cos(rad) + dy * np.sin(rad), -dx * np.sin(rad) + dy * np.cos(rad)
    x0 = round(at[0] - dx - scaled.width / 2)
    y0 = round(at[1] - dy - scaled.height / 2)
    canvas.paste(scaled, (x0, y0), scaled)


def _background(size: tuple[int, int], tone: tuple[int, int, int], seed: int) -> Image.Image:
    """A plain wall: a soft vertical gradient of ``tone`` with a little texture."""
    w, h = size
    rng = np.random.default_rng(seed)
    ramp = np.linspace(1.08, 0.88, h)[:, None, None]
    wall = np.asarray(tone, np.float32)[None, None, :] * ramp
    wall = wall + rng.normal(0.0, 3.0, (h, w, 1))
    return Image.fromarray(np.clip(np.broadcast_to(wall, (h, w, 3)), 0, 255).astype(np.uint8))


def card_photo(name: str, portrait: RGB) -> bytes:
    """``name``'s card photo: an ID-photo framing of ``portrait`` on a light background,
    102×126, at the best JPEG quality that fits in :data:`CARD_PHOTO_MAX_BYTES`.

    The face is 46–58 px wide, and the photo is in colour, grey, or faded like a scanned
    print (each varies by person, as card photos do)."""
    face = _PORTRAIT_FACES[name]
    width, height = CARD_SIZE
    big = 4  # composed at 4× and shrunk, as a camera's photo is
    canvas = _background((width * big, height * big), (228, 232, 238), _seed("card", name))
    face_px = (46 + _seed("card-face", name) % 13) * big
    _place(canvas, portrait, face, face_px, (width * big / 2, height * big * 0.45))
    small = canvas.resize(CARD_SIZE, Image.Resampling.LANCZOS)
    style = ("colour", "grey", "faded")[_seed("card-style", name) % 3]
    if style == "grey":
        small = small.convert("L").convert("RGB")
    elif style == "faded":
        small = ImageEnhance.Contrast(small).enhance(0.55).filter(ImageFilter.GaussianBlur(0.6))
    for quality in range(90, 4, -2):
        data = _jpeg(small, quality)
        if len(data) <= CARD_PHOTO_MAX_BYTES:
            return data
    raise ValueError(f"cannot fit {name}'s card photo into {CARD_PHOTO_MAX_BYTES} bytes")


def _motion_blur(arr: NDArray[np.float32], length: int) -> NDArray[np.float32]:
    """A horizontal box blur of ``length`` pixels (a head moving while the shutter is open)."""
    pad = length // 2
    padded = np.pad(arr, ((0, 0), (pad, length - 1 - pad), (0, 0)), mode="edge")
    summed = np.cumsum(padded, axis=1, dtype=np.float64)
    summed = np.concatenate([np.zeros_like(summed[:, :1]), summed], axis=1)
    return ((summed[:, length:] - summed[:, :-length]) / length).astype(np.float32)


def _dark(frame: Image.Image, seed: int, face_px: int) -> Image.Image:
    arr = np.asarray(frame, np.float32) * 0.28
    arr += np.random.default_rng(seed).normal(0.0, 2.5, arr.shape)  # low-light sensor noise
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _blurred(frame: Image.Image, seed: int, face_px: int) -> Image.Image:
    # A head moving while the shutter is open, slightly out of focus. A head's movement
    # and its size shrink alike with distance, so the blur is in proportion to the face:
    # a streak of a tenth of its width (4 px at 38 px, 11 px at 110 px).
    arr = _motion_blur(np.asarray(frame, np.float32), max(3, round(face_px / 10)))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).filter(
        ImageFilter.GaussianBlur(face_px / 80)
    )


def _low_contrast(frame: Image.Image, seed: int, face_px: int) -> Image.Image:
    # Washed out (backlight, haze on the lens): a third of the contrast, lifted.
    arr = (np.asarray(frame, np.float32) - 128.0) * 0.3 + 150.0
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _as_is(frame: Image.Image, seed: int, face_px: int) -> Image.Image:
    return frame


# condition -> (what is done to the frame, its JPEG quality, degrees the head is turned)
_CONDITIONS: dict[str, tuple[Callable[[Image.Image, int, int], Image.Image], int, float]] = {
    "clean": (_as_is, 88, 0.0),
    "dark": (_dark, 88, 0.0),
    "blurred": (_blurred, 88, 0.0),
    "low_contrast": (_low_contrast, 88, 0.0),
    "turned_left": (_as_is, 88, 15.0),
    "turned_right": (_as_is, 88, -15.0),
    "jpeg12": (_as_is, 12, 0.0),
}
#: The live-photo conditions, in the order the benchmark prints them.
CONDITIONS = tuple(_CONDITIONS)


def live_frame(name: str, portrait: RGB, *, face_px: int, condition: str) -> bytes:
    """A 640×480 kiosk frame of ``name`` with the face ``face_px`` wide, as JPEG."""
    return _live_frame(name, portrait, face_px=face_px, condition=condition)[0]


def _live_frame(
    name: str, portrait: RGB, *, face_px: int, condition: str
) -> tuple[bytes, tuple[int, int]]:
    if condition not in _CONDITIONS:
        raise ValueError(f"unknown condition {condition!r}; one of {', '.join(CONDITIONS)}")
    change, quality, degrees = _CONDITIONS[condition]
    seed = _seed("live", name, face_px, condition)
    rng = np.random.default_rng(seed)
    tone = tuple(int(v) for v in rng.integers(120, 200, 3))
    frame = _background(FRAME_SIZE, (tone[0], tone[1], tone[2]), seed)
    w, h = FRAME_SIZE
    at = (w / 2 + rng.uniform(-40, 40), h * 0.45 + rng.uniform(-20, 20))
    _place(frame, portrait, _PORTRAIT_FACES[name], face_px, at, degrees)
    return _jpeg(change(frame, seed, face_px), quality), (round(at[0]), round(at[1]))


@dataclass(frozen=True, slots=True)
class LivePhoto:
    """One live frame: whose face, how large, in which condition, and its JPEG bytes.

    ``centre`` is where the face's centre is in the frame (x, y), so a test can tell a
    face found from something else found."""

    person: str
    face_px: int
    condition: str
    data: bytes = field(repr=False)
    centre: tuple[int, int] = (0, 0)

    @property
    def key(self) -> str:
        """``person/face_px/condition``: unique in a set."""
        return f"{self.person}/{self.face_px}/{self.condition}"


@dataclass(frozen=True, slots=True)
class KioskSet:
    """Card photos by person, and live frames; see :meth:`genuine` and :meth:`impostor`."""

    cards: dict[str, bytes]
    live: list[LivePhoto]

    def genuine(self) -> Iterator[tuple[LivePhoto, str]]:
        """(live frame, card owner) for each frame and its own person's card."""
        for photo in self.live:
            yield photo, photo.person

    def impostor(self) -> Iterator[tuple[LivePhoto, str]]:
        """(live frame, card owner) for each frame and every other person's card."""
        for photo in self.live:
            for other in self.cards:
                if other != photo.person:
                    yield photo, other


def build_kiosk_set(
    *,
    people: Sequence[str] | None = None,
    sizes: Sequence[int] = FACE_SIZES,
    conditions: Sequence[str] = CONDITIONS,
) -> KioskSet:
    """Build the set (or the part of it named): a card photo per person and a live
    frame per person, face size and condition. The whole set: 9 card photos, 252 live
    frames, 252 genuine and 2,016 impostor pairs; ~8 s to build on two cores."""
    portraits = load_people()
    names = list(portraits) if people is None else list(people)
    unknown = [n for n in names if n not in portraits]
    if unknown:
        raise ValueError(f"unknown people {unknown}; known: {', '.join(portraits)}")
    cards = {n: card_photo(n, portraits[n]) for n in names}
    live = []
    for n in names:
        for size in sizes:
            for cond in conditions:
                data, centre = _live_frame(n, portraits[n], face_px=size, condition=cond)
                live.append(LivePhoto(n, size, cond, data, centre))
    return KioskSet(cards=cards, live=live)

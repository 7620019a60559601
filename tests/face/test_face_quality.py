"""Quality gates: every way a photo can be unusable gets its own typed error."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import sample_faces as faces
from PIL import Image
from skimage import data

from hcmiddleware.errors import (
    FaceError,
    FaceTooSmallError,
    ImageTooLargeError,
    MultipleFacesError,
    NoFaceError,
    UnreadableImageError,
    UnusablePhotoError,
)
from hcmiddleware.face.dlib_backend import DlibBackend
from hcmiddleware.face.image import decode_photo
from hcmiddleware.face.quality import check_photo
from hcmiddleware.face.settings import FaceSettings


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width``×``height`` but holds almost no data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body))
            + kind
            + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"%PDF-1.7 not a photo at all", id="not-an-image"),
        pytest.param(bytes(range(256)) * 8, id="random-bytes"),
        pytest.param(b"\xff\xd8\xff\xe0" + b"\x00" * 64, id="jpeg-magic-then-garbage"),
    ],
)
def test_unreadable_bytes(payload: bytes, backend: DlibBackend, settings: FaceSettings) -> None:
    with pytest.raises(UnreadableImageError) as info:
        check_photo(payload, backend, settings, role="live")
    assert info.value.photo == "live"
    assert info.value.reason == "unreadable"
    assert info.value.hint


def test_truncated_jpeg_is_refused_not_half_decoded(
    people: dict[str, np.ndarray], backend: DlibBackend, settings: FaceSettings
) -> None:
    whole = faces.to_jpeg(people["hopper"])
    check_photo(whole, backend, settings, role="live")  # the whole file is fine
    with pytest.raises(UnreadableImageError, match="damaged or truncated"):
        check_photo(whole[: len(whole) // 2], backend, settings, role="live")


def test_corrupt_png_body_is_refused(
    people: dict[str, np.ndarray], backend: DlibBackend, settings: FaceSettings
) -> None:
    png = bytearray(faces.to_png(people["hanks"]))
    mid = len(png) // 2
    png[mid : mid + 64] = b"\x00" * 64
    with pytest.raises(UnreadableImageError):
        check_photo(bytes(png), backend, settings, role="reference")


def test_more_pixels_than_allowed_is_refused_before_decoding(
    backend: DlibBackend, settings: FaceSettings
) -> None:
    with pytest.raises(ImageTooLargeError) as info:
        check_photo(_png_header_only(8000, 6000), backend, settings, role="live")
    assert info.value.pixels == 48_000_000
    assert info.value.reason == "too_large"


def test_decompression_bomb_is_refused(backend: DlibBackend, settings: FaceSettings) -> None:
    with pytest.raises(ImageTooLargeError):
        check_photo(_png_header_only(40_000, 40_000), backend, settings, role="live")


def test_pixel_limit_comes_from_settings(
    people: dict[str, np.ndarray], backend: DlibBackend
) -> None:
    tight = FaceSettings(max_image_pixels=10_000)
    with pytest.raises(ImageTooLargeError, match="more than the 10000 allowed"):
        check_photo(faces.to_jpeg(people["hopper"]), backend, tight, role="live")


def test_no_face(backend: DlibBackend, settings: FaceSettings) -> None:
    with pytest.raises(NoFaceError) as info:
        check_photo(faces.to_jpeg(data.coffee()), backend, settings, role="live")
    assert info.value.reason == "no_face"


def test_several_faces_none_picked_with_the_count(
    backend: DlibBackend,
) -> None:
    # At full resolution HOG finds all six people of the group photo.
    full = FaceSettings(max_image_side=1280)
    with pytest.raises(MultipleFacesError) as info:
        check_photo(faces.group_photo(), backend, full, role="live")
    assert info.value.count == 6
    assert "6 faces" in info.value.message
    assert info.value.details()["count"] == 6


def test_face_too_small(backend: DlibBackend, settings: FaceSettings) -> None:
    # The whole astronaut frame shrunk to card size: a ~21 px face.
    tiny = faces.to_jpeg(faces.card_size(np.asarray(data.astronaut())))
    with pytest.raises(FaceTooSmallError) as info:
        check_photo(tiny, backend, settings, role="live")
    assert 15 <= info.value.face_px < settings.min_face_px
    assert info.value.min_face_px == settings.min_face_px


def test_min_face_size_comes_from_settings(
    people: dict[str, np.ndarray], backend: DlibBackend, settings: FaceSettings
) -> None:
    card = faces.card_photo(people["hopper"])
    ok = check_photo(card, backend, settings, role="reference")
    # a reference photo (it cannot be retaken) has its own, lower minimum
    strict = FaceSettings(min_face_px=ok.face_px + 1)
    assert check_photo(card, backend, strict, role="reference").face_px == ok.face_px
    with pytest.raises(FaceTooSmallError) as info:
        check_photo(card, backend, strict, role="live")
    assert info.value.min_face_px == ok.face_px + 1
    strict_reference = FaceSettings(reference_min_face_px=ok.face_px + 1)
    with pytest.raises(FaceTooSmallError):
        check_photo(card, backend, strict_reference, role="reference")


def test_large_photo_is_scaled_down_and_face_size_is_in_its_own_pixels(
    people: dict[str, np.ndarray], backend: DlibBackend, settings: FaceSettings
) -> None:
    hopper = people["hopper"]
    native = check_photo(faces.to_jpeg(hopper), backend, settings, role="live")
    big = np.asarray(
        Image.fromarray(hopper).resize(
            (hopper.shape[1] * 6, hopper.shape[0] * 6), Image.Resampling.BICUBIC
        )
    )
    face = check_photo(faces.to_jpeg(big), backend, settings, role="live")
    assert max(face.photo.image.shape[:2]) <= settings.max_image_side
    assert face.photo.original_width == big.shape[1]
    assert face.face_px == pytest.approx(native.face_px * 6, rel=0.15)


def test_exif_orientation_is_applied(
    people: dict[str, np.ndarray], backend: DlibBackend, settings: FaceSettings
) -> None:
    # A phone stores the sensor's pixels sideways and says "rotate 90° CW" in EXIF.
    sideways = Image.fromarray(people["hopper"]).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    sideways.save(buf, format="JPEG", exif=exif.tobytes())
    face = check_photo(buf.getvalue(), backend, settings, role="live")
    assert face.photo.image.shape[:2] == people["hopper"].shape[:2]


def test_decode_keeps_small_photos_as_they_are(people: dict[str, np.ndarray]) -> None:
    card = faces.card_photo(people["hanks"])
    photo = decode_photo(card, photo="reference", max_side=800, max_pixels=10**6)
    assert photo.image.shape == (125, 100, 3)
    assert photo.scale == 1.0


def test_every_gate_error_is_a_face_error() -> None:
    for cls in (
        UnreadableImageError,
        ImageTooLargeError,
        NoFaceError,
        MultipleFacesError,
        FaceTooSmallError,
    ):
        assert issubclass(cls, UnusablePhotoError)
        assert issubclass(cls, FaceError)


# --- bad input as it comes in the field ----------------------------------------------


def _jpeg_header_only(width: int, height: int) -> bytes:
    """A baseline JPEG whose frame header claims ``width``×``height`` and that ends right
    after its headers: decoding it would fail as truncated, reading its size does not."""
    tables = bytes([0xFF, 0xDB, 0x00, 0x43, 0x00]) + bytes([1] * 64)
    sof = bytes([0xFF, 0xC0, 0x00, 0x11, 0x08]) + struct.pack(">HH", height, width)
    sof += bytes([0x03, 0x01, 0x11, 0x00, 0x02, 0x11, 0x00, 0x03, 0x11, 0x00])
    return b"\xff\xd8" + tables + sof + b"\xff\xd9"


def test_one_pixel_photo_has_no_face(backend: DlibBackend, settings: FaceSettings) -> None:
    one = Image.new("RGB", (1, 1), (128, 100, 90))
    buf = io.BytesIO()
    one.save(buf, format="JPEG")
    with pytest.raises(NoFaceError) as info:
        check_photo(buf.getvalue(), backend, settings, role="live")
    assert info.value.advice is not None


def test_20000_square_jpeg_is_refused_from_its_header(
    backend: DlibBackend, settings: FaceSettings
) -> None:
    # Refused as too large, not as truncated: the pixels were never decoded. Past
    # Pillow's own bomb limit (~179 MP) the count is not known (-1); below it, ours
    # (40 MP by default) counts them.
    with pytest.raises(ImageTooLargeError) as info:
        check_photo(_jpeg_header_only(20_000, 20_000), backend, settings, role="live")
    assert info.value.pixels == -1
    assert info.value.advice is not None
    with pytest.raises(ImageTooLargeError) as info:
        check_photo(_jpeg_header_only(12_000, 12_000), backend, settings, role="live")
    assert info.value.pixels == 144_000_000
    assert "12000×12000" in info.value.message
    # The same kind of header within the limit is decoded, and found truncated.
    with pytest.raises(UnreadableImageError):
        check_photo(_jpeg_header_only(64, 64), backend, settings, role="live")


def test_png_with_alpha_is_laid_on_white(people: dict[str, np.ndarray]) -> None:
    card = faces.card_size(people["hanks"])
    rgba = np.dstack([card, np.full(card.shape[:2], 255, np.uint8)])
    rgba[:, :20] = (0, 0, 0, 0)  # transparent border, its colour black underneath
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
    photo = decode_photo(buf.getvalue(), photo="reference", max_side=800, max_pixels=10**6)
    assert photo.image.shape == (125, 100, 3)
    assert (photo.image[:, :20] == 255).all()
    assert (photo.image[:, 20:] == card[:, 20:]).all()


def test_cmyk_jpeg_is_read_and_its_face_found(
    people: dict[str, np.ndarray], backend: DlibBackend, settings: FaceSettings
) -> None:
    buf = io.BytesIO()
    Image.fromarray(people["hopper"]).convert("CMYK").save(buf, format="JPEG", quality=90)
    assert Image.open(io.BytesIO(buf.getvalue())).mode == "CMYK"
    face = check_photo(buf.getvalue(), backend, settings, role="live")
    rgb = check_photo(faces.to_jpeg(people["hopper"]), backend, settings, role="live")
    assert face.photo.image.shape == rgb.photo.image.shape
    assert abs(face.box.left - rgb.box.left) <= 8
    assert abs(face.box.size - rgb.box.size) <= 8


def test_grey_jpeg_is_read_and_its_face_found(
    people: dict[str, np.ndarray], backend: DlibBackend, settings: FaceSettings
) -> None:
    buf = io.BytesIO()
    Image.fromarray(people["hopper"]).convert("L").save(buf, format="JPEG", quality=90)
    face = check_photo(buf.getvalue(), backend, settings, role="live")
    assert face.photo.image.shape[2] == 3
    assert face.detector == "hog"


@pytest.mark.parametrize("quality", [6, 12, 25, 50, 75, 95])
def test_jpeg_quality_is_read_from_the_tables(quality: int, people: dict[str, np.ndarray]) -> None:
    data = faces.to_jpeg(people["hanks"], quality=quality)
    photo = decode_photo(data, photo="live", max_side=800, max_pixels=10**6)
    assert photo.jpeg_quality is not None
    # below ~10 most table entries stop at 255, and the estimate is rougher
    assert abs(photo.jpeg_quality - quality) <= (2 if quality < 10 else 1)
    png = decode_photo(faces.to_png(people["hanks"]), photo="live", max_side=800, max_pixels=10**6)
    assert png.jpeg_quality is None

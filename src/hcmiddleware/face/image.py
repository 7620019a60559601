"""Photo bytes to an RGB array for analysis: bounded in pixels, upright, scaled down."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image as PILImage
from PIL import ImageOps, UnidentifiedImageError

from hcmiddleware.errors import ImageTooLargeError, UnreadableImageError
from hcmiddleware.face.backend import Image

__all__ = ["DecodedPhoto", "decode_photo", "jpeg_quality"]


@dataclass(frozen=True, slots=True)
class DecodedPhoto:
    """A photo ready for detection.

    ``scale`` is analysed pixels per original pixel (1.0 when not scaled down), so a
    size measured on ``image`` divided by ``scale`` is in the photo's own pixels.
    ``jpeg_quality`` is the JPEG quality (1–100) its luminance table corresponds to on
    the IJG scale most encoders use, None for other formats.
    """

    image: Image
    original_width: int
    original_height: int
    scale: float
    jpeg_quality: int | None = None


# The IJG (libjpeg) luminance quantisation table at quality 50, in zigzag order as
# Pillow reports tables; quality q scales it by 5000/q % below 50, (200 - 2q) % above.
_IJG_LUMA = (
    16, 11, 12, 14, 12, 10, 16, 14, 13, 14, 18, 17, 16, 19, 24, 40,
    26, 24, 22, 22, 24, 49, 35, 37, 29, 40, 58, 51, 61, 60, 57, 51,
    56, 55, 64, 72, 92, 78, 64, 68, 87, 69, 55, 56, 80, 109, 81, 87,
    95, 98, 103, 104, 103, 62, 77, 113, 121, 112, 100, 120, 92, 101, 103, 99,
)  # fmt: skip


def jpeg_quality(img: PILImage.Image) -> int | None:
    """The IJG quality ``img``'s luminance table stands for, or None (not a JPEG)."""
    tables = getattr(img, "quantization", None)
    if img.format != "JPEG" or not tables or 0 not in tables:
        return None
    luma = np.asarray(tables[0], np.float64)
    if luma.shape != (64,):
        return None
    # Baseline tables stop at 255: at low qualities only the entries below it still
    # show the scale.
    kept = luma < 255
    if not kept.any():
        return 1
    scale = 100.0 * float(np.median(luma[kept] / np.asarray(_IJG_LUMA, np.float64)[kept]))
    quality = 5000.0 / scale if scale > 100.0 else (200.0 - scale) / 2.0
    return max(1, min(100, round(quality)))


def _flatten(img: PILImage.Image) -> PILImage.Image:
    """RGB, with any transparency laid on white (as a card printer or a screen shows it):
    the colour under a transparent pixel is arbitrary and must not reach the detector.
    Grey, palette and CMYK photos are converted as Pillow does."""
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = img.convert("RGBA")
        white = PILImage.new("RGBA", rgba.size, (255, 255, 255, 255))
        return PILImage.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def decode_photo(data: bytes, *, photo: str, max_side: int, max_pixels: int) -> DecodedPhoto:
    """Decode ``data`` (JPEG, PNG, …) into an upright RGB array at most ``max_side`` long.

    The pixel count is checked from the header before anything is decoded, so a
    decompression bomb costs nothing; JPEGs are decoded directly at a reduced scale
    when they are much larger than needed. Truncated or corrupt files are refused
    rather than half-decoded, whatever Pillow's process-wide settings say.
    """
    if not data:
        raise UnreadableImageError("the photo is empty (0 bytes)", photo=photo)
    try:
        with warnings.catch_warnings():
            # Pillow warns (not raises) between 1× and 2× its own bomb limit; our own
            # limit below decides.
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            img = PILImage.open(io.BytesIO(data))
    except PILImage.DecompressionBombError as exc:
        raise ImageTooLargeError(
            f"the photo is far too large to decode ({exc})", photo=photo, pixels=-1
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise UnreadableImageError(
            f"the photo is not an image that can be read ({type(exc).__name__})",
            photo=photo,
        ) from None
    width, height = img.size
    pixels = width * height
    if pixels > max_pixels:
        raise ImageTooLargeError(
            f"the photo has {pixels} pixels ({width}×{height}), more than the {max_pixels} allowed",
            photo=photo,
            pixels=pixels,
        )
    if width <= 0 or height <= 0:
        raise UnreadableImageError("the photo has no pixels", photo=photo)
    try:
        if img.format == "JPEG" and max(width, height) > 2 * max_side:
            # DCT-domain downscaling (1/2, 1/4, 1/8): much faster than decoding a
            # 12-megapixel camera frame in full only to shrink it.
            img.draft("RGB", (max_side, max_side))
        quality = jpeg_quality(img)
        img.load()
        upright = ImageOps.exif_transpose(img) or img
        rgb = _flatten(upright)
        if max(rgb.size) > max_side:
            rgb.thumbnail((max_side, max_side), PILImage.Resampling.LANCZOS)
        array = np.asarray(rgb, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, PILImage.DecompressionBombError) as exc:
        raise UnreadableImageError(
            f"the photo is damaged or truncated ({type(exc).__name__})", photo=photo
        ) from None
    # After exif_transpose the long side is the same; width may have become height.
    scale = max(array.shape[0], array.shape[1]) / max(width, height)
    return DecodedPhoto(
        image=np.ascontiguousarray(array),
        original_width=width,
        original_height=height,
        scale=scale,
        jpeg_quality=quality,
    )

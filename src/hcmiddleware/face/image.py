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

__all__ = ["DecodedPhoto", "decode_photo"]


@dataclass(frozen=True, slots=True)
class DecodedPhoto:
    """A photo ready for detection.

    ``scale`` is analysed pixels per original pixel (1.0 when not scaled down), so a
    size measured on ``image`` divided by ``scale`` is in the photo's own pixels.
    """

    image: Image
    original_width: int
    original_height: int
    scale: float


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
    )

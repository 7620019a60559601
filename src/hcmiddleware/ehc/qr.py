"""E-card codes as pictures: PNG or SVG to show (segno), and read back from a camera
image (zxing-cpp). Both come with the ``ehc`` extra and need no system library.

A code's text is in the QR alphanumeric set, so segno encodes it in alphanumeric
mode: a dynamic code (242 characters) fits a version 10 symbol at error correction
level M, which survives a scuffed phone screen.
"""

from __future__ import annotations

import io
from typing import Literal

from hcmiddleware._optional import needs_extra
from hcmiddleware.errors import EhcFormatError

__all__ = ["MAX_PIXELS", "decode_image", "render"]

#: the largest camera image decoded (pixels); larger ones are refused before decoding
MAX_PIXELS = 40_000_000


def render(
    text: str,
    *,
    kind: Literal["png", "svg"] = "png",
    scale: int = 8,
    border: int = 4,
    error: Literal["L", "M", "Q", "H"] = "M",
) -> bytes:
    """The code as a picture: PNG (``scale`` pixels a module) or SVG.

    :raises EhcFormatError: the text is too long for any QR symbol (reason ``too_long``).
    """
    with needs_extra("QR pictures of e-card codes"):
        import segno
    try:
        symbol = segno.make_qr(text, error=error.lower(), boost_error=False)
    except segno.DataOverflowError:
        raise EhcFormatError(
            "the text is too long for a QR code", reason="too_long", hint="this is no e-card code"
        ) from None
    out = io.BytesIO()
    if kind == "svg":
        symbol.save(out, kind="svg", scale=scale, border=border, xmldecl=False)
    else:
        symbol.save(out, kind="png", scale=scale, border=border)
    return out.getvalue()


def decode_image(image: bytes) -> str:
    """The text of the one QR code in a photo or screenshot (PNG, JPEG …).

    :raises EhcFormatError: ``image`` (not a picture, or larger than
        :data:`MAX_PIXELS`), ``no_code`` (no QR code found) or ``several_codes``
        (more than one different code in the picture: the wrong one might be taken).
    """
    with needs_extra("reading QR pictures of e-card codes"):
        import zxingcpp
        from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(image)) as opened:
            width, height = opened.size
            if width * height > MAX_PIXELS:
                raise EhcFormatError(
                    f"the picture has {width * height:,} pixels; at most {MAX_PIXELS:,} are read",
                    reason="image",
                    hint="send a smaller picture: the code needs only a few hundred pixels",
                )
            picture = opened.convert("L")
    except EhcFormatError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        raise EhcFormatError(
            "the picture cannot be read (empty, damaged or not an image)",
            reason="image",
            hint="take the picture again",
        ) from None
    found = zxingcpp.read_barcodes(
        picture, formats=zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)
    )
    texts: list[str] = list(dict.fromkeys(str(r.text) for r in found if r.valid))
    if not texts:
        raise EhcFormatError(
            "no QR code was found in the picture",
            reason="no_code",
            hint="hold the phone flat in front of the camera, screen bright, and try again",
        )
    if len(texts) > 1:
        raise EhcFormatError(
            f"the picture shows {len(texts)} different QR codes",
            reason="several_codes",
            hint="show one code at a time",
        )
    return texts[0]

"""Codes as pictures: text → PNG/SVG → a camera's photo of the phone → text → verified."""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from hcmiddleware import Middleware
from hcmiddleware.ehc import qr
from hcmiddleware.errors import EhcFormatError, EhcReplayError, EhcSignatureError

from .conftest import MakeMw, enrol


def photo_of_a_phone(png: bytes, *, angle: float, quality: int = 70, seed: int = 1) -> bytes:
    """The code on a phone screen as a kiosk camera sees it: small in the frame, tilted,
    slightly out of focus, unevenly lit, noisy, scaled down and JPEG-compressed."""
    code = Image.open(io.BytesIO(png)).convert("L")
    screen = Image.new("L", (code.width + 80, code.height + 200), 235)
    screen.paste(code, (40, 100))
    phone = Image.new("L", (screen.width + 40, screen.height + 60), 25)  # the bezel
    phone.paste(screen, (20, 30))
    phone = phone.rotate(angle, expand=True, fillcolor=120, resample=Image.Resampling.BICUBIC)
    frame = Image.new("L", (phone.width * 2, phone.height * 2), 120)
    frame.paste(phone, (phone.width // 3, phone.height // 4))
    frame = frame.filter(ImageFilter.GaussianBlur(0.8))
    pixels = np.asarray(frame, dtype=np.float64)
    falloff = np.linspace(0, 40, pixels.shape[1])[None, :]  # light falling off sideways
    noise = np.random.default_rng(seed).normal(0, 6, pixels.shape)
    frame = Image.fromarray(np.clip(pixels - falloff + noise, 0, 255).astype(np.uint8))
    frame = frame.resize((frame.width * 3 // 4, frame.height * 3 // 4))
    out = io.BytesIO()
    frame.convert("RGB").save(out, format="JPEG", quality=quality)
    return out.getvalue()


def test_a_dynamic_code_from_a_photo_of_the_screen(make_mw: MakeMw, algorithm: str) -> None:
    mw = make_mw(algorithm)
    resident = enrol(mw)
    code = mw.ehc.dynamic_code(mw.ehc.issue(resident.resident_id))
    png = qr.render(code, scale=4)
    photo = photo_of_a_phone(png, angle=7.5)
    assert qr.decode_image(photo) == code
    result = mw.ehc.verify_image(photo, care_step="registration")
    assert result.resident.resident_id == resident.resident_id
    with pytest.raises(EhcReplayError):  # the same picture again
        mw.ehc.verify_image(photo, care_step="registration")


@pytest.mark.parametrize("angle", [-20.0, 3.0, 90.0, 180.0])
def test_static_codes_from_photos_at_any_angle(mw: Middleware, angle: float) -> None:
    text = mw.ehc.static_code("8469dcabe25b71f6b23925eb895bdc1b47f7252feb8af17d2aad02902e3e0d8e")
    photo = photo_of_a_phone(qr.render(text, scale=5), angle=angle, seed=int(angle) + 100)
    assert qr.decode_image(photo) == text


def test_svg_holds_the_same_code(mw: Middleware) -> None:
    resident = enrol(mw)
    code = mw.ehc.dynamic_code(mw.ehc.issue(resident.resident_id))
    svg = qr.render(code, kind="svg", scale=1, border=4)
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg")
    assert qr.decode_image(rasterize(svg, scale=6)) == code


def rasterize(svg: bytes, *, scale: int) -> bytes:
    """Draw segno's SVG path (``M x y``, ``h n``, ``m dx dy``, stroke 1) as a PNG."""
    root = ET.fromstring(svg)
    size = int(float(root.attrib["width"]))
    path = next(e for e in root.iter() if e.tag.endswith("path")).attrib["d"]
    image = Image.new("L", (size * scale, size * scale), 255)
    draw = ImageDraw.Draw(image)
    x = y = 0.0
    for op, a, b in re.findall(r"([Mmh])(-?[\d.]+)(?:\s(-?[\d.]+))?", path):
        if op == "M":
            x, y = float(a), float(b)
        elif op == "m":
            x, y = x + float(a), y + float(b)
        else:
            row = int(y - 0.5)
            draw.rectangle(
                [x * scale, row * scale, (x + float(a)) * scale - 1, (row + 1) * scale - 1],
                fill=0,
            )
            x += float(a)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def test_an_altered_picture_is_a_refused_code(mw: Middleware) -> None:
    """A code re-made from an altered text is read fine and then refused by its signature."""
    resident = enrol(mw)
    code = mw.ehc.dynamic_code(mw.ehc.issue(resident.resident_id))
    altered = code[:-1] + ("0" if code[-1] != "0" else "1")
    with pytest.raises(EhcSignatureError):
        mw.ehc.verify_image(qr.render(altered), care_step="registration")


def test_pictures_without_one_code(mw: Middleware) -> None:
    blank = io.BytesIO()
    Image.new("L", (300, 300), 255).save(blank, format="PNG")
    cases = {
        "no_code": blank.getvalue(),
        "image": b"\x89PNG\r\n\x1a\n garbage",
        "several_codes": side_by_side(
            qr.render(mw.ehc.static_code("A" * 64)), qr.render(mw.ehc.static_code("B" * 64))
        ),
    }
    for reason, picture in cases.items():
        with pytest.raises(EhcFormatError) as caught:
            mw.ehc.verify_image(picture, care_step="registration")
        assert caught.value.reason == reason
    with pytest.raises(EhcFormatError) as caught:
        qr.decode_image(b"")
    assert caught.value.reason == "image"


def test_a_huge_picture_is_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(qr, "MAX_PIXELS", 10_000)
    big = io.BytesIO()
    Image.new("L", (200, 200), 255).save(big, format="PNG")
    with pytest.raises(EhcFormatError, match="40,000 pixels") as caught:
        qr.decode_image(big.getvalue())
    assert caught.value.reason == "image"


def test_text_no_symbol_can_hold() -> None:
    with pytest.raises(EhcFormatError) as caught:
        qr.render("A" * 5000)
    assert caught.value.reason == "too_long"


def side_by_side(left: bytes, right: bytes) -> bytes:
    a, b = Image.open(io.BytesIO(left)), Image.open(io.BytesIO(right))
    both = Image.new("L", (a.width + b.width + 40, max(a.height, b.height)), 255)
    both.paste(a.convert("L"), (0, 0))
    both.paste(b.convert("L"), (a.width + 40, 0))
    out = io.BytesIO()
    both.save(out, format="PNG")
    return out.getvalue()

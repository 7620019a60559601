"""A wristband's printable label: the band ID as a QR code or Code 128, and who wears it.

Two outputs from the same fields:

* **ZPL II** — what thermal wristband printers (Zebra and the many that speak its
  language) take as they are. The printer draws the symbol itself (``^BQ`` QR,
  ``^BC`` Code 128); the text is UTF-8 (``^CI28``) in the printer-resident font that
  ``[ward.labels] zpl_font`` names, since Chinese names need one with CJK glyphs.
* **PNG** — for any other printer or a screen: the symbol drawn by segno (QR) or
  python-barcode (Code 128), the text by Pillow with a CJK font (``[ward.labels]
  font``, else the first of the usual system fonts found).

The label runs along the band: the image is ``length_mm`` wide and ``width_mm`` high.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from hcmiddleware.errors import LabelError
from hcmiddleware.models import Resident, Sex, WristbandBinding
from hcmiddleware.ward.settings import LabelSettings

__all__ = ["LabelFields", "label_fields", "png_label", "zpl_label"]

#: Fonts with Chinese glyphs found on common systems (Debian/Ubuntu, RHEL, macOS).
FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/System/Library/Fonts/PingFang.ttc",
)

_SEX = {Sex.MALE: "男", Sex.FEMALE: "女"}


@dataclass(frozen=True)
class LabelFields:
    """What a band's label shows."""

    wristband_id: str
    name: str
    sex: str
    age: str
    ward: str
    bed: str
    admission_id: str

    def lines(self) -> list[str]:
        """The text lines, as printed beside the symbol."""
        return [
            f"{self.name}  {self.sex}  {self.age}",
            f"{self.ward} 病区  {self.bed} 床",
            f"住院号 {self.admission_id}",
            self.wristband_id,
        ]


def _age(birth: date | None, today: date) -> str:
    if birth is None:
        return ""
    months = (today.year - birth.year) * 12 + today.month - birth.month
    if today.day < birth.day:
        months -= 1
    if months >= 12:
        return f"{months // 12}岁"
    if months >= 1:
        return f"{months}月"
    return f"{max((today - birth).days, 0)}天"


def label_fields(binding: WristbandBinding, resident: Resident, today: date) -> LabelFields:
    """The label's fields for ``binding`` worn by ``resident``."""
    return LabelFields(
        wristband_id=binding.wristband_id,
        name=resident.name,
        sex=_SEX.get(resident.sex, "未知"),
        age=_age(resident.birth_date, today),
        ward=binding.ward or "",
        bed=binding.bed or "",
        admission_id=binding.admission_id,
    )


def _dots(mm: float, dpi: int) -> int:
    return round(mm * dpi / 25.4)


def _zpl_text(text: str) -> str:
    """Field data with ZPL's command characters hex-escaped (``^FH_``)."""
    out = []
    for ch in text:
        out.append(f"_{ord(ch):02X}" if ch in "^~_" else ch)
    return "".join(out)


def zpl_label(fields: LabelFields, settings: LabelSettings) -> str:
    """The label in ZPL II (rotated 90°: the text runs along the band)."""
    dpi = settings.dpi
    width = _dots(settings.width_mm, dpi)  # across the band: the printer's print width
    length = _dots(settings.length_mm, dpi)
    margin = _dots(2, dpi)
    symbol_side = width - 2 * margin
    if settings.symbol == "qr":
        magnification = max(1, min(10, symbol_side // 25))  # a short ID fits version 2 (25)
        symbol = (
            f"^FO{margin},{margin}^BQN,2,{magnification}"
            f"^FH_^FDMA,{_zpl_text(fields.wristband_id)}^FS"
        )
    else:
        symbol = (
            f"^FO{margin},{margin}^BY2^BCR,{symbol_side},N,N,N"
            f"^FH_^FD{_zpl_text(fields.wristband_id)}^FS"
        )
    height = max(16, (width - 2 * margin) // 5)
    lines = []
    start = margin + symbol_side + margin
    for n, text in enumerate(fields.lines()):
        # rotated (R): x runs across the band, y along it
        x = width - margin - (n + 1) * height
        lines.append(
            f"^FO{max(x, 0)},{start}^A@R,{height},{height},{settings.zpl_font}"
            f"^FH_^FD{_zpl_text(text)}^FS"
        )
    return "\n".join(
        ["^XA", "^CI28", f"^PW{width}", f"^LL{length}", symbol, *lines, "^PQ1", "^XZ", ""]
    )


def _font_path(settings: LabelSettings) -> Path:
    if settings.font is not None:
        if not settings.font.is_file():
            raise LabelError(
                f"the label font {settings.font} does not exist",
                hint="set [ward.labels] font to a font file with Chinese glyphs",
            )
        return settings.font
    for candidate in FONT_CANDIDATES:
        if Path(candidate).is_file():
            return Path(candidate)
    raise LabelError(
        "no font with Chinese glyphs was found for the PNG label",
        hint="install one (Debian: apt-get install fonts-wqy-microhei) or set "
        "[ward.labels] font; the ZPL label needs none",
    )


def _symbol(fields: LabelFields, settings: LabelSettings, side: int, room: int) -> Any:
    from PIL import Image

    if settings.symbol == "qr":
        import segno

        qr = segno.make(fields.wristband_id, error="m")
        modules = qr.symbol_size(scale=1, border=1)[0]
        buffer = io.BytesIO()
        qr.save(buffer, kind="png", scale=max(1, side // modules), border=1)
        buffer.seek(0)
        return Image.open(buffer).convert("L")
    import barcode
    from barcode.writer import ImageWriter

    dpi = settings.dpi
    code = barcode.get("code128", fields.wristband_id, writer=ImageWriter())
    # whole printer dots per module (2 at 203 dpi): a scaled barcode would not scan
    module = 2 * 25.4 / dpi if dpi < 300 else 3 * 25.4 / dpi
    image = code.render(
        writer_options={
            "write_text": False,
            "module_width": module,
            "module_height": side * 25.4 / dpi,
            "quiet_zone": 1.0,
            "dpi": dpi,
        }
    )
    if image.width > room * 3 // 5:
        raise LabelError(
            f"band ID {fields.wristband_id} is too long for a Code 128 on this label",
            hint="use symbol = 'qr' in [ward.labels], or a longer length_mm",
        )
    return image.convert("L").resize((image.width, side), Image.Resampling.NEAREST)


def png_label(fields: LabelFields, settings: LabelSettings) -> bytes:
    """The label as a PNG image, ``length_mm`` × ``width_mm`` at the printer's dpi."""
    from PIL import Image, ImageDraw, ImageFont

    font_file = _font_path(settings)
    dpi = settings.dpi
    width = _dots(settings.length_mm, dpi)
    height = _dots(settings.width_mm, dpi)
    margin = _dots(1.5, dpi)
    image = Image.new("L", (width, height), 255)
    side = height - 2 * margin
    symbol = _symbol(fields, settings, side, width)
    if symbol.height > side:
        symbol = symbol.resize(
            (symbol.width * side // symbol.height, side), Image.Resampling.NEAREST
        )
    image.paste(symbol, (margin, (height - symbol.height) // 2))
    left = margin * 2 + symbol.width
    lines = fields.lines()
    size = max(8, (height - 2 * margin) // (len(lines) + 1))
    font = ImageFont.truetype(str(font_file), size)
    draw = ImageDraw.Draw(image)
    for n, text in enumerate(lines):
        draw.text((left, margin + n * (size + size // 4)), text, fill=0, font=font)
    if left + max(draw.textlength(t, font=font) for t in lines) > width:
        raise LabelError(
            "the label's text is longer than the label",
            hint="set a longer [ward.labels] length_mm for this printer's bands",
        )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", dpi=(dpi, dpi))
    return buffer.getvalue()

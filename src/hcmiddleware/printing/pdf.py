"""PDF for the page printer (reports, bills) and for receipts without a thermal printer.

fpdf2 writes the file; the text is set in a font with Chinese glyphs (``[printing]
font``, else the first system font found: WenQuanYi Micro Hei on Debian, from
``fonts-wqy-microhei``), embedded as a subset so the file prints anywhere. Pages are A4;
a receipt is an 80 mm roll as long as its content.

A Chinese font holds tens of thousands of glyphs and parsing it takes most of a second,
so a TrueType font is parsed once per process (:func:`_shared_font`) and each document
gets a cheap copy of it. Making the subset that goes into a PDF rewrites the font's
tables, so the copy has tables of its own and glyphs copied as they are taken; the
parsed original is only ever read, by any number of threads. Other fonts (CFF outlines,
colour fonts) are parsed for each document, as fpdf2 does by itself.
"""

from __future__ import annotations

import copy
import threading
from io import BytesIO
from pathlib import Path
from typing import Any

from hcmiddleware._optional import needs_extra
from hcmiddleware.errors import PrintError
from hcmiddleware.models import PrintDocument

__all__ = ["FONT_CANDIDATES", "find_font", "pdf_bytes"]

#: Fonts with Chinese glyphs found on common systems (Debian/Ubuntu, RHEL).
FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
)

_FAMILY = "cjk"
_RECEIPT_WIDTH = 80.0  # mm


def find_font(font: Path | None = None) -> Path:
    """The font file to set Chinese text in; PrintError when there is none."""
    if font is not None:
        if not font.is_file():
            raise PrintError(
                f"the font {font} does not exist",
                hint="set [printing] font to a font file with Chinese glyphs",
            )
        return font
    for candidate in FONT_CANDIDATES:
        if Path(candidate).is_file():
            return Path(candidate)
    raise PrintError(
        "no font with Chinese glyphs was found for PDF documents",
        hint="install one (Debian: apt-get install fonts-wqy-microhei) or set [printing] font",
    )


class _Layout:
    """One pass over the document on an fpdf2 page of width ``page_w`` mm."""

    def __init__(self, fpdf: Any, document: PrintDocument, receipt: bool) -> None:
        self.pdf = fpdf
        self.doc = document
        self.receipt = receipt
        self.size = 8.0 if receipt else 10.5

    def line(self, text: str, *, size: float | None = None, align: str = "L") -> None:
        self.pdf.set_font(_FAMILY, size=size or self.size)
        self.pdf.multi_cell(0, (size or self.size) * 0.5, text, align=align,
                            new_x="LMARGIN", new_y="NEXT")  # fmt: skip

    def rule(self) -> None:
        y = self.pdf.get_y() + 1
        self.pdf.line(self.pdf.l_margin, y, self.pdf.w - self.pdf.r_margin, y)
        self.pdf.set_y(y + 1.5)

    def pairs(self, pairs: tuple[tuple[str, str], ...], *, columns: int) -> None:
        pdf = self.pdf
        pdf.set_font(_FAMILY, size=self.size)
        room = pdf.w - pdf.l_margin - pdf.r_margin
        cell = room / columns
        height = self.size * 0.55
        for i, (label, value) in enumerate(pairs):
            if i % columns == 0 and i:
                pdf.ln(height)
            if self.receipt:
                pdf.cell(room * 0.42, height, label)
                pdf.cell(room * 0.58, height, value, align="R")
            else:
                pdf.cell(cell, height, f"{label}：{value}")
        pdf.ln(height + 1)

    def table(self) -> None:
        table = self.doc.table
        assert table is not None
        pdf = self.pdf
        room = pdf.w - pdf.l_margin - pdf.r_margin
        weights = table.widths or (1,) * len(table.columns)
        widths = tuple(room * w / sum(weights) for w in weights)
        align = tuple("RIGHT" if a == "right" else "LEFT" for a in table.align) or None
        pdf.set_font(_FAMILY, size=self.size)
        with pdf.table(
            col_widths=widths,
            text_align=align or "LEFT",
            borders_layout="HORIZONTAL_LINES",
            line_height=self.size * 0.55,
            first_row_as_headings=True,
            headings_style=_heading_style(),
        ) as grid:
            for row in (table.columns, *table.rows):
                grid.row(row)
        pdf.ln(1)

    def run(self) -> None:
        doc, pdf = self.doc, self.pdf
        pdf.add_page()
        self.line(doc.site_name, size=self.size + 2, align="C")
        self.line(doc.title, size=self.size + (5 if self.receipt else 8), align="C")
        if doc.reprint:
            self.line("重打 REPRINT", size=self.size, align="C")
        self.rule()
        self.pairs(doc.fields, columns=1 if self.receipt else 2)
        if doc.table is not None:
            self.rule()
            self.table()
        if doc.totals:
            self.rule()
            self.pairs(doc.totals, columns=1 if self.receipt else 2)
        for paragraph in doc.text:
            self.line(paragraph)
        self.rule()
        if doc.code:
            self.qr(doc.code)
        self.line(f"打印时间 {doc.printed_at.astimezone():%Y-%m-%d %H:%M:%S}", align="C")
        for footer in doc.footer:
            self.line(footer, align="C")

    def qr(self, code: str) -> None:
        try:
            import segno
        except ModuleNotFoundError:  # the QR code is a convenience: the ID is printed too
            self.line(code, align="C")
            return
        side = 22.0 if self.receipt else 26.0
        picture = BytesIO()
        segno.make(code, error="m").save(picture, kind="png", scale=8, border=1)
        picture.seek(0)
        x = (self.pdf.w - side) / 2
        self.pdf.image(picture, x=x, y=self.pdf.get_y(), w=side, h=side)
        self.pdf.set_y(self.pdf.get_y() + side + 1)
        self.line(code, align="C")


def _heading_style() -> Any:
    from fpdf.fonts import FontFace

    return FontFace(emphasis=None, fill_color=(235, 235, 235))


_parsed: dict[Path, Any] = {}
_parsing = threading.Lock()


class _GlyphsCopiedOnRead(dict[str, Any]):
    """The parsed font's glyphs, each copied when taken: the subsetter edits what it takes."""

    def __getitem__(self, name: str) -> Any:
        return copy.copy(super().__getitem__(name))


def _shared_font(font: Path) -> Any | None:
    """The font parsed once for this process (an fpdf2 TTFFont), or None when it may not be
    shared (CFF outlines and colour fonts are subset in ways a copy cannot keep apart)."""
    key = font.resolve()
    with _parsing:
        if key not in _parsed:
            from fpdf import FPDF

            holder = FPDF()
            holder.add_font(_FAMILY, fname=str(font))
            parsed: Any = holder.fonts[_FAMILY]
            tables = parsed.ttfont
            shareable = "glyf" in tables and parsed.color_font is None and not parsed.is_cff
            if shareable:
                # read every table now, so that the copies never go back to the file
                tables.ensureDecompiled(recurse=False)
                for subtable in tables["cmap"].tables:
                    subtable.ensureDecompiled()
                tables.getReverseGlyphMap()
            _parsed[key] = parsed if shareable else None
        return _parsed[key]


def _font_copy(parsed: Any, pdf: Any) -> Any:
    """A copy of the parsed font for one document: what the document changes is its own."""
    from fpdf.fonts import SubsetMap

    tables = copy.copy(parsed.ttfont)
    tables.reader = None  # every table is read (see _shared_font)
    tables.tables = {tag: copy.copy(table) for tag, table in parsed.ttfont.tables.items()}
    glyf = tables.tables["glyf"]
    glyf.glyphs = _GlyphsCopiedOnRead(glyf.glyphs)
    glyf._reverseGlyphOrder = {}
    cmap = tables.tables["cmap"]
    cmap.tables = [copy.copy(subtable) for subtable in cmap.tables]
    font = copy.copy(parsed)
    font.i = len(pdf.fonts) + 1
    font.ttfont = tables
    font.subset = SubsetMap(font)
    font.missing_glyphs = []
    font.biggest_size_pt = 0
    font._hbfont = None
    return font


def _fpdf(font: Path, width: float, height: float, document: PrintDocument) -> Any:
    from fpdf import FPDF

    pdf = FPDF(unit="mm", format=(width, height))
    pdf.set_margins(4, 4, 4) if width == _RECEIPT_WIDTH else pdf.set_margins(18, 16, 18)
    pdf.set_auto_page_break(True, margin=6 if width == _RECEIPT_WIDTH else 16)
    parsed = _shared_font(font)
    if parsed is None:
        pdf.add_font(_FAMILY, fname=str(font))
    else:
        pdf.fonts[_FAMILY] = _font_copy(parsed, pdf)
    pdf.set_title(document.title)
    pdf.set_creator("hcmiddleware")
    pdf.set_creation_date(document.printed_at)
    return pdf


def pdf_bytes(document: PrintDocument, *, font: Path | None = None) -> bytes:
    """The PDF of ``document``: A4 for pages, an 80 mm roll for receipts."""
    with needs_extra("PDF documents"):
        import fpdf  # noqa: F401

    font_file = find_font(font)
    receipt = document.medium == "receipt"
    if receipt:
        # lay it out once on a long roll to learn its length, then on a roll that long
        probe = _fpdf(font_file, _RECEIPT_WIDTH, 2000, document)
        _Layout(probe, document, True).run()
        height = probe.get_y() + 8
        pdf = _fpdf(font_file, _RECEIPT_WIDTH, height, document)
    else:
        pdf = _fpdf(font_file, 210, 297, document)
    _Layout(pdf, document, receipt).run()
    return bytes(pdf.output())

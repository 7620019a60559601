"""ESC/POS for thermal receipt printers, through python-escpos.

The layout is made for a roll ``width`` characters wide (48 on 80 mm paper in the
printer's standard font, 32 on 58 mm). A Chinese character takes two columns. Chinese
text is sent in the printer's Chinese mode (``FS &``) encoded in GB 18030 — the
character set of the thermal printers sold in China; ASCII is the same bytes in it.
python-escpos makes everything else: initialisation, alignment, emphasis, character
size, the QR code of the transaction ID (the printer draws it) and the cut.

:func:`escpos_bytes` gives the bytes of a document (python-escpos's ``Dummy``
printer); :func:`render_escpos` writes to any python-escpos printer (``File``,
``Network``, ``Usb``).
"""

from __future__ import annotations

import unicodedata
from typing import Any

from hcmiddleware._optional import needs_extra
from hcmiddleware.models import PrintDocument, PrintTable

__all__ = ["CHINESE_OFF", "CHINESE_ON", "escpos_bytes", "render_escpos", "text_width", "wrap"]

#: FS & / FS .: Chinese character mode on and off
CHINESE_ON = b"\x1c\x26"
CHINESE_OFF = b"\x1c\x2e"
_ENCODING = "gb18030"


def text_width(text: str) -> int:
    """Columns ``text`` takes on the printer: two for a wide (CJK) character."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def wrap(text: str, width: int) -> list[str]:
    """``text`` cut into lines of at most ``width`` columns (never an empty list)."""
    lines: list[str] = []
    current, used = "", 0
    for ch in text:
        w = text_width(ch)
        if used + w > width:
            lines.append(current)
            current, used = "", 0
        current += ch
        used += w
    lines.append(current)
    return lines


def _pad(text: str, width: int, align: str) -> str:
    room = max(width - text_width(text), 0)
    return " " * room + text if align == "right" else text + " " * room


def _pair(label: str, value: str, width: int) -> list[str]:
    """``label     value`` on one line, or the value on its own right-aligned line."""
    if text_width(label) + 1 + text_width(value) <= width:
        return [label + " " * (width - text_width(label) - text_width(value)) + value]
    return [label, *(_pad(part, width, "right") for part in wrap(value, width))]


def _columns(table: PrintTable, width: int) -> list[int]:
    weights = table.widths or (1,) * len(table.columns)
    room = width - (len(table.columns) - 1)  # one space between columns
    sizes = [max(room * w // sum(weights), 2) for w in weights]
    sizes[0] += room - sum(sizes)  # what rounding left goes to the first column
    return sizes


def _table_lines(table: PrintTable, width: int) -> list[str]:
    sizes = _columns(table, width)
    align = table.align or ("left",) * len(table.columns)
    lines: list[str] = []
    for row in (table.columns, *table.rows):
        cells = [wrap(cell, size) for cell, size in zip(row, sizes, strict=True)]
        for i in range(max(len(c) for c in cells)):
            parts = [
                _pad(c[i] if i < len(c) else "", size, a)
                for c, size, a in zip(cells, sizes, align, strict=True)
            ]
            lines.append(" ".join(parts).rstrip())
        if row is table.columns:
            lines.append("-" * width)
    return lines


def render_escpos(document: PrintDocument, printer: Any, *, width: int = 48) -> None:
    """Print ``document`` on a python-escpos ``printer`` for a ``width``-column roll."""

    def text(line: str = "") -> None:
        printer._raw(line.encode(_ENCODING, errors="replace") + b"\n")

    printer.hw("INIT")
    printer._raw(CHINESE_ON)
    printer.set(align="center", bold=True, double_height=True, double_width=True)
    for line in wrap(document.title, width // 2):
        text(line)
    printer.set(align="center", bold=False, normal_textsize=True)
    for line in wrap(document.site_name, width):
        text(line)
    if document.reprint:
        printer.set(align="center", bold=True, normal_textsize=True)
        text("** 重打凭条 REPRINT **")
    printer.set(align="left", bold=False, normal_textsize=True)
    text("=" * width)
    for label, value in document.fields:
        for line in _pair(label, value, width):
            text(line)
    if document.table is not None:
        text("-" * width)
        for line in _table_lines(document.table, width):
            text(line)
    if document.totals:
        text("-" * width)
        printer.set(align="left", bold=True, normal_textsize=True)
        for label, value in document.totals:
            for line in _pair(label, value, width):
                text(line)
        printer.set(align="left", bold=False, normal_textsize=True)
    for paragraph in document.text:
        for line in wrap(paragraph, width):
            text(line)
    text("=" * width)
    if document.code:
        printer._raw(CHINESE_OFF)
        printer.set(align="center", normal_textsize=True)
        printer.qr(document.code, native=True, size=5)
        text(document.code)
        printer._raw(CHINESE_ON)
    printer.set(align="center", normal_textsize=True)
    text(f"打印时间 {document.printed_at.astimezone():%Y-%m-%d %H:%M:%S}")
    for line in document.footer:
        for part in wrap(line, width):
            text(part)
    printer._raw(CHINESE_OFF)
    printer.cut()


def escpos_bytes(document: PrintDocument, *, width: int = 48, profile: str | None = None) -> bytes:
    """The ESC/POS bytes of ``document`` (what the printer receives)."""
    with needs_extra("receipt printing"):
        from escpos.printer import Dummy

    printer = Dummy(profile=profile) if profile else Dummy()
    render_escpos(document, printer, width=width)
    output: bytes = printer.output
    return output

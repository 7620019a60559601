"""Reading an import file as hospital systems really write it: forgiving, line by line.

Exports from old systems and spreadsheets mix encodings (lines appended by another
program in GBK to a UTF-8 file), end lines with CRLF, quote values that hold commas or
line breaks — and sometimes open a quote they never close, which a plain CSV reader
answers by reading every following row into one value, silently. They repeat the
header where two exports were concatenated, leave blank and ragged rows, and carry
lines of garbage. Here:

* each line is decoded on its own (UTF-8 first, whose structure rarely fits GBK bytes
  by chance, then GB 18030 ⊃ GBK); a line in neither is *unreadable*, a bad row of its
  own, and the rest of the file is read;
* a record may span lines inside a quoted value, but a quote that is still open when
  the next line looks like a complete row was a stray one: its line is read as it
  stands, the quote kept as a character, and the next row read as a row;
* blank rows are skipped, a repeated header is skipped with a notice, a row with
  fewer values than columns has the rest empty (with a notice), a row with more values
  than columns (a value holding an unquoted comma) cannot be aligned and is a bad row;
* control characters (NUL and the like) are dropped from values.

Every issue comes with the line where its record starts.
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from hcmiddleware.errors import ImportFileError

__all__ = ["Decoded", "RowIssue", "decode_lines", "header_of", "read_records"]

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class Decoded:
    """A file's text, decoded line by line.

    ``encoding`` is ``utf-8``, ``gbk``, ``utf-8+gbk`` (mixed) or the one named;
    ``gbk_lines`` are the lines decoded as GBK in a file that also has UTF-8 ones;
    ``unreadable`` the lines in neither (their text holds replacement characters).
    """

    text: str = field(repr=False)
    encoding: str
    gbk_lines: tuple[int, ...] = ()
    unreadable: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class RowIssue:
    """Something about a record: ``bad`` (it cannot be read; no values) or a notice."""

    bad: bool
    field: str
    message: str


def decode_lines(data: bytes, encoding: str = "auto", *, file: str = "") -> Decoded:
    """Decode a file's bytes line by line (see the module). A UTF-8 BOM is dropped.

    ``auto`` takes the whole file as UTF-8 when it is, else each line as UTF-8 or
    GB 18030; a named encoding is applied to each line. An unknown encoding name is an
    :class:`ImportFileError`; undecodable lines are not (they become bad rows).
    """
    if encoding != "auto":
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise ImportFileError(
                f"unknown encoding {encoding!r}",
                file=file,
                hint="name the file's encoding as utf-8, gbk or gb18030, or use auto",
            ) from None
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    if encoding == "auto":
        try:
            return Decoded(data.decode("utf-8"), "utf-8")
        except UnicodeDecodeError:
            pass
    parts: list[str] = []
    utf8 = False
    gbk: list[int] = []
    unreadable: set[int] = set()
    for number, raw in enumerate(data.splitlines(keepends=True), start=1):
        tries = ("utf-8", "gb18030") if encoding == "auto" else (encoding,)
        for name in tries:
            try:
                parts.append(raw.decode(name))
            except UnicodeDecodeError:
                continue
            if not raw.isascii():
                if name == "gb18030":
                    gbk.append(number)
                else:
                    utf8 = True
            break
        else:
            parts.append(raw.decode(tries[0], "replace"))
            unreadable.add(number)
    if encoding != "auto":
        used = encoding
    elif gbk and utf8:
        used = "utf-8+gbk"
    else:
        used = "gbk" if gbk else "utf-8"
    return Decoded("".join(parts), used, tuple(gbk) if utf8 else (), frozenset(unreadable))


def _chomp(line: str) -> str:
    return line.rstrip("\r\n")


def _fields(text: str, *, quotes: bool = True) -> list[str]:
    return next(csv.reader([text], quoting=csv.QUOTE_MINIMAL if quotes else csv.QUOTE_NONE), [])


def _open_quote(chunk: str) -> bool:
    """Whether a quoted value is still open at the end of ``chunk``."""
    if '"' not in chunk:
        return False
    try:
        list(csv.reader([_chomp(chunk)], strict=True))
    except csv.Error as exc:
        return "unexpected end of data" in str(exc)
    return False


def header_of(
    decoded: Decoded, *, file: str, required: Sequence[str], known: Sequence[str]
) -> list[str]:
    """The checked column names of the first line (lower case, stripped).

    :class:`ImportFileError` when the line is unreadable, names a column twice, lacks a
    required one or names an unknown one: the file is then refused whole.
    """
    first = decoded.text.split("\n", 1)[0]
    if 1 in decoded.unreadable:
        raise ImportFileError(
            "the header row is neither UTF-8 nor GBK",
            file=file,
            hint="save the file as UTF-8 from the spreadsheet or system that wrote it",
        )
    header = [h.strip().lstrip("\ufeff").lower() for h in _fields(_chomp(first))]
    twice = sorted({h for h in header if h and header.count(h) > 1})
    if twice:
        raise ImportFileError(
            f"the header names the column(s) {', '.join(twice)} twice",
            file=file,
            hint="keep one column of each name",
        )
    missing = [c for c in required if c not in header]
    if missing:
        raise ImportFileError(
            f"the header row lacks the column(s) {', '.join(missing)}",
            file=file,
            hint=f"the first row must name the columns; expected {', '.join(known)} "
            "(a wrong encoding also garbles it)",
        )
    unknown = [h for h in header if h and h not in known]
    if unknown:
        raise ImportFileError(
            f"unknown column(s) {', '.join(unknown)}",
            file=file,
            hint=f"use only {', '.join(known)}",
        )
    return header


def read_records(
    decoded: Decoded, header: Sequence[str]
) -> Iterator[tuple[int, dict[str, str] | None, RowIssue | None]]:
    """Each record after the header: its first line, its values by column, any issue.

    The values are ``None`` when the issue is a bad one (the record cannot be read);
    a notice comes with values (the record was read, and this is what was assumed).
    """
    lines = decoded.text.splitlines(keepends=True)
    width = len(header)
    gbk = set(decoded.gbk_lines)
    i = 1
    while i < len(lines):
        start = i
        chunk = lines[i]
        i += 1
        while _open_quote(chunk) and i < len(lines) and len(_fields(_chomp(lines[i]))) < width:
            chunk += lines[i]
            i += 1
        issue: RowIssue | None = None
        if _open_quote(chunk):
            # A stray quote: read its line alone, the quote as a character.
            i = start + 1
            values = _fields(_chomp(lines[start]), quotes=False)
            issue = RowIssue(
                False, "record", "a quote opens a value and is never closed; the line was "
                "read as it stands"
            )  # fmt: skip
        else:
            values = _fields(_chomp(chunk))
        line = start + 1
        span = range(line, i + 1)
        if any(n in decoded.unreadable for n in span):
            yield (
                line,
                None,
                RowIssue(True, "record", "the line is neither UTF-8 nor GBK: it cannot be read"),
            )
            continue
        values = [_CONTROL.sub("", v).strip() for v in values]
        if not any(values):
            continue  # a blank row
        if [v.lower() for v in values] == list(header):
            yield line, None, RowIssue(False, "record", "the header row repeats here; skipped")
            continue
        while len(values) > width and not values[-1]:
            values.pop()  # trailing separators
        if len(values) > width:
            yield (
                line,
                None,
                RowIssue(
                    True,
                    "record",
                    f"the row has {len(values)} values for {width} columns: a value holds an "
                    "unquoted comma, so the values cannot be matched to their columns; quote it",
                ),
            )
            continue
        if len(values) < width and issue is None:
            issue = RowIssue(
                False,
                "record",
                f"the row has {len(values)} of {width} values; the missing ones are taken as empty",
            )
        if issue is None and any(n in gbk for n in span):
            issue = RowIssue(False, "record", "the line is GBK in a UTF-8 file; read as GBK")
        values += [""] * (width - len(values))
        yield line, {k: v for k, v in zip(header, values, strict=True) if k}, issue

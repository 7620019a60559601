"""ER7, HL7 v2's pipe-and-hat text: composing segments and reading answers.

Only the default delimiters ``|^~\\&`` are written; answers that declare others are
refused, since the adapter cannot know what the HIS meant by them.
"""

from __future__ import annotations

from datetime import datetime

from hcmiddleware.errors import HisProtocolError

__all__ = ["Er7Message", "escape", "segment", "ts", "unescape"]

ENCODING_CHARACTERS = "^~\\&"


def escape(value: object) -> str:
    """A value escaped for a field (``None`` is empty)."""
    text = "" if value is None else str(value)
    return (
        text.replace("\\", "\\E\\")
        .replace("|", "\\F\\")
        .replace("^", "\\S\\")
        .replace("~", "\\R\\")
        .replace("&", "\\T\\")
        .replace("\r", "\\X0D\\")
        .replace("\n", "\\X0A\\")
    )


def unescape(text: str) -> str:
    """The value of an escaped field or component."""
    return (
        text.replace("\\F\\", "|")
        .replace("\\S\\", "^")
        .replace("\\R\\", "~")
        .replace("\\T\\", "&")
        .replace("\\X0D\\", "\r")
        .replace("\\X0A\\", "\n")
        .replace("\\E\\", "\\")
    )


def segment(name: str, fields: dict[int, object]) -> str:
    """A segment from ``{HL7 field number: composed value}``.

    For MSH the numbers are HL7's own (MSH-3 is key 3): MSH-1 and MSH-2, the
    delimiters, are written by this function.
    """
    if name == "MSH":
        top = max(fields, default=2)
        values = ["" if fields.get(i) is None else str(fields[i]) for i in range(3, top + 1)]
        return "|".join(["MSH", ENCODING_CHARACTERS, *values])
    top = max(fields, default=0)
    values = ["" if fields.get(i) is None else str(fields[i]) for i in range(1, top + 1)]
    # trailing empty fields are left off, as HL7 recommends
    return "|".join([name, *values]).rstrip("|")


def ts(moment: datetime | None) -> str:
    """An HL7 TS to the second (``YYYYMMDDHHMMSS``); empty for ``None``."""
    return "" if moment is None else moment.strftime("%Y%m%d%H%M%S")


def parse_ts(value: str) -> datetime | None:
    """A datetime from an HL7 TS of day, minute or second precision; ``None`` if empty."""
    digits = value.split("+")[0].split("-")[0].split(".")[0]
    if not digits:
        return None
    for fmt in ("%Y%m%d%H%M%S", "%Y%m%d%H%M", "%Y%m%d"):
        try:
            return datetime.strptime(digits, fmt)
        except ValueError:
            continue
    raise HisProtocolError(f"the HIS sent a date/time that is not HL7: {value[:20]!r}")


class Er7Message:
    """Read access to a decoded ER7 message: segments by name, fields by HL7 number."""

    def __init__(self, text: str) -> None:
        self.segments = [s.split("|") for s in text.replace("\n", "\r").split("\r") if s.strip()]
        if not self.segments or self.segments[0][0] != "MSH":
            raise HisProtocolError("the HIS's answer does not start with an MSH segment")
        if len(self.segments[0]) < 2 or self.segments[0][1] != ENCODING_CHARACTERS:
            raise HisProtocolError("the HIS's answer uses delimiters other than |^~\\&")
        # MSH-1 is the field separator itself: shift so that index n is MSH-n
        self.segments[0] = ["MSH", "|", *self.segments[0][1:]]
        for fields in self.segments:
            name = fields[0]
            if len(name) != 3 or not name.isalnum() or not name.isupper():
                raise HisProtocolError(f"the HIS's answer has a malformed segment {name[:10]!r}")

    def named(self, name: str) -> list[list[str]]:
        """Every segment called ``name``, as its list of raw fields."""
        return [f for f in self.segments if f[0] == name]

    @staticmethod
    def field(fields: list[str], number: int, component: int = 1, repetition: int = 0) -> str:
        """One component of one field repetition of a segment, unescaped."""
        if len(fields) <= number:
            return ""
        reps = fields[number].split("~")
        if len(reps) <= repetition:
            return ""
        comps = reps[repetition].split("^")
        return unescape(comps[component - 1]) if len(comps) >= component else ""

    def get(self, name: str, number: int, component: int = 1) -> str:
        """A component of the first ``name`` segment (empty if absent)."""
        found = self.named(name)
        return self.field(found[0], number, component) if found else ""

    @staticmethod
    def repetitions(fields: list[str], number: int) -> list[list[str]]:
        """The repetitions of a field, each as its unescaped components."""
        if len(fields) <= number or not fields[number]:
            return []
        return [[unescape(c) for c in rep.split("^")] for rep in fields[number].split("~")]

"""Strict HL7 v2.5 validation of inbound messages, each message structure checked once.

hl7apy's strict parse does two kinds of work. It fits the segments to the structure
that MSH-9 names (groups, order, repetitions, required fields: what ``validate()``
refuses), and it builds every value with its v2.5 datatype, which refuses a bad number,
date or an over-long value. The first kind depends only on the message's *structure*:
its type and version, the encoding characters, its segments in order and which field,
repetition, component and subcomponent positions hold a value. That is the same for
every query of one kind a client sends, and it is where nearly all of hl7apy's time
goes (some 20 ms for a three-segment query, more for the first message after start).

:class:`StructureCheck` therefore runs the full strict parse once per structure and
remembers the datatype hl7apy chose for each position. A later message of that
structure has each value built again with its datatype in strict mode: the same calls
on the same values as the full parse makes, so the same refusals, at a fraction of the
cost. A message of a structure not seen before (a missing segment, an extra value, a
value moved) gets the full parse. :func:`strict_problem` is the check without memory.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping
from importlib.metadata import version
from pathlib import Path
from typing import Any

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.factories import datatype_factory
from hl7apy.parser import parse_message

__all__ = ["STRUCTURES", "StructureCheck", "dump", "learn", "load", "strict_problem"]

#: where a value sits: segment index, field, repetition (from 0), component, subcomponent
Position = tuple[int, int, int, int, int]
#: a structure: (MSH-2, MSH-9, MSH-12), the segments in order, the positions holding values
Key = tuple[object, ...]
#: the structures of the messages the HL7 adapter of hcmiddleware sends (see :func:`load`)
STRUCTURES = Path(__file__).with_name("structures.json")


def _problem(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:200]


def _parse(text: str) -> Any:
    """hl7apy's strict parse and structure validation; raises what hl7apy raises."""
    message = parse_message(text, validation_level=VALIDATION_LEVEL.STRICT)
    message.validate()
    return message


def strict_problem(text: str) -> str | None:
    """Why hl7apy's strict v2.5 validation refuses ``text``, or ``None`` if it passes."""
    try:
        _parse(text)
    except Exception as exc:  # hl7apy raises many unrelated exception types
        return _problem(exc)
    return None


def _values(text: str) -> tuple[tuple[object, ...], list[tuple[Position, str]]]:
    """The message's structure (a hashable key) and its non-empty values in text order.

    Values are the text between the delimiters, still escaped: what hl7apy's parser
    gives its datatypes.
    """
    segments: list[str] = []
    values: list[tuple[Position, str]] = []
    header: tuple[str, ...] = ()
    for s, line in enumerate(text.split("\r")):
        fields = line.split("|")
        name = fields[0]
        segments.append(name)
        if name == "MSH":
            # HL7 counts the field separator as MSH-1: MSH-n is fields[n - 1] here
            fields = [name, "|", *fields[1:]]
            header = tuple(fields[i] if i < len(fields) else "" for i in (2, 9, 12))
            first = 3  # MSH-1 and MSH-2 are the delimiters, not values
        else:
            first = 1
        for f in range(first, len(fields)):
            for r, repetition in enumerate(fields[f].split("~")):
                for c, component in enumerate(repetition.split("^"), 1):
                    for b, value in enumerate(component.split("&"), 1):
                        if value:
                            values.append(((s, f, r, c, b), value))
    key = (header, tuple(segments), tuple(position for position, _ in values))
    return key, values


def _number(name: str) -> int:
    """The position in an hl7apy element name: ``PID_3`` → 3, ``CX_4`` → 4, ``ST`` → 1."""
    _, _, tail = name.rpartition("_")
    return int(tail) if tail.isdigit() else 1


def _segments_in_order(element: Any) -> list[Any]:
    found: list[Any] = []
    for child in element.children:
        if child.classname == "Segment":
            found.append(child)
        else:
            found.extend(_segments_in_order(child))
    return found


def _datatypes(message: Any, names: tuple[str, ...]) -> dict[Position, str] | None:
    """The datatype of each value hl7apy built, keyed by where the value is in the text.

    hl7apy may leave a segment it does not know out of its tree (it checks nothing in
    it); the text's segments are skipped up to the next one hl7apy kept. ``None`` when
    the two cannot be lined up: the structure is then not remembered.
    """
    found: dict[Position, str] = {}
    s = -1
    for parsed in _segments_in_order(message):
        s += 1
        while s < len(names) and names[s] != parsed.name:
            s += 1
        if s >= len(names):
            return None
        seen: dict[int, int] = {}
        for field in parsed.children:
            if field.name in ("MSH_1", "MSH_2"):
                continue
            f = _number(field.name)
            r = seen.get(f, 0)
            seen[f] = r + 1
            for component in field.children:
                c = _number(component.name)
                for sub in component.children:
                    found[(s, f, r, c, _number(sub.name))] = sub.datatype
    return found


class StructureCheck:
    """hl7apy's strict verdict on a message, the structure parsed once per structure.

    Thread-safe: the MLLP listener serves each connection in a thread of its own.
    """

    #: structures remembered besides those it starts with; a client sends a handful
    #: per message type
    LIMIT = 2048

    def __init__(self, known: Mapping[Key, tuple[str | None, ...]] | None = None) -> None:
        #: ``known``: structures and their datatypes found before with the same hl7apy
        #: (the reference HIS starts with :func:`load`'s)
        self._known: dict[Key, tuple[str | None, ...]] = dict(known or {})
        self._limit = len(self._known) + self.LIMIT
        self._lock = threading.Lock()
        #: full parses and cheap checks made, for tests and the benchmark
        self.parsed = 0
        self.reused = 0

    def __len__(self) -> int:
        return len(self._known)

    def __call__(self, text: str) -> str | None:
        """Why the strict validation refuses ``text``, or ``None`` if it passes."""
        key, values = _values(text)
        datatypes = self._known.get(key)
        if datatypes is None:
            return self._first(text, key, values)
        self.reused += 1
        version = str(key[0][2]).split("^")[0]  # type: ignore[index]
        try:
            for (_, value), datatype in zip(values, datatypes, strict=True):
                if datatype is not None:
                    datatype_factory(datatype, value, version, VALIDATION_LEVEL.STRICT)
        except Exception as exc:  # hl7apy raises many unrelated exception types
            return _problem(exc)
        return None

    def _first(
        self, text: str, key: tuple[object, ...], values: list[tuple[Position, str]]
    ) -> str | None:
        self.parsed += 1
        try:
            message = _parse(text)
        except Exception as exc:  # hl7apy raises many unrelated exception types
            return _problem(exc)  # a refused structure is parsed again next time
        by_position = _datatypes(message, key[1])  # type: ignore[arg-type]
        if by_position is not None:
            with self._lock:
                if len(self._known) < self._limit:
                    self._known[key] = tuple(by_position.get(p) for p, _ in values)
        return None


# -- structures known in advance ------------------------------------------------------------
#
# A started HIS parsed the first message of each structure in full: the first patient
# registered, the first visit, the first query of each kind after every start each cost
# some 10-20 ms more than the next. ``structures.json`` holds what a StructureCheck learns
# from one message of every structure the HL7 adapter of hcmiddleware sends (each message
# type, each optional value present or absent: ``hcm_his_hl7.shapes.catalog``), with the
# hl7apy version that gave it; the reference HIS starts with it when that hl7apy is the
# one installed. Any other structure is parsed in full once, as before. The tests check
# the file, and write it again with HCM_REGEN_GOLDEN=1 (hcm-his-hl7 installed).


def learn(texts: Iterable[str]) -> dict[Key, tuple[str | None, ...]]:
    """What a :class:`StructureCheck` learns from ``texts`` (a full parse of each new
    structure); a text it refuses is not learned from."""
    check = StructureCheck()
    for text in texts:
        check(text)
    return dict(check._known)


def dump(known: Mapping[Key, tuple[str | None, ...]], path: Path = STRUCTURES) -> None:
    """Write ``known`` to ``path`` with the installed hl7apy's version."""
    rows = [
        [list(header), list(segments), [list(p) for p in positions], list(types)]
        for (header, segments, positions), types in sorted(
            known.items(),
            key=lambda item: repr(item[0]),  # type: ignore[misc]
        )
    ]
    document = {"hl7apy": version("hl7apy"), "structures": rows}
    path.write_text(json.dumps(document, separators=(",", ":")) + "\n", encoding="utf-8")


def load(path: Path = STRUCTURES) -> dict[Key, tuple[str | None, ...]]:
    """The structures of ``path``; none when they were found with another hl7apy than
    the one installed (its verdicts may differ), or the file is missing or unreadable."""
    try:
        document: Any = json.loads(path.read_text(encoding="utf-8"))
        if document.get("hl7apy") != version("hl7apy"):
            return {}
        known: dict[Key, tuple[str | None, ...]] = {}
        for header, segments, positions, types in document["structures"]:
            key = (tuple(header), tuple(segments), tuple(tuple(p) for p in positions))
            known[key] = tuple(types)
        return known
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return {}

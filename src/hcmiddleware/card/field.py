"""How a card in the field differs from the specification's tidy card.

The software card (:class:`~hcmiddleware.card.emulator.EmulatedCard`) is personalised
as the specification draws the card: every record of a cyclic file allocated and
``00``-filled, every item present, items in item order, every file there. Cards in the
field are not like that, and a reader that only ever met the tidy card breaks on them.
A :class:`FieldProfile` makes the software card behave like a field card:

- ``unwritten``: the records of a cyclic file never written are not there at all
  (``"absent"``: READ RECORD past the last written answers ``6A83``, as ISO/IEC 7816-4
  has it), read as zero-length records (``"empty"``), or are allocated and filled with
  ``00`` or ``FF`` (``"00"``, ``"FF"``);
- ``empty_items``: an item the profile gives no value has no record (``"absent"``:
  READ RECORD by its tag answers ``6A83``), a zero-length record (``"empty"``), or a TLV
  of length 0 (``"tlv"``, the tidy card);
- ``an_padding``: AN text padded to its length with ``00``, ``20`` or ``FF``, or stored
  at its exact length (``"exact"``); ``FF`` also fills the fixed-layout records;
- ``short_records``: fixed-layout records (allergies, immunisations) stored without
  their trailing fill, shorter than the specification's record;
- ``reorder``: the TLV record files hold their items in reverse order (record 1 is the
  file's last item) and visit records their TLV items too;
- ``omit``: files and DFs the card does not have (``"DF01"``, ``"DDF1/EF07"``,
  ``"DF03/ED02"``): SELECT and READ answer ``6A82``;
- ``checks_tags``: whether UPDATE RECORD refuses to put another item into a record
  (``False``, like cards in the field: the card writes what it is sent);
- ``multi_record_read``: whether READ RECORD reads all records from P1 up to the last
  in one command (P2 b3–b1 = ``101``, ISO/IEC 7816-4); ``False``, a card that does not
  know the mode, answers it ``6A86``.

``FieldProfile()`` is the unkindest card of each kind at once (nothing omitted; the
one-command read of all records is supported, ``multi_record_read=False`` takes it
away). In a
card profile JSON the key ``"field"`` carries the same settings (``true`` for the
defaults)::

    {"items": {...}, "field": {"unwritten": "absent", "omit": ["DF01", "DDF1/EF07"]}}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal, get_args

from hcmiddleware.card import filemap as fm
from hcmiddleware.errors import CardDataError

__all__ = ["FieldProfile"]

Unwritten = Literal["absent", "empty", "00", "FF"]
EmptyItems = Literal["absent", "empty", "tlv"]
Padding = Literal["exact", "00", "20", "FF"]

#: Bytes of each padding choice.
PADS: dict[str, bytes] = {"exact": b"", "00": b"\x00", "20": b" ", "FF": b"\xff"}
#: What ``omit`` may name: the DFs below DDF1 and every EF.
OMITTABLE: frozenset[str] = frozenset(
    [df.label for df in (fm.DF01, fm.DF02, fm.DF03)] + [ef.path for ef in fm.FILES]
)


@dataclass(frozen=True, slots=True)
class FieldProfile:
    """How the software card departs from the tidy card; see the module docstring."""

    unwritten: Unwritten = "absent"
    empty_items: EmptyItems = "absent"
    an_padding: Padding = "FF"
    short_records: bool = True
    reorder: bool = True
    omit: tuple[str, ...] = ()
    checks_tags: bool = False
    multi_record_read: bool = True

    def __post_init__(self) -> None:
        for name, allowed in (
            ("unwritten", Unwritten),
            ("empty_items", EmptyItems),
            ("an_padding", Padding),
        ):
            choices = get_args(allowed)
            if getattr(self, name) not in choices:
                raise CardDataError(
                    f"field profile {name} must be one of {', '.join(choices)}",
                    hint="see docs/card.md, 'Field cards'",
                )
        unknown = sorted(set(self.omit) - OMITTABLE)
        if unknown:
            raise CardDataError(
                f"field profile omit names what the card has no place for: {', '.join(unknown)}",
                hint="name DF01, DF02, DF03 or a file like DDF1/EF07, DF02/EF08, DF03/ED02",
            )

    @classmethod
    def from_json(cls, value: Any) -> FieldProfile | None:
        """The profile of a card profile's ``"field"`` key: ``true``, an object, or absent."""
        if value is None or value is False:
            return None
        if value is True:
            return cls()
        if not isinstance(value, Mapping):
            raise CardDataError(
                'the card profile\'s "field" must be true or an object',
                hint="see docs/card.md, 'Field cards'",
            )
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise CardDataError(
                f"the field profile has unknown settings: {', '.join(unknown)}",
                hint=f"known settings: {', '.join(sorted(known))}",
            )
        settings = dict(value)
        if "omit" in settings:
            settings["omit"] = tuple(settings["omit"])
        return cls(**settings)

    def omits(self, path: str) -> bool:
        """True when the card has no file or DF at ``path`` (or none of its DF)."""
        return path in self.omit or path.split("/")[0] in self.omit

    @property
    def pad(self) -> bytes:
        """The AN padding bytes (empty for exact length)."""
        return PADS[self.an_padding]

    @property
    def fill(self) -> bytes:
        """The fill of fixed-layout record fields."""
        return b"\xff" if self.an_padding == "FF" else b"\x00"

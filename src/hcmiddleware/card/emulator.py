"""A software resident health card: files, commands and security of docs/card-spec.md.

:class:`EmulatedCard` is personalised from a JSON profile (cardholder data, photo,
visits …) and an issuer key set (the same JSON a software SAM loads); it diversifies
each issuer master key with its card factor and city code at load, as an issuer's
personalisation machine would. Or it is loaded from a card image
(:mod:`.image`, :meth:`EmulatedCard.from_image`) that already holds the card's keys.
It is itself a transport (``atr``, ``transmit``, ``close``), so a card session can talk
to it in-process, and :mod:`.vpcd` can put it behind pcscd.

Behaviour follows docs/card-spec.md ("Behaviour"): SELECT answers FCI only when asked
(Le present); a SELECT of a DF clears the security state; READ RECORD by tag or number
(current EF or SFI), all records from P1 to the last in one READ RECORD (``61xx`` and
GET RESPONSE past 256 bytes), READ/UPDATE BINARY (offset or SFI), cyclic APPEND RECORD, UPDATE
RECORD under secure messaging, GET CHALLENGE, EXTERNAL/INTERNAL AUTHENTICATE with five
tries per key, the proprietary index marks ``84 D2``/``84 0C``, ``61xx`` for INTERNAL
AUTHENTICATE without Le and ``6Cxx`` for a wrong Le.

For tear tests, :meth:`EmulatedCard.pull_after` makes the card vanish after a number of
APDUs, optionally tearing the write in progress (half of its data lands).

With a :class:`~.field.FieldProfile` (``field=`` or the profile's ``"field"`` key) the
card behaves like cards in the field rather than like the specification's drawing:
cyclic records that were never written are not there (``6A83``), items without a
value have no record, text padded with ``FF``, short records, items in another order,
files and DFs left out, and (an option) no reading of all records in one READ RECORD.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hcmiddleware.card import filemap as fm
from hcmiddleware.card.apdu import Apdu, parse_command
from hcmiddleware.card.atr import build_atr, card_factor
from hcmiddleware.card.data import VisitRecord
from hcmiddleware.card.field import PADS, FieldProfile
from hcmiddleware.card.image import CardImage, load_image
from hcmiddleware.card.records import ItemValue, encode_fixed, encode_item, encode_visit
from hcmiddleware.card.tlv import encode_tlv, parse_record, parse_run
from hcmiddleware.errors import (
    CardAbsentError,
    CardDataError,
    CardError,
    CardProtocolError,
    SamError,
)
from hcmiddleware.sam import crypto
from hcmiddleware.sam.keyset import KeySet, SecretKey, load_keyset

__all__ = ["EmulatedCard"]

MAX_TRIES = 5
#: Historical bytes before the chip serial: "HC" (our choice, 2 + 10 = 12 bytes).
ATR_PREFIX = b"HC"


class _Sw(Exception):  # noqa: N818 - internal control flow, never escapes the emulator
    """Stop a command with a status word."""

    def __init__(self, sw: int) -> None:
        super().__init__(f"{sw:04X}")
        self.sw = sw


@dataclass(eq=False)
class _Key:
    alg: crypto.Algorithm
    value: bytes = field(repr=False)
    tries: int = MAX_TRIES


@dataclass(eq=False)
class _Df:
    spec: fm.DfSpec
    parent: _Df | None
    children: dict[int, _Df | _Ef] = field(default_factory=dict)
    keys: dict[int, _Key] = field(default_factory=dict)


@dataclass(eq=False)
class _Ef:
    spec: fm.EfSpec
    records: list[bytes] = field(default_factory=list)
    data: bytearray = field(default_factory=bytearray)


class EmulatedCard:
    """A personalised software health card; also an in-process :class:`Transport`."""

    def __init__(
        self,
        profile: Mapping[str, Any],
        keyset: KeySet | str | Path | None = None,
        *,
        base_dir: str | Path = ".",
        card_keys: Mapping[int, tuple[crypto.Algorithm, SecretKey]] | None = None,
        field: FieldProfile | None = None,
    ) -> None:
        """A card from ``profile`` with keys from ``keyset`` (diversified here) or
        ``card_keys`` (already the card's own, e.g. from a card image) — exactly one.

        ``field`` makes it a field card (default: the profile's ``"field"`` key, else
        the tidy card of the specification).
        """
        if (keyset is None) == (card_keys is None):
            raise CardDataError("an emulated card needs either an issuer key set or card keys")
        items = dict(profile.get("items", {}))
        unknown = sorted(set(items) - {it.name for it in fm.ITEMS.values()})
        if unknown:
            raise CardDataError(
                f"the card profile names unknown items: {', '.join(unknown)}",
                hint="item names are those of hcmiddleware.card.filemap (e.g. id_number)",
            )
        serial = str(items.get("chip_serial", ""))
        if len(serial.encode("ascii", "replace")) != 10:
            raise CardDataError("the profile's chip_serial must be 10 ASCII characters")
        self._atr = (
            bytes.fromhex(profile["atr"])
            if "atr" in profile
            else build_atr(ATR_PREFIX + serial.encode("ascii"))
        )
        self.city_code = str(items.get("city_code", ""))
        #: how this card departs from the tidy card (None: it does not)
        self.field = field if field is not None else FieldProfile.from_json(profile.get("field"))
        pad = PADS.get(str(profile.get("an_padding", "exact")))
        if pad is None:
            raise CardDataError('an_padding must be "exact", "00", "20" or "FF"')
        if self.field is not None:
            pad = self.field.pad
        self._mf = self._build(items, pad, profile, Path(base_dir))
        if keyset is not None:
            self._load_keys(keyset)
        else:
            assert card_keys is not None
            self._install_keys(card_keys)
        self.apdu_count = 0
        self._pull_at: int | None = None
        self._tear = False
        self.pulled = False
        self.reset()

    # --- construction ------------------------------------------------------------

    @classmethod
    def from_files(
        cls, profile: str | Path, keyset: str | Path, *, field: FieldProfile | None = None
    ) -> EmulatedCard:
        """A card from a profile JSON file (photo path relative to it) and a key set."""
        path = Path(profile)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CardDataError(
                f"the card profile {path} cannot be read ({type(exc).__name__})",
                hint="check the path and that the file is JSON",
            ) from None
        return cls(data, keyset, base_dir=path.parent, field=field)

    @classmethod
    def from_image(
        cls, image: CardImage | str | Path, *, field: FieldProfile | None = None
    ) -> EmulatedCard:
        """A card from a card image (``hcm card personalise``): no master key needed."""
        if not isinstance(image, CardImage):
            image = load_image(image)
        profile = {**image.profile, "atr": image.atr}
        card = cls(profile, card_keys=image.card_keys(), field=field)
        if image.photo and fm.PHOTO in card._files:
            card.write_photo(image.photo_bytes)
        return card

    def _build(
        self, items: Mapping[str, Any], pad: bytes, profile: Mapping[str, Any], base: Path
    ) -> _Df:
        field_ = self.field
        dfs: dict[str, _Df] = {}
        mf = dfs["MF"] = _Df(fm.MF, None)
        dfs["DDF1"] = _Df(fm.DDF1, mf)
        mf.children[fm.DDF1.fid] = dfs["DDF1"]
        for df_spec in (fm.DF01, fm.DF02, fm.DF03):
            dfs[df_spec.label] = _Df(df_spec, dfs["DDF1"])
            if not (field_ and field_.omits(df_spec.label)):
                dfs["DDF1"].children[df_spec.fid] = dfs[df_spec.label]
        self._files: dict[fm.EfSpec, _Ef] = {}
        for spec in fm.FILES:
            if field_ and field_.omits(spec.path):
                continue
            ef = _Ef(spec)
            dfs[spec.df.label].children[spec.fid] = ef
            self._files[spec] = ef
            if spec.kind is fm.EfKind.TLV_RECORDS:
                ef.records = self._tlv_records(spec, items, pad)
            elif spec.kind is fm.EfKind.INDEX:
                ef.records = [bytes((fm.INDEX_INVALID,))] * spec.records
            elif spec.kind is fm.EfKind.CYCLIC:
                ef.records = self._unwritten_records(spec)
            else:
                ef.data = bytearray(spec.size)
        for name, ring in (("allergies", fm.ALLERGIES), ("immunisations", fm.IMMUNISATIONS)):
            if ring not in self._files:
                continue
            entries = list(profile.get(name, []))[: ring.records]
            for i, entry in enumerate(entries):  # newest first, as the card shows them
                record = encode_fixed(ring, entry, fill=field_.fill if field_ else b"\x00")
                if field_ and field_.short_records:
                    record = record.rstrip(field_.fill)
                records = self._files[ring].records
                if i < len(records):
                    records[i] = record
                else:
                    records.append(record)
        if profile.get("photo") and fm.PHOTO in self._files:
            photo = (base / str(profile["photo"])).read_bytes()
            self.write_photo(photo)
        for entry in profile.get("visits", []):
            visit = VisitRecord.model_validate(entry)
            slots = fm.VISIT_SLOTS[visit.kind]
            if slots.index in self._files and any(r in self._files for r in slots.records):
                self.store_visit(visit)
        return mf

    def _tlv_records(self, spec: fm.EfSpec, items: Mapping[str, Any], pad: bytes) -> list[bytes]:
        """The records of a TLV file: one per item, as the field profile lays them out."""
        field_ = self.field
        records = []
        its = fm.items_of(spec)
        for it in reversed(its) if field_ and field_.reorder else its:
            value = _profile_value(it, items.get(it.name))
            if field_ and not value and field_.empty_items != "tlv":
                if field_.empty_items == "empty":
                    records.append(b"")
                continue
            records.append(encode_item(it, value, an_pad=pad))
        return records

    def _unwritten_records(self, spec: fm.EfSpec) -> list[bytes]:
        """A cyclic file as issued: no record written yet."""
        mode = self.field.unwritten if self.field else "00"
        if mode == "absent":
            return []
        blank = b"" if mode == "empty" else PADS[mode] * spec.size
        return [blank] * spec.records

    def _owners(self) -> dict[int, _Df]:
        """The DF each key ref lives in (key 21 in the MF, valid everywhere)."""
        owners = {}
        for df in (self._mf, *self._all_dfs()):
            for ref in (df.spec.read_key, df.spec.update_key):
                if ref is not None:
                    owners[ref] = df
        owners[fm.INTERNAL_AUTH_KEY] = self._mf
        return owners

    def _install_keys(self, card_keys: Mapping[int, tuple[crypto.Algorithm, SecretKey]]) -> None:
        owners = self._owners()
        for ref, (alg, key) in card_keys.items():
            owner = owners.get(ref)
            if owner is None:
                continue
            if len(key) != crypto.key_size(alg):
                raise CardDataError(f"card key {ref:02X} has the wrong length for {alg.value}")
            owner.keys[ref] = _Key(alg, key.reveal())

    def _load_keys(self, keyset: KeySet | str | Path) -> None:
        keys = (keyset if isinstance(keyset, KeySet) else load_keyset(keyset)).keys
        owners = self._owners()
        factor = card_factor(self._atr)
        try:
            for key in keys:
                owner = owners.get(key.ref)
                if owner is not None:
                    # The issuer diversifies with the card's own city code (item 57).
                    value = crypto.card_key(key.alg, key.master.reveal(), factor, self.city_code)
                    owner.keys[key.ref] = _Key(key.alg, value)
        except SamError:
            raise CardDataError(
                "the key set's keys cannot be diversified for this card",
                hint="check the key lengths and the card's city code (item 57)",
            ) from None

    def _all_dfs(self) -> list[_Df]:
        out: list[_Df] = []
        stack = [self._mf]
        while stack:
            df = stack.pop()
            for child in df.children.values():
                if isinstance(child, _Df):
                    out.append(child)
                    stack.append(child)
        return out

    # --- personalisation helpers (also used by tests) -------------------------------

    def _file(self, spec: fm.EfSpec) -> _Ef:
        ef = self._files.get(spec)
        if ef is None:
            raise CardDataError(f"this card has no {spec.path} (its field profile leaves it out)")
        return ef

    def write_photo(self, jpeg: bytes) -> None:
        """Store a JPEG in DDF1/EF07 as the issuer would (2-byte length, JPEG, 00 fill)."""
        room = fm.PHOTO.size - fm.PHOTO_LENGTH_PREFIX
        if len(jpeg) > room:
            raise CardDataError(f"a photo of {len(jpeg)} bytes exceeds the card's {room}")
        data = len(jpeg).to_bytes(2, "big") + jpeg
        self._file(fm.PHOTO).data = bytearray(data.ljust(fm.PHOTO.size, b"\x00"))

    def store_visit(self, visit: VisitRecord) -> None:
        """Put a visit record in its slot (``visit.slot``, or the first free one) as valid."""
        slots = fm.VISIT_SLOTS[visit.kind]
        index = self._file(slots.index)
        slot = visit.slot or next(
            (
                i + 1
                for i, r in enumerate(index.records)
                if r[0] != fm.INDEX_VALID and slots.records[i] in self._files
            ),
            1,
        )
        spec = slots.records[slot - 1]
        content = encode_visit(visit, spec.size)
        if self.field and self.field.reorder:
            content = _reordered_run(content, spec.size)
        self._file(spec).data = bytearray(content)
        index.records[slot - 1] = bytes((fm.INDEX_VALID,))

    def file_bytes(self, spec: fm.EfSpec) -> bytes:
        """The raw content of a file (transparent) or its records concatenated."""
        ef = self._file(spec)
        return bytes(ef.data) if spec.kind is fm.EfKind.TRANSPARENT else b"".join(ef.records)

    def key_tries(self, ref: int) -> int:
        """Tries left of a key (5 = never failed, 0 = blocked)."""
        for df in (self._mf, *self._all_dfs()):
            if ref in df.keys:
                return df.keys[ref].tries
        raise KeyError(ref)

    # --- the transport side --------------------------------------------------------

    @property
    def atr(self) -> bytes:
        """The card's answer-to-reset (historical bytes end with the chip serial)."""
        return self._atr

    def reset(self) -> None:
        """Power cycle: MF selected, security state and pending data cleared, card present."""
        self._df = self._mf
        self._ef: _Ef | None = None
        self._auth: set[int] = set()
        self._challenge: bytes | None = None
        self._pending: bytes | None = None
        self.pulled = False
        self._pull_at = None
        self.apdu_count = 0

    def pull_after(self, n: int, *, tear: bool = False) -> None:
        """Pull the card after ``n`` more APDUs; with ``tear`` the next write half-lands."""
        self._pull_at = self.apdu_count + n
        self._tear = tear

    def close(self) -> None:
        """Nothing to release."""

    def transmit(self, apdu: bytes) -> bytes:
        """Execute one command APDU and return the response APDU."""
        if self.pulled:
            raise CardAbsentError("the card was removed from the reader")
        if self._pull_at is not None and self.apdu_count >= self._pull_at:
            self.pulled = True
            if self._tear:
                self._tear_write(apdu)
            raise CardAbsentError("the card was removed from the reader")
        self.apdu_count += 1
        try:
            command = parse_command(apdu)
        except CardProtocolError:
            return b"\x67\x00"
        try:
            data, sw = self._dispatch(command, apdu)
        except _Sw as stop:
            data, sw = b"", stop.sw
        return data + sw.to_bytes(2, "big")

    def _tear_write(self, apdu: bytes) -> None:
        """Half of an UPDATE BINARY lands, as when power fails mid-write."""
        try:
            command = parse_command(apdu)
        except CardProtocolError:
            return
        if command.ins == 0xD6 and command.cla == 0x00:
            half = Apdu(
                command.cla,
                command.ins,
                command.p1,
                command.p2,
                command.data[: len(command.data) // 2],
            )
            if half.data:
                with contextlib.suppress(_Sw):
                    self._dispatch(half, half.to_bytes())

    # --- commands --------------------------------------------------------------------

    def _dispatch(self, c: Apdu, raw: bytes) -> tuple[bytes, int]:
        if c.cla not in (0x00, 0x04, 0x80, 0x84):
            raise _Sw(0x6E00)
        if c.ins != 0xC0:
            self._pending = None
        handler = {
            0xA4: self._select,
            0xB2: self._read_record,
            0xB0: self._read_binary,
            0xD6: self._update_binary,
            0xDC: self._update_record,
            0x84: self._get_challenge,
            0x82: self._external_auth,
            0x88: self._internal_auth,
            0xC0: self._get_response,
            0xD2: self._mark,
            0x0C: self._mark,
        }.get(c.ins)
        if handler is None:
            raise _Sw(0x6D00)
        if (c.cla == 0x04 and c.ins != 0xDC) or (c.cla == 0x84 and c.ins not in (0xD2, 0x0C)):
            raise _Sw(0x6E00)
        if c.ins in (0xD2, 0x0C) and c.cla != 0x84:
            raise _Sw(0x6D00)
        return handler(c, raw)

    def _select(self, c: Apdu, raw: bytes) -> tuple[bytes, int]:
        if c.p1 == 0x00:
            if len(c.data) != 2:
                raise _Sw(0x6700)
            target = self._find_fid(int.from_bytes(c.data, "big"))
        elif c.p1 == 0x04:
            target = next(
                (
                    df
                    for df in (self._mf, *self._all_dfs())
                    if df.spec.name is not None
                    and c.data
                    and c.data.rstrip(b"\x00") == df.spec.name
                ),
                None,
            )
        else:
            raise _Sw(0x6A86)
        if target is None:
            raise _Sw(0x6A82)
        if isinstance(target, _Df):
            self._df, self._ef = target, None
            self._auth.clear()  # any DF selection drops the security state
            self._challenge = None
        else:
            self._ef = target
        if c.le is None or c.p2 & 0x0C == 0x0C:
            return b"", 0x9000
        fci = (
            b"\x84" + bytes((len(target.spec.name),)) + target.spec.name
            if isinstance(target, _Df) and target.spec.name
            else b"\x83\x02" + target.spec.fid.to_bytes(2, "big")
        )
        return _with_le(b"\x6f" + bytes((len(fci),)) + fci, c.le)

    def _find_fid(self, fid: int) -> _Df | _Ef | None:
        if fid == fm.MF.fid:
            return self._mf
        df = self._df
        if fid in df.children:
            return df.children[fid]
        if df.spec.fid == fid:
            return df
        if df.parent is not None:
            if df.parent.spec.fid == fid:
                return df.parent
            sibling = df.parent.children.get(fid)
            if isinstance(sibling, _Df):
                return sibling
        return None

    def _ef_by_sfi(self, sfi: int) -> _Ef:
        if sfi == 0:
            if self._ef is None:
                raise _Sw(0x6986)
            return self._ef
        for child in self._df.children.values():
            if isinstance(child, _Ef) and child.spec.sfi == sfi:
                self._ef = child
                return child
        raise _Sw(0x6A82)

    def _check_access(self, key: int | None) -> None:
        if key is not None and key not in self._auth:
            raise _Sw(0x6982)

    def _read_record(self, c: Apdu, raw: bytes) -> tuple[bytes, int]:
        ef = self._ef_by_sfi(c.p2 >> 3)
        if ef.spec.kind is fm.EfKind.TRANSPARENT:
            raise _Sw(0x6981)
        self._check_access(ef.spec.read_key)
        mode = c.p2 & 0x07
        if c.p1 == 0:
            raise _Sw(0x6A86)
        if mode == 0x04:
            if c.p1 > len(ef.records):
                raise _Sw(0x6A83)
            record = ef.records[c.p1 - 1]
        elif mode == 0x00 and ef.spec.kind is fm.EfKind.TLV_RECORDS:
            # the first record whose identifier (its tag) is P1; an empty record has none
            found = next((r for r in ef.records if r and r[0] == c.p1), None)
            if found is None:
                raise _Sw(0x6A83)
            record = found
        elif mode == 0x05 and (self.field is None or self.field.multi_record_read):
            # all records from P1 up to the last, concatenated (ISO/IEC 7816-4)
            if c.p1 > len(ef.records):
                raise _Sw(0x6A83)
            return self._chained(b"".join(ef.records[c.p1 - 1 :]), c.le)
        else:
            raise _Sw(0x6A86)
        return _with_le(record, c.le)

    def _chained(self, data: bytes, le: int | None) -> tuple[bytes, int]:
        """``data`` for Le, or, longer than a short answer, its first Le bytes and ``61xx``
        (the rest comes with GET RESPONSE)."""
        if le is None or len(data) <= 256:
            return _with_le(data, le)
        first = min(le, 256)
        self._pending = data[first:]
        return data[:first], 0x6100 | (min(len(self._pending), 256) & 0xFF)

    def _binary_target(self, c: Apdu) -> tuple[_Ef, int]:
        if c.p1 & 0x80:
            ef, offset = self._ef_by_sfi(c.p1 & 0x1F), c.p2
        else:
            ef, offset = self._ef_by_sfi(0), (c.p1 << 8) | c.p2
        if ef.spec.kind is not fm.EfKind.TRANSPARENT:
            raise _Sw(0x6981)
        return ef, offset

    def _read_binary(self, c: Apdu, raw: bytes) -> tuple[bytes, int]:
        ef, offset = self._binary_target(c)
        self._check_access(ef.spec.read_key)
        if offset >= len(ef.data):
            raise _Sw(0x6B00)
        if c.le is None:
            raise _Sw(0x6700)
        chunk = bytes(ef.data[offset : offset + c.le])
        return chunk, 0x9000 if len(chunk) == c.le else 0x6282

    def _update_binary(self, c: Apdu, raw: bytes) -> tuple[bytes, int]:
        ef, offset = self._binary_target(c)
        self._check_access(ef.spec.update_key)
        if offset >= len(ef.data):
            raise _Sw(0x6B00)
        if not c.data or offset + len(c.data) > len(ef.data):
            raise _Sw(0x6700)
        ef.data[offset : offset + len(c.data)] = c.data
        return b"", 0x9000

    def _update_record(self, c: Apdu, raw: bytes) -> tuple[bytes, int]:
        ef = self._ef_by_sfi(c.p2 >> 3)
        mode = c.p2 & 0x07
        if c.cla == 0x00 and mode == 0x03 and c.p1 == 0:
            if ef.spec.kind is not fm.EfKind.CYCLIC:
                raise _Sw(0x6981)
            self._check_access(ef.spec.update_key)
            if len(c.data) != ef.spec.size:
                raise _Sw(0x6700)
            # The write goes into the next empty record, or over the oldest when every
            # record is written; either way it becomes record 1 (ISO/IEC 7816-4).
            ef.records = [bytes(c.data), *ef.records][: ef.spec.records]
            return b"", 0x9000
        if mode != 0x04:
            raise _Sw(0x6A86)
        if ef.spec.kind is not fm.EfKind.TLV_RECORDS:
            raise _Sw(0x6981)
        if c.cla != 0x04:
            raise _Sw(0x6982)  # TLV records are written under secure messaging only
        self._check_access(ef.spec.update_key)
        if not 1 <= c.p1 <= len(ef.records):
            raise _Sw(0x6A83)
        challenge, self._challenge = self._challenge, None
        if challenge is None or ef.spec.update_key not in self._df.keys:
            raise _Sw(0x6985)
        key = self._df.keys[ef.spec.update_key]
        try:
            plain = crypto.sm_unwrap(
                key.alg, crypto.session_key(key.alg, key.value, challenge), raw
            )
        except SamError:
            raise _Sw(0x6988) from None
        old = ef.records[c.p1 - 1]
        # The tidy card refuses to put another item into a record; a field card writes
        # what it is sent (it has no idea what the record should hold).
        expected = old[0] if old and (self.field is None or self.field.checks_tags) else None
        try:
            tag, value = parse_record(plain, expected)
        except CardError:
            raise _Sw(0x6A80) from None
        item = fm.ITEMS.get(tag)
        if item is None or len(value) > item.length:
            raise _Sw(0x6A80)
        ef.records[c.p1 - 1] = bytes(plain[: 2 + len(value)])
        return b"", 0x9000

    def _get_challenge(self, c: Apdu, raw: bytes) -> tuple[bytes, int]:
        if c.le != crypto.CHALLENGE_SIZE:
            raise _Sw(0x6C08 if c.le else 0x6700)
        self._challenge = os.urandom(crypto.CHALLENGE_SIZE)
        return self._challenge, 0x9000

    def _external_auth(self, c: Apdu, raw: bytes) -> tuple[bytes, int]:
        if len(c.data) not in (8, 0x11):  # 0x11: the vendor form C ‖ 11 22 … 88 ‖ 01
            raise _Sw(0x6700)
        key = self._df.keys.get(c.p2)
        if key is None or c.p2 == fm.INTERNAL_AUTH_KEY:
            raise _Sw(0x6A88)
        challenge, self._challenge = self._challenge, None
        if challenge is None:
            raise _Sw(0x6985)
        if key.tries == 0:
            raise _Sw(0x6983)
        if crypto.cryptogram(key.alg, key.value, challenge) != c.data[:8]:
            key.tries -= 1
            raise _Sw(0x6983 if key.tries == 0 else 0x63C0 | key.tries)
        key.tries = MAX_TRIES
        self._auth.add(c.p2)
        return b"", 0x9000

    def _internal_auth(self, c: Apdu, raw: bytes) -> tuple[bytes, int]:
        if len(c.data) != crypto.CHALLENGE_SIZE:
            raise _Sw(0x6700)
        key = self._df.keys.get(c.p2) or (
            self._mf.keys.get(c.p2) if c.p2 == fm.INTERNAL_AUTH_KEY else None
        )
        if key is None:
            raise _Sw(0x6A88)
        answer = crypto.cryptogram(key.alg, key.value, c.data)
        if c.le is None:
            self._pending = answer
            return b"", 0x6100 | len(answer)
        return _with_le(answer, c.le)

    def _get_response(self, c: Apdu, raw: bytes) -> tuple[bytes, int]:
        pending, self._pending = self._pending, None
        if pending is None:
            raise _Sw(0x6985)
        return self._chained(pending, c.le)

    def _mark(self, c: Apdu, raw: bytes) -> tuple[bytes, int]:
        ef = self._ef_by_sfi(c.p2 >> 3)
        if ef.spec.kind is not fm.EfKind.INDEX:
            raise _Sw(0x6981)
        if c.p2 & 0x07 != 0x04:
            raise _Sw(0x6A86)
        self._check_access(ef.spec.update_key)
        if not 1 <= c.p1 <= len(ef.records):
            raise _Sw(0x6A83)
        flag = fm.INDEX_VALID if c.ins == 0xD2 else fm.INDEX_INVALID
        ef.records[c.p1 - 1] = bytes((flag,))
        return b"", 0x9000


def _with_le(data: bytes, le: int | None) -> tuple[bytes, int]:
    """Answer ``data`` if Le allows it (00 = up to 256), else ``6Cxx`` with the length."""
    if le is not None and (le == len(data) or (le in (256, 65536) and len(data) <= le)):
        return data, 0x9000
    return b"", 0x6C00 | (len(data) & 0xFF)


def _reordered_run(content: bytes, size: int) -> bytes:
    """A visit record's content with its TLV items in reverse order (same fill, trailer)."""
    body = size - fm.VISIT_TRAILER_LEN
    items, _ = parse_run(content[:body])
    run = b"".join(encode_tlv(tag, value) for tag, value in reversed(items))
    return run.ljust(body, b"\x00") + content[body:]


def _profile_value(it: fm.Item, value: Any) -> ItemValue:
    """A profile's JSON value for an item: hex for B, text for AN/CN, dates as digits."""
    if it.type is fm.AN or it.type is fm.CN:
        if value is None:
            return ""
        if isinstance(value, dt.date):
            return value.strftime("%Y%m%d")
        return str(value)
    if value is None:
        return bytes(it.length) if it.length == 1 else b""
    if isinstance(value, int):
        return value.to_bytes(it.length, "big")
    try:
        return bytes.fromhex(str(value))
    except ValueError:
        raise CardDataError(f"profile item {it.name} must be hex") from None

"""The card session: reads and writes the health card in terms of data, not APDUs.

:class:`CardSession` knows the file map (:mod:`.filemap`), the codecs and the card's
security rules, and sends no APDU a smarter read could avoid:

- it remembers the selected DF and the keys authenticated in it, so consecutive reads
  in one DF share one SELECT and one authentication (any DF selection clears the
  card's security state, so reads are grouped per DF);
- records are read through their short file identifier (no SELECT of the EF), with Le
  ``00`` so no ``6Cxx`` round trip is needed; a TLV file several items of which are
  wanted is read whole in one READ RECORD (all records from record 1, ISO/IEC 7816-4)
  when its records fit a short answer, item by item on a card without that mode;
- the photo is read up to its announced length, visit records up to the end of their
  TLV run, the cyclic files only up to the first never-written record.

Authentication goes through a :class:`~hcmiddleware.sam.base.Sam`: the session hands it
the card factor and the card's challenge and sends back what it answers; no card key
ever exists here.

Two checks run before any authentication spends one of the card's tries: the card's
city (item 57, free to read) must be the SAM's (:class:`~hcmiddleware.errors.CardCityError`
otherwise), and the key must not be held back by the :class:`~.guard.KeyGuard` because
the card reported 2 tries left or fewer (:class:`~hcmiddleware.errors.CardKeyAtRiskError`).

Visit records are written tear-safe (see :meth:`CardSession.append_visit`).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Concatenate, ParamSpec, TypeVar

from hcmiddleware.card import filemap as fm
from hcmiddleware.card.apdu import SW_OK, Apdu, Response, exchange, parse_command, status_error
from hcmiddleware.card.atr import card_factor
from hcmiddleware.card.data import (
    Allergy,
    Cardholder,
    CardRead,
    Clinical,
    Immunisation,
    Issuer,
    PartialModel,
    Personal,
    Validity,
    VisitRecord,
)
from hcmiddleware.card.guard import PROCESS_GUARD, KeyGuard
from hcmiddleware.card.records import (
    ItemValue,
    cardholder_from,
    clinical_from,
    decode_date,
    decode_fixed,
    decode_item,
    decode_visit,
    encode_date,
    encode_fixed,
    encode_item,
    encode_visit,
    issuer_from,
    personal_from,
    validity_from,
)
from hcmiddleware.card.tlv import parse_run
from hcmiddleware.card.transport import Transport
from hcmiddleware.errors import (
    CardAuthError,
    CardCityError,
    CardDataError,
    CardFileMissingError,
    CardFileNotFoundError,
    CardKeyBlockedError,
    CardStatusError,
    ForeignCardError,
    SamInputError,
    SamUnavailableError,
)
from hcmiddleware.sam.base import Sam
from hcmiddleware.sam.crypto import city_factor

__all__ = ["CardSession", "VisitIndex"]

#: Largest data field of a short UPDATE BINARY.
WRITE_CHUNK = 255
#: Largest answer of a short READ BINARY (Le 00).
READ_CHUNK = 256
_ACCEPT_EOF = frozenset({0x6282})
#: Status words a read of an optional file hands back instead of raising.
_ABSENT_FILE = frozenset({0x6A82})
_ABSENT_RECORD = frozenset({0x6A82, 0x6A83})
#: Records beyond the specification's items a TLV file is searched for an item.
_EXTRA_RECORDS = 8
#: READ RECORD P2 b3–b1 = 101: all records from P1 up to the last (ISO/IEC 7816-4).
_ALL_FROM_P1 = 0x05
#: Answers of a card that does not know the whole-file read (wrong P1/P2, function,
#: instruction or class not supported, wrong length): it is read item by item instead.
_NO_WHOLE_READ = frozenset({0x6A86, 0x6A81, 0x6D00, 0x6E00, 0x6B00, 0x6700})
#: Status words of a whole-file read handed back to the caller (6282: the records end
#: before Le bytes, which a card may say of a complete answer).
_WHOLE_READ_ACCEPT = _ABSENT_RECORD | _NO_WHOLE_READ | {0x6282}


class _Missing:
    """What a read found absent, in the order found: files and DFs (``DF01``,
    ``DDF1/EF07``) and, apart, the items without a record."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.items: list[int] = []

    def add(self, path: str) -> None:
        if path not in self.paths:
            self.paths.append(path)

    def __contains__(self, path: object) -> bool:
        return path in self.paths

    def __iter__(self) -> Iterator[str]:
        return iter(self.paths)


def _mandatory(path: str, sw: int, what: str) -> CardFileMissingError:
    return CardFileMissingError(
        f"{what}: the card has no {path}, which every health card carries (SW {sw:04X})",
        sw=sw,
        path=path,
    )


def _items(want: frozenset[fm.CardPart], *parts: fm.CardPart) -> list[fm.Item]:
    """The TLV items of those of ``parts`` that are wanted."""
    return [it for p in parts if p in want for it in fm.PART_ITEMS[p]]


def _whole_size(ef: fm.EfSpec) -> int:
    """Bytes of a TLV file's records, every item at its full length."""
    return sum(2 + it.length for it in fm.items_of(ef))


@dataclass(frozen=True, slots=True)
class _WholeFile:
    """What one READ RECORD of a whole TLV file said about each of its items.

    ``records`` are the TLV records found, by tag (the first of a tag, as a read by
    tag finds it). ``complete``: an item not among them has no record on the card
    (else it is read by its tag to be sure).
    """

    sw: int
    records: dict[int, bytes]
    complete: bool = True

    def answer(self, number: int) -> Response | None:
        """The answer a READ RECORD by tag ``number`` would give; ``None``: ask the card."""
        if self.sw != SW_OK:
            return Response(b"", self.sw)
        record = self.records.get(number)
        if record is not None:
            return Response(record, SW_OK)
        return Response(b"", 0x6A83) if self.complete else None


def _split_records(data: bytes, *, cut: bool) -> tuple[dict[int, bytes], int] | None:
    """The TLV records of a whole-file answer, by tag, and how many there were.

    Records are concatenated, each as long as its TLV or padded with ``00`` or ``FF``
    (neither is a tag); a zero-length record leaves nothing. ``cut``: the answer may
    end inside a record (it filled the Le), whose bytes are then dropped. Anything
    else that does not parse is ``None``.
    """
    records: dict[int, bytes] = {}
    count = pos = 0
    while pos < len(data):
        tag = data[pos]
        if tag in (0x00, 0xFF):
            pos += 1
            continue
        end = pos + 2 + data[pos + 1] if pos + 1 < len(data) else len(data) + 1
        if end > len(data):
            return (records, count) if cut else None
        records.setdefault(tag, data[pos:end])
        count += 1
        pos = end
    return records, count


def _any(want: frozenset[fm.CardPart], model: type[PartialModel]) -> bool:
    """True when any part that fills ``model`` is wanted."""
    return bool(want.intersection(model.own_parts()))


@dataclass(frozen=True, slots=True)
class VisitIndex:
    """The DF03 index of one kind of visit: ``valid[i]`` is slot ``i + 1``'s flag."""

    kind: fm.VisitKind
    valid: tuple[bool, ...]

    @property
    def valid_slots(self) -> list[int]:
        """1-based numbers of the valid slots."""
        return [i + 1 for i, v in enumerate(self.valid) if v]


class _Counting:
    """Counts APDUs on their way to the transport."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.count = 0

    def transmit(self, apdu: bytes) -> bytes:
        """Count, then pass on."""
        self.count += 1
        return self.transport.transmit(apdu)


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _serialised(
    method: Callable[Concatenate[CardSession, _P], _R],
) -> Callable[Concatenate[CardSession, _P], _R]:
    """One operation at a time per session: its DF and open keys are shared state."""

    @functools.wraps(method)
    def locked(self: CardSession, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with self._lock:
            return method(self, *args, **kwargs)

    return locked


class CardSession:
    """A conversation with one inserted health card.

    ``sam`` is needed for everything beyond DDF1/EF05 (issuer data); without it those
    reads raise :class:`~hcmiddleware.errors.SamUnavailableError`. Every card failure is
    a :class:`~hcmiddleware.errors.CardError` subclass. Operations may be called from
    several threads; they run one at a time.

    ``guard`` remembers keys low on tries per card; the default is the process-wide
    :data:`~hcmiddleware.card.guard.PROCESS_GUARD`, so a new session on the same card
    is held back too.
    """

    def __init__(
        self, transport: Transport, sam: Sam | None = None, *, guard: KeyGuard | None = None
    ) -> None:
        self.transport = transport
        self.sam = sam
        self.guard = PROCESS_GUARD if guard is None else guard
        self._card_city: str | None = None
        self._io = _Counting(transport)
        self._df: fm.DfSpec | None = None
        self._auth: set[int] = set()
        self._factor: bytes | None = None
        #: item number -> record number on this card (located before an update)
        self._records: dict[int, int] = {}
        #: the ATR of the card known not to read a whole record file in one READ RECORD
        self._no_whole_read: bytes | None = None
        self._lock = threading.RLock()

    # --- plumbing ----------------------------------------------------------------------

    @property
    def apdu_count(self) -> int:
        """APDUs sent so far (GET RESPONSE and 6Cxx re-issues included)."""
        return self._io.count

    @property
    def card_factor(self) -> bytes:
        """The card's diversification factor (last 8 historical bytes of its ATR)."""
        if self._factor is None:
            self._factor = card_factor(self.transport.atr)
        return self._factor

    def _send(self, apdu: Apdu, what: str, accept: frozenset[int] = frozenset()) -> Response:
        return exchange(self._io, apdu, what=what, accept=accept)

    @_serialised
    def forget_state(self) -> None:
        """Forget the selected DF and authentications (after a reset or reinsertion)."""
        self._df = None
        self._auth.clear()
        self._card_city = None  # a reinserted card may be another card
        self._factor = None
        self._records.clear()
        self._no_whole_read = None

    def _select_df(self, df: fm.DfSpec, *, optional: bool = False) -> bool:
        """Make ``df`` current with as few SELECTs as the card allows.

        DF01–DF03 are children of DDF1, reachable by FID from DDF1 or a sibling; from
        anywhere else (a fresh card sits in the MF) DDF1 comes first, by name, which
        also tells a health card from a foreign one. Every DF selection clears the
        card's security state, and so ours.

        A DF the card does not have (``6A82``) returns ``False`` when ``optional``,
        else raises :class:`CardFileNotFoundError`.
        """
        if self._df is df:
            return True
        previous, self._df = self._df, None
        self._auth.clear()
        if df is fm.DDF1 or previous not in (fm.DDF1, fm.DF01, fm.DF02, fm.DF03):
            assert fm.DDF1.name is not None
            try:
                self._send(Apdu(0x00, 0xA4, 0x04, 0x00, fm.DDF1.name), "selecting the health DDF")
            except CardFileNotFoundError:
                raise ForeignCardError(
                    "the card has no resident health card application (WS.SYS.DDF01)"
                ) from None
        if df is not fm.DDF1:
            fid = df.fid.to_bytes(2, "big")
            what = f"selecting {df.label}"
            answer = self._send(Apdu(0x00, 0xA4, 0x00, 0x00, fid), what, _ABSENT_FILE)
            if answer.sw != SW_OK:
                # where a failed SELECT leaves the card is not certain: start afresh
                if optional:
                    return False
                raise status_error(answer.sw, what)
        self._df = df
        return True

    def _require_sam(self, what: str) -> Sam:
        if self.sam is None:
            raise SamUnavailableError(
                f"{what} needs the terminal's SAM, and none is connected",
                hint="insert the SAM (or give a SAM key set) and try again",
            )
        return self.sam

    def _challenge(self) -> bytes:
        challenge = self._send(Apdu(0x00, 0x84, 0x00, 0x00, le=8), "getting a challenge").data
        if len(challenge) != 8:
            raise CardDataError(
                f"the card's challenge has {len(challenge)} bytes, not 8",
                hint="remove and reinsert the card",
            )
        return challenge

    def _check_city(self, sam: Sam) -> None:
        """:class:`CardCityError` unless the card's city is the SAM's (before any try).

        Card keys are diversified with the card's city; a SAM of another city makes a
        wrong cryptogram every time, and each would cost the card a try.
        """
        if self._card_city is None:
            item = fm.item("city_code")
            self._read_tlv_items([item])  # DDF1/EF05, free to read; caches the city
        card_city = self._card_city or ""
        try:
            card_factor_city = city_factor(card_city)
        except SamInputError:
            raise CardDataError(
                "the card's city code (item 57) is missing or not 2, 4 or 6 digits",
                hint="the card cannot be authenticated; send the resident to the issuer",
            ) from None
        if card_factor_city != city_factor(sam.city_code):
            raise CardCityError(
                f"the card was issued for city {card_city}, the SAM holds the keys of city "
                f"{sam.city_code}; no authentication was tried",
                card_city=card_city,
                sam_city=sam.city_code,
            )

    def _authenticate(self, df: fm.DfSpec, key_ref: int | None, *, optional: bool = False) -> bool:
        """Select ``df`` and open ``key_ref`` in it; ``False`` when an optional DF is absent."""
        if key_ref is not None and not (self._df is df and key_ref in self._auth):
            # Both checks come before any APDU of this authentication.
            self.guard.check(self.card_factor, key_ref)
            self._check_city(self._require_sam(f"opening {df.label}"))
        if not self._select_df(df, optional=optional):
            return False
        if key_ref is None or key_ref in self._auth:
            return True
        sam = self._require_sam(f"opening {df.label}")
        challenge = self._challenge()
        answer = sam.external_auth(key_ref, self.card_factor, challenge)
        what = f"authenticating to {df.label}"
        try:
            self._send(Apdu(0x00, 0x82, 0x00, key_ref, answer), what)
        except CardAuthError as exc:
            if not self.guard.failed(self.card_factor, key_ref, exc.tries_left):
                raise
            raise CardAuthError(
                f"{what}: the card rejected key {key_ref:02X} and has {exc.tries_left} tries "
                "left; this terminal will not try that key on this card again",
                sw=exc.sw,
                tries_left=exc.tries_left,
                hint="do not retry anywhere; send the resident to the card issuer and check "
                "that this terminal's SAM holds the keys of the card's issuer",
            ) from None
        except CardKeyBlockedError:
            self.guard.failed(self.card_factor, key_ref, 0)
            raise
        self.guard.succeeded(self.card_factor, key_ref)
        self._auth.add(key_ref)
        return True

    # --- reads -------------------------------------------------------------------------

    def _read_record(self, ef: fm.EfSpec, p1: int, by_number: bool, what: str) -> Response:
        """READ RECORD through the SFI; ``6A82`` and ``6A83`` come back for the caller."""
        assert ef.sfi is not None
        p2 = (ef.sfi << 3) | (0x04 if by_number else 0x00)
        return self._send(Apdu(0x00, 0xB2, p1, p2, le=READ_CHUNK), what, _ABSENT_RECORD)

    def _read_tlv_items(
        self, its: Iterable[fm.Item], missing: _Missing | None = None
    ) -> dict[str, ItemValue]:
        """Items grouped per DF (one SELECT and one authentication per DF).

        The card as it comes: an item the card does not carry (``6A83``) is left out of
        the result (its number noted in ``missing.items``), one it holds as an empty
        record reads empty; a file (``6A82``) or DF it does not have leaves out all of
        its items and is named in ``missing``. That is, unless it is one the card
        cannot be used without (:data:`~.filemap.MANDATORY_FILES`,
        :data:`~.filemap.MANDATORY_ITEMS`): then :class:`CardFileMissingError`.
        """
        missing = _Missing() if missing is None else missing
        values: dict[str, ItemValue] = {}
        order = {df: i for i, df in enumerate(fm.DFS)}
        wanted = sorted(its, key=lambda i: (order[i.ef.df], i.ef.fid, i.record))
        whole: dict[fm.EfSpec, _WholeFile | None] = {}
        for it in wanted:
            ef = it.ef
            if ef.df.label in missing or ef.path in missing:
                continue
            if not self._authenticate(ef.df, ef.read_key, optional=True):
                missing.add(ef.df.label)
                continue
            what = f"reading item {it.number}"
            if ef not in whole:
                several = len({i.number for i in wanted if i.ef is ef}) > 1
                whole[ef] = self._read_whole(ef) if several else None
            from_whole = whole[ef]
            answer = from_whole.answer(it.number) if from_whole is not None else None
            if answer is None:
                answer = self._read_record(ef, it.number, False, what)
                if from_whole is not None and answer.sw == SW_OK:
                    # the whole-file answer lacked a record the card has: the card did
                    # not read them all; ask it item by item from now on
                    self._no_whole_read = self.transport.atr
            if answer.sw == 0x6A82:
                if ef in fm.MANDATORY_FILES:
                    raise _mandatory(ef.path, answer.sw, what)
                missing.add(ef.path)
                continue
            if answer.sw == 0x6A83:
                if it.number in fm.MANDATORY_ITEMS:
                    raise _mandatory(f"{ef.path} item {it.number}", answer.sw, what)
                missing.items.append(it.number)
                continue
            if not answer.data:
                value: ItemValue = b"" if it.type is fm.B else ""
            else:
                value = decode_item(it, answer.data)
            if not value and it.number in fm.MANDATORY_ITEMS:
                raise CardDataError(
                    f"the card's {it.name.replace('_', ' ')} (item {it.number}) is empty",
                    hint="the card was not personalised completely; send the resident to "
                    "the issuer",
                )
            values[it.name] = value
            if it.name == "city_code":
                self._card_city = str(value)
        return values

    def _read_whole(self, ef: fm.EfSpec) -> _WholeFile | None:
        """A TLV file's records in one READ RECORD (P1 = 1, all up to the last).

        ``None`` means: read its items by tag. So it is when the records would not fit
        a short answer (the issuer file with its certificate), on a card that does not
        know the mode (it refuses, or answers what does not parse as TLV records: it is
        remembered for this card and not asked again), when the answer did not fit
        (``6Cxx`` that persists, ``61xx`` without end) and on ``6A83``: no record 1 is
        an empty file or a card that answers so for a mode it lacks, and the reads by
        tag tell which. ``6A82`` (no such file) keeps its meaning.
        """
        if _whole_size(ef) > READ_CHUNK or self._no_whole_read == self.transport.atr:
            return None
        assert ef.sfi is not None
        what = f"reading {ef.path}"
        apdu = Apdu(0x00, 0xB2, 0x01, (ef.sfi << 3) | _ALL_FROM_P1, le=READ_CHUNK)
        try:
            answer = self._send(apdu, what, _WHOLE_READ_ACCEPT)
        except CardStatusError as exc:
            if exc.sw >> 8 not in (0x61, 0x6C):
                raise
            self._no_whole_read = self.transport.atr
            return None
        if answer.sw == 0x6A82:
            return _WholeFile(answer.sw, {})
        if answer.sw == 0x6A83:
            return None
        cut = len(answer.data) >= READ_CHUNK  # it filled the Le: more may follow
        split = None if answer.sw in _NO_WHOLE_READ else _split_records(answer.data, cut=cut)
        if split is None:
            self._no_whole_read = self.transport.atr
            return None
        records, tlvs = split
        # One record alone may be a card that read record 1 only: the items not in it
        # are then asked for by tag.
        return _WholeFile(SW_OK, records, complete=not cut and tlvs > 1)

    @_serialised
    def read_items(self, numbers: Iterable[int]) -> dict[int, ItemValue]:
        """Items by number (the ``wsc_GetCardInfo`` idea): text for AN/CN, bytes for B.

        Items the card does not carry are left out of the answer.
        """
        its = []
        for n in numbers:
            it = fm.ITEMS.get(n)
            if it is None:
                raise CardDataError(
                    f"there is no data element {n} on the health card",
                    hint="item numbers are those of docs/card-spec.md (1-57)",
                )
            its.append(it)
        by_name = self._read_tlv_items(its)
        return {fm.item(name).number: value for name, value in by_name.items()}

    @_serialised
    def read_issuer(self) -> Issuer:
        """DDF1/EF05, free to read: 1 SELECT + 10 READ RECORD on a fresh card."""
        return issuer_from(self._read_tlv_items(fm.items_of(fm.ISSUER)))

    @_serialised
    def read_cardholder(self) -> Cardholder:
        """DDF1/EF06 (read key 01)."""
        return cardholder_from(self._read_tlv_items(fm.items_of(fm.CARDHOLDER)))

    @_serialised
    def read_validity(self) -> Validity:
        """DDF1/EF08 (read key 01): expiry, phones, payment methods."""
        return validity_from(self._read_tlv_items(fm.items_of(fm.VALIDITY)))

    @_serialised
    def read_photo(self) -> bytes:
        """The JPEG of DDF1/EF07; ``b""`` when the card carries no photo."""
        return self._read_photo(_Missing())

    def _read_photo(self, missing: _Missing) -> bytes:
        spec = fm.PHOTO
        if spec.df.label in missing or not self._authenticate(
            spec.df, spec.read_key, optional=True
        ):
            missing.add(spec.df.label)
            return b""
        assert spec.sfi is not None
        answer = self._send(
            Apdu(0x00, 0xB0, 0x80 | spec.sfi, 0, le=READ_CHUNK),
            "reading the photo",
            _ACCEPT_EOF | {0x6A82, 0x6B00},
        )
        if answer.sw == 0x6A82:
            missing.add(spec.path)
            return b""
        first = answer.data
        if answer.sw == 0x6B00 or not first.strip(b"\xff"):
            return b""  # an empty file, or one never written (all FF)
        if len(first) < fm.PHOTO_LENGTH_PREFIX:
            raise CardDataError("the photo file is shorter than its length prefix")
        length = int.from_bytes(first[:2], "big")
        total = fm.PHOTO_LENGTH_PREFIX + length
        if total > spec.size:
            raise CardDataError(f"the photo file announces {length} bytes, more than it holds")
        data = bytearray(first[:total])
        while len(data) < total:
            offset = len(data)
            chunk = self._send(
                Apdu(0x00, 0xB0, offset >> 8, offset & 0xFF, le=min(READ_CHUNK, total - offset)),
                "reading the photo",
                _ACCEPT_EOF,
            ).data
            if not chunk:
                raise CardDataError("the photo file ends before its announced length")
            data += chunk
        photo = bytes(data[fm.PHOTO_LENGTH_PREFIX : total])
        if photo and not photo.startswith(b"\xff\xd8"):
            raise CardDataError("the photo file does not hold a JPEG image")
        return photo

    @_serialised
    def read_personal(self) -> Personal:
        """DF01: addresses, contacts, education/marital/occupation, documents (key 02)."""
        its = [
            it
            for ef in (fm.ADDRESSES, fm.CONTACTS, fm.SOCIAL, fm.DOCUMENTS)
            for it in fm.items_of(ef)
        ]
        return personal_from(self._read_tlv_items(its))

    def _read_cyclic(self, ef: fm.EfSpec, missing: _Missing) -> list[dict[str, ItemValue]]:
        """Records newest first, up to the last one written.

        A cyclic file holds as many records as were written: reading past the last
        answers ``6A83`` (ISO/IEC 7816-4), and a card that keeps its records
        allocated shows a never-written one as empty, all ``00`` or all ``FF``. Either
        ends the file; the records read so far are its data.
        """
        if ef.df.label in missing or ef.path in missing:
            return []
        if not self._authenticate(ef.df, ef.read_key, optional=True):
            missing.add(ef.df.label)
            return []
        out = []
        for number in range(1, ef.records + 1):
            answer = self._read_record(ef, number, True, f"reading {ef.path} record {number}")
            if answer.sw == 0x6A82 and number == 1:
                missing.add(ef.path)
                break
            if answer.sw == 0x6A83:
                break
            if answer.sw != SW_OK:
                raise status_error(answer.sw, f"reading {ef.path} record {number}")
            values = decode_fixed(ef, answer.data)
            if values is None:
                break  # records fill from 1 in a cyclic file: the rest are empty too
            out.append(values)
        return out

    def _allergies(self, missing: _Missing) -> list[Allergy]:
        return [
            Allergy(substance=str(v["substance"]), reaction=str(v["reaction"]))
            for v in self._read_cyclic(fm.ALLERGIES, missing)
        ]

    def _immunisations(self, missing: _Missing) -> list[Immunisation]:
        out = []
        for v in self._read_cyclic(fm.IMMUNISATIONS, missing):
            date = decode_date(str(v["date"]))
            if date is None:
                raise CardDataError("an immunisation record has no date")
            out.append(Immunisation(vaccine=str(v["vaccine"]), date=date))
        return out

    @_serialised
    def read_clinical(self) -> Clinical:
        """DF02: blood group, condition flags, warnings, allergies, immunisations (key 03)."""
        missing = _Missing()
        values = self._read_tlv_items(fm.PART_ITEMS[fm.CardPart.BASICS], missing)
        return clinical_from(values, self._allergies(missing), self._immunisations(missing))

    @_serialised
    def read_visit_index(self, kind: fm.VisitKind) -> VisitIndex:
        """The DF03 index flags of ``kind`` (key 04).

        An index holding fewer records than the card's visit slots (``6A83``) gives
        that many slots; an empty record counts as invalid.
        """
        index = fm.VISIT_SLOTS[kind].index
        self._authenticate(index.df, index.read_key)
        return self._visit_index(kind, _Missing())

    def _visit_index(self, kind: fm.VisitKind, missing: _Missing) -> VisitIndex:
        index = fm.VISIT_SLOTS[kind].index
        flags: list[bool] = []
        for number in range(1, index.records + 1):
            answer = self._read_record(index, number, True, f"reading the {kind} index")
            if answer.sw == 0x6A82 and number == 1:
                missing.add(index.path)
                break
            if answer.sw == 0x6A83:
                break
            if answer.sw != SW_OK:
                raise status_error(answer.sw, f"reading the {kind} index")
            if len(answer.data) > 1:
                raise CardDataError(f"a {kind} index record has {len(answer.data)} bytes, not 1")
            flags.append(answer.data == bytes((fm.INDEX_VALID,)))
        return VisitIndex(kind, tuple(flags))

    def _select_ef(self, ef: fm.EfSpec, *, optional: bool = False) -> bool:
        """SELECT an EF of the current DF by FID; ``False`` when optional and absent."""
        what = f"selecting {ef.path}"
        answer = self._send(
            Apdu(0x00, 0xA4, 0x00, 0x00, ef.fid.to_bytes(2, "big")), what, _ABSENT_FILE
        )
        if answer.sw != SW_OK:
            if optional:
                return False
            raise status_error(answer.sw, what)
        return True

    def _read_binary(self, offset: int, le: int, what: str) -> bytes:
        return self._send(
            Apdu(0x00, 0xB0, offset >> 8, offset & 0xFF, le=le), what, _ACCEPT_EOF
        ).data

    def _read_run(self, ef: fm.EfSpec, what: str, start: bytes = b"") -> bytes:
        """The TLV run of the selected visit record, up to its end (``start`` already read)."""
        body_size = ef.size - fm.VISIT_TRAILER_LEN
        content = bytearray(start)
        while True:
            _, ended = parse_run(bytes(content))
            if ended or len(content) >= body_size:
                return bytes(content[:body_size])
            chunk = self._read_binary(len(content), min(READ_CHUNK, body_size - len(content)), what)
            if not chunk:
                raise CardDataError(f"{what}: the record ends early")
            content += chunk

    @_serialised
    def read_visit(self, kind: fm.VisitKind, slot: int, *, signature: bool = True) -> VisitRecord:
        """One visit record, read up to the end of its TLV run, then its signature block.

        ``signature=False`` skips the signature block (one APDU less) when the caller
        only shows the summary.
        """
        ef = fm.VISIT_SLOTS[kind].records[slot - 1]
        self._authenticate(ef.df, ef.read_key)
        self._select_ef(ef)
        return self._visit(kind, slot, signature)

    def _visit(self, kind: fm.VisitKind, slot: int, signature: bool) -> VisitRecord:
        ef = fm.VISIT_SLOTS[kind].records[slot - 1]
        what = f"reading {kind} visit {slot}"
        body_size = ef.size - fm.VISIT_TRAILER_LEN
        content = self._read_run(ef, what)
        trailer = (
            self._read_binary(body_size, fm.VISIT_TRAILER_LEN, what)
            if signature
            else bytes(fm.VISIT_TRAILER_LEN)
        )
        return decode_visit(kind, slot, content, trailer)

    @_serialised
    def read_visits(self, *, signatures: bool = True) -> list[VisitRecord]:
        """The valid inpatient and outpatient records, newest first."""
        return self._visits(_Missing(), signatures)

    def _visits(self, missing: _Missing, signatures: bool) -> list[VisitRecord]:
        if fm.DF03.label in missing or not self._authenticate(
            fm.DF03, fm.DF03.read_key, optional=True
        ):
            missing.add(fm.DF03.label)
            return []
        visits = []
        for kind in fm.VisitKind:
            for slot in self._visit_index(kind, missing).valid_slots:
                ef = fm.VISIT_SLOTS[kind].records[slot - 1]
                if not self._select_ef(ef, optional=True):
                    missing.add(ef.path)  # the index names a record the card lacks
                    continue
                visits.append(self._visit(kind, slot, signatures))
        return sorted(visits, key=lambda v: v.visited_at, reverse=True)

    @_serialised
    def verify_genuine(self) -> None:
        """INTERNAL AUTHENTICATE with key 21: the card proves it was issued with our keys.

        Raises :class:`~hcmiddleware.errors.CardAuthenticityError` (from the SAM) when not.
        """
        sam = self._require_sam("checking the card is genuine")
        # A card of another city would fail as "not genuine"; say what is really wrong.
        self._check_city(sam)
        challenge = sam.new_challenge()
        answer = self._send(
            Apdu(0x00, 0x88, 0x00, fm.INTERNAL_AUTH_KEY, challenge, le=8),
            "checking the card is genuine",
        ).data
        sam.check_internal_auth(fm.INTERNAL_AUTH_KEY, self.card_factor, challenge, answer)

    @_serialised
    def read(
        self,
        parts: str | Iterable[str | fm.CardPart] | None = None,
        *,
        verify: bool = True,
    ) -> CardRead:
        """The parts of the card asked for (default: all), DF by DF.

        ``parts`` are :class:`~.filemap.CardPart` names or groups (``"identity,insurance"``,
        ``["clinical"]``); only their files are read, each DF selected and opened
        once. The card number and the city code are read whatever the parts. The
        result lists the parts read in ``parts``; an unread part raises
        :class:`~hcmiddleware.errors.CardPartNotReadError` when used.

        The card is taken as it comes: optional files and DFs it lacks read as empty
        and are named in ``CardRead.missing``, items it has no record for read empty
        and are listed in ``CardRead.absent_items``; record files end at their last
        record.
        A file or item no card may lack (issuer data, cardholder, card number, city,
        name) is :class:`~hcmiddleware.errors.CardFileMissingError`; a card pulled
        mid-read is :class:`~hcmiddleware.errors.CardAbsentError` and nothing is
        returned.

        The issuer data comes first: it is free to read and carries the card's city,
        which is checked against the SAM's before the card is asked to prove itself
        (``verify``: INTERNAL AUTHENTICATE, one APDU).
        """
        P = fm.CardPart  # noqa: N806 - a short alias
        want = fm.parse_parts(parts)
        missing = _Missing()
        values = self._read_tlv_items(
            fm.PART_ITEMS[P.ISSUER] if P.ISSUER in want else fm.CORE_ITEMS, missing
        )
        issuer = issuer_from(values, want)
        if verify:
            self.verify_genuine()
        values = self._read_tlv_items(_items(want, P.IDENTITY, P.INSURANCE, P.PHONES), missing)
        cardholder = cardholder_from(values) if P.IDENTITY in want else None
        validity = validity_from(values, want) if _any(want, Validity) else None
        photo = self._read_photo(missing) if P.PHOTO in want else None
        personal = None
        if _any(want, Personal):
            values = self._read_tlv_items(_items(want, P.CONTACTS, P.SOCIAL, P.DOCUMENTS), missing)
            personal = personal_from(values, want)
        clinical = None
        if _any(want, Clinical):
            values = self._read_tlv_items(_items(want, P.BASICS), missing)
            clinical = clinical_from(
                values,
                self._allergies(missing) if P.ALLERGIES in want else None,
                self._immunisations(missing) if P.IMMUNISATIONS in want else None,
                want,
            )
        visits = self._visits(missing, True) if P.VISITS in want else None
        return CardRead(
            atr=self.transport.atr,
            parts=tuple(want),
            issuer=issuer,
            cardholder=cardholder,
            validity=validity,
            photo=photo,
            personal=personal,
            clinical=clinical,
            visits=visits,
            missing=tuple(missing),
            absent_items=tuple(sorted(missing.items)),
        )

    @_serialised
    def read_all(self, *, verify: bool = True) -> CardRead:
        """Everything, DF by DF (one SELECT and one authentication each): ``read()``."""
        return self.read(None, verify=verify)

    # --- writes ------------------------------------------------------------------------

    def _append_cyclic(self, ef: fm.EfSpec, values: dict[str, ItemValue]) -> None:
        record = encode_fixed(ef, values)
        self._authenticate(ef.df, ef.update_key)
        assert ef.sfi is not None
        self._send(Apdu(0x00, 0xDC, 0x00, (ef.sfi << 3) | 0x03, record), f"writing {ef.path}")

    @_serialised
    def add_allergy(self, allergy: Allergy) -> None:
        """Append an allergy (one APDU, atomic; the oldest of three drops out)."""
        self._append_cyclic(fm.ALLERGIES, allergy.model_dump())

    @_serialised
    def add_immunisation(self, immunisation: Immunisation) -> None:
        """Append an immunisation (one APDU, atomic; the oldest of ten drops out)."""
        self._append_cyclic(
            fm.IMMUNISATIONS,
            {"vaccine": immunisation.vaccine, "date": encode_date(immunisation.date)},
        )

    @_serialised
    def update_item(self, number: int, value: ItemValue) -> None:
        """Rewrite one TLV item under secure messaging (the DF's update key).

        UPDATE RECORD addresses a record by number, and a card in the field may hold
        its items in another order than the specification's, so the record is first
        located: its number is read back and its tag checked (one READ RECORD under the
        read key, remembered for the session). A card does not check what it is asked
        to overwrite; this check is what keeps another item from being overwritten.
        """
        it = fm.ITEMS.get(number)
        if it is None:
            raise CardDataError(f"there is no data element {number} on the health card")
        plain = encode_item(it, value)
        ef = it.ef
        assert ef.sfi is not None
        assert ef.update_key is not None
        record = self._record_number(it)
        self._authenticate(ef.df, ef.update_key)
        sam = self._require_sam(f"writing item {number}")
        challenge = self._challenge()
        header = bytes((0x04, 0xDC, record, (ef.sfi << 3) | 0x04))
        apdu = sam.secure_update(ef.update_key, self.card_factor, challenge, header, plain)
        self._send(parse_command(apdu), f"writing item {number}")

    def _record_number(self, it: fm.Item) -> int:
        """The number of the record holding ``it`` on this card (its tag checked)."""
        known = self._records.get(it.number)
        if known is not None:
            return known
        ef = it.ef
        self._authenticate(ef.df, ef.read_key)
        what = f"locating item {it.number}"
        # the specification's record first; a reordered file is searched to its end
        last = len(fm.items_of(ef)) + _EXTRA_RECORDS
        numbers = [it.record, *(n for n in range(1, last + 1) if n != it.record)]
        for n in numbers:
            answer = self._read_record(ef, n, True, what)
            if answer.sw == 0x6A83:
                if n == it.record:
                    continue  # a shorter file: look from its first record
                break
            if answer.sw != SW_OK:
                raise status_error(answer.sw, what)
            if len(answer.data) >= 2:
                self._records.setdefault(answer.data[0], n)
            if self._records.get(it.number) == n:
                return n
        raise CardFileNotFoundError(
            f"{what}: no record of {ef.path} holds item {it.number}; nothing was written",
            sw=0x6A83,
            hint="this card does not carry the item; it cannot be added at this terminal",
        )

    def _mark(self, index: fm.EfSpec, slot: int, valid: bool) -> None:
        assert index.sfi is not None
        ins = 0xD2 if valid else 0x0C
        self._send(
            Apdu(0x84, ins, slot, (index.sfi << 3) | 0x04),
            f"marking visit slot {slot} {'valid' if valid else 'invalid'}",
        )

    @_serialised
    def append_visit(self, visit: VisitRecord) -> int:
        """Write a visit summary so that a pull at any point never leaves a mixed record.

        The order (each step one or more APDUs; a pull between any two leaves the card
        consistent):

        1. read the index of ``visit.kind``; one slot is always kept invalid as the spare;
        2. write the whole record (TLVs, ``00`` fill, signature block) into the spare —
           it is invalid, so a pull here leaves the old records only;
        3. mark the spare valid — from here the new record is on the card;
        4. when the spare was the last invalid slot, mark the slot after it (the oldest
           in the ring) invalid: it becomes the next spare.

        A pull between 3 and 4 leaves all slots valid (old and new records, all
        intact); the next append first completes step 4 by invalidating the oldest by
        date. Hence in steady state a kind keeps ``slots - 1`` records (2 inpatient, 4
        outpatient): the spare slot is the price of never losing a record to a pull.

        Returns the slot written.
        """
        slots = fm.VISIT_SLOTS[visit.kind]
        n = len(slots.records)
        content = encode_visit(visit, slots.records[0].size)  # fails before any APDU
        self._authenticate(fm.DF03, fm.DF03.read_key)
        self._authenticate(fm.DF03, fm.DF03.update_key)
        valid = list(self.read_visit_index(visit.kind).valid)
        if len(valid) < n:
            # an index with fewer records than the card's slots: the ring is that long
            n = len(valid)
            if n < 2:
                raise CardDataError(
                    f"the card's {visit.kind} visit index holds {n} slot(s); a visit cannot "
                    "be written without a spare slot; nothing was written",
                    hint="the card cannot take visit records; send the resident to the issuer",
                )
        if all(valid):
            oldest = min(range(n), key=lambda i: self._visit_stamp(slots.records[i]))
            self._mark(slots.index, oldest + 1, False)
            valid[oldest] = False
        invalid = [i for i in range(n) if not valid[i]]
        target = next((i for i in invalid if valid[(i - 1) % n]), invalid[0])
        ef = slots.records[target]
        self._send(Apdu(0x00, 0xA4, 0x00, 0x00, ef.fid.to_bytes(2, "big")), f"selecting {ef.path}")
        for offset in range(0, len(content), WRITE_CHUNK):
            self._send(
                Apdu(
                    0x00, 0xD6, offset >> 8, offset & 0xFF, content[offset : offset + WRITE_CHUNK]
                ),
                f"writing {visit.kind} visit {target + 1}",
            )
        self._mark(slots.index, target + 1, True)
        if len(invalid) == 1:
            self._mark(slots.index, (target + 1) % n + 1, False)
        return target + 1

    def _visit_stamp(self, ef: fm.EfSpec) -> str:
        """The visit date-time digits of a record (its tag 01), for finding the oldest.

        The first TLV is read (9 bytes); a card that keeps the items in another order
        costs the rest of the run.
        """
        self._send(Apdu(0x00, 0xA4, 0x00, 0x00, ef.fid.to_bytes(2, "big")), f"selecting {ef.path}")
        what = f"reading {ef.path}"
        head = self._read_binary(0, 9, what)
        items, _ = parse_run(head)
        if not items or items[0][0] != 1:
            items, _ = parse_run(self._read_run(ef, what, head))
        stamp = next((value for tag, value in items if tag == 1), b"")
        return stamp.hex()  # unreadable records ("") go first

"""The card session: reads and writes the health card in terms of data, not APDUs.

:class:`CardSession` knows the file map (:mod:`.filemap`), the codecs and the card's
security rules, and sends no APDU a smarter read could avoid:

- it remembers the selected DF and the keys authenticated in it, so consecutive reads
  in one DF share one SELECT and one authentication (any DF selection clears the
  card's security state, so reads are grouped per DF);
- records are read through their short file identifier (no SELECT of the EF), each TLV
  record with Le ``00`` so no ``6Cxx`` round trip is needed;
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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Concatenate, ParamSpec, TypeVar

from hcmiddleware.card import filemap as fm
from hcmiddleware.card.apdu import Apdu, Response, exchange, parse_command
from hcmiddleware.card.atr import card_factor
from hcmiddleware.card.data import (
    Allergy,
    Cardholder,
    CardRead,
    Clinical,
    Immunisation,
    Issuer,
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
    CardFileNotFoundError,
    CardKeyBlockedError,
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

    def _select_df(self, df: fm.DfSpec) -> None:
        """Make ``df`` current with as few SELECTs as the card allows.

        DF01–DF03 are children of DDF1, reachable by FID from DDF1 or a sibling; from
        anywhere else (a fresh card sits in the MF) DDF1 comes first, by name, which
        also tells a health card from a foreign one. Every DF selection clears the
        card's security state, and so ours.
        """
        if self._df is df:
            return
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
            self._send(Apdu(0x00, 0xA4, 0x00, 0x00, fid), f"selecting {df.label}")
        self._df = df

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

    def _authenticate(self, df: fm.DfSpec, key_ref: int | None) -> None:
        if key_ref is not None and not (self._df is df and key_ref in self._auth):
            # Both checks come before any APDU of this authentication.
            self.guard.check(self.card_factor, key_ref)
            self._check_city(self._require_sam(f"opening {df.label}"))
        self._select_df(df)
        if key_ref is None or key_ref in self._auth:
            return
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

    # --- reads -------------------------------------------------------------------------

    def _read_record(self, ef: fm.EfSpec, p1: int, by_number: bool, what: str) -> bytes:
        assert ef.sfi is not None
        p2 = (ef.sfi << 3) | (0x04 if by_number else 0x00)
        return self._send(Apdu(0x00, 0xB2, p1, p2, le=READ_CHUNK), what).data

    def _read_tlv_items(self, its: Iterable[fm.Item]) -> dict[str, ItemValue]:
        """Items grouped per DF (one SELECT and one authentication per DF)."""
        values: dict[str, ItemValue] = {}
        order = {df: i for i, df in enumerate(fm.DFS)}
        for it in sorted(its, key=lambda i: (order[i.ef.df], i.ef.fid, i.record)):
            self._authenticate(it.ef.df, it.ef.read_key)
            raw = self._read_record(it.ef, it.number, False, f"reading item {it.number}")
            values[it.name] = decode_item(it, raw)
            if it.name == "city_code":
                self._card_city = str(values[it.name])
        return values

    @_serialised
    def read_items(self, numbers: Iterable[int]) -> dict[int, ItemValue]:
        """Items by number (the ``wsc_GetCardInfo`` idea): text for AN/CN, bytes for B."""
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
        spec = fm.PHOTO
        self._authenticate(spec.df, spec.read_key)
        assert spec.sfi is not None
        first = self._send(
            Apdu(0x00, 0xB0, 0x80 | spec.sfi, 0, le=READ_CHUNK), "reading the photo", _ACCEPT_EOF
        ).data
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

    def _read_cyclic(self, ef: fm.EfSpec) -> list[dict[str, ItemValue]]:
        """Records newest first, stopping at the first never-written one."""
        self._authenticate(ef.df, ef.read_key)
        out = []
        for number in range(1, ef.records + 1):
            raw = self._read_record(ef, number, True, f"reading {ef.path} record {number}")
            values = decode_fixed(ef, raw)
            if values is None:
                break  # records fill from 1 in a cyclic file: the rest are empty too
            out.append(values)
        return out

    @_serialised
    def read_clinical(self) -> Clinical:
        """DF02: blood group, condition flags, warnings, allergies, immunisations (key 03)."""
        values = self._read_tlv_items([*fm.items_of(fm.BASICS), *fm.items_of(fm.PSYCHIATRIC)])
        allergies = [
            Allergy(substance=str(v["substance"]), reaction=str(v["reaction"]))
            for v in self._read_cyclic(fm.ALLERGIES)
        ]
        immunisations = []
        for v in self._read_cyclic(fm.IMMUNISATIONS):
            date = decode_date(str(v["date"]))
            if date is None:
                raise CardDataError("an immunisation record has no date")
            immunisations.append(Immunisation(vaccine=str(v["vaccine"]), date=date))
        return clinical_from(values, allergies, immunisations)

    @_serialised
    def read_visit_index(self, kind: fm.VisitKind) -> VisitIndex:
        """The DF03 index flags of ``kind`` (key 04)."""
        index = fm.VISIT_SLOTS[kind].index
        self._authenticate(index.df, index.read_key)
        flags = []
        for number in range(1, index.records + 1):
            raw = self._read_record(index, number, True, f"reading the {kind} index")
            if len(raw) != 1:
                raise CardDataError(f"a {kind} index record has {len(raw)} bytes, not 1")
            flags.append(raw[0] == fm.INDEX_VALID)
        return VisitIndex(kind, tuple(flags))

    def _select_ef(self, ef: fm.EfSpec) -> None:
        self._authenticate(ef.df, ef.read_key)
        self._send(Apdu(0x00, 0xA4, 0x00, 0x00, ef.fid.to_bytes(2, "big")), f"selecting {ef.path}")

    def _read_binary(self, offset: int, le: int, what: str) -> bytes:
        return self._send(
            Apdu(0x00, 0xB0, offset >> 8, offset & 0xFF, le=le), what, _ACCEPT_EOF
        ).data

    @_serialised
    def read_visit(self, kind: fm.VisitKind, slot: int, *, signature: bool = True) -> VisitRecord:
        """One visit record, read up to the end of its TLV run, then its signature block.

        ``signature=False`` skips the signature block (one APDU less) when the caller
        only shows the summary.
        """
        ef = fm.VISIT_SLOTS[kind].records[slot - 1]
        self._select_ef(ef)
        what = f"reading {kind} visit {slot}"
        body_size = ef.size - fm.VISIT_TRAILER_LEN
        content = bytearray()
        while True:
            chunk = self._read_binary(len(content), min(READ_CHUNK, body_size - len(content)), what)
            if not chunk:
                raise CardDataError(f"{kind} visit record {slot} ends early")
            content += chunk
            _, ended = parse_run(bytes(content))
            if ended or len(content) >= body_size:
                break
        trailer = (
            self._read_binary(body_size, fm.VISIT_TRAILER_LEN, what)
            if signature
            else bytes(fm.VISIT_TRAILER_LEN)
        )
        return decode_visit(kind, slot, bytes(content[:body_size]), trailer)

    @_serialised
    def read_visits(self, *, signatures: bool = True) -> list[VisitRecord]:
        """The valid inpatient and outpatient records, newest first."""
        visits = []
        for kind in fm.VisitKind:
            for slot in self.read_visit_index(kind).valid_slots:
                visits.append(self.read_visit(kind, slot, signature=signatures))
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
    def read_all(self, *, verify: bool = True) -> CardRead:
        """Everything, DF by DF (one SELECT and one authentication each).

        The issuer data comes first: it is free to read and carries the card's city,
        which is checked against the SAM's before the card is asked to prove itself.
        """
        issuer = self.read_issuer()
        if verify:
            self.verify_genuine()
        cardholder = self.read_cardholder()
        validity = self.read_validity()
        photo = self.read_photo()
        return CardRead(
            atr=self.transport.atr,
            issuer=issuer,
            cardholder=cardholder,
            validity=validity,
            photo=photo,
            personal=self.read_personal(),
            clinical=self.read_clinical(),
            visits=self.read_visits(),
        )

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
        """Rewrite one TLV item under secure messaging (the DF's update key)."""
        it = fm.ITEMS.get(number)
        if it is None:
            raise CardDataError(f"there is no data element {number} on the health card")
        plain = encode_item(it, value)
        ef = it.ef
        assert ef.sfi is not None
        assert ef.update_key is not None
        self._authenticate(ef.df, ef.update_key)
        sam = self._require_sam(f"writing item {number}")
        challenge = self._challenge()
        header = bytes((0x04, 0xDC, it.record, (ef.sfi << 3) | 0x04))
        apdu = sam.secure_update(ef.update_key, self.card_factor, challenge, header, plain)
        self._send(parse_command(apdu), f"writing item {number}")

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
        """The visit date-time digits of a record (first TLV), for finding the oldest."""
        self._send(Apdu(0x00, 0xA4, 0x00, 0x00, ef.fid.to_bytes(2, "big")), f"selecting {ef.path}")
        head = self._read_binary(0, 9, f"reading {ef.path}")
        items, _ = parse_run(head)
        if not items or items[0][0] != 1:
            return ""  # unreadable records go first
        return items[0][1].hex()

"""Preparing a record for enrolment: validated, normalised and hashed before any write.

:meth:`Preparation.prepare` checks every field (the ID number against birth date and
sex, the region code, issued identifiers naming their assigner) and computes the blind
indexes and blocking keys once, so that a single enrolment and a bulk import share the
same rules and the same hashes. A strict preparation (a desk, a card) refuses a faulty
ID number with a typed error; a lenient one (an import of old records) keeps it as
unverified evidence and flags the record (:mod:`hcmiddleware.empi.quality`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hcmiddleware.empi.core import IndexCore
from hcmiddleware.empi.identity import IdNumber
from hcmiddleware.empi.normalize import (
    normalize_address,
    normalize_code,
    normalize_display_name,
    normalize_name,
    normalize_phone,
)
from hcmiddleware.empi.quality import Flag, birth_date_flags, phone_flags, read_id_number
from hcmiddleware.empi.schema import IdentifierKind
from hcmiddleware.errors import IdentityError, ResidentIndexError
from hcmiddleware.models import Identifier, Sex

__all__ = ["Preparation", "PreparedRecord"]


#: Kinds whose value is assigned by an authority that must be named (the assigner).
_ISSUED = {IdentifierKind.HOSPITAL_PATIENT_ID, IdentifierKind.REGIONAL_INDEX_ID}


@dataclass(frozen=True, slots=True)
class PreparedRecord:
    """A record validated and normalised by :meth:`ResidentIndex.prepare`, ready to enrol.

    Holds personal data, so its repr shows only the source record it came from.
    """

    wanted: list[tuple[IdentifierKind, str, str]] = field(repr=False)
    demographics: dict[str, Any] = field(repr=False)
    clean_name: str = field(repr=False)
    source: str | None
    record_id: str | None
    warnings: tuple[str, ...]
    # Keyed hashes, computed once: identifiers (kind, issuer, value, HMAC), the record
    # for scoring, blocking keys to look up and to store.
    idents: list[tuple[IdentifierKind, str, str, bytes]] = field(repr=False, default_factory=list)
    probe: dict[str, Any] = field(repr=False, default_factory=dict)
    query_blocks: list[bytes] = field(repr=False, default_factory=list)
    stored_blocks: list[bytes] = field(repr=False, default_factory=list)
    #: data-quality codes of the record (:class:`~hcmiddleware.empi.quality.Flag`)
    flags: tuple[str, ...] = ()
    #: refuse rather than keep: an identifier held by another resident is an error
    strict: bool = True
    #: identifier keys whose holders are compared with the record, never linked by them
    #: (an unverified ID number that a resident holds verified)
    evidence: list[tuple[str, str, bytes]] = field(repr=False, default_factory=list)
    #: blocking keys whose members are always compared (``ui``: see blocking)
    evidence_blocks: list[bytes] = field(repr=False, default_factory=list)


class Preparation(IndexCore):
    """Turns what a caller gives into a :class:`PreparedRecord`."""

    def prepare(
        self,
        *,
        name: str,
        sex: Sex | int,
        birth_date: dt.date | None = None,
        id_number: str | None = None,
        phone: str | None = None,
        address: str | None = None,
        card_number: str | None = None,
        ecard_id: str | None = None,
        identifiers: Iterable[Identifier] = (),
        source: str | None = None,
        record_id: str | None = None,
        today: dt.date | None = None,
        strict: bool = True,
        flags: Iterable[str] = (),
        unparsed: Mapping[str, str] | None = None,
    ) -> PreparedRecord:
        """Validate and normalise a record for :meth:`enrol` / :meth:`enrol_batch`.

        Validates everything before writing (a typed ``IdentityError`` names the field):
        a non-empty name, the ID number with birth date and sex cross-checked, the
        region code (a retired one is returned as a warning). ``source``/``record_id``
        keep the source system's record with the resident. If the identifiers given
        belong to two different residents, nothing is written and
        :class:`~hcmiddleware.errors.IdentifierConflictError` says so.

        With ``strict=False`` only a record that names nobody (an empty name) is
        refused: a faulty ID number is kept *unverified* (searchable, evidence for
        matching, never a unique key), a birth date in the future or an unknown sex
        code is kept and flagged, and an identifier held by another resident keeps the
        record apart and sends it to review. ``flags`` adds the caller's own codes
        (e.g. an importer's ``birth_invalid``); ``unparsed`` keeps values the caller
        could not use with the source record (encrypted), so nothing is lost.
        """
        clean_name = normalize_name(name)
        if not clean_name:
            raise IdentityError(
                "the name is empty", field="name", hint="enter the name as on the ID card"
            )
        if not any(ch.isalpha() for ch in clean_name):
            raise IdentityError(
                "the name holds no letter (only digits or signs)",
                field="name",
                hint="enter the name as on the ID card",
            )
        found: list[str] = [str(f) for f in flags]
        try:
            sex = Sex(int(sex))
        except ValueError:
            if strict:
                raise IdentityError(
                    "sex must be a GB/T 2261.1 code: 0 unknown, 1 male, 2 female, 9 unspecified",
                    field="sex",
                ) from None
            sex = Sex.UNKNOWN
            found.append(Flag.SEX_INVALID)
        if (source is None) != (record_id is None):
            raise ResidentIndexError(
                "source and record_id go together",
                hint="pass both the source system's name and its record id, or neither",
            )
        today = today or dt.date.today()
        region_code: str | None = None
        wanted: list[tuple[IdentifierKind, str, str]] = []
        reading = read_id_number(id_number, birth_date=birth_date, sex=sex, today=today)
        if strict and reading.error is not None:
            raise reading.error
        found.extend(reading.flags)
        warnings = list(reading.warnings)
        parsed = reading.verified
        unverified = reading.value if parsed is None else None
        if parsed is not None:
            if isinstance(parsed, IdNumber):
                birth_date = birth_date or parsed.birth_date
                region_code = parsed.region_code
            if sex not in (Sex.MALE, Sex.FEMALE):
                sex = parsed.sex
            wanted.append((IdentifierKind.ID_NUMBER, "", parsed.value))
        if strict and birth_date is not None and birth_date > today:
            raise IdentityError("the birth date is in the future", field="birth_date")
        if Flag.BIRTH_INVALID not in found:  # an unreadable one is missing, said once
            found.extend(birth_date_flags(birth_date, today))
        for kind, raw in (
            (IdentifierKind.CARD_NUMBER, card_number),
            (IdentifierKind.ECARD_ID, ecard_id),
        ):
            if raw is not None and normalize_code(raw):
                wanted.append((kind, "", normalize_code(raw)))
        for ident in identifiers:
            issuer = normalize_code(ident.assigner or "")
            if ident.kind in _ISSUED and not issuer:
                raise IdentityError(
                    f"a {ident.kind.value} needs the code of its issuer", field=ident.kind.value
                )
            wanted.append((ident.kind, issuer, self._canonical(ident.kind, ident.value)))
        kept = dict(unparsed or {})
        clean_phone = normalize_phone(phone) if phone else None
        if phone and phone.strip() and not clean_phone:
            found.append(Flag.PHONE_INVALID)  # no digit in it: kept as typed, unused
            kept["phone"] = phone.strip()
        found.extend(phone_flags(clean_phone))
        codes = tuple(sorted(set(found)))
        demographics: dict[str, Any] = {
            "name": normalize_display_name(name),
            "sex": int(sex),
            "birth_date": birth_date.isoformat() if birth_date else None,
            "phone": clean_phone or None,
            "address": normalize_address(address) if address else None,
            "region_code": region_code,
        }
        # Only when there is something to say: a million clean residents stay as small.
        if unverified:
            demographics["id_unverified"] = unverified
        if codes:
            demographics["flags"] = list(codes)
        if kept:
            demographics["unparsed"] = kept
        probe = self._probe(demographics, wanted)
        stored_blocks, query_blocks, evidence_blocks = self._block_bidxs(probe)
        evidence = []
        if unverified and len(unverified) >= 18:
            kind = IdentifierKind.ID_NUMBER
            evidence.append((kind.value, "", self._ident_bidx(kind, unverified)))
        return PreparedRecord(
            wanted,
            demographics,
            clean_name,
            source,
            record_id,
            tuple(warnings),
            idents=[(k, i, v, self._ident_bidx(k, v)) for k, i, v in wanted],
            probe=probe,
            query_blocks=query_blocks,
            stored_blocks=stored_blocks,
            flags=codes,
            strict=strict,
            evidence=evidence,
            evidence_blocks=evidence_blocks,
        )

    @staticmethod
    def _probe(
        demographics: dict[str, Any], wanted: list[tuple[IdentifierKind, str, str]]
    ) -> dict[str, Any]:
        born = demographics.get("birth_date")
        id_number = next((v for k, _i, v in wanted if k is IdentifierKind.ID_NUMBER), None)
        return {
            "name": demographics.get("name"),
            "sex": demographics.get("sex"),
            "birth_date": dt.date.fromisoformat(born) if isinstance(born, str) else born,
            "phone": demographics.get("phone"),
            "address": demographics.get("address"),
            "id_number": id_number or demographics.get("id_unverified"),
            "id_verified": id_number is not None,
        }

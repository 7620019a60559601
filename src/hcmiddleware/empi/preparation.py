"""Preparing a record for enrolment: validated, normalised and hashed before any write.

:meth:`Preparation.prepare` checks every field (the ID number against birth date and
sex, the region code, issued identifiers naming their assigner) and computes the blind
indexes and blocking keys once, so that a single enrolment and a bulk import share the
same rules and the same hashes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from hcmiddleware.empi.blocking import blocking_keys
from hcmiddleware.empi.core import IndexCore
from hcmiddleware.empi.identity import ChildNumber, IdNumber, parse_identity
from hcmiddleware.empi.normalize import (
    normalize_address,
    normalize_code,
    normalize_name,
    normalize_phone,
    normalize_text,
)
from hcmiddleware.empi.regions import check_id_region
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
    ) -> PreparedRecord:
        """Validate and normalise a record for :meth:`enrol` / :meth:`enrol_batch`.

        Validates everything before writing (a typed ``IdentityError`` names the field):
        a non-empty name, the ID number with birth date and sex cross-checked, the
        region code (a retired one is returned as a warning). ``source``/``record_id``
        keep the source system's record with the resident. If the identifiers given
        belong to two different residents, nothing is written and
        :class:`~hcmiddleware.errors.IdentifierConflictError` says so.
        """
        clean_name = normalize_name(name)
        if not clean_name:
            raise IdentityError(
                "the name is empty", field="name", hint="enter the name as on the ID card"
            )
        try:
            sex = Sex(int(sex))
        except ValueError:
            raise IdentityError(
                "sex must be a GB/T 2261.1 code: 0 unknown, 1 male, 2 female, 9 unspecified",
                field="sex",
            ) from None
        if (source is None) != (record_id is None):
            raise ResidentIndexError(
                "source and record_id go together",
                hint="pass both the source system's name and its record id, or neither",
            )
        warnings: list[str] = []
        region_code: str | None = None
        wanted: list[tuple[IdentifierKind, str, str]] = []
        if id_number is not None and normalize_code(id_number):
            parsed: IdNumber | ChildNumber = parse_identity(
                id_number, birth_date=birth_date, sex=sex, today=today
            )
            if isinstance(parsed, IdNumber):
                birth_date = birth_date or parsed.birth_date
                if sex not in (Sex.MALE, Sex.FEMALE):
                    sex = parsed.sex
                region_code = parsed.region_code
            elif sex not in (Sex.MALE, Sex.FEMALE):
                sex = parsed.sex
            region_of = (
                parsed.region_code if isinstance(parsed, IdNumber) else parsed.parent.region_code
            )
            check = check_id_region(region_of)
            if check.warning:
                warnings.append(check.warning)
            wanted.append((IdentifierKind.ID_NUMBER, "", parsed.value))
        if birth_date is not None and birth_date > (today or dt.date.today()):
            raise IdentityError("the birth date is in the future", field="birth_date")
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
        demographics = {
            "name": normalize_text(name),
            "sex": int(sex),
            "birth_date": birth_date.isoformat() if birth_date else None,
            "phone": normalize_phone(phone) if phone else None,
            "address": normalize_address(address) if address else None,
            "region_code": region_code,
        }
        probe = self._probe(demographics, wanted)
        # The stored keys are a subset of the looked-up ones (see blocking): hash each once.
        hashed = self._block_bidxs(probe)
        query_blocks = list(hashed.values())
        stored_blocks = [hashed[k] for k in sorted(blocking_keys(probe))]
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
            "id_number": id_number,
        }

"""Searching the index on demographics and scoring candidates (R-EMPI-1).

Candidates are drawn through blocking keys and scored with the Fellegi–Sunter model;
enrolment uses the same scoring to decide between link, review and new.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from hcmiddleware.empi.core import IndexCore
from hcmiddleware.empi.matching import Decision
from hcmiddleware.empi.normalize import normalize_address, normalize_phone, normalize_text
from hcmiddleware.empi.quality import read_id_number
from hcmiddleware.empi.records import Candidate
from hcmiddleware.empi.schema import IdentifierKind
from hcmiddleware.empi.store import DirectStore
from hcmiddleware.models import Resident, Sex

__all__ = ["Search"]


class Search(IndexCore):
    """Demographic search and the scoring enrolment shares with it."""

    @staticmethod
    def _as_record(resident: Resident) -> dict[str, Any]:
        verified = resident.identifier(IdentifierKind.ID_NUMBER)
        return {
            "name": resident.name,
            "sex": int(resident.sex),
            "birth_date": resident.birth_date,
            "phone": resident.phone,
            "address": resident.address,
            "id_number": verified or resident.unverified_id_number,
            "id_verified": verified is not None,
        }

    @staticmethod
    def _id_conflict(resident: Resident, probe: dict[str, Any]) -> bool:
        # Two different verified ID numbers are two people, whatever the rest says; an
        # unverified one may differ by the very typo that made it unverified.
        mine = probe.get("id_number") if probe.get("id_verified", True) else None
        theirs = resident.identifier(IdentifierKind.ID_NUMBER)
        return bool(mine and theirs and len(mine) == 18 and len(theirs) == 18 and mine != theirs)

    def _score(
        self, probe: dict[str, Any], residents: Iterable[Resident], *, limit: int
    ) -> list[Candidate]:
        scored = []
        for resident in residents:
            score = self._model.score(probe, self._as_record(resident))
            scored.append(
                Candidate(
                    resident=resident,
                    weight=score.weight,
                    probability=score.probability,
                    decision=score.decision,
                    agreements=score.agreements,
                )
            )
        scored.sort(key=lambda c: c.weight, reverse=True)
        return scored[:limit]

    def search(
        self,
        *,
        name: str | None = None,
        sex: Sex | int | None = None,
        birth_date: dt.date | None = None,
        phone: str | None = None,
        address: str | None = None,
        id_number: str | None = None,
        limit: int = 10,
        include_new: bool = False,
    ) -> list[Candidate]:
        """Residents that may be this person, best first, each with what agreed (R-EMPI-1).

        Candidates are drawn through blocking keys (see :mod:`hcmiddleware.empi.blocking`)
        and scored with the Fellegi–Sunter model; those the model calls ``new`` are left
        out unless ``include_new``. An ID number is searched as given, valid or not: the
        resident holding it and the records that carry it unverified are candidates.
        """
        reading = read_id_number(id_number) if id_number else None
        id_value = reading.value if reading is not None else None
        probe = {
            "name": normalize_text(name) if name else None,
            "sex": int(sex) if sex is not None else None,
            "birth_date": birth_date,
            "phone": normalize_phone(phone) if phone else None,
            "address": normalize_address(address) if address else None,
            "id_number": id_value,
            "id_verified": reading is not None and reading.verified is not None,
        }
        _stored, query_blocks, evidence_blocks = self._block_bidxs(probe)
        holders: list[tuple[str, str, bytes]] = []
        if id_value and len(id_value) >= 18:
            kind = IdentifierKind.ID_NUMBER
            holders.append((kind.value, "", self._ident_bidx(kind, id_value)))
        with self._engine.connect() as conn:
            store = DirectStore(self._codec, conn, max_block=self._max_block)
            found = self._score(
                probe,
                store.candidates(query_blocks, evidence_blocks, store.holders(holders).values()),
                limit=limit if include_new else 10 * limit,
            )
        if not include_new:
            found = [c for c in found if c.decision != Decision.NEW]
        return found[:limit]

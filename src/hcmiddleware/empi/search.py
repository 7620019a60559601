"""Searching the index on demographics and scoring candidates (R-EMPI-1).

Candidates are drawn through blocking keys and scored with the Fellegi–Sunter model;
enrolment uses the same scoring to decide between link, review and new.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from hcmiddleware.empi.core import IndexCore
from hcmiddleware.empi.identity import parse_identity
from hcmiddleware.empi.matching import Decision
from hcmiddleware.empi.normalize import (
    normalize_address,
    normalize_code,
    normalize_phone,
    normalize_text,
)
from hcmiddleware.empi.records import Candidate
from hcmiddleware.empi.schema import IdentifierKind
from hcmiddleware.empi.store import DirectStore
from hcmiddleware.models import Resident, Sex

__all__ = ["Search"]


class Search(IndexCore):
    """Demographic search and the scoring enrolment shares with it."""

    @staticmethod
    def _as_record(resident: Resident) -> dict[str, Any]:
        return {
            "name": resident.name,
            "sex": int(resident.sex),
            "birth_date": resident.birth_date,
            "phone": resident.phone,
            "address": resident.address,
            "id_number": resident.identifier(IdentifierKind.ID_NUMBER),
        }

    @staticmethod
    def _id_conflict(resident: Resident, probe: dict[str, Any]) -> bool:
        # Two different full ID numbers are two people, whatever the rest says.
        mine = probe.get("id_number")
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
        out unless ``include_new``.
        """
        id_value = None
        if id_number and normalize_code(id_number):
            id_value = parse_identity(id_number).value
        probe = {
            "name": normalize_text(name) if name else None,
            "sex": int(sex) if sex is not None else None,
            "birth_date": birth_date,
            "phone": normalize_phone(phone) if phone else None,
            "address": normalize_address(address) if address else None,
            "id_number": id_value,
        }
        with self._engine.connect() as conn:
            store = DirectStore(self._codec, conn, max_block=self._max_block)
            found = self._score(
                probe,
                store.candidates(list(self._block_bidxs(probe).values())),
                limit=limit if include_new else 10 * limit,
            )
        if not include_new:
            found = [c for c in found if c.decision != Decision.NEW]
        return found[:limit]

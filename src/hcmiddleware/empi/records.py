"""What the resident index returns besides residents: enrolments, candidates, merges, reviews.

The residents themselves are :class:`hcmiddleware.models.Resident`, the model the hooks
and adapters carry, so a resident found in the index goes to a plugin as it is.
"""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict

from hcmiddleware.empi.schema import IdentifierKind, ReviewStatus
from hcmiddleware.models import Resident

__all__ = [
    "Candidate",
    "DuplicatePair",
    "Enrolment",
    "LinkageRow",
    "MergeEvent",
    "ReviewItem",
]

_FROZEN = ConfigDict(frozen=True)


class Enrolment(BaseModel):
    """Outcome of :meth:`ResidentIndex.enrol`: the resident, and whether it is new.

    ``matched_on`` names the identifier that found an existing resident;
    ``linked_by_demographics`` is the match probability when demographics alone found
    it; ``reviews`` are the review-queue items opened for a new resident that looks like
    an existing one. ``flags`` are the record's data-quality codes
    (:class:`~hcmiddleware.empi.quality.Flag`); a flagged record is enrolled all the same.
    """

    model_config = _FROZEN

    resident: Resident
    created: bool
    matched_on: IdentifierKind | None = None
    linked_by_demographics: float | None = None
    warnings: tuple[str, ...] = ()
    reviews: tuple[int, ...] = ()
    flags: tuple[str, ...] = ()


class Candidate(BaseModel):
    """A resident that may be the person searched for: probability, decision, what agreed.

    ``weight`` is the Fellegi–Sunter match weight in bits, ``probability`` the posterior
    that both are the same person, ``decision`` one of ``link``, ``review``, ``new``.
    """

    model_config = _FROZEN

    resident: Resident
    weight: float
    probability: float
    decision: str
    agreements: tuple[str, ...]


class DuplicatePair(BaseModel):
    """Two residents that look like one person, named also by their source record ids."""

    model_config = _FROZEN

    resident_a: str
    resident_b: str
    record_ids_a: tuple[str, ...]
    record_ids_b: tuple[str, ...]
    probability: float
    decision: str
    agreements: tuple[str, ...]


class LinkageRow(BaseModel):
    """One source record and the resident it is linked to (``hcm empi export``).

    ``status``: ``review`` (the resident has an open review item), ``linked`` (other
    records share the resident) or ``single``; ``flags`` are the record's
    data-quality codes.
    """

    model_config = _FROZEN

    record_id: str
    source: str
    resident_id: str
    status: str
    flags: tuple[str, ...] = ()


class MergeEvent(BaseModel):
    """One merge or unmerge in a resident's history."""

    model_config = _FROZEN

    id: int
    action: str
    survivor_id: str
    merged_id: str
    reason: str
    operator: str
    at: dt.datetime
    undoes: int | None = None
    moved_identifiers: int = 0
    moved_source_records: int = 0


class ReviewItem(BaseModel):
    """A suspected duplicate waiting for a decision."""

    model_config = _FROZEN

    id: int
    resident_id: str
    candidate_id: str
    score: float
    reason: str
    status: ReviewStatus
    created_at: dt.datetime
    decided_at: dt.datetime | None = None
    decided_by: str | None = None

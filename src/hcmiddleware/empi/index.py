"""The resident master index: enrol, look up, cross-reference, merge and unmerge.

:class:`ResidentIndex` is made of one part per concern, each in its own module:

* :mod:`~hcmiddleware.empi.core` — shared state, identifier values, plain reads;
* :mod:`~hcmiddleware.empi.preparation` — validating and hashing a record
  (:class:`PreparedRecord`);
* :mod:`~hcmiddleware.empi.enrolment` — enrolment, one by one or in batches;
* :mod:`~hcmiddleware.empi.search` — demographic search and scoring;
* :mod:`~hcmiddleware.empi.training` and :mod:`~hcmiddleware.empi.duplicates` — the
  model learnt from the index, and the residents that look like one person;
* :mod:`~hcmiddleware.empi.crossref` — hospital and regional IDs;
* :mod:`~hcmiddleware.empi.linkage` — which resident each source record is linked to;
* :mod:`~hcmiddleware.empi.merges` — merge, unmerge, history;
* :mod:`~hcmiddleware.empi.reviews` — the review queue.

Every personal value is encrypted by the :class:`~hcmiddleware.empi.protection.Protector`
before it reaches the database; lookups go through blind indexes.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from hcmiddleware import storage
from hcmiddleware.empi.crossref import CrossReference
from hcmiddleware.empi.duplicates import DuplicateFinding
from hcmiddleware.empi.enrolment import Enrolling
from hcmiddleware.empi.linkage import Linkage
from hcmiddleware.empi.matching import MatchModel, Thresholds
from hcmiddleware.empi.preparation import PreparedRecord
from hcmiddleware.empi.protection import Protector
from hcmiddleware.empi.records import (
    Candidate,
    DuplicatePair,
    Enrolment,
    LinkageRow,
    MergeEvent,
    ReviewItem,
)
from hcmiddleware.empi.reviews import ReviewQueue
from hcmiddleware.empi.store import MODELS, RowCodec
from hcmiddleware.models import Identifier, Resident

# Besides the index, the types it returns are importable from here as they always were.
__all__ = [
    "SCOPES",
    "Candidate",
    "DuplicatePair",
    "Enrolment",
    "Identifier",
    "LinkageRow",
    "MergeEvent",
    "PreparedRecord",
    "Resident",
    "ResidentIndex",
    "ReviewItem",
]

#: Tables whose rows carry ciphertexts; each gets its own data key.
SCOPES = ("empi_residents", "empi_identifiers", "empi_source_records")


class ResidentIndex(Enrolling, DuplicateFinding, CrossReference, Linkage, ReviewQueue):
    """The master patient index over one database (SQLite embedded, PostgreSQL shared).

    ``ResidentIndex(engine, protector)`` migrates the database to the newest schema
    (unless ``migrate=False``) and binds the protector's data keys to it. ``thresholds``
    set the link/review/new outcomes of demographic matching; with ``auto_link`` off,
    enrolment never links on demographics alone (everything above ``review`` is queued).
    ``max_block`` caps how many candidates one search compares.
    """

    def __init__(
        self,
        engine: Engine,
        protector: Protector,
        *,
        migrate: bool = True,
        thresholds: Thresholds | None = None,
        auto_link: bool = True,
        max_block: int = 2000,
    ) -> None:
        if migrate:
            storage.upgrade(engine)
        protector.bind(engine, SCOPES)
        self._engine = engine
        self._protector = protector
        self._codec = RowCodec(protector)
        self._auto_link = auto_link
        self._max_block = max_block
        self._model = self._stored_model(thresholds or Thresholds())

    def _stored_model(self, thresholds: Thresholds) -> MatchModel:
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.select(MODELS.c.id, MODELS.c.params, MODELS.c.frequencies_ct)
                .order_by(MODELS.c.id.desc())
                .limit(1)
            ).first()
        if row is None:
            return MatchModel(thresholds=thresholds)
        return MatchModel.from_json(
            row.params, thresholds=thresholds, frequencies=self._open_frequencies(row)
        )

    def __repr__(self) -> str:
        return f"ResidentIndex({self._engine.url.render_as_string(hide_password=True)!r})"

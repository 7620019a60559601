"""Training the match model on the index itself (EM, no labels needed).

The pairs it learns from are those sharing a blocking key among a sample of active
residents; :mod:`hcmiddleware.empi.duplicates` compares the same pairs to find
residents that look like one person.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import sqlalchemy as sa

from hcmiddleware import storage
from hcmiddleware.empi.blocking import evidence_keys, probe_keys
from hcmiddleware.empi.matching import MatchModel, learn_frequencies
from hcmiddleware.empi.schema import ResidentStatus
from hcmiddleware.empi.search import Search
from hcmiddleware.empi.store import MODELS, RESIDENTS, now_for

__all__ = ["Training"]


class Training(Search):
    """Learning the model's weights, and the pairs of active residents it compares."""

    def _active_records(
        self, *, max_residents: int | None = None, seed: int = 1
    ) -> dict[str, dict[str, Any]]:
        import random

        with self._engine.connect() as conn:
            ids = list(
                conn.scalars(
                    sa.select(RESIDENTS.c.id)
                    .where(RESIDENTS.c.status == ResidentStatus.ACTIVE.value)
                    .order_by(RESIDENTS.c.id)
                )
            )
            if max_residents is not None and len(ids) > max_residents:
                random.Random(seed).shuffle(ids)
                ids = ids[:max_residents]
            records: dict[str, dict[str, Any]] = {}
            for start in range(0, len(ids), 500):
                for resident in self._codec.load(conn, ids[start : start + 500]):
                    records[resident.resident_id] = self._as_record(resident)
        return records

    @staticmethod
    def _pairs_within(
        records: dict[str, dict[str, Any]], *, max_block: int
    ) -> list[tuple[str, str]]:
        blocks: dict[str, list[str]] = {}
        for rid, record in records.items():
            for key in probe_keys(record) | evidence_keys(record):
                blocks.setdefault(key, []).append(rid)
        pairs: set[tuple[str, str]] = set()
        for members in blocks.values():
            if len(members) > max_block:
                continue  # a huge block (a common name alone) costs much and says little
            for i, a in enumerate(members):
                for b in members[i + 1 :]:
                    pairs.add((a, b) if a < b else (b, a))
        return sorted(pairs)

    def train_model(self, *, max_residents: int = 20000, seed: int = 1) -> int:
        """Learn the model's m/u weights and prior from the index itself (EM, no labels).

        Compares, within each shared blocking key, up to ``max_residents`` residents
        (a random sample), trains, stores the parameters and uses them from now on.
        Returns the number of pairs it learnt from.
        """
        records = self._active_records(max_residents=max_residents, seed=seed)
        pairs = self._pairs_within(records, max_block=200)
        if not pairs:
            return 0
        gammas = np.array(
            [self._model.levels(records[a], records[b]) for a, b in pairs], dtype=np.int16
        )
        model = MatchModel(
            self._model.comparisons,
            thresholds=self._model.thresholds,
            # A table learnt replaces its field's; a field with too few values keeps its own.
            frequencies={
                **self._model.frequencies,
                **learn_frequencies(records.values(), self._model.comparisons),
            },
        )
        model.train(gammas)
        self._store_model(model, len(pairs))
        return len(pairs)

    def learn_frequencies(
        self, records: Iterable[Mapping[str, Any]], *, fields: Iterable[str] | None = None
    ) -> dict[str, int]:
        """Learn how common each value is from ``records`` (dicts with ``name``,
        ``birth_date``, ``phone``, ``address``: e.g. every record of a file about to be
        loaded), store the tables with the model in use and use them from now on.

        Agreement on a common value then weighs less — a common name, a placeholder
        birth date, a household's phone, a flat's address — and on a rare name more
        (the term-frequency adjustment: see
        :class:`~hcmiddleware.empi.matching.TermFrequencies` and
        :meth:`~hcmiddleware.empi.matching.MatchModel.tf_adjustment`). ``fields``: only
        these fields' tables (default: every field the model adjusts). A field with
        fewer than ``TermFrequencies.MINIMUM`` values learns nothing and keeps the table
        it had. :meth:`train_model` learns them too, from the residents it samples.
        Returns how many values each table learnt was counted from (empty: nothing
        changed).
        """
        tables = learn_frequencies(records, self._model.comparisons, fields=fields)
        if not tables:
            return {}
        model = MatchModel(
            self._model.comparisons,
            m=[list(map(float, x)) for x in self._model.m],
            u=[list(map(float, x)) for x in self._model.u],
            prior=self._model.prior,
            thresholds=self._model.thresholds,
            frequencies={**self._model.frequencies, **tables},
        )
        self._store_model(model, 0)
        return {f: t.total for f, t in tables.items()}

    def learn_name_frequencies(self, names: Iterable[str | None]) -> int:
        """Learn how common each name is from ``names`` alone (see
        :meth:`learn_frequencies`, which learns the other fields too). Returns how many
        names it was learnt from; 0 (and nothing changes) below
        ``TermFrequencies.MINIMUM`` names."""
        return self.learn_frequencies(({"name": n} for n in names), fields=("name",)).get("name", 0)

    def _store_model(self, model: MatchModel, pairs: int) -> None:
        with storage.begin_write(self._engine) as conn:
            model_id = conn.execute(
                sa.insert(MODELS).values(
                    params=model.to_json(), pairs=pairs, trained_at=now_for(conn)
                )
            ).inserted_primary_key[0]  # type: ignore[index]
            if model.frequencies:
                data = json.dumps({f: t.to_json() for f, t in model.frequencies.items()})
                conn.execute(
                    sa.update(MODELS)
                    .where(MODELS.c.id == model_id)
                    .values(
                        frequencies_ct=self._codec.seal(
                            "empi_residents", "frequencies_ct", f"model:{model_id}", data.encode()
                        )
                    )
                )
        self._model = model

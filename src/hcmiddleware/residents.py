"""The resident index in the runtime (``middleware.residents``).

It opens the index on the Middleware's database with the ``[empi]`` keys and is the one
way into it: lookups, searches, enrolments, imports and merges, each answered with the
:class:`~hcmiddleware.models.Resident` the hooks carry, announced through the
``hcm_empi_*`` hooks and audited, whoever calls (a HIS, the flows, ``hcm empi``).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hcmiddleware.errors import ConfigError, HcmError, ResidentIndexError
from hcmiddleware.models import IdentifierKind, Resident, Sex

if TYPE_CHECKING:
    # the index pulls in numpy and the matching libraries: imported on first use only
    from hcmiddleware.card.data import CardRead
    from hcmiddleware.empi.importer import ImportReport
    from hcmiddleware.empi.index import ResidentIndex
    from hcmiddleware.empi.protection import ProtectionSettings
    from hcmiddleware.empi.records import (
        Candidate,
        DuplicatePair,
        Enrolment,
        LinkageRow,
        MergeEvent,
    )
    from hcmiddleware.runtime import Middleware

__all__ = ["Residents"]

log = logging.getLogger("hcmiddleware.residents")


#: identifiers :meth:`Residents.enrol` takes by name
_ENROL_KINDS = frozenset(
    {IdentifierKind.ID_NUMBER, IdentifierKind.CARD_NUMBER, IdentifierKind.ECARD_ID}
)


class Residents:
    """The resident index of one Middleware, opened on first use.

    Every change made through it is announced (``hcm_empi_*``) and audited, whoever
    calls it: the flows, a HIS, or the ``hcm empi`` commands. ``index`` is the
    :class:`~hcmiddleware.empi.index.ResidentIndex` underneath, for plugins and tests.
    """

    def __init__(self, middleware: Middleware, index: ResidentIndex | None = None) -> None:
        self._mw = middleware
        self._index: ResidentIndex | None = index
        self._lock = threading.Lock()

    def _settings(self) -> ProtectionSettings:
        from hcmiddleware.empi.protection import ProtectionSettings

        empi = self._mw.config.empi
        file = str(self._mw.config.source) if self._mw.config.source else None
        if not empi.master_keys:
            # Never made here: keys made silently beside the wrong folder would open an
            # empty index next to the real one, whose data they cannot read.
            raise ConfigError(
                "the resident index has no encryption keys",
                file=file,
                key="empi.master_keys",
                hint="run 'hcm init' to write keys and a starter config, or name the "
                "installation's key files in [empi] (docs/configuration.md)",
            )
        if empi.index_key is None:
            raise ConfigError(
                "master_keys are set but index_key is not",
                file=file,
                key="empi.index_key",
                hint="give the blind-index key as a secret",
            )
        raw = {
            "master_keys": {k: v.get_secret_value() for k, v in empi.master_keys.items()},
            "current_key": empi.current_key or list(empi.master_keys)[-1],
            "index_key": empi.index_key.get_secret_value(),
        }
        try:
            return ProtectionSettings.model_validate(raw)
        except ValueError as exc:
            # messages only: the input is key material
            problems = "; ".join(e["msg"] for e in getattr(exc, "errors", lambda: [])())
            raise ConfigError(
                f"the resident-index keys are not usable: {problems or 'invalid'}",
                file=file,
                key="empi",
                hint="give 32-byte keys in base64 and name the current one",
            ) from None

    @property
    def index(self) -> ResidentIndex:
        """The :class:`~hcmiddleware.empi.index.ResidentIndex` (migrated on first use)."""
        with self._lock:
            if self._index is None:
                from hcmiddleware.empi.index import ResidentIndex
                from hcmiddleware.empi.protection import Protector

                protector = Protector.from_settings(self._settings())
                self._index = ResidentIndex(
                    self._mw.engine, protector, auto_link=self._mw.config.empi.auto_link
                )
            return self._index

    # -- finding ------------------------------------------------------------------------

    def get(self, resident_id: str) -> Resident:
        """The resident with this ID (a merged ID gives the survivor).

        :raises ResidentNotFoundError: no such resident.
        """
        return self.index.get(resident_id)

    def lookup(
        self, kind: IdentifierKind | str, value: str, *, remote: bool = False
    ) -> Resident | None:
        """The resident holding this identifier (card number, ID number, e-card ID …), or None.

        With ``remote``, an identifier the index does not hold is asked of the regional
        or national index (``hcm_empi_remote_lookup``); the one resident it names is
        enrolled here, linked to its regional ID, and returned.

        :raises IdentityError: the value is not a valid identifier of that kind.
        :raises ResidentIndexError: the regional indexes name more than one person.
        """
        kind = IdentifierKind(kind)
        found = self.index.lookup(kind, value)
        if found is not None:
            return found
        if not remote or not self._mw.dispatcher.implementers("hcm_empi_remote_lookup"):
            return None
        return self._from_remote(kind, value)

    def _from_remote(self, kind: IdentifierKind, value: str) -> Resident | None:
        from hcmiddleware.typed import checked

        hook = "hcm_empi_remote_lookup"
        answers: list[tuple[str, Resident]] = []
        for plugin, outcome in self._mw.dispatcher.call_each(hook, kind=kind.value, value=value):
            if isinstance(outcome, HcmError):
                continue  # logged and counted by the dispatcher; other indexes may know
            for item in checked(hook, plugin, outcome or [], list):
                answers.append((plugin, checked(hook, plugin, item, Resident)))
        people = {(r.name, r.sex, r.birth_date, r.id_number) for _p, r in answers}
        if not answers:
            return None
        if len(people) > 1:
            raise ResidentIndexError(
                f"the regional indexes name {len(people)} different people for this {kind.value}",
                hint="nobody was enrolled; resolve it at the regional index, or register "
                "the patient by hand",
            )
        plugin, remote = answers[0]
        fields: dict[str, Any] = {
            "id_number": remote.id_number,
            "card_number": remote.identifier(IdentifierKind.CARD_NUMBER),
            "ecard_id": remote.identifier(IdentifierKind.ECARD_ID),
        }
        if kind in _ENROL_KINDS:
            fields[kind.value] = value  # the identifier asked for, as the desk read it
        local = self.enrol(
            name=remote.name,
            sex=remote.sex,
            birth_date=remote.birth_date,
            phone=remote.phone,
            address=remote.address,
            source=f"regional:{plugin}",
            record_id=remote.resident_id,
            **fields,
        )
        for source, found in answers:
            self.index.link_regional_id(local.resident_id, source, found.resident_id)
        return self.get(local.resident_id)

    def search(
        self,
        *,
        name: str | None = None,
        sex: int | None = None,
        birth_date: dt.date | None = None,
        phone: str | None = None,
        address: str | None = None,
        id_number: str | None = None,
        limit: int = 10,
    ) -> list[Candidate]:
        """Scored candidates for these demographics, best first, with what agreed."""
        return self.index.search(
            name=name,
            sex=sex,
            birth_date=birth_date,
            phone=phone,
            address=address,
            id_number=id_number,
            limit=limit,
        )

    def duplicates(self, *, include_review: bool = True) -> list[DuplicatePair]:
        """Pairs of residents that look like one person; ``include_review=False``: links only."""
        return self.index.duplicates(include_review=include_review)

    def linkage(self, *, source: str | None = None) -> Iterator[LinkageRow]:
        """Which resident each source record (of ``source``, or all) is linked to.

        One :class:`~hcmiddleware.empi.records.LinkageRow` per record, by source and
        ``record_id``: to check an import, and to hand the result back to the HIS
        (``hcm empi export``). Holds no personal data.
        """
        return self.index.linkage(source=source)

    def count(self, *, merged: bool = False) -> int:
        """How many residents are active (or, with ``merged``, merged away)."""
        from hcmiddleware.empi.schema import ResidentStatus

        return self.index.count(status=ResidentStatus.MERGED if merged else ResidentStatus.ACTIVE)

    def stats(self) -> dict[str, int]:
        """Active and merged residents and open reviews."""
        from hcmiddleware.empi.schema import ReviewStatus

        return {
            "active_residents": self.count(),
            "merged_residents": self.count(merged=True),
            "open_reviews": len(self.index.reviews(ReviewStatus.OPEN)),
        }

    # -- the hospital's own IDs ---------------------------------------------------------

    def hospital_id(self, resident_id: str, hospital_code: str) -> str | None:
        """The hospital patient ID linked to the resident, if any."""
        return self.index.hospital_id(resident_id, hospital_code)

    def link_card(self, resident_id: str, card_number: str) -> None:
        """Record another health card of the resident (a replacement); idempotent.

        :raises IdentifierConflictError: the card belongs to another resident.
        """
        self.index.link_card_number(resident_id, card_number)

    def link_hospital_id(
        self, resident_id: str, hospital_code: str, patient_id: str, *, durable: bool = True
    ) -> None:
        """Remember the hospital's patient ID for the resident (idempotent).

        ``durable=False``: committed without waiting for the disk, for a link the HIS
        can give again (see :meth:`CrossReference.link_hospital_id
        <hcmiddleware.empi.crossref.CrossReference.link_hospital_id>`).
        """
        self.index.link_hospital_id(resident_id, hospital_code, patient_id, durable=durable)

    # -- enrolling ----------------------------------------------------------------------

    def _announce(self, enrolment: Enrolment) -> Resident:
        resident = enrolment.resident
        if enrolment.created:
            self._mw.hooks.hcm_empi_resident_enrolled(resident=resident)
        return resident

    def enrol(
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
        source: str = "manual",
        record_id: str | None = None,
        strict: bool = True,
    ) -> Resident:
        """Enrol a person registered without a card (a desk, an old system), or find them.

        An identifier already in the index returns its resident; a confident
        demographic match links to it (``[empi] auto_link``). A new resident is
        announced through ``hcm_empi_resident_enrolled``. ``record_id`` is the person's
        record in the ``source`` system (a desk, an old HIS), kept for linkage.

        ``strict=False`` is for records that cannot be corrected now (an old system's):
        a faulty ID number is kept as ``unverified_id_number`` and the resident carries
        data-quality ``flags`` instead of an error; only an empty name is refused.

        :raises IdentityError: a field is invalid (the error names it); nothing is written.
        """
        enrolment: Enrolment = self.index.enrol(
            name=name,
            sex=sex,
            birth_date=birth_date,
            id_number=id_number,
            phone=phone,
            address=address,
            card_number=card_number,
            ecard_id=ecard_id,
            # the source is the system the record_id comes from: kept with it only
            source=source if record_id is not None else None,
            record_id=record_id,
            strict=strict,
        )
        return self._announce(enrolment)

    def enrol_from_card(self, card: CardRead, *, source: str = "card") -> Resident:
        """The resident holding this card, enrolled from the card's data if new.

        Never creates a silent duplicate: an identifier already in the index returns
        its resident. ``hcm_empi_resident_enrolled`` announces a new one. The card read
        needs the part ``identity``; the phone is taken when ``phones`` was read.
        """
        from hcmiddleware.card.filemap import CardPart

        holder = card.cardholder
        enrolment: Enrolment = self.index.enrol(
            name=holder.name,
            sex=int(holder.sex),
            birth_date=holder.birth_date,
            id_number=holder.id_number or None,
            card_number=card.issuer.card_number,
            phone=(card.validity.phone1 or None) if card.has(CardPart.PHONES) else None,
            source=source,
            record_id=card.issuer.card_number,
        )
        return self._announce(enrolment)

    def import_csv(
        self,
        path: Path,
        *,
        source: str | None = None,
        encoding: str = "auto",
        batch_size: int = 10000,
        progress: Callable[[int], None] | None = None,
        bulk: bool = False,
        workers: int | None = None,
    ) -> ImportReport:
        """Import residents from a CSV file (resumable; bad rows reported, good rows kept).

        Each new resident is announced through ``hcm_empi_resident_enrolled`` once its
        batch is committed. See ``docs/empi.md`` for the columns. ``bulk``: the bulk
        initial load (the same links and reviews, rows prepared by ``workers``
        processes, other writers refused until it ends; see ``docs/empi.md``).
        """
        from hcmiddleware.empi.importer import import_csv

        listening = bool(self._mw.dispatcher.implementers("hcm_empi_resident_enrolled"))
        if bulk:
            from hcmiddleware.empi.bulk import bulk_import

            return bulk_import(
                self.index,
                path,
                source=source,
                encoding=encoding,
                batch_size=batch_size,
                workers=workers,
                progress=progress,
                on_enrolled=self._announce if listening else None,
            )
        return import_csv(
            self.index,
            path,
            source=source,
            encoding=encoding,
            batch_size=batch_size,
            progress=progress,
            on_enrolled=self._announce if listening else None,
        )

    # -- merging ------------------------------------------------------------------------

    def merge(self, survivor: str, merged: str, *, reason: str, operator: str) -> MergeEvent:
        """Merge two records of one person; announced through ``hcm_empi_residents_merged``."""
        event = self.index.merge(survivor, merged, reason=reason, operator=operator)
        self._mw.hooks.hcm_empi_residents_merged(
            survivor=self.index.get(survivor),
            merged=self.index.get(merged, follow_merges=False),
            reason=reason,
        )
        self._mw.audit("empi.merge", actor=operator, subject=survivor, merged=merged)
        return event

    def unmerge(self, merged: str, *, reason: str, operator: str) -> MergeEvent:
        """Undo a merge; announced through ``hcm_empi_resident_unmerged``."""
        event = self.index.unmerge(merged, reason=reason, operator=operator)
        self._mw.hooks.hcm_empi_resident_unmerged(
            survivor=self.index.get(event.survivor_id),
            restored=self.index.get(merged),
            reason=reason,
        )
        self._mw.audit("empi.unmerge", actor=operator, subject=merged, survivor=event.survivor_id)
        return event

    def history(self, resident_id: str) -> list[MergeEvent]:
        """The merges and unmerges a resident took part in, oldest first."""
        return self.index.history(resident_id)

    # -- upkeep -------------------------------------------------------------------------

    def train(self, *, max_residents: int = 20000) -> int:
        """Learn the matching weights from the index itself (EM, no labels); pairs used."""
        return self.index.train_model(max_residents=max_residents)

    def rewrap(self) -> tuple[int, list[str]]:
        """Re-wrap every data key under the current master key.

        Returns how many were re-wrapped and the master keys still in use: when only
        the current one is, older keys can be removed from the configuration.
        """
        protector = self.index.protector
        count = protector.rewrap()
        return count, sorted(protector.master_keys_in_use())

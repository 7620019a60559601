"""Hospital and regional cross-reference (R-EMPI-4): the IDs others gave a resident.

A hospital patient ID is recorded with the hospital's code as its assigner, a regional
index ID with the index's; each is held by one resident at most.
"""

from __future__ import annotations

from hcmiddleware import storage
from hcmiddleware.empi.core import IndexCore
from hcmiddleware.empi.normalize import normalize_code
from hcmiddleware.empi.schema import IdentifierKind
from hcmiddleware.empi.store import Q_HOLDER, DirectStore
from hcmiddleware.errors import IdentifierConflictError, IdentityError
from hcmiddleware.models import Identifier

__all__ = ["CrossReference"]


class CrossReference(IndexCore):
    """Links to hospital patient IDs and regional index IDs."""

    def link_hospital_id(
        self, resident_id: str, hospital_code: str, patient_id: str, *, durable: bool = True
    ) -> Identifier:
        """Record the hospital's own patient id for the resident; idempotent.

        ``durable=False`` commits without waiting for the disk (see
        :func:`hcmiddleware.storage.begin_write`): for a link the HIS can give again —
        lost only in a power cut before the next durable commit, it costs one more
        question to the HIS, which answers with the same patient.

        Raises :class:`IdentifierConflictError` when that hospital's patient id already
        belongs to another resident (the HIS has two records: merge them first).
        """
        return self._link(
            resident_id,
            IdentifierKind.HOSPITAL_PATIENT_ID,
            hospital_code,
            patient_id,
            durable=durable,
        )

    def link_regional_id(self, resident_id: str, index_code: str, regional_id: str) -> Identifier:
        """Record the id the regional or national index gave the resident; idempotent."""
        return self._link(resident_id, IdentifierKind.REGIONAL_INDEX_ID, index_code, regional_id)

    def link_card_number(self, resident_id: str, card_number: str) -> Identifier:
        """Record another health card of the resident (a replacement card); idempotent.

        Raises :class:`IdentifierConflictError` when the card belongs to another resident.
        """
        return self._link(resident_id, IdentifierKind.CARD_NUMBER, "", card_number, issued=False)

    def link_ecard_id(self, resident_id: str, ecard_id: str) -> Identifier:
        """Bind an electronic health card's ID to the resident; idempotent.

        Raises :class:`IdentifierConflictError` when another resident holds it.
        """
        return self._link(resident_id, IdentifierKind.ECARD_ID, "", ecard_id, issued=False)

    def _link(
        self,
        resident_id: str,
        kind: IdentifierKind,
        issuer: str,
        value: str,
        *,
        issued: bool = True,
        durable: bool = True,
    ) -> Identifier:
        issuer = normalize_code(issuer)
        if issued and not issuer:
            raise IdentityError(f"a {kind.value} needs the code of its issuer", field="issuer")
        canonical = self._canonical(kind, value)
        bidx = self._ident_bidx(kind, canonical)
        with storage.begin_write(self._engine, durable=durable) as conn:
            self._refuse_during_bulk_load(conn)
            target = self._codec.row(conn, resident_id, follow=True)["id"]
            holder = conn.scalar(Q_HOLDER, {"kind": kind.value, "issuer": issuer, "bidx": bidx})
            if holder is not None and holder != target:
                raise IdentifierConflictError(
                    f"that {kind.value}{f' of {issuer}' if issuer else ''} already belongs "
                    f"to resident {holder}",
                    kind=kind.value,
                    holder=holder,
                )
            if holder is None:
                store = DirectStore(self._codec, conn, max_block=self._max_block)
                rows, added = self._identifier_rows(
                    store.now, target, [(kind, issuer, canonical, bidx)], set()
                )
                store.add_identifiers(target, rows, added)
        return Identifier(kind=kind, value=canonical, assigner=issuer or None)

    def hospital_id(self, resident_id: str, hospital_code: str) -> str | None:
        """The hospital's patient id for the resident (the first one linked), or ``None``."""
        resident = self.get(resident_id)
        return resident.identifier(
            IdentifierKind.HOSPITAL_PATIENT_ID, normalize_code(hospital_code)
        )

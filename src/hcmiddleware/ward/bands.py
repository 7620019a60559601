"""Wristband bindings: bind at admission, rebind a lost band, release at discharge.

A band identifies one stay at a time. A replaced band is *dead*: it never identifies
anyone again, so a lost band found later cannot be scanned for the wrong patient. A
released band (discharge) may be bound again to a later stay: active bands are
reused, printed ones never carry the same ID twice anyway.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from hcmiddleware import storage
from hcmiddleware.errors import (
    UnknownWristbandError,
    WristbandDeadError,
    WristbandError,
    WristbandInUseError,
    WristbandReleasedError,
)
from hcmiddleware.models import Admission, WristbandBinding
from hcmiddleware.ward.tables import WristbandRow

#: Writes an act's audit entry in the act's own transaction: ``(conn, subject)`` — the
#: resident (a band) or the execution / admission the act is about.
Audited = Callable[[Connection, str], None]

__all__ = ["Audited", "BandStore", "utcnow"]

_BANDS: sa.Table = WristbandRow.__table__  # type: ignore[assignment]


def utcnow() -> datetime:
    """Now, as the ward's tables keep times: naive UTC."""
    return datetime.now(UTC).replace(tzinfo=None)


def _aware(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.replace(tzinfo=UTC)


class BandStore:
    """The ``ward_wristbands`` table; card numbers are sealed by ``seal``/``unseal``."""

    def __init__(
        self,
        engine: Engine,
        *,
        pattern: str,
        seal: Callable[[bytes], bytes],
        unseal: Callable[[bytes], bytes],
    ) -> None:
        self.engine = engine
        self._pattern = re.compile(pattern)
        self._seal = seal
        self._unseal = unseal

    def check_id(self, wristband_id: str) -> str:
        """The band ID as given, if it looks like one; else WristbandError."""
        if not isinstance(wristband_id, str) or not self._pattern.match(wristband_id):
            raise WristbandError(
                "this is not a wristband ID",
                wristband_id=str(wristband_id)[:40],
                hint="scan the band's barcode again; band IDs are letters, digits and '-'",
            )
        return wristband_id

    def to_model(self, row: Any) -> WristbandBinding:
        """A row as the domain model (the card number unsealed)."""
        return WristbandBinding(
            wristband_id=row.wristband_id,
            card_number=self._unseal(row.card_number).decode("utf-8"),
            resident_id=row.resident_id,
            admission_id=row.admission_id,
            bound_at=_aware(row.bound_at),
            kind=row.kind,
            patient_id=row.patient_id,
            ward=row.ward,
            bed=row.bed,
            admitted_at=row.admitted_at,
            status=row.status,
            ended_at=_aware(row.ended_at),
            ended_reason=row.ended_reason,
            replaced_by=row.replaced_by,
        )

    # -- reading ----------------------------------------------------------------------

    @staticmethod
    def _latest(conn: Connection, wristband_id: str) -> Any:
        return conn.execute(
            sa.select(_BANDS)
            .where(_BANDS.c.wristband_id == wristband_id)
            .order_by(_BANDS.c.id.desc())
            .limit(1)
        ).first()

    def latest(self, wristband_id: str) -> WristbandBinding | None:
        """The band's newest binding, whatever its status."""
        with self.engine.connect() as conn:
            row = self._latest(conn, wristband_id)
        return None if row is None else self.to_model(row)

    def active(self, wristband_id: str) -> WristbandBinding:
        """The band's active binding; a typed error says why there is none."""
        self.check_id(wristband_id)
        with self.engine.connect() as conn:
            row = self._latest(conn, wristband_id)
        return self.to_model(self._usable(row, wristband_id))

    @staticmethod
    def _usable(row: Any, wristband_id: str) -> Any:
        if row is None:
            raise UnknownWristbandError(
                f"wristband {wristband_id} is not bound to any stay here",
                wristband_id=wristband_id,
            )
        if row.status == "dead":
            raise WristbandDeadError(
                f"wristband {wristband_id} was replaced ({row.ended_reason}) and is no longer"
                " valid",
                wristband_id=wristband_id,
                replaced_by=row.replaced_by,
            )
        if row.status == "released":
            raise WristbandReleasedError(
                f"wristband {wristband_id} belongs to a stay that ended "
                f"({row.ended_reason or 'discharged'})",
                wristband_id=wristband_id,
            )
        return row

    def of_stay(self, admission_id: str) -> WristbandBinding | None:
        """The stay's active band, if it has one."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(_BANDS).where(_BANDS.c.active_stay == admission_id)
            ).first()
        return None if row is None else self.to_model(row)

    def of_resident(self, resident_id: str) -> WristbandBinding | None:
        """The resident's active band (the one of their current stay), if any."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(_BANDS)
                .where(_BANDS.c.resident_id == resident_id, _BANDS.c.status == "active")
                .order_by(_BANDS.c.id.desc())
                .limit(1)
            ).first()
        return None if row is None else self.to_model(row)

    def bindings(self, *, status: str | None = "active") -> list[WristbandBinding]:
        """Bindings (the active ones by default), newest first."""
        query = sa.select(_BANDS).order_by(_BANDS.c.id.desc())
        if status is not None:
            query = query.where(_BANDS.c.status == status)
        with self.engine.connect() as conn:
            return [self.to_model(r) for r in conn.execute(query)]

    # -- writing ----------------------------------------------------------------------

    def bind(
        self,
        wristband_id: str,
        admission: Admission,
        *,
        resident_id: str,
        card_number: str,
        kind: str,
        actor: str,
        audited: Audited | None = None,
    ) -> tuple[WristbandBinding, bool]:
        """Bind the band to the stay; ``(binding, new)``. The same binding again is a no-op
        (and ``audited`` is not called)."""
        self.check_id(wristband_id)
        with storage.begin_write(self.engine) as conn:
            row = self._latest(conn, wristband_id)
            if row is not None and row.status == "active":
                if row.admission_id == admission.admission_id:
                    return self.to_model(row), False
                raise WristbandInUseError(
                    f"wristband {wristband_id} is bound to another stay",
                    wristband_id=wristband_id,
                    hint="take another band; this one belongs to a patient in the ward",
                )
            if self._ever_dead(conn, wristband_id):
                raise WristbandDeadError(
                    f"wristband {wristband_id} was replaced once and can never be bound again",
                    wristband_id=wristband_id,
                    hint="destroy this band and take a new one",
                )
            current = conn.execute(
                sa.select(_BANDS.c.wristband_id).where(
                    _BANDS.c.active_stay == admission.admission_id
                )
            ).first()
            if current is not None:
                raise WristbandInUseError(
                    f"stay {admission.admission_id} already wears band {current[0]}",
                    wristband_id=wristband_id,
                    hint=f"to replace band {current[0]}, rebind it to this one "
                    "(the old band dies at once)",
                )
            self._insert(conn, wristband_id, admission, resident_id, card_number, kind, actor)
            made = self._latest(conn, wristband_id)
            if audited is not None:
                audited(conn, resident_id)
        return self.to_model(made), True

    def _insert(
        self,
        conn: Connection,
        wristband_id: str,
        admission: Admission,
        resident_id: str,
        card_number: str,
        kind: str,
        actor: str,
    ) -> None:
        conn.execute(
            _BANDS.insert().values(
                wristband_id=wristband_id,
                kind=kind,
                resident_id=resident_id,
                card_number=self._seal(card_number.encode("utf-8")),
                admission_id=admission.admission_id,
                patient_id=admission.patient_id,
                ward=admission.ward,
                bed=admission.bed,
                admitted_at=admission.admitted_at,
                status="active",
                active_band=wristband_id,
                active_stay=admission.admission_id,
                bound_at=utcnow(),
                bound_by=actor[:40],
            )
        )

    @staticmethod
    def _ever_dead(conn: Connection, wristband_id: str) -> bool:
        return (
            conn.execute(
                sa.select(_BANDS.c.id).where(
                    _BANDS.c.wristband_id == wristband_id, _BANDS.c.status == "dead"
                )
            ).first()
            is not None
        )

    def rebind(
        self,
        old_id: str,
        new_id: str,
        *,
        reason: str,
        kind: str | None,
        actor: str,
        audited: Audited | None = None,
    ) -> tuple[WristbandBinding, WristbandBinding]:
        """Kill ``old_id`` and bind ``new_id`` to its stay, in one transaction."""
        self.check_id(old_id)
        self.check_id(new_id)
        if old_id == new_id:
            raise WristbandInUseError(
                "a band cannot replace itself",
                wristband_id=new_id,
                hint="scan the new band's ID as the replacement",
            )
        with storage.begin_write(self.engine) as conn:
            old = self._usable(self._latest(conn, old_id), old_id)
            taken = self._latest(conn, new_id)
            if taken is not None and taken.status == "active":
                raise WristbandInUseError(
                    f"wristband {new_id} is bound to another stay", wristband_id=new_id
                )
            if self._ever_dead(conn, new_id):
                raise WristbandDeadError(
                    f"wristband {new_id} was replaced once and can never be bound again",
                    wristband_id=new_id,
                    hint="destroy this band and take a new one",
                )
            now = utcnow()
            conn.execute(
                _BANDS.update()
                .where(_BANDS.c.id == old.id)
                .values(
                    status="dead",
                    active_band=None,
                    active_stay=None,
                    ended_at=now,
                    ended_reason=reason[:40],
                    replaced_by=new_id,
                )
            )
            stay = Admission(
                admission_id=old.admission_id,
                patient_id=old.patient_id,
                ward=old.ward,
                bed=old.bed,
                admitted_at=old.admitted_at or now,
            )
            card = self._unseal(old.card_number).decode("utf-8")
            self._insert(conn, new_id, stay, old.resident_id, card, kind or old.kind, actor)
            dead = conn.execute(sa.select(_BANDS).where(_BANDS.c.id == old.id)).one()
            made = self._latest(conn, new_id)
            if audited is not None:
                audited(conn, old.resident_id)
        return self.to_model(dead), self.to_model(made)

    def release(
        self, wristband_id: str, *, reason: str, audited: Audited | None = None
    ) -> WristbandBinding:
        """End the band's active binding (discharge); WristbandError if it has none."""
        self.check_id(wristband_id)
        with storage.begin_write(self.engine) as conn:
            row = self._usable(self._latest(conn, wristband_id), wristband_id)
            conn.execute(
                _BANDS.update()
                .where(_BANDS.c.id == row.id)
                .values(
                    status="released",
                    active_band=None,
                    active_stay=None,
                    ended_at=utcnow(),
                    ended_reason=reason[:40],
                )
            )
            done = conn.execute(sa.select(_BANDS).where(_BANDS.c.id == row.id)).one()
            if audited is not None:
                audited(conn, row.resident_id)
        return self.to_model(done)

    def move(
        self, wristband_id: str, *, ward: str, bed: str, audited: Audited | None = None
    ) -> WristbandBinding:
        """The patient moved to another bed: the active binding follows."""
        with storage.begin_write(self.engine) as conn:
            row = self._usable(self._latest(conn, wristband_id), wristband_id)
            conn.execute(_BANDS.update().where(_BANDS.c.id == row.id).values(ward=ward, bed=bed))
            done = conn.execute(sa.select(_BANDS).where(_BANDS.c.id == row.id)).one()
            if audited is not None:
                audited(conn, row.resident_id)
        return self.to_model(done)

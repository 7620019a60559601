"""The replay store: a dynamic code is accepted once per terminal and care step.

A use is recorded by inserting a row whose primary key is (digest of the code's
signed text, terminal, step): the database refuses the second insert, so two
terminals' processes sharing one database cannot both accept a copied code for the
same terminal ID and step. Rows outlive their code's expiry by the clock skew and are
then deleted, a batch at a time, by later uses.
"""

from __future__ import annotations

import hashlib
import threading
import time
from datetime import UTC, datetime
from typing import cast

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from hcmiddleware import storage
from hcmiddleware.ehc.tables import EhcUsedCode

__all__ = ["ReplayStore", "code_digest"]

_USED = cast(sa.Table, EhcUsedCode.__table__)


def code_digest(signed: bytes) -> str:
    """The key a code is remembered by: SHA-256 (hex) of its signed text."""
    return hashlib.sha256(signed).hexdigest()


class ReplayStore:
    """Used dynamic codes in the installation's database.

    :param purge_every: seconds between deletions of expired rows (by a use).
    """

    def __init__(self, engine: Engine, *, purge_every: float = 60.0) -> None:
        self.engine = engine
        self._purge_every = purge_every
        self._next_purge = 0.0
        self._lock = threading.Lock()

    def use(
        self,
        signed: bytes,
        *,
        terminal_id: str,
        care_step: str,
        keep_until: datetime,
        now: datetime | None = None,
    ) -> bool:
        """Record a use; False when this code was used here for this step before."""
        moment = _naive(now or datetime.now(UTC))
        row = {
            "code_digest": code_digest(signed),
            "terminal_id": terminal_id,
            "care_step": care_step,
            "expires_at": _naive(keep_until),
            "used_at": moment,
        }
        try:
            with storage.begin_write(self.engine) as conn:
                conn.execute(_USED.insert(), row)
        except IntegrityError:
            return False
        self._maybe_purge(moment)
        return True

    def used(self, signed: bytes, *, terminal_id: str, care_step: str) -> bool:
        """Was this code used at ``terminal_id`` for ``care_step``?"""
        with self.engine.connect() as conn:
            found = conn.scalar(
                sa.select(sa.func.count()).where(
                    _USED.c.code_digest == code_digest(signed),
                    _USED.c.terminal_id == terminal_id,
                    _USED.c.care_step == care_step,
                )
            )
        return bool(found)

    def purge(self, *, now: datetime | None = None) -> int:
        """Delete the rows of codes past their keep-until time; how many went."""
        moment = _naive(now or datetime.now(UTC))
        with storage.begin_write(self.engine) as conn:
            done = conn.execute(_USED.delete().where(_USED.c.expires_at < moment))
        return int(done.rowcount or 0)

    def _maybe_purge(self, moment: datetime) -> None:
        with self._lock:
            clock = time.monotonic()
            if clock < self._next_purge:
                return
            self._next_purge = clock + self._purge_every
        self.purge(now=moment)


def _naive(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value

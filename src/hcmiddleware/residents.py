"""The resident index in the runtime (``middleware.residents``).

It opens the index on the Middleware's database with the ``[empi]`` keys, turns index
records into the :class:`~hcmiddleware.models.Resident` the hooks carry, and announces
enrolments and merges through ``hcm_empi_*`` hooks.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hcmiddleware.errors import ConfigError
from hcmiddleware.models import Resident

if TYPE_CHECKING:
    # the index pulls in numpy and the matching libraries: imported on first use only
    from hcmiddleware.card.data import CardRead
    from hcmiddleware.empi.index import ResidentIndex
    from hcmiddleware.empi.protection import ProtectionSettings
    from hcmiddleware.empi.records import Enrolment, MergeEvent
    from hcmiddleware.runtime import Middleware

__all__ = ["Residents"]

log = logging.getLogger("hcmiddleware.residents")
KEY_FILE = Path("keys") / "empi-keys.json"


def _generated_keys(data_dir: Path) -> dict[str, Any]:
    path = data_dir / KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        keys = {
            "master_keys": {"k1": base64.b64encode(secrets.token_bytes(32)).decode()},
            "current_key": "k1",
            "index_key": base64.b64encode(secrets.token_bytes(32)).decode(),
        }
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(keys, out)
        log.warning("generated resident-index keys in %s; set [empi] keys for a shared index", path)
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


class Residents:
    """The resident index of one Middleware, opened on first use."""

    def __init__(self, middleware: Middleware) -> None:
        self._mw = middleware
        self._index: ResidentIndex | None = None
        self._lock = threading.Lock()

    def _settings(self) -> ProtectionSettings:
        from hcmiddleware.empi.protection import ProtectionSettings

        empi = self._mw.config.empi
        file = str(self._mw.config.source) if self._mw.config.source else None
        if not empi.master_keys:
            raw = _generated_keys(self._mw.config.middleware.data_dir)
        else:
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

    def enrol_from_card(self, card: CardRead, *, source: str = "card") -> Resident:
        """The resident holding this card, enrolled from the card's data if new.

        Never creates a silent duplicate: an identifier already in the index returns
        its resident. ``hcm_empi_resident_enrolled`` announces a new one.
        """
        holder = card.cardholder
        enrolment: Enrolment = self.index.enrol(
            name=holder.name,
            sex=int(holder.sex),
            birth_date=holder.birth_date,
            id_number=holder.id_number or None,
            card_number=card.issuer.card_number,
            phone=card.validity.phone1 or None,
            source=source,
            record_id=card.issuer.card_number,
        )
        resident = enrolment.resident
        if enrolment.created:
            self._mw.hooks.hcm_empi_resident_enrolled(resident=resident)
        return resident

    def merge(self, survivor: str, merged: str, *, reason: str, operator: str) -> MergeEvent:
        """Merge two records of one person; announced through ``hcm_empi_residents_merged``."""
        event = self.index.merge(survivor, merged, reason=reason, operator=operator)
        self._mw.hooks.hcm_empi_residents_merged(
            survivor=self.index.get(survivor),
            merged=self.index.get(merged, follow_merges=False),
            reason=reason,
        )
        return event

    def unmerge(self, merged: str, *, reason: str, operator: str) -> MergeEvent:
        """Undo a merge; announced through ``hcm_empi_resident_unmerged``."""
        event = self.index.unmerge(merged, reason=reason, operator=operator)
        self._mw.hooks.hcm_empi_resident_unmerged(
            survivor=self.index.get(event.survivor_id),
            restored=self.index.get(merged),
            reason=reason,
        )
        return event

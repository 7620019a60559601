"""A reference list service of an issuer or a bank, and the plugin that reads it.

:class:`ListPublisher` keeps one source's list of refused cards the way an issuer's
system does — every change gets the next version — and answers a terminal with the
deltas after the version it holds, or the full list when it holds none (or one too
old to follow). Every update is signed (Ed25519 or ECDSA P-256) over
:func:`~hcmiddleware.cards.lists.signed_bytes`. :class:`ReferenceListPlugin` offers
publishers to a Middleware through ``hcm_card_blacklist_updates`` and records loss
reports through ``hcm_card_report_loss``. Tests, the demo and benchmarks use them; a
site's adapter talks to its issuer's and bank's real services instead.
"""

from __future__ import annotations

import base64
import itertools
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Literal

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from hcmiddleware.cards.lists import signed_bytes
from hcmiddleware.hookspecs import hookimpl
from hcmiddleware.models import BlacklistEntry, BlacklistUpdate, LossReport

__all__ = ["ListPublisher", "ReferenceListPlugin"]

Algorithm = Literal["ed25519", "ecdsa-p256"]
State = Literal["issued", "loss_reported", "frozen", "cancelled", "replaced"]


class ListPublisher:
    """One source's list: changes, versions, and signed full or delta updates."""

    def __init__(self, source: str, *, algorithm: Algorithm = "ed25519", history: int = 50):
        self.source = source
        self._key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey = (
            ed25519.Ed25519PrivateKey.generate()
            if algorithm == "ed25519"
            else ec.generate_private_key(ec.SECP256R1())
        )
        self._listed: dict[str, BlacklistEntry] = {}
        self._pending_added: dict[str, BlacklistEntry] = {}
        self._pending_removed: set[str] = set()
        #: published deltas, oldest first, at most ``history`` of them
        self._deltas: list[BlacklistUpdate] = []
        self._history = history
        self.version = 0
        #: the signed full list of ``version``, once made (a feed signs each version once)
        self._full: BlacklistUpdate | None = None
        self._lock = threading.Lock()

    def public_pem(self) -> bytes:
        """The public key a terminal configures for this source (PEM)."""
        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, update: BlacklistUpdate | dict[str, object]) -> str:
        """The base64 signature of an update (or of an update's fields)."""
        message = signed_bytes(update)
        if isinstance(self._key, ed25519.Ed25519PrivateKey):
            raw = self._key.sign(message)
        else:
            raw = self._key.sign(message, ec.ECDSA(hashes.SHA256()))
        return base64.b64encode(raw).decode()

    # -- changes -----------------------------------------------------------------------

    def list_card(
        self,
        card_number: str,
        state: State,
        *,
        listed_at: datetime | None = None,
        replaced_by: str | None = None,
    ) -> None:
        """Put a card on the list (or change its state); published with the next version."""
        entry = BlacklistEntry(
            card_number=card_number,
            reason=state,
            listed_at=listed_at or datetime.now(UTC),
            source=self.source,
            replaced_by=replaced_by,
        )
        with self._lock:
            self._pending_added[card_number] = entry
            self._pending_removed.discard(card_number)

    def lift(self, card_number: str) -> None:
        """Take a card off the list (found again, unfrozen, activated)."""
        with self._lock:
            self._pending_added.pop(card_number, None)
            if card_number in self._listed:
                self._pending_removed.add(card_number)

    def issue(self, card_number: str, *, issued_at: datetime | None = None) -> None:
        """A card handed out, not activated yet: it reads but moves no money."""
        self.list_card(card_number, "issued", listed_at=issued_at)

    def activate(self, card_number: str) -> None:
        """The card's activation: it leaves the list with the next version."""
        self.lift(card_number)

    def list_many(self, cards: Iterable[tuple[str, State]]) -> None:
        """Put many cards on the list at once (for bulk loads and benchmarks)."""
        now = datetime.now(UTC)
        with self._lock:
            for card_number, state in cards:
                self._pending_added[card_number] = BlacklistEntry(
                    card_number=card_number, reason=state, listed_at=now, source=self.source
                )

    def publish(self) -> BlacklistUpdate:
        """Make the pending changes the next version; the delta that carries them."""
        with self._lock:
            base = self.version
            self.version += 1
            added = tuple(sorted(self._pending_added.values(), key=lambda e: e.card_number))
            removed = tuple(sorted(self._pending_removed))
            for card in removed:
                self._listed.pop(card, None)
            self._listed.update(self._pending_added)
            self._pending_added.clear()
            self._pending_removed.clear()
            fields = {
                "source": self.source,
                "kind": "delta",
                "version": self.version,
                "base_version": base,
                "issued_at": datetime.now(UTC),
                "added": [e.model_dump() for e in added],
                "removed": list(removed),
            }
            if base == 0:  # the first version is the full list
                fields.update(kind="full", base_version=None, removed=[])
            delta = BlacklistUpdate.model_validate({**fields, "signature": self.sign(fields)})
            self._deltas = [*self._deltas, delta][-self._history :]
            self._full = delta if delta.kind == "full" else None
            return delta

    def full(self) -> BlacklistUpdate:
        """The whole list at the current version, signed."""
        with self._lock:
            if self._full is not None and self._full.version == self.version:
                return self._full
            fields = {
                "source": self.source,
                "kind": "full",
                "version": self.version,
                "base_version": None,
                "issued_at": datetime.now(UTC),
                "added": [
                    e.model_dump()
                    for e in sorted(self._listed.values(), key=lambda e: e.card_number)
                ],
                "removed": [],
            }
            self._full = BlacklistUpdate.model_validate({**fields, "signature": self.sign(fields)})
            return self._full

    def updates(self, after: int | None) -> list[BlacklistUpdate]:
        """What a terminal holding version ``after`` needs: deltas, or the full list."""
        if self.version == 0:
            return []
        if after is not None and after >= self.version:
            return []
        with self._lock:
            deltas = [
                d
                for d in self._deltas
                if d.kind == "delta" and (d.base_version or 0) >= (after or 0)
            ]
            follows = (
                after is not None
                and bool(deltas)
                and deltas[0].base_version == after
                and all(a.version == b.base_version for a, b in itertools.pairwise(deltas))
            )
        return deltas if follows else [self.full()]


class ReferenceListPlugin:
    """Offers publishers' updates to a Middleware, and takes loss reports."""

    hcm_plugin_name = "reference-card-lists"

    def __init__(self, *publishers: ListPublisher) -> None:
        self.publishers = {p.source: p for p in publishers}
        #: loss reports received, newest last
        self.loss_reports: list[LossReport] = []
        self._numbers = itertools.count(1)

    @hookimpl
    def hcm_card_blacklist_updates(self, since: dict[str, int]) -> list[BlacklistUpdate]:
        updates: list[BlacklistUpdate] = []
        for source, publisher in self.publishers.items():
            updates.extend(publisher.updates(since.get(source)))
        return updates

    @hookimpl
    def hcm_card_report_loss(self, report: LossReport) -> str | None:
        self.loss_reports.append(report)
        return f"LR{next(self._numbers):08d}"

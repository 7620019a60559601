"""The e-card's tables: codes already used, and the issuers' revocation lists.

No e-card ID is stored in clear: a used code is kept as the SHA-256 of its signed
text, a revoked e-card as the SHA-256 of its ID. Times are naive UTC.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from hcmiddleware.storage import Base

__all__ = ["EhcRevocationState", "EhcRevokedCard", "EhcUsedCode"]


class EhcUsedCode(Base):
    """A dynamic code accepted at a terminal for a care step (the replay store).

    The key is the code's signed text, not its signature: an ECDSA signature can be
    rewritten into another valid one of the same text, which must not make a second
    use. Rows are deleted once the code has expired (``expires_at``).
    """

    __tablename__ = "ehc_used_codes"

    code_digest: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    terminal_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    care_step: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(sa.DateTime(), index=True)
    used_at: Mapped[datetime] = mapped_column(sa.DateTime())


class EhcRevocationState(Base):
    """Which version of each issuer's revocation list is in force, and since when."""

    __tablename__ = "ehc_revocation_lists"

    issuer: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    version: Mapped[int] = mapped_column(sa.Integer)
    key_id: Mapped[str] = mapped_column(sa.String(16))
    issued_at: Mapped[datetime] = mapped_column(sa.DateTime())
    synced_at: Mapped[datetime] = mapped_column(sa.DateTime())
    entries: Mapped[int] = mapped_column(sa.Integer)


class EhcRevokedCard(Base):
    """An e-card on an issuer's revocation list (its ID as a SHA-256 digest).

    The key starts with the digest: a check looks an e-card up by digest, for one
    issuer or all, and a random key needs only one B-tree to update.
    """

    __tablename__ = "ehc_revoked_cards"

    card_digest: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    issuer: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    revoked_at: Mapped[datetime] = mapped_column(sa.DateTime())
    reason: Mapped[str] = mapped_column(sa.String(16))

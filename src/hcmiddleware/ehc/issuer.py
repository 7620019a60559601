"""The issuer's side: signing dynamic codes and revocation lists.

Used by the reference e-card platform, by ``hcm ehc issue`` on a site configured
with ``[ehc.issuer]``, and by the tests. A terminal never needs it: it holds public
keys only.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime

from hcmiddleware.ehc.codes import make_dynamic
from hcmiddleware.ehc.crypto import PrivateKey, load_private_key
from hcmiddleware.ehc.revocations import signed_bytes
from hcmiddleware.models import EhcRevocation, EhcRevocationList

__all__ = ["CodeIssuer"]


class CodeIssuer:
    """Signs with one key: ``key_id`` names it in every code and list.

    :param lifetime: seconds a code is valid from its issue.
    """

    def __init__(self, issuer: str, key_id: str, key: PrivateKey, *, lifetime: int = 60) -> None:
        self.issuer = issuer
        self.key_id = key_id
        self.key = key
        self.lifetime = lifetime

    @classmethod
    def from_pem(
        cls, issuer: str, key_id: str, algorithm: str, pem: bytes, *, lifetime: int = 60
    ) -> CodeIssuer:
        """An issuer from a PKCS#8 PEM private key."""
        return cls(issuer, key_id, load_private_key(algorithm, pem), lifetime=lifetime)

    def dynamic_code(
        self,
        ecard_id: str,
        *,
        issued: int | None = None,
        lifetime: int | None = None,
        nonce: str | None = None,
    ) -> str:
        """A fresh dynamic code for ``ecard_id``, valid ``lifetime`` seconds from ``issued``."""
        start = int(time.time()) if issued is None else issued
        return make_dynamic(
            ecard_id,
            key_id=self.key_id,
            issued=start,
            expires=start + (self.lifetime if lifetime is None else lifetime),
            nonce=nonce,
            sign=self.key.sign,
        )

    def revocation_list(
        self,
        *,
        version: int,
        revoked: Iterable[EhcRevocation] = (),
        restored: Iterable[str] = (),
        base_version: int | None = None,
        issued_at: datetime | None = None,
    ) -> EhcRevocationList:
        """A signed full list (``base_version`` None) or delta."""
        body = {
            "issuer": self.issuer,
            "key_id": self.key_id,
            "version": version,
            "base_version": base_version,
            "issued_at": (issued_at or datetime.now(UTC)).replace(microsecond=0),
            "revoked": tuple(revoked),
            "restored": tuple(restored),
        }
        signature = self.key.sign(signed_bytes(body)).hex().upper()
        return EhcRevocationList(**body, signature=signature)

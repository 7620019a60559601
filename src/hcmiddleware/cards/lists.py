"""Signed lists of refused cards: the bytes that are signed, and checking a signature.

An update's signature covers a canonical encoding of everything in it but the
signature: the domain tag ``hcm-card-list-v1``, a newline, then JSON with sorted keys,
no spaces, UTF-8, times in UTC with a ``Z``, entries sorted by card number. A source
signs with Ed25519 or ECDSA P-256 (SHA-256, DER signature); the terminal holds each
source's public key as a PEM file (``[cards] list_keys``).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from operator import itemgetter
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from pydantic import ValidationError

from hcmiddleware.errors import CardListError, ConfigError
from hcmiddleware.models import BlacklistUpdate

__all__ = [
    "PublicKey",
    "Row",
    "canonical_rows",
    "load_public_key",
    "parse_update",
    "signed_bytes",
    "verify_update",
]

DOMAIN = b"hcm-card-list-v1\n"

PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey


def _utc(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("times in a card list carry their time zone")
    moment = moment.astimezone(UTC)
    if moment.year < 1000:  # strftime's %Y does not pad
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    # the same text as that strftime, at a fraction of its cost (a list has many times;
    # %-formatting is about twice as fast as isoformat or an f-string with widths here)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ" % (  # noqa: UP031
        moment.year, moment.month, moment.day,
        moment.hour, moment.minute, moment.second, moment.microsecond,
    )  # fmt: skip


#: one entry of an update as it is signed and stored: card number, state, the listing
#: time as canonical UTC text (``YYYY-MM-DDTHH:MM:SS.ffffffZ``), the replacement card
Row = tuple[str, str, str, str | None]


def canonical_rows(update: BlacklistUpdate | Mapping[str, Any]) -> list[Row]:
    """An update's entries as they are signed, sorted by card number.

    Each time is turned into text once here; :meth:`Cards.apply` stores the same
    rows, so a 10,000-card delta is not formatted twice.
    """
    rows: list[Row]
    if isinstance(update, BlacklistUpdate):
        rows = [(e.card_number, e.reason, _utc(e.listed_at), e.replaced_by) for e in update.added]
    else:
        rows = [
            (e["card_number"], e["reason"], _utc(e["listed_at"]), e.get("replaced_by"))
            for e in update.get("added", ())
        ]
    rows.sort(key=itemgetter(0))  # stable: what signed_bytes always did
    return rows


def signed_bytes(
    update: BlacklistUpdate | Mapping[str, Any], rows: list[Row] | None = None
) -> bytes:
    """What the source signs: every field of the update but the signature.

    ``rows`` are the update's :func:`canonical_rows`, when the caller has them already.
    """
    if rows is None:
        rows = canonical_rows(update)
    if isinstance(update, BlacklistUpdate):
        head: Mapping[str, Any] = {
            "source": update.source,
            "kind": update.kind,
            "version": update.version,
            "base_version": update.base_version,
            "issued_at": update.issued_at,
        }
        removed = sorted(update.removed)
    else:
        head = update
        removed = sorted(update.get("removed", ()))
    # keys in sorted order and no sort_keys: the same text, without sorting every entry
    body = {
        "added": [
            {"card_number": card, "listed_at": when, "replaced_by": replacement, "state": state}
            for card, state, when, replacement in rows
        ],
        "base_version": head.get("base_version"),
        "issued_at": _utc(head["issued_at"]),
        "kind": head["kind"],
        "removed": removed,
        "source": head["source"],
        "version": head["version"],
    }
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    return DOMAIN + text.encode("utf-8")


def parse_update(data: bytes | str | Mapping[str, Any]) -> BlacklistUpdate:
    """An update from its JSON (or parsed JSON); CardListError (``malformed``) if it is not one.

    The error names the first field at fault, never its value.
    """
    try:
        if isinstance(data, bytes | str):
            return BlacklistUpdate.model_validate_json(data)
        return BlacklistUpdate.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "the update"
        raise CardListError(
            f"a list update is malformed at {where}: {first['msg']}",
            source=None,
            version=None,
            reason="malformed",
            hint="the previous list stays in force; report the feed's fault to its source",
        ) from None


def load_public_key(path: Path, *, source: str) -> PublicKey:
    """A source's public key from its PEM file; ConfigError names the source's key."""
    key_name = f"cards.list_keys.{source}"
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except OSError as exc:
        raise ConfigError(
            f"the list key of {source} cannot be read ({exc.strerror or type(exc).__name__})",
            key=key_name,
            hint="give the PEM file of the source's public key, readable by the service",
        ) from None
    except ValueError:
        raise ConfigError(
            f"the list key of {source} is not a PEM public key",
            key=key_name,
            hint="ask the issuer or bank for its list-signing public key in PEM",
        ) from None
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    raise ConfigError(
        f"the list key of {source} is a {type(key).__name__}, not Ed25519 or ECDSA P-256",
        key=key_name,
        hint="lists are signed with Ed25519 or ECDSA P-256",
    )


def verify_update(update: BlacklistUpdate, key: PublicKey) -> list[Row]:
    """Check the update's signature; CardListError (``bad_signature``) if it fails.

    Returns the update's :func:`canonical_rows` (what was checked is what is stored).
    """
    try:
        signature = base64.b64decode(update.signature, validate=True)
    except (binascii.Error, ValueError):
        signature = b""
    rows = canonical_rows(update)
    message = signed_bytes(update, rows)
    try:
        if not signature:
            raise InvalidSignature
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, message)
        else:
            key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise CardListError(
            f"the list update {update.source} v{update.version} is not signed by its source",
            source=update.source,
            version=update.version,
            reason="bad_signature",
            hint="the previous list stays in force; check [cards] list_keys holds this "
            "source's current key, and report a forged list to the issuer",
        ) from None
    return rows

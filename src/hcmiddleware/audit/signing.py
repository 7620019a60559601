"""Checkpoint signatures: the terminal's Ed25519 key, key IDs, signing and checking.

A key file holds one key on one line: the 32-byte Ed25519 private key (or, for a
``.pub`` file, public key) in base64 — what ``hcm init`` writes. A PEM file (``openssl
genpkey -algorithm ed25519``) is read too. A key's ID is the first 16 hex digits of the
SHA-256 of its raw public key; every checkpoint names the key that signed it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from hcmiddleware.models import AuditCheckpoint

__all__ = [
    "check_signature",
    "key_id",
    "new_key_pair",
    "private_key_from_text",
    "public_key_from_file",
    "public_key_from_text",
    "sign",
]

_RAW = serialization.Encoding.Raw


def _raw_key(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{what} is neither PEM nor base64") from None
    if len(raw) != 32:
        raise ValueError(f"{what} holds {len(raw)} bytes; an Ed25519 key has 32")
    return raw


def private_key_from_text(text: str) -> Ed25519PrivateKey:
    """The Ed25519 private key in ``text`` (base64 of 32 bytes, or PEM); ValueError if not."""
    if text.lstrip().startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(text.encode("ascii"), password=None)
        except (ValueError, TypeError, UnicodeEncodeError):
            raise ValueError("the PEM text is not an unencrypted private key") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"the key is {type(key).__name__}, not Ed25519")
        return key
    return Ed25519PrivateKey.from_private_bytes(_raw_key(text, "the signing key"))


def public_key_from_text(text: str) -> Ed25519PublicKey:
    """The Ed25519 public key in ``text`` (base64 of 32 bytes, or PEM); ValueError if not."""
    if text.lstrip().startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(text.encode("ascii"))
        except (ValueError, TypeError, UnicodeEncodeError):
            raise ValueError("the PEM text is not a public key") from None
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError(f"the key is {type(key).__name__}, not Ed25519")
        return key
    return Ed25519PublicKey.from_public_bytes(_raw_key(text, "the public key"))


def public_key_from_file(path: Path) -> Ed25519PublicKey:
    """The public key in the file at ``path``; ValueError if it cannot be read or used."""
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ValueError(f"cannot be read ({reason})") from None
    return public_key_from_text(text)


def key_id(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """The key's ID: 16 hex digits of SHA-256 over its raw public key."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(_RAW, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def new_key_pair() -> tuple[str, str]:
    """A fresh key pair as the two lines of text key files hold: (private, public)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(_RAW, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    public = key.public_key().public_bytes(_RAW, serialization.PublicFormat.Raw)
    return base64.b64encode(private).decode(), base64.b64encode(public).decode()


def sign(checkpoint: AuditCheckpoint, key: Ed25519PrivateKey) -> AuditCheckpoint:
    """``checkpoint`` with ``key_id`` set and signed by ``key``."""
    named = checkpoint.model_copy(update={"key_id": key_id(key), "signature": None})
    signature = base64.b64encode(key.sign(named.signed_bytes())).decode()
    return named.model_copy(update={"signature": signature})


def check_signature(
    checkpoint: AuditCheckpoint, keys: Mapping[str, Ed25519PublicKey]
) -> str | None:
    """What is wrong with the checkpoint's signature, or ``None`` if it is good.

    An unsigned checkpoint is not checked here (the caller decides what it means).
    """
    if checkpoint.signature is None:
        return None
    if checkpoint.key_id is None:
        return "signed, but names no key"
    public = keys.get(checkpoint.key_id)
    if public is None:
        return f"signed by key {checkpoint.key_id}, which is not this terminal's nor in verify_keys"
    try:
        signature = base64.b64decode(checkpoint.signature, validate=True)
        public.verify(signature, checkpoint.signed_bytes())
    except (binascii.Error, ValueError, InvalidSignature):
        return f"the signature does not verify with key {checkpoint.key_id}"
    return None

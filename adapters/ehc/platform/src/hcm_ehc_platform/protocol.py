"""The platform's wire format, shared by the client and the reference platform.

Every request and answer is one JSON object of strings over HTTP POST
(``<url>/api/<method>``)::

    {"app_id": "...", "method": "verify_code", "timestamp": "20261203143000",
     "nonce": "32 hex", "iv": "32 hex", "biz_content": "<base64 of SM4-CBC>",
     "sign": "<64 upper-case hex>"}

* ``biz_content``: the call's parameters (or the answer's data) as UTF-8 JSON,
  PKCS#7-padded and encrypted with SM4-CBC under the app's 16-byte data key and ``iv``.
* ``sign``: SM3 over the parameters other than ``sign``, sorted by name, empty ones
  left out, written ``k1=v1&k2=v2&…`` and followed by ``&key=<app secret>``; upper-case
  hex. The platform signs its answers the same way (with ``code`` and ``message``
  among the parameters), so the client knows an answer is the platform's.
* ``timestamp`` (UTC, ``yyyyMMddHHmmss``) must be within five minutes of the
  platform's clock, and a ``nonce`` is accepted once: a recorded request cannot be
  sent again.

An answer carries ``code`` (``"0"`` for success, else one of :data:`ERRORS`) and
``message``; data only on success.
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = [
    "ERRORS",
    "REFUSALS",
    "ProtocolError",
    "decrypt",
    "encrypt",
    "envelope",
    "open_envelope",
    "sign",
    "timestamp",
]

#: the platform's error codes
ERRORS = {
    "E_APP": "unknown app ID",
    "E_SIGN": "the request's signature is wrong",
    "E_TIME": "the request's timestamp is too far from the platform's clock",
    "E_NONCE": "the request was sent before (its nonce is used)",
    "E_FORMAT": "the request cannot be read",
    "E_METHOD": "no such method",
    "E_PARAM": "a parameter is missing or wrong",
    "E_NOT_FOUND": "no such e-card",
    "E_CLOSED": "the e-card is closed",
    "E_CODE_FORMAT": "not an e-card code",
    "E_CODE_ISSUER": "the code was not issued by this platform",
    "E_CODE_SIGNATURE": "the code's signature is wrong: forged or altered",
    "E_CODE_EXPIRED": "the code has expired",
    "E_CODE_USED": "the code was used at this terminal for this step",
}

#: a refused code's error code → the refusal reason hcmiddleware reports
REFUSALS = {
    "E_CODE_FORMAT": "format",
    "E_CODE_ISSUER": "unknown_issuer",
    "E_CODE_SIGNATURE": "signature",
    "E_CODE_EXPIRED": "expired",
    "E_CODE_USED": "replayed",
    "E_CLOSED": "revoked",
    "E_NOT_FOUND": "unknown_card",
}

#: how far a request's timestamp may be from the platform's clock (seconds)
MAX_CLOCK_SKEW = 300


class ProtocolError(ValueError):
    """An envelope that cannot be trusted or read; ``code`` is the platform's error code."""

    def __init__(self, code: str, message: str | None = None) -> None:
        super().__init__(message or ERRORS.get(code, code))
        self.code = code


def timestamp(moment: datetime | None = None) -> str:
    """``yyyyMMddHHmmss`` in UTC."""
    return (moment or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%d%H%M%S")


def sign(params: Mapping[str, str], secret: str) -> str:
    """SM3 over the sorted non-empty parameters and the app secret (upper-case hex)."""
    text = "&".join(f"{k}={params[k]}" for k in sorted(params) if k != "sign" and params[k])
    digest = hashes.Hash(hashes.SM3())
    digest.update(f"{text}&key={secret}".encode())
    return digest.finalize().hex().upper()


def encrypt(key: bytes, data: Mapping[str, Any]) -> tuple[str, str]:
    """``(biz_content, iv)``: the data as JSON, SM4-CBC with a fresh IV."""
    iv = secrets.token_bytes(16)
    padder = padding.PKCS7(128).padder()
    plain = padder.update(json.dumps(data, ensure_ascii=False).encode()) + padder.finalize()
    encryptor = Cipher(algorithms.SM4(key), modes.CBC(iv)).encryptor()
    sealed = encryptor.update(plain) + encryptor.finalize()
    return base64.b64encode(sealed).decode("ascii"), iv.hex()


def decrypt(key: bytes, biz_content: str, iv: str) -> dict[str, Any]:
    """The data of an envelope.

    :raises ProtocolError: ``E_FORMAT``: not base64, bad padding, not a JSON object.
    """
    try:
        sealed = base64.b64decode(biz_content, validate=True)
        vector = bytes.fromhex(iv)
        decryptor = Cipher(algorithms.SM4(key), modes.CBC(vector)).decryptor()
        padded = decryptor.update(sealed) + decryptor.finalize()
        unpadder = padding.PKCS7(128).unpadder()
        data = json.loads(unpadder.update(padded) + unpadder.finalize())
    except (ValueError, TypeError):
        raise ProtocolError("E_FORMAT", "the encrypted content cannot be read") from None
    if not isinstance(data, dict):
        raise ProtocolError("E_FORMAT", "the content is not a JSON object")
    return data


def envelope(
    fields: Mapping[str, str], data: Mapping[str, Any] | None, *, secret: str, key: bytes
) -> dict[str, str]:
    """A signed envelope of ``fields`` with ``data`` encrypted (none: no content)."""
    out = {k: str(v) for k, v in fields.items()}
    if data is not None:
        out["biz_content"], out["iv"] = encrypt(key, data)
    out["sign"] = sign(out, secret)
    return out


def open_envelope(raw: bytes, *, secret: str, key: bytes) -> tuple[dict[str, str], dict[str, Any]]:
    """``(fields, data)`` of a received envelope whose signature is right.

    :raises ProtocolError: ``E_FORMAT`` (not an object of strings) or ``E_SIGN``.
    """
    try:
        fields = json.loads(raw)
    except ValueError:
        raise ProtocolError("E_FORMAT", "not JSON") from None
    if not isinstance(fields, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in fields.items()
    ):
        raise ProtocolError("E_FORMAT", "not an object of strings")
    if not hmac.compare_digest(fields.get("sign", ""), sign(fields, secret)):
        raise ProtocolError("E_SIGN")
    data = (
        decrypt(key, fields["biz_content"], fields.get("iv", "")) if "biz_content" in fields else {}
    )
    return fields, data

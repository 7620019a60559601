"""The text inside an e-card QR code: parsing (strict) and making.

Two kinds, both starting with the 64-hex e-card ID and a kind digit:

* **static** — ``<ID>:1`` or ``<ID>:1::<area code>``, as printed by the issuers' apps;
  the same every time, so it is accepted only with a second factor.
* **dynamic** — ``<ID>:2:<key id>:<issued>:<expires>:<nonce>:<signature>``, our own
  format for offline checks: ``issued`` and ``expires`` are Unix seconds (decimal),
  ``nonce`` 16 hex digits, ``signature`` 128 hex digits (64 bytes) over the UTF-8 bytes
  of everything before ``:<signature>``. Every character is in the QR code's
  alphanumeric set (digits, upper-case letters, ``:``), so a code fits a small symbol.

Parsing checks the shape only and never echoes the text in an error (it holds an
identifier). A dynamic code must be exactly as issued — upper-case hex, no leading
zeros, nothing around it but white space — because its signature covers its bytes:
any other spelling is refused rather than normalised into something never signed.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from hcmiddleware.errors import EhcFormatError

__all__ = [
    "MAX_TEXT",
    "DynamicCode",
    "StaticCode",
    "is_ecard_id",
    "make_dynamic",
    "new_ecard_id",
    "normalize_ecard_id",
    "parse_code",
    "static_text",
]

#: longest text looked at; a dynamic code is 242 characters with a 16-character key id
MAX_TEXT = 512

_ID = re.compile(r"[0-9A-Fa-f]{64}")
_KEY_ID = re.compile(r"[0-9A-Z][0-9A-Z-]{0,15}")
_TIME = re.compile(r"0|[1-9][0-9]{0,10}")
_NONCE = re.compile(r"[0-9A-F]{16}")
_SIGNATURE = re.compile(r"[0-9A-F]{128}")
_AREA = re.compile(r"[0-9]{1,12}")


def is_ecard_id(value: str) -> bool:
    """Is ``value`` an e-card ID (64 hex digits, either case)?"""
    return len(value) == 64 and _ID.fullmatch(value) is not None


def normalize_ecard_id(value: str) -> str:
    """An e-card ID in its canonical form (upper-case hex).

    :raises EhcFormatError: not 64 hex digits (reason ``card_id``).
    """
    text = value.strip() if isinstance(value, str) else ""
    if not is_ecard_id(text):
        raise EhcFormatError(
            "an e-card ID is 64 hexadecimal digits", reason="card_id",
            hint="copy the e-card ID again from the issuer's record",
        )  # fmt: skip
    return text.upper()


def new_ecard_id() -> str:
    """A fresh random e-card ID (the issuer's side)."""
    return secrets.token_hex(32).upper()


@dataclass(frozen=True)
class StaticCode:
    """A static code: the e-card ID (upper-case) and the area code, if the code had one."""

    ecard_id: str = field(repr=False)
    area_code: str | None = None

    kind = "static"


@dataclass(frozen=True)
class DynamicCode:
    """A dynamic code as parsed; :attr:`signed` is the exact byte string the signature covers."""

    ecard_id: str = field(repr=False)
    key_id: str
    issued: int
    expires: int
    nonce: str
    signature: bytes = field(repr=False)
    signed: bytes = field(repr=False)

    kind = "dynamic"

    @property
    def issued_at(self) -> datetime:
        """Issue time (aware, UTC)."""
        return datetime.fromtimestamp(self.issued, UTC)

    @property
    def expires_at(self) -> datetime:
        """Expiry (aware, UTC)."""
        return datetime.fromtimestamp(self.expires, UTC)


def _bad(message: str, reason: str) -> EhcFormatError:
    return EhcFormatError(message, reason=reason)


def parse_code(text: str | bytes) -> StaticCode | DynamicCode:
    """Parse the text of a scanned code; only the shape is checked here.

    :raises EhcFormatError: the text is not an e-card code; ``reason`` says which part.
    """
    if isinstance(text, bytes | bytearray):
        if len(text) > MAX_TEXT:
            raise _bad(f"the code is longer than {MAX_TEXT} characters", "too_long")
        try:
            text = bytes(text).decode("ascii")
        except UnicodeDecodeError:
            raise _bad("the code holds characters no e-card code has", "characters") from None
    if not isinstance(text, str):
        raise _bad("the code must be text", "characters")
    if len(text) > MAX_TEXT:
        raise _bad(f"the code is longer than {MAX_TEXT} characters", "too_long")
    text = text.strip(" \t\r\n")
    if not text:
        raise _bad("nothing was scanned", "empty")
    if not text.isascii() or not text.isprintable():
        raise _bad("the code holds characters no e-card code has", "characters")
    parts = text.split(":")
    if len(parts) < 2 or parts[1] not in {"1", "2"}:
        if not is_ecard_id(parts[0]):
            raise _bad("this is not an e-card code", "kind")
        raise _bad("the code is neither a static (:1) nor a dynamic (:2) e-card code", "kind")
    if not is_ecard_id(parts[0]):
        raise _bad("the e-card ID in the code is not 64 hexadecimal digits", "card_id")
    if parts[1] == "1":
        return _static(parts)
    return _dynamic(text, parts)


def _static(parts: list[str]) -> StaticCode:
    ecard_id = parts[0].upper()
    if len(parts) == 2:
        return StaticCode(ecard_id)
    if len(parts) == 4 and parts[2] == "" and _AREA.fullmatch(parts[3]):
        return StaticCode(ecard_id, area_code=parts[3])
    raise _bad("a static code is <ID>:1 or <ID>:1::<area code>", "area_code")


def _dynamic(text: str, parts: list[str]) -> DynamicCode:
    if len(parts) != 7:
        raise _bad(
            "a dynamic code has seven parts: ID, 2, key id, issued, expires, nonce, signature",
            "kind",
        )
    ecard_id, _kind, key_id, issued, expires, nonce, signature = parts
    if ecard_id != ecard_id.upper():
        raise _bad("the e-card ID of a dynamic code is upper-case", "card_id")
    if not _KEY_ID.fullmatch(key_id):
        raise _bad("the key id is 1-16 upper-case letters, digits or dashes", "key_id")
    if not (_TIME.fullmatch(issued) and _TIME.fullmatch(expires)):
        raise _bad("the times are Unix seconds in decimal", "time")
    if not _NONCE.fullmatch(nonce):
        raise _bad("the nonce is 16 upper-case hexadecimal digits", "nonce")
    if not _SIGNATURE.fullmatch(signature):
        raise _bad("the signature is 128 upper-case hexadecimal digits", "signature")
    return DynamicCode(
        ecard_id=ecard_id,
        key_id=key_id,
        issued=int(issued),
        expires=int(expires),
        nonce=nonce,
        signature=bytes.fromhex(signature),
        signed=text[: -(len(signature) + 1)].encode("ascii"),
    )


def static_text(ecard_id: str, area_code: str | None = None) -> str:
    """The static code of an e-card ID."""
    ecard_id = normalize_ecard_id(ecard_id)
    if area_code is None:
        return f"{ecard_id}:1"
    if not _AREA.fullmatch(area_code):
        raise _bad("an area code is 1-12 digits", "area_code")
    return f"{ecard_id}:1::{area_code}"


def make_dynamic(
    ecard_id: str,
    *,
    key_id: str,
    issued: int,
    expires: int,
    sign: Callable[[bytes], bytes],
    nonce: str | None = None,
) -> str:
    """The text of a dynamic code, signed with ``sign(message) -> 64 bytes``.

    The issuer's side (the reference platform, ``hcm ehc issue``, the tests).
    """
    ecard_id = normalize_ecard_id(ecard_id)
    if not _KEY_ID.fullmatch(key_id):
        raise _bad("the key id is 1-16 upper-case letters, digits or dashes", "key_id")
    if not (0 <= issued <= expires < 10**11):
        raise _bad("issued must not be after expires", "time")
    nonce = nonce if nonce is not None else secrets.token_hex(8).upper()
    if not _NONCE.fullmatch(nonce):
        raise _bad("the nonce is 16 upper-case hexadecimal digits", "nonce")
    body = f"{ecard_id}:2:{key_id}:{issued}:{expires}:{nonce}"
    signature = sign(body.encode("ascii"))
    if not isinstance(signature, bytes) or len(signature) != 64:
        raise ValueError("a signature of e-card codes is 64 bytes")
    return f"{body}:{signature.hex().upper()}"

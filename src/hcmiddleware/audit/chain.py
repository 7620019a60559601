"""The chain's arithmetic: hash functions, the canonical encoding of an entry, checks.

An entry's hash is ``H(prev_hash ‖ canonical)``, where ``prev_hash`` is the hash of the
entry before (32 zero bytes for the first) and ``canonical`` is the UTF-8 text of these
fields joined by U+001F (unit separator), an absent field written as U+001E::

    seq, at, action, actor, subject, outcome, user, role, terminal, details

``at`` is naive UTC as ``YYYY-MM-DD HH:MM:SS.ffffff``; ``details`` is the stored
canonical JSON (sorted keys, no spaces, non-ASCII kept). No field may hold a character
below U+0020, so the encoding is unambiguous. The database builds the same text from
the stored columns when the chain is verified (:func:`canonical_sql`), which is what
makes verification fast.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Final

from hcmiddleware.errors import AuditInputError
from hcmiddleware.gb11643 import id_number_valid

__all__ = [
    "ALGORITHMS",
    "GENESIS",
    "canonical",
    "canonical_details",
    "canonical_sql",
    "check_fields",
    "constructor",
    "digest",
    "format_at",
]

#: the hash functions a chain may use (``[audit] hash``)
ALGORITHMS: Final = ("sha256", "sm3")
#: the ``prev_hash`` of the first entry
GENESIS: Final = bytes(32)
SEP: Final = "\x1f"
ABSENT: Final = "\x1e"

#: fields and their widths (the table's columns)
WIDTHS: Final = {
    "action": 64,
    "actor": 64,
    "subject": 64,
    "user": 64,
    "role": 32,
    "terminal": 64,
}
MAX_DETAIL = 256
MAX_DETAILS = 2000

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DETAIL_KEY = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
#: a mainland mobile number, alone in a field
_MOBILE = re.compile(r"^\+?(?:86)?1[3-9]\d{9}$")


def _sm3_hashlib() -> Callable[[bytes], Any] | None:
    """OpenSSL's SM3 through hashlib, or ``None`` where this OpenSSL lacks it.

    A fresh object is copied from a blank one: ``hashlib.new("sm3", …)`` looks the
    function up by name on every call, which costs more than hashing an entry.
    """
    try:
        blank = hashlib.new("sm3")
    except ValueError:
        return None

    def sm3(data: bytes) -> Any:
        h = blank.copy()
        h.update(data)
        return h

    return sm3


def _sm3() -> Callable[[bytes], bytes]:
    fast = _sm3_hashlib()
    if fast is None:  # this OpenSSL has no SM3: cryptography's own
        from cryptography.hazmat.primitives import hashes

        def sm3(data: bytes) -> bytes:
            h = hashes.Hash(hashes.SM3())
            h.update(data)
            return h.finalize()

        return sm3

    def sm3_hashlib(data: bytes) -> bytes:
        return bytes(fast(data).digest())

    return sm3_hashlib


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


_DIGESTS: dict[str, Callable[[bytes], bytes]] = {"sha256": _sha256}


def constructor(algorithm: str) -> Callable[[bytes], Any]:
    """A hash object maker (``.digest()`` on its result) for the verifier's inner loop:
    hashlib's own where this OpenSSL has the function, one call less per entry."""
    if algorithm == "sha256":
        return hashlib.sha256
    if algorithm == "sm3":
        fast = _sm3_hashlib()
        if fast is not None:
            return fast
        one_shot = digest("sm3")

        class _Sm3:
            def __init__(self, data: bytes) -> None:
                self._digest = one_shot(data)

            def digest(self) -> bytes:
                return self._digest

        return _Sm3
    raise ValueError(f"unknown hash {algorithm!r}; known: {', '.join(ALGORITHMS)}")


def digest(algorithm: str) -> Callable[[bytes], bytes]:
    """The one-shot hash function named ``algorithm`` (``sha256`` or ``sm3``)."""
    if algorithm not in _DIGESTS:
        if algorithm != "sm3":
            raise ValueError(f"unknown hash {algorithm!r}; known: {', '.join(ALGORITHMS)}")
        _DIGESTS["sm3"] = _sm3()
    return _DIGESTS[algorithm]


def format_at(at: datetime) -> str:
    """``at`` (naive UTC) as the chain writes it, to the microsecond:
    ``YYYY-MM-DD HH:MM:SS.ffffff`` (SQLAlchemy's own text form of a time on SQLite)."""
    return at.isoformat(" ", "microseconds")


def canonical_details(details: Mapping[str, str]) -> str:
    """The details as stored and hashed: JSON, sorted keys, no spaces, non-ASCII kept."""
    return json.dumps(dict(details), ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def canonical(
    seq: int,
    at: datetime | str,
    action: str,
    actor: str,
    subject: str | None,
    outcome: str,
    user: str | None,
    role: str | None,
    terminal: str | None,
    details: str,
) -> bytes:
    """The bytes an entry's hash covers (after the previous hash); ``at`` a time, or
    already in :func:`format_at`'s form."""
    return SEP.join(
        (
            str(seq),
            at if isinstance(at, str) else format_at(at),
            action,
            actor,
            ABSENT if subject is None else subject,
            outcome,
            ABSENT if user is None else user,
            ABSENT if role is None else role,
            ABSENT if terminal is None else terminal,
            details,
        )
    ).encode("utf-8")


def canonical_sql(dialect: str) -> str:
    """A SELECT of ``seq, canonical text, prev_hash, hash`` in the database's own SQL.

    The database joins the columns exactly as :func:`canonical` does, so the verifier
    only hashes one string per row. Bound parameters: ``lo`` and ``hi`` (seq range).
    """
    # the separators as literals (the raw characters between quotes): a function call
    # per field per row costs the database more than the joining itself
    sep, absent = f"'{SEP}'", f"'{ABSENT}'"
    if dialect == "postgresql":
        seq = "seq::text"
        at = "to_char(at, 'YYYY-MM-DD HH24:MI:SS.US')"
        params = ("%(lo)s", "%(hi)s")
    elif dialect == "sqlite":
        seq = "CAST(seq AS TEXT)"
        at = "at"  # stored as text by SQLAlchemy, in this very form
        params = ("?", "?")
    else:  # pragma: no cover - only the two databases the product supports
        raise ValueError(f"no canonical SQL for {dialect}")
    fields = [
        seq,
        at,
        "action",
        "actor",
        f"coalesce(subject, {absent})",
        "outcome",
        f"coalesce(user_id, {absent})",
        f"coalesce(role, {absent})",
        f"coalesce(terminal, {absent})",
        "details",
    ]
    text = f" || {sep} || ".join(fields)
    return (  # built from the constants above only; the range is bound
        f"SELECT seq, {text}, prev_hash, hash FROM audit_log "  # noqa: S608
        f"WHERE seq >= {params[0]} AND seq <= {params[1]} ORDER BY seq"
    )


def check_fields(fields: Mapping[str, str | None], details: Mapping[str, str]) -> None:
    """Refuse what the log must not hold: control characters, overlong fields, personal data.

    :raises AuditInputError: naming the field; its value is never repeated.
    """
    for name, value in fields.items():
        if value is None:
            continue
        if not isinstance(value, str):
            raise AuditInputError(f"audit field {name} is a {type(value).__name__}, not text")
        if len(value) > WIDTHS[name]:
            raise AuditInputError(f"audit field {name} is longer than {WIDTHS[name]} characters")
        if _CONTROL.search(value):
            raise AuditInputError(f"audit field {name} holds a control character")
        _no_personal_data(name, value)
    for key, value in details.items():
        if not isinstance(key, str) or not _DETAIL_KEY.match(key):
            raise AuditInputError(
                f"audit detail name {key!r} is not a short lower-case word",
                hint="name details like 'reader' or 'queue_number'",
            )
        if not isinstance(value, str):
            raise AuditInputError(
                f"audit detail {key} is a {type(value).__name__}, not text",
                hint="pass every detail as a string, e.g. count=str(n)",
            )
        if len(value) > MAX_DETAIL:
            raise AuditInputError(f"audit detail {key} is longer than {MAX_DETAIL} characters")
        _no_personal_data(f"detail {key}", value)


def _no_personal_data(name: str, value: str) -> None:
    if (len(value) == 18 and id_number_valid(value)) or _MOBILE.match(value):
        raise AuditInputError(
            f"audit {name} looks like an ID number or a phone number",
            hint="audit entries hold opaque IDs (resident ID, transaction ID) only; "
            "pass the resident's ID from the index instead",
        )

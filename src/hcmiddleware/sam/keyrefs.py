"""What each key reference may be used for (docs/card-spec.md, "Key references").

A SAM must not let one key serve two purposes: a SAM that produced an
external-authentication cryptogram with the internal-authentication key ``21`` would
hand any terminal the answer a genuine card gives, and cloned cards would pass. The
software SAM and the SAM card both ask this table before using a key, so a change of the
key plan is made here.

| refs | key | usages |
|---|---|---|
| 01-04 | read keys of DDF1, DF01, DF02, DF03 | external authentication |
| 11-14 | update keys of the same DFs | external authentication, secure messaging |
| 21 | internal-authentication key | checking the card's internal authentication |
"""

from __future__ import annotations

import enum

from hcmiddleware.errors import SamInputError

__all__ = ["INTERNAL_AUTH_KEY", "READ_KEYS", "UPDATE_KEYS", "KeyUsage", "require", "usages"]


class KeyUsage(enum.Enum):
    """A purpose a SAM may use a card key for."""

    EXTERNAL_AUTH = "external authentication"
    SECURE_MESSAGING = "secure messaging"
    INTERNAL_AUTH = "internal authentication"


#: Read keys of DDF1, DF01, DF02, DF03.
READ_KEYS = frozenset({0x01, 0x02, 0x03, 0x04})
#: Update keys of DDF1, DF01, DF02, DF03 (session keys are derived from them).
UPDATE_KEYS = frozenset({0x11, 0x12, 0x13, 0x14})
#: The card's internal-authentication key.
INTERNAL_AUTH_KEY = 0x21


def usages(ref: int) -> frozenset[KeyUsage]:
    """The usages allowed for key ``ref``; empty for a reference outside the plan."""
    if ref in READ_KEYS:
        return frozenset({KeyUsage.EXTERNAL_AUTH})
    if ref in UPDATE_KEYS:
        return frozenset({KeyUsage.EXTERNAL_AUTH, KeyUsage.SECURE_MESSAGING})
    if ref == INTERNAL_AUTH_KEY:
        return frozenset({KeyUsage.INTERNAL_AUTH})
    return frozenset()


def require(ref: int, usage: KeyUsage) -> None:
    """Raise :class:`SamInputError` unless key ``ref`` may be used for ``usage``."""
    if usage not in usages(ref):
        allowed = ", ".join(sorted(u.value for u in usages(ref))) or "nothing in the key plan"
        raise SamInputError(f"key {ref:02X} cannot be used for {usage.value} (it serves {allowed})")

"""Canonical forms of identity values, shared by validation, blind indexes and matching.

Two records of the same person must reach the same bytes before they are hashed, or an
exact lookup misses: full-width digits typed on a Chinese IME, a stray ideographic space,
``+86`` in front of a phone number. Everything here is pure and deterministic.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = [
    "normalize_address",
    "normalize_code",
    "normalize_display_name",
    "normalize_name",
    "normalize_phone",
    "normalize_text",
]

# Ethnic-minority names separate their parts with a middle dot, typed in many look-alikes.
_NAME_DOTS = re.compile(r"[\u00B7\u2022\u2027\u2219\u22C5\u30FB\uFF0E\u318D.]")
_SPACES = re.compile(r"\s+")
_CJK_GAP = re.compile(r"(?<=[\u3400-\u9fff\uf900-\ufaff]) (?=[\u3400-\u9fff\uf900-\ufaff])")


def normalize_text(value: str) -> str:
    """NFKC (full-width to half-width), then collapse runs of white space to one space."""
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", value)).strip()


def normalize_display_name(value: str) -> str:
    """A name as kept and shown: :func:`normalize_text`, without the spaces typed between
    Chinese characters (张 秀 英 is 张秀英; a Latin name keeps its spaces)."""
    return _CJK_GAP.sub("", normalize_text(value))


def normalize_code(value: str) -> str:
    """An identifier as typed → canonical: half-width, no spaces or dashes, upper case."""
    text = unicodedata.normalize("NFKC", value)
    return _SPACES.sub("", text).replace("-", "").upper()


def normalize_name(value: str) -> str:
    """A person's name → canonical: half-width, no spaces, one kind of middle dot.

    Latin letters are upper-cased so that ``Li Lei`` and ``LI LEI`` agree; Chinese names
    keep their characters (simplified/traditional folding is a matching concern, not an
    identity one).
    """
    text = normalize_text(value)
    text = _NAME_DOTS.sub("\u00b7", text)
    return text.replace(" ", "").upper()


def normalize_phone(value: str) -> str:
    """A phone number → its digits, without the +86 / 0086 country prefix."""
    digits = "".join(ch for ch in unicodedata.normalize("NFKC", value) if ch.isdigit())
    if digits.startswith("0086"):
        digits = digits[4:]
    elif digits.startswith("86") and len(digits) == 13:
        digits = digits[2:]
    return digits


def normalize_address(value: str) -> str:
    """An address → half-width text with single spaces (matching does the rest)."""
    return normalize_text(value)

"""The check character of a resident ID number (GB 11643-1999, ISO 7064 MOD 11-2).

Kept apart from :mod:`hcmiddleware.empi.identity` so that the flows can check a
presented document without importing the resident index and its numerical libraries.
"""

from __future__ import annotations

from hcmiddleware.errors import IdNumberFormatError

__all__ = ["check_character", "id_number_valid"]

_WEIGHTS = tuple(pow(2, 17 - i, 11) for i in range(17))
_CHECK_CHARS = "10X98765432"


def check_character(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character of the first 17 digits."""
    if len(first17) != 17 or not first17.isdigit() or not first17.isascii():
        raise IdNumberFormatError("the body of an ID number must be 17 digits", field="id_number")
    total = sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True))
    return _CHECK_CHARS[total % 11]


def id_number_valid(value: str) -> bool:
    """Whether ``value`` is 17 digits and the right check character (``x`` taken as ``X``).

    Only the form and the check character: the birth date and region are left to
    :func:`hcmiddleware.empi.identity.parse_id_number`.
    """
    if len(value) != 18 or not value[:17].isdigit() or not value[:17].isascii():
        return False
    return check_character(value[:17]) == value[17].upper()

"""Roles and what each may do and see (R-SEC-2): ``mw.access`` and ``mw.acting_as(caller)``.

See ``docs/access.md``: the roles, the categories of personal data, the configuration
(``[access]``), emergency access ("break glass"), and step-by-step opening.
"""

from __future__ import annotations

from hcmiddleware.access.caller import Caller
from hcmiddleware.access.policy import CARD_PART_CATEGORY, OPERATIONS, ROLES, Category, RoleGrant
from hcmiddleware.access.service import SYSTEM_ROLE, Access, Grant, Identification
from hcmiddleware.access.session import Session

__all__ = [
    "CARD_PART_CATEGORY",
    "OPERATIONS",
    "ROLES",
    "SYSTEM_ROLE",
    "Access",
    "Caller",
    "Category",
    "Grant",
    "Identification",
    "RoleGrant",
    "Session",
]

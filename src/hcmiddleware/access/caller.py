"""Who is calling: the signed-in user, the role they act in, and the terminal."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hcmiddleware.errors import AccessDeniedError

__all__ = ["Caller"]

_PRINTABLE = re.compile(r"^[^\x00-\x1f\x7f]+$")
_LIMITS = {"user": 64, "role": 32, "terminal": 64}


class Caller(BaseModel):
    """The identity a session acts with: ``user`` (an opaque ID, never a name),
    ``role`` (one of the configured roles) and ``terminal`` (where they sit).

    The HIS vouches for it: it signs the user in and passes the caller to
    ``mw.acting_as(caller)``, which checks the role and the terminal against
    ``[access]``. An empty, overlong or control-character field is refused with
    :class:`~hcmiddleware.errors.AccessDeniedError` (``reason`` ``caller``), never
    written to the audit log.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    user: str = Field(description="the signed-in user's opaque ID")
    role: str = Field(description="the role acted in: kiosk, registration, cashier, …")
    terminal: str = Field(description="the terminal the call comes from")

    @model_validator(mode="before")
    @classmethod
    def _well_formed(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        for name, limit in _LIMITS.items():
            value = data.get(name)
            if not isinstance(value, str) or not value.strip():
                raise AccessDeniedError(
                    f"the caller's {name} is missing or not text",
                    reason="caller",
                    hint="give user, role and terminal as non-empty text",
                )
            if len(value) > limit or not _PRINTABLE.match(value):
                raise AccessDeniedError(
                    f"the caller's {name} is longer than {limit} characters or holds "
                    "control characters",
                    reason="caller",
                    hint="give the user's opaque ID, a configured role and the terminal's ID",
                )
        return data

    def __str__(self) -> str:
        return f"{self.user} ({self.role}) at {self.terminal}"

"""The ward (R-WARD): wristbands, the bedside checks, alarms from active bands.

Everything is reached through ``middleware.ward`` (:class:`~hcmiddleware.ward.service.Ward`);
see ``docs/ward.md``. This package keeps its modules apart so that the configuration can
import :mod:`hcmiddleware.ward.settings` without the database or the device parts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hcmiddleware.ward.service import Ward

__all__ = ["Ward"]


def __getattr__(name: str) -> Any:
    if name == "Ward":
        from hcmiddleware.ward.service import Ward

        return Ward
    raise AttributeError(name)

"""HL7 v2.5 over MLLP HIS adapter for hcmiddleware (entry point ``his-hl7``).

Enable it with ``[plugins] enabled = ["his-hl7"]`` and a ``[plugins.his-hl7]`` section
(:class:`Hl7HisSettings`); the message mapping is in the project's docs/his.md.
"""

from __future__ import annotations

from hcm_his_hl7.adapter import NAME, Hl7His, Hl7HisSettings
from hcm_his_hl7.client import MllpClient, RetryPolicy

__all__ = ["NAME", "Hl7His", "Hl7HisSettings", "MllpClient", "RetryPolicy"]

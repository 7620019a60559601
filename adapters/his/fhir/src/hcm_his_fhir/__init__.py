"""FHIR R4 REST HIS adapter for hcmiddleware (entry point ``his-fhir``).

Enable it with ``[plugins] enabled = ["his-fhir"]`` and a ``[plugins.his-fhir]`` section
(:class:`FhirHisSettings`); the resource mapping is in the project's docs/his.md.
"""

from __future__ import annotations

from hcm_his_fhir.adapter import NAME, FhirHis, FhirHisSettings, FhirSystems
from hcm_his_fhir.client import FhirClient, RetryPolicy, validate

__all__ = [
    "NAME",
    "FhirClient",
    "FhirHis",
    "FhirHisSettings",
    "FhirSystems",
    "RetryPolicy",
    "validate",
]

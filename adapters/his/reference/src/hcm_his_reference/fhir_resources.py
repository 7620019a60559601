"""FHIR R4 resources of the reference HIS: the store's records as JSON, and back."""

from __future__ import annotations

from email.message import Message
from typing import Any

from hcm_his_reference.store import HisFaultError, Store

__all__ = ["FhirRoutes"]


class FhirRoutes:
    """Routes FHIR REST requests to the store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def route(
        self, method: str, path: str, headers: Message, body: bytes
    ) -> tuple[int, dict[str, Any]]:
        """``(HTTP status, JSON body)`` for one request."""
        if path.rstrip("/").endswith("/metadata"):
            return 200, {
                "resourceType": "CapabilityStatement",
                "status": "active",
                "fhirVersion": "4.0.1",
                "kind": "instance",
                "format": ["json"],
                "date": "2026-01-01",
            }
        raise HisFaultError("not-supported", f"{method} {path} is not supported", status=404)

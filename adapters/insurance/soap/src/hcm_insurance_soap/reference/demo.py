"""The reference insurer as a peer of ``hcm demo`` (entry point group ``hcmiddleware.demo``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hcm_insurance_soap.reference import serve


def start_demo_peer(folder: Path, cardholder: Mapping[str, str]) -> dict[str, Any]:
    """Start the reference insurer on loopback (any free port) with its own ledger."""
    server = serve(Path(folder) / "reference-insurer-ledger.db")
    return {
        "plugin": "insurance-soap",
        "settings": {"wsdl": server.wsdl_url},
        "stop": server.stop,
        "note": f"reference insurer (SOAP) at {server.wsdl_url.rsplit('?', 1)[0]}",
    }

"""The reference bank as a peer of ``hcm demo`` (entry point group ``hcmiddleware.demo``).

The core's demo never imports an adapter: it asks every package that declares an
``hcmiddleware.demo`` entry point to start its peer, and enables the plugin with the
settings the peer returns.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hcm_bank_soap.reference import serve

#: The demo binds this bank card to the sample health card.
DEMO_BANK_CARD = "6222000000001234"


def start_demo_peer(folder: Path, cardholder: Mapping[str, str]) -> dict[str, Any]:
    """Start the reference bank on loopback with the sample card bound to an account.

    Returns the plugin to enable, its ``[plugins.<name>]`` settings and how to stop.
    """
    server = serve(Path(folder) / "reference-bank-ledger.db")
    ledger = server.service.ledger  # type: ignore[attr-defined]
    ledger.bind(cardholder["card_number"], DEMO_BANK_CARD, cardholder["id_number"])
    return {
        "plugin": "bank-soap",
        "settings": {"wsdl": server.wsdl_url},
        "stop": server.stop,
        "note": f"reference bank (SOAP) at {server.wsdl_url.rsplit('?', 1)[0]}",
    }

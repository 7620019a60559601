"""The ward's bands over MQTT as a peer of ``hcm demo`` (entry point group ``hcmiddleware.demo``).

When an MQTT broker answers at the demo's ``--broker`` (default 127.0.0.1:1883), the
ward-mqtt plugin is enabled on a topic prefix of the demo's own, and the device
simulator stands in for the patient's active band. Otherwise nothing is started and
the demo hands band events to the ward in-process (and says why).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hcm_ward_mqtt.simulator import Simulator


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return (host or "127.0.0.1", int(port))


def start_demo_peer(folder: Path, context: Mapping[str, str]) -> dict[str, Any]:
    """Connect a band simulator to the broker; without one, only say so."""
    broker = context.get("demo_broker", "127.0.0.1:1883")
    try:
        host, port = _address(broker)
    except ValueError:
        return {"note": f"--broker {broker!r} is not HOST:PORT: band events go in-process"}
    prefix = f"hcm-demo/{uuid.uuid4().hex[:8]}"
    band = Simulator(host, port, prefix=prefix, client_id=f"demo-band-{prefix[-8:]}")
    try:
        band.connect(timeout=2.0)
    except Exception as exc:  # no broker, or something else on the port
        band.close()
        return {
            "note": f"no MQTT broker at {host}:{port} ({type(exc).__name__}): band events "
            "go to the ward in-process"
        }
    return {
        "plugin": "ward-mqtt",
        "settings": {
            "host": host,
            "port": port,
            "prefix": prefix,
            "client_id": f"demo-ward-{prefix[-8:]}",
            "connect_timeout": 3.0,
        },
        "stop": band.close,
        "provides": {"band_device": band},
        "note": f"active bands over the MQTT broker at {host}:{port} (topics {prefix}/…)",
    }

"""The reference e-card platform as a peer of ``hcm demo`` (group ``hcmiddleware.demo``).

The platform issues the demo resident's e-card, signs its dynamic codes with SM2 and
answers online verification; the terminal also trusts its public key, so a code is
verified offline when the platform cannot be reached.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hcm_ehc_platform.reference.platform import ReferencePlatform


def _secret_file(path: Path, text: str) -> str:
    path.write_text(text, encoding="ascii")
    os.chmod(path, 0o600)
    return str(path)


def start_demo_peer(folder: Path, context: Mapping[str, str]) -> dict[str, Any]:
    """Start the platform on loopback; the adapter's settings and the issuer's key."""
    folder = Path(folder)
    platform = ReferencePlatform(folder / "reference-ehc-platform.db").start()
    keys = folder / "ehc-platform"
    keys.mkdir(mode=0o700, exist_ok=True)
    public = keys / f"{platform.key_id}.pub.pem"
    public.write_bytes(platform.public_pem())
    return {
        "plugin": "ehc-platform",
        "settings": {
            "url": platform.url,
            "app_id": platform.app.app_id,
            "app_secret": {"file": _secret_file(keys / "app-secret", platform.app.secret)},
            "data_key": {"file": _secret_file(keys / "data-key", platform.app.data_key.hex())},
            "issuer": platform.issuer,
        },
        "sections": {
            "ehc": {
                "keys": {
                    platform.key_id: {
                        "issuer": platform.issuer,
                        "algorithm": platform.algorithm,
                        "public_key": str(public),
                    }
                }
            }
        },
        "stop": platform.close,
        "note": f"reference e-card platform at {platform.url} ({platform.algorithm})",
    }

"""Find key material in captured output: every key in every form it could be written in."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Secret:
    """A value that must never be shown, with a label saying which one it is."""

    label: str
    value: bytes


def forms(value: bytes) -> dict[str, bytes]:
    """The ways a key could leak: hex (upper, lower, spaced), raw bytes, base64."""
    hexed = value.hex()
    spaced = " ".join(hexed[i : i + 2] for i in range(0, len(hexed), 2))
    return {
        "hex upper": hexed.upper().encode(),
        "hex lower": hexed.encode(),
        "spaced hex upper": spaced.upper().encode(),
        "spaced hex lower": spaced.encode(),
        "raw bytes": value,
        "base64": base64.b64encode(value).rstrip(b"="),
    }


def _as_bytes(text: str | bytes) -> list[bytes]:
    if isinstance(text, bytes):
        return [text]
    # Raw key bytes in a str show either as latin-1 code points or inside UTF-8.
    return [text.encode("utf-8", "surrogateescape"), text.encode("latin-1", "replace")]


def find_leaks(secrets: Iterable[Secret], outputs: dict[str, str | bytes]) -> list[str]:
    """``"<secret> as <form> in <output>"`` for every secret found in any output."""
    found = []
    blobs = {name: _as_bytes(text) for name, text in outputs.items()}
    for secret in secrets:
        for form, needle in forms(secret.value).items():
            for name, variants in blobs.items():
                if any(needle in blob for blob in variants):
                    found.append(f"{secret.label} as {form} in {name}")
    return found

"""Issuer key files: a PEM key pair per key id (``hcm ehc keygen``, the tests, the demo)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hcmiddleware.ehc.crypto import generate_private_key, load_private_key

__all__ = ["ehc_section", "key_paths", "write_key_pair"]


def key_paths(folder: Path, key_id: str) -> tuple[Path, Path]:
    """``(private, public)`` PEM paths of ``key_id`` in ``folder``."""
    stem = key_id.lower()
    return folder / f"ehc-{stem}.key.pem", folder / f"ehc-{stem}.pub.pem"


def write_key_pair(folder: Path, key_id: str, algorithm: str) -> tuple[Path, Path]:
    """Make a key pair and write it: the private key mode 600, the folder mode 700.

    An existing pair is left as it is (and returned), so a second call names the same
    keys; a private key file alone is refused rather than paired with a new public key.

    :raises FileExistsError: only one of the two files exists.
    """
    private, public = key_paths(folder, key_id)
    if private.exists() and public.exists():
        return private, public
    if private.exists() or public.exists():
        raise FileExistsError(f"only half of key {key_id}'s pair is in {folder}")
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = generate_private_key(algorithm)
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key.private_pem())
    public.write_bytes(key.public_key().public_pem())
    return private, public


def ehc_section(
    folder: Path,
    *,
    key_id: str = "TEST1",
    issuer: str = "TEST",
    algorithm: str = "sm2",
    sign: bool = True,
    **settings: Any,
) -> dict[str, Any]:
    """An ``[ehc]`` section trusting a key pair in ``folder`` (made on first call).

    With ``sign`` the section also signs with it (``[ehc.issuer]``). For tests, demos
    and a first installation; a site takes its issuers' public keys from them.
    """
    private, public = write_key_pair(folder, key_id, algorithm)
    load_private_key(algorithm, private.read_bytes())  # the pair is of this algorithm
    section: dict[str, Any] = {
        "keys": {key_id: {"issuer": issuer, "algorithm": algorithm, "public_key": str(public)}},
        **settings,
    }
    if sign:
        section["issuer"] = {"key_id": key_id, "private_key": {"file": str(private)}}
    return section

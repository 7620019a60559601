"""Key files: made once by ``hcm init``, never by the runtime.

A key file holds one 32-byte key in base64 on one line, readable by its owner only
(mode 600, in a folder of mode 700). The config names the files as secrets::

    [empi]
    master_keys = { k1 = { file = "keys/empi-master-k1.key" } }
    current_key = "k1"
    index_key = { file = "keys/empi-index.key" }

    [audit]
    signing_key = { file = "keys/audit-signing.key" }

The audit signing key (Ed25519) signs the audit log's checkpoints; its public half is
written beside it (``.pub``, mode 644) for whoever verifies the log elsewhere.

Losing a key file loses the data it protects: back the folder up apart from the
database (docs/configuration.md, "hcm init").
"""

from __future__ import annotations

import base64
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "EmpiKeyFiles",
    "audit_key_section",
    "scratch_audit_key",
    "scratch_empi_keys",
    "write_audit_key",
    "write_empi_keys",
]

MASTER_FILE = "empi-master-{key_id}.key"
INDEX_FILE = "empi-index.key"
AUDIT_FILE = "audit-signing.key"
AUDIT_PUBLIC_FILE = "audit-signing.pub"


@dataclass(frozen=True)
class EmpiKeyFiles:
    """Where one set of resident-index keys lies."""

    key_id: str
    master: Path
    index: Path

    def section(self, relative_to: Path | None = None) -> dict[str, Any]:
        """The ``[empi]`` settings naming these files (relative to a config's folder)."""

        def name(path: Path) -> str:
            if relative_to is not None and path.is_relative_to(relative_to):
                return path.relative_to(relative_to).as_posix()
            return path.as_posix()

        return {
            "master_keys": {self.key_id: {"file": name(self.master)}},
            "current_key": self.key_id,
            "index_key": {"file": name(self.index)},
        }


def _write_new(path: Path, text: str, mode: int = 0o600) -> None:
    # O_EXCL: an existing key is never overwritten (it may protect data)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(text + "\n")


def write_empi_keys(
    folder: Path, *, key_id: str = "k1", before: Path | None = None
) -> EmpiKeyFiles:
    """Write a new master key and blind-index key into ``folder``.

    :param before: another key file the caller will write next and found present: it is
        reported (after these) instead of writing anything.
    :raises FileExistsError: a key file is already there; nothing is overwritten.
    """
    files = EmpiKeyFiles(
        key_id=key_id,
        master=folder / MASTER_FILE.format(key_id=key_id),
        index=folder / INDEX_FILE,
    )
    for path in (files.master, files.index, before):
        if path is not None and path.exists():
            raise FileExistsError(str(path))
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(folder, 0o700)
    _write_new(files.master, base64.b64encode(secrets.token_bytes(32)).decode())
    _write_new(files.index, base64.b64encode(secrets.token_bytes(32)).decode())
    return files


def scratch_empi_keys(folder: Path) -> dict[str, Any]:
    """The ``[empi]`` section of a demo's or a test's own keys in ``folder``.

    Made on the first call and reused after, so a restart reads what was written. Only
    ``hcm demo`` and the test kit use this; an installation's keys come from ``hcm init``.
    """
    files = EmpiKeyFiles("k1", folder / MASTER_FILE.format(key_id="k1"), folder / INDEX_FILE)
    if not (files.master.exists() and files.index.exists()):
        files = write_empi_keys(folder)
    return files.section()


def write_audit_key(folder: Path) -> Path:
    """Write a new Ed25519 audit signing key (mode 600) and its public half (``.pub``).

    :return: the private key file.
    :raises FileExistsError: a key file is already there; nothing is overwritten.
    """
    from hcmiddleware.audit.signing import new_key_pair

    private, public = folder / AUDIT_FILE, folder / AUDIT_PUBLIC_FILE
    for path in (private, public):
        if path.exists():
            raise FileExistsError(str(path))
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(folder, 0o700)
    secret, shared = new_key_pair()
    _write_new(private, secret)
    _write_new(public, shared, 0o644)
    return private


def audit_key_section(key: Path, relative_to: Path | None = None) -> dict[str, Any]:
    """The ``[audit]`` settings naming ``key`` (relative to a config's folder)."""
    name = key.as_posix()
    if relative_to is not None and key.is_relative_to(relative_to):
        name = key.relative_to(relative_to).as_posix()
    return {"signing_key": {"file": name}}


def scratch_audit_key(folder: Path) -> dict[str, Any]:
    """The ``[audit]`` section of a demo's or a test's own signing key in ``folder``.

    Made on the first call and reused after, like :func:`scratch_empi_keys`. Only ``hcm
    demo`` and the test kit use this; an installation's key comes from ``hcm init``.
    """
    key = folder / AUDIT_FILE
    if not key.exists():
        key = write_audit_key(folder)
    return audit_key_section(key)

"""Key sets for tests and demos: published test keys, never for production.

``TEST_ISSUER_KEYS`` (SM4) and ``TEST_ISSUER_KEYS_3DES`` (legacy 3DES) are paths to the
JSON files, for ``hcm card personalise --issuer-keys`` and ``--sam-keys``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["TEST_ISSUER_KEYS", "TEST_ISSUER_KEYS_3DES"]

_HERE = Path(__file__).resolve().parent

#: SM4 master keys for refs 01-04, 11-14 and 21, city 21.
TEST_ISSUER_KEYS = _HERE / "test-issuer-keys.json"
#: Two-key 3DES master keys for the same refs, city 21.
TEST_ISSUER_KEYS_3DES = _HERE / "test-issuer-keys-3des.json"

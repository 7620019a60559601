"""An AES-256-GCM template cipher for the tests (the product's protector lives in the
resident index); nonce ‖ ciphertext ‖ tag."""

from __future__ import annotations

import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM


class AesGcmCipher:
    """encrypt/decrypt with one 32-byte key."""

    def __init__(self, key: bytes | None = None) -> None:
        self._aead = AESGCM(key if key is not None else AESGCM.generate_key(bit_length=256))

    def encrypt(self, plaintext: bytes) -> bytes:
        """A fresh 12-byte nonce, then the ciphertext and tag."""
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, plaintext, None)

    def decrypt(self, ciphertext: bytes) -> bytes:
        """Raises cryptography's InvalidTag on a wrong key or altered bytes."""
        return self._aead.decrypt(ciphertext[:12], ciphertext[12:], None)


def from_env() -> AesGcmCipher:
    """The cipher keyed by ``HCM_TEST_FACE_KEY`` (hex), for the CLI tests."""
    return AesGcmCipher(bytes.fromhex(os.environ["HCM_TEST_FACE_KEY"]))

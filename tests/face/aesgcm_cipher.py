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


class AesGcmKeyRing:
    """AES-256-GCM under several named keys: encrypts with ``current``, decrypts with
    whichever key the ciphertext names (key id length ‖ key id ‖ nonce ‖ ciphertext)."""

    def __init__(self, keys: dict[str, bytes], current: str) -> None:
        self._keys = {kid: AESGCM(key) for kid, key in keys.items()}
        self.current = current

    def encrypt(self, plaintext: bytes) -> bytes:
        """Under the current key, naming it."""
        kid = self.current.encode()
        nonce = os.urandom(12)
        sealed = self._keys[self.current].encrypt(nonce, plaintext, kid)
        return bytes([len(kid)]) + kid + nonce + sealed

    def decrypt(self, ciphertext: bytes) -> bytes:
        """With the key the ciphertext names; KeyError if that key is gone."""
        n = ciphertext[0]
        kid = ciphertext[1 : 1 + n]
        nonce, sealed = ciphertext[1 + n : 13 + n], ciphertext[13 + n :]
        return self._keys[kid.decode()].decrypt(nonce, sealed, kid)

"""Signatures of dynamic e-card codes and revocation lists: SM2, ECDSA P-256, Ed25519.

Every algorithm gives a 64-byte signature: ``r ‖ s`` (32 bytes each, big-endian) for
SM2 and ECDSA, the signature itself for Ed25519, so a code has one fixed length
whatever its issuer chose.

* ``sm2``: SM2 with SM3 (GB/T 32918, GB/T 32905), the national choice; the signer's
  ``Z_A`` uses the default user ID ``1234567812345678``. Through ``tongsuopy`` (the
  Tongsuo project's binding; the ``ehc`` extra).
* ``ecdsa-p256``: ECDSA on P-256 with SHA-256 (``cryptography``).
* ``ed25519``: Ed25519 (``cryptography``).

Keys are PEM: SubjectPublicKeyInfo for public keys, PKCS#8 for private keys. The
algorithm is always the configured key's, never one a code names, so a code cannot
choose a weaker check than its issuer's.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, get_args

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from hcmiddleware._optional import needs_extra

__all__ = [
    "ALGORITHMS",
    "SIGNATURE_SIZE",
    "Algorithm",
    "KeyFormatError",
    "PrivateKey",
    "PublicKey",
    "generate_private_key",
    "load_private_key",
    "load_public_key",
]

Algorithm = Literal["sm2", "ecdsa-p256", "ed25519"]
ALGORITHMS: tuple[str, ...] = get_args(Algorithm)

#: every signature is 64 bytes (r ‖ s, or Ed25519's own)
SIGNATURE_SIZE = 64

#: the group orders, to refuse r or s out of range before any curve arithmetic
_SM2_N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
_P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


class KeyFormatError(ValueError):
    """A key's PEM cannot be used for the algorithm named (the message says why)."""


class PublicKey(Protocol):
    """Verifies signatures of one algorithm."""

    algorithm: Algorithm

    def verify(self, signature: bytes, message: bytes) -> bool:
        """True when ``signature`` (64 bytes) is valid for ``message``."""
        ...

    def public_pem(self) -> bytes:
        """The key as PEM SubjectPublicKeyInfo."""
        ...


class PrivateKey(Protocol):
    """Signs with one algorithm."""

    algorithm: Algorithm

    def sign(self, message: bytes) -> bytes:
        """The 64-byte signature of ``message``."""
        ...

    def public_key(self) -> PublicKey:
        """The matching public key."""
        ...

    def private_pem(self) -> bytes:
        """The key as unencrypted PKCS#8 PEM (keep it secret)."""
        ...


def _split(signature: bytes, order: int) -> tuple[int, int] | None:
    if len(signature) != SIGNATURE_SIZE:
        return None
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:], "big")
    if not (0 < r < order and 0 < s < order):
        return None
    return r, s


def _join(der: bytes) -> bytes:
    r, s = decode_dss_signature(der)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


# --- SM2 (tongsuopy) ---------------------------------------------------------------------


def _tongsuo() -> Any:
    with needs_extra("SM2 signatures of e-card codes"):
        import tongsuopy.crypto.asymciphers.ec as ts_ec
        import tongsuopy.crypto.exceptions as ts_exc
        import tongsuopy.crypto.hashes as ts_hashes
        import tongsuopy.crypto.serialization as ts_ser
    return ts_ec, ts_hashes, ts_ser, ts_exc


class _Sm2Public:
    algorithm: Algorithm = "sm2"

    def __init__(self, key: Any) -> None:
        ts_ec, ts_hashes, _ser, ts_exc = _tongsuo()
        self._key = key
        self._scheme = ts_ec.ECDSA(ts_hashes.SM3())
        self._invalid = ts_exc.InvalidSignature

    def verify(self, signature: bytes, message: bytes) -> bool:
        rs = _split(signature, _SM2_N)
        if rs is None:
            return False
        try:
            self._key.verify(encode_dss_signature(*rs), message, self._scheme)
        except self._invalid:
            return False
        return True

    def public_pem(self) -> bytes:
        _ec, _h, ts_ser, _x = _tongsuo()
        return bytes(
            self._key.public_bytes(ts_ser.Encoding.PEM, ts_ser.PublicFormat.SubjectPublicKeyInfo)
        )


class _Sm2Private:
    algorithm: Algorithm = "sm2"

    def __init__(self, key: Any) -> None:
        ts_ec, ts_hashes, _ser, _x = _tongsuo()
        self._key = key
        self._scheme = ts_ec.ECDSA(ts_hashes.SM3())

    def sign(self, message: bytes) -> bytes:
        return _join(self._key.sign(message, self._scheme))

    def public_key(self) -> PublicKey:
        return _Sm2Public(self._key.public_key())

    def private_pem(self) -> bytes:
        _ec, _h, ts_ser, _x = _tongsuo()
        return bytes(
            self._key.private_bytes(
                ts_ser.Encoding.PEM, ts_ser.PrivateFormat.PKCS8, ts_ser.NoEncryption()
            )
        )


def _sm2_curve(key: Any) -> bool:
    return str(getattr(getattr(key, "curve", None), "name", "")).upper() == "SM2"


# --- ECDSA P-256 and Ed25519 (cryptography) -------------------------------------------


class _P256Public:
    algorithm: Algorithm = "ecdsa-p256"

    def __init__(self, key: ec.EllipticCurvePublicKey) -> None:
        self._key = key

    def verify(self, signature: bytes, message: bytes) -> bool:
        rs = _split(signature, _P256_N)
        if rs is None:
            return False
        try:
            self._key.verify(encode_dss_signature(*rs), message, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return True

    def public_pem(self) -> bytes:
        return self._key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


class _P256Private:
    algorithm: Algorithm = "ecdsa-p256"

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        self._key = key

    def sign(self, message: bytes) -> bytes:
        return _join(self._key.sign(message, ec.ECDSA(hashes.SHA256())))

    def public_key(self) -> PublicKey:
        return _P256Public(self._key.public_key())

    def private_pem(self) -> bytes:
        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


class _Ed25519Public:
    algorithm: Algorithm = "ed25519"

    def __init__(self, key: ed25519.Ed25519PublicKey) -> None:
        self._key = key

    def verify(self, signature: bytes, message: bytes) -> bool:
        if len(signature) != SIGNATURE_SIZE:
            return False
        try:
            self._key.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def public_pem(self) -> bytes:
        return self._key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


class _Ed25519Private:
    algorithm: Algorithm = "ed25519"

    def __init__(self, key: ed25519.Ed25519PrivateKey) -> None:
        self._key = key

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)

    def public_key(self) -> PublicKey:
        return _Ed25519Public(self._key.public_key())

    def private_pem(self) -> bytes:
        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


# --- making and loading keys ---------------------------------------------------------------


def _check_algorithm(algorithm: str) -> Algorithm:
    if algorithm not in ALGORITHMS:
        raise KeyFormatError(f"unknown algorithm {algorithm!r}; use one of {', '.join(ALGORITHMS)}")
    return algorithm  # type: ignore[return-value]


_NAMES = {"sm2": "an SM2", "ecdsa-p256": "a P-256", "ed25519": "an Ed25519"}


def _unreadable(kind: str, exc: Exception, wanted: str) -> KeyFormatError:
    if type(exc).__name__ == "UnsupportedAlgorithm":
        return KeyFormatError(f"the key is not {wanted} key")
    return KeyFormatError(f"not a PEM {kind} key ({type(exc).__name__})")


def generate_private_key(algorithm: str) -> PrivateKey:
    """A new random key of ``algorithm`` (an issuer's signing key)."""
    algorithm = _check_algorithm(algorithm)
    if algorithm == "sm2":
        ts_ec, _h, _s, _x = _tongsuo()
        return _Sm2Private(ts_ec.generate_private_key(ts_ec.SM2()))
    if algorithm == "ecdsa-p256":
        return _P256Private(ec.generate_private_key(ec.SECP256R1()))
    return _Ed25519Private(ed25519.Ed25519PrivateKey.generate())


def load_public_key(algorithm: str, pem: bytes) -> PublicKey:
    """A public key of ``algorithm`` from PEM SubjectPublicKeyInfo.

    :raises KeyFormatError: not PEM, or a key of another algorithm or curve.
    """
    algorithm = _check_algorithm(algorithm)
    if algorithm == "sm2":
        _ec, _h, ts_ser, _x = _tongsuo()
        try:
            key = ts_ser.load_pem_public_key(pem)
        except Exception as exc:  # the binding raises ValueError or its own errors
            raise _unreadable("public", exc, "an SM2") from None
        if not _sm2_curve(key):
            raise KeyFormatError("the key is not an SM2 key")
        return _Sm2Public(key)
    try:
        loaded = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise _unreadable("public", exc, _NAMES[algorithm]) from None
    if algorithm == "ecdsa-p256":
        if not (
            isinstance(loaded, ec.EllipticCurvePublicKey) and isinstance(loaded.curve, ec.SECP256R1)
        ):
            raise KeyFormatError("the key is not a P-256 key")
        return _P256Public(loaded)
    if not isinstance(loaded, ed25519.Ed25519PublicKey):
        raise KeyFormatError("the key is not an Ed25519 key")
    return _Ed25519Public(loaded)


def load_private_key(algorithm: str, pem: bytes) -> PrivateKey:
    """A private key of ``algorithm`` from unencrypted PKCS#8 PEM.

    :raises KeyFormatError: not PEM, or a key of another algorithm or curve. The
        message never holds any of the key's text.
    """
    algorithm = _check_algorithm(algorithm)
    if algorithm == "sm2":
        _ec, _h, ts_ser, _x = _tongsuo()
        try:
            key = ts_ser.load_pem_private_key(pem, password=None)
        except Exception as exc:  # the binding raises ValueError or its own errors
            raise _unreadable("private", exc, "an SM2") from None
        if not _sm2_curve(key):
            raise KeyFormatError("the key is not an SM2 key")
        return _Sm2Private(key)
    try:
        loaded = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise _unreadable("private", exc, _NAMES[algorithm]) from None
    if algorithm == "ecdsa-p256":
        if not (
            isinstance(loaded, ec.EllipticCurvePrivateKey)
            and isinstance(loaded.curve, ec.SECP256R1)
        ):
            raise KeyFormatError("the key is not a P-256 key")
        return _P256Private(loaded)
    if not isinstance(loaded, ed25519.Ed25519PrivateKey):
        raise KeyFormatError("the key is not an Ed25519 key")
    return _Ed25519Private(loaded)

"""The card and SAM cryptography, byte-exact to docs/card-spec.md ("Cryptography").

Pure functions over ``bytes``: block encryption (SM4 and two-key 3DES), padding,
key diversification, authentication cryptograms, session keys, the 4-byte MAC and the
secure-messaging wrap/unwrap of a command APDU. The card emulator, the software SAM and
the SAM card emulator all compute through this module, so a correction to a construction
is made here and nowhere else.

Notation as in docs/card-spec.md: ``E_K`` is ECB encryption, ``~F`` is F with every bit
inverted, ``fold(X)`` is the first 8 bytes of X XOR its last 8 bytes, ``pad(X)`` is
``X || 80 || 00..`` to a multiple of the block size.

The constructions of docs/card-spec.md (SM4, the default):

- one diversification level with an 8-byte factor F: ``DK = E_MK(F || ~F)``;
- card key: level 1 with the card factor, level 2 with the city factor;
- cryptogram of an 8-byte challenge R: ``fold(E_DK(R || 00*8))``;
- session key over a card challenge R: ``E_DK(R || 00*8)``;
- MAC4: first 4 bytes of the CBC-MAC (zero IV) of ``pad(data)``;
- SM command: ``header || Lc || E_SK(pad(L || plain)) || MAC4`` with the MAC over
  ``pad(header || Lc || encrypted data)`` and ``Lc = len(encrypted data) + 4``.

The constructions of docs/card-spec.md for 3DES: ``DK = E_MK(F) || E_MK(~F)``; the cryptogram
is ``E_DK(R)``. Where the card's evidence is silent this module chooses (also in docs/sam.md):

- **3DES session key**: ``SK = E_DK(R) || E_DK(~R)`` — the one-level diversification of
  DK with the challenge as factor, so the session key is a full two-key 3DES key built
  the same way as every other 3DES key.
- **3DES MAC4**: the first 4 bytes of the full-3DES CBC-MAC (zero IV, every block under
  K1||K2||K1) of ``pad(data)`` to 8 bytes — the same rule as SM4 with 8-byte blocks,
  not the ISO 9797-1 "retail" MAC.
- **3DES secure messaging**: the SM4 layout with 8-byte blocks.
- 3DES keys are 16 bytes (two-key), expanded to K1||K2||K1 before use; 24-byte keys are
  accepted by the ECB functions too, but every derived key is 16 bytes.

Inputs of the wrong shape raise :class:`~hcmiddleware.errors.SamInputError`; a refused
SM command raises :class:`~hcmiddleware.errors.SecureMessagingError`. Neither ever
carries key material or data in its message.
"""

from __future__ import annotations

import enum
import hmac

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from hcmiddleware.errors import SamInputError, SecureMessagingError

__all__ = [
    "CHALLENGE_SIZE",
    "FACTOR_SIZE",
    "MAC_SIZE",
    "Algorithm",
    "block_size",
    "card_key",
    "check_sm_header",
    "city_factor",
    "cryptogram",
    "decrypt_ecb",
    "diversify",
    "encrypt_ecb",
    "key_size",
    "mac4",
    "max_sm_plain",
    "pad",
    "session_key",
    "sm_unwrap",
    "sm_wrap",
]

#: Length of a diversification factor (card factor, city factor).
FACTOR_SIZE = 8
#: Length of a card challenge (GET CHALLENGE) and of a cryptogram.
CHALLENGE_SIZE = 8
#: Length of the MAC at the end of a secure-messaging command.
MAC_SIZE = 4

# Largest short-APDU Lc: the SM data field must fit in one byte of length.
_MAX_LC = 255


class Algorithm(enum.StrEnum):
    """The block cipher of a key; the value is how key sets and docs spell it."""

    SM4 = "SM4"
    TDES = "3DES"


def _algorithm(alg: object) -> Algorithm:
    # A plain "SM4" equals Algorithm.SM4 but is not it: normalise, so that no caller
    # silently gets the other cipher.
    if isinstance(alg, Algorithm):
        return alg
    if isinstance(alg, str) and alg in Algorithm.__members__.values():
        return Algorithm(alg)
    raise SamInputError(f"unknown algorithm {alg!r} (use 'SM4' or '3DES')")


def block_size(alg: Algorithm) -> int:
    """Block size in bytes: 16 for SM4, 8 for 3DES."""
    alg = _algorithm(alg)
    return 16 if alg is Algorithm.SM4 else 8


def key_size(alg: Algorithm) -> int:
    """Length in bytes of a key of this algorithm as stored and derived (16 for both)."""
    alg = _algorithm(alg)
    return 16


def _check_key(alg: Algorithm, key: bytes, what: str = "key") -> None:
    allowed = (16,) if alg is Algorithm.SM4 else (16, 24)
    if len(key) not in allowed:
        sizes = " or ".join(str(n) for n in allowed)
        raise SamInputError(f"{alg.value} {what} must be {sizes} bytes, got {len(key)}")


def _cipher(alg: Algorithm, key: bytes) -> Cipher[modes.ECB]:
    _check_key(alg, key)
    if alg is Algorithm.SM4:
        return Cipher(algorithms.SM4(key), modes.ECB())  # noqa: S305 - ECB is the spec's E_K
    # cryptography deprecates 16-byte 3DES keys; the expansion is the same K1||K2||K1.
    full = key + key[:8] if len(key) == 16 else key
    return Cipher(TripleDES(full), modes.ECB())  # noqa: S305


def _check_blocks(alg: Algorithm, data: bytes, what: str) -> None:
    size = block_size(alg)
    if len(data) == 0 or len(data) % size:
        raise SamInputError(
            f"{what} for {alg.value} must be a non-empty multiple of {size} bytes, got {len(data)}"
        )


def encrypt_ecb(alg: Algorithm, key: bytes, data: bytes) -> bytes:
    """``E_K(data)``: ECB encryption of whole blocks (no padding is added)."""
    alg = _algorithm(alg)
    _check_blocks(alg, data, "data to encrypt")
    enc = _cipher(alg, key).encryptor()
    return enc.update(data) + enc.finalize()


def decrypt_ecb(alg: Algorithm, key: bytes, data: bytes) -> bytes:
    """Inverse of :func:`encrypt_ecb`."""
    alg = _algorithm(alg)
    _check_blocks(alg, data, "data to decrypt")
    dec = _cipher(alg, key).decryptor()
    return dec.update(data) + dec.finalize()


def pad(data: bytes, block: int) -> bytes:
    """``data || 80 || 00..`` to the next multiple of ``block`` (always adds a byte)."""
    if block <= 0:
        raise SamInputError(f"padding block size must be positive, got {block}")
    padded = data + b"\x80"
    return padded + bytes(-len(padded) % block)


def _invert(data: bytes) -> bytes:
    return bytes(b ^ 0xFF for b in data)


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def _fold(data: bytes) -> bytes:
    return _xor(data[:8], data[8:16])


def _check_len(value: bytes, size: int, what: str) -> None:
    if len(value) != size:
        raise SamInputError(f"{what} must be {size} bytes, got {len(value)}")


def diversify(alg: Algorithm, master: bytes, factor: bytes) -> bytes:
    """One diversification level of ``master`` with an 8-byte ``factor``.

    SM4: ``E_MK(F || ~F)``; 3DES: ``E_MK(F) || E_MK(~F)``. Both give a 16-byte key.
    """
    alg = _algorithm(alg)
    _check_key(alg, master, "master key")
    _check_len(factor, FACTOR_SIZE, "diversification factor")
    if alg is Algorithm.SM4:
        return encrypt_ecb(alg, master, factor + _invert(factor))
    return encrypt_ecb(alg, master, factor) + encrypt_ecb(alg, master, _invert(factor))


def city_factor(city_code: str) -> bytes:
    """The 8-byte city factor: the first two digits of the city code, ASCII, ``0``-padded.

    Accepts the two-digit form of a key set (``"21"``) and the card's item 57 form
    (``"210000"``; 2, 4 or 6 digits): both give ``b"21000000"``.
    """
    if not (city_code.isascii() and city_code.isdigit() and len(city_code) in (2, 4, 6)):
        raise SamInputError(
            f"city code must be 2, 4 or 6 ASCII digits (e.g. '21' or '210000'), got {city_code!r}"
        )
    return city_code[:2].encode("ascii").ljust(FACTOR_SIZE, b"0")


def card_key(alg: Algorithm, master: bytes, card_factor: bytes, city_code: str) -> bytes:
    """A card's key: ``master`` diversified with the card factor, then the city factor."""
    alg = _algorithm(alg)
    level1 = diversify(alg, master, card_factor)
    return diversify(alg, level1, city_factor(city_code))


def cryptogram(alg: Algorithm, key: bytes, challenge: bytes) -> bytes:
    """The 8-byte authentication cryptogram of an 8-byte challenge under ``key``.

    Used for external authentication (the terminal answers the card's challenge) and
    internal authentication (the card answers the terminal's). SM4:
    ``fold(E_DK(R || 00*8))``; 3DES: ``E_DK(R)``.
    """
    alg = _algorithm(alg)
    _check_len(challenge, CHALLENGE_SIZE, "challenge")
    if alg is Algorithm.SM4:
        return _fold(encrypt_ecb(alg, key, challenge + bytes(8)))
    return encrypt_ecb(alg, key, challenge)


def session_key(alg: Algorithm, key: bytes, challenge: bytes) -> bytes:
    """The secure-messaging session key over a fresh 8-byte card challenge.

    SM4: ``E_DK(R || 00*8)``; 3DES (our choice): ``E_DK(R) || E_DK(~R)``.
    """
    alg = _algorithm(alg)
    _check_len(challenge, CHALLENGE_SIZE, "challenge")
    if alg is Algorithm.SM4:
        return encrypt_ecb(alg, key, challenge + bytes(8))
    return diversify(alg, key, challenge)


def mac4(alg: Algorithm, key: bytes, data: bytes) -> bytes:
    """First 4 bytes of the CBC-MAC (zero IV) of ``pad(data)`` under ``key``."""
    alg = _algorithm(alg)
    _check_key(alg, key)
    size = block_size(alg)
    padded = pad(data, size)
    # CBC with a zero IV: the last ciphertext block is the CBC-MAC.
    if alg is Algorithm.SM4:
        cipher = Cipher(algorithms.SM4(key), modes.CBC(bytes(size)))
    else:
        full = key + key[:8] if len(key) == 16 else key
        cipher = Cipher(TripleDES(full), modes.CBC(bytes(size)))
    enc = cipher.encryptor()
    chained = enc.update(padded) + enc.finalize()
    return chained[-size:][:MAC_SIZE]


def max_sm_plain(alg: Algorithm) -> int:
    """The longest plain data one short secure-messaging APDU can carry.

    Lc (one byte) must hold the encrypted ``pad(L || plain)`` plus the 4-byte MAC:
    238 bytes for SM4, 246 for 3DES.
    """
    alg = _algorithm(alg)
    size = block_size(alg)
    max_encrypted = (_MAX_LC - MAC_SIZE) // size * size
    return max_encrypted - 2  # one byte L, at least one byte of padding


def check_sm_header(header: bytes) -> None:
    """Raise :class:`SamInputError` unless ``header`` is ``CLA INS P1 P2`` with the SM bit."""
    _check_len(header, 4, "command header (CLA INS P1 P2)")
    if not header[0] & 0x04:
        raise SamInputError(
            f"CLA {header[0]:02X} does not announce secure messaging (bit 0x04 must be set)"
        )


def sm_wrap(alg: Algorithm, session_key: bytes, header: bytes, plain: bytes) -> bytes:
    """The whole secure-messaging command APDU for ``plain``.

    ``header`` is ``CLA INS P1 P2`` with CLA already carrying the SM bit (``04``).
    Returns ``header || Lc || E_SK(pad(L || plain)) || MAC4`` where the MAC covers
    ``header || Lc || encrypted data``.
    """
    alg = _algorithm(alg)
    check_sm_header(header)
    _check_key(alg, session_key, "session key")
    if len(plain) > max_sm_plain(alg):
        raise SamInputError(
            f"{len(plain)} bytes do not fit one {alg.value} secure-messaging command "
            f"(at most {max_sm_plain(alg)})"
        )
    encrypted = encrypt_ecb(alg, session_key, pad(bytes([len(plain)]) + plain, block_size(alg)))
    head = header + bytes([len(encrypted) + MAC_SIZE])
    return head + encrypted + mac4(alg, session_key, head + encrypted)


def sm_unwrap(alg: Algorithm, session_key: bytes, apdu: bytes) -> bytes:
    """The card's side of :func:`sm_wrap`: check the command and return its plain data.

    Checks, in this order, that the APDU's length matches its Lc and the block size,
    that the MAC is right (constant-time), then that the decrypted length byte and the
    padding are exactly what :func:`sm_wrap` makes. Any failure raises
    :class:`SecureMessagingError` (a card answers ``6988``) and nothing is returned.
    """
    alg = _algorithm(alg)
    _check_key(alg, session_key, "session key")
    size = block_size(alg)
    if len(apdu) < 5:
        raise SecureMessagingError(f"SM command of {len(apdu)} bytes is shorter than a header")
    lc = apdu[4]
    body = apdu[5:]
    if len(body) != lc:
        raise SecureMessagingError(
            f"SM command carries {len(body)} data bytes but its Lc says {lc}"
        )
    encrypted, mac = body[:-MAC_SIZE], body[-MAC_SIZE:]
    if lc < size + MAC_SIZE or len(encrypted) % size:
        raise SecureMessagingError(
            f"SM data of {lc} bytes is not whole {size}-byte blocks plus a {MAC_SIZE}-byte MAC"
        )
    expected = mac4(alg, session_key, apdu[:-MAC_SIZE])
    if not hmac.compare_digest(mac, expected):
        raise SecureMessagingError("SM command's MAC is wrong")
    decrypted = decrypt_ecb(alg, session_key, encrypted)
    length = decrypted[0]
    plain = decrypted[1 : 1 + length]
    # Re-padding and comparing refuses a wrong L, bad padding bytes and surplus blocks alike.
    if len(plain) != length or pad(bytes([length]) + plain, size) != decrypted:
        raise SecureMessagingError("SM command's length byte or padding is wrong")
    return plain

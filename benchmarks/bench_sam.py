"""Time per cryptogram and per secure-messaging wrap, SM4 against 3DES.

Three layers: the bare crypto functions, the software SAM (which adds the two-level
card-key diversification to every call) and PcscSam driving the SAM card emulator
in-process (which adds APDU building, parsing and the emulator's own checks; the PC/SC
and vpcd round trips come on top of that in a real terminal and belong to the card
benchmark). Run: ``python benchmarks/bench_sam.py [iterations]``.
"""

from __future__ import annotations

import secrets
import sys
import time
from collections.abc import Callable

from hcmiddleware.sam import crypto
from hcmiddleware.sam.crypto import Algorithm
from hcmiddleware.sam.emulated import DEFAULT_TEST_PIN, EmulatedSam
from hcmiddleware.sam.keyset import KeySet, load_keyset
from hcmiddleware.sam.pcsc import PcscSam
from hcmiddleware.sam.samples import TEST_ISSUER_KEYS, TEST_ISSUER_KEYS_3DES
from hcmiddleware.sam.software import SoftwareSam

HEADER = bytes.fromhex("04DC0104")
PLAIN = bytes(100)  # a typical TLV record update
FACTOR = bytes.fromhex("3132333435363738")

Row = tuple[str, str, float, str]


class Counting:
    """Counts the APDUs PcscSam sends to the emulated SAM."""

    def __init__(self, card: EmulatedSam) -> None:
        self.card = card
        self.count = 0

    def transmit(self, apdu: bytes) -> bytes:
        self.count += 1
        return self.card.transmit(apdu)


def per_call_us(fn: Callable[[], object], n: int, repeats: int = 5) -> float:
    """Wall time of one call in µs: the best of ``repeats`` means of ``n`` calls.

    The best run is the one least disturbed by other processes (as ``timeit`` advises).
    """
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - start) / n)
    return best * 1e6


def crypto_rows(alg: Algorithm, keyset: KeySet, n: int) -> list[Row]:
    dk = keyset.card_key(0x12, FACTOR).reveal()
    r = secrets.token_bytes(8)
    sk = crypto.session_key(alg, dk, r)
    apdu = crypto.sm_wrap(alg, sk, HEADER, PLAIN)
    ops: list[tuple[str, Callable[[], object]]] = [
        ("card_key (2 levels)", lambda: crypto.card_key(alg, dk, FACTOR, "21")),
        ("cryptogram", lambda: crypto.cryptogram(alg, dk, r)),
        ("session_key", lambda: crypto.session_key(alg, dk, r)),
        ("sm_wrap 100 B", lambda: crypto.sm_wrap(alg, sk, HEADER, PLAIN)),
        ("sm_unwrap 100 B", lambda: crypto.sm_unwrap(alg, sk, apdu)),
    ]
    return [("crypto", name, per_call_us(fn, n), "") for name, fn in ops]


def sam_rows(keyset: KeySet, n: int) -> list[Row]:
    r = secrets.token_bytes(8)
    dk21 = keyset.card_key(0x21, FACTOR).reveal()
    alg21 = keyset.entry(0x21).alg
    rows: list[Row] = []
    software = SoftwareSam(keyset)
    transport = Counting(EmulatedSam(keyset))
    pcsc = PcscSam(transport, DEFAULT_TEST_PIN)
    for layer, sam in (("software SAM", software), ("PcscSam+emulator", pcsc)):

        def internal_auth(sam: SoftwareSam | PcscSam = sam) -> None:
            # A fresh challenge each time (the SAM refuses reuse); the card's answer is
            # computed here too, so this row includes one extra cryptogram.
            challenge = secrets.token_bytes(8)
            sam.check_internal_auth(
                0x21, FACTOR, challenge, crypto.cryptogram(alg21, dk21, challenge)
            )

        def external_auth(sam: SoftwareSam | PcscSam = sam) -> bytes:
            return sam.external_auth(0x12, FACTOR, r)

        def secure_update(sam: SoftwareSam | PcscSam = sam) -> bytes:
            return sam.secure_update(0x12, FACTOR, r, HEADER, PLAIN)

        ops: list[tuple[str, Callable[[], object]]] = [
            ("external_auth", external_auth),
            ("secure_update 100 B", secure_update),
            ("check_internal_auth", internal_auth),
        ]
        for name, fn in ops:
            before = transport.count
            fn()
            apdus = str(transport.count - before) if sam is pcsc else ""
            rows.append((layer, name, per_call_us(fn, n), apdus))
    return rows


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    print(f"µs per call: best of 5 means of {n} calls; APDUs per call to the SAM card")
    print(f"{'layer':<18} {'operation':<26} {'alg':<5} {'µs/call':>9} {'APDUs':>6}")
    print("-" * 68)
    for alg, path in ((Algorithm.SM4, TEST_ISSUER_KEYS), (Algorithm.TDES, TEST_ISSUER_KEYS_3DES)):
        keyset = load_keyset(path)
        for layer, name, us, apdus in crypto_rows(alg, keyset, n) + sam_rows(keyset, n):
            print(f"{layer:<18} {name:<26} {alg.value:<5} {us:>9.1f} {apdus:>6}")


if __name__ == "__main__":
    main()

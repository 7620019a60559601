"""The electronic health card: signature checks per code, the whole offline check, the
revocation list at a million entries, and QR pictures.

Goals (the e-card issue): a dynamic code verified in at most 1 ms at p99 with SM2; the
list check at most 0.1 ms with 1,000,000 listed e-cards; a delta of 10,000 entries
applied in at most 1 s. Side by side: SM2 through tongsuopy (used here) and through
gmssl (pure Python, the peer), ECDSA P-256 and Ed25519 through cryptography.

Run: ``python benchmarks/bench_ehc.py [listed]`` (default 1,000,000 listed e-cards; the
list is built once in a temporary SQLite database, which takes a minute or two).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from hcmiddleware import Middleware
from hcmiddleware.ehc import qr
from hcmiddleware.ehc.codes import new_ecard_id, parse_code
from hcmiddleware.ehc.crypto import ALGORITHMS, generate_private_key
from hcmiddleware.ehc.issuer import CodeIssuer
from hcmiddleware.models import EhcRevocation
from hcmiddleware.testing import ehc_keys
from hcmiddleware.testing.plugin import embedded_config


def timings_us(fn: Callable[[], object], n: int) -> list[float]:
    """Each of ``n`` calls' wall time in µs (after one warm-up call)."""
    fn()
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1e6)
    return out


def summary(samples: list[float]) -> tuple[float, float, float]:
    """(p50, p99, per second) of µs samples."""
    ordered = sorted(samples)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return p50, p99, 1e6 / statistics.fmean(ordered)


def row(what: str, samples: list[float], goal: str = "") -> None:
    p50, p99, rate = summary(samples)
    print(f"{what:<44} {p50:>9.1f} {p99:>9.1f} {rate:>10.0f}  {goal}")


def header(title: str) -> None:
    print(f"\n{title}")
    print(f"{'':<44} {'p50 µs':>9} {'p99 µs':>9} {'per s':>10}")


def signatures(n: int) -> None:
    header("signature check of one dynamic code (one core)")
    ecard = new_ecard_id()
    for algorithm in ALGORITHMS:
        issuer = CodeIssuer("B", "K1", generate_private_key(algorithm))
        code = parse_code(issuer.dynamic_code(ecard))
        public = issuer.key.public_key()
        assert public.verify(code.signature, code.signed)  # type: ignore[union-attr]
        goal = "goal ≤ 1000 µs p99" if algorithm == "sm2" else ""
        check = (public.verify, code.signature, code.signed)  # type: ignore[union-attr]
        row(
            f"{algorithm} ({'tongsuopy' if algorithm == 'sm2' else 'cryptography'})",
            timings_us(lambda check=check: check[0](check[1], check[2]), n),
            goal,
        )
        if algorithm == "sm2":
            gmssl_row(issuer, code, max(20, n // 50))


def gmssl_row(issuer: CodeIssuer, code: object, n: int) -> None:
    """The peer: gmssl's pure-Python SM2 on the same key and code."""
    try:
        from gmssl import sm2  # type: ignore[import-untyped]
    except ImportError:
        print(f"{'sm2 (gmssl, pure Python)':<44} not installed (pip install gmssl)")
        return
    numbers = issuer.key._key.private_numbers()  # type: ignore[attr-defined]
    point = numbers.public_numbers
    peer = sm2.CryptSM2(private_key="", public_key=f"{point.x:064x}{point.y:064x}")
    signature = code.signature.hex()  # type: ignore[attr-defined]
    signed = code.signed  # type: ignore[attr-defined]
    assert peer.verify_with_sm3(signature, signed)
    row("sm2 (gmssl, pure Python) — the peer", timings_us(
        lambda: peer.verify_with_sm3(signature, signed), n))  # fmt: skip


def whole_check(folder: Path, n: int) -> None:
    header("whole offline check, mw.ehc.verify (SQLite, replay row written)")
    for algorithm in ("sm2", "ecdsa-p256", "ed25519"):
        config = embedded_config(
            folder / f"check-{algorithm}",
            ehc=ehc_keys(folder / f"keys-{algorithm}", algorithm=algorithm),
        )
        with Middleware(config) as mw:
            resident = mw.residents.enrol(name="王芳", sex=2, id_number="11010519491231002X")
            ecard = mw.ehc.issue(resident.resident_id)
            codes = [mw.ehc.dynamic_code(ecard) for _ in range(n + 1)]
            step = iter(codes)
            row(f"dynamic code, {algorithm}", timings_us(
                lambda mw=mw, step=step: mw.ehc.verify(next(step), care_step="registration"),
                n))  # fmt: skip
            if algorithm == "sm2":
                static_check(mw, ecard, n)


def static_check(mw: Middleware, ecard: str, n: int) -> None:
    """A static code with the ID-number digits: no signature, no replay row."""
    from hcmiddleware.ehc.service import IdDigitsFactor

    static = mw.ehc.static_code(ecard)
    factor = IdDigitsFactor("31002X")
    row("static code + ID digits", timings_us(
        lambda: mw.ehc.verify(static, care_step="registration", factor=factor), n))  # fmt: skip


def revocations(folder: Path, listed: int) -> None:
    header(f"revocation list with {listed:,} closed e-cards (SQLite)")
    config = embedded_config(folder / "lists", ehc=ehc_keys(folder / "keys-list",
                                                             algorithm="ed25519"))  # fmt: skip
    at = datetime(2026, 11, 1, tzinfo=UTC)
    with Middleware(config) as mw:
        issuer = mw.ehc.issuer
        assert issuer is not None
        ids = [new_ecard_id() for _ in range(listed)]
        started = time.perf_counter()
        full = issuer.revocation_list(
            version=1, revoked=[EhcRevocation(ecard_id=i, revoked_at=at) for i in ids]
        )
        signed = time.perf_counter()
        mw.ehc.apply_revocations(full)
        applied = time.perf_counter()
        print(f"full list: signed in {signed - started:.1f} s, checked and applied in "
              f"{applied - signed:.1f} s")  # fmt: skip
        store = mw.ehc.revocations
        listed_probe = iter(ids * 2)
        absent = [new_ecard_id() for _ in range(20_001)]
        absent_probe = iter(absent)
        row("check an e-card that is listed", timings_us(
            lambda: store.revoked(next(listed_probe)), 20_000), "goal ≤ 100 µs")  # fmt: skip
        row("check an e-card that is not", timings_us(
            lambda: store.revoked(next(absent_probe)), 20_000), "goal ≤ 100 µs")  # fmt: skip
        delta = issuer.revocation_list(
            version=2, base_version=1,
            revoked=[EhcRevocation(ecard_id=new_ecard_id(), revoked_at=at) for _ in range(9_000)],
            restored=ids[:1_000],
        )  # fmt: skip
        start = time.perf_counter()
        state = mw.ehc.apply_revocations(delta)
        took = time.perf_counter() - start
        print(f"delta of 10,000 entries (9,000 new, 1,000 restored) checked and applied in "
              f"{took:.2f} s (goal ≤ 1 s); {state.entries:,} listed now")  # fmt: skip


def pictures(n: int) -> None:
    header("QR pictures of a dynamic code (242 characters)")
    code = CodeIssuer("B", "K1", generate_private_key("ed25519")).dynamic_code(new_ecard_id())
    png = qr.render(code, scale=4)
    row("render PNG (segno)", timings_us(lambda: qr.render(code, scale=4), n))
    row("render SVG (segno)", timings_us(lambda: qr.render(code, kind="svg"), n))
    row("read it back (zxing-cpp)", timings_us(lambda: qr.decode_image(png), n))


def main(listed: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        signatures(2000)
        whole_check(folder, 300)
        pictures(100)
        revocations(folder, listed)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 1_000_000)

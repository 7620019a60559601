"""Lists of refused cards: the offline check on a card read, syncs, and fuzzed updates.

Prints, side by side in one run:

* the refused-card check (``Middleware.cards.check``) at N listed cards, p50/p99, next to
  the bare SQLite lookup it rests on (``sqlite3``, same database, same index) and a
  Python ``set`` in memory (what a terminal could do if it kept the list in RAM);
* a full list of N cards and a delta of 10,000 applied through ``cards.sync()`` (the
  signature checked, one transaction);
* 100,000 fuzzed updates: how many were refused, by reason, and that none was applied.

``python benchmarks/bench_cards.py [N]`` (default 1,000,000). Goals: the check ≤ 0.1 ms
at 1M listed cards; a 10,000-entry delta ≤ 1 s.
"""

from __future__ import annotations

import contextlib
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from hcmiddleware import Middleware
from hcmiddleware.cards.lists import parse_update, signed_bytes
from hcmiddleware.cards.reference import ListPublisher, ReferenceListPlugin
from hcmiddleware.config import parse_config
from hcmiddleware.errors import CardListError, CardRefusedError
from hcmiddleware.keyfiles import scratch_empi_keys

SOURCE = "issuer:2101"


def card(i: int) -> str:
    return f"2101{i:016d}"


def percentiles(samples: list[float]) -> tuple[float, float]:
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99)]


def main(n: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="hcm-bench-cards-"))
    publisher = ListPublisher(SOURCE)
    pem = folder / "issuer.pem"
    pem.write_bytes(publisher.public_pem())
    config = parse_config(
        {
            "middleware": {"data_dir": str(folder)},
            "empi": scratch_empi_keys(folder / "keys"),
            "cards": {"list_keys": {SOURCE: str(pem)}},
        }
    )
    plugin = ReferenceListPlugin(publisher)
    with Middleware(config, plugins={"lists": plugin}) as mw:
        publisher.list_many((card(i), "loss_reported") for i in range(0, 2 * n, 2))
        publisher.publish()
        t0 = time.perf_counter()
        report = mw.cards.sync()
        full_s = time.perf_counter() - t0
        assert report.ok, report.refused
        print(f"full list of {n:,} cards: signed, checked and applied in {full_s:.1f} s")

        publisher.list_many((card(i), "cancelled") for i in range(1, 20_000, 2))
        publisher.publish()
        t0 = time.perf_counter()
        report = mw.cards.sync()
        delta_s = time.perf_counter() - t0
        assert report.ok, report.refused
        print(f"delta of 10,000 cards through sync(): {delta_s * 1000:.0f} ms (goal ≤ 1,000)")

        rng = random.Random(7)
        probes = [card(rng.randrange(2 * n)) for _ in range(20_000)]
        ours: list[float] = []
        for number in probes:
            t0 = time.perf_counter()
            with contextlib.suppress(CardRefusedError):
                mw.cards.check(number, actor="bench")
            ours.append((time.perf_counter() - t0) * 1e6)
        raw = sqlite3.connect(folder / "hcm.db")
        floor: list[float] = []
        for number in probes:
            t0 = time.perf_counter()
            raw.execute(
                "SELECT source, state, listed_at FROM card_list_entries WHERE card_number = ?",
                (number,),
            ).fetchall()
            floor.append((time.perf_counter() - t0) * 1e6)
        in_memory = {row[0] for row in raw.execute("SELECT card_number FROM card_list_entries")}
        memory: list[float] = []
        for number in probes:
            t0 = time.perf_counter()
            _ = number in in_memory
            memory.append((time.perf_counter() - t0) * 1e6)
        print(f"\nrefused-card check at {n + 10_000:,} listed cards (20,000 probes, half listed)")
        print(f"{'':28} {'p50 µs':>9} {'p99 µs':>9}")
        for name, samples in (
            ("Middleware.cards.check", ours),
            ("sqlite3 lookup (floor)", floor),
            ("Python set in memory", memory),
        ):
            p50, p99 = percentiles(samples)
            print(f"{name:28} {p50:9.1f} {p99:9.1f}")
        print("goal: ≤ 100 µs for the check")

        good = publisher.publish()
        text = good.model_dump_json()
        before = [(s.source, s.version) for s in mw.cards.status()]
        fuzz = random.Random(20261203)
        reasons: dict[str, int] = {}
        t0 = time.perf_counter()
        for _ in range(100_000):
            data = bytearray(text.encode())
            for _ in range(fuzz.randint(1, 4)):
                if not data:
                    break
                at = fuzz.randrange(len(data))
                roll = fuzz.random()
                if roll < 0.5:
                    data[at] = fuzz.randrange(256)
                elif roll < 0.75:
                    del data[at : at + fuzz.randint(1, 40)]
                else:
                    data = data[:at]
            try:
                update = parse_update(data.decode("utf-8", errors="replace"))
                if (signed_bytes(update), update.signature) == (signed_bytes(good), good.signature):
                    # what the source signed, written another way: authentic, not forged
                    reasons["unchanged"] = reasons.get("unchanged", 0) + 1
                    continue
                mw.cards.apply(update)
                # applied: only the source's own signed content may get here (a signature
                # written with other padding bits decodes to the same bytes)
                kind = "authentic" if signed_bytes(update) == signed_bytes(good) else "APPLIED"
                reasons[kind] = reasons.get(kind, 0) + 1
            except CardListError as exc:
                reasons[exc.reason] = reasons.get(exc.reason, 0) + 1
        fuzz_s = time.perf_counter() - t0
        after = [(s.source, s.version) for s in mw.cards.status()]
        print(f"lists held before the fuzz {before}, after {after} (must be the same)")
        print(f"\n100,000 fuzzed updates in {fuzz_s:.1f} s: {dict(sorted(reasons.items()))}")
        print("(APPLIED must be absent: no mutated update may be applied)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)

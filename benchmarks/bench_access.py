"""What the role filter costs: a card read and an index lookup, unfiltered and through a session.

    python benchmarks/bench_access.py            # -n 300 card reads, 3000 lookups

Each pair runs in the same process on the same data, one after the other:

* a card read with the software SAM on the emulated card, unbound (the parts a cashier
  may see, named by hand) and through ``mw.acting_as(cashier)`` (the same parts, chosen
  by the role);
* an index lookup by card number, unbound and through a session (a cashier: the phone
  and address withheld), and the filter alone: the role check, the plan of what the
  caller may see, and the cut answer (the Resident without its withheld fields), timed
  without the call.

A session call also writes its audit entry (the unbound lookup writes none); that
append is shown on its own line, as the audit log's own cost. Goal: the filter ≤ 5 %
of a lookup.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

from hcmiddleware import Caller, Middleware
from hcmiddleware.card.emulator import EmulatedCard
from hcmiddleware.models import IdentifierKind
from hcmiddleware.sam.samples import TEST_ISSUER_KEYS as KEYS
from hcmiddleware.testing.plugin import embedded_config

PROFILE = Path(str(files("hcmiddleware.card.samples"))) / "resident-profile.json"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _time(call: Callable[[], Any], n: int, warm: int = 5) -> list[float]:
    for _ in range(warm):
        call()
    times = []
    for _ in range(n):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return times


def _row(name: str, times: list[float], base: list[float] | None = None) -> None:
    share = ""
    if base is not None:
        share = f"{(statistics.median(times) / statistics.median(base)) * 100:>8.1f} %"
    print(
        f"{name:<52} {statistics.median(times) * 1e3:>9.4f} "
        f"{_percentile(times, 0.99) * 1e3:>9.4f}{share}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=3000, help="lookups per measurement")
    parser.add_argument("--reads", type=int, default=300, help="card reads per measurement")
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)")
    with tempfile.TemporaryDirectory() as tmp:
        config = embedded_config(Path(tmp) / "hcm-data", sam={"keys": str(KEYS)})
        with Middleware(config) as mw:
            cashier = mw.acting_as(Caller(user="c-1", role="cashier", terminal="till-1"))
            card = mw.terminal.read(EmulatedCard.from_files(PROFILE, KEYS))
            resident = mw.residents.enrol_from_card(card)
            number = card.issuer.card_number
            parts = sorted(p.value for p in cashier.terminal.read(EmulatedCard.from_files(
                PROFILE, KEYS)).parts)  # fmt: skip

            print(
                "\nmeasure (ms)                                              p50       p99   share"
            )
            unbound_read = _time(
                lambda: mw.terminal.read(EmulatedCard.from_files(PROFILE, KEYS), parts=parts),
                args.reads,
            )
            session_read = _time(
                lambda: cashier.terminal.read(EmulatedCard.from_files(PROFILE, KEYS)),
                args.reads,
            )
            _row("card read, unbound (the cashier's parts)", unbound_read)
            _row("card read through the cashier's session", session_read, unbound_read)

            lookup = mw.residents.lookup
            unbound = _time(lambda: lookup(IdentifierKind.CARD_NUMBER, number), args.n)
            bound = _time(lambda: cashier.residents.lookup(IdentifierKind.CARD_NUMBER, number),
                          args.n)  # fmt: skip
            found = lookup(IdentifierKind.CARD_NUMBER, number)
            assert found is not None
            assert found.resident_id == resident.resident_id

            def filter_only() -> None:
                if "residents.lookup" not in cashier.role.operations:
                    raise AssertionError
                plan = cashier._plan("residents.lookup", None, frozenset())
                cashier._cut(found, plan.visible)

            filtered = _time(filter_only, args.n)
            audit = mw.audit
            append = _time(
                lambda: audit.record("residents.lookup", actor="c-1", user="c-1", role="cashier",
                                     terminal="till-1", subject=resident.resident_id),
                args.n // 3,
            )  # fmt: skip
            _row("index lookup by card number, unbound", unbound)
            _row("index lookup through the cashier's session", bound, unbound)
            _row("  the role filter alone (check, plan, cut)", filtered, unbound)
            _row("  the session's audit entry (its own commit)", append, unbound)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

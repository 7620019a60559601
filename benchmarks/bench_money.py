"""Money benchmarks: journalled payments end to end, and the journal's own overhead.

    python benchmarks/bench_money.py                # SQLite and PostgreSQL, 400 payments
    python benchmarks/bench_money.py -n 2000 --no-postgres

Part 1 pays through the whole stack — journal (pending, sent, confirmed, each committed
durably), the hook dispatcher, the zeep adapter, HTTP on loopback, the reference bank
with its own SQLite ledger — and prints payments per second and latency percentiles,
with the journal on SQLite (a file, synchronous=FULL) and on PostgreSQL (a database of
its own, created and dropped here).

Part 2 measures what the journal adds: the same payments against a bank plugin that
answers at once in-process, minus the same hook calls made without the journal. That
difference is the journal's overhead per transaction (three commits and an audit-free
state history). Needs the ``soap`` extra and the two adapters installed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from hcm_bank_soap import BankSoap
from hcm_bank_soap.reference import serve

from hcmiddleware import hookimpl
from hcmiddleware.journal import Journal
from hcmiddleware.models import MoneyKind, PaymentRequest, PaymentResult, PaymentStatus
from hcmiddleware.runtime import Middleware
from hcmiddleware.testing.plugin import embedded_config

PG_URL = os.environ.get("HCM_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
CARD = "1100000000000001"


class InstantBank:
    """A bank plugin that confirms at once, in-process: isolates the journal's cost."""

    @hookimpl
    def hcm_bank_pay(self, request: PaymentRequest) -> PaymentResult:
        return PaymentResult(
            transaction_id=request.transaction_id,
            status=PaymentStatus.CONFIRMED,
            completed_at=datetime.now(UTC),
        )

    hcm_bank_top_up = hcm_bank_pay


def _pg_database() -> tuple[str, Callable[[], None]] | None:
    name = f"hcm_bench_money_{uuid.uuid4().hex[:8]}"
    try:
        admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        print(f"PostgreSQL not available ({type(exc).__name__}); skipped")
        return None

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    # set the database by name, so a URL with a query (a Unix socket: ?host=/run/...) works
    return sa.engine.make_url(PG_URL).set(database=name).render_as_string(False), drop


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _time_each(n: int, action: Callable[[int], Any]) -> list[float]:
    action(-1)  # warm up (first connection, first statement compilation)
    times = []
    for i in range(n):
        started = time.perf_counter()
        action(i)
        times.append(time.perf_counter() - started)
    return times


def end_to_end(db_url: str, work: Path, n: int) -> list[float]:
    """Journalled payments through zeep to the reference bank; seconds per payment."""
    server = serve(work / f"bank-{uuid.uuid4().hex[:6]}.db")
    server.service.ledger.bind(CARD, "6222000011112222", "110105198001010032")  # type: ignore[attr-defined]
    config = embedded_config(
        work / "hcm-data",
        database={"url": db_url},
        plugins={"bank-soap": {"wsdl": server.wsdl_url, "timeout": 5.0}},
    )
    try:
        with Middleware(config, plugins={"bank-soap": BankSoap()}) as mw:
            journal = Journal(mw)
            run = uuid.uuid4().hex[:6]
            journal.top_up(key=f"{run}-up", card_number=CARD, amount=Decimal(n + 10))
            return _time_each(
                n, lambda i: journal.pay(key=f"{run}-{i}", card_number=CARD, amount="1.00")
            )
    finally:
        server.stop()


def overhead(db_url: str, work: Path, n: int) -> tuple[list[float], list[float]]:
    """(journalled, bare hook) seconds per payment against the instant bank."""
    config = embedded_config(work / "hcm-data-instant", database={"url": db_url})
    with Middleware(config, plugins={"instant-bank": InstantBank()}) as mw:
        journal = Journal(mw)
        run = uuid.uuid4().hex[:6]
        journalled = _time_each(
            n, lambda i: journal.pay(key=f"{run}-j{i}", card_number=CARD, amount="1.00")
        )

        def bare(i: int) -> None:
            mw.hooks.hcm_bank_pay(
                request=PaymentRequest(
                    transaction_id=f"{run}-b{i}",
                    kind=MoneyKind.PAY,
                    card_number=CARD,
                    amount=Decimal("1.00"),
                )
            )

        return journalled, _time_each(n, bare)


def forced_commit(work: Path, n: int) -> list[float]:
    """Seconds per bare SQLite commit with synchronous=FULL in WAL: the disk's price."""
    import sqlite3

    db = sqlite3.connect(work / "fsync.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE t (x INTEGER)")

    def commit(i: int) -> None:
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO t VALUES (?)", (i,))
        db.execute("COMMIT")

    try:
        return _time_each(n, commit)
    finally:
        db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=400, help="payments per measurement")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hcm-bench-money-") as tmp:
        work = Path(tmp)
        databases: list[tuple[str, str, Callable[[], None] | None]] = [
            ("SQLite", f"sqlite:///{work / 'journal.db'}", None)
        ]
        if not args.no_postgres:
            pg = _pg_database()
            if pg is not None:
                databases.append(("PostgreSQL", pg[0], pg[1]))
        print(f"{args.n} payments each; latency in ms")
        print(f"{'journal on':<12} {'measure':<34} {'per s':>8} {'p50':>7} {'p99':>7}")
        try:
            for label, url, _ in databases:
                e2e = end_to_end(url, work, args.n)
                journalled, bare = overhead(url, work, args.n)
                rows = [
                    ("end to end (zeep, reference bank)", e2e),
                    ("journal + instant bank", journalled),
                    ("instant bank, no journal", bare),
                ]
                for name, times in rows:
                    print(
                        f"{label:<12} {name:<34} {len(times) / sum(times):>8.0f} "
                        f"{statistics.median(times) * 1e3:>7.2f} "
                        f"{_percentile(times, 0.99) * 1e3:>7.2f}"
                    )
                cost = statistics.median(journalled) - statistics.median(bare)
                mean = (sum(journalled) - sum(bare)) / len(journalled)
                print(
                    f"{label:<12} {'journal overhead per transaction':<34} "
                    f"{'':>8} {cost * 1e3:>7.2f}  (mean {mean * 1e3:.2f})"
                )
                if label == "SQLite":
                    disk = statistics.median(forced_commit(work, args.n))
                    print(
                        f"{label:<12} {'  of which one forced commit (disk)':<34} "
                        f"{'':>8} {disk * 1e3:>7.2f}  (bare sqlite3, same folder)"
                    )
        finally:
            for _, _, drop in databases:
                if drop is not None:
                    drop()


if __name__ == "__main__":
    main()

"""Audit log benchmarks: what an audited call costs, and how fast a chain verifies.

    python benchmarks/bench_audit.py                      # SQLite and PostgreSQL
    python benchmarks/bench_audit.py -n 5000 --entries 200000 --no-postgres

Part 1 — append overhead per audited call. Each call is made inside a write transaction
that is already open and has done its act (an insert, as the journal's state changes
do). An append's full cost is what ``mw.audit.record(…, connection=conn)`` takes plus
what the transaction's commit grows by (a bigger commit: the entry's rows in the
write-ahead log). Transactions with an entry and without one are taken in turn, so that
the machine's load falls on both alike; the full cost is then (record() + commit) less
the commit without an entry, percentile by percentile (an estimate: they are different
transactions). ``--not-durable`` commits without waiting for the disk, whose time is
alike with an entry or without and otherwise blurs the rest.
Side by side: the floor (a ``SELECT 1`` round trip in the same kind of transaction:
what any statement to the database costs on this machine now, scheduler included),
the peer, a plain logging sink (what ``mw.audit`` was before the chain: an
``AuditEvent`` handed to ``hcm_audit_event`` and written as a JSON line to a file),
the announcement the chain makes after the commit (the same hook call), and a
stand-alone ``mw.audit(…)`` with its own durable commit. Goal: p99 ≤ 0.3 ms in the
transaction. On a shared machine the tails follow its load: compare with the floor.

Part 2 — verification speed. A chain of ``--entries`` entries (default 1,000,000) is
written straight into the table with the chain's own encoding (appending a million
entries one by one would take the better part of an hour and measure nothing new), then
``verify`` checks every entry and link. Goal: ≥ 200,000 entries/s. The first row shows
the verifier's floor: the same rows read with the same query, nothing hashed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from hcmiddleware import storage
from hcmiddleware.audit import chain
from hcmiddleware.audit.tables import AuditLogRow
from hcmiddleware.audit.verify import _batches, verify_chain
from hcmiddleware.models import AuditEvent
from hcmiddleware.runtime import Middleware
from hcmiddleware.testing.plugin import embedded_config

_ACT = sa.text("INSERT INTO bench_acts (id, what) VALUES (:id, :what)")
PG_URL = os.environ.get("HCM_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _pg_database() -> tuple[str, Callable[[], None]] | None:
    name = f"hcm_bench_audit_{uuid.uuid4().hex[:8]}"
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


def _row(label: str, name: str, times: list[float]) -> None:
    print(
        f"{label:<11} {name:<48} {len(times) / sum(times):>9.0f} "
        f"{statistics.median(times) * 1e3:>7.3f} {_percentile(times, 0.9) * 1e3:>7.3f} "
        f"{_percentile(times, 0.99) * 1e3:>7.3f}"
    )


# --- part 1: appends ---------------------------------------------------------------------


def appends(label: str, url: str, work: Path, n: int, *, durable: bool = True) -> None:
    config = embedded_config(
        work / f"hcm-data-{uuid.uuid4().hex[:6]}",
        database={"url": url},
        audit={"checkpoint_every": 1000},
    )
    with Middleware(config) as mw:
        audit = mw.audit
        audit("bench.start", actor="bench")  # migrations, first connection, first checkpoint
        with mw.engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE bench_acts (id INTEGER PRIMARY KEY, what TEXT)"))
        # transactions without an entry and with one, in turn, so that the machine's load
        # falls on both alike
        modes = ["bare", "entry"]
        record: dict[str, list[float]] = {m: [] for m in modes}
        commit: dict[str, list[float]] = {m: [] for m in modes}
        announce: list[float] = []
        floor: list[float] = []
        warm_up = 20 * len(modes)
        for i in range((n + 20) * len(modes)):
            mode = modes[i % len(modes)]
            with storage.begin_write(mw.engine, durable=durable) as conn:
                # the act itself, which opens the transaction on the server
                conn.execute(_ACT, {"id": i, "what": "registered"})
                started = time.perf_counter()
                conn.exec_driver_sql("SELECT 1").scalar()
                round_trip = time.perf_counter() - started
                started = time.perf_counter()
                if mode != "bare":
                    audit.record(
                        "flow.outpatient.register",
                        actor="kiosk-03",
                        subject=f"r-{i % 997:04d}",
                        details={"department": "NEI", "queue_number": str(i)},
                        connection=conn,
                    )
                took = time.perf_counter() - started
                committing = time.perf_counter()  # the block's end: the commit
            committed = time.perf_counter() - committing
            started = time.perf_counter()
            audit.flush()  # the announcement, after the commit (and a checkpoint when due)
            if i >= warm_up:
                record[mode].append(took)
                commit[mode].append(committed)
                floor.append(round_trip)
                if mode != "bare":
                    announce.append(time.perf_counter() - started)
        alone = []
        for i in range(n // 4):
            started = time.perf_counter()
            audit("card.read", actor="kiosk-03", reader="R0", i=str(i))
            alone.append(time.perf_counter() - started)
        peer = _logging_peer(mw, work, n)
        _row(label, "floor: SELECT 1 in the transaction", floor)
        _row(label, "commit of the transaction, no entry", commit["bare"])
        both = [r + c for r, c in zip(record["entry"], commit["entry"], strict=True)]
        _row(label, "chain append inside the transaction: record()", record["entry"])
        _row(label, "  the commit of a transaction with an entry", commit["entry"])
        _row(label, "  record() + commit", both)
        _cost(label, "  full cost: (record() + commit) - commit alone", both, commit["bare"])
        _row(label, "the announcement after it (hcm_audit_event)", announce)
        _row(label, "peer: logging sink (event + hook + JSON line)", peer)
        _row(label, "stand-alone mw.audit() with its own commit", alone)


def _cost(label: str, name: str, with_entry: list[float], without: list[float]) -> None:
    """What an entry adds to its transaction, at each percentile: the percentile of
    (record() + commit) less that of the commit without an entry (an estimate: the two
    are different transactions, taken in turn)."""
    cells = [
        (statistics.median(with_entry) - statistics.median(without)) * 1e3,
        (_percentile(with_entry, 0.9) - _percentile(without, 0.9)) * 1e3,
        (_percentile(with_entry, 0.99) - _percentile(without, 0.99)) * 1e3,
    ]
    print(f"{label:<11} {name:<48} {'':>9} " + " ".join(f"{c:>7.3f}" for c in cells))


def _logging_peer(mw: Middleware, work: Path, n: int) -> list[float]:
    """What mw.audit did before: an AuditEvent to hcm_audit_event, logged as a JSON line."""
    logger = logging.getLogger("hcmiddleware.audit")
    handler = logging.FileHandler(work / f"audit-{uuid.uuid4().hex[:6]}.log", encoding="utf-8")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    times = []
    try:
        for i in range(n + 20):
            started = time.perf_counter()
            event = AuditEvent(
                at=datetime.now(UTC),
                actor="kiosk-03",
                action="flow.outpatient.register",
                subject=f"r-{i % 997:04d}",
                details={"department": "NEI", "queue_number": str(i)},
            )
            mw.dispatcher.call("hcm_audit_event", event=event)
            if i >= 20:
                times.append(time.perf_counter() - started)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        handler.close()
    return times


# --- part 2: verification ------------------------------------------------------------------


def _rows(count: int, algorithm: str) -> Iterator[dict[str, Any]]:
    """A chain of ``count`` realistic entries in the log's own encoding."""
    hashing = chain.digest(algorithm)
    prev = chain.GENESIS
    start = datetime(2026, 1, 1, 8, 0)
    for seq in range(1, count + 1):
        at = start + timedelta(microseconds=seq * 137_000)
        if seq % 3 == 0:
            action, subject, details = "card.read", None, {"reader": "Virtual PCD 00 00"}
        else:
            action, subject = "flow.outpatient.register", f"r-{seq % 99991:08x}"
            details = {"department": "NEI", "queue_number": str(seq % 500)}
        text = json.dumps(details, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        body = chain.canonical(
            seq, at, action, "kiosk-03", subject, "ok", None, None, "kiosk-03", text
        )
        new = hashing(prev + body)
        yield {
            "seq": seq, "at": at, "action": action, "actor": "kiosk-03", "subject": subject,
            "outcome": "ok", "user_id": None, "role": None, "terminal": "kiosk-03",
            "details": text, "prev_hash": prev, "hash": new,
        }  # fmt: skip
        prev = new


def build_chain(engine: sa.Engine, count: int, algorithm: str) -> float:
    """Write a chain straight into the table; seconds taken."""
    started = time.perf_counter()
    storage.upgrade(engine)
    table: sa.Table = AuditLogRow.__table__  # type: ignore[assignment]
    with engine.begin() as conn:
        conn.execute(table.delete())
        conn.execute(sa.text("DELETE FROM audit_checkpoints"))
        batch: list[dict[str, Any]] = []
        last = b""
        for row in _rows(count, algorithm):
            batch.append(row)
            if len(batch) == 20_000:
                conn.execute(table.insert(), batch)
                batch = []
            last = row["hash"]
        if batch:
            conn.execute(table.insert(), batch)
        conn.execute(
            sa.text("UPDATE audit_head SET seq = :n, hash = :h, algorithm = :a"),
            {"n": count, "h": last, "a": algorithm},
        )
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE audit_log"))
    return time.perf_counter() - started


def read_only(engine: sa.Engine, count: int) -> float:
    """Seconds to read the rows the verifier reads, with its query, hashing nothing."""
    started = time.perf_counter()
    seen = 0
    with engine.connect() as conn, conn.begin():
        for batch in _batches(conn, 1, count):
            seen += len(batch)
    assert seen == count
    return time.perf_counter() - started


def verification(label: str, url: str, count: int, algorithms: list[str]) -> None:
    engine = storage.create_engine(url)
    try:
        for algorithm in algorithms:
            built = build_chain(engine, count, algorithm)
            floor = read_only(engine, count)
            report = verify_chain(engine)
            assert report.ok, report.render()
            assert report.entries == count
            print(
                f"{label:<11} {algorithm:<7} {count:>9,} entries  built in {built:6.1f} s   "
                f"read only {count / floor:>9,.0f}/s   verified {count / report.seconds:>9,.0f}/s"
                f"  ({report.seconds:.2f} s)"
            )
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000, help="audited calls per measurement")
    parser.add_argument("--entries", type=int, default=1_000_000, help="chain to verify")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-sm3", action="store_true", help="verify SHA-256 chains only")
    parser.add_argument(
        "--not-durable",
        action="store_true",
        help="part 1: commit without waiting for the disk (as the journal's states do), "
        "so that the disk's time, alike with an entry or without, does not blur the rest",
    )
    parser.add_argument(
        "--part", choices=["all", "append", "verify"], default="all", help="run one part only"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hcm-bench-audit-") as tmp:
        work = Path(tmp)
        databases: list[tuple[str, str, Callable[[], None] | None]] = [
            ("SQLite", f"sqlite:///{work / 'audit.db'}", None)
        ]
        if not args.no_postgres:
            pg = _pg_database()
            if pg is not None:
                databases.append(("PostgreSQL", pg[0], pg[1]))
        try:
            # the machine may be shared: say how busy it was
            print(f"load average at start: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)")
            if args.part in ("all", "append"):
                print(f"part 1: {args.n} audited calls each; per second, p50, p90 and p99 in ms")
                print(
                    f"{'database':<11} {'measure':<48} {'per s':>9} {'p50':>7} {'p90':>7} "
                    f"{'p99':>7}"
                )
                for label, url, _ in databases:
                    appends(label, url, work, args.n, durable=not args.not_durable)
            if args.part == "append":
                return
            print(f"\npart 2: verifying a chain of {args.entries:,} entries")
            for label, _, _ in databases:
                url = (
                    f"sqlite:///{work / 'verify.db'}"
                    if label == "SQLite"
                    else next(u for lab, u, _ in databases if lab == label)
                )
                algorithms = ["sha256"] if args.no_sm3 or label != "SQLite" else ["sha256", "sm3"]
                verification(label, url, args.entries, algorithms)
        finally:
            print(f"load average at end: {os.getloadavg()[0]:.2f}")
            for _, _, drop in databases:
                if drop is not None:
                    drop()


if __name__ == "__main__":
    main()

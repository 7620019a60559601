"""Checking the chain: every entry against its hash and its neighbour, and the checkpoints.

One pass over the entries in number order, in one read transaction. The database builds
each entry's canonical text (:func:`~hcmiddleware.audit.chain.canonical_sql`), so the
pass hashes one string per row. Every entry stores the hash it follows, so a failing
entry tells what happened to it:

* **missing** — a number is absent: the entry was removed;
* **changed** — its content no longer gives its hash;
* **inserted** — entries that did not follow one another in the log now do;
* **reordered** — an entry stands where another one stood;
* **rewritten** — content and hashes were recomputed: the link to the next entry, the
  head, or a signed checkpoint kept elsewhere gives it away;
* **truncated** — the table ends before the head (or a checkpoint) says it did;
* **checkpoint** — a checkpoint's signature does not verify.

The report names the first wrong entry; a rewrite caught only by a checkpoint is placed
after the last checkpoint that still matches.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pydantic
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from hcmiddleware.audit import chain
from hcmiddleware.audit.signing import check_signature
from hcmiddleware.audit.tables import HEAD_ID, AuditCheckpointRow
from hcmiddleware.errors import AuditError, CheckpointFileError
from hcmiddleware.models import AuditCheckpoint

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

__all__ = ["Problem", "VerifyReport", "read_checkpoint_file", "verify_chain"]

#: problems listed in a report at most (the first one is what matters)
MAX_PROBLEMS = 100
_BATCH = 20_000
_ORDER = {
    "missing": 0,
    "reordered": 1,
    "inserted": 2,
    "changed": 3,
    "rewritten": 4,
    "truncated": 5,
    "checkpoint": 6,
}


@dataclass(frozen=True)
class Problem:
    """One thing wrong, at entry ``seq``: ``kind`` (see the module) and what was seen."""

    seq: int
    kind: str
    message: str

    def render(self) -> str:
        """``entry 57: changed — …``."""
        return f"entry {self.seq}: {self.kind} — {self.message}"


@dataclass
class VerifyReport:
    """What :meth:`Audit.verify <hcmiddleware.audit.Audit.verify>` found."""

    start: int
    end: int
    entries: int
    head: int
    algorithm: str | None
    checkpoints: int = 0
    unsigned_checkpoints: int = 0
    signing_expected: bool = False
    problems: list[Problem] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when nothing is wrong."""
        return not self.problems

    @property
    def first(self) -> Problem | None:
        """The first wrong entry (lowest number), or ``None``."""
        return self.problems[0] if self.problems else None

    def render(self) -> str:
        """The report as the ``hcm audit verify`` prints it."""
        span = f"entries {self.start}–{self.end}" if self.entries else "no entries"
        lines = [
            f"{span} checked ({self.algorithm or 'no chain yet'}), head at {self.head}; "
            f"{self.checkpoints} checkpoints, {self.unsigned_checkpoints} unsigned; "
            f"{self.seconds:.2f} s"
        ]
        if self.unsigned_checkpoints and self.signing_expected:
            lines.append(
                "note: unsigned checkpoints prove nothing; they were made before a "
                "signing key was configured, or by a terminal without one"
            )
        if self.ok:
            lines.append("ok: every entry is intact")
            return "\n".join(lines)
        first = self.problems[0]
        lines.append(f"FAILED: first bad entry {first.seq} ({first.kind}): {first.message}")
        lines += [f"  {p.render()}" for p in self.problems[1:]]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        """The report as plain data (``--json``)."""
        data = asdict(self)
        data["ok"] = self.ok
        data["first"] = asdict(self.first) if self.first else None
        return data


def read_checkpoint_file(path: Path) -> list[AuditCheckpoint]:
    """The checkpoints in a file the checkpoint sink wrote (one JSON object a line).

    :raises CheckpointFileError: it cannot be read, or a line is not a checkpoint.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise CheckpointFileError(
            f"cannot read checkpoint file {path} ({reason})", file=str(path)
        ) from None
    found: list[AuditCheckpoint] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            found.append(AuditCheckpoint.model_validate_json(line))
        except pydantic.ValidationError as exc:
            where = ".".join(str(p) for p in exc.errors()[0]["loc"]) or "the line"
            raise CheckpointFileError(
                f"line {number} of {path} is not a checkpoint ({where}: {exc.errors()[0]['msg']})",
                file=str(path),
                line=number,
                hint="the file was damaged or edited; verify against the database's "
                "checkpoints and a backup copy of the file",
            ) from None
    return found


# --- the walk -------------------------------------------------------------------------


def _batches(conn: Connection, lo: int, hi: int) -> Iterator[Sequence[Any]]:
    """``(seq, canonical text, prev_hash, hash)`` rows, in batches, through the driver."""
    dialect = conn.dialect.name
    sql = chain.canonical_sql(dialect)
    raw: Any = conn.connection.driver_connection
    if dialect == "postgresql":
        with raw.cursor(name=f"hcm_audit_{uuid.uuid4().hex[:12]}") as cursor:
            cursor.itersize = _BATCH
            cursor.execute(sql, {"lo": lo, "hi": hi})
            while batch := cursor.fetchmany(_BATCH):
                yield batch
        return
    cursor = raw.cursor()
    try:
        cursor.execute(sql, (lo, hi))
        while batch := cursor.fetchmany(_BATCH):
            yield batch
    finally:
        cursor.close()


_END = object()


def _prefetched(batches: Iterator[Sequence[Any]]) -> Iterator[Sequence[Any]]:
    """``batches``, fetched one ahead in a thread of their own.

    The database builds the next rows (the driver lets go of the interpreter meanwhile)
    while this thread hashes the current ones; on two cores that is most of the read
    time saved. The thread ends when the rows do, or when the caller stops early.
    """
    handoff: queue.Queue[Any] = queue.Queue(maxsize=2)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for batch in batches:
                if not put(batch):
                    return
            put(_END)
        except BaseException as exc:  # handed to the caller, never lost
            put(exc)
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=produce, name="hcm-audit-verify", daemon=True)
    worker.start()
    try:
        while True:
            item = handoff.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join()


@dataclass
class _Walk:
    """What one pass over the entries saw."""

    count: int = 0
    last: int | None = None
    gaps: list[tuple[int, int]] = field(default_factory=list)
    #: (seq, content gives its hash, follows the entry before (None: unknown), prev_hash)
    suspects: list[tuple[int, bool, bool | None, bytes]] = field(default_factory=list)
    #: stored hashes at the numbers checkpoints name
    at_checkpoints: dict[int, bytes] = field(default_factory=dict)


def _walk(
    conn: Connection, lo: int, hi: int, anchor: bytes | None, algorithm: str, wanted: set[int]
) -> _Walk:
    seen = _Walk()
    new = chain.constructor(algorithm)
    hashing = chain.digest(algorithm)
    expected, prev = lo, anchor
    suspects = seen.suspects
    count = 0
    last: int | None = None
    for batch in _prefetched(_batches(conn, lo, hi)):
        for seq, text, p, h in batch:
            if seq != expected or p != prev or new(p + text.encode()).digest() != h:
                if seq != expected:
                    seen.gaps.append((expected, seq - 1))
                    link: bool | None = None
                else:
                    link = None if prev is None else p == prev
                own = hashing(bytes(p) + text.encode("utf-8")) == bytes(h)
                if (not own or link is False) and len(suspects) < MAX_PROBLEMS:
                    suspects.append((seq, own, link, bytes(p)))
            if seq in wanted:
                seen.at_checkpoints[seq] = bytes(h)
            prev, expected = h, seq + 1
            last = seq
        count += len(batch)
    seen.count, seen.last = count, last
    return seen


def _hash_index(conn: Connection, lo: int, hi: int) -> dict[bytes, int]:
    """Stored hash → entry number, over the range (only when something is wrong)."""
    rows = conn.execute(
        sa.text("SELECT seq, hash FROM audit_log WHERE seq >= :lo AND seq <= :hi"),
        {"lo": lo, "hi": hi},
    )
    return {bytes(h): int(s) for s, h in rows}


def _classify(
    suspects: list[tuple[int, bool, bool | None, bytes]], index: Mapping[bytes, int]
) -> list[Problem]:
    problems: list[Problem] = []
    for seq, own, link, prev in suspects:
        source = index.get(prev)
        if source is not None and source != seq - 1:
            if source < seq - 1:
                problems.append(
                    Problem(
                        source + 1,
                        "inserted",
                        f"entries {source + 1}–{seq - 1} were put in between: entry {seq} "
                        f"was written to follow entry {source}",
                    )
                )
            else:
                problems.append(
                    Problem(
                        seq,
                        "reordered",
                        f"entry {seq} holds the entry that followed entry {source}: the "
                        "entries were reordered",
                    )
                )
        elif not own and link is not False:
            problems.append(
                Problem(seq, "changed", "its content does not match its hash: it was edited")
            )
        elif not own:
            problems.append(
                Problem(
                    seq,
                    "changed",
                    "neither its content nor its link matches: it was edited, or entries "
                    "before it were removed and the rest renumbered",
                )
            )
        else:
            problems.append(
                Problem(
                    max(seq - 1, 1),
                    "rewritten",
                    f"entry {seq} does not follow it: entry {seq - 1} was rewritten with a "
                    f"recomputed hash (or entry {seq}'s link was)",
                )
            )
    return problems


def _anchor(conn: Connection, lo: int) -> bytes | None:
    if lo <= 1:
        return chain.GENESIS
    row = conn.execute(
        sa.text("SELECT hash FROM audit_log WHERE seq = :seq"), {"seq": lo - 1}
    ).first()
    return None if row is None else bytes(row[0])


def verify_chain(
    engine: Engine,
    *,
    start: int | None = None,
    end: int | None = None,
    external: Iterable[tuple[str, AuditCheckpoint]] = (),
    keys: Mapping[str, Ed25519PublicKey] | None = None,
    signing_expected: bool = False,
) -> VerifyReport:
    """Check entries ``start``..``end`` (default: all) and the checkpoints that fall in it.

    ``external`` are checkpoints kept outside the table, each with where it came from;
    the table's own checkpoints are always checked. ``keys`` are the public keys
    signatures are checked with, by key ID.
    """
    began = time.perf_counter()
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            head = conn.execute(
                sa.text("SELECT seq, hash, algorithm FROM audit_head WHERE id = :id"),
                {"id": HEAD_ID},
            ).first()
            if head is None:
                raise AuditError(
                    "the audit log's head row is missing: the tables were emptied by hand",
                    hint="restore the database from a backup; the checkpoint file still "
                    "tells how far the log went",
                )
            head_seq, head_hash, algorithm = int(head[0]), head[1], head[2]
            top = conn.execute(sa.text("SELECT max(seq) FROM audit_log")).scalar()
            top = int(top) if top is not None else 0
            lo = max(start or 1, 1)
            hi = end if end is not None else max(head_seq, top)
            to_the_end = end is None or end >= max(head_seq, top)
            stored = [
                ("database", c)
                for c in _table_checkpoints(conn)
                if (lo <= c.seq <= hi) or (to_the_end and c.seq > hi)
            ]
            others = [(src, c) for src, c in external if lo <= c.seq or to_the_end]
            checkpoints = stored + others
            report = VerifyReport(
                start=lo,
                end=hi,
                entries=0,
                head=head_seq,
                algorithm=algorithm,
                signing_expected=signing_expected,
            )
            if algorithm is None and top == 0 and not checkpoints:
                report.end = 0
                report.seconds = time.perf_counter() - began
                return report
            problems: list[Problem] = []
            anchor = _anchor(conn, lo)
            if anchor is None:
                problems.append(Problem(lo - 1, "missing", "the entry before the range is gone"))
            wanted = {c.seq for _, c in checkpoints}
            walk = _walk(conn, lo, hi, anchor, algorithm or "sha256", wanted)
            report.entries = walk.count
            for first, last in walk.gaps:
                span = f"entry {first} is" if first == last else f"entries {first}–{last} are"
                problems.append(Problem(first, "missing", f"{span} gone: removed from the table"))
            if walk.suspects:
                problems += _classify(walk.suspects, _hash_index(conn, lo, hi))
            last_seen = walk.last if walk.last is not None else lo - 1
            if to_the_end and last_seen < head_seq:
                problems.append(
                    Problem(
                        last_seen + 1,
                        "truncated",
                        f"the table ends at entry {last_seen} but the head counts "
                        f"{head_seq}: entries {last_seen + 1}–{head_seq} were cut off",
                    )
                )
            if to_the_end and top > head_seq:
                problems.append(
                    Problem(
                        head_seq + 1,
                        "inserted",
                        f"entries {head_seq + 1}–{top} lie past the head ({head_seq}): "
                        "added to the table, not through the log",
                    )
                )
            if (
                to_the_end
                and head_hash is not None
                and head_seq in walk.at_checkpoints
                and walk.at_checkpoints[head_seq] != bytes(head_hash)
            ):
                problems.append(
                    Problem(
                        head_seq,
                        "rewritten",
                        f"entry {head_seq}'s hash is not the one the head recorded: the log "
                        "was rewritten with recomputed hashes",
                    )
                )
            elif to_the_end and head_hash is not None and head_seq not in wanted:
                row = conn.execute(
                    sa.text("SELECT hash FROM audit_log WHERE seq = :seq"), {"seq": head_seq}
                ).first()
                if row is not None and bytes(row[0]) != bytes(head_hash):
                    problems.append(
                        Problem(
                            head_seq,
                            "rewritten",
                            f"entry {head_seq}'s hash is not the one the head recorded: the "
                            "log was rewritten with recomputed hashes",
                        )
                    )
    problems += _check_checkpoints(
        report, checkpoints, walk, last_seen, to_the_end, keys or {}, problems
    )
    report.problems = _first_each(problems)
    report.seconds = time.perf_counter() - began
    return report


def _table_checkpoints(conn: Connection) -> list[AuditCheckpoint]:
    from hcmiddleware.audit.service import checkpoint_from_row

    table: sa.Table = AuditCheckpointRow.__table__  # type: ignore[assignment]
    rows = conn.execute(sa.select(table).order_by(table.c.seq))
    return [checkpoint_from_row(row) for row in rows]


def _check_checkpoints(
    report: VerifyReport,
    checkpoints: list[tuple[str, AuditCheckpoint]],
    walk: _Walk,
    last_seen: int,
    to_the_end: bool,
    keys: Mapping[str, Ed25519PublicKey],
    found: list[Problem],
) -> list[Problem]:
    """Signatures, and each checkpoint against the entry it names.

    A checkpoint that no longer matches is explained by a problem the walk already
    found between the last matching checkpoint and it; otherwise the entries in between
    were rewritten, hashes and all, and only the checkpoint shows it.
    """
    problems: list[Problem] = []
    trusted: list[tuple[str, AuditCheckpoint, bool]] = []
    for source, cp in sorted(checkpoints, key=lambda item: item[1].seq):
        report.checkpoints += 1
        if cp.signature is None:
            report.unsigned_checkpoints += 1
        else:
            wrong = check_signature(cp, keys)
            if wrong is not None:
                problems.append(
                    Problem(
                        cp.seq, "checkpoint", f"the checkpoint at {cp.seq} in {source}: {wrong}"
                    )
                )
                continue
        if report.algorithm is not None and cp.algorithm != report.algorithm:
            problems.append(
                Problem(
                    cp.seq,
                    "checkpoint",
                    f"the checkpoint at {cp.seq} in {source} is of a {cp.algorithm} chain; "
                    f"this one is {report.algorithm}",
                )
            )
            continue
        if cp.seq > last_seen:
            if to_the_end:
                problems.append(
                    Problem(
                        last_seen + 1,
                        "truncated",
                        f"the checkpoint made {cp.at:%Y-%m-%d %H:%M:%S} UTC ({source}) "
                        f"shows the log held {cp.seq} entries; the table ends at {last_seen}",
                    )
                )
            continue
        stored = walk.at_checkpoints.get(cp.seq)
        if stored is None:
            continue  # that entry is missing: reported as such
        trusted.append((source, cp, stored.hex() == cp.hash))
    matching = [cp.seq for _, cp, same in trusted if same]
    for source, cp, same in trusted:
        if same:
            continue
        # the last checkpoint before this one that still matches (not one beside it:
        # an unsigned checkpoint at the same entry that agrees with a rewrite proves nothing)
        first = max((seq for seq in matching if seq < cp.seq), default=report.start - 1) + 1
        if any(first <= p.seq <= cp.seq for p in found):
            continue
        problems.append(
            Problem(
                first,
                "rewritten",
                f"entry {cp.seq}'s hash is not the one checkpointed "
                f"{cp.at:%Y-%m-%d %H:%M:%S} UTC ({source}): the entries from {first} to "
                f"{cp.seq} were rewritten, hashes and all",
            )
        )
    return problems


def _first_each(problems: list[Problem]) -> list[Problem]:
    seen: set[tuple[int, str]] = set()
    unique = []
    for p in sorted(problems, key=lambda p: (p.seq, _ORDER.get(p.kind, 9))):
        if (p.seq, p.kind) in seen:
            continue
        seen.add((p.seq, p.kind))
        unique.append(p)
    return unique[:MAX_PROBLEMS]


def problems_json(report: VerifyReport) -> str:
    """The report as indented JSON."""
    return json.dumps(report.as_dict(), indent=2, ensure_ascii=False)

"""The bulk initial load (``hcm empi import --bulk``): a hospital's files into the index.

The ordinary import enrols batch after batch, and each batch first reads from the
database what it may need (identifier holders, block members, the residents among
them, decrypted). A first load of a million records pays that read a hundred times
over. The bulk load instead:

* prepares the rows (validation, normalisation, keyed hashes) in a pool of processes,
  one per core, while the main process matches the rows prepared before;
* holds the index's matching state in memory for the whole load — block members,
  identifier holders, the residents it made — so a batch reads nothing back;
* matches every record with the **same rules and code** as the ordinary path
  (:meth:`Enrolling._enrol_in`), in file order: it makes the same links and opens the
  same review items (a test compares the two on the same file);
* writes each batch in one transaction, the rows of a table in one ``executemany``
  (``COPY`` on PostgreSQL), and records its progress in ``empi_bulk_loads``.

While the load runs, the index refuses other writers (:class:`BulkLoadRunningError`):
what they wrote would not be in the load's memory. A load that stops midway (a crash,
Ctrl-C, a full disk) leaves every committed batch complete and the marker ``running``;
running the same command again resumes: it reads the state back, skips the records
already in, and goes on. When it ends the marker says ``done`` and the index takes
writes again, with every possible duplicate linked or in the review queue, as after
an ordinary import.

Before matching, the term frequencies (names, birth dates, phones, addresses) are
learnt from the file's records (those the index has none of yet), so the term-frequency
adjustment applies from the first row.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import multiprocessing
import os
import signal
import sys
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hcmiddleware import storage
from hcmiddleware.empi.csvfile import RowIssue, read_records
from hcmiddleware.empi.importer import (
    PLACEHOLDERS,
    ImportReport,
    Writer,
    _Item,
    _no_row,
    inline_preparation,
    open_import,
    parse_birth_date,
    prepare_row,
    run_import,
)
from hcmiddleware.empi.index import PreparedRecord, ResidentIndex
from hcmiddleware.empi.normalize import normalize_address, normalize_display_name, normalize_phone
from hcmiddleware.empi.records import Enrolment
from hcmiddleware.empi.schema import ResidentStatus, new_id
from hcmiddleware.empi.store import (
    BLOCKS,
    BULK_LOADS,
    IDENTIFIERS,
    RESIDENTS,
    REVIEWS,
    SOURCES,
    BatchStore,
    RowCodec,
    bulk_insert,
    now_for,
)
from hcmiddleware.errors import BulkLoadRunningError, IdentityError, ResidentIndexError

__all__ = ["MemoryStore", "bulk_import", "frequency_records"]

RUNNING = "running"
DONE = "done"

#: Rows a worker prepares per task.
_CHUNK_ROWS = 2000
#: SQLite page cache of the load's connection, in KiB.
_SQLITE_CACHE_KIB = 1 << 20


class MemoryStore(BatchStore):
    """The index's matching state in memory for a whole load, written batch by batch.

    A :class:`BatchStore` that is never emptied: block members, identifier holders,
    source records and residents stay known across batches, so a batch reads nothing
    from the database. :meth:`load` reads the state of an index that is not empty (a
    resumed load) once, at the start; residents are decrypted only when a record's
    blocks make them candidates. Review items are queued like the other rows and
    written at :meth:`flush` (their ids are not known before).
    """

    def __init__(self, codec: RowCodec, conn: Connection, *, max_block: int) -> None:
        super().__init__(codec, conn, max_block=max_block)
        self._pending["reviews"] = []

    def attach(self, conn: Connection) -> None:
        """Work in this transaction from now on (one per batch)."""
        self.conn = conn
        self.now = now_for(conn)

    def load(self, conn: Connection, source: str) -> int:
        """Read what the index holds already: block members, identifier holders (through
        merges), the records of ``source``. Returns how many residents it has."""
        status: dict[str, tuple[str, str | None]] = {
            rid: (state, into)
            for rid, state, into in conn.execute(
                sa.select(RESIDENTS.c.id, RESIDENTS.c.status, RESIDENTS.c.merged_into)
            )
        }

        def survivor(resident_id: str) -> str:
            seen = set()
            while status[resident_id][0] != ResidentStatus.ACTIVE and resident_id not in seen:
                seen.add(resident_id)
                resident_id = status[resident_id][1] or resident_id
            return resident_id

        for key, resident_id in conn.execute(sa.select(BLOCKS.c.key_bidx, BLOCKS.c.resident_id)):
            self._members.setdefault(key, []).append(resident_id)
        for kind, issuer, bidx, resident_id in conn.execute(
            sa.select(
                IDENTIFIERS.c.kind,
                IDENTIFIERS.c.issuer,
                IDENTIFIERS.c.value_bidx,
                IDENTIFIERS.c.resident_id,
            )
        ):
            self._holders[(kind, issuer, bidx)] = survivor(resident_id)
        for record_id, resident_id in conn.execute(
            sa.select(SOURCES.c.record_id, SOURCES.c.resident_id).where(SOURCES.c.source == source)
        ):
            self._sources[(source, record_id)] = survivor(resident_id)
        return len(status)

    def known(self, source: str, record_ids: Iterable[str]) -> set[str]:
        """Which of these records of ``source`` are in the index."""
        return {rid for rid in record_ids if (source, rid) in self._sources}

    def add_reviews(self, rows: list[dict[str, Any]]) -> list[int]:
        """Queue review items; written after the residents they name, at :meth:`flush`."""
        self._pending["reviews"].extend(rows)
        return [0] * len(rows)  # the count is what a load reports; ids come at the flush

    def flush(self) -> None:
        """Write everything queued, parents first, then the review items."""
        super().flush()
        if self._pending["reviews"]:
            bulk_insert(self.conn, REVIEWS, self._pending["reviews"])
            self._pending["reviews"] = []


class _BulkWriter(Writer):
    """Writes batches through the :class:`MemoryStore`, recording progress with each."""

    refreshes = False  # nothing is read back during the load

    def __init__(self, index: ResidentIndex, store: MemoryStore, load_id: str) -> None:
        super().__init__(index)
        self.store = store
        self.load_id = load_id

    def known(self, source: str, record_ids: list[str]) -> set[str]:
        return self.store.known(source, record_ids)

    def write(
        self, batch: list[PreparedRecord], rows_done: int
    ) -> list[Enrolment | ResidentIndexError]:
        with storage.begin_write(self.index._engine) as conn:
            if conn.dialect.name == "sqlite":
                # The indexes of random keys grow past SQLite's default 2 MB page cache
                # within the first batches; every insert then reads and writes pages all
                # over the file. A large cache for the load's connection keeps them.
                conn.exec_driver_sql(f"PRAGMA cache_size = -{_SQLITE_CACHE_KIB}")
            self.store.attach(conn)
            results: list[Enrolment | ResidentIndexError] = []
            for prepared in batch:
                try:
                    results.append(self.index._enrol_in(self.store, prepared))
                except ResidentIndexError as exc:
                    results.append(exc)
            self.store.flush()
            conn.execute(
                sa.update(BULK_LOADS)
                .where(BULK_LOADS.c.id == self.load_id)
                .values(rows_done=rows_done, updated_at=self.store.now)
            )
        return results


# --- preparation in a pool of processes ------------------------------------------------

# What the workers prepare with: set in the parent before the pool starts, inherited by
# the forked workers (so the keys are never pickled or sent through a pipe).
_WORKER: tuple[ResidentIndex, str] | None = None


def _prepare_chunk(rows: list[dict[str, str]]) -> list[Any]:
    """In a worker: each row prepared, or the typed error that refuses it, as data."""
    assert _WORKER is not None
    index, source = _WORKER
    out: list[Any] = []
    for row in rows:
        try:
            out.append(prepare_row(index, row, source))
        except IdentityError as exc:
            out.append(("identity", exc.field, exc.message, exc.hint))
        except ResidentIndexError as exc:
            out.append(("index", "", exc.message, exc.hint))
    return out


def _result(value: Any) -> Callable[[], PreparedRecord]:
    def get() -> PreparedRecord:
        if isinstance(value, PreparedRecord):
            return value
        kind, field, message, hint = value
        if kind == "identity":
            raise IdentityError(message, field=field, hint=hint)
        raise ResidentIndexError(message, hint=hint)

    return get


def pooled_preparation(
    records: Iterable[tuple[int, dict[str, str] | None, RowIssue | None]],
    pool: concurrent.futures.Executor,
    workers: int,
) -> Iterator[_Item]:
    """Each record with its preparation done in ``pool``, in file order; a few chunks are
    prepared ahead of the one being matched, never the whole file (memory stays flat)."""
    ahead: deque[tuple[list[tuple[int, dict[str, str] | None, RowIssue | None]], Any]] = deque()
    chunk: list[tuple[int, dict[str, str] | None, RowIssue | None]] = []

    def submit() -> None:
        rows = [row for _line, row, _issue in chunk if row is not None]
        ahead.append((list(chunk), pool.submit(_prepare_chunk, rows)))
        chunk.clear()

    def drain() -> Iterator[_Item]:
        items, future = ahead.popleft()
        prepared = iter(future.result())
        for line, row, issue in items:
            if row is None:
                yield line, None, issue, _no_row
            else:
                yield line, row, issue, _result(next(prepared))

    for record in records:
        chunk.append(record)
        if len(chunk) >= _CHUNK_ROWS:
            submit()
            if len(ahead) > 2 * workers:
                yield from drain()
    if chunk:
        submit()
    while ahead:
        yield from drain()


# --- the load --------------------------------------------------------------------------


def _begin(index: ResidentIndex, source: str) -> tuple[str, bool]:
    """The load's marker: a new one, or the one of this source that stopped midway."""
    with storage.begin_write(index._engine) as conn:
        running = conn.execute(
            sa.select(BULK_LOADS.c.id, BULK_LOADS.c.source).where(BULK_LOADS.c.state == RUNNING)
        ).first()
        if running is not None:
            if running.source != source:
                raise BulkLoadRunningError(
                    f"a bulk load of {running.source} is running or stopped midway; "
                    f"{source} can be loaded when it has ended",
                    source=running.source,
                    hint=f"resume the load of {running.source} first (the same command "
                    "and file), then load this file",
                )
            return str(running.id), True
        load_id = new_id()
        now = now_for(conn)
        conn.execute(
            sa.insert(BULK_LOADS).values(
                id=load_id, source=source, state=RUNNING, rows_done=0,
                started_at=now, updated_at=now,
            )
        )  # fmt: skip
        return load_id, False


def frequency_records(rows: Iterable[dict[str, str]]) -> Iterator[dict[str, Any]]:
    """A file's rows (CSV column → text) as the values the term frequencies count:
    normalised as the import normalises them, placeholders and unreadable values left
    out (see :meth:`~hcmiddleware.empi.training.Training.learn_frequencies`)."""
    for row in rows:
        clean = {
            k: "" if (v or "").strip().lower() in PLACEHOLDERS else (v or "")
            for k, v in row.items()
            if k in ("name", "birth_date", "phone", "address")
        }
        try:
            born = parse_birth_date(clean.get("birth_date") or "")
        except ValueError:
            born = None
        phone = clean.get("phone") or ""
        address = clean.get("address") or ""
        yield {
            "name": normalize_display_name(clean.get("name") or "") or None,
            "birth_date": born,
            "phone": (normalize_phone(phone) or None) if phone else None,
            "address": normalize_address(address) if address.strip() else None,
        }


def _die_with(parent: int) -> None:
    """A preparation worker ends when the load that forked it dies.

    A worker waits on the pool's queue, whose pipe it holds both ends of, so a load
    killed outright (SIGKILL, the OOM killer) would leave it waiting for ever, holding
    the index's keys in memory. On Linux the kernel kills it with its parent.
    """
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)


def bulk_import(
    index: ResidentIndex,
    path: Path,
    *,
    source: str | None = None,
    encoding: str = "auto",
    batch_size: int = 20000,
    workers: int | None = None,
    learn_frequencies: bool | Collection[str] = True,
    progress: Callable[[int], None] | None = None,
    on_enrolled: Callable[[Enrolment], object] | None = None,
) -> ImportReport:
    """Load a CSV file in bulk: the same records kept, links made and reviews opened as
    :func:`~hcmiddleware.empi.importer.import_csv`, in less time (see the module).

    ``workers`` processes prepare the rows (default: one per core; ``0`` prepares in
    this process). ``learn_frequencies``: learn the term frequencies the index has
    none of yet from the file first (a collection of fields: only those fields').
    ``progress`` is called with the rows handled after each batch. Raises
    :class:`BulkLoadRunningError` when a load of another source is running or stopped
    midway; a load of the same source that stopped is resumed.
    """
    decoded, header, source = open_import(path, encoding, source)
    load_id, resumed = _begin(index, source)
    if learn_frequencies and not resumed:
        wanted = None if learn_frequencies is True else set(learn_frequencies)
        missing = [
            c.field
            for c in index.model.comparisons
            if c.tf_key is not None
            and c.field not in index.model.frequencies
            and (wanted is None or c.field in wanted)
        ]
        if missing:
            rows = (row for _line, row, _issue in read_records(decoded, header) if row)
            index.learn_frequencies(frequency_records(rows), fields=missing)
    with index._engine.connect() as conn:
        store = MemoryStore(index._codec, conn, max_block=index._max_block)
        store.load(conn, source)
    writer = _BulkWriter(index, store, load_id)
    report = ImportReport(encoding=decoded.encoding)
    records = read_records(decoded, header)
    workers = (os.cpu_count() or 1) if workers is None else workers
    global _WORKER
    if workers <= 0:
        items: Iterable[_Item] = inline_preparation(index, records, source)
        run_import(writer, items, source, report, batch_size=batch_size,
                   progress=progress, on_enrolled=on_enrolled)  # fmt: skip
    else:
        _WORKER = (index, source)
        try:
            context = multiprocessing.get_context("fork")
            with concurrent.futures.ProcessPoolExecutor(
                workers, mp_context=context, initializer=_die_with, initargs=(os.getpid(),)
            ) as pool:
                items = pooled_preparation(records, pool, workers)
                run_import(writer, items, source, report, batch_size=batch_size,
                           progress=progress, on_enrolled=on_enrolled)  # fmt: skip
        finally:
            _WORKER = None
    with storage.begin_write(index._engine) as conn:
        now = now_for(conn)
        conn.execute(
            sa.update(BULK_LOADS)
            .where(BULK_LOADS.c.id == load_id)
            .values(state=DONE, rows_done=report.rows, updated_at=now, finished_at=now)
        )
    return report

"""The write heart: validate -> COPY -> one set-based merge, all stored in one transaction.

Two paths, one result (the oracle tests run both):

* direct (``TSM_INGEST_DIRECT``, the default for input that can be read twice): one transaction holds
  the merge lock from the start; each batch's rows *proven new* (key once in the batch, series span
  clear of the registry and of earlier batches) are COPYed straight into the dataset, the rest into a
  staging table merged at the end as below. A staged row that gives a COPYed key other values sends
  the load, rolled back, down the staged path. Measured 2026-11-26: see bench/README.md.
* staged: parsing, validation and COPY into an unlogged staging table happen outside the merge
  transaction.

The merge takes a per-dataset advisory lock, stamps every stored row with one ``recorded_at`` and either

* fast path: appends the staging table as is, when it provably holds no key twice and no key that
  is already stored (per-series time ranges from the series registry do not overlap), or
* revision path: keeps one row per (key, known_at), drops rows equal to the version current for
  their (key, known_at) ("duplicates"), and inserts the rest as new versions ("inserted" for keys
  never seen, "revised" for keys that already had a version).

A crash anywhere leaves the datasets untouched: the merge is one transaction and staging tables are
private to the load (``ingestion_stale_staging`` lists leftovers to drop).
"""
from __future__ import annotations

import logging
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Callable, Iterator

import numpy as np
import pgpq
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from psycopg import sql
from psycopg.copy import QueuedLibpqWriter

from ingestion import parsers, replay
from ingestion.checks import InputError, RowError, check_columns, prepare_batch, prepared_as_is
from ingestion.models import Load, RejectedRow
from timeseries.cache import generation_bump
from timeseries.changes import changes_record
from timeseries.datasets import CheckContext, Dataset, get_dataset
from timeseries.sqltext import identifiers

logger = logging.getLogger(__name__)

ON_ERROR_MODES = ("reject", "skip")
MAX_REPORTED_ERRORS = 1000
STAGING_PREFIX = "ingest_stage_"


@dataclass
class LoadResult:
    load_id: uuid.UUID
    dataset: str
    rows_read: int = 0
    inserted: int = 0
    revised: int = 0
    duplicates: int = 0
    rejected: int = 0
    errors: list[RowError] = field(default_factory=list)  # the first MAX_REPORTED_ERRORS
    recorded_at: datetime | None = None
    replay_of: uuid.UUID | None = None  # the replay shortcut was taken: the earlier load of the same bytes
    replay_note: str = ""
    change_watermark: int | None = None
    spans: list | None = None
    copied: int = 0  # of ``inserted``: rows COPYed straight into the dataset (no staging, see _direct)
    restarted: str = ""  # why a direct pass was rolled back and the load redone through staging

    def counts(self) -> dict[str, int]:
        return {"inserted": self.inserted, "revised": self.revised, "duplicates": self.duplicates, "rejected": self.rejected}


class LoadRejected(Exception):
    """The input had bad rows and on_error="reject": nothing was stored."""

    def __init__(self, result: LoadResult):
        self.result = result
        shown = "; ".join(str(e) for e in result.errors[:5])
        more = f" (and {result.rejected - 5} more bad rows)" if result.rejected > 5 else ""
        super().__init__(f"{result.rejected} bad row(s), nothing stored: {shown}{more}")


# --- entry points -------------------------------------------------------------------------------


def ingest_file(
    *,
    dataset: str,
    path: str | Path | IO[bytes] | bytes,
    fmt: str | None = None,
    bar_interval: timedelta = timedelta(minutes=1),
    on_error: str = "reject",
    progress: Callable[[int], None] | None = None,
    source: str | None = None,
    on_phase: Callable[[str, uuid.UUID], None] | None = None,
) -> LoadResult:
    """Load a CSV / Parquet / NDJSON file (optionally gzip-compressed) into ``dataset``.

    ``progress(rows_read)`` is called after each chunk; ``on_phase(phase, load_id)`` with
    "validating" when the load starts and "loading" when rows start going into the dataset: when the
    merge begins, or on the direct path (which validates and COPYs batch by batch) once it holds the
    merge lock.
    """
    spec = get_dataset(dataset)
    name = source or (str(path) if isinstance(path, (str, Path)) else "stream")
    readable, digest, opened = replay.replay_prepare(
        source=path, dataset=spec.name, bar_interval=bar_interval, on_error=on_error, fmt=fmt
    )
    start = path.tell() if hasattr(path, "seekable") and path.seekable() else None

    def reread() -> Iterator[pa.RecordBatch]:  # after a whole first read (the digest is complete by then)
        if start is not None:
            path.seek(start)
        return parsers.read_batches(path, dataset=spec, fmt=fmt, batch_rows=settings.TSM_INGEST_BATCH_ROWS)

    rereadable = isinstance(path, (str, Path, bytes, bytearray)) or start is not None
    try:
        batches = parsers.read_batches(readable, dataset=spec, fmt=fmt, batch_rows=settings.TSM_INGEST_BATCH_ROWS)
        return _ingest(
            spec, batches, source=name, bar_interval=bar_interval, on_error=on_error, progress=progress,
            on_phase=on_phase, digest=digest, reread=reread if rereadable else None,
        )
    finally:
        if opened is not None:
            opened.close()


def ingest_table(
    *,
    dataset: str,
    data,
    bar_interval: timedelta = timedelta(minutes=1),
    on_error: str = "reject",
    source: str = "table",
    validated: bool = False,
) -> LoadResult:
    """Load an in-memory Arrow table, pandas DataFrame or list of dicts into ``dataset``.

    ``validated=True``: ``data`` holds good rows exactly as ``checks.prepare_batch`` made them (typed
    columns, known_at filled in) — the write API's buffered batches, checked when they were accepted,
    with the bar interval the client gave then. They are staged as they are: checking them again
    would cost a tenth of a flush and judge them by this call's ``bar_interval``."""
    spec = get_dataset(dataset)
    table = parsers.as_table(data)  # converted once: a second pass (see _direct) reads it again

    def batches() -> Iterator[pa.RecordBatch]:
        return parsers.table_batches(table, batch_rows=settings.TSM_INGEST_BATCH_ROWS)

    return _ingest(
        spec, batches(), source=source, bar_interval=bar_interval, on_error=on_error, progress=None,
        validated=validated, reread=batches,
    )


# --- the pipeline -------------------------------------------------------------------------------


@dataclass
class _SeriesRanges:
    """Per-series event-time spans of each staged batch, to prove which rows can be appended as is."""

    spans: dict[tuple, list[tuple[datetime, datetime]]] = field(default_factory=dict)
    any_multi: bool = False

    def add(self, table: pa.Table, spec: Dataset) -> None:
        """Note the spans of one key-sorted batch in staging columns (``multi`` marks repeated keys)."""
        self.any_multi |= bool(pc.any(table.column("multi")).as_py())
        agg = table.group_by(list(spec.series)).aggregate([("time", "min"), ("time", "max")])
        keys = zip(*(agg.column(c).to_pylist() for c in spec.series))
        for key, lo, hi in zip(keys, agg.column("time_min").to_pylist(), agg.column("time_max").to_pylist()):
            self.spans.setdefault(key, []).append((lo, hi))

    def straddling(self) -> set[tuple]:
        """Series whose batches overlap in event time: a key of theirs may sit in two batches."""
        out = set()
        for key, spans in self.spans.items():
            spans.sort()
            if any(a[1] >= b[0] for a, b in zip(spans, spans[1:])):
                out.add(key)
        return out

    def union(self, other: _SeriesRanges | None) -> _SeriesRanges:
        if other is None:
            return self
        spans = {k: list(v) for k, v in self.spans.items()}
        for key, more in other.spans.items():
            spans.setdefault(key, []).extend(more)
        return _SeriesRanges(spans=spans, any_multi=self.any_multi or other.any_multi)

    def bounds(self) -> dict[tuple, tuple[datetime, datetime]]:
        return {k: (min(s[0] for s in v), max(s[1] for s in v)) for k, v in self.spans.items()}


def sort_by_key(table: pa.Table, key: tuple[str, ...]) -> tuple[pa.Table, np.ndarray]:
    """``table`` sorted by ``key``, and the mask of its rows whose key occurs more than once.

    Staging rows in key order makes the merge insert into the version index in order (the version
    index starts with the key), instead of touching a different leaf page for every row of a
    time-major file.
    """
    n = table.num_rows
    if n < 2:
        return table, np.zeros(n, dtype=bool)
    ordered = table.take(pc.sort_indices(table, sort_keys=[(k, "ascending") for k in key]))
    same = np.ones(n - 1, dtype=bool)
    for k in key:
        col = ordered.column(k)
        same &= pc.fill_null(pc.equal(col.slice(1), col.slice(0, n - 1)), False).to_numpy(zero_copy_only=False)
    mask = np.zeros(n, dtype=bool)
    mask[1:] |= same
    mask[:-1] |= same
    return ordered, mask


def repeated_keys(table: pa.Table, key: tuple[str, ...]) -> bool:
    """Whether any key occurs more than once in ``table``."""
    return bool(sort_by_key(table.select(list(key)), key)[1].any())


def _ingest(
    spec: Dataset,
    batches: Iterator[pa.RecordBatch],
    *,
    source: str,
    bar_interval: timedelta,
    on_error: str,
    progress: Callable[[int], None] | None,
    on_phase: Callable[[str, uuid.UUID], None] | None = None,
    digest: replay.Digest | None = None,
    validated: bool = False,
    reread: Callable[[], Iterator[pa.RecordBatch]] | None = None,
) -> LoadResult:
    """``reread()``: the input's batches again from the start (None: the input cannot be read twice,
    so only the staged path is taken)."""
    if on_error not in ON_ERROR_MODES:
        raise ValueError(f"on_error={on_error!r}: expected one of {', '.join(ON_ERROR_MODES)}")
    if bar_interval <= timedelta(0):
        raise ValueError(f"bar_interval={bar_interval} must be positive")
    load = Load.objects.create(dataset=spec.name, source=source, on_error=on_error, bar_interval=bar_interval)
    result = LoadResult(load_id=load.id, dataset=spec.name)
    ctx = CheckContext(bar_interval=bar_interval)
    stage = STAGING_PREFIX + load.id.hex
    try:
        if on_phase:
            on_phase("validating", load.id)
        if digest is not None and _replay_shortcut(spec, load, digest, result):
            if progress:
                progress(result.rows_read)
            return result
        direct = reread is not None and settings.TSM_INGEST_DIRECT
        if not (direct and _direct(spec, batches, stage, ctx, result, load, on_error, progress, on_phase, validated)):
            if direct:  # a key of a row already COPYed came again: redo the load through staging
                batches = reread()
                _restart(load, result)
            _staged(spec, batches, stage, ctx, result, load, on_error, progress, on_phase, validated)
        if result.rejected and on_error == "reject":
            _finish(load, result, Load.Status.REJECTED, error=f"{result.rejected} bad row(s); nothing stored")
            raise LoadRejected(result)
        _finish(load, result, Load.Status.DONE, digest=digest)
        return result
    except InputError as exc:
        _finish(load, result, Load.Status.REJECTED, error=str(exc))
        raise
    except LoadRejected:
        raise
    except BaseException as exc:
        _finish(load, result, Load.Status.FAILED, error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        _drop_stage(stage)


def _replay_shortcut(spec: Dataset, load: Load, digest: replay.Digest, result: LoadResult) -> bool:
    """Finish ``load`` as a replay of an earlier load without staging anything, when provably safe
    (ingestion/replay.py says when). Returns whether it did; records why or why not either way."""
    if not replay.replay_enabled():
        result.replay_note = "replay shortcut off (TSM_INGEST_REPLAY_SHORTCUT=false)"
        return False
    if not digest.content_sha256:
        result.replay_note = "replay shortcut not tried: no finished load of the same dataset, options and size"
        return False
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"tsm.merge.{spec.name}"])
        earlier = replay.replay_candidate(key=digest.key(), dataset=spec.name)
        if earlier is None:
            result.replay_note = "replay shortcut not taken: no finished load of the same content and options"
            return False
        blocker = replay.replay_blocker(cur=cur, dataset=spec.name, earlier=earlier)
        if blocker:
            result.replay_note = f"replay shortcut not taken: {blocker}"
            return False
        result.rows_read = result.duplicates = earlier.rows_read
        result.replay_of = earlier.pk
        result.spans = earlier.replay_spans
        result.change_watermark = replay.change_watermark(cur=cur, dataset=spec.name)
        result.replay_note = (
            f"replay shortcut taken: same bytes and options as load {earlier.pk}; no change logged since "
            f"(change id > {earlier.change_watermark}) overlaps its {len(earlier.replay_spans)} series span(s), "
            "so every row is a duplicate; nothing staged"
        )
        _finish(load, result, Load.Status.DONE, digest=digest)
    return True


def _transaction_broken() -> bool:
    """Whether the caller's transaction can run nothing more: a broken atomic block, or a statement
    that failed inside a transaction PostgreSQL now refuses to go on with. Writing to it then would
    raise "current transaction is aborted" and hide the error that broke it."""
    if connection.needs_rollback:
        return True
    raw = connection.connection
    return raw is not None and raw.info.transaction_status == psycopg.pq.TransactionStatus.INERROR


def _finish(load: Load, result: LoadResult, status: str, error: str = "", digest: replay.Digest | None = None) -> None:
    if _transaction_broken():  # the load row goes with the caller's rollback; keep the original error
        return
    replay_fields = {}
    if digest is not None and status == Load.Status.DONE and digest.complete():
        replay_fields = dict(
            content_sha256=digest.content_sha256, content_bytes=digest.content_bytes,
            replay_key=digest.key() if result.spans is not None else "", replay_spans=result.spans,
            change_watermark=result.change_watermark,
        )
    Load.objects.filter(pk=load.pk).update(
        **replay_fields,
        replay_of_id=result.replay_of,
        replay_note=result.replay_note,
        status=status,
        error=error[:10_000],
        rows_read=result.rows_read,
        inserted=result.inserted,
        revised=result.revised,
        duplicates=result.duplicates,
        rejected=result.rejected,
        recorded_at=result.recorded_at,
        finished_at=timezone.now(),
    )


def _stage_columns(spec: Dataset) -> list[str]:
    return [*spec.column_names, "known_at", "row_no", "multi"]


class _CopySegments:
    """Binary COPY into one table in segments of a few seconds.

    The connection can run nothing else while a COPY is open, so the COPY is closed at *safe points*
    (every SEGMENT_SECONDS, or when the quarantine buffer is full) to write quarantined rows and report
    progress; within a segment PostgreSQL parses while Python prepares the next chunk.
    """

    SEGMENT_SECONDS = 2.0

    def __init__(self, cursor: psycopg.Cursor, table: str, columns: list[str]):
        self.cursor, self.columns = cursor, columns
        self.statement = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT binary)").format(
            sql.Identifier(table), identifiers(columns)
        )
        self.cm = self.copy = self.encoder = None
        self.opened_at = 0.0

    def write(self, table: pa.Table) -> None:
        table = table.select(self.columns)
        if self.copy is None:
            self.encoder = pgpq.ArrowToPostgresBinaryEncoder(table.schema)
            # a writer thread sends the data (up to psycopg's queue: 1,024 x 128 kB) while this thread
            # prepares the next batch; with the default writer PostgreSQL waited for each batch's encoding
            self.cm = self.cursor.copy(self.statement, writer=QueuedLibpqWriter(self.cursor))
            self.copy = self.cm.__enter__()
            self.copy.write(self.encoder.write_header())
            self.opened_at = time.monotonic()
        for batch in table.to_batches():
            self.copy.write(self.encoder.write_batch(batch))

    def due(self) -> bool:
        return self.copy is not None and time.monotonic() - self.opened_at >= self.SEGMENT_SECONDS

    def close(self) -> None:
        if self.copy is not None:
            self.copy.write(self.encoder.finish())
            cm, self.cm, self.copy = self.cm, None, None
            cm.__exit__(None, None, None)

    def abort(self) -> None:
        if self.cm is not None:
            cm, self.cm, self.copy = self.cm, None, None
            cm.__exit__(*sys.exc_info())


class _Quarantine:
    """Bad rows waiting to be written to the quarantine (RejectedRow), and the rows counted rejected."""

    DUE_ROWS = 10_000

    def __init__(self, load: Load, result: LoadResult):
        self.load, self.result = load, result
        self.pending: list[RowError] = []
        self.rows: set[int] = set()

    def due(self) -> bool:
        return len(self.pending) >= self.DUE_ROWS

    def write(self) -> None:
        if self.pending:
            _quarantine(self.load, self.pending, self.result, self.rows)
            self.pending = []


def _prepared(spec: Dataset, batches, ctx, result: LoadResult, quarantine: _Quarantine, on_error: str,
              validated: bool) -> Iterator[pa.Table | None]:
    """Each input batch validated (unless ``validated``) and sorted by key, in staging columns (with
    ``row_no`` and ``multi``, the mask of keys repeated in the batch); None for a batch with nothing
    to store. Bad rows go to ``quarantine.pending``; in reject mode nothing is yielded after the first."""
    columns = _stage_columns(spec)
    row_offset = 0
    for raw in batches:
        if validated:
            prepared = prepared_as_is(raw, row_offset=row_offset)
        else:
            if row_offset == 0:
                check_columns([n for n in raw.schema.names], spec)
            prepared = prepare_batch(raw, dataset=spec, ctx=ctx, row_offset=row_offset)
        row_offset += prepared.rows_read
        result.rows_read = row_offset
        quarantine.pending.extend(prepared.errors)
        if prepared.table.num_rows and not (on_error == "reject" and (result.rejected or quarantine.pending)):
            ordered, multi = sort_by_key(prepared.table, spec.key)
            yield ordered.append_column("multi", pa.array(multi)).select(columns)
        else:
            yield None
    if row_offset == 0:
        raise InputError("the input has no data rows")


def _create_stage(cur, spec: Dataset, stage: str) -> None:
    cur.execute(
        sql.SQL("CREATE UNLOGGED TABLE {stage} AS SELECT {cols} FROM {table} WITH NO DATA").format(
            stage=sql.Identifier(stage),
            cols=identifiers([*spec.column_names, "known_at"]),
            table=sql.Identifier(spec.table),
        )
    )
    cur.execute(sql.SQL("ALTER TABLE {} ADD COLUMN row_no bigint, ADD COLUMN multi boolean").format(sql.Identifier(stage)))


def _stage(spec, batches, stage, ctx, result, load, on_error, progress, *, validated: bool = False) -> _SeriesRanges:
    """Validate every batch (unless ``validated``) and COPY the good rows into an unlogged staging table."""
    with connection.cursor() as cur:
        _create_stage(cur, spec, stage)
    ranges = _SeriesRanges()
    quarantine = _Quarantine(load, result)
    with connection.cursor() as cur:
        segments = _CopySegments(cur.cursor, stage, _stage_columns(spec))

        def safe_point() -> None:
            segments.close()
            quarantine.write()
            if progress:
                progress(result.rows_read)

        try:
            for table in _prepared(spec, batches, ctx, result, quarantine, on_error, validated):
                if table is not None:
                    ranges.add(table, spec)
                    segments.write(table)
                if segments.copy is None or segments.due() or quarantine.due():
                    safe_point()
            safe_point()
        except BaseException:
            segments.abort()
            raise
    return ranges


def _staged(spec, batches, stage, ctx, result, load, on_error, progress, on_phase, validated) -> None:
    """The staged path: stage everything, unstage conflicting rows, merge — unless a bad row rejects the load."""
    ranges = _stage(spec, batches, stage, ctx, result, load, on_error, progress, validated=validated)
    if result.rejected and on_error == "reject":
        return
    conflicts = _Quarantine(load, result)
    with connection.cursor() as cur:
        _drop_conflicts(spec, stage, ranges, conflicts, cur)
    conflicts.write()
    if result.rejected and on_error == "reject":
        return
    if on_phase:
        on_phase("loading", load.id)
    _merge(spec, stage, ranges, result)


# --- the direct path: COPY straight into the dataset --------------------------------------------


class _Redo(Exception):
    """The direct pass cannot finish the load; it is rolled back and the load redone through staging."""


def _direct(spec, batches, stage, ctx, result, load, on_error, progress, on_phase, validated) -> bool:
    """Load in one pass, COPYing each batch's rows proven new straight into the dataset table.

    Everything happens in one transaction that holds the merge lock from the start, so the series
    registry read first stays true: a row is *proven new* when its key occurs once in its batch and its
    series' event-time span in the batch overlaps neither what the registry says is stored nor the
    spans of that series in earlier batches. Those rows are COPYed into the dataset as they come (no
    staging table, no INSERT ... SELECT); the rest are staged and go through the usual merge at the
    end, which sees the rows COPYed before as stored. Returns False, having stored nothing, when the
    load must be redone through staging: a staged row shares its key with a COPYed row (same key in
    two batches) other than as an exact duplicate, or (inside the caller's transaction, where bad
    rows cannot be written apart from the data) too many bad rows to hold.

    The transaction is the caller's (a savepoint) when the caller is inside one; otherwise a second
    connection's, so that the quarantine and progress written on Django's connection are seen at once.
    """
    quarantine = _Quarantine(load, result)
    shared = connection.in_atomic_block
    try:
        if shared:
            with transaction.atomic(), connection.cursor() as cur:
                _direct_pass(cur.cursor, spec, batches, stage, ctx, result, quarantine, on_error, progress, on_phase,
                             validated, own_connection=False)
        else:  # leaving the block commits, or rolls back on an exception
            with psycopg.connect(**connection.get_connection_params()) as conn:
                _direct_pass(conn.cursor(), spec, batches, stage, ctx, result, quarantine, on_error, progress,
                             on_phase, validated, own_connection=True)
    except _Redo as why:
        logger.info("load %s: %s; loading it again through staging", load.id, why)
        result.restarted, result.recorded_at = str(why), None
        return False
    except LoadRejected:
        result.inserted = result.copied = 0
        result.recorded_at = None  # rolled back: nothing was recorded
        quarantine.write()  # after the rollback: the bad rows are kept, the good ones are not
        return True
    quarantine.write()
    return True


def _direct_pass(cursor, spec, batches, stage, ctx, result, quarantine, on_error, progress, on_phase, validated, *,
                 own_connection: bool) -> None:
    """The direct path's transaction body. ``own_connection``: the quarantine, written on Django's
    connection, is outside this transaction, so it is written as it fills."""
    recorded_at = _merge_begin(cursor, spec, result)
    stored = _registry_bounds(cursor, spec)
    if on_phase:
        on_phase("loading", result.load_id)
    seen: dict[tuple, tuple[datetime, datetime]] = {}  # per series: the hull of its spans in earlier batches
    copied, staged = _SeriesRanges(), _SeriesRanges()
    to_table = _CopySegments(cursor, spec.table, [*spec.column_names, "known_at", "recorded_at"])
    to_stage = _CopySegments(cursor, stage, _stage_columns(spec))
    stamp = pa.scalar(recorded_at, pa.timestamp("us", tz="UTC"))
    copied_rows = 0
    reported = time.monotonic()
    try:
        for table in _prepared(spec, batches, ctx, result, quarantine, on_error, validated):
            if table is not None:
                new = _proven_new(table, spec, stored, seen)
                for part, into, other, ranges in ((table.filter(new), to_table, to_stage, copied),
                                                  (table.filter(pc.invert(new)), to_stage, to_table, staged)):
                    if part.num_rows:
                        other.close()
                        if ranges is staged and not staged.spans:
                            _create_stage(cursor, spec, stage)  # only a load with rows to merge needs one
                        ranges.add(part, spec)
                        if into is to_table:
                            copied_rows += part.num_rows
                            part = part.append_column("recorded_at", pa.repeat(stamp, part.num_rows))
                        into.write(part)
            if quarantine.due():
                if not own_connection:
                    raise _Redo(f"more than {quarantine.DUE_ROWS} bad rows inside the caller's transaction")
                quarantine.write()
            if progress and time.monotonic() - reported >= _CopySegments.SEGMENT_SECONDS:
                progress(result.rows_read)
                reported = time.monotonic()
        to_table.close()
        to_stage.close()
    except BaseException:
        to_table.abort()
        to_stage.abort()
        raise
    if progress:
        progress(result.rows_read)
    if on_error == "reject" and (result.rejected or quarantine.pending):
        raise LoadRejected(result)  # rolled back; _direct writes the bad rows to the quarantine
    if copied.spans.keys() & staged.spans.keys() and _key_copied_and_staged(cursor, spec, stage, recorded_at):
        raise _Redo("a staged row has the key of a row COPYed from an earlier batch")
    result.inserted = result.copied = copied_rows
    _drop_conflicts(spec, stage, staged, quarantine, cursor)
    if on_error == "reject" and quarantine.pending:
        raise LoadRejected(result)
    _register_series(cursor, spec, copied)  # the merge then sees the COPYed rows as stored
    _merge_staged(cursor, spec, stage, staged, result, recorded_at, also=copied)
    if staged.spans:
        cursor.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(stage)))


def _registry_bounds(cur, spec: Dataset) -> dict[tuple, tuple[datetime, datetime]]:
    """Per series of ``spec``, the event-time range the series registry says is stored."""
    cur.execute("SELECT symbol, subkey, first_time, last_time FROM timeseries_series WHERE dataset = %s", [spec.name])
    width = len(spec.series)
    return {(symbol, subkey)[:width]: (lo, hi) for symbol, subkey, lo, hi in cur.fetchall()}


def _proven_new(table: pa.Table, spec: Dataset, stored: dict, seen: dict) -> pa.ChunkedArray:
    """Mask of the rows of one key-sorted batch that can be COPYed into the dataset as they are."""
    agg = table.group_by(list(spec.series)).aggregate([("time", "min"), ("time", "max")])
    keys = list(zip(*(agg.column(c).to_pylist() for c in spec.series)))
    clear = []
    for key, lo, hi in zip(keys, agg.column("time_min").to_pylist(), agg.column("time_max").to_pylist()):
        before = [span for span in (stored.get(key), seen.get(key)) if span]
        if not any(lo <= span[1] and hi >= span[0] for span in before):
            clear.append(key)
        old = seen.get(key)
        seen[key] = (min(lo, old[0]), max(hi, old[1])) if old else (lo, hi)
    if not clear:
        return pa.chunked_array([pa.array(np.zeros(table.num_rows, dtype=bool))])
    if len(spec.series) == 1:
        ok = pc.is_in(table.column(spec.series[0]), value_set=pa.array([k[0] for k in clear], pa.string()))
    else:
        joined = pc.binary_join_element_wise(*(table.column(c) for c in spec.series), "\x1f")
        ok = pc.is_in(joined, value_set=pa.array(["\x1f".join(k) for k in clear], pa.string()))
    return pc.and_(pc.fill_null(ok, False), pc.invert(table.column("multi")))


def _key_copied_and_staged(cur, spec: Dataset, stage: str, recorded_at: datetime) -> bool:
    """Whether a staged row has the key of a row this load COPYed, other than as its exact duplicate."""
    cur.execute(
        sql.SQL(
            "SELECT EXISTS (SELECT 1 FROM {s} s JOIN {t} t ON {key} AND t.recorded_at = %s"
            " WHERE NOT (t.known_at = s.known_at AND ROW({t_vals}) IS NOT DISTINCT FROM ROW({s_vals})))"
        ).format(
            s=sql.Identifier(stage), t=sql.Identifier(spec.table), key=_key_match(spec, "t", "s"),
            t_vals=identifiers(spec.value_columns, "t"), s_vals=identifiers(spec.value_columns, "s"),
        ),
        [recorded_at],
    )
    return cur.fetchone()[0]


def _restart(load: Load, result: LoadResult) -> None:
    """Forget what a rolled-back direct pass counted and quarantined: the staged pass redoes it."""
    RejectedRow.objects.filter(load=load).delete()
    result.rows_read = result.inserted = result.revised = result.duplicates = result.rejected = result.copied = 0
    result.errors.clear()


def rejected_rows_save(*, load: Load, errors: list[RowError]) -> None:
    """Keep bad rows (raw values + reason) with their load, so staff can fix and re-send them."""
    RejectedRow.objects.bulk_create(
        [RejectedRow(load=load, row_number=e.row, column=e.column, reason=e.message, raw=e.raw) for e in errors],
        batch_size=5000,
    )


def _quarantine(load: Load, errors: list[RowError], result: LoadResult, rejected_rows: set[int]) -> None:
    """Keep every bad row with the load, whatever the mode, and count the rows rejected."""
    rejected_rows_save(load=load, errors=errors)
    new_rows = {e.row for e in errors} - rejected_rows
    rejected_rows |= new_rows
    result.rejected += len(new_rows)
    room = MAX_REPORTED_ERRORS - len(result.errors)
    if room > 0:
        result.errors.extend(errors[:room])


def _drop_stage(stage: str) -> None:
    if _transaction_broken():
        return
    with connection.cursor() as cur:
        cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(stage)))


# --- the merge ----------------------------------------------------------------------------------


def _merge(spec: Dataset, stage: str, ranges: _SeriesRanges, result: LoadResult) -> None:
    """Append the rows proven new; run the version merge on the rest. One transaction, one recorded_at.

    A staged row is *proven new* when its key occurs once in its batch (``multi`` is false), its
    series' batches do not overlap in time (so the key is in no other batch) and its series' time
    range does not overlap what is stored (so the key is not stored). The merge lock makes the last
    test hold until commit.
    """
    with transaction.atomic():
        with connection.cursor() as cur:
            recorded_at = _merge_begin(cur, spec, result)
            _merge_staged(cur, spec, stage, ranges, result, recorded_at)


def _merge_begin(cur, spec: Dataset, result: LoadResult) -> datetime:
    """Take the dataset's merge lock and set the merge's session settings; returns the load's recorded_at."""
    cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"tsm.merge.{spec.name}"])
    # set-based merges over millions of rows: sort in memory, skip JIT compilation, and no Memoize
    # in front of the per-row version probe (every staged key is distinct: it only misses)
    cur.execute("SET LOCAL work_mem = '256MB'")
    cur.execute("SET LOCAL jit = off")
    cur.execute("SET LOCAL enable_memoize = off")
    cur.execute("SELECT clock_timestamp()")
    result.recorded_at = cur.fetchone()[0]
    return result.recorded_at


def _merge_staged(cur, spec: Dataset, stage: str, ranges: _SeriesRanges, result: LoadResult, recorded_at: datetime,
                  also: _SeriesRanges | None = None) -> None:
    """The merge of the staging table, under the lock ``_merge_begin`` took. ``also``: the spans of rows
    this load stored already (COPYed directly), for the change log and the replay record."""
    if ranges.spans:
        straddling = ranges.straddling()
        mixed = straddling | _stored_overlaps(cur, spec, ranges)
        # every staged series needs the version merge (a replay, a file of corrections): no row is
        # left to append, and no per-row series test is needed to pick the merge's rows
        everything = mixed >= ranges.spans.keys()
        subset = sql.SQL("true") if everything else _subset_predicate(spec, mixed, ranges.any_multi)
        if subset is not None:
            # row counts for the version merge's planner (it would guess ~34k rows); an append
            # needs no plan choice, and a 90k-row write-API flush spent 12 % of its time here
            cur.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(stage)))
            inserted, result.revised, result.duplicates = _merge_versions(
                cur, spec, stage, recorded_at, subset, keys_repeat=ranges.any_multi or bool(straddling)
            )
            result.inserted += inserted
        if not everything:
            result.inserted += _append(cur, spec, stage, recorded_at, subset)
        _register_series(cur, spec, ranges)
    bounds = ranges.union(also).bounds()
    if result.inserted or result.revised:
        changes_record(cur=cur, dataset=spec.name, bounds=bounds, recorded_at=recorded_at)
        generation_bump(datasets=[spec.name], cur=cur)
    result.change_watermark = replay.change_watermark(cur=cur, dataset=spec.name)  # for a later replay
    result.spans = replay.spans_encode(bounds)


def _series_expr(spec: Dataset, alias: str) -> sql.Composable:
    return sql.SQL("concat_ws(chr(31), {})").format(
        sql.SQL(", ").join(sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(c)) for c in spec.series)
    )


def _subset_predicate(spec: Dataset, mixed: set[tuple], any_multi: bool) -> sql.Composable | None:
    """SQL condition on staging alias ``s`` selecting the rows that need the version merge (None: no row)."""
    if not mixed and not any_multi:
        return None
    parts = [sql.SQL("s.multi")]
    if mixed:
        names = sql.Literal(["\x1f".join(str(v) for v in key) for key in sorted(mixed)])
        parts.append(sql.SQL("{} = ANY({}::text[])").format(_series_expr(spec, "s"), names))
    return sql.SQL("(") + sql.SQL(" OR ").join(parts) + sql.SQL(")")


def _stored_overlaps(cur, spec: Dataset, ranges: _SeriesRanges) -> set[tuple]:
    """Series of which a stored row falls inside the staged time range.

    The registry's [first, last] range rules most series out at once; for the others one index probe
    per series asks whether a stored row really lies in the staged range, so a backfill into a gap
    (or after a later load) still takes the append path.
    """
    bounds = ranges.bounds()
    if not bounds:
        return set()
    keys = list(bounds)
    match = sql.SQL(" AND ").join(
        sql.SQL("t.{} = n.{}").format(sql.Identifier(column), sql.Identifier(name))
        for column, name in zip(spec.series, ("symbol", "subkey"))
    )
    cur.execute(
        sql.SQL(
            """
            SELECT n.i FROM unnest(%s::text[], %s::text[], %s::timestamptz[], %s::timestamptz[])
                            WITH ORDINALITY AS n(symbol, subkey, lo, hi, i)
            JOIN timeseries_series s ON s.dataset = %s AND s.symbol = n.symbol AND s.subkey = n.subkey
            WHERE n.lo <= s.last_time AND n.hi >= s.first_time
              AND EXISTS (SELECT 1 FROM {table} t WHERE {match} AND t.time BETWEEN n.lo AND n.hi)
            """
        ).format(table=sql.Identifier(spec.table), match=match),
        [
            [k[0] for k in keys],
            [k[1] if len(k) > 1 else "" for k in keys],
            [bounds[k][0] for k in keys],
            [bounds[k][1] for k in keys],
            spec.name,
        ],
    )
    return {keys[i - 1] for (i,) in cur.fetchall()}


def _register_series(cur, spec: Dataset, ranges: _SeriesRanges) -> None:
    bounds = ranges.bounds()
    if not bounds:
        return
    cur.execute(
        """
        INSERT INTO timeseries_series (dataset, symbol, subkey, first_time, last_time)
        SELECT %s, n.symbol, n.subkey, n.lo, n.hi
        FROM unnest(%s::text[], %s::text[], %s::timestamptz[], %s::timestamptz[]) AS n(symbol, subkey, lo, hi)
        ON CONFLICT (dataset, symbol, subkey) DO UPDATE
        SET first_time = LEAST(timeseries_series.first_time, EXCLUDED.first_time),
            last_time = GREATEST(timeseries_series.last_time, EXCLUDED.last_time)
        """,
        [
            spec.name,
            [k[0] for k in bounds],
            [k[1] if len(k) > 1 else "" for k in bounds],
            [b[0] for b in bounds.values()],
            [b[1] for b in bounds.values()],
        ],
    )


def _append(cur, spec: Dataset, stage: str, recorded_at: datetime, subset: sql.Composable | None) -> int:
    """Insert the staged rows proven new (those outside ``subset``) as they are."""
    cols = [*spec.column_names, "known_at"]
    where = sql.SQL("") if subset is None else sql.SQL(" WHERE NOT ") + subset
    cur.execute(
        sql.SQL("INSERT INTO {t} ({cols}, recorded_at) SELECT {cols}, %s FROM {s} s{where}").format(
            t=sql.Identifier(spec.table), s=sql.Identifier(stage), cols=identifiers(cols), where=where
        ),
        [recorded_at],
    )
    return cur.rowcount


def _key_match(spec: Dataset, left: str, right: str) -> sql.Composable:
    return sql.SQL(" AND ").join(
        sql.SQL("{}.{} = {}.{}").format(sql.Identifier(left), sql.Identifier(k), sql.Identifier(right), sql.Identifier(k))
        for k in spec.key
    )


def _conflicts(cur, spec: Dataset, stage: str, subset: sql.Composable) -> list[list[int]]:
    """Groups of input rows with the same key and known_at but different values."""
    cur.execute(
        sql.SQL(
            "SELECT array_agg(row_no ORDER BY row_no) FROM {s} s WHERE {subset} GROUP BY {key}, known_at "
            "HAVING count(DISTINCT ROW({vals})) > 1"
        ).format(s=sql.Identifier(stage), key=identifiers(spec.key), vals=identifiers(spec.value_columns), subset=subset)
    )
    return [row[0] for row in cur.fetchall()]


def _drop_conflicts(spec: Dataset, stage: str, ranges: _SeriesRanges, quarantine: _Quarantine, cur) -> None:
    """Unstage input rows that give one (key, known_at) two different values; they join
    ``quarantine.pending`` (the caller writes them: the quarantine is kept whatever the load does).

    Only keys repeated inside a chunk or series spread over several chunks can repeat at all, so
    nothing is scanned for a file without them. Runs before the merge.
    """
    subset = _subset_predicate(spec, ranges.straddling(), ranges.any_multi)
    if subset is None:
        return
    conflicts = _conflicts(cur, spec, stage, subset)
    if not conflicts:
        return
    errors = []
    for rows in conflicts:
        for row in rows[1:]:
            errors.append(
                RowError(row, "known_at", f"conflicts with row {rows[0]}: same key and known_at, different values")
            )
        errors.append(RowError(rows[0], "known_at", f"conflicts with row(s) {', '.join(map(str, rows[1:]))}"))
    errors.sort(key=lambda e: e.row)
    all_rows = [r for rows in conflicts for r in rows]
    cur.execute(
        sql.SQL("SELECT row_to_json(s) FROM {} s WHERE row_no = ANY(%s) ORDER BY row_no").format(sql.Identifier(stage)),
        [all_rows],
    )
    raw = {r[0]["row_no"]: {k: v for k, v in r[0].items() if k != "row_no"} for r in cur.fetchall()}
    quarantine.pending.extend(RowError(e.row, e.column, e.message, raw.get(e.row, {})) for e in errors)
    cur.execute(sql.SQL("DELETE FROM {} WHERE row_no = ANY(%s)").format(sql.Identifier(stage)), [all_rows])


MERGE_SQL = """
WITH {rows}, p AS (
    SELECT l.*, {is_dup} AS is_dup, {is_revision} AS is_revision
    FROM l LEFT JOIN LATERAL (
        SELECT t.known_at, ROW({t_vals}) AS vals FROM {t} t
        WHERE {t_key} AND t.known_at <= l.known_at
        ORDER BY t.known_at DESC, t.recorded_at DESC LIMIT 1
    ) cur ON true
), ins AS (
    INSERT INTO {t} ({cols}, recorded_at) SELECT {cols}, %(recorded_at)s FROM p WHERE NOT is_dup
)
SELECT count(*) FILTER (WHERE NOT is_dup AND NOT is_revision),
       count(*) FILTER (WHERE NOT is_dup AND is_revision),
       count(*) FILTER (WHERE is_dup),
       (SELECT count(*) FROM {s} s WHERE {subset}) - count(*)
FROM p
"""

# Keys may repeat in the input: keep one row per (key, known_at) and compare each row with the
# version before it in the input too (an earlier-known row of the same load).
REPEATED_KEY_ROWS = """d AS (
    SELECT DISTINCT ON ({key}, known_at) {cols}, row_no FROM {s} s WHERE {subset} ORDER BY {key}, known_at, row_no
), l AS (
    SELECT d.*, lag(ROW({vals})) OVER w AS prev_vals, lag(known_at) OVER w AS prev_known
    FROM d WINDOW w AS (PARTITION BY {key} ORDER BY known_at)
)"""
REPEATED_KEY_DUP = """CASE WHEN l.prev_known IS NOT NULL AND (cur.known_at IS NULL OR l.prev_known >= cur.known_at)
                    THEN l.prev_vals IS NOT DISTINCT FROM ROW({l_vals})
                WHEN cur.known_at IS NOT NULL THEN cur.vals IS NOT DISTINCT FROM ROW({l_vals})
                ELSE false END"""
REPEATED_KEY_REVISION = "(l.prev_known IS NOT NULL OR EXISTS (SELECT 1 FROM {t} x WHERE {x_key}))"

# Every key occurs once in the input (a replay, or corrections of stored rows): no sort, no window.
UNIQUE_KEY_ROWS = "l AS (SELECT {cols}, row_no FROM {s} s WHERE {subset})"
UNIQUE_KEY_DUP = "(cur.known_at IS NOT NULL AND cur.vals IS NOT DISTINCT FROM ROW({l_vals}))"
UNIQUE_KEY_REVISION = "(cur.known_at IS NOT NULL OR EXISTS (SELECT 1 FROM {t} x WHERE {x_key}))"


def _merge_versions(
    cur, spec: Dataset, stage: str, recorded_at: datetime, subset: sql.Composable, *, keys_repeat: bool
) -> tuple[int, int, int]:
    cols = [*spec.column_names, "known_at"]
    vals = spec.value_columns
    parts = (
        (REPEATED_KEY_ROWS, REPEATED_KEY_DUP, REPEATED_KEY_REVISION)
        if keys_repeat
        else (UNIQUE_KEY_ROWS, UNIQUE_KEY_DUP, UNIQUE_KEY_REVISION)
    )
    names = dict(
        s=sql.Identifier(stage),
        t=sql.Identifier(spec.table),
        key=identifiers(spec.key),
        cols=identifiers(cols),
        vals=identifiers(vals),
        l_vals=identifiers(vals, "l"),
        t_vals=identifiers(vals, "t"),
        t_key=_key_match(spec, "t", "l"),
        x_key=_key_match(spec, "x", "l"),
        subset=subset,
    )
    rows, is_dup, is_revision = (sql.SQL(part).format(**names) for part in parts)
    query = sql.SQL(MERGE_SQL).format(rows=rows, is_dup=is_dup, is_revision=is_revision, **names)
    cur.execute(query, {"recorded_at": recorded_at})
    inserted, revised, duplicates, same_version_repeats = cur.fetchone()
    return inserted, revised, duplicates + same_version_repeats


def staging_drop_stale(*, older_than: timedelta = timedelta(hours=6)) -> list[str]:
    """Drop staging tables left behind by a killed process; returns their names.

    A staging table belongs to a running load while its Load is "loading" and younger than
    ``older_than`` (longer than any load runs); a load found dead is marked failed.
    """
    with connection.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE tablename LIKE %s", [STAGING_PREFIX.replace("_", r"\_") + "%"])
        names = [r[0] for r in cur.fetchall()]
    cutoff = timezone.now() - older_than
    live = {
        pk.hex
        for pk in Load.objects.filter(status=Load.Status.LOADING, started_at__gte=cutoff).values_list("id", flat=True)
    }
    stale = [n for n in names if n[len(STAGING_PREFIX):] not in live]
    Load.objects.filter(status=Load.Status.LOADING, started_at__lt=cutoff).update(
        status=Load.Status.FAILED, error="the loading process stopped (killed or lost)", finished_at=timezone.now()
    )
    for name in stale:
        _drop_stage(name)
    return stale

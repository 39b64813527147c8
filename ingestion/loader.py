"""The write heart: validate -> COPY into a staging table -> one set-based merge in one transaction.

Slow I/O (parsing, validation, COPY into an unlogged staging table) happens outside the short merge
transaction. The merge takes a per-dataset advisory lock, stamps every stored row with one
``recorded_at`` and either

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
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Callable, Iterable, Iterator

import pgpq
import pyarrow as pa
import pyarrow.compute as pc
from django.conf import settings
from django.db import connection, transaction
from django.db.utils import IntegrityError
from django.utils import timezone
from psycopg import sql

from ingestion import parsers
from ingestion.checks import InputError, RowError, check_columns, prepare_batch
from ingestion.models import Load, RejectedRow
from timeseries.datasets import CheckContext, Dataset, get_dataset

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
) -> LoadResult:
    """Load a CSV / Parquet / NDJSON file (optionally gzip-compressed) into ``dataset``."""
    spec = get_dataset(dataset)
    name = source or (str(path) if isinstance(path, (str, Path)) else "stream")
    batches = parsers.read_batches(path, dataset=spec, fmt=fmt, batch_rows=settings.TSM_INGEST_BATCH_ROWS)
    return _ingest(spec, batches, source=name, bar_interval=bar_interval, on_error=on_error, progress=progress)


def ingest_table(
    *,
    dataset: str,
    data,
    bar_interval: timedelta = timedelta(minutes=1),
    on_error: str = "reject",
    source: str = "table",
) -> LoadResult:
    """Load an in-memory Arrow table, pandas DataFrame or list of dicts into ``dataset``."""
    spec = get_dataset(dataset)
    batches = parsers.table_batches(data, batch_rows=settings.TSM_INGEST_BATCH_ROWS)
    return _ingest(spec, batches, source=source, bar_interval=bar_interval, on_error=on_error, progress=None)


# --- the pipeline -------------------------------------------------------------------------------


@dataclass
class _SeriesRanges:
    """Per-series event-time ranges of each staged batch, to prove the no-overlap fast path."""

    spans: dict[tuple, list[tuple[datetime, datetime]]] = field(default_factory=dict)
    unique_keys: bool = True

    def add(self, table: pa.Table, spec: Dataset) -> None:
        if table.num_rows == 0:
            return
        if self.unique_keys:
            groups = table.group_by(list(spec.key)).aggregate([])
            self.unique_keys = groups.num_rows == table.num_rows
        agg = table.group_by(list(spec.series)).aggregate([("time", "min"), ("time", "max")])
        keys = zip(*(agg.column(c).to_pylist() for c in spec.series))
        for key, lo, hi in zip(keys, agg.column("time_min").to_pylist(), agg.column("time_max").to_pylist()):
            self.spans.setdefault(key, []).append((lo, hi))

    def disjoint(self) -> bool:
        for spans in self.spans.values():
            spans.sort()
            if any(a[1] >= b[0] for a, b in zip(spans, spans[1:])):
                return False
        return True

    def bounds(self) -> dict[tuple, tuple[datetime, datetime]]:
        return {k: (min(s[0] for s in v), max(s[1] for s in v)) for k, v in self.spans.items()}


def _ingest(
    spec: Dataset,
    batches: Iterator[pa.RecordBatch],
    *,
    source: str,
    bar_interval: timedelta,
    on_error: str,
    progress: Callable[[int], None] | None,
) -> LoadResult:
    if on_error not in ON_ERROR_MODES:
        raise ValueError(f"on_error={on_error!r}: expected one of {', '.join(ON_ERROR_MODES)}")
    if bar_interval <= timedelta(0):
        raise ValueError(f"bar_interval={bar_interval} must be positive")
    load = Load.objects.create(dataset=spec.name, source=source, on_error=on_error, bar_interval=bar_interval)
    result = LoadResult(load_id=load.id, dataset=spec.name)
    ctx = CheckContext(bar_interval=bar_interval)
    stage = STAGING_PREFIX + load.id.hex
    try:
        ranges = _stage(spec, batches, stage, ctx, result, load, on_error, progress)
        if result.rejected and on_error == "reject":
            _finish(load, result, Load.Status.REJECTED, error=f"{result.rejected} bad row(s); nothing stored")
            raise LoadRejected(result)
        _merge(spec, stage, ranges, result, load, on_error)
        _finish(load, result, Load.Status.DONE)
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


def _finish(load: Load, result: LoadResult, status: str, error: str = "") -> None:
    if connection.needs_rollback:  # we are inside a broken atomic block: do not touch the db
        return
    Load.objects.filter(pk=load.pk).update(
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
    return [*spec.column_names, "known_at", "row_no"]


def _stage(spec, batches, stage, ctx, result, load, on_error, progress) -> _SeriesRanges:
    """Validate every batch and COPY the good rows into an unlogged staging table."""
    columns = _stage_columns(spec)
    with connection.cursor() as cur:
        cur.execute(
            sql.SQL("CREATE UNLOGGED TABLE {stage} AS SELECT {cols} FROM {table} WITH NO DATA").format(
                stage=sql.Identifier(stage),
                cols=sql.SQL(", ").join(map(sql.Identifier, [*spec.column_names, "known_at"])),
                table=sql.Identifier(spec.table),
            )
        )
        cur.execute(sql.SQL("ALTER TABLE {} ADD COLUMN row_no bigint").format(sql.Identifier(stage)))
    ranges = _SeriesRanges()
    encoder = None
    copy_cm = copy = None
    row_offset = 0
    rejected_rows: set[int] = set()
    try:
        with connection.cursor() as cur:
            for raw in batches:
                if row_offset == 0:
                    check_columns([n for n in raw.schema.names], spec)
                prepared = prepare_batch(raw, dataset=spec, ctx=ctx, row_offset=row_offset)
                row_offset += prepared.rows_read
                result.rows_read = row_offset
                if prepared.errors:
                    _quarantine(load, prepared.errors, result, rejected_rows)
                stop_copying = on_error == "reject" and result.rejected
                if prepared.table.num_rows and not stop_copying:
                    table = prepared.table.select(columns)
                    ranges.add(table, spec)
                    if encoder is None:
                        encoder = pgpq.ArrowToPostgresBinaryEncoder(table.schema)
                        copy_cm = cur.cursor.copy(
                            sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT binary)").format(
                                sql.Identifier(stage), sql.SQL(", ").join(map(sql.Identifier, columns))
                            )
                        )
                        copy = copy_cm.__enter__()
                        copy.write(encoder.write_header())
                    for batch in table.to_batches():
                        copy.write(encoder.write_batch(batch))
                if progress:
                    progress(row_offset)
            if row_offset == 0:
                raise InputError("the input has no data rows")
            if copy is not None:
                copy.write(encoder.finish())
                copy_cm.__exit__(None, None, None)
                copy_cm = None
    finally:
        if copy_cm is not None:  # an exception interrupted the COPY: abort it
            copy_cm.__exit__(*sys.exc_info())
    return ranges


def _quarantine(load: Load, errors: list[RowError], result: LoadResult, rejected_rows: set[int]) -> None:
    """Keep every bad row (raw values + reason) with the load, whatever the mode."""
    RejectedRow.objects.bulk_create(
        [RejectedRow(load=load, row_number=e.row, column=e.column, reason=e.message, raw=e.raw) for e in errors],
        batch_size=5000,
    )
    new_rows = {e.row for e in errors} - rejected_rows
    rejected_rows |= new_rows
    result.rejected += len(new_rows)
    room = MAX_REPORTED_ERRORS - len(result.errors)
    if room > 0:
        result.errors.extend(errors[:room])


def _drop_stage(stage: str) -> None:
    if connection.needs_rollback:
        return
    with connection.cursor() as cur:
        cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(stage)))


# --- the merge ----------------------------------------------------------------------------------


def _merge(spec: Dataset, stage: str, ranges: _SeriesRanges, result: LoadResult, load: Load, on_error: str) -> None:
    with transaction.atomic():
        with connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"tsm.merge.{spec.name}"])
            cur.execute("SELECT clock_timestamp()")
            recorded_at = cur.fetchone()[0]
            result.recorded_at = recorded_at
            staged = _count(cur, stage)
            if staged and ranges.unique_keys and ranges.disjoint() and not _overlaps_stored(cur, spec, ranges):
                try:
                    with transaction.atomic():
                        inserted = _append(cur, spec, stage, recorded_at)
                    result.inserted = inserted
                    _register_series(cur, spec, ranges)
                    return
                except IntegrityError:  # cannot happen when the proof holds; fall back to be safe
                    logger.warning("fast path hit a duplicate key in %s; using the revision path", stage)
            if staged:
                conflicts = _conflicts(cur, spec, stage)
                if conflicts:
                    _reject_conflicts(cur, spec, stage, conflicts, result, load, on_error)
                inserted, revised, duplicates = _merge_versions(cur, spec, stage, recorded_at)
                result.inserted, result.revised = inserted, revised
                result.duplicates = duplicates
                _register_series(cur, spec, ranges)


def _count(cur, stage: str) -> int:
    cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(stage)))
    return cur.fetchone()[0]


def _overlaps_stored(cur, spec: Dataset, ranges: _SeriesRanges) -> bool:
    bounds = ranges.bounds()
    if not bounds:
        return False
    symbols = [k[0] for k in bounds]
    subkeys = [k[1] if len(k) > 1 else "" for k in bounds]
    cur.execute(
        """
        SELECT EXISTS (
            SELECT 1 FROM unnest(%s::text[], %s::text[], %s::timestamptz[], %s::timestamptz[]) AS n(symbol, subkey, lo, hi)
            JOIN timeseries_series s ON s.dataset = %s AND s.symbol = n.symbol AND s.subkey = n.subkey
            WHERE n.lo <= s.last_time AND n.hi >= s.first_time)
        """,
        [symbols, subkeys, [b[0] for b in bounds.values()], [b[1] for b in bounds.values()], spec.name],
    )
    return cur.fetchone()[0]


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


def _ids(names: Iterable[str], prefix: str | None = None) -> sql.Composable:
    if prefix:
        return sql.SQL(", ").join(sql.SQL("{}.{}").format(sql.Identifier(prefix), sql.Identifier(n)) for n in names)
    return sql.SQL(", ").join(map(sql.Identifier, names))


def _append(cur, spec: Dataset, stage: str, recorded_at: datetime) -> int:
    cols = [*spec.column_names, "known_at"]
    cur.execute(
        sql.SQL("INSERT INTO {t} ({cols}, recorded_at) SELECT {cols}, %s FROM {s}").format(
            t=sql.Identifier(spec.table), s=sql.Identifier(stage), cols=_ids(cols)
        ),
        [recorded_at],
    )
    return cur.rowcount


def _key_match(spec: Dataset, left: str, right: str) -> sql.Composable:
    return sql.SQL(" AND ").join(
        sql.SQL("{}.{} = {}.{}").format(sql.Identifier(left), sql.Identifier(k), sql.Identifier(right), sql.Identifier(k))
        for k in spec.key
    )


def _conflicts(cur, spec: Dataset, stage: str) -> list[list[int]]:
    """Groups of input rows with the same key and known_at but different values."""
    cur.execute(
        sql.SQL(
            "SELECT array_agg(row_no ORDER BY row_no) FROM {s} GROUP BY {key}, known_at "
            "HAVING count(DISTINCT ROW({vals})) > 1"
        ).format(s=sql.Identifier(stage), key=_ids(spec.key), vals=_ids(spec.value_columns))
    )
    return [row[0] for row in cur.fetchall()]


def _reject_conflicts(cur, spec, stage, conflicts, result, load, on_error) -> None:
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
    errors = [RowError(e.row, e.column, e.message, raw.get(e.row, {})) for e in errors]
    _quarantine(load, errors, result, set())
    if on_error == "reject":
        raise LoadRejected(result)
    cur.execute(sql.SQL("DELETE FROM {} WHERE row_no = ANY(%s)").format(sql.Identifier(stage)), [all_rows])


MERGE_SQL = """
WITH d AS (
    SELECT DISTINCT ON ({key}, known_at) {cols}, row_no FROM {s} ORDER BY {key}, known_at, row_no
), l AS (
    SELECT d.*,
           lag(ROW({vals})) OVER w AS prev_vals,
           lag(known_at) OVER w AS prev_known
    FROM d WINDOW w AS (PARTITION BY {key} ORDER BY known_at)
), p AS (
    SELECT l.*,
           CASE WHEN l.prev_known IS NOT NULL AND (cur.known_at IS NULL OR l.prev_known >= cur.known_at)
                    THEN l.prev_vals IS NOT DISTINCT FROM ROW({l_vals})
                WHEN cur.known_at IS NOT NULL THEN cur.vals IS NOT DISTINCT FROM ROW({l_vals})
                ELSE false END AS is_dup,
           (l.prev_known IS NOT NULL OR EXISTS (SELECT 1 FROM {t} x WHERE {x_key})) AS is_revision
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
       (SELECT count(*) FROM {s}) - count(*)
FROM p
"""


def _merge_versions(cur, spec: Dataset, stage: str, recorded_at: datetime) -> tuple[int, int, int]:
    cols = [*spec.column_names, "known_at"]
    vals = spec.value_columns
    query = sql.SQL(MERGE_SQL).format(
        s=sql.Identifier(stage),
        t=sql.Identifier(spec.table),
        key=_ids(spec.key),
        cols=_ids(cols),
        vals=_ids(vals),
        l_vals=_ids(vals, "l"),
        t_vals=_ids(vals, "t"),
        t_key=_key_match(spec, "t", "l"),
        x_key=_key_match(spec, "x", "l"),
    )
    cur.execute(query, {"recorded_at": recorded_at})
    inserted, revised, duplicates, same_version_repeats = cur.fetchone()
    return inserted, revised, duplicates + same_version_repeats


def stale_staging_tables(*, older_than: timedelta = timedelta(hours=6)) -> list[str]:
    """Staging tables whose load is no longer running (left behind by a killed process)."""
    with connection.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE tablename LIKE %s", [STAGING_PREFIX + "%"])
        names = [r[0] for r in cur.fetchall()]
    live = {
        l.hex
        for l in Load.objects.filter(status=Load.Status.LOADING, started_at__gte=timezone.now() - older_than).values_list(
            "id", flat=True
        )
    }
    return [n for n in names if n[len(STAGING_PREFIX):] not in live]

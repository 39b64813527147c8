"""The direct path: one transaction holding the merge lock from the start COPYs each batch's rows proven
new straight into the dataset table; the rest are staged and merged at the end.

A staged row that gives a COPYed key other values sends the load, rolled back, down the staged path
(``loader.staging``); so does, inside the caller's transaction, a pile of bad rows too large to hold.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from datetime import datetime

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from django.db import connection, transaction
from psycopg import sql

from ingestion.loader import merge, staging
from ingestion.loader.batches import SeriesRanges, prepared_batches, stage_columns
from ingestion.loader.copying import CopySegments
from ingestion.loader.outcome import LoadRejected
from ingestion.loader.run import LoadRun, Quarantine
from timeseries.datasets import Dataset
from timeseries.sqltext import identifiers

logger = logging.getLogger(__name__)


class _Redo(Exception):
    """The direct pass cannot finish the load; it is rolled back and the load redone through staging."""


def load_direct(run: LoadRun, batches: Iterable[pa.RecordBatch]) -> bool:
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
    result = run.result
    quarantine = Quarantine(run)
    shared = connection.in_atomic_block
    try:
        if shared:
            with transaction.atomic(), connection.cursor() as cur:
                _direct_transaction(cur.cursor, run, batches, quarantine, own_connection=False)
        else:  # leaving the block commits, or rolls back on an exception
            with psycopg.connect(**connection.get_connection_params()) as conn:
                _direct_transaction(conn.cursor(), run, batches, quarantine, own_connection=True)
    except _Redo as why:
        logger.info("load %s: %s; loading it again through staging", run.load.id, why)
        result.restarted, result.recorded_at = str(why), None
        return False
    except LoadRejected:
        result.inserted = result.copied = 0
        result.recorded_at = None  # rolled back: nothing was recorded
        quarantine.write()  # after the rollback: the bad rows are kept, the good ones are not
        return True
    quarantine.write()
    return True


def _direct_transaction(
    cursor, run: LoadRun, batches: Iterable[pa.RecordBatch], quarantine: Quarantine, *, own_connection: bool
) -> None:
    """The direct path's transaction body. ``own_connection``: the quarantine, written on Django's
    connection, is outside this transaction, so it is written as it fills."""
    spec, stage, result = run.spec, run.stage, run.result
    recorded_at = merge.merge_begin(cursor, run)
    stored = _registry_bounds(cursor, spec)
    run.phase("loading")
    seen: dict[tuple, tuple[datetime, datetime]] = {}  # per series: the hull of its spans in earlier batches
    copied, staged = SeriesRanges(), SeriesRanges()
    to_table = CopySegments(cursor, spec.table, [*spec.column_names, "known_at", "recorded_at"])
    to_stage = CopySegments(cursor, stage, stage_columns(spec))
    stamp = pa.scalar(recorded_at, pa.timestamp("us", tz="UTC"))
    copied_rows = 0
    reported = time.monotonic()
    try:
        for table in prepared_batches(run, batches, quarantine):
            if table is not None:
                new = proven_new(table, spec, stored, seen)
                for part, into, other, ranges in (
                    (table.filter(new), to_table, to_stage, copied),
                    (table.filter(pc.invert(new)), to_stage, to_table, staged),
                ):
                    if part.num_rows:
                        other.close()
                        if ranges is staged and not staged.spans:
                            staging.staging_create(cursor, spec, stage)  # only a load with rows to merge needs one
                        ranges.add(part, spec)
                        if into is to_table:
                            copied_rows += part.num_rows
                            part = part.append_column("recorded_at", pa.repeat(stamp, part.num_rows))
                        into.write(part)
            if quarantine.due():
                if not own_connection:
                    raise _Redo(f"more than {quarantine.DUE_ROWS} bad rows inside the caller's transaction")
                quarantine.write()
            if run.progress and time.monotonic() - reported >= CopySegments.SEGMENT_SECONDS:
                run.report_progress()
                reported = time.monotonic()
        to_table.close()
        to_stage.close()
    except BaseException:
        to_table.abort()
        to_stage.abort()
        raise
    run.report_progress()
    if run.on_error == "reject" and (result.rejected or quarantine.pending):
        raise LoadRejected(result)  # rolled back; load_direct writes the bad rows to the quarantine
    if copied.spans.keys() & staged.spans.keys() and _key_copied_and_staged(cursor, spec, stage, recorded_at):
        raise _Redo("a staged row has the key of a row COPYed from an earlier batch")
    result.inserted = result.copied = copied_rows
    staging.drop_conflicts(cursor, spec, stage, staged, quarantine)
    if run.on_error == "reject" and quarantine.pending:
        raise LoadRejected(result)
    merge.register_series(cursor, spec, copied)  # the merge then sees the COPYed rows as stored
    merge.merge_staged(cursor, run, staged, recorded_at, also=copied)
    if staged.spans:
        cursor.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(stage)))


def _registry_bounds(cur, spec: Dataset) -> dict[tuple, tuple[datetime, datetime]]:
    """Per series of ``spec``, the event-time range the series registry says is stored."""
    cur.execute("SELECT symbol, subkey, first_time, last_time FROM timeseries_series WHERE dataset = %s", [spec.name])
    width = len(spec.series)
    return {(symbol, subkey)[:width]: (lo, hi) for symbol, subkey, lo, hi in cur.fetchall()}


def proven_new(table: pa.Table, spec: Dataset, stored: dict, seen: dict) -> pa.ChunkedArray:
    """Mask of the rows of one key-sorted batch that can be COPYed into the dataset as they are (none
    for a dataset whose key has no time: its time range proves nothing about its keys)."""
    if not spec.time_keyed:
        return pa.chunked_array([pa.array(np.zeros(table.num_rows, dtype=bool))])
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
            s=sql.Identifier(stage),
            t=sql.Identifier(spec.table),
            key=merge.key_match(spec, "t", "s"),
            t_vals=identifiers(spec.value_columns, "t"),
            s_vals=identifiers(spec.value_columns, "s"),
        ),
        [recorded_at],
    )
    return cur.fetchone()[0]

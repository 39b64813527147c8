"""The staged path: every batch validated and COPYed into the load's private unlogged staging table
(outside the merge transaction), rows that give one (key, known_at) two values unstaged, then the merge.
The direct path stages here too the rows it cannot prove new."""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa
from django.db import connection
from psycopg import sql

from ingestion.checks import RowError
from ingestion.loader import merge
from ingestion.loader.batches import SeriesRanges, prepared_batches, stage_columns
from ingestion.loader.copying import CopySegments
from ingestion.loader.run import LoadRun, Quarantine, transaction_broken
from timeseries.datasets import Dataset
from timeseries.sqltext import identifiers


def staging_create(cur, spec: Dataset, stage: str) -> None:
    cur.execute(
        sql.SQL("CREATE UNLOGGED TABLE {stage} AS SELECT {cols} FROM {table} WITH NO DATA").format(
            stage=sql.Identifier(stage),
            cols=identifiers([*spec.column_names, "known_at"]),
            table=sql.Identifier(spec.table),
        )
    )
    cur.execute(
        sql.SQL("ALTER TABLE {} ADD COLUMN row_no bigint, ADD COLUMN multi boolean").format(sql.Identifier(stage))
    )


def staging_drop(stage: str) -> None:
    if transaction_broken():
        return
    with connection.cursor() as cur:
        cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(stage)))


def stage_batches(run: LoadRun, batches: Iterable[pa.RecordBatch]) -> SeriesRanges:
    """Validate every batch (unless ``run.validated``) and COPY the good rows into the staging table."""
    spec = run.spec
    with connection.cursor() as cur:
        staging_create(cur, spec, run.stage)
    ranges = SeriesRanges()
    quarantine = Quarantine(run)
    with connection.cursor() as cur:
        segments = CopySegments(cur.cursor, run.stage, stage_columns(spec))

        def safe_point() -> None:
            segments.close()
            quarantine.write()
            run.report_progress()

        try:
            for table in prepared_batches(run, batches, quarantine):
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


def load_staged(run: LoadRun, batches: Iterable[pa.RecordBatch]) -> None:
    """The staged path: stage everything, unstage conflicting rows, merge — unless a bad row refuses the load."""
    ranges = stage_batches(run, batches)
    if run.refused():
        return
    conflicts = Quarantine(run)
    with connection.cursor() as cur:
        drop_conflicts(cur, run.spec, run.stage, ranges, conflicts)
    conflicts.write()
    if run.refused():
        return
    run.phase("loading")
    merge.merge_transaction(run, ranges)


def drop_conflicts(cur, spec: Dataset, stage: str, ranges: SeriesRanges, quarantine: Quarantine) -> None:
    """Unstage input rows that give one (key, known_at) two different values; they join
    ``quarantine.pending`` (the caller writes them: the quarantine is kept whatever the load does).

    Only keys repeated inside a chunk or series spread over several chunks can repeat at all, so
    nothing is scanned for a file without them. Runs before the merge.
    """
    if not ranges.spans:
        return
    if spec.time_keyed:
        subset = merge.subset_predicate(spec, ranges.straddling(), ranges.any_multi)
    else:  # the key has no time: any two staged rows may share it
        subset = sql.SQL("true")
    if subset is None:
        return
    conflicts = merge.conflicting_rows(cur, spec, stage, subset)
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

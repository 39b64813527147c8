"""Retention (both lanes): what would go (``retention_preview``, a dry run) and removing it
(``retention_apply``; ``retention_run`` for every dataset, the beat task's service).

TimescaleDB lane: whole chunks ending by the cutoff are dropped. Plain lane: rows older than the
cutoff are deleted per series in bounded batches, each its own short transaction under the dataset's
merge lock. Either way the dataset generation is bumped, so cached answers drop at once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from psycopg import sql

from timeseries.cache import generation_bump
from timeseries.capabilities import capabilities
from timeseries.datasets import Dataset, get_dataset
from timeseries.lifecycle.policies import datasets_selected, retention_horizon


@dataclass
class RetentionPreview:
    dataset: str
    lane: str
    horizon: str | None
    cutoff: datetime | None  # rows with time before this go (TimescaleDB: whole chunks ending by it)
    method: str
    rows_estimate: int = 0
    oldest: datetime | None = None  # event-time range of the rows that would go
    newest: datetime | None = None
    series: int = 0  # series that would lose rows
    chunks: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for k in ("cutoff", "oldest", "newest"):
            out[k] = out[k].isoformat() if out[k] else None
        return out


def retention_cutoff(cur, horizon: str, now: datetime | None) -> datetime:
    cur.execute("SELECT coalesce(%s::timestamptz, now()) - %s::interval", [now, horizon])
    return cur.fetchone()[0]


def _series_match(spec: Dataset, table_alias: str, series_alias: str) -> sql.Composable:
    return sql.SQL(" AND ").join(
        sql.SQL("{}.{} = {}.{}").format(
            sql.Identifier(table_alias), sql.Identifier(col), sql.Identifier(series_alias), sql.Identifier(reg)
        )
        for col, reg in zip(spec.series, ("symbol", "subkey"))
    )


def series_time_range(*, dataset: str, before: datetime | None = None) -> tuple[datetime | None, datetime | None, int]:
    """(oldest, newest, series) of the stored rows with time < ``before`` (all rows when None).

    Two index probes per registered series (no scan of the table, no COUNT).
    """
    spec = get_dataset(dataset)
    match = _series_match(spec, "t", "s")
    probe = "SELECT t.time FROM {t} t WHERE {match} AND t.time < %(before)s::timestamptz ORDER BY t.time {dir} LIMIT 1"
    query = sql.SQL(
        "SELECT min(lo.time), max(hi.time), count(lo.time) FROM timeseries_series s "
        "LEFT JOIN LATERAL (" + probe.replace("{dir}", "ASC") + ") lo ON true "
        "LEFT JOIN LATERAL (" + probe.replace("{dir}", "DESC") + ") hi ON true "
        "WHERE s.dataset = %(dataset)s AND s.first_time < %(before)s::timestamptz"
    ).format(t=sql.Identifier(spec.table), match=match)
    with connection.cursor() as cur:
        cur.execute(query, {"before": before or "infinity", "dataset": spec.name})
        lo, hi, n = cur.fetchone()
    return lo, hi, n


def _planner_rows(cur, query: sql.Composable, params: list) -> int:
    cur.execute(sql.SQL("EXPLAIN (FORMAT JSON) ") + query, params)
    plan = cur.fetchone()[0]
    plan = plan if isinstance(plan, list) else json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


def _expired_chunks(cur, spec: Dataset, cutoff: datetime) -> list[tuple[str, datetime]]:
    cur.execute(
        "SELECT c::text, ch.range_end FROM show_chunks(%s::regclass, older_than => %s) c "
        "JOIN timescaledb_information.chunks ch ON format('%%I.%%I', ch.chunk_schema, ch.chunk_name)::regclass = c "
        "ORDER BY ch.range_end",
        [spec.table, cutoff],
    )
    return cur.fetchall()


def retention_preview(*, dataset: str, now: datetime | None = None) -> RetentionPreview:
    """What retention would remove from ``dataset`` now (a dry run: nothing is changed)."""
    spec = get_dataset(dataset)
    caps = capabilities()
    horizon = retention_horizon(dataset=spec.name)
    if horizon is None:
        why = "retention is none" if spec.hypertable else "reference data never expires"
        return RetentionPreview(spec.name, caps.lane, None, None, f"kept forever ({why})")
    with connection.cursor() as cur:
        cutoff = retention_cutoff(cur, horizon, now)
        if spec.table in caps.hypertables:
            chunks = _expired_chunks(cur, spec, cutoff)
            preview = RetentionPreview(
                spec.name,
                caps.lane,
                horizon,
                cutoff,
                "drop_chunks (whole chunks ending by the cutoff)",
                chunks=[c for c, _ in chunks],
            )
            if not chunks:
                return preview
            bound = max(end for _, end in chunks)
            cur.execute(
                "SELECT coalesce(sum(approximate_row_count(c::regclass)), 0) FROM unnest(%s::text[]) c",
                [preview.chunks],
            )
            preview.rows_estimate = int(cur.fetchone()[0])
        else:
            bound = cutoff
            preview = RetentionPreview(
                spec.name,
                caps.lane,
                horizon,
                cutoff,
                f"batched DELETE ({settings.TSM_RETENTION_BATCH_ROWS} rows per statement)",
            )
            preview.rows_estimate = _planner_rows(
                cur, sql.SQL("SELECT 1 FROM {} WHERE time < %s").format(sql.Identifier(spec.table)), [cutoff]
            )
    preview.oldest, preview.newest, preview.series = series_time_range(dataset=spec.name, before=bound)
    if preview.series == 0:
        preview.rows_estimate = 0  # the planner never says 0; the probes found nothing to remove
    return preview


@dataclass
class RetentionResult:
    dataset: str
    lane: str
    horizon: str | None
    cutoff: datetime | None
    rows_deleted: int = 0
    chunks_dropped: int = 0
    outranked_deleted: int = 0  # outranked versions (timeseries.models.OutrankedVersion) past the horizon
    batches: int = 0

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["cutoff"] = self.cutoff.isoformat() if self.cutoff else None
        return out


def _merge_lock(cur, spec: Dataset) -> None:
    cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"tsm.merge.{spec.name}"])


def retention_apply(*, dataset: str, batch_rows: int | None = None, now: datetime | None = None) -> RetentionResult:
    """Remove the rows of ``dataset`` past its retention horizon.

    TimescaleDB lane: drop the chunks that end by the cutoff. Plain lane: per series, DELETE at most
    ``batch_rows`` rows per statement, each statement its own transaction holding the dataset's merge
    lock (a merge waits for one batch at most) and bumping the dataset generation.
    """
    spec = get_dataset(dataset)
    batch_rows = settings.TSM_RETENTION_BATCH_ROWS if batch_rows is None else batch_rows
    if batch_rows < 1:
        raise ValueError(f"batch_rows={batch_rows} must be at least 1")
    caps = capabilities()
    horizon = retention_horizon(dataset=spec.name)
    with connection.cursor() as cur:
        cutoff = retention_cutoff(cur, horizon, now) if horizon else None
    result = RetentionResult(spec.name, caps.lane, horizon, cutoff)
    if cutoff is None:
        return result
    with transaction.atomic(), connection.cursor() as cur:  # the versions kept beside the table go too
        _merge_lock(cur, spec)
        cur.execute("DELETE FROM timeseries_outranked_version WHERE dataset = %s AND time < %s", [spec.name, cutoff])
        result.outranked_deleted = cur.rowcount
    if spec.table in caps.hypertables:
        with transaction.atomic(), connection.cursor() as cur:
            _merge_lock(cur, spec)
            cur.execute("SELECT count(*) FROM drop_chunks(%s::regclass, older_than => %s)", [spec.table, cutoff])
            result.chunks_dropped = cur.fetchone()[0]
            if result.chunks_dropped:
                generation_bump(datasets=[spec.name])
        return result
    with connection.cursor() as cur:  # the series with something to remove: one index probe each
        cur.execute(
            sql.SQL(
                "SELECT s.symbol, s.subkey FROM timeseries_series s WHERE s.dataset = %s AND s.first_time < %s "
                "AND EXISTS (SELECT 1 FROM {t} t WHERE {match} AND t.time < %s) ORDER BY s.symbol, s.subkey"
            ).format(t=sql.Identifier(spec.table), match=_series_match(spec, "t", "s")),
            [spec.name, cutoff, cutoff],
        )
        series = cur.fetchall()
    params = ("symbol", "subkey")[: len(spec.series)]
    match = sql.SQL(" AND ").join(
        sql.SQL("{} = %({})s").format(sql.Identifier(col), sql.SQL(p)) for col, p in zip(spec.series, params)
    )
    delete = sql.SQL(
        "DELETE FROM {t} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {t} WHERE {match} AND time < %(cutoff)s "
        "LIMIT %(limit)s))"
    ).format(t=sql.Identifier(spec.table), match=match)
    for symbol, subkey in series:
        while True:
            with transaction.atomic(), connection.cursor() as cur:
                _merge_lock(cur, spec)
                cur.execute(delete, {"symbol": symbol, "subkey": subkey, "cutoff": cutoff, "limit": batch_rows})
                deleted = cur.rowcount
                if deleted:
                    generation_bump(datasets=[spec.name])
            if deleted:
                result.rows_deleted += deleted
                result.batches += 1
            if deleted < batch_rows:
                break
    return result


def retention_run(*, datasets: Iterable[str] | None = None, batch_rows: int | None = None) -> list[RetentionResult]:
    """Apply retention to every dataset (the beat task); reference data (not a hypertable: securities,
    corporate actions) never expires and is left out unless named."""
    specs = datasets_selected(datasets)
    if datasets is None:
        specs = [spec for spec in specs if spec.hypertable]
    return [retention_apply(dataset=spec.name, batch_rows=batch_rows) for spec in specs]

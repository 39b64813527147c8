"""The storage report: per dataset, rows (estimated), event-time range, bytes on disk, compression,
aggregate freshness, retention horizon and backup lag — without a full COUNT of any table.

The backup section shows the backup registered with ``backup_source_register`` (``ingestion`` registers
its InfluxDB backup when its app is ready: timeseries never imports ingestion).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from psycopg import sql

from timeseries.capabilities import capabilities
from timeseries.changes import changes_lag
from timeseries.datasets import Dataset
from timeseries.lifecycle.policies import compress_after, compression_layout, datasets_selected, retention_horizon
from timeseries.lifecycle.retention import retention_cutoff, series_time_range


def _estimated_rows(cur, spec: Dataset, hypertable: bool) -> int:
    if hypertable:
        cur.execute("SELECT approximate_row_count(%s::regclass)", [spec.table])
        return int(cur.fetchone()[0] or 0)
    cur.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [spec.table])
    estimate = cur.fetchone()[0]
    if estimate is not None and estimate >= 0:
        return int(estimate)
    # never analyzed: a capped count (bounded work), never a full COUNT
    cur.execute(sql.SQL("SELECT count(*) FROM (SELECT 1 FROM {} LIMIT 1000000) x").format(sql.Identifier(spec.table)))
    return int(cur.fetchone()[0])


def _sizes(cur, spec: Dataset, hypertable: bool) -> dict[str, int]:
    if hypertable:
        cur.execute(
            "SELECT table_bytes, index_bytes, toast_bytes, total_bytes FROM hypertable_detailed_size(%s::regclass)",
            [spec.table],
        )
    else:
        cur.execute(
            "SELECT pg_relation_size(c.oid), pg_indexes_size(c.oid), "
            "coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0), pg_total_relation_size(c.oid) "
            "FROM pg_class c WHERE c.oid = %s::regclass",
            [spec.table],
        )
    heap, indexes, toast, total = (int(v or 0) for v in cur.fetchone())
    return {"heap": heap, "indexes": indexes, "toast": toast, "total": total}


def _compression(cur, spec: Dataset) -> dict[str, Any]:
    cur.execute(
        "SELECT total_chunks, number_compressed_chunks, before_compression_total_bytes, after_compression_total_bytes "
        "FROM hypertable_compression_stats(%s::regclass)",
        [spec.table],
    )
    row = cur.fetchone() or (None, None, None, None)
    chunks, compressed, before, after = (int(v) if v is not None else None for v in row)
    if chunks is None:
        cur.execute("SELECT count(*) FROM show_chunks(%s::regclass)", [spec.table])
        chunks = cur.fetchone()[0]
    layout = compression_layout(dataset=spec.name)
    return {
        "compress_after": compress_after(dataset=spec.name),
        "segmentby": list(layout.segmentby),
        "orderby": list(layout.orderby),
        "chunks": chunks,
        "compressed_chunks": compressed or 0,
        "before_bytes": before,
        "after_bytes": after,
        "ratio": round(before / after, 2) if before and after else None,
    }


_backup_source: Callable[[], dict[str, Any]] | None = None


def backup_source_register(source: Callable[[], dict[str, Any]]) -> None:
    """Name the backup the storage report shows: ``source()`` returns its status (the dataset it covers,
    its backlog, last success and error). ``ingestion`` registers its InfluxDB backup when its app is
    ready; with none registered the report shows the "influx" consumer's lag from the change log."""
    global _backup_source
    _backup_source = source


def _backup_status() -> dict[str, Any] | None:
    """The registered backup's status (None: none registered; fall back to the change log)."""
    if _backup_source is None:
        return None
    try:
        with transaction.atomic():  # a savepoint: a failing status query must not break the caller's transaction
            return _plain(_backup_source())
    except Exception as exc:  # the report must render even when the backup is misconfigured
        return {"error": f"{type(exc).__name__}: {exc}"}


def _backup_lag(dataset: str, status: dict[str, Any] | None) -> dict[str, Any]:
    if status is None:
        return _plain(changes_lag(consumer="influx", dataset=dataset))
    if status.get("dataset") not in (None, dataset):
        return {"backed_up": False, "note": f"the InfluxDB backup covers {status['dataset']}"}
    return status


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def storage_report(*, datasets: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """Per dataset: rows (estimated), event-time range, bytes on disk, bytes per row, compression
    (TimescaleDB lane), aggregate freshness, retention horizon and backup lag. No full COUNT."""
    caps = capabilities()
    backup = _backup_status()
    out = []
    with connection.cursor() as cur:
        for spec in datasets_selected(datasets):
            hypertable = spec.table in caps.hypertables
            rows = _estimated_rows(cur, spec, hypertable)
            sizes = _sizes(cur, spec, hypertable)
            oldest, newest, series = series_time_range(dataset=spec.name)
            horizon = retention_horizon(dataset=spec.name)
            out.append(
                {
                    "dataset": spec.name,
                    "lane": caps.lane,
                    "rows_estimate": rows,
                    "series": series,
                    "time_min": oldest.isoformat() if oldest else None,
                    "time_max": newest.isoformat() if newest else None,
                    "bytes": sizes,
                    "bytes_per_row": round(sizes["total"] / rows, 1) if rows else None,
                    "compression": _compression(cur, spec) if hypertable else None,
                    "retention": {
                        "horizon": horizon,
                        "cutoff": retention_cutoff(cur, horizon, None).isoformat() if horizon else None,
                    },
                    "aggregates_lag": _plain(changes_lag(consumer="rollups", dataset=spec.name)),
                    "backup_lag": _backup_lag(spec.name, backup),
                }
            )
    return out

"""Data lifecycle: compression (TimescaleDB lane), retention (both lanes) and the storage report.

Policies come from settings (``TSM_COMPRESS_AFTER``, ``TSM_RETENTION``: dataset -> PostgreSQL interval
or None) and are applied per lane, decided by ``timeseries.capabilities`` only:

* TimescaleDB lane: ``lifecycle_apply`` sets each hypertable's compression layout (segmented by its
  series columns, ordered by event time newest first, then the rest of the key and the version) and
  keeps one compression policy and one retention policy per hypertable in line with the settings.
  The migration and ``manage.py lifecycle_apply`` both call it. The beat task ``retention_run`` also
  drops expired chunks itself (and bumps the dataset generation, so cached answers drop at once);
  TimescaleDB's own retention job does the same when Celery is not running.
* Plain PostgreSQL lane: no compression; ``retention_run`` deletes rows whose event ``time`` is
  older than the horizon in bounded batches (``TSM_RETENTION_BATCH_ROWS`` per DELETE, each batch its
  own short transaction under the dataset's merge lock, bumping the dataset generation).

Rows are removed by event time only: every version of an expired fact goes together. The series
registry (``timeseries_series``) is left as it was: its [first_time, last_time] may then be wider than
what is stored, which the loader and the selectors allow (they treat it as a hint: the loader probes
the table before trusting an overlap, and a selector's probe of an emptied series finds nothing).
The change log is not written: expiring raw rows does not retract rollups or backups derived from them.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

from django.conf import settings
from django.db import connection, transaction
from psycopg import sql

from timeseries.cache import generation_bump
from timeseries.capabilities import capabilities
from timeseries.changes import changes_lag
from timeseries.datasets import DATASETS, Dataset, get_dataset

FIRST_RUN_DELAY = "1 hour"  # a new policy job first runs this long after it is (re)created


# --- settings ------------------------------------------------------------------------------------


def _datasets(names: Iterable[str] | None) -> list[Dataset]:
    return [get_dataset(n) for n in names] if names is not None else list(DATASETS.values())


def compress_after(*, dataset: str) -> str | None:
    """The configured age after which chunks of ``dataset`` are compressed (None: never)."""
    return settings.TSM_COMPRESS_AFTER.get(get_dataset(dataset).name)


def retention_horizon(*, dataset: str) -> str | None:
    """The configured age after which rows of ``dataset`` are removed (None: kept forever)."""
    return settings.TSM_RETENTION.get(get_dataset(dataset).name)


@dataclass(frozen=True)
class CompressionLayout:
    segmentby: tuple[str, ...]
    orderby: tuple[str, ...]

    def options(self) -> str:
        return ", ".join(self.segmentby), ", ".join(self.orderby)


def compression_layout(*, dataset: str) -> CompressionLayout:
    """Segment by the series columns (every point-in-time read filters on them), order by event time
    newest first (reads walk backwards from T), then the rest of the key and the version columns:
    so a batch holds one series, its min/max time prunes batches, and a key's versions sit together.
    """
    spec = get_dataset(dataset)
    rest = [k for k in spec.key if k not in spec.series and k != "time"]
    return CompressionLayout(
        segmentby=tuple(spec.series),
        orderby=("time DESC", *rest, "known_at DESC", "recorded_at DESC"),
    )


def _normalised(text: str | None) -> str:
    return (text or "").replace('"', "").replace(" ", "").lower()


# --- TimescaleDB lane: compression + policies ---------------------------------------------------


def _policy_job(cur, table: str, proc: str) -> tuple[int, str] | None:
    """(job_id, interval in its config) of the hypertable's policy job ``proc``, if any."""
    cur.execute(
        "SELECT job_id, config FROM timescaledb_information.jobs WHERE hypertable_name = %s AND proc_name = %s",
        [table, proc],
    )
    row = cur.fetchone()
    if row is None:
        return None
    config = row[1] if isinstance(row[1], dict) else json.loads(row[1])
    return row[0], config.get("compress_after") or config.get("drop_after")


def _same_interval(cur, a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return a is b
    cur.execute("SELECT %s::interval = %s::interval", [a, b])
    return cur.fetchone()[0]


def _delay_first_run(cur, job_id: int) -> None:
    cur.execute("SELECT alter_job(%s, next_start => now() + %s::interval)", [job_id, FIRST_RUN_DELAY])


def _sync_policy(cur, spec: Dataset, *, proc: str, wanted: str | None, add: str, remove: str, arg: str) -> str | None:
    """Make the hypertable's ``proc`` policy match ``wanted``; returns what was done (None: nothing)."""
    current = _policy_job(cur, spec.table, proc)
    if current is not None and _same_interval(cur, current[1], wanted):
        return None
    if current is not None:
        cur.execute(sql.SQL("SELECT {}(%s, if_exists => true)").format(sql.Identifier(remove)), [spec.table])
    if wanted is None:
        return f"removed {proc}" if current is not None else None
    cur.execute(
        sql.SQL("SELECT {}(%s, {} => %s::interval)").format(sql.Identifier(add), sql.Identifier(arg)),
        [spec.table, wanted],
    )
    _delay_first_run(cur, cur.fetchone()[0])
    return f"{proc} {wanted}"


def _sync_layout(cur, spec: Dataset) -> str | None:
    layout = compression_layout(dataset=spec.name)
    segmentby, orderby = layout.options()
    cur.execute(
        "SELECT segmentby, orderby FROM timescaledb_information.hypertable_compression_settings "
        "WHERE hypertable = %s::regclass",
        [spec.table],
    )
    row = cur.fetchone()
    if row and _normalised(row[0]) == _normalised(segmentby) and _normalised(row[1]) == _normalised(orderby):
        return None
    cur.execute(
        sql.SQL(
            "ALTER TABLE {} SET (timescaledb.compress, timescaledb.compress_segmentby = {}, "
            "timescaledb.compress_orderby = {})"
        ).format(sql.Identifier(spec.table), sql.Literal(segmentby), sql.Literal(orderby))
    )
    return f"compression segmentby {segmentby} orderby {orderby}"


def lifecycle_apply(*, datasets: Iterable[str] | None = None) -> list[dict]:
    """Bring compression layouts and compression / retention policies in line with the settings.

    TimescaleDB lane only (returns [] on the plain lane, where retention is ``retention_run``).
    Idempotent: a dataset whose layout and policies already match is left alone. A new or changed
    policy job first runs ``FIRST_RUN_DELAY`` later.
    """
    caps = capabilities(fresh=True)
    if not caps.timescaledb:
        return []
    done = []
    with transaction.atomic(), connection.cursor() as cur:
        for spec in _datasets(datasets):
            if spec.table not in caps.hypertables:
                continue
            actions = [a for a in (
                _sync_layout(cur, spec) if compress_after(dataset=spec.name) is not None else None,
                _sync_policy(cur, spec, proc="policy_compression", wanted=compress_after(dataset=spec.name),
                             add="add_compression_policy", remove="remove_compression_policy", arg="compress_after"),
                _sync_policy(cur, spec, proc="policy_retention", wanted=retention_horizon(dataset=spec.name),
                             add="add_retention_policy", remove="remove_retention_policy", arg="drop_after"),
            ) if a]
            done.append({"dataset": spec.name, "actions": actions})
    return done


def lifecycle_remove() -> None:
    """Undo ``lifecycle_apply`` (the migration's reverse): drop the policies, decompress, compression off."""
    caps = capabilities(fresh=True)
    if not caps.timescaledb:
        return
    with transaction.atomic(), connection.cursor() as cur:
        for spec in DATASETS.values():
            if spec.table not in caps.hypertables:
                continue
            cur.execute("SELECT remove_compression_policy(%s, if_exists => true)", [spec.table])
            cur.execute("SELECT remove_retention_policy(%s, if_exists => true)", [spec.table])
            cur.execute(
                "SELECT decompress_chunk(format('%%I.%%I', chunk_schema, chunk_name)::regclass) "
                "FROM timescaledb_information.chunks WHERE hypertable_name = %s AND is_compressed",
                [spec.table],
            )
            cur.execute(
                "SELECT compression_enabled FROM timescaledb_information.hypertables WHERE hypertable_name = %s",
                [spec.table],
            )
            if cur.fetchone()[0]:
                cur.execute(sql.SQL("ALTER TABLE {} SET (timescaledb.compress = false)").format(sql.Identifier(spec.table)))


def chunks_compress(*, dataset: str, older_than: datetime | None = None) -> int:
    """Compress now the chunks of ``dataset`` that end before ``older_than`` (default: what the
    policy would compress). Returns how many chunks were compressed. TimescaleDB lane only."""
    spec = get_dataset(dataset)
    if not capabilities().compression:
        raise ValueError(f"{spec.name}: compression needs the TimescaleDB lane (this database is plain PostgreSQL)")
    with connection.cursor() as cur:
        if older_than is None:
            after = compress_after(dataset=spec.name)
            if after is None:
                return 0
            cur.execute("SELECT now() - %s::interval", [after])
            older_than = cur.fetchone()[0]
        cur.execute(
            "SELECT count(compress_chunk(c, if_not_compressed => true)) FROM show_chunks(%s::regclass, older_than => %s) c",
            [spec.table, older_than],
        )
        return cur.fetchone()[0]


# --- retention ----------------------------------------------------------------------------------


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


def _cutoff(cur, horizon: str, now: datetime | None) -> datetime:
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
        return RetentionPreview(spec.name, caps.lane, None, None, "kept forever (retention is none)")
    with connection.cursor() as cur:
        cutoff = _cutoff(cur, horizon, now)
        if spec.table in caps.hypertables:
            chunks = _expired_chunks(cur, spec, cutoff)
            preview = RetentionPreview(spec.name, caps.lane, horizon, cutoff, "drop_chunks (whole chunks ending by the cutoff)",
                                       chunks=[c for c, _ in chunks])
            if not chunks:
                return preview
            bound = max(end for _, end in chunks)
            cur.execute("SELECT coalesce(sum(approximate_row_count(c::regclass)), 0) FROM unnest(%s::text[]) c",
                        [preview.chunks])
            preview.rows_estimate = int(cur.fetchone()[0])
        else:
            bound = cutoff
            preview = RetentionPreview(
                spec.name, caps.lane, horizon, cutoff,
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
        cutoff = _cutoff(cur, horizon, now) if horizon else None
    result = RetentionResult(spec.name, caps.lane, horizon, cutoff)
    if cutoff is None:
        return result
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
    """Apply retention to every dataset (the beat task)."""
    return [retention_apply(dataset=spec.name, batch_rows=batch_rows) for spec in _datasets(datasets)]


# --- storage report -----------------------------------------------------------------------------


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
        cur.execute("SELECT table_bytes, index_bytes, toast_bytes, total_bytes FROM hypertable_detailed_size(%s::regclass)",
                    [spec.table])
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
        for spec in _datasets(datasets):
            hypertable = spec.table in caps.hypertables
            rows = _estimated_rows(cur, spec, hypertable)
            sizes = _sizes(cur, spec, hypertable)
            oldest, newest, series = series_time_range(dataset=spec.name)
            horizon = retention_horizon(dataset=spec.name)
            out.append({
                "dataset": spec.name,
                "lane": caps.lane,
                "rows_estimate": rows,
                "series": series,
                "time_min": oldest.isoformat() if oldest else None,
                "time_max": newest.isoformat() if newest else None,
                "bytes": sizes,
                "bytes_per_row": round(sizes["total"] / rows, 1) if rows else None,
                "compression": _compression(cur, spec) if hypertable else None,
                "retention": {"horizon": horizon, "cutoff": _cutoff(cur, horizon, None).isoformat() if horizon else None},
                "aggregates_lag": _plain(changes_lag(consumer="rollups", dataset=spec.name)),
                "backup_lag": _backup_lag(spec.name, backup),
            })
    return out


# --- presentation helpers (command and admin page) ----------------------------------------------


def bytes_human(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _short(iso: str | None) -> str:
    """An ISO timestamp from the report as 'YYYY-MM-DD HH:MM:SS' (UTC), '-' for none."""
    return datetime.fromisoformat(iso).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if iso else "-"


def storage_report_lines(*, report: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The report as display strings, one dict per dataset (same keys for the command and the admin)."""
    lines = []
    for r in report:
        comp = r["compression"]
        if comp is None:
            compression = "n/a (plain PostgreSQL)"
        elif comp["compress_after"] is None:
            compression = "off"
        else:
            ratio = f"{comp['ratio']:.1f}:1" if comp["ratio"] else "-"
            compression = f"{ratio} ({comp['compressed_chunks']}/{comp['chunks']} chunks, after {comp['compress_after']})"
        agg = r["aggregates_lag"]
        backup = r["backup_lag"]
        if "error" in backup:
            backup_text = f"error: {backup['error'].splitlines()[0]}"
        elif backup.get("backed_up") is False:
            backup_text = "not backed up"
        elif "enabled" in backup and not backup["enabled"]:
            backup_text = f"off ({backup.get('why_off') or 'disabled'})"
        else:
            pending = backup.get("pending_changes", backup.get("pending", 0))
            lag = backup.get("lag_seconds")
            backup_text = f"{pending} change(s) pending" + (f", {lag:.0f} s behind" if lag else "")
        lines.append({
            "dataset": r["dataset"],
            "rows": f"~{r['rows_estimate']:,}",
            "time_range": f"{_short(r['time_min'])} .. {_short(r['time_max'])} UTC" if r["time_min"] else "-",
            "bytes": bytes_human(r["bytes"]["total"]),
            "bytes_per_row": f"{r['bytes_per_row']:.1f}" if r["bytes_per_row"] is not None else "-",
            "compression": compression,
            "aggregates": f"{agg['pending']} change(s) pending"
            + (f" since {_short(agg['oldest_pending_recorded_at'])} UTC" if agg.get("oldest_pending_recorded_at") else ""),
            "retention": f"{r['retention']['horizon']} (before {r['retention']['cutoff'][:10]})"
            if r["retention"]["horizon"] else "kept forever",
            "backup": backup_text,
        })
    return lines

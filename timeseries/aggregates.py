"""Aggregates: ``daily_ohlcv`` (market_data per symbol and UTC day) and ``hourly_sentiment``
(social_sentiment per symbol and hour), exact point in time, on both storage lanes.

What a bucket holds (computed from the *current* version of every key in it):

* daily_ohlcv: first open, max high, min low, last close (by bar time), sum of volume, the number of
  bars, and ``vwap`` = sum(bar vwap x bar volume) / sum(bar volume) over the bars that report a vwap
  (volume-weighted; the original spec's plain average of the bars' vwaps over-weights quiet minutes).
  None when no bar of the day has a vwap or their volume is 0. Rounded half-up to 6 decimals.
* hourly_sentiment: ``sentiment`` = sum(sentiment_avg x mention_count) / sum(mention_count) over the
  platforms that report both (mention-weighted; None when their mentions sum to 0), ``mentions`` = sum
  of mention_count (nulls count as 0), ``platforms`` = number of platforms with a window that hour.

Exactness as of T (as recorded by S). A stored bucket row (rollup table, or TimescaleDB continuous
aggregate) is built from every version of its bucket and records ``max_known_at`` and
``max_recorded_at`` over them. If both are <= T and <= S and no *pending* change (a change-log row the
"rollups" consumer has not consumed) overlaps the bucket, every version of every key in it is
visible at T, so the winner of each key at T is its overall winner and the stored row is exactly the
point-in-time answer. Every other bucket of the range (typically the day containing T, fresh loads,
replays with an early S) is aggregated live from the raw table with the point-in-time rule. One SQL
statement does both, so it sees one snapshot of rows, rollups, change log and cursor.

Maintenance. ``rollups_refresh`` consumes the change log (consumer "rollups") and recomputes exactly
the buckets each change's event-time span covers, in the same transaction as the cursor move: a
backfill or correction of last month re-aggregates last month's buckets, whatever any refresh window
would have skipped. Stored buckets are trusted only while the dataset's ``RollupState`` row exists:
without it (fresh install, data loaded before the change log, a restored or truncated database)
every bucket is read live and the consumer's next run first rebuilds everything from scratch.

* Plain PostgreSQL lane: rollup tables ``timeseries_rollup_<name>`` hold every bucket.
* TimescaleDB lane: real continuous aggregates ``daily_ohlcv`` / ``hourly_sentiment`` (time_bucket,
  refresh policy). A continuous aggregate cannot pick the latest version of a key, so it aggregates
  every version and is right only for buckets whose keys have one version each. The consumer
  refreshes the continuous aggregate over the touched spans (``refresh_continuous_aggregate``, which
  cannot run inside a transaction, so it runs first) and then, in one transaction with the cursor
  move, stores in the rollup table exactly the buckets that hold a key with several versions; reads
  take those from the rollup table and the rest from the continuous aggregate.

The lane is decided by ``timeseries.capabilities`` only.
"""

from __future__ import annotations

import logging
import time as _time
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Context, Decimal
from typing import Any

from django.db import OperationalError, connection, transaction
from django.db.models import Max
from psycopg import sql
from psycopg.errors import LockNotAvailable
from psycopg.types.datetime import TimestamptzLoader

from timeseries.capabilities import capabilities
from timeseries.changes import (
    Change,
    RetryResult,
    changes_consume,
    changes_lag,
    changes_pending,
    changes_run,
    failures_retry,
    span_error,
)
from timeseries.datasets import MARKET_DATA, SOCIAL_SENTIMENT, Dataset
from timeseries.models import RollupState
from timeseries.registry import series_registry_recompute
from timeseries.rules import END_OF_TIME

logger = logging.getLogger(__name__)

CONSUMER = "rollups"
ORIGIN = datetime(2000, 1, 3, tzinfo=UTC)  # time_bucket's default origin (a Monday, 00:00 UTC)
PRICE_STEP = Decimal("0.000001")
_EXACT = Context(prec=60)


@dataclass(frozen=True)
class Measure:
    name: str  # a column of the rollup model
    live: str  # aggregate over alias ``v`` of one bucket's versions; {cur} is the "current version" test
    cagg: str  # the same over every version, as a continuous aggregate may compute it (TimescaleDB)


@dataclass(frozen=True)
class Aggregate:
    name: str
    dataset: Dataset
    width: timedelta
    inputs: tuple[str, ...]  # value columns the measures read
    measures: tuple[Measure, ...]

    @property
    def rollup_table(self) -> str:  # DailyOhlcvRollup / HourlySentimentRollup
        return f"timeseries_rollup_{self.name}"

    @property
    def cagg(self) -> str:
        return self.name

    @property
    def measure_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.measures)


DAILY_OHLCV = Aggregate(
    name="daily_ohlcv",
    dataset=MARKET_DATA,
    width=timedelta(days=1),
    inputs=("open", "high", "low", "close", "volume", "vwap"),
    measures=(
        Measure("open", "(array_agg(v.open ORDER BY v.time) FILTER (WHERE {cur}))[1]", "first(open, time)"),
        Measure("high", "max(v.high) FILTER (WHERE {cur})", "max(high)"),
        Measure("low", "min(v.low) FILTER (WHERE {cur})", "min(low)"),
        Measure("close", "(array_agg(v.close ORDER BY v.time DESC) FILTER (WHERE {cur}))[1]", "last(close, time)"),
        Measure("volume", "sum(v.volume) FILTER (WHERE {cur})", "sum(volume)"),
        Measure("pv", "sum(v.vwap * v.volume) FILTER (WHERE {cur})", "sum(vwap * volume)"),
        Measure(
            "pv_volume",
            "sum(v.volume) FILTER (WHERE v.vwap IS NOT NULL AND {cur})",
            "sum(CASE WHEN vwap IS NOT NULL THEN volume END)",
        ),
        Measure("bars", "count(*) FILTER (WHERE {cur})", "count(*)"),
    ),
)

HOURLY_SENTIMENT = Aggregate(
    name="hourly_sentiment",
    dataset=SOCIAL_SENTIMENT,
    width=timedelta(hours=1),
    inputs=("mention_count", "sentiment_avg"),
    measures=(
        Measure("platforms", "count(*) FILTER (WHERE {cur})", "count(*)"),
        Measure("mentions", "sum(v.mention_count) FILTER (WHERE {cur})", "sum(mention_count)"),
        Measure(
            "weighted",
            "sum(v.sentiment_avg * v.mention_count) FILTER (WHERE {cur})",
            "sum(sentiment_avg * mention_count)",
        ),
        Measure(
            "weight",
            "sum(v.mention_count) FILTER (WHERE v.sentiment_avg IS NOT NULL AND {cur})",
            "sum(CASE WHEN sentiment_avg IS NOT NULL THEN mention_count END)",
        ),
    ),
)

AGGREGATES: dict[str, Aggregate] = {a.name: a for a in (DAILY_OHLCV, HOURLY_SENTIMENT)}
BY_DATASET: dict[str, Aggregate] = {a.dataset.name: a for a in AGGREGATES.values()}


def bucket_floor(agg: Aggregate, t: datetime) -> datetime:
    return ORIGIN + ((t - ORIGIN) // agg.width) * agg.width


# --- schema (called by migration 0006; idempotent) ------------------------------------------------


def cagg_sql(agg: Aggregate) -> sql.Composable:
    spec = agg.dataset
    measures = sql.SQL(", ").join(sql.SQL(m.cagg + " AS {}").format(sql.Identifier(m.name)) for m in agg.measures)
    return sql.SQL(
        "CREATE MATERIALIZED VIEW IF NOT EXISTS {cagg}"
        " WITH (timescaledb.continuous, timescaledb.materialized_only = true) AS"
        " SELECT {symbol} AS symbol, time_bucket({width}, time) AS bucket, {measures},"
        " count(*) AS versions, max(known_at) AS max_known_at, max(recorded_at) AS max_recorded_at"
        " FROM {table} GROUP BY 1, 2 WITH NO DATA"
    ).format(
        cagg=sql.Identifier(agg.cagg),
        symbol=sql.Identifier(spec.symbol_column),
        measures=measures,
        width=sql.Literal(agg.width),
        table=sql.Identifier(spec.table),
    )


CAGG_POLICY = {  # the usual policy; it alone would skip older buckets — the rollups consumer does not
    "daily_ohlcv": ("3 days", "1 hour", "5 minutes"),
    "hourly_sentiment": ("1 day", "1 hour", "5 minutes"),
}


def aggregates_install(*, cur) -> list[str]:
    """Where TimescaleDB runs the dataset tables as hypertables, create the continuous aggregates with
    their refresh policies (the rollup tables are models). Safe to run twice. Returns what it created."""
    done = []
    cur.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
    if cur.fetchone() is None:
        return done
    for agg in AGGREGATES.values():
        cur.execute("SELECT 1 FROM timescaledb_information.hypertables WHERE hypertable_name = %s", [agg.dataset.table])
        if cur.fetchone() is None:
            continue
        cur.execute(cagg_sql(agg))
        start, end, every = CAGG_POLICY[agg.name]
        cur.execute(
            "SELECT add_continuous_aggregate_policy(%s::regclass, start_offset => %s::interval,"
            " end_offset => %s::interval, schedule_interval => %s::interval, if_not_exists => true)",
            [agg.cagg, start, end, every],
        )
        done.append(agg.cagg)
    return done


def uses_cagg(agg: Aggregate) -> bool:
    """Whether ``agg`` is served by a continuous aggregate (TimescaleDB lane, dataset a hypertable)."""
    caps = capabilities()
    return caps.continuous_aggregates and agg.dataset.table in caps.hypertables


# --- SQL pieces --------------------------------------------------------------------------------


@contextmanager
def _cursor():
    with connection.cursor() as cur:
        cur.cursor.adapters.register_loader("timestamptz", TimestamptzLoader)
        yield cur


def _series_match(spec: Dataset) -> sql.Composable:
    """``m`` (a dataset row) belongs to ``ser`` (a timeseries_series row)."""
    names = ["symbol", "subkey"]
    return sql.SQL(" AND ").join(
        sql.SQL("m.{} = ser.{}").format(sql.Identifier(c), sql.Identifier(names[i])) for i, c in enumerate(spec.series)
    )


def _versions_per_series(agg: Aggregate, symbol, lo, hi, pit: bool) -> sql.Composable:
    """Every version (or, with ``pit``, every version visible as of %(at)s / %(rb)s) of the symbol's
    series in [lo, hi), each with ``cur``: it is the current version of its key — the last of its key
    in (time, known_at, recorded_at) order, which is the version index order (no sort). The window
    runs per series (a sentiment symbol has one per platform), enumerated from the series registry."""
    spec = agg.dataset
    visible = (
        sql.SQL(" AND m.time <= %(at)s AND m.known_at <= %(at)s AND m.recorded_at <= %(rb)s") if pit else sql.SQL("")
    )
    inputs = sql.SQL(", ").join(sql.SQL("m.{}").format(sql.Identifier(c)) for c in agg.inputs)
    return sql.SQL(
        "SELECT x.* FROM timeseries_series ser CROSS JOIN LATERAL ("
        "SELECT m.time, {inputs}, m.known_at, m.recorded_at,"
        " lead(m.time) OVER (ORDER BY m.time, m.known_at, m.recorded_at) IS DISTINCT FROM m.time AS cur"
        " FROM {table} m WHERE {match} AND m.time >= {lo} AND m.time < {hi}{visible}) x"
        " WHERE ser.dataset = %(dataset)s AND ser.symbol = {symbol}"
    ).format(
        inputs=inputs,
        table=sql.Identifier(spec.table),
        match=_series_match(spec),
        lo=lo,
        hi=hi,
        visible=visible,
        symbol=symbol,
    )


def _measures(agg: Aggregate) -> sql.Composable:
    return sql.SQL(", ").join(
        sql.SQL(m.live.format(cur="v.cur") + " AS {}").format(sql.Identifier(m.name)) for m in agg.measures
    )


def _bucket(agg: Aggregate, column: str) -> sql.Composable:
    return sql.SQL("date_bin(%(width)s, {}, %(origin)s)").format(sql.SQL(column))


# --- maintenance: the change-log consumer ------------------------------------------------------------


def _spans(agg: Aggregate, changes) -> dict[str, list[tuple[datetime, datetime]]]:
    """Per symbol, the disjoint bucket-aligned [lo, hi) spans the changes cover."""
    raw: dict[str, list[tuple[datetime, datetime]]] = {}
    for c in changes:
        raw.setdefault(c.symbol, []).append(
            (bucket_floor(agg, c.first_time), bucket_floor(agg, c.last_time) + agg.width)
        )
    merged: dict[str, list[tuple[datetime, datetime]]] = {}
    for symbol, spans in raw.items():
        out: list[list[datetime]] = []
        for lo, hi in sorted(spans):
            if out and lo <= out[-1][1]:
                out[-1][1] = max(out[-1][1], hi)
            else:
                out.append([lo, hi])
        merged[symbol] = [(lo, hi) for lo, hi in out]
    return merged


def _flatten(spans: dict[str, list[tuple[datetime, datetime]]]) -> dict[str, list]:
    rows = [(s, lo, hi) for s, items in spans.items() for lo, hi in items]
    return {"symbols": [r[0] for r in rows], "los": [r[1] for r in rows], "his": [r[2] for r in rows]}


def rollups_recompute(
    *, aggregate: str, spans: dict[str, list[tuple[datetime, datetime]]], only_multi_version: bool = False
) -> int:
    """Recompute the stored buckets inside ``spans`` (per symbol, bucket-aligned [lo, hi)) from the
    current versions; returns how many bucket rows were written. With ``only_multi_version`` (the
    TimescaleDB lane) only buckets where some key has more than one version are stored."""
    agg = AGGREGATES[aggregate]
    if not spans:
        return 0
    params = {**_flatten(spans), "dataset": agg.dataset.name, "width": agg.width, "origin": ORIGIN}
    table = sql.Identifier(agg.rollup_table)
    spans_sql = sql.SQL(
        "unnest(%(symbols)s::text[], %(los)s::timestamptz[], %(his)s::timestamptz[]) AS s(symbol, lo, hi)"
    )
    versions = _versions_per_series(agg, sql.SQL("s.symbol"), sql.SQL("s.lo"), sql.SQL("s.hi"), pit=False)
    having = sql.SQL(" HAVING count(*) > count(*) FILTER (WHERE v.cur)") if only_multi_version else sql.SQL("")
    with connection.cursor() as cur:
        cur.execute(
            sql.SQL(
                "DELETE FROM {t} r USING {spans} WHERE r.symbol = s.symbol AND r.bucket >= s.lo AND r.bucket < s.hi"
            ).format(t=table, spans=spans_sql),
            params,
        )
        cur.execute(
            sql.SQL(
                "INSERT INTO {t} (symbol, bucket, {names}, versions, max_known_at, max_recorded_at)"
                " SELECT s.symbol, x.* FROM {spans} CROSS JOIN LATERAL ("
                "SELECT {bucket} AS bucket, {measures}, count(*) AS versions, max(v.known_at), max(v.recorded_at)"
                " FROM ({versions}) v GROUP BY 1{having}) x"
            ).format(
                t=table,
                names=sql.SQL(", ").join(map(sql.Identifier, agg.measure_names)),
                spans=spans_sql,
                bucket=_bucket(agg, "v.time"),
                measures=_measures(agg),
                versions=versions,
                having=having,
            ),
            params,
        )
        return cur.rowcount


def _cagg_refresh(agg: Aggregate, spans: dict[str, list[tuple[datetime, datetime]]]) -> int:
    """Refresh the continuous aggregate over the union of the spans (outside any transaction).

    Each window is refreshed twice. TimescaleDB (2.28) leaves one bucket stale when the invalidation
    it processes ends exactly where a bucket starts (rows inserted at 03:00 as a load's newest time:
    bucket [03:00, 04:00) stays materialized as before, and its invalidation goes back to the log);
    a second refresh of the same window processes that remainder. The second call costs a catalog
    look-up when nothing is left (test_it_refreshes_the_bucket_at_the_end_of_an_invalidation).
    """
    windows: list[list[datetime]] = []
    for lo, hi in sorted(span for items in spans.values() for span in items):
        if windows and lo <= windows[-1][1]:
            windows[-1][1] = max(windows[-1][1], hi)
        else:
            windows.append([lo, hi])
    for lo, hi in windows:
        _cagg_call_refresh(agg, lo, hi)
        _cagg_call_refresh(agg, lo, hi)
    return len(windows)


REFRESH_ATTEMPTS = 40


def _cagg_call_refresh(agg: Aggregate, lo: datetime | None, hi: datetime | None) -> None:
    """``refresh_continuous_aggregate`` over [lo, hi) (None: unbounded). TimescaleDB refuses a refresh
    overlapping one in progress (e.g. its policy job): wait and try again."""
    for attempt in range(REFRESH_ATTEMPTS):
        try:
            with connection.cursor() as cur:
                cur.execute(
                    "CALL refresh_continuous_aggregate(%s::regclass, %s::timestamptz, %s::timestamptz)",
                    [agg.cagg, lo, hi],
                )
            return
        except OperationalError as exc:
            if not isinstance(exc.__cause__, LockNotAvailable) or attempt == REFRESH_ATTEMPTS - 1:
                raise
            logger.info("refresh of %s [%s, %s) waits for a concurrent refresh", agg.cagg, lo, hi)
            _time.sleep(0.25)


def _span_now(agg: Aggregate, change: Change) -> dict[str, list[tuple[datetime, datetime]]]:
    """One change-log entry on its own (a retry, or an entry of a slice that failed): drop the stored
    buckets its span covers and return the bucket-aligned span of the rows the symbol holds there
    *now* — so a span whose bad version was removed since is processed without it. All bounds of the
    entry stay in SQL; only the rows' span comes back to Python."""
    params = {
        "symbol": change.symbol,
        "first": change.first_time,
        "last": change.last_time,
        "width": agg.width,
        "origin": ORIGIN,
    }
    with connection.cursor() as cur:
        cur.execute(
            sql.SQL(
                "DELETE FROM {} WHERE symbol = %(symbol)s AND bucket >= date_bin(%(width)s, %(first)s, %(origin)s)"
                " AND bucket <= %(last)s"
            ).format(sql.Identifier(agg.rollup_table)),
            params,
        )
        cur.execute(
            sql.SQL(
                "SELECT date_bin(%(width)s, min(m.time), %(origin)s), date_bin(%(width)s, max(m.time), %(origin)s)"
                " FROM {} m WHERE m.{} = %(symbol)s AND m.time >= date_bin(%(width)s, %(first)s, %(origin)s)"
                " AND m.time < date_bin(%(width)s, %(last)s, %(origin)s) + %(width)s"
            ).format(sql.Identifier(agg.dataset.table), sql.Identifier(agg.dataset.symbol_column)),
            params,
        )
        lo, last_bucket = cur.fetchone()
    if lo is None:
        return {}
    return {change.symbol: [(lo, last_bucket + agg.width)]}


def _cagg_refresh_one(agg: Aggregate, change: Change) -> None:
    """Refresh the continuous aggregate over one entry's span (unbounded above when its last bucket
    ends past what Python can represent)."""
    lo = bucket_floor(agg, change.first_time)
    try:
        hi = bucket_floor(agg, change.last_time) + agg.width
    except OverflowError:
        hi = None
    _cagg_call_refresh(agg, lo, hi)
    _cagg_call_refresh(agg, lo, hi)


def _consumer_steps(agg: Aggregate, cagg: bool, done: dict) -> dict:
    """The callables ``changes_run`` / ``failures_retry`` take for ``agg`` (counting buckets in ``done``)."""

    def process(changes: list[Change]) -> None:
        done["buckets"] += rollups_recompute(aggregate=agg.name, spans=_spans(agg, changes), only_multi_version=cagg)

    def process_one(change: Change) -> None:
        done["buckets"] += rollups_recompute(aggregate=agg.name, spans=_span_now(agg, change), only_multi_version=cagg)

    steps: dict = {"process_one": process_one}
    if cagg:
        steps["prepare_one"] = lambda change: _cagg_refresh_one(agg, change)
    return {
        **steps,
        "process": process,
        "prepare": (lambda changes: _cagg_refresh(agg, _spans(agg, changes))) if cagg else None,
    }


def rollups_refresh(
    *,
    dataset: str | None = None,
    batch: int = 100,
    max_batches: int | None = None,
    retry: bool = True,
    force_retry: bool = False,
) -> dict:
    """Consume the change log for the aggregated datasets and recompute exactly the touched buckets.

    Each batch of changes is recomputed and consumed in one transaction (the cursor row is locked, so
    concurrent runs never do the same work twice). On the TimescaleDB lane the continuous aggregate
    is first refreshed over the batch's spans (it cannot be inside a transaction); a crash between
    the two leaves the changes pending, and pending buckets are read live, so nothing wrong is read.

    No span wedges the consumer (``timeseries.changes.changes_run``): an entry that cannot be
    processed is recorded as a ``ConsumerFailure`` and passed, the other series and datasets go on,
    and open failures are retried first (``retry``; all of them at once with ``force_retry``). Reads
    treat the span of an open failure as pending (its buckets are aggregated live), so nothing stale is
    read meanwhile; the operator's remedy is ``manage.py remove_versions`` (docs/operations.md).
    """
    names = [dataset] if dataset else list(BY_DATASET)
    for name in names:
        if name not in BY_DATASET:
            raise ValueError(f"dataset {name!r} has no aggregate: expected one of {', '.join(BY_DATASET)}")

    report: dict[str, Any] = {"lane": capabilities().lane}
    for name in names:
        agg = BY_DATASET[name]
        cagg = uses_cagg(agg)
        _outside_transaction(cagg)
        done = {
            "changes": 0,
            "buckets": 0,
            "batches": 0,
            "seconds": 0.0,
            "rebuilt": False,
            "failed": 0,
            "retried": 0,
            "resolved": 0,
        }
        report[name] = done
        started = _time.monotonic()
        if not RollupState.objects.filter(dataset=name).exists():
            try:
                done["buckets"] += rollups_rebuild(dataset=name)
            except Exception as exc:
                if not span_error(exc):
                    raise
                # reads stay right (without the state row every bucket is read live); the other
                # datasets go on, and each run tries the rebuild again
                done["error"] = f"rebuild failed: {type(exc).__name__}: {exc}"
                logger.warning("rollups of %s: %s", name, done["error"])
                continue
            done["rebuilt"] = True
        steps = _consumer_steps(agg, cagg, done)
        if retry or force_retry:
            retried: RetryResult = failures_retry(
                consumer=CONSUMER,
                dataset=name,
                process_one=steps["process_one"],
                prepare_one=steps.get("prepare_one"),
                force=force_retry,
            )
            done["retried"], done["resolved"] = retried.retried, retried.resolved
        while max_batches is None or done["batches"] < max_batches:
            run = changes_run(consumer=CONSUMER, dataset=name, limit=batch, **steps)
            if not run.consumed:
                break
            done["changes"] += run.consumed
            done["failed"] += len(run.failed)
            done["batches"] += 1
        done["seconds"] = round(_time.monotonic() - started, 3)
    return report


COMPUTABLE = (datetime(1, 1, 2, tzinfo=UTC), datetime(9999, 12, 31, tzinfo=UTC))


def _unbucketable(agg: Aggregate, symbol: str, instant: str) -> ValueError:
    return ValueError(
        f"{agg.dataset.name} symbol {symbol!r} holds a row at {instant}, outside the buckets tsm can compute:"
        f" find it (admin, {agg.dataset.name} list filtered by symbol; docs/operations.md) and remove it with"
        f" manage.py remove_versions {agg.dataset.name} --id ROW_ID --reason TEXT"
    )


def _rebuild_spans(agg: Aggregate, cur) -> dict[str, list[tuple[datetime, datetime]]]:
    """Per symbol, the bucket-aligned span of its registered series; an error naming the first symbol
    with a row whose bucket Python cannot hold (read as text first: such an instant cannot be loaded)."""
    cur.execute(
        "SELECT symbol, CASE WHEN min(first_time) < %s THEN min(first_time)::text ELSE max(last_time)::text END"
        " FROM timeseries_series WHERE dataset = %s AND (first_time < %s OR last_time >= %s)"
        " GROUP BY symbol ORDER BY symbol LIMIT 1",
        [COMPUTABLE[0], agg.dataset.name, COMPUTABLE[0], COMPUTABLE[1]],
    )
    bad = cur.fetchone()
    if bad is not None:
        raise _unbucketable(agg, bad[0], bad[1])
    cur.execute(
        "SELECT symbol, min(first_time), max(last_time) FROM timeseries_series WHERE dataset = %s GROUP BY symbol",
        [agg.dataset.name],
    )
    return {symbol: [(bucket_floor(agg, lo), bucket_floor(agg, hi) + agg.width)] for symbol, lo, hi in cur.fetchall()}


def rollups_rebuild(*, dataset: str) -> int:
    """Rebuild the stored buckets of ``dataset`` from scratch and mark them trusted (RollupState).

    The consumer runs it first whenever the state row is missing: fresh install, data loaded before
    the change log existed, a restored or truncated database. The series registry is recomputed from
    the stored rows first (``timeseries.registry``), so the range of a removed row is forgotten. On
    the TimescaleDB lane the continuous aggregate is refreshed over all time first (outside a
    transaction). The cursor moves only past the changes logged before that refresh; later ones stay
    pending (read live, consumed next)."""
    agg = BY_DATASET[dataset]
    cagg = uses_cagg(agg)
    _outside_transaction(cagg)
    through = Change.objects.filter(dataset=dataset).aggregate(m=Max("id"))["m"]
    if cagg:
        _cagg_call_refresh(agg, None, None)
    with transaction.atomic():
        changes_pending(consumer=CONSUMER, dataset=dataset, limit=0)  # locks the cursor row
        series_registry_recompute(dataset=dataset)
        with connection.cursor() as cur:
            cur.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(agg.rollup_table)))
            spans = _rebuild_spans(agg, cur)
        written = rollups_recompute(aggregate=agg.name, spans=spans, only_multi_version=cagg)
        if through is not None:
            changes_consume(consumer=CONSUMER, dataset=dataset, through_id=through)
        RollupState.objects.update_or_create(dataset=dataset, defaults={})
    return written


def _outside_transaction(cagg: bool) -> None:
    if cagg and connection.in_atomic_block:
        raise RuntimeError(
            "the rollups consumer refreshes TimescaleDB continuous aggregates, which cannot run inside a"
            " transaction: call it outside transaction.atomic()"
        )


# --- reading -----------------------------------------------------------------------------------


def _read_sql(agg: Aggregate, *, cagg: bool, force_live: bool) -> sql.Composable:
    names = agg.measure_names
    cols = sql.SQL(", ").join(map(sql.Identifier, names))
    r_cols = sql.SQL(", ").join(sql.SQL("r.{}").format(sql.Identifier(n)) for n in names)
    stored = sql.SQL(
        "SELECT r.bucket, {r_cols}, r.max_known_at, r.max_recorded_at FROM {rollup} r"
        " WHERE r.symbol = %(symbol)s AND r.bucket >= %(lo)s AND r.bucket < %(hi)s"
    ).format(r_cols=r_cols, rollup=sql.Identifier(agg.rollup_table))
    if cagg:
        stored += sql.SQL(
            " UNION ALL SELECT r.bucket, {r_cols}, r.max_known_at, r.max_recorded_at FROM {cagg} r"
            " WHERE r.symbol = %(symbol)s AND r.bucket >= %(lo)s AND r.bucket < %(hi)s AND NOT EXISTS ("
            "SELECT 1 FROM {rollup} x WHERE x.symbol = r.symbol AND x.bucket = r.bucket)"
        ).format(r_cols=r_cols, cagg=sql.Identifier(agg.cagg), rollup=sql.Identifier(agg.rollup_table))
    if force_live:
        stored = sql.SQL("SELECT * FROM ({}) s WHERE false").format(stored)
    versions = _versions_per_series(
        agg, sql.SQL("%(symbol)s"), sql.SQL("l.bucket"), sql.SQL("l.bucket + %(width)s"), pit=True
    )
    live_buckets = (
        sql.SQL("SELECT b FROM generate_series(%(lo)s::timestamptz, %(hi)s::timestamptz - %(width)s, %(width)s) b")
        if force_live
        else sql.SQL(
            "SELECT bucket FROM judged WHERE NOT exact"
            " UNION SELECT g FROM pending p CROSS JOIN LATERAL generate_series("
            "date_bin(%(width)s, greatest(p.first_time, %(lo)s), %(origin)s),"
            " least(p.last_time, %(hi)s - interval '1 microsecond'), %(width)s) g"
        )
    )
    return sql.SQL(
        "WITH pending AS ("
        "SELECT c.first_time, c.last_time FROM timeseries_change c"
        " WHERE c.dataset = %(dataset)s AND c.symbol = %(symbol)s"
        " AND (c.id > COALESCE((SELECT k.last_id FROM timeseries_change_cursor k"
        " WHERE k.consumer = %(consumer)s AND k.dataset = %(dataset)s), 0)"
        " OR c.id IN (SELECT f.change_id FROM timeseries_consumer_failure f"  # passed, not done: still pending
        " WHERE f.consumer = %(consumer)s AND f.dataset = %(dataset)s AND f.resolved_at IS NULL))"
        " AND c.last_time >= %(lo)s AND c.first_time < %(hi)s),"
        " stored AS ({stored}),"
        " judged AS (SELECT s.*, (EXISTS (SELECT 1 FROM timeseries_rollup_state st WHERE st.dataset = %(dataset)s)"
        " AND s.max_known_at <= %(at)s AND s.max_recorded_at <= %(rb)s AND NOT EXISTS ("
        "SELECT 1 FROM pending p WHERE p.first_time < s.bucket + %(width)s AND p.last_time >= s.bucket)) AS exact"
        " FROM stored s),"
        " live(bucket) AS ({live_buckets})"
        " SELECT bucket AS time, {cols}, 'stored' AS source FROM judged WHERE exact"
        " UNION ALL SELECT l.bucket, {x_cols}, 'live' FROM live l CROSS JOIN LATERAL ("
        "SELECT count(*) AS n, {measures} FROM ({versions}) v) x WHERE x.n > 0"
        " ORDER BY 1"
    ).format(
        stored=stored,
        live_buckets=live_buckets,
        cols=cols,
        measures=_measures(agg),
        versions=versions,
        x_cols=sql.SQL(", ").join(sql.SQL("x.{}").format(sql.Identifier(n)) for n in names),
    )


def _aware(name: str, value: datetime | None) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name}={value.isoformat()} is naive: give a time zone (e.g. +00:00)")
    return value.astimezone(UTC)


def aggregate_read(
    *,
    aggregate: str,
    symbol: str,
    at: datetime,
    start: datetime,
    end: datetime,
    recorded_by: datetime | None = None,
    force_live: bool = False,
    wrap=None,
) -> list[dict]:
    """Buckets of ``aggregate`` for ``symbol`` overlapping [start, end], as known at ``at`` (as
    recorded by ``recorded_by``), oldest first. Raw measures plus ``time`` and ``source`` ("stored":
    from the rollup / continuous aggregate, "live": aggregated from the raw rows); ``force_live``
    aggregates every bucket live (the baseline the stored path is measured and tested against)."""
    agg = AGGREGATES[aggregate]
    if not isinstance(symbol, str) or not symbol.strip():
        raise ValueError("symbol is required (a non-empty string)")
    at, start, end = _aware("at", at), _aware("start", start), _aware("end", end)
    rb = END_OF_TIME if recorded_by is None else _aware("recorded_by", recorded_by)
    if start > end:
        raise ValueError("start must not be after end")
    lo = bucket_floor(agg, start)
    hi = bucket_floor(agg, min(end, at)) + agg.width  # nothing in a bucket starting after T is known at T
    if hi <= lo:
        return []
    params = {
        "symbol": symbol.strip(),
        "at": at,
        "rb": rb,
        "lo": lo,
        "hi": hi,
        "width": agg.width,
        "origin": ORIGIN,
        "dataset": agg.dataset.name,
        "consumer": CONSUMER,
    }
    query = _read_sql(agg, cagg=uses_cagg(agg), force_live=force_live)
    if wrap is not None:  # a query over the buckets (column ``time`` + the measures), e.g. a coarser roll-up
        query = wrap(query)
    with _cursor() as cur:
        cur.execute(query, params)
        names = [d.name for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]


def vwap_of(pv: Decimal | None, volume: Decimal | None) -> Decimal | None:
    """sum(vwap x volume) / sum(volume), rounded half-up to 6 decimals; None without volume."""
    if pv is None or not volume:
        return None
    return _EXACT.divide(Decimal(pv), Decimal(volume)).quantize(PRICE_STEP, rounding=ROUND_HALF_UP)


def daily_bars(
    *,
    symbol: str,
    at: datetime,
    start: datetime,
    end: datetime,
    recorded_by: datetime | None = None,
    force_live: bool = False,
) -> list[dict]:
    """Daily OHLCV bars (UTC days) overlapping [start, end] as known at ``at``; see the module doc."""
    rows = aggregate_read(
        aggregate="daily_ohlcv",
        symbol=symbol,
        at=at,
        start=start,
        end=end,
        recorded_by=recorded_by,
        force_live=force_live,
    )
    at = _aware("at", at)
    return [
        {
            "time": r["time"],
            "open": r["open"],
            "high": r["high"],
            "low": r["low"],
            "close": r["close"],
            "volume": int(r["volume"] or 0),
            "vwap": vwap_of(r["pv"], r["pv_volume"]),
            "bars": r["bars"],
            "partial": at < r["time"] + DAILY_OHLCV.width,
        }
        for r in rows
    ]


def hourly_sentiment(
    *,
    symbol: str,
    at: datetime,
    start: datetime,
    end: datetime,
    recorded_by: datetime | None = None,
    force_live: bool = False,
) -> list[dict]:
    """Hourly mention-weighted sentiment overlapping [start, end] as known at ``at``; see the module doc."""
    rows = aggregate_read(
        aggregate="hourly_sentiment",
        symbol=symbol,
        at=at,
        start=start,
        end=end,
        recorded_by=recorded_by,
        force_live=force_live,
    )
    return _sentiment_rows(rows)


def _sentiment_rows(rows: list[dict]) -> list[dict]:
    return [
        {
            "time": r["time"],
            "sentiment": (r["weighted"] / float(r["weight"])) if r["weight"] else None,
            "mentions": int(r["mentions"] or 0),
            "platforms": r["platforms"],
        }
        for r in rows
    ]


DAILY_SENTIMENT_SQL = (
    "SELECT date_bin(interval '1 day', h.time, %(origin)s) AS time, sum(h.weighted) AS weighted,"
    " sum(h.weight) AS weight, sum(h.mentions) AS mentions, max(h.platforms) AS platforms"
    " FROM ({}) h GROUP BY 1 ORDER BY 1"
)


def daily_sentiment(
    *, symbol: str, at: datetime, start: datetime, end: datetime, recorded_by: datetime | None = None
) -> list[dict]:
    """``hourly_sentiment`` rolled up per UTC day in SQL (the chart of a long window): the day's
    mention-weighted sentiment over every platform window of its hours, total mentions and the most
    platforms of any hour. Built from the exact point-in-time hourly buckets, so exact as of ``at``
    too; one row a day instead of 24 keeps a year's chart cheap."""
    rows = aggregate_read(
        aggregate="hourly_sentiment",
        symbol=symbol,
        at=at,
        start=start,
        end=end,
        recorded_by=recorded_by,
        wrap=lambda q: sql.SQL(DAILY_SENTIMENT_SQL).format(q),
    )
    return _sentiment_rows(rows)


def rollups_lag(*, datasets: Iterable[str] | None = None) -> dict[str, dict]:
    """Per aggregated dataset, the rollups consumer's backlog (see ``changes_lag``)."""
    return {d: changes_lag(consumer=CONSUMER, dataset=d) for d in (datasets or BY_DATASET)}

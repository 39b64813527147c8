"""Point-in-time selectors: what was knowable at ``at`` (as recorded by ``recorded_by``), nothing more.

As of T (optionally as recorded by S), for each key consider the versions with known_at <= T (and
recorded_at <= S); the one with the greatest (known_at, recorded_at) is the truth and every other
version does not exist (the time model: timeseries/datasets.py). Every selector returns plain data:
a list of dicts whose keys are the stored column names (plus time, known_at, recorded_at);
timestamps are aware UTC datetimes, exact decimals are ``decimal.Decimal``.

Queries are parameterised SQL built from the dataset declarations; the ones that need LATERAL or an
anti-join live next to the function that runs them. All of them rely on ``known_at >= time`` (the
loader rejects rows that break it), so ``time <= T`` is added to let the indexes bound each scan.
"""
from __future__ import annotations

import io
import json
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone as dt_timezone
from typing import Any, Iterable, Sequence

import numpy as np
import pgpq
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
from django.db import connection
from psycopg import sql
from psycopg.types.datetime import TimestamptzLoader

from timeseries import aggregates, indicators
from timeseries.datasets import DATASETS, MARKET_DATA, SOCIAL_SENTIMENT, Dataset, get_dataset
from timeseries.params import min_quality_check, positive_int
from timeseries.rules import END_OF_TIME
from timeseries.sqltext import identifiers

# dataset -> the name of its "state as of T" selector in this module (declared on each Dataset)
SELECTOR_FOR_DATASET = {name: spec.state_selector for name, spec in DATASETS.items()}


class NaiveDatetime(ValueError):
    pass


def aware(name: str, value: datetime | None, *, required: bool = True) -> datetime | None:
    """Validate a time parameter: tz-aware, returned in UTC."""
    if value is None:
        if required:
            raise ValueError(f"{name} is required")
        return None
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise NaiveDatetime(f"{name}={value.isoformat()} is naive: give a time zone (e.g. +00:00)")
    return value.astimezone(dt_timezone.utc)


def _symbols(symbols: Iterable[str] | None) -> list[str] | None:
    if symbols is None:
        return None
    if isinstance(symbols, str):
        symbols = [symbols]
    out = [s.strip() for s in symbols if s and s.strip()]
    return out


def _params(at: datetime, recorded_by: datetime | None) -> dict[str, Any]:
    return {"at": aware("at", at), "rb": aware("recorded_by", recorded_by, required=False) or END_OF_TIME}


@contextmanager
def _cursor():
    """A cursor decoding timestamptz with psycopg's C loader.

    Django registers a pure-Python subclass of psycopg's loader on every cursor, which costs ~6 µs
    per value: most of the client time of a 1,000-row answer. The session time zone is UTC, so the
    C loader returns the same aware datetimes.
    """
    with connection.cursor() as cur:
        cur.cursor.adapters.register_loader("timestamptz", TimestamptzLoader)
        yield cur


def _fetch(query: sql.Composable, params: dict) -> list[dict]:
    with _cursor() as cur:
        cur.execute(query, params)
        names = [d.name for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]


def _is_current(spec: Dataset, alias: str = "a", inner: Sequence[sql.Composable] = ()) -> sql.Composable:
    """``alias`` is the current version of its key as of %(at)s / %(rb)s (anti-join on the version index).

    ``inner``: conditions on key columns of ``b`` that the outer rows satisfy too (redundant, as b has
    a's key): they let the planner bound ``b`` to the same chunks and compressed batches as ``a``.
    """
    same_key = sql.SQL(" AND ").join(
        sql.SQL("b.{k} = {a}.{k}").format(k=sql.Identifier(k), a=sql.Identifier(alias)) for k in spec.key
    )
    return sql.SQL(
        "{a}.known_at <= %(at)s AND {a}.recorded_at <= %(rb)s AND {a}.time <= %(at)s AND NOT EXISTS ("
        "SELECT 1 FROM {t} b WHERE {same_key} AND b.known_at <= %(at)s AND b.recorded_at <= %(rb)s"
        " AND (b.known_at, b.recorded_at) > ({a}.known_at, {a}.recorded_at){inner})"
    ).format(a=sql.Identifier(alias), t=sql.Identifier(spec.table), same_key=same_key,
             inner=sql.SQL("").join(sql.SQL(" AND ") + c for c in inner))


def _current_rows(
    spec: Dataset,
    params: dict,
    *,
    where: Sequence[sql.Composable] = (),
    order: Sequence[str] = (),
    limit: int | None = None,
    inner: Sequence[sql.Composable] = (),
) -> list[dict]:
    conditions = [_is_current(spec, inner=inner), *where]
    query = sql.SQL("SELECT {cols} FROM {t} a WHERE {cond}").format(
        cols=_stored_cols(spec, "a", params), t=sql.Identifier(spec.table), cond=sql.SQL(" AND ").join(conditions)
    )
    if order:
        query += sql.SQL(" ORDER BY ") + sql.SQL(", ").join(sql.SQL("a." + o) for o in order)
    if limit is not None:
        query += sql.SQL(" LIMIT %(limit)s")
        params = {**params, "limit": _positive("limit", limit)}
    return _fetch(query, params)


_positive = positive_int  # limit, bars: positive integers (timeseries.params)


def _symbols_any(spec: Dataset, alias: str = "a") -> sql.Composable:
    """``alias`` names one of %(symbols)s in its symbol column or in its ``symbols_array`` column."""
    return sql.SQL("({a}.{c} = ANY(%(symbols)s) OR {a}.{arr} && %(symbols)s::text[])").format(
        a=sql.Identifier(alias), c=sql.Identifier(spec.symbol_column), arr=sql.Identifier(spec.symbols_array)
    )


def _symbol_filter(spec: Dataset, params: dict, symbols: list[str] | None) -> list[sql.Composable]:
    if symbols is None:
        return []
    params["symbols"] = symbols
    return [sql.SQL("a.{} = ANY(%(symbols)s)").format(sql.Identifier(spec.symbol_column))]


# --- min_quality: exclude rows curated below a score (timeseries/quality.py) ------------------------


def _min_quality(spec: Dataset, min_quality) -> float | None:
    """Validate ``min_quality`` (None, or a number in [0, 1]) for a dataset that has quality_score."""
    if min_quality is None:
        return None
    if not spec.curated:
        raise ValueError(f"min_quality: {spec.name} has no quality_score")
    return min_quality_check(min_quality)


def _replay(params: dict) -> bool:
    return params.get("rb", END_OF_TIME) < END_OF_TIME


def _score(spec: Dataset, alias: str, params: dict) -> sql.Composable:
    """``alias``'s quality score; as recorded by S, the score it had at S: ``old_score`` of its earliest
    audit after S, else its current score (the array keeps a NULL old score)."""
    a = sql.Identifier(alias)
    if not _replay(params):
        return sql.SQL("{a}.quality_score").format(a=a)
    params["mq_dataset"] = spec.name
    return sql.SQL(
        "(COALESCE((SELECT ARRAY[q.old_score] FROM timeseries_quality_audit q WHERE q.dataset = %(mq_dataset)s"
        " AND q.row_id = {a}.id AND q.changed_at > %(rb)s ORDER BY q.changed_at, q.id LIMIT 1), ARRAY[{a}.quality_score]))[1]"
    ).format(a=a)


def _quality_ok(spec: Dataset, alias: str, params: dict, min_quality: float) -> sql.Composable:
    """``alias``'s score (as it stood at recorded_by) is NULL (not scored) or >= min_quality."""
    params["mq"] = min_quality
    return sql.SQL("COALESCE({score} >= %(mq)s, true)").format(score=_score(spec, alias, params))


def _stored_cols(spec: Dataset, alias: str, params: dict) -> sql.Composable:
    """The stored columns of ``alias``; in a replay (recorded_by) ``quality_score`` is the score as it stood then."""
    if not (spec.curated and _replay(params)):
        return identifiers(spec.stored_columns, alias)
    return sql.SQL(", ").join(
        sql.SQL("{} AS quality_score").format(_score(spec, alias, params)) if c == "quality_score"
        else sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(c))
        for c in spec.stored_columns
    )


# --- latest row per series (market state, sentiment, as-of join) -----------------------------------


def _latest_lateral(
    spec: Dataset, outer: str, at_expr: str, quality: sql.Composable | None = None, cols: sql.Composable | None = None
) -> sql.Composable:
    """LATERAL body: the latest current row of the series named by ``outer``'s columns, known at at_expr.

    Walking the version index backwards (time, rest of key, known_at, recorded_at all DESC), the first
    row passing the filters is the current version of the newest key known at that instant. With a
    ``quality`` condition (on alias ``m``), the first row that is current (no newer version of its key
    known then) *and* passes it: the latest good row, never an older version of an excluded key.
    """
    match = sql.SQL(" AND ").join(
        sql.SQL("m.{c} = {o}.{c}").format(c=sql.Identifier(c), o=sql.Identifier(outer)) for c in spec.series
    )
    rest = [k for k in spec.key if k not in spec.series and k != "time"]
    order = ["time", *rest, "known_at", "recorded_at"]
    at = sql.SQL(at_expr)
    extra = sql.SQL("")
    if quality is not None:
        same_key = sql.SQL(" AND ").join(sql.SQL("b.{k} = m.{k}").format(k=sql.Identifier(k)) for k in spec.key)
        extra = sql.SQL(
            " AND NOT EXISTS (SELECT 1 FROM {t} b WHERE {same_key} AND b.known_at <= {at} AND b.recorded_at <= %(rb)s"
            " AND (b.known_at, b.recorded_at) > (m.known_at, m.recorded_at)) AND {quality}"
        ).format(t=sql.Identifier(spec.table), same_key=same_key, at=at, quality=quality)
    return sql.SQL(
        "SELECT {cols} FROM {t} m WHERE {match} AND m.time <= {at} AND m.known_at <= {at}"
        " AND m.recorded_at <= %(rb)s{extra} ORDER BY {order} LIMIT 1"
    ).format(
        cols=cols if cols is not None else identifiers(spec.stored_columns, "m"),
        t=sql.Identifier(spec.table),
        match=match,
        at=at,
        extra=extra,
        order=sql.SQL(", ").join(sql.SQL("m.{} DESC").format(sql.Identifier(c)) for c in order),
    )


def _latest_per_series(spec: Dataset, at: datetime, recorded_by: datetime | None, symbols, min_quality=None) -> list[dict]:
    params = _params(at, recorded_by)
    symbols = _symbols(symbols)
    min_quality = _min_quality(spec, min_quality)
    quality = None if min_quality is None else _quality_ok(spec, "m", params, min_quality)
    series_alias = "s"
    projection = sql.SQL(", ").join(
        sql.SQL("s.{} AS {}").format(sql.Identifier("symbol" if i == 0 else "subkey"), sql.Identifier(c))
        for i, c in enumerate(spec.series)
    )
    query = sql.SQL(
        "SELECT x.* FROM (SELECT {projection} FROM timeseries_series s WHERE s.dataset = %(dataset)s {symfilter}) {sa}"
        " CROSS JOIN LATERAL ({lateral}) x ORDER BY {order}"
    ).format(
        projection=projection,
        symfilter=sql.SQL("AND s.symbol = ANY(%(symbols)s)") if symbols is not None else sql.SQL(""),
        sa=sql.Identifier(series_alias),
        lateral=_latest_lateral(spec, series_alias, "%(at)s", quality, _stored_cols(spec, "m", params)),
        order=sql.SQL(", ").join(sql.SQL("x.{}").format(sql.Identifier(c)) for c in spec.series),
    )
    return _fetch(query, {**params, "dataset": spec.name, "symbols": symbols})


def market_state(
    *, at: datetime, symbols: Iterable[str] | None = None, recorded_by: datetime | None = None, min_quality: float | None = None
) -> list[dict]:
    """Per symbol, its latest bar known at ``at`` (a bar is known when it closes), by symbol.

    ``min_quality=q``: the latest bar whose score (as it stood at ``recorded_by``) is NULL or >= q.
    """
    return _latest_per_series(MARKET_DATA, at, recorded_by, symbols, min_quality)


def sentiment(*, at: datetime, symbols: Iterable[str] | None = None, recorded_by: datetime | None = None) -> list[dict]:
    """Per symbol and platform, the latest closed hourly window known at ``at``."""
    return _latest_per_series(SOCIAL_SENTIMENT, at, recorded_by, symbols)


# --- event lists --------------------------------------------------------------------------------


def news(
    *,
    at: datetime,
    symbols: Iterable[str] | None = None,
    limit: int = 1000,
    recorded_by: datetime | None = None,
    min_quality: float | None = None,
) -> list[dict]:
    """News known at ``at``, newest first, then impact_score descending (``min_quality``: see market_state)."""
    spec = DATASETS["news_events"]
    params = _params(at, recorded_by)
    where = _symbol_filter(spec, params, _symbols(symbols))
    min_quality = _min_quality(spec, min_quality)
    if min_quality is not None:
        where.append(_quality_ok(spec, "a", params, min_quality))
    return _current_rows(spec, params, where=where, order=spec.order_newest, limit=limit)


def insider_trades(
    *, at: datetime, symbols: Iterable[str] | None = None, limit: int = 500, recorded_by: datetime | None = None
) -> list[dict]:
    """Trades filed by ``at`` (the current version of each), newest filing first, then value descending."""
    spec = DATASETS["insider_trades"]
    params = _params(at, recorded_by)
    where = [sql.SQL("a.filing_date <= %(at)s"), *_symbol_filter(spec, params, _symbols(symbols))]
    return _current_rows(spec, params, where=where, order=spec.order_newest, limit=limit)


def government_events(
    *,
    at: datetime,
    symbols: Iterable[str] | None = None,
    sectors: Iterable[str] | None = None,
    limit: int = 1000,
    recorded_by: datetime | None = None,
) -> list[dict]:
    """Events known at ``at`` whose primary or affected symbols, or sectors, match; newest first."""
    spec = DATASETS["government_events"]
    params = _params(at, recorded_by)
    symbols, sectors = _symbols(symbols), _symbols(sectors)
    matches = []
    if symbols is not None:
        params["symbols"] = symbols
        matches.append(_symbols_any(spec))
    if sectors is not None:
        params["sectors"] = sectors
        matches.append(sql.SQL("a.sectors && %(sectors)s::text[]"))
    where = [sql.SQL("(") + sql.SQL(" OR ").join(matches) + sql.SQL(")")] if matches else []
    return _current_rows(spec, params, where=where, order=spec.order_newest, limit=limit)


def history(
    *,
    dataset: str,
    at: datetime,
    symbols: Iterable[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int | None = None,
    recorded_by: datetime | None = None,
    min_quality: float | None = None,
) -> list[dict]:
    """Rows of ``dataset`` as known at ``at`` with event time in [start, end], oldest first.

    ``min_quality=q`` drops the current rows scored below q (as the score stood at ``recorded_by``).
    """
    spec = get_dataset(dataset)
    params = _params(at, recorded_by)
    where = _symbol_filter(spec, params, _symbols(symbols))
    # the same symbol and time range on the anti-join's b (compressed chunks: ~60x faster, lifecycle.py)
    inner = [sql.SQL("b.{} = ANY(%(symbols)s)").format(sql.Identifier(spec.symbol_column))] if where else []
    min_quality = _min_quality(spec, min_quality)
    if min_quality is not None:
        where.append(_quality_ok(spec, "a", params, min_quality))
    if start is not None:
        params["start"] = aware("start", start)
        where.append(sql.SQL("a.time >= %(start)s"))
        inner.append(sql.SQL("b.time >= %(start)s"))
    if end is not None:
        params["end"] = aware("end", end)
        where.append(sql.SQL("a.time <= %(end)s"))
        inner.append(sql.SQL("b.time <= %(end)s"))
    if start is not None and end is not None and params["start"] > params["end"]:
        raise ValueError("start must not be after end")
    return _current_rows(spec, params, where=where, order=[*spec.key], limit=limit, inner=inner)


# --- full state ---------------------------------------------------------------------------------


RECENT_BARS_SQL = """
SELECT DISTINCT ON (time) time, open, high, low, close, volume, recorded_at
FROM market_data
WHERE symbol = %(symbol)s AND time <= %(at)s AND known_at <= %(at)s AND recorded_at <= %(rb)s
ORDER BY time DESC, known_at DESC, recorded_at DESC
LIMIT %(bars)s
"""

INSIDER_SUMMARY_DAYS = 90


RECENT_GOOD_BARS_SQL = """
SELECT time, open, high, low, close, volume, recorded_at FROM (
    SELECT DISTINCT ON (time) id, time, open, high, low, close, volume, recorded_at, quality_score
    FROM market_data
    WHERE symbol = %(symbol)s AND time <= %(at)s AND known_at <= %(at)s AND recorded_at <= %(rb)s
    ORDER BY time DESC, known_at DESC, recorded_at DESC
) m
WHERE {quality}
ORDER BY time DESC
LIMIT %(bars)s
"""


def recent_bars(
    *, symbol: str, at: datetime, bars: int = 200, recorded_by: datetime | None = None, min_quality: float | None = None
) -> list[dict]:
    """The last ``bars`` bars of ``symbol`` known at ``at`` (current versions), oldest first.

    ``min_quality``: the last ``bars`` current bars scored NULL or >= it (suspect bars are skipped,
    not replaced by older versions); this walks the symbol's whole history up to ``at``.
    """
    params = {**_params(at, recorded_by), "symbol": symbol, "bars": _positive("bars", bars)}
    min_quality = _min_quality(MARKET_DATA, min_quality)
    if min_quality is None:
        return _fetch(sql.SQL(RECENT_BARS_SQL), params)[::-1]
    query = sql.SQL(RECENT_GOOD_BARS_SQL).format(quality=_quality_ok(MARKET_DATA, "m", params, min_quality))
    return _fetch(query, params)[::-1]


def _insider_summary(trades: list[dict], at: datetime) -> dict:
    buys = [t for t in trades if str(t["transaction_type"]).lower() in ("buy", "p", "purchase")]
    sells = [t for t in trades if str(t["transaction_type"]).lower() in ("sell", "s", "sale")]

    def total(rows, column):
        return sum((r[column] or 0) for r in rows)

    return {
        "window_days": INSIDER_SUMMARY_DAYS,
        "filings": len(trades),
        "buys": len(buys),
        "sells": len(sells),
        "net_shares": total(buys, "shares") - total(sells, "shares"),
        "net_value": total(buys, "value") - total(sells, "value"),
        "cluster_trades": sum(1 for t in trades if t["is_cluster_trade"]),
        "latest_filing": trades[0]["filing_date"] if trades else None,
        "recent": trades[:10],
    }


def reconstruct(
    *, at: datetime, symbol: str, recorded_by: datetime | None = None, bars: int = 200, min_quality: float | None = None
) -> dict:
    """Everything known about ``symbol`` at ``at``: bar, indicators, news, insiders, sentiment, events.

    ``min_quality`` applies to the bar, the bars behind the indicators and the news (see market_state).
    """
    at = aware("at", at)
    state = market_state(at=at, symbols=[symbol], recorded_by=recorded_by, min_quality=min_quality)
    recent = recent_bars(symbol=symbol, at=at, bars=bars, recorded_by=recorded_by, min_quality=min_quality)
    earliest = datetime.min.replace(tzinfo=dt_timezone.utc)
    since = max(earliest, at - timedelta(days=INSIDER_SUMMARY_DAYS)) if at - earliest > timedelta(days=INSIDER_SUMMARY_DAYS) else earliest
    trades = [t for t in insider_trades(at=at, symbols=[symbol], limit=500, recorded_by=recorded_by) if t["filing_date"] >= since]
    parts = {
        "market": state[0] if state else None,
        "news": news(at=at, symbols=[symbol], limit=10, recorded_by=recorded_by, min_quality=min_quality),
        "sentiment": sentiment(at=at, symbols=[symbol], recorded_by=recorded_by),
        "government_events": government_events(at=at, symbols=[symbol], limit=10, recorded_by=recorded_by),
    }
    answered = (state, recent, trades, parts["news"], parts["sentiment"], parts["government_events"])
    recorded = [r["recorded_at"] for rows in answered for r in rows]
    return {
        "symbol": symbol,
        "at": at,
        "recorded_by": recorded_by,
        **parts,
        "indicators": indicators.latest_indicators(bars=recent),
        "insider": _insider_summary(trades, at),
        "max_recorded_at": max(recorded) if recorded else None,
    }


# --- as-of join ---------------------------------------------------------------------------------


def _points_table(points, series: Sequence[str]) -> pa.Table:
    if isinstance(points, pa.Table):
        table = points
    else:
        try:
            import pandas as pd
        except ImportError:  # pragma: no cover
            pd = None
        if pd is not None and isinstance(points, pd.DataFrame):
            table = pa.Table.from_pandas(points, preserve_index=False)
        else:
            rows = list(points)
            if rows and not isinstance(rows[0], dict):
                rows = [dict(zip([*series, "time"], r)) for r in rows]
            table = pa.Table.from_pylist(rows) if rows else pa.table({c: pa.array([], pa.string()) for c in series} | {"time": pa.array([], pa.timestamp("us", tz="UTC"))})
    for c in [*series, "time"]:
        if c not in table.column_names:
            raise ValueError(f"points need a {c!r} column")
    t = table.column("time").type
    if not pa.types.is_timestamp(t) or t.tz is None:
        raise NaiveDatetime("points.time must be tz-aware timestamps")
    cols = [table.column(c).cast(pa.string()) for c in series]
    return pa.table(
        [pa.array(range(table.num_rows), pa.int64()), *cols, table.column("time").cast(pa.timestamp("us", tz="UTC"))],
        names=["idx", *series, "at"],
    )


PARALLEL_ASOF_POINTS = 200_000  # from this many points, probe on two connections at once


def asof_join(
    points, *, dataset: str = "market_data", recorded_by: datetime | None = None, min_quality: float | None = None
) -> list[dict]:
    """For each decision point (symbol, time) the latest row known at that time.

    ``points``: (symbol, time) tuples, dicts, an Arrow table or a DataFrame; for social_sentiment each
    point also names its platform. Returns one dict per point, in input order, with the point's
    ``symbol`` (and series columns), ``at`` (the point's time) and the row's columns (None where no
    row was known). ``asof_join_table`` gives the same answer as an Arrow table (for bulk callers).
    ``min_quality=q``: the latest row scored NULL or >= q (as the score stood at ``recorded_by``).
    """
    return asof_join_table(points, dataset=dataset, recorded_by=recorded_by, min_quality=min_quality).to_pylist()


def asof_join_table(
    points, *, dataset: str = "market_data", recorded_by: datetime | None = None, min_quality: float | None = None
) -> pa.Table:
    """``asof_join`` as an Arrow table (exact decimals, UTC timestamps), built without Python rows.

    Set-based: the points are copied into a temporary table and probed with one LATERAL query in
    (series, time) order, so consecutive probes share index and heap pages; the answer comes back
    through COPY as CSV parsed by Arrow. Large inputs are split in two halves probed on two
    connections sharing one exported snapshot, so both halves see exactly the same data.
    """
    spec = get_dataset(dataset)
    table = _points_table(points, spec.series)
    table = table.take(_probe_order(table, spec.series))
    rb = aware("recorded_by", recorded_by, required=False) or END_OF_TIME
    min_quality = _min_quality(spec, min_quality)
    if table.num_rows >= PARALLEL_ASOF_POINTS and not connection.in_atomic_block:
        result = _asof_parallel(spec, table, rb, min_quality)
    else:
        with connection.cursor() as cur:
            result = _asof_probe(cur.cursor, spec, table, rb, min_quality)
    # back to input order: idx is a permutation of 0..n-1, so a stable argsort of it is exact
    idx = result.column("idx").to_numpy()
    return result.take(np.argsort(idx, kind="stable")).drop_columns(["idx"])


def _probe_order(table: pa.Table, series: Sequence[str]) -> np.ndarray:
    """The order to probe the points in: grouped by series, time ascending within one.

    Consecutive probes of one series then share index and heap pages; sorting here spares
    PostgreSQL a sort (the probes follow the temp table's insertion order). Series are grouped by
    their dictionary code, not sorted by name: grouping is all the locality needs, and integer keys
    sort in half the time of strings (0.19 against 0.41 s for 1M points).
    """
    codes = [pc.dictionary_encode(table.column(c).combine_chunks()).indices.fill_null(-1).to_numpy() for c in series]
    at = table.column("at").combine_chunks().cast(pa.int64()).fill_null(0).to_numpy()
    return np.lexsort((at, *reversed(codes)))


ASOF_CONNECTIONS = 2  # one per core here; each probes a contiguous share of the sorted points


def _asof_parallel(spec: Dataset, table: pa.Table, rb: datetime, min_quality: float | None = None) -> pa.Table:
    """Probe contiguous shares of the (series, time)-sorted points on several connections, all in
    REPEATABLE READ on one exported snapshot, so every share sees exactly the same data."""
    n = ASOF_CONNECTIONS
    cuts = [table.num_rows * i // n for i in range(n + 1)]
    params = connection.get_connection_params()
    conns = [psycopg.connect(**params) for _ in range(n)]
    try:
        conns[0].execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        snapshot = conns[0].execute("SELECT pg_export_snapshot()").fetchone()[0]
        for conn in conns[1:]:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
        jobs = [(conn, table.slice(cuts[i], cuts[i + 1] - cuts[i])) for i, conn in enumerate(conns)]
        with ThreadPoolExecutor(n) as pool:
            parts = list(pool.map(lambda job: _asof_probe(job[0].cursor(), spec, job[1], rb, min_quality), jobs))
        return pa.concat_tables(parts)
    finally:
        for conn in conns:
            conn.close()


def _asof_result_schema(spec: Dataset) -> list[tuple[str, pa.DataType]]:
    series = [(c, pa.string()) for c in spec.series]
    rest = [(c.name, c.arrow_type) for c in spec.columns if c.name not in spec.series]
    times = [(c, pa.timestamp("us", tz="UTC")) for c in ("known_at", "recorded_at")]
    return [("idx", pa.int64()), *series, ("at", pa.timestamp("us", tz="UTC")), *rest, *times]


def _asof_probe(cur, spec: Dataset, points: pa.Table, rb: datetime, min_quality: float | None = None) -> pa.Table:
    """One connection's share: COPY the points in, probe, COPY the answer out as CSV."""
    names = ["idx", *(f"s{i + 1}" for i in range(len(spec.series))), "at"]
    cur.execute(
        "CREATE TEMP TABLE IF NOT EXISTS tsm_asof_points (idx bigint, s1 text, s2 text, at timestamptz)"
    )
    cur.execute("TRUNCATE tsm_asof_points")
    renamed = points.rename_columns(names)
    encoder = pgpq.ArrowToPostgresBinaryEncoder(renamed.schema)
    with cur.copy(
        sql.SQL("COPY tsm_asof_points ({}) FROM STDIN WITH (FORMAT binary)").format(identifiers(names))
    ) as copy:
        copy.write(encoder.write_header())
        for batch in renamed.to_batches(max_chunksize=100_000):
            copy.write(encoder.write_batch(batch))
        copy.write(encoder.finish())
    schema = _asof_result_schema(spec)
    arrays = {c.name for c in spec.columns if c.kind == "text[]"}
    row_cols = sql.SQL(", ").join(
        sql.SQL("to_json(x.{c})::text" if name in arrays else "x.{c}").format(c=sql.Identifier(name))
        for name, _ in schema[len(spec.series) + 2:]
    )
    series_as = sql.SQL(", ").join(
        sql.SQL("p.{} AS {}").format(sql.Identifier(f"s{i + 1}"), sql.Identifier(c)) for i, c in enumerate(spec.series)
    )
    series_out = sql.SQL(", ").join(sql.SQL("p.{}").format(sql.Identifier(c)) for c in spec.series)
    params: dict[str, Any] = {"rb": rb}
    quality = None if min_quality is None else _quality_ok(spec, "m", params, min_quality)
    # no ORDER BY: the points were copied in (series, time) order and a scan of the fresh temporary
    # table returns them so; the answer does not depend on the order, only the speed does
    query = sql.SQL(
        "SELECT p.idx, {series_out}, p.at, {row_cols} FROM (SELECT idx, at, {series_as} FROM tsm_asof_points p) p"
        " LEFT JOIN LATERAL ({lateral}) x ON true"
    ).format(series_out=series_out, row_cols=row_cols, series_as=series_as, lateral=_latest_lateral(spec, "p", "p.at", quality, _stored_cols(spec, "m", params)))
    cur.execute("SET TimeZone = 'UTC'")
    buffer = io.BytesIO()
    statement = sql.SQL("COPY ({}) TO STDOUT WITH (FORMAT csv)").format(query)
    with cur.copy(statement, params) as copy:
        for chunk in copy:
            buffer.write(chunk)
    cur.execute("TRUNCATE tsm_asof_points")
    buffer.seek(0)
    types = {name: (pa.string() if name in arrays else kind) for name, kind in schema}
    result = pcsv.read_csv(
        buffer,
        read_options=pcsv.ReadOptions(column_names=[name for name, _ in schema]),
        convert_options=pcsv.ConvertOptions(
            column_types=types, strings_can_be_null=True, quoted_strings_can_be_null=False,
            true_values=["t"], false_values=["f"],
        ),
    ) if buffer.getbuffer().nbytes else pa.table({name: pa.array([], kind) for name, kind in schema})
    for name in arrays:
        values = [None if v is None else json.loads(v) for v in result.column(name).to_pylist()]
        result = result.set_column(result.schema.get_field_index(name), name, pa.array(values, pa.list_(pa.string())))
    return result


# --- timeline -----------------------------------------------------------------------------------


def _series_match(spec: Dataset, params: dict, symbols: list[str] | None) -> list[sql.Composable]:
    """Rows of ``symbols``; a dataset with ``symbols_array`` (government events) matches it too."""
    if symbols is None:
        return []
    params["symbols"] = symbols
    if spec.symbols_array is not None:
        return [_symbols_any(spec)]
    return [sql.SQL("a.{} = ANY(%(symbols)s)").format(sql.Identifier(spec.symbol_column))]


def changes_between(
    *,
    t1: datetime,
    t2: datetime,
    symbols: Iterable[str] | None = None,
    datasets: Iterable[str] | None = None,
    recorded_by: datetime | None = None,
    limit: int | None = None,
) -> dict[str, list[dict]]:
    """What became known in (t1, t2], per dataset: the difference between the world as of t1 and as of t2.

    For every key whose current version as of t2 (as recorded by ``recorded_by``) was not yet known at
    t1 (its known_at lies in (t1, t2]), that version's stored columns plus ``correction`` (True when the
    key already had a version known at t1) and ``previous`` (the stored columns of the version current
    at t1, or None). Keys unchanged between t1 and t2 are absent; versions known in (t1, t2] but already
    superseded by t2 are not listed (the answer is a difference of two states). Newest known_at first,
    then by key; at most ``limit`` rows per dataset.
    """
    t1, t2 = aware("t1", t1), aware("t2", t2)
    if t1 > t2:
        raise ValueError("t1 must not be after t2")
    names = list(DATASETS) if datasets is None else [get_dataset(d).name for d in datasets]
    symbols = _symbols(symbols)
    return {name: _changes(get_dataset(name), t1, t2, symbols, recorded_by, limit) for name in names}


def _changes(spec: Dataset, t1: datetime, t2: datetime, symbols, recorded_by, limit) -> list[dict]:
    params = {**_params(t2, recorded_by), "t1": t1}
    where = [_is_current(spec), sql.SQL("a.known_at > %(t1)s"), *_series_match(spec, params, symbols)]
    same_key = sql.SQL(" AND ").join(sql.SQL("p.{k} = a.{k}").format(k=sql.Identifier(k)) for k in spec.key)
    previous = [f"prev_{c}" for c in spec.stored_columns]
    query = sql.SQL(
        "SELECT {cols}, {prev} FROM {t} a LEFT JOIN LATERAL (SELECT {pcols} FROM {t} p WHERE {same_key}"
        " AND p.known_at <= %(t1)s AND p.time <= %(t1)s AND p.recorded_at <= %(rb)s"
        " ORDER BY p.known_at DESC, p.recorded_at DESC LIMIT 1) p ON true WHERE {where}"
        " ORDER BY a.known_at DESC, {key}"
    ).format(
        cols=_stored_cols(spec, "a", params),
        prev=sql.SQL(", ").join(
            sql.SQL("p.{} AS {}").format(sql.Identifier(c), sql.Identifier(p)) for c, p in zip(spec.stored_columns, previous)
        ),
        pcols=_stored_cols(spec, "p", params),
        t=sql.Identifier(spec.table),
        same_key=same_key,
        where=sql.SQL(" AND ").join(where),
        key=identifiers(spec.key, "a"),
    )
    if limit is not None:
        query += sql.SQL(" LIMIT %(limit)s")
        params["limit"] = _positive("limit", limit)
    out = []
    for row in _fetch(query, params):
        prev = {c: row.pop(p) for c, p in zip(spec.stored_columns, previous)}
        row["previous"] = prev if prev["recorded_at"] is not None else None
        row["correction"] = row["previous"] is not None
        out.append(row)
    return out


def window_events(
    *,
    dataset: str,
    at: datetime,
    start: datetime,
    end: datetime,
    symbols: Iterable[str] | None = None,
    limit: int = 1000,
    recorded_by: datetime | None = None,
) -> list[dict]:
    """Rows of ``dataset`` known at ``at`` placed in [start, end] (event time; filing_date for insider
    trades), newest first in the dataset's order, at most ``limit``. Government events match their
    primary or affected symbols."""
    spec = get_dataset(dataset)
    params = {**_params(at, recorded_by), "start": aware("start", start), "end": aware("end", end)}
    if params["start"] > params["end"]:
        raise ValueError("start must not be after end")
    column = sql.Identifier(spec.window_time_column)
    where = [
        sql.SQL("a.{c} >= %(start)s AND a.{c} <= %(end)s").format(c=column),
        *_series_match(spec, params, _symbols(symbols)),
    ]
    return _current_rows(spec, params, where=where, order=spec.order_newest, limit=limit)


def symbol_known(*, symbol: str, at: datetime, recorded_by: datetime | None = None) -> bool:
    """Whether any row of ``symbol`` (any dataset; government events by primary or affected symbol)
    is known at ``at`` (as recorded by ``recorded_by``): one index probe per dataset. Rows known
    only after ``at`` do not count, so the answer says nothing about them."""
    for spec in DATASETS.values():
        params = _params(at, recorded_by)
        where = [
            # every dataset's known_at is at or after its time: the time bound keeps the probe on the
            # (symbol, time) index however many rows of the symbol are known only after at
            sql.SQL("a.time <= %(at)s AND a.known_at <= %(at)s AND a.recorded_at <= %(rb)s"),
            *_series_match(spec, params, [symbol]),
        ]
        query = sql.SQL("SELECT EXISTS (SELECT 1 FROM {t} a WHERE {where}) AS known").format(
            t=sql.Identifier(spec.table), where=sql.SQL(" AND ").join(where)
        )
        if _fetch(query, params)[0]["known"]:
            return True
    return False


def newest_recorded_at(
    *,
    dataset: str,
    at: datetime,
    symbols: Iterable[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    recorded_by: datetime | None = None,
) -> datetime | None:
    """The greatest recorded_at among the versions visible as of ``at`` (as recorded by ``recorded_by``)
    with event time in [start, end]: replaying with ``recorded_by`` set to it gives the same answer."""
    spec = get_dataset(dataset)
    params = _params(at, recorded_by)
    where = [
        sql.SQL("a.known_at <= %(at)s AND a.time <= %(at)s AND a.recorded_at <= %(rb)s"),
        *_series_match(spec, params, _symbols(symbols)),
    ]
    if start is not None:
        params["start"] = aware("start", start)
        where.append(sql.SQL("a.time >= %(start)s"))
    if end is not None:
        params["end"] = aware("end", end)
        where.append(sql.SQL("a.time <= %(end)s"))
    query = sql.SQL("SELECT max(a.recorded_at) AS newest FROM {t} a WHERE {where}").format(
        t=sql.Identifier(spec.table), where=sql.SQL(" AND ").join(where)
    )
    return _fetch(query, params)[0]["newest"]


def state_as_of(
    *, dataset: str, at: datetime, symbols: Iterable[str] | None = None, recorded_by: datetime | None = None,
    limit: int | None = None,
) -> list[dict]:
    """The dataset's "state as of T" (its declared ``state_selector``): the latest row per series, or
    for a dataset whose state is a list of events, the newest ``limit`` events (the selector's default
    when None). ``limit`` also cuts a per-series answer."""
    spec = get_dataset(dataset)
    selector = _STATE_SELECTORS[spec.state_selector]
    kwargs: dict[str, Any] = {"at": at, "recorded_by": recorded_by, "symbols": symbols}
    if limit is not None and spec.state_is_event_list:
        kwargs["limit"] = limit
    rows = selector(**kwargs)
    return rows[:limit] if limit is not None else rows


_STATE_SELECTORS = {
    f.__name__: f for f in (market_state, news, insider_trades, sentiment, government_events)
}


# --- aggregates ---------------------------------------------------------------------------------
# Thin over timeseries/aggregates.py (rollups / continuous aggregates, exact point in time): stored
# buckets whose every version is visible as of T are read from the rollup, the rest aggregated live.


def daily_bars(
    *, symbol: str, at: datetime, start: datetime, end: datetime, recorded_by: datetime | None = None
) -> list[dict]:
    """Daily OHLCV bars of ``symbol`` (UTC days overlapping [start, end]) built only from the bars known
    at ``at``, oldest first: time (day start), open, high, low, close, volume, vwap (volume-weighted),
    bars (count), partial (the day had not ended at ``at``)."""
    return aggregates.daily_bars(symbol=symbol, at=at, start=start, end=end, recorded_by=recorded_by)


def hourly_sentiment(
    *, symbol: str, at: datetime, start: datetime, end: datetime, recorded_by: datetime | None = None
) -> list[dict]:
    """Hourly sentiment of ``symbol`` over its platforms (hours overlapping [start, end]) as known at
    ``at``, oldest first: time (hour), sentiment (mention-weighted), mentions, platforms."""
    return aggregates.hourly_sentiment(symbol=symbol, at=at, start=start, end=end, recorded_by=recorded_by)


def daily_sentiment(
    *, symbol: str, at: datetime, start: datetime, end: datetime, recorded_by: datetime | None = None
) -> list[dict]:
    """``hourly_sentiment`` per UTC day (mention-weighted over the day's windows), as known at ``at``."""
    return aggregates.daily_sentiment(symbol=symbol, at=at, start=start, end=end, recorded_by=recorded_by)

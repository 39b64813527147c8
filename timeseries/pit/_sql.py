"""The SQL pieces every point-in-time selector shares: time parameters, the cursor, the current-version
predicate, symbol filters, the quality score (as it stood when replaying) and the latest row per series.

As of T (optionally as recorded by S), for each key consider the versions with known_at <= T (and
recorded_at <= S); the one with the greatest (known_at, recorded_at) is the truth and every other
version does not exist (the time model: timeseries/datasets.py). The queries rely on
``known_at >= time`` (the loader rejects rows that break it), so ``time <= T`` is added to let the
indexes bound each scan — except for datasets declared ``known_after_time=False`` (securities and
corporate actions are announced before they take effect: ``time_bound``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from django.db import connection
from psycopg import sql
from psycopg.types.datetime import TimestamptzLoader

from timeseries.datasets import Dataset
from timeseries.params import min_quality_check, positive_int
from timeseries.rules import END_OF_TIME
from timeseries.sqltext import identifiers


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
    return value.astimezone(UTC)


def symbols_clean(symbols: Iterable[str] | None) -> list[str] | None:
    if symbols is None:
        return None
    if isinstance(symbols, str):
        symbols = [symbols]
    out = [s.strip() for s in symbols if s and s.strip()]
    return out


def time_params(at: datetime, recorded_by: datetime | None) -> dict[str, Any]:
    return {"at": aware("at", at), "rb": aware("recorded_by", recorded_by, required=False) or END_OF_TIME}


@contextmanager
def fast_cursor():
    """A cursor decoding timestamptz with psycopg's C loader.

    Django registers a pure-Python subclass of psycopg's loader on every cursor, which costs ~6 µs
    per value: most of the client time of a 1,000-row answer. The session time zone is UTC, so the
    C loader returns the same aware datetimes.
    """
    with connection.cursor() as cur:
        cur.cursor.adapters.register_loader("timestamptz", TimestamptzLoader)
        yield cur


def fetch_dicts(query: sql.Composable, params: dict) -> list[dict]:
    with fast_cursor() as cur:
        cur.execute(query, params)
        names = [d.name for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]


def is_current(spec: Dataset, alias: str = "a", inner: Sequence[sql.Composable] = ()) -> sql.Composable:
    """``alias`` is the current version of its key as of %(at)s / %(rb)s (anti-join on the version index).

    ``inner``: conditions on key columns of ``b`` that the outer rows satisfy too (redundant, as b has
    a's key): they let the planner bound ``b`` to the same chunks and compressed batches as ``a``.
    """
    same_key = sql.SQL(" AND ").join(
        sql.SQL("b.{k} = {a}.{k}").format(k=sql.Identifier(k), a=sql.Identifier(alias)) for k in spec.key
    )
    return sql.SQL(
        "{a}.known_at <= %(at)s AND {a}.recorded_at <= %(rb)s{time_bound} AND NOT EXISTS ("
        "SELECT 1 FROM {t} b WHERE {same_key} AND b.known_at <= %(at)s AND b.recorded_at <= %(rb)s"
        " AND (b.known_at, b.recorded_at) > ({a}.known_at, {a}.recorded_at){inner})"
    ).format(
        a=sql.Identifier(alias),
        t=sql.Identifier(spec.table),
        same_key=same_key,
        inner=sql.SQL("").join(sql.SQL(" AND ") + c for c in inner),
        time_bound=time_bound(spec, alias, "%(at)s"),
    )


def time_bound(spec: Dataset, alias: str, at: str) -> sql.Composable:
    """`` AND alias.time <= at`` where the dataset's rows are never known before their time (it only
    bounds the scan), else nothing: a security listed after T, announced before T, is known at T."""
    if not spec.known_after_time:
        return sql.SQL("")
    return sql.SQL(" AND {}.time <= {}").format(sql.Identifier(alias), sql.SQL(at))


def current_rows(
    spec: Dataset,
    params: dict,
    *,
    where: Sequence[sql.Composable] = (),
    order: Sequence[str] = (),
    limit: int | None = None,
    inner: Sequence[sql.Composable] = (),
) -> list[dict]:
    conditions = [is_current(spec, inner=inner), *where]
    query = sql.SQL("SELECT {cols} FROM {t} a WHERE {cond}").format(
        cols=stored_cols(spec, "a", params), t=sql.Identifier(spec.table), cond=sql.SQL(" AND ").join(conditions)
    )
    if order:
        query += sql.SQL(" ORDER BY ") + sql.SQL(", ").join(sql.SQL("a." + o) for o in order)
    if limit is not None:
        query += sql.SQL(" LIMIT %(limit)s")
        params = {**params, "limit": positive_int("limit", limit)}
    return fetch_dicts(query, params)


def symbols_any(spec: Dataset, alias: str = "a") -> sql.Composable:
    """``alias`` names one of %(symbols)s in its symbol column or in its ``symbols_array`` column."""
    return sql.SQL("({a}.{c} = ANY(%(symbols)s) OR {a}.{arr} && %(symbols)s::text[])").format(
        a=sql.Identifier(alias), c=sql.Identifier(spec.symbol_column), arr=sql.Identifier(spec.symbols_array)
    )


def symbol_filter(spec: Dataset, params: dict, symbols: list[str] | None) -> list[sql.Composable]:
    if symbols is None:
        return []
    params["symbols"] = symbols
    return [sql.SQL("a.{} = ANY(%(symbols)s)").format(sql.Identifier(spec.symbol_column))]


# --- min_quality: exclude rows curated below a score (timeseries/quality/) -------------------------


def min_quality_clean(spec: Dataset, min_quality) -> float | None:
    """Validate ``min_quality`` (None, or a number in [0, 1]) for a dataset that has quality_score."""
    if min_quality is None:
        return None
    if not spec.curated:
        raise ValueError(f"min_quality: {spec.name} has no quality_score")
    return min_quality_check(min_quality)


def is_replay(params: dict) -> bool:
    return params.get("rb", END_OF_TIME) < END_OF_TIME


def score_as_recorded(spec: Dataset, alias: str, params: dict) -> sql.Composable:
    """``alias``'s quality score; as recorded by S, the score it had at S: ``old_score`` of its earliest
    audit after S, else its current score (the array keeps a NULL old score)."""
    a = sql.Identifier(alias)
    if not is_replay(params):
        return sql.SQL("{a}.quality_score").format(a=a)
    params["mq_dataset"] = spec.name
    return sql.SQL(
        "(COALESCE((SELECT ARRAY[q.old_score] FROM timeseries_quality_audit q WHERE q.dataset = %(mq_dataset)s"
        " AND q.row_id = {a}.id AND q.changed_at > %(rb)s ORDER BY q.changed_at, q.id LIMIT 1),"
        " ARRAY[{a}.quality_score]))[1]"
    ).format(a=a)


def quality_ok(spec: Dataset, alias: str, params: dict, min_quality: float) -> sql.Composable:
    """``alias``'s score (as it stood at recorded_by) is NULL (not scored) or >= min_quality."""
    params["mq"] = min_quality
    return sql.SQL("COALESCE({score} >= %(mq)s, true)").format(score=score_as_recorded(spec, alias, params))


def stored_cols(spec: Dataset, alias: str, params: dict) -> sql.Composable:
    """The stored columns of ``alias``; in a replay (recorded_by) ``quality_score`` is the score as it stood then."""
    if not (spec.curated and is_replay(params)):
        return identifiers(spec.stored_columns, alias)
    return sql.SQL(", ").join(
        sql.SQL("{} AS quality_score").format(score_as_recorded(spec, alias, params))
        if c == "quality_score"
        else sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(c))
        for c in spec.stored_columns
    )


def series_match(spec: Dataset, params: dict, symbols: list[str] | None) -> list[sql.Composable]:
    """Rows of ``symbols``; a dataset with ``symbols_array`` (government events) matches it too."""
    if symbols is None:
        return []
    params["symbols"] = symbols
    if spec.symbols_array is not None:
        return [symbols_any(spec)]
    return [sql.SQL("a.{} = ANY(%(symbols)s)").format(sql.Identifier(spec.symbol_column))]


# --- latest row per series (market state, sentiment, as-of join) -----------------------------------


def latest_lateral(
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

"""Event lists as of T: news, insider trades, government events, and the events placed in a window."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from psycopg import sql

from timeseries.datasets import DATASETS, get_dataset
from timeseries.pit._sql import (
    aware,
    current_rows,
    min_quality_clean,
    quality_ok,
    series_match,
    symbol_filter,
    symbols_any,
    symbols_clean,
    time_params,
)


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
    params = time_params(at, recorded_by)
    where = symbol_filter(spec, params, symbols_clean(symbols))
    min_quality = min_quality_clean(spec, min_quality)
    if min_quality is not None:
        where.append(quality_ok(spec, "a", params, min_quality))
    return current_rows(spec, params, where=where, order=spec.order_newest, limit=limit)


def insider_trades(
    *, at: datetime, symbols: Iterable[str] | None = None, limit: int = 500, recorded_by: datetime | None = None
) -> list[dict]:
    """Trades filed by ``at`` (the current version of each), newest filing first, then value descending."""
    spec = DATASETS["insider_trades"]
    params = time_params(at, recorded_by)
    where = [sql.SQL("a.filing_date <= %(at)s"), *symbol_filter(spec, params, symbols_clean(symbols))]
    return current_rows(spec, params, where=where, order=spec.order_newest, limit=limit)


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
    params = time_params(at, recorded_by)
    symbols, sectors = symbols_clean(symbols), symbols_clean(sectors)
    matches = []
    if symbols is not None:
        params["symbols"] = symbols
        matches.append(symbols_any(spec))
    if sectors is not None:
        params["sectors"] = sectors
        matches.append(sql.SQL("a.sectors && %(sectors)s::text[]"))
    where = [sql.SQL("(") + sql.SQL(" OR ").join(matches) + sql.SQL(")")] if matches else []
    return current_rows(spec, params, where=where, order=spec.order_newest, limit=limit)


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
    params = {**time_params(at, recorded_by), "start": aware("start", start), "end": aware("end", end)}
    if params["start"] > params["end"]:
        raise ValueError("start must not be after end")
    column = sql.Identifier(spec.window_time_column)
    where = [
        sql.SQL("a.{c} >= %(start)s AND a.{c} <= %(end)s").format(c=column),
        *series_match(spec, params, symbols_clean(symbols)),
    ]
    return current_rows(spec, params, where=where, order=spec.order_newest, limit=limit)

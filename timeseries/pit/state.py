"""State as of T: the latest row per series (market state, sentiment), a dataset's declared "state as
of T" selector, whether a symbol is known, and the newest recorded_at behind an answer."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from psycopg import sql

from timeseries.datasets import DATASETS, MARKET_DATA, SOCIAL_SENTIMENT, Dataset, get_dataset
from timeseries.pit._sql import (
    aware,
    fetch_dicts,
    latest_lateral,
    min_quality_clean,
    quality_ok,
    series_match,
    stored_cols,
    symbols_clean,
    time_bound,
    time_params,
)
from timeseries.pit.events import government_events, insider_trades, news
from timeseries.pit.reference import corporate_actions, securities

# dataset -> the name of its "state as of T" selector in timeseries.pit (declared on each Dataset)
SELECTOR_FOR_DATASET = {name: spec.state_selector for name, spec in DATASETS.items()}


def _latest_per_series(
    spec: Dataset, at: datetime, recorded_by: datetime | None, symbols, min_quality=None
) -> list[dict]:
    params = time_params(at, recorded_by)
    symbols = symbols_clean(symbols)
    min_quality = min_quality_clean(spec, min_quality)
    quality = None if min_quality is None else quality_ok(spec, "m", params, min_quality)
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
        lateral=latest_lateral(spec, series_alias, "%(at)s", quality, stored_cols(spec, "m", params)),
        order=sql.SQL(", ").join(sql.SQL("x.{}").format(sql.Identifier(c)) for c in spec.series),
    )
    return fetch_dicts(query, {**params, "dataset": spec.name, "symbols": symbols})


def market_state(
    *,
    at: datetime,
    symbols: Iterable[str] | None = None,
    recorded_by: datetime | None = None,
    min_quality: float | None = None,
) -> list[dict]:
    """Per symbol, its latest bar known at ``at`` (a bar is known when it closes), by symbol.

    ``min_quality=q``: the latest bar whose score (as it stood at ``recorded_by``) is NULL or >= q.
    """
    return _latest_per_series(MARKET_DATA, at, recorded_by, symbols, min_quality)


def sentiment(*, at: datetime, symbols: Iterable[str] | None = None, recorded_by: datetime | None = None) -> list[dict]:
    """Per symbol and platform, the latest closed hourly window known at ``at``."""
    return _latest_per_series(SOCIAL_SENTIMENT, at, recorded_by, symbols)


def symbol_known(*, symbol: str, at: datetime, recorded_by: datetime | None = None) -> bool:
    """Whether any row of ``symbol`` (any dataset; government events by primary or affected symbol)
    is known at ``at`` (as recorded by ``recorded_by``): one index probe per dataset. Rows known
    only after ``at`` do not count, so the answer says nothing about them."""
    for spec in DATASETS.values():
        params = time_params(at, recorded_by)
        where = [
            # every dataset's known_at is at or after its time: the time bound keeps the probe on the
            # (symbol, time) index however many rows of the symbol are known only after at
            sql.SQL("a.known_at <= %(at)s AND a.recorded_at <= %(rb)s") + time_bound(spec, "a", "%(at)s"),
            *series_match(spec, params, [symbol]),
        ]
        query = sql.SQL("SELECT EXISTS (SELECT 1 FROM {t} a WHERE {where}) AS known").format(
            t=sql.Identifier(spec.table), where=sql.SQL(" AND ").join(where)
        )
        if fetch_dicts(query, params)[0]["known"]:
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
    params = time_params(at, recorded_by)
    where = [
        sql.SQL("a.known_at <= %(at)s AND a.recorded_at <= %(rb)s") + time_bound(spec, "a", "%(at)s"),
        *series_match(spec, params, symbols_clean(symbols)),
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
    return fetch_dicts(query, params)[0]["newest"]


def state_as_of(
    *,
    dataset: str,
    at: datetime,
    symbols: Iterable[str] | None = None,
    recorded_by: datetime | None = None,
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
    f.__name__: f
    for f in (market_state, news, insider_trades, sentiment, government_events, securities, corporate_actions)
}

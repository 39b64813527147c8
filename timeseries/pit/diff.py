"""The timeline diff: what became known between two instants, per dataset."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from psycopg import sql

from timeseries.datasets import DATASETS, Dataset, get_dataset
from timeseries.params import positive_int
from timeseries.pit._sql import (
    aware,
    fetch_dicts,
    is_current,
    series_match,
    stored_cols,
    symbols_clean,
    time_bound,
    time_params,
)
from timeseries.sqltext import identifiers


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
    symbols = symbols_clean(symbols)
    return {name: _changes(get_dataset(name), t1, t2, symbols, recorded_by, limit) for name in names}


def _changes(spec: Dataset, t1: datetime, t2: datetime, symbols, recorded_by, limit) -> list[dict]:
    params = {**time_params(t2, recorded_by), "t1": t1}
    where = [is_current(spec), sql.SQL("a.known_at > %(t1)s"), *series_match(spec, params, symbols)]
    same_key = sql.SQL(" AND ").join(sql.SQL("p.{k} = a.{k}").format(k=sql.Identifier(k)) for k in spec.key)
    previous = [f"prev_{c}" for c in spec.stored_columns]
    query = sql.SQL(
        "SELECT {cols}, {prev} FROM {t} a LEFT JOIN LATERAL (SELECT {pcols} FROM {t} p WHERE {same_key}"
        " AND p.known_at <= %(t1)s{p_time} AND p.recorded_at <= %(rb)s"
        " ORDER BY p.known_at DESC, p.recorded_at DESC LIMIT 1) p ON true WHERE {where}"
        " ORDER BY a.known_at DESC, {key}"
    ).format(
        cols=stored_cols(spec, "a", params),
        prev=sql.SQL(", ").join(
            sql.SQL("p.{} AS {}").format(sql.Identifier(c), sql.Identifier(p))
            for c, p in zip(spec.stored_columns, previous)
        ),
        pcols=stored_cols(spec, "p", params),
        t=sql.Identifier(spec.table),
        same_key=same_key,
        where=sql.SQL(" AND ").join(where),
        key=identifiers(spec.key, "a"),
        p_time=time_bound(spec, "p", "%(t1)s"),
    )
    if limit is not None:
        query += sql.SQL(" LIMIT %(limit)s")
        params["limit"] = positive_int("limit", limit)
    out = []
    for row in fetch_dicts(query, params):
        prev = {c: row.pop(p) for c, p in zip(spec.stored_columns, previous)}
        row["previous"] = prev if prev["recorded_at"] is not None else None
        row["correction"] = row["previous"] is not None
        out.append(row)
    return out

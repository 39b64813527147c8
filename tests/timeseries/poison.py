"""Poisoned rows as an older tsm stored them (before timeseries/rules.py checked instants at the door):
straight into the dataset table, the series registry, the change log and the generation, the way the
loader's merge writes them (ingestion/loader/merge.py merge_staged), under the dataset's merge lock."""

from __future__ import annotations

from django.db import connection, transaction
from psycopg import sql

from timeseries.cache import generation_bump
from timeseries.datasets import DATASETS


def poison(dataset: str, row: dict, *, known_after: str = "1 minute", span_first: str | None = None) -> int:
    """Store ``row`` (column -> value; ``time`` as text) with known_at = time + ``known_after``, as a
    merge would: returns the new row's id. ``span_first``: the change-log entry starts there (the old
    load also stored good rows of the series from then on)."""
    spec = DATASETS[dataset]
    subkey_col = spec.series[1] if len(spec.series) > 1 else None
    cols = list(row)
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"tsm.merge.{spec.name}"])
        cur.execute("SELECT clock_timestamp()")
        (recorded_at,) = cur.fetchone()
        cur.execute(
            sql.SQL(
                "INSERT INTO {t} ({cols}, known_at, recorded_at)"
                " VALUES ({vals}, %(time)s::timestamptz + %(after)s::interval, %(rec)s) RETURNING id"
            ).format(
                t=sql.Identifier(spec.table),
                cols=sql.SQL(", ").join(map(sql.Identifier, cols)),
                vals=sql.SQL(", ").join(sql.Placeholder(c) for c in cols),
            ),
            {**row, "after": known_after, "rec": recorded_at},
        )
        (row_id,) = cur.fetchone()
        symbol, subkey = row[spec.symbol_column], row.get(subkey_col, "") if subkey_col else ""
        cur.execute(
            "INSERT INTO timeseries_series (dataset, symbol, subkey, first_time, last_time) VALUES (%s, %s, %s, %s, %s)"
            " ON CONFLICT (dataset, symbol, subkey) DO UPDATE"
            " SET first_time = LEAST(timeseries_series.first_time, EXCLUDED.first_time),"
            " last_time = GREATEST(timeseries_series.last_time, EXCLUDED.last_time)",
            [spec.name, symbol, subkey, row["time"], row["time"]],
        )
        cur.execute(
            "INSERT INTO timeseries_change (dataset, symbol, subkey, first_time, last_time, recorded_at)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            [spec.name, symbol, subkey, span_first or row["time"], row["time"], recorded_at],
        )
        generation_bump(datasets=[spec.name], cur=cur)
    return row_id


def poison_bar(
    symbol: str,
    time: str = "9999-12-31T23:59:00Z",
    span_first: str | None = None,
    known_after: str = "1 minute",
    **extra,
) -> int:
    """A market-data bar; at the default time its derived known_at lands past year 9999."""
    return poison(
        "market_data",
        span_first=span_first,
        known_after=known_after,
        row={
            "time": time,
            "symbol": symbol,
            "open": "10",
            "high": "11",
            "low": "9",
            "close": "10.5",
            "volume": 100,
            "source": "old feed",
            **extra,
        },
    )

"""The data a bench loads and the description of what a run used.

Demo minute bars (``timeseries.demo``, 390 a weekday, no corrections) for N symbols from a Monday on,
generated in windows of WINDOW_DAYS business days, each window sorted by (time, symbol) like a live
feed, so the heap is laid out by time as in production; as Arrow tables or as a CSV file kept in a
work directory and reused by later runs (of any bench) asking for the same rows, symbols and seed.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.lib.django_env import sql_rows
from bench.lib.output import log
from bench.lib.stats import timed
from timeseries import demo

START = datetime(2024, 1, 1, tzinfo=UTC)  # a Monday
BARS_PER_DAY = 390
WINDOW_DAYS = 10  # business days per generated / loaded chunk (1,000 symbols -> 3.9M bars)


def business_days(n: int, start: datetime = START) -> list[datetime]:
    days, d = [], start
    while len(days) < n:
        if d.weekday() < 5:
            days.append(d)
        d += timedelta(days=1)
    return days


def bar_windows(symbols: list[str], rows: int, seed: int):
    """Exactly ``rows`` bars for ``symbols`` from START on, as time-ordered Arrow tables of WINDOW_DAYS.

    Sorted by (time, symbol) like a live feed. Each window is generated with its own seed (the walk
    restarts at each window: fine for timing).
    """
    import pyarrow as pa

    per_day = BARS_PER_DAY * len(symbols)
    windows = math.ceil(math.ceil(rows / per_day) / WINDOW_DAYS)
    days = business_days(windows * WINDOW_DAYS + 1)
    emitted = 0
    for k in range(windows):
        lo, hi = days[k * WINDOW_DAYS], days[(k + 1) * WINDOW_DAYS]
        batches = demo.market_data_batches(
            symbols=symbols,
            start=lo,
            days=(hi - lo).days,
            seed=seed + k,
            batch_rows=1_000_000,
            include_corrections=False,
        )
        table = pa.Table.from_batches(list(batches)).sort_by([("time", "ascending"), ("symbol", "ascending")])
        table = table.slice(0, rows - emitted)
        emitted += table.num_rows
        yield table
        if emitted >= rows:
            return


def bars_csv_path(symbols: list[str], rows: int, seed: int, workdir: Path) -> Path:
    return workdir / f"tsm_bench_bars_{rows}_{len(symbols)}_{seed}.csv"


def write_bars_csv(symbols: list[str], rows: int, seed: int, workdir: Path) -> Path:
    """The CSV of ``bar_windows(symbols, rows, seed)`` in ``workdir`` (written once, then reused)."""
    path = bars_csv_path(symbols, rows, seed, workdir)
    if path.exists():
        log(f"reusing {path}")
        return path
    tmp = path.with_suffix(".part")
    seconds, written = timed(demo.write_csv, (b for t in bar_windows(symbols, rows, seed) for b in t.to_batches()), tmp)
    tmp.rename(path)
    log(f"wrote {written:,} bars to {path} in {seconds:.1f}s ({path.stat().st_size / 1e9:.2f} GB)")
    return path


def random_times(rng: random.Random, lo: datetime, hi: datetime, n: int, *, distinct: bool = False) -> list[datetime]:
    """n instants uniform from the first bar ``lo`` to the close of the last bar ``hi``; ``distinct``:
    n different instants at microsecond precision."""
    if distinct:
        span_us = int((hi + timedelta(minutes=1) - lo).total_seconds() * 1e6)
        return [lo + timedelta(microseconds=us) for us in rng.sample(range(span_us), n)]
    span = (hi + timedelta(minutes=1) - lo).total_seconds()
    return [lo + timedelta(seconds=rng.uniform(0, span)) for _ in range(n)]


def market_data_info(*, exact_count: bool = True) -> dict:
    """What a run measured on: market_data rows (``count(*)``, or the planner's estimate when
    ``exact_count`` is false: a 50M-row count takes seconds), series, time range, the symbols."""
    if exact_count:
        ((rows,),) = sql_rows("SELECT count(*) FROM market_data")
    else:
        ((rows,),) = sql_rows("SELECT reltuples::bigint FROM pg_class WHERE oid = 'market_data'::regclass")
    lo, hi, n = sql_rows(
        "SELECT min(first_time), max(last_time), count(*) FROM timeseries_series WHERE dataset = 'market_data'"
    )[0]
    symbols = [
        r[0] for r in sql_rows("SELECT symbol FROM timeseries_series WHERE dataset = 'market_data' ORDER BY symbol")
    ]
    return {
        "rows" if exact_count else "rows_estimate": rows,
        "symbols": n,
        "time_min": lo,
        "time_max": hi,
        "symbol_list": symbols,
    }


def truncate_market_data() -> None:
    sql_rows("TRUNCATE market_data, timeseries_series")

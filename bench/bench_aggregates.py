#!/usr/bin/env python
"""Aggregates benchmark: pit.daily_bars over one year of one symbol's minute bars, from the rollups
versus aggregated live from the raw bars (the baseline), and the rollup refresh throughput.

Prints ONE JSON object on stdout (progress on stderr). Uses its own database (default
``tsm_bench_agg`` on 127.0.0.1:5432; ``--url`` for another, e.g. the TimescaleDB cluster with
``TSM_TIMESCALEDB=on``), which it empties of market data first:

    flock /tmp/tsm-bench.lock .venv/bin/python bench/bench_aggregates.py > bench/results/aggregates-plain.json

Figures are reported, never asserted. See bench/README.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: bench.lib and the project
from bench.lib.django_env import django_up, local_url  # noqa: E402
from bench.lib.django_env import sql_rows as sql_exec
from bench.lib.output import emit, log  # noqa: E402
from bench.lib.stats import samples_ms, timed  # noqa: E402

START = datetime(2024, 1, 1, tzinfo=UTC)
DEFAULT_URL = local_url("tsm_bench_agg")


def minute_bars(symbol: str, days: int, per_day: int, seed: int, close_shift: float = 0.0, first_day: int = 0):
    """``per_day`` one-minute bars a day from 00:00 UTC (a random walk), as Arrow tables of 30 days."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    for lo in range(first_day, first_day + days, 30):
        n_days = min(30, first_day + days - lo)
        minutes = (np.arange(n_days)[:, None] * 1440 + np.arange(per_day)[None, :]).ravel()
        t = np.datetime64(START.replace(tzinfo=None), "us") + (lo * 1440 + minutes).astype("timedelta64[m]")
        n = len(minutes)
        close = np.round(100 + np.cumsum(rng.normal(0, 0.05, n)) + close_shift, 4)
        open_ = np.round(close + rng.normal(0, 0.02, n), 4)
        high = np.round(np.maximum(open_, close) + rng.random(n) * 0.05, 4)
        low = np.round(np.minimum(open_, close) - rng.random(n) * 0.05, 4)
        vwap = np.round((high + low + close) / 3, 4)
        yield pa.table(
            {
                "time": pa.array(t, pa.timestamp("us", tz="UTC")),
                "symbol": pa.array([symbol] * n),
                "open": open_,
                "high": high,
                "low": low,
                "close": close,
                "volume": rng.integers(100, 10_000, n),
                "vwap": vwap,
            }
        )


def median_ms(fn, runs: int, warmup: int = 2) -> tuple[float, list[float]]:
    samples = samples_ms(fn, runs, warmup)
    return round(statistics.median(samples), 2), [round(s, 2) for s in samples]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--bars-per-day", type=int, default=1440, help="minute bars a day from 00:00 (1440: 24 h)")
    parser.add_argument("--runs", type=int, default=15, help="timed calls of the rollup read (the live one: runs // 3)")
    parser.add_argument(
        "--correct-days", type=int, default=30, help="days re-sent as corrections (incremental refresh)"
    )
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    django_up(args.url)

    # project modules need Django: imported only after django_up() (bench/lib/django_env.py)
    from ingestion.loader import ingest_table
    from timeseries import aggregates, pit
    from timeseries.capabilities import capabilities

    symbol = "BENCH"
    lane = capabilities(fresh=True).lane
    log(f"lane {lane}; emptying market data and rollups")
    sql_exec(
        "TRUNCATE market_data, timeseries_series, timeseries_change, timeseries_change_cursor,"
        " timeseries_rollup_state, timeseries_rollup_daily_ohlcv"
    )
    bars = args.days * args.bars_per_day
    load_s = 0.0
    for table in minute_bars(symbol, args.days, args.bars_per_day, args.seed):
        load_s += timed(ingest_table, dataset="market_data", data=table)[0]
    sql_exec("VACUUM ANALYZE market_data")
    log(f"loaded {bars:,} bars in {load_s:.1f}s")

    rebuild_s, report = timed(aggregates.rollups_refresh, dataset="market_data")
    log(f"first refresh (rebuild from scratch): {rebuild_s:.2f}s {report}")

    end = START + timedelta(days=args.days) - timedelta(microseconds=1)
    at = START + timedelta(days=args.days + 1)

    def from_rollups():
        return pit.daily_bars(symbol=symbol, at=at, start=START, end=end)

    def live():
        return aggregates.daily_bars(symbol=symbol, at=at, start=START, end=end, force_live=True)

    assert from_rollups() == live(), "the rollup answer differs from the live one"
    sources = {
        r["source"]
        for r in aggregates.aggregate_read(aggregate="daily_ohlcv", symbol=symbol, at=at, start=START, end=end)
    }
    rollup_ms, rollup_samples = median_ms(from_rollups, args.runs)
    live_ms, live_samples = median_ms(live, max(3, args.runs // 3), warmup=1)
    log(f"daily_bars 1 year: rollups {rollup_ms} ms, live {live_ms} ms")

    at_inside = START + timedelta(
        days=args.days - 1, hours=13, minutes=30
    )  # T inside the last day: one partial day live

    def partial_day():
        return pit.daily_bars(symbol=symbol, at=at_inside, start=START, end=end)

    partial_ms, _ = median_ms(partial_day, args.runs)

    # incremental: corrections of a month in the middle of the year, then the consumer
    first = args.days // 2
    corrected = 0
    for table in minute_bars(
        symbol, args.correct_days, args.bars_per_day, args.seed + 1, close_shift=0.001, first_day=first
    ):
        corrected += ingest_table(dataset="market_data", data=table).revised
    pending_ms, _ = median_ms(from_rollups, max(3, args.runs // 3), warmup=1)  # a month pending: read live
    refresh_s, report = timed(aggregates.rollups_refresh, dataset="market_data")
    touched = args.correct_days * args.bars_per_day
    log(f"incremental refresh of {args.correct_days} corrected days: {refresh_s:.2f}s {report}")
    assert from_rollups() == live(), "the rollup answer differs from the live one after corrections"

    out = {
        "bench": "aggregates",
        "lane": lane,
        "symbol_bars": bars,
        "days": args.days,
        "bars_per_day": args.bars_per_day,
        "load_s": round(load_s, 1),
        "daily_bars_year": {
            "from_rollups_median_ms": rollup_ms,
            "live_baseline_median_ms": live_ms,
            "ratio_live_over_rollups": round(live_ms / rollup_ms, 1),
            "sources": sorted(sources),
            "runs_ms": {"rollups": rollup_samples, "live": live_samples},
        },
        "daily_bars_year_T_inside_last_day_median_ms": partial_ms,
        "daily_bars_year_with_a_month_pending_median_ms": pending_ms,
        "refresh": {
            "rebuild_s": round(rebuild_s, 2),
            "rebuild_bars_per_s": round(bars / rebuild_s),
            "incremental_corrected_bars": corrected,
            "incremental_s": round(refresh_s, 2),
            "incremental_bars_per_s": round(touched * 2 / refresh_s),  # every version of the touched days is read
            "incremental_report": report["market_data"],
        },
        "runs": args.runs,
    }
    emit(out)


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Adjusted history benchmark: a year of one security's minute bars (390 a weekday, ~102k) through
``pit.adjusted_history`` with ``adjust="split"`` and ``"total"`` (4 actions: two splits, one of them
reverse, and two cash dividends, plus a ticker change) versus the raw read ``pit.history`` of the same
bars in the same run (the baseline), and ``adjusted_history(adjust="none")`` (the ticker resolution
alone).

Prints ONE JSON object on stdout (progress on stderr). Uses its own database (default
``tsm_bench_adjust`` on 127.0.0.1:5432; ``--url`` for another), which it empties of market data,
securities and corporate actions first:

    flock /tmp/tsm-bench.lock .venv/bin/python bench/bench_adjust.py > bench/results/adjust-plain.json

Figures are reported, never asserted. See bench/README.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: bench.lib and the project
from bench.lib.django_env import django_up, environment, local_url  # noqa: E402
from bench.lib.django_env import sql_rows as sql_exec  # noqa: E402
from bench.lib.output import command_line, emit, log, started_at  # noqa: E402
from bench.lib.stats import timed  # noqa: E402

START = datetime(2024, 1, 1, 14, 30, tzinfo=UTC)
DEFAULT_URL = local_url("tsm_bench_adjust")
RENAMED = datetime(2024, 4, 1, 13, 30, tzinfo=UTC)  # OLDT -> NEWT
ACTIONS = [  # (ticker just before ex_date, action_type, ex_date, ratio, amount)
    ("OLDT", "cash_dividend", datetime(2024, 3, 1, 14, 30, tzinfo=UTC), None, "0.50"),
    ("NEWT", "split", datetime(2024, 6, 3, 13, 30, tzinfo=UTC), "4", None),
    ("NEWT", "cash_dividend", datetime(2024, 9, 3, 13, 30, tzinfo=UTC), None, "0.20"),
    ("NEWT", "split", datetime(2024, 11, 1, 13, 30, tzinfo=UTC), "0.5", None),
]


def year_of_bars(seed: int):
    """390 one-minute bars each weekday of 2024 from 14:30 UTC (a random walk), as Arrow tables of a month;
    under OLDT before RENAMED, NEWT from it."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    days = [START + timedelta(days=d) for d in range(366) if (START + timedelta(days=d)).weekday() < 5]
    for lo in range(0, len(days), 21):
        chunk = days[lo : lo + 21]
        base = np.array([np.datetime64(d.replace(tzinfo=None), "us") for d in chunk])
        t = (base[:, None] + np.arange(390)[None, :].astype("timedelta64[m]")).ravel()
        n = len(t)
        close = np.round(100 + np.cumsum(rng.normal(0, 0.05, n)), 4)
        open_ = np.round(close + rng.normal(0, 0.02, n), 4)
        high = np.round(np.maximum(open_, close) + rng.random(n) * 0.05, 4)
        low = np.round(np.minimum(open_, close) - rng.random(n) * 0.05, 4)
        symbols = np.where(t < np.datetime64(RENAMED.replace(tzinfo=None), "us"), "OLDT", "NEWT")
        yield pa.table(
            {
                "time": pa.array(t, pa.timestamp("us", tz="UTC")),
                "symbol": pa.array(symbols.tolist()),
                "open": open_,
                "high": high,
                "low": low,
                "close": close,
                "volume": rng.integers(100, 10_000, n),
                "vwap": np.round((high + low + close) / 3, 4),
            }
        )


def load(seed: int) -> int:
    from ingestion.loader import ingest_table

    sql_exec("TRUNCATE market_data, securities, corporate_actions")
    security = {"security_id": "S1", "symbol": "OLDT", "name": "bench", "exchange": "XNYS"}
    ingest_table(dataset="securities", data=[{**security, "listed_at": "2000-01-03T14:30:00Z"}])
    change = {"symbol": "OLDT", "action_type": "symbol_change", "ex_date": RENAMED.isoformat(), "new_symbol": "NEWT"}
    ingest_table(dataset="corporate_actions", data=[change])
    rows = [
        {"symbol": s, "action_type": k, "ex_date": ex.isoformat(), "ratio": r, "amount": a, "known_at": None}
        for s, k, ex, r, a in ACTIONS
    ]
    ingest_table(dataset="corporate_actions", data=rows)
    n = 0
    for table in year_of_bars(seed):
        n += ingest_table(dataset="market_data", data=table).inserted
    sql_exec("VACUUM ANALYZE market_data")
    sql_exec("VACUUM ANALYZE corporate_actions")
    sql_exec("VACUUM ANALYZE securities")
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    django_up(args.url)
    from timeseries import pit

    log("loading a year of minute bars")
    seconds, bars = timed(load, args.seed)
    log(f"loaded {bars} bars in {seconds:.1f} s")
    at = datetime(2025, 1, 2, tzinfo=UTC)
    span = {"start": START, "end": datetime(2024, 12, 31, 23, 59, tzinfo=UTC)}
    reads = {
        "raw_history": lambda: pit.history(dataset="market_data", at=at, symbols=["OLDT", "NEWT"], **span),
        "adjusted_none": lambda: pit.adjusted_history(at=at, symbols=["NEWT"], adjust="none", **span),
        "adjusted_split": lambda: pit.adjusted_history(at=at, symbols=["NEWT"], adjust="split", **span),
        "adjusted_total": lambda: pit.adjusted_history(at=at, symbols=["NEWT"], adjust="total", **span),
    }
    counts = {}
    for name, read in reads.items():  # warm-up, and every read returns the same bars
        answer = read()
        counts[name] = len(answer if isinstance(answer, list) else answer["bars"])
    samples: dict[str, list[float]] = {name: [] for name in reads}
    for run in range(args.runs):  # interleaved, so a slow moment of the machine hits every read alike
        for name, read in reads.items():
            samples[name].append(timed(read)[0])
        log(f"run {run + 1}/{args.runs}: " + ", ".join(f"{k} {v[-1] * 1000:.0f} ms" for k, v in samples.items()))
    medians = {name: statistics.median(s) for name, s in samples.items()}
    raw = medians["raw_history"]
    emit(
        {
            "benchmark": "adjust",
            "command": command_line(),
            "started_at": started_at(),
            "bars": bars,
            "bars_returned": counts,
            "actions": len(ACTIONS),
            "runs": args.runs,
            "median_ms": {k: round(v * 1000, 1) for k, v in medians.items()},
            "samples_ms": {k: [round(x * 1000, 1) for x in v] for k, v in samples.items()},
            "ratio_to_raw": {k: round(v / raw, 3) for k, v in medians.items() if k != "raw_history"},
            "target": "adjusted (split and total) <= 1.5x raw",
            **environment(),
        }
    )


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Timeline page benchmark: server time of /timeline/<symbol>/?at=T over a 1-year window.

Prints ONE JSON object on stdout (progress on stderr). Uses its own database ``tsm_bench_timeline``
(created and migrated when missing, reused when present): one symbol with 1 year of 1-minute bars
(390 a weekday, ~1% corrections), its news, insider filings, hourly sentiment and government events,
loaded through ``ingestion.loader``, then the rollups refreshed (as the beat task does).

Measured in-process with Django's test Client (middleware, session, view, pit queries, template; no
HTTP): ``--runs`` requests of the page for a 1-year range (from = T - 365 days, to = T), T spread over
the last 30 days. The page charts daily bars from the aggregates for such a range. Baseline in the
same run: the same page forced to chart every minute bar (``MINUTE_BARS_MAX_RANGE`` raised), i.e.
what the page would cost without downsampling. Also: the page with the rollups not refreshed (every
day aggregated live) and the 2-day default window (minute bars).

    flock /tmp/tsm-bench.lock .venv/bin/python bench/bench_timeline.py > bench/results/timeline.json

Figures are reported, never asserted. Target (issue #6): < 300 ms server time for the 1-year page.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: bench.lib and the project
from bench.lib.django_env import django_up, local_url, sql_rows  # noqa: E402
from bench.lib.output import emit, log  # noqa: E402
from bench.lib.stats import rank_p99  # noqa: E402
from timeseries import demo  # noqa: E402  (numpy and pyarrow only, no Django)

DB_NAME = "tsm_bench_timeline"
DB_URL = local_url(DB_NAME)
START = datetime(2024, 1, 1, tzinfo=UTC)
DAYS = 366


def count(table: str, symbol: str) -> int:
    from psycopg import sql

    column = "primary_symbol" if table == "government_events" else "symbol"
    return sql_rows(
        sql.SQL("SELECT count(*) FROM {} WHERE {} = %s").format(sql.Identifier(table), sql.Identifier(column)), [symbol]
    )[0][0]


def load(symbol: str, seed: int) -> dict:
    """Load the symbol's year once (skipped when its bars are there)."""
    # project modules need Django: imported only after django_up() (bench/lib/django_env.py)
    from ingestion.loader import ingest_table

    if count("market_data", symbol):
        log(f"{symbol} already loaded: reusing {DB_NAME}")
        return {"loaded_now": False}
    kw = {"symbols": [symbol], "start": START, "days": DAYS, "seed": seed}
    t = time.perf_counter()
    ingest_table(dataset="market_data", data=demo.market_data(**kw))
    log(f"bars loaded in {time.perf_counter() - t:.1f} s")
    for dataset, make in (
        ("news_events", demo.news_events),
        ("insider_trades", demo.insider_trades),
        ("social_sentiment", demo.social_sentiment),
        ("government_events", demo.government_events),
    ):
        ingest_table(dataset=dataset, data=make(**kw))
    return {"loaded_now": True, "load_seconds": round(time.perf_counter() - t, 1)}


def vacuum_analyze() -> float:
    """What autovacuum does to a settled table (statistics + visibility map). Without statistics the
    planner takes the 1-year anti-join of ``pit.history`` for a 1-row table and it runs for minutes."""
    t = time.perf_counter()
    for table in (
        "market_data",
        "news_events",
        "insider_trades",
        "social_sentiment",
        "government_events",
        "timeseries_series",
    ):
        sql_rows(f"VACUUM ANALYZE {table}")
    return round(time.perf_counter() - t, 1)


def timings(client, urls: list[str]) -> dict:
    samples, cpu = [], []
    for url in urls:
        t, c = time.perf_counter(), time.process_time()
        response = client.get(url)
        samples.append((time.perf_counter() - t) * 1000)
        cpu.append((time.process_time() - c) * 1000)
        assert response.status_code == 200, (url, response.status_code, response.content[:300])
    ordered = sorted(samples)
    return {
        "runs": len(samples),
        "median_ms": round(statistics.median(ordered), 1),
        "p99_ms": round(rank_p99(ordered), 1),
        "max_ms": round(ordered[-1], 1),
        "python_cpu_median_ms": round(statistics.median(cpu), 1),  # this process only (PostgreSQL's share excluded)
        "bytes": len(response.content),
        **charted(response.content.decode()),
    }


def charted(html: str) -> dict:
    """What the page says it charts (the resolution note and the chart data)."""
    resolution = re.search(r'data-resolution="(\w+)"', html).group(1)
    data = json.loads(re.search(r'<script id="chart-data" type="application/json">(.*?)</script>', html, re.S).group(1))
    return {"resolution": resolution, "bars_charted": len(data["bars"]["x"]), "news_charted": len(data["news"]["x"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--baseline-runs", type=int, default=10)
    parser.add_argument("--symbol", default="AAPL")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    django_up(DB_URL)

    from django.contrib.auth import get_user_model
    from django.test import Client

    # project modules need Django: imported only after django_up() (bench/lib/django_env.py)
    from timeseries import aggregates
    from timeseries.views import timeline
    from timeseries.views.timeline import iso

    info = load(args.symbol, args.seed)
    info["vacuum_analyze_seconds"] = vacuum_analyze()
    sizes = {
        t: count(t, args.symbol)
        for t in ("market_data", "news_events", "insider_trades", "social_sentiment", "government_events")
    }
    log(f"rows: {sizes}")

    user, _ = get_user_model().objects.get_or_create(username="bench_timeline", defaults={"is_staff": True})
    client = Client()
    client.force_login(user)
    end = START + timedelta(days=DAYS)
    ts = [
        end - timedelta(days=30) + timedelta(minutes=997 * i % (30 * 24 * 60))
        for i in range(max(args.runs, args.baseline_runs))
    ]

    def year(t):
        return f"/timeline/{args.symbol}/?at={iso(t)}&from={iso(t - timedelta(days=365))}&to={iso(t)}"

    def default_window(t):
        return f"/timeline/{args.symbol}/?at={iso(t)}"

    # rollups not yet refreshed: every day of the year aggregated live from the minute bars
    pending = aggregates.rollups_lag()
    live = (
        timings(client, [year(t) for t in ts[:5]])
        if any(v.get("pending") for v in pending.values() if isinstance(v, dict))
        else None
    )
    t = time.perf_counter()
    refreshed = aggregates.rollups_refresh()
    refresh_s = time.perf_counter() - t
    log(f"rollups refreshed in {refresh_s:.1f} s: {refreshed}")

    client.get(year(ts[0]))  # warm-up: connection, templates, plotly path
    page = timings(client, [year(t) for t in ts[: args.runs]])
    log(f"1-year page: {page}")
    window = timings(client, [default_window(t) for t in ts[: args.runs]])
    log(f"2-day page: {window}")
    saved = timeline.MINUTE_BARS_MAX_RANGE
    timeline.MINUTE_BARS_MAX_RANGE = timedelta(days=10_000)  # baseline: chart every minute bar of the year
    try:
        baseline = timings(client, [year(t) for t in ts[: args.baseline_runs]])
    finally:
        timeline.MINUTE_BARS_MAX_RANGE = saved
    log(f"baseline (every minute bar): {baseline}")

    emit(
        {
            "bench": "timeline",
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "database": DB_NAME,
            "symbol": args.symbol,
            "rows": sizes,
            **info,
            "rollups_refresh_seconds": round(refresh_s, 1),
            "target_ms": 300,
            "year_page": page,
            "year_page_rollups_pending": live,
            "two_day_page": window,
            "baseline_every_minute_bar": baseline,
            "ratio_baseline_over_page": round(baseline["median_ms"] / page["median_ms"], 1),
            "meets_target": page["median_ms"] < 300 and page["p99_ms"] < 300,
            "loadavg": os.getloadavg(),
        }
    )


if __name__ == "__main__":
    main()

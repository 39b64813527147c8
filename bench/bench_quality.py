#!/usr/bin/env python
"""Quality checks on ingest through a trading day: what the change-log consumer costs per load.

Prints ONE JSON object on stdout (progress on stderr). Uses its own database ``tsm_bench_quality``:

    flock /tmp/tsm-bench.lock .venv/bin/python bench/bench_quality.py            # 1,000 symbols, 390 minutes
    .venv/bin/python bench/bench_quality.py --symbols 100 --minutes 120          # quick

A feed delivers a day of minute bars for ``--symbols`` symbols in loads of ``--load-minutes`` minutes
(every symbol in every load: 1,000 series a load, like a write-API flush). After each load the
consumer (``quality.quality_changes_process``, what beat runs every 10 s) checks what the change log
lists; beside it, in the same run, the baseline: the same checks over each touched symbol's whole day
so far (``quality.quality_checks_range``), which is what a check of "the touched days" costs. Wall
times of both per load; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: bench.lib and the project
from bench.lib.django_env import django_up, local_url, sql_rows  # noqa: E402
from bench.lib.output import command_line, emit, log, started_at  # noqa: E402
from timeseries import demo  # noqa: E402  (numpy and pyarrow only, no Django)

DB_URL = local_url("tsm_bench_quality")
DAY = datetime(2024, 3, 4, tzinfo=UTC)  # a Monday


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--symbols", type=int, default=1000)
    p.add_argument("--minutes", type=int, default=390, help="minutes of the session delivered (≤ 390)")
    p.add_argument("--load-minutes", type=int, default=30, help="minutes of bars per load")
    p.add_argument("--seed", type=int, default=3)
    args = p.parse_args(argv)
    django_up(DB_URL)
    import pyarrow as pa
    import pyarrow.compute as pc

    # project modules need Django: imported only after django_up() (bench/lib/django_env.py)
    from ingestion.loader import ingest_table
    from timeseries import quality

    symbols = demo.make_symbols(args.symbols)
    bars = pa.Table.from_batches(
        list(demo.market_data_batches(symbols=symbols, start=DAY, days=1, seed=args.seed, include_corrections=False))
    )
    bars = bars.sort_by([("time", "ascending"), ("symbol", "ascending")]).drop_columns(["known_at"])
    sql_rows(
        "TRUNCATE market_data, timeseries_series, timeseries_change, timeseries_quality_flag,"
        " timeseries_quality_audit, timeseries_change_cursor"
    )
    out: dict = {
        "command": command_line(),
        "started_at": started_at(),
        "load_average_at_start": os.getloadavg(),
        "symbols": args.symbols,
        "load_minutes": args.load_minutes,
        "loads": [],
    }
    opened = min(bars.column("time").to_pylist())
    for k, lo in enumerate(range(0, args.minutes, args.load_minutes)):
        start, end = (
            opened + timedelta(minutes=lo),
            opened + timedelta(minutes=min(lo + args.load_minutes, args.minutes)),
        )
        part = bars.filter(
            pc.and_(
                pc.greater_equal(bars["time"], pa.scalar(start, bars["time"].type)),
                pc.less(bars["time"], pa.scalar(end, bars["time"].type)),
            )
        )
        ingest_table(dataset="market_data", data=part, source=f"bench quality load {k}")
        t = time.perf_counter()
        result = quality.quality_changes_process(dataset="market_data")
        consumer_s = time.perf_counter() - t
        t = time.perf_counter()
        quality.quality_checks_range(
            dataset="market_data", start=DAY, end=DAY + timedelta(days=1) - timedelta(microseconds=1)
        )
        whole_day_s = time.perf_counter() - t
        row = {
            "load": k,
            "bars": part.num_rows,
            "bars_of_the_day_so_far": sum(x["bars"] for x in out["loads"]) + part.num_rows,
            "consumer_s": round(consumer_s, 3),
            "spans": result.spans,
            "whole_day_check_s": round(whole_day_s, 3),
        }
        out["loads"].append(row)
        log(json.dumps(row))
    consumer = [r["consumer_s"] for r in out["loads"]]
    whole = [r["whole_day_check_s"] for r in out["loads"]]
    out["consumer_s_median"] = round(statistics.median(consumer), 3)
    out["consumer_s_last"] = consumer[-1]
    out["whole_day_check_s_last"] = whole[-1]
    out["ratio_whole_day_over_consumer_last_load"] = round(whole[-1] / consumer[-1], 2) if consumer[-1] else None
    out["consumer_us_per_bar_median"] = round(
        1e6 * statistics.median(r["consumer_s"] / r["bars"] for r in out["loads"] if r["bars"]), 2
    )
    out["load_average_at_end"] = os.getloadavg()
    emit(out)


if __name__ == "__main__":
    main()

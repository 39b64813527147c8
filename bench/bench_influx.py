#!/usr/bin/env python
"""InfluxDB backup benchmark: backup and restore throughput of one-second bars.

Prints ONE JSON object on stdout (progress on stderr). Uses its own database ``tsm_bench_influx``
(created and migrated when missing; its market data is replaced) and its own influxd (Debian's
``influxd``, 127.0.0.1, free port, temporary directories; stopped on the way out). Run it alone:

    flock /tmp/tsm-bench.lock .venv/bin/python bench/bench_influx.py --quick        # 200k bars, ~1 min
    flock /tmp/tsm-bench.lock .venv/bin/python bench/bench_influx.py > bench/results/influx-1m.json

Figures (median of --runs, rows/s; each with a baseline measured in the same run):

* backup: ``ingestion.influx.influx_backup_run`` from a reset cursor into an empty InfluxDB database
  (change log -> SQL renders line protocol -> POST /write batches -> cursor commit);
  baseline ``raw_write``: POSTing the same lines, already rendered in memory, in the same batches
  (what InfluxDB alone accepts here).
* restore: ``ingestion.influx.influx_restore`` of the whole range into an emptied ``market_data``
  (chunked /query -> compare with stored versions -> ``ingest_table``);
  baselines ``raw_read`` (the same chunked ``GROUP BY symbol`` query, JSON decoded, nothing else) and ``loader_only``
  (``ingest_table`` of the same bars from an in-memory Arrow table).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: bench.lib and the project
from bench.lib.django_env import django_up, local_url  # noqa: E402
from bench.lib.output import emit, log  # noqa: E402

DB_NAME = "tsm_bench_influx"
T0 = datetime(2024, 3, 4, 14, 30, tzinfo=UTC)


def setup_django() -> None:
    django_up(local_url(DB_NAME), DEBUG="false", LOG_LEVEL="WARNING", TSM_CACHE_PREFIX="tsm_bench_influx")


def bars(symbols: int, seconds: int, start_second: int = 0):
    """One-second bars, (time, symbol)-ordered like a feed; prices with 6 decimals (exact)."""
    import numpy as np
    import pyarrow as pa

    # project modules need Django: imported only after django_up() (bench/lib/django_env.py)
    from ingestion.influx import _scaled_decimal

    rng = np.random.default_rng(7 + start_second)
    n = symbols * seconds
    secs = np.repeat(np.arange(start_second, start_second + seconds, dtype=np.int64), symbols)
    t_us = int((T0 - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()) * 1_000_000 + secs * 1_000_000
    sym = np.tile(np.array([f"S{i:04d}" for i in range(symbols)], dtype=object), seconds)
    base = rng.integers(1_000_000, 500_000_000, n)  # 1.000000 .. 500.000000
    spread = rng.integers(0, 50_000, n)
    low, high = base - spread, base + spread
    open_, close = low + rng.integers(0, 2 * spread + 1), low + rng.integers(0, 2 * spread + 1)
    open_, close = np.minimum(open_, high), np.minimum(close, high)
    ts = pa.array(t_us).cast(pa.timestamp("us", tz="UTC"))
    return pa.table(
        {
            "time": ts,
            "symbol": pa.array(sym, pa.string()),
            "open": _scaled_decimal(open_.tolist(), 18, 6),
            "high": _scaled_decimal(high.tolist(), 18, 6),
            "low": _scaled_decimal(low.tolist(), 18, 6),
            "close": _scaled_decimal(close.tolist(), 18, 6),
            "volume": pa.array(rng.integers(0, 10_000, n)),
            "trades": pa.array(rng.integers(0, 100, n).astype("int32")),
            "known_at": pa.array(t_us + 1_000_000).cast(pa.timestamp("us", tz="UTC")),
        }
    )


def wipe_market_data() -> None:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("TRUNCATE market_data")
        cur.execute("DELETE FROM timeseries_series WHERE dataset = 'market_data'")
        cur.execute("DELETE FROM timeseries_change WHERE dataset = 'market_data'")
        cur.execute("DELETE FROM timeseries_change_cursor")


def load(symbols: int, seconds: int, window_seconds: int) -> float:
    # project modules need Django: imported only after django_up() (bench/lib/django_env.py)
    from ingestion.loader import ingest_table

    wipe_market_data()
    started = time.perf_counter()
    for s in range(0, seconds, window_seconds):
        ingest_table(
            dataset="market_data",
            data=bars(symbols, min(window_seconds, seconds - s), s),
            bar_interval=timedelta(seconds=1),
            source="bench_influx",
        )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument(
        "--seconds", type=int, default=2000, help="one-second bars per symbol (rows = symbols x seconds)"
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch-lines", type=int, default=20_000)
    parser.add_argument("--quick", action="store_true", help="200 symbols x 1000 s = 200k bars, 2 runs")
    args = parser.parse_args()
    if args.quick:
        args.symbols, args.seconds, args.runs = 200, 1000, 2
    rows = args.symbols * args.seconds
    setup_django()

    import requests
    from django.conf import settings
    from django.db import connection

    # project modules need Django: imported only after django_up() (bench/lib/django_env.py)
    from ingestion import influx
    from ingestion.loader import ingest_table
    from tests.ingestion.influx_server import influx_server
    from timeseries.models import ChangeCursor

    out: dict = {
        "bench": "influx",
        "command": " ".join(sys.argv),
        "rows": rows,
        "symbols": args.symbols,
        "bar": "1 s",
        "runs": args.runs,
        "batch_lines": args.batch_lines,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "loadavg_start": os.getloadavg()[0],
    }
    with influx_server() as server:
        out["influxd"] = "InfluxDB 1.6 (Debian influxd), private instance on 127.0.0.1"
        settings.TSM_INFLUX_URL, settings.TSM_INFLUX_BACKUP = server.url, "subminute"
        settings.TSM_INFLUX_BATCH_LINES = args.batch_lines
        log(f"loading {rows:,} one-second bars")
        out["load_seconds"] = round(load(args.symbols, args.seconds, max(1, 250_000 // args.symbols)), 2)

        backup, raw_write = [], []
        for run in range(args.runs):
            settings.TSM_INFLUX_DB = f"bench_{run}"
            ChangeCursor.objects.filter(consumer="influx").delete()
            started = time.perf_counter()
            result = influx.influx_backup_run()
            backup.append(time.perf_counter() - started)
            assert result.points == rows, result
            log(f"backup run {run}: {rows / backup[-1]:,.0f} rows/s ({result.posts} POSTs)")
            # baseline: the same lines, rendered beforehand, POSTed in the same batches into a fresh database
            with connection.cursor() as cur, transaction_atomic():
                cur.execute("SELECT id FROM timeseries_change ORDER BY id")
                ids = [r[0] for r in cur.fetchall()]
            lines = render_lines(influx, ids)
            server.query(f'CREATE DATABASE "raw_{run}"')
            session = requests.Session()
            started = time.perf_counter()
            for i in range(0, len(lines), args.batch_lines):
                r = session.post(
                    f"{server.url}/write",
                    params={"db": f"raw_{run}", "precision": "u"},
                    data="\n".join(lines[i : i + args.batch_lines]).encode(),
                    timeout=120,
                )
                assert r.status_code == 204, r.text
            raw_write.append(time.perf_counter() - started)
            log(f"raw write run {run}: {rows / raw_write[-1]:,.0f} rows/s")
            server.drop_database(f"raw_{run}")
            del lines
        assert server.count(db="bench_0") == rows

        settings.TSM_INFLUX_DB = "bench_0"
        restore, raw_read, loader_only = [], [], []
        full = (T0 - timedelta(days=1), T0 + timedelta(days=2))
        for run in range(args.runs):
            wipe_market_data()
            started = time.perf_counter()
            result = influx.influx_restore(dataset="market_data", start=full[0], end=full[1])
            restore.append(time.perf_counter() - started)
            assert result.inserted == rows, result
            log(f"restore run {run}: {rows / restore[-1]:,.0f} rows/s ({result.loads} loads)")
            client = influx._Client(influx.influx_config())
            started = time.perf_counter()
            q = (
                f"SELECT * FROM market_data WHERE time >= '{influx._rfc3339(full[0])}' "
                f"AND time < '{influx._rfc3339(full[1])}' GROUP BY symbol"
            )  # the restore's query
            points = sum(len(s["values"]) for s in client.select_chunks(q, chunk_size=10_000))
            raw_read.append(time.perf_counter() - started)
            assert points == rows
            log(f"raw read run {run}: {rows / raw_read[-1]:,.0f} rows/s")
            wipe_market_data()
            table = bars(args.symbols, args.seconds)
            started = time.perf_counter()
            ingest_table(dataset="market_data", data=table, bar_interval=timedelta(seconds=1))
            loader_only.append(time.perf_counter() - started)
            log(f"loader only run {run}: {rows / loader_only[-1]:,.0f} rows/s")
        for name in [f"bench_{run}" for run in range(args.runs)]:
            server.drop_database(name)

    def rate(samples):
        return round(rows / statistics.median(samples))

    out["backup_rows_per_s"] = rate(backup)
    out["baseline_raw_write_rows_per_s"] = rate(raw_write)
    out["backup_over_raw_write"] = round(statistics.median(raw_write) / statistics.median(backup), 3)
    out["restore_rows_per_s"] = rate(restore)
    out["baseline_raw_read_rows_per_s"] = rate(raw_read)
    out["baseline_loader_only_rows_per_s"] = rate(loader_only)
    out["restore_over_loader_only"] = round(statistics.median(loader_only) / statistics.median(restore), 3)
    out["seconds"] = {
        "backup": [round(s, 2) for s in backup],
        "raw_write": [round(s, 2) for s in raw_write],
        "restore": [round(s, 2) for s in restore],
        "raw_read": [round(s, 2) for s in raw_read],
        "loader_only": [round(s, 2) for s in loader_only],
    }
    out["loadavg_end"] = os.getloadavg()[0]
    wipe_market_data()
    emit(out)


def transaction_atomic():
    from django.db import transaction

    return transaction.atomic()


def render_lines(influx, ids: list[int]) -> list[str]:
    """The line protocol the backup sends, rendered once into memory (for the raw-write baseline)."""
    from django.db import connection

    # project modules need Django: imported only after django_up() (bench/lib/django_env.py)
    from timeseries.models import Change

    changes = list(Change.objects.filter(id__in=ids).order_by("id"))
    params = {
        "symbols": [c.symbol for c in changes],
        "firsts": [c.first_time for c in changes],
        "lasts": [c.last_time for c in changes],
        "recs": [c.recorded_at for c in changes],
    }
    with connection.cursor() as cur:
        cur.execute(influx._lines_sql("subminute"), params)
        return [r[0] for r in cur.fetchall()]


if __name__ == "__main__":
    main()

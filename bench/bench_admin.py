#!/usr/bin/env python
"""Admin curation benchmark: the market_data changelist and a bulk "mark suspect" on a big table.

Prints ONE JSON object on stdout (progress on stderr). Uses its own database ``tsm_bench_admin``,
filled once (and reused) with ``--rows`` generated minute bars of 1,000 symbols by
``INSERT … SELECT generate_series`` (indexes dropped during the fill and rebuilt after):

    flock /tmp/tsm-bench.lock .venv/bin/python bench/bench_admin.py                 # 50M bars
    flock /tmp/tsm-bench.lock .venv/bin/python bench/bench_admin.py --rows 2000000  # quick

Times (median of ``--runs``, Django test Client, logged-in superuser, first request discarded as warm-up)
the changelist unfiltered, filtered by symbol, by an event-time range, by a quality range, by
known_at range, a search, and the admin action "mark suspect" over all rows of one symbol-day
(select all matching the filter). Baseline in the same run: the changelist as Django would run it by
default (full ``COUNT(*)`` for the paginator and the "N total" link). Target: < 1 s each.
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
from bench.lib.django_env import django_up, local_url  # noqa: E402
from bench.lib.django_env import sql_rows as q
from bench.lib.output import emit, log  # noqa: E402
from bench.lib.stats import median_ms  # noqa: E402
from timeseries import demo  # noqa: E402  (numpy and pyarrow only, no Django)

DB_NAME = "tsm_bench_admin"
DB_URL = local_url(DB_NAME)
START = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)
BARS_PER_DAY = 390
SYMBOLS = 1000
DAYS_PER_CHUNK = 8


def recreate_database() -> None:
    """Start from an empty, freshly migrated database (a half-built table cannot be trusted)."""
    import psycopg
    from django.core.management import call_command
    from django.db import connection

    log(f"recreating {DB_NAME}")
    connection.close()
    with psycopg.connect(local_url("postgres"), autocommit=True) as admin_conn:
        admin_conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
    call_command("ensure_database", stdout=sys.stderr)
    call_command("migrate", verbosity=0, interactive=False)


# --- building the table ---------------------------------------------------------------------------


def stored_rows() -> int:
    q("CREATE TABLE IF NOT EXISTS bench_admin_meta (rows bigint NOT NULL)")
    found = q("SELECT rows FROM bench_admin_meta")
    return found[0][0] if found else 0


def build(rows: int) -> dict:
    """Fill market_data with ``rows`` bars (1,000 symbols x 390 bars a day), unless already there."""
    have = stored_rows()
    if have == rows and q("SELECT 1 FROM pg_indexes WHERE indexname = 'market_data_version'"):
        log(f"reusing {have:,} bars in {DB_NAME}")
        return {"reused": True, "seconds": 0}
    t0 = time.perf_counter()
    log(f"building {rows:,} bars in {DB_NAME} (had {have:,})")
    if (
        have
        or q("SELECT 1 FROM market_data LIMIT 1")
        or not q("SELECT 1 FROM pg_indexes WHERE indexname = 'market_data_version'")
    ):
        recreate_database()
        stored_rows()
    constraints = q(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = 'market_data'::regclass AND contype IN ('p', 'u')"
    )
    indexes = q(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'market_data' AND indexname NOT IN "
        "(SELECT conname FROM pg_constraint WHERE conrelid = 'market_data'::regclass)"
    )
    for name, _ in indexes:
        q(f'DROP INDEX "{name}"')
    for name, _ in constraints:
        q(f'ALTER TABLE market_data DROP CONSTRAINT "{name}"')
    days = -(-rows // (BARS_PER_DAY * SYMBOLS))
    done = 0
    for lo in range(0, days, DAYS_PER_CHUNK):
        hi = min(days, lo + DAYS_PER_CHUNK) - 1
        limit = rows - done
        # (time, symbol) order like a live feed; 0.1% of the bars carry a suspect score
        q(
            """
            INSERT INTO market_data
                (time, symbol, open, high, low, close, volume, source, quality_score, known_at, recorded_at)
            SELECT t, sym, p, p + 0.05, p - 0.05, p + 0.01, 100 + (i * 7 + m) %% 900, 'bench',
                   CASE WHEN random() < 0.001 THEN 0.3 ELSE 1.0 END, t + interval '1 minute', t + interval '2 minutes'
            FROM generate_series(%s::int, %s::int) d, generate_series(0, 389) m,
                 LATERAL (SELECT %s::timestamptz + d * interval '1 day' + m * interval '1 minute' AS t) tt,
                 generate_series(0, %s - 1) i,
                 LATERAL (SELECT 'S' || lpad(i::text, 4, '0') AS sym,
                                 round((20 + i %% 400 + 2 * sin((d * 390 + m) / 60.0))::numeric, 6) AS p) v
            ORDER BY d, m, i
            LIMIT %s
            """,
            [lo, hi, START, SYMBOLS, limit],
        )
        done = min(rows, (hi + 1) * BARS_PER_DAY * SYMBOLS)
        log(f"  {done:,} bars")
    q("SET maintenance_work_mem = '1GB'")
    for name, definition in constraints:
        log(f"  constraint {name}")
        q(f'ALTER TABLE market_data ADD CONSTRAINT "{name}" {definition}')
    for name, definition in indexes:
        log(f"  index {name}")
        q(definition)
    q(
        """INSERT INTO timeseries_series (dataset, symbol, subkey, first_time, last_time)
           SELECT 'market_data', symbol, '', min(time), max(time) FROM market_data GROUP BY symbol"""
    )
    log("  vacuum analyze")
    q("VACUUM ANALYZE market_data")
    q("INSERT INTO bench_admin_meta VALUES (%s)", [rows])
    return {"reused": False, "seconds": round(time.perf_counter() - t0, 1)}


# --- timing ---------------------------------------------------------------------------------------


def client_login():
    from django.contrib.auth.models import User
    from django.test import Client

    user, _ = User.objects.get_or_create(username="bench-admin", defaults={"is_staff": True, "is_superuser": True})
    client = Client()
    client.force_login(user)
    return client


def get(client, url: str):
    def run():
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
        return response

    return run


def ingest_cost(rows: int, runs: int) -> dict:
    """What the market_data ``time`` index (added by the curation migration) costs ingestion: the same
    ``rows`` demo bars loaded through ``ingest_table`` into an empty table with and without it,
    alternately, ``runs`` times each (median rows/s). Runs in ``tsm_bench_admin_ingest``."""
    from datetime import datetime

    import pyarrow as pa

    # project modules need Django: imported only after django_up() (bench/lib/django_env.py)
    from ingestion.loader import ingest_table

    symbols = [f"S{i:04d}" for i in range(100)]
    days = -(-rows // (BARS_PER_DAY * len(symbols))) + 3
    table = pa.Table.from_batches(
        list(
            demo.market_data_batches(
                symbols=symbols, start=datetime(2024, 1, 1, tzinfo=UTC), days=days, include_corrections=False
            )
        )
    )
    table = table.slice(0, rows)
    speeds: dict[str, list[float]] = {"with_time_index": [], "without_time_index": []}
    for _ in range(runs):
        for variant in speeds:
            q("TRUNCATE market_data, timeseries_series, timeseries_change")
            q("DROP INDEX IF EXISTS market_data_time")
            if variant == "with_time_index":
                q("CREATE INDEX market_data_time ON market_data (time)")
            t = time.perf_counter()
            ingest_table(dataset="market_data", data=table)
            speeds[variant].append(rows / (time.perf_counter() - t))
            log(f"{variant}: {speeds[variant][-1]:,.0f} rows/s")
    q("DROP INDEX IF EXISTS market_data_time")
    q("CREATE INDEX market_data_time ON market_data (time)")
    out = {k: round(statistics.median(v)) for k, v in speeds.items()}
    out["ratio_with_over_without"] = round(out["with_time_index"] / out["without_time_index"], 3)
    return {"rows": rows, "runs": runs, "rows_per_s": out}


def main() -> None:
    global DB_NAME, DB_URL
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=50_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--build-only", action="store_true")
    parser.add_argument(
        "--ingest-cost",
        type=int,
        metavar="ROWS",
        help="instead: ingestion rows/s with and without the market_data time index (own database)",
    )
    args = parser.parse_args()
    if args.ingest_cost:
        DB_NAME = "tsm_bench_admin_ingest"
        DB_URL = local_url(DB_NAME)
        django_up(DB_URL)
        print(
            json.dumps(
                {
                    "ingest_cost": ingest_cost(args.ingest_cost, args.runs),
                    "command": " ".join(sys.argv),
                    "loadavg_end": os.getloadavg(),
                },
                indent=1,
            )
        )
        return
    django_up(DB_URL)
    built = build(args.rows)
    out: dict = {
        "rows": args.rows,
        "symbols": SYMBOLS,
        "build": built,
        "loadavg_start": os.getloadavg(),
        "command": " ".join(sys.argv),
    }
    if args.build_only:
        print(json.dumps(out))
        return
    from django.contrib import admin as django_admin
    from django.core.paginator import Paginator

    # project modules need Django: imported only after django_up() (bench/lib/django_env.py)
    from timeseries import models

    client = client_login()
    base = "/admin/timeseries/marketdata/"
    days = args.rows // (BARS_PER_DAY * SYMBOLS)
    mid = START + timedelta(days=days // 2)
    iso = lambda d: d.isoformat().replace("+00:00", "Z")  # noqa: E731
    cases = {
        "unfiltered": "",
        "symbol": "?symbol=S0500",
        "time_range": f"?time_after={iso(mid)}&time_before={iso(mid + timedelta(hours=1))}",
        "time_range_symbol": f"?symbol=S0123&time_after={iso(mid)}&time_before={iso(mid + timedelta(hours=6))}",
        "known_at_range": f"?known_at_after={iso(mid)}&known_at_before={iso(mid + timedelta(hours=1))}",
        "quality_range": "?quality_min=0.2&quality_max=0.5",
        "quality_none_match": "?quality_min=0.6&quality_max=0.7",
        "search": "?q=S0777",
        "audit_log": None,
    }
    figures = {}
    for name, params in cases.items():
        url = "/admin/timeseries/qualityaudit/" if params is None else base + params
        figures[name] = median_ms(get(client, url), args.runs)
        log(f"{name}: {figures[name]}")
    # baseline: what Django's defaults would cost on this table (the full COUNT behind the paginator)
    model_admin = django_admin.site._registry[models.MarketData]
    figures["baseline_full_count"] = median_ms(
        lambda: Paginator(models.MarketData.objects.order_by("id"), 100).count, max(1, args.runs // 2)
    )
    log(f"baseline_full_count: {figures['baseline_full_count']}")
    # bulk "mark suspect" over every row of one symbol-day (select all matching the filter)
    samples = []
    for k in range(args.runs + 1):
        day = START + timedelta(days=k)
        params = (
            f"?symbol=S{(k * 37) % SYMBOLS:04d}"
            f"&time_after={iso(day - timedelta(hours=1))}&time_before={iso(day + timedelta(hours=7))}"
        )
        t = time.perf_counter()
        response = client.post(
            base + params,
            {
                "action": "mark_suspect",
                "select_across": "1",
                "index": "0",
                "_selected_action": ["0"],
                "reason": "bench",
            },
        )
        elapsed = time.perf_counter() - t
        assert response.status_code == 302, response.status_code
        if k:
            samples.append(elapsed)
    audited = q("SELECT count(*) FROM timeseries_quality_audit WHERE reason = 'bench'")[0][0]
    figures["mark_suspect_symbol_day"] = {
        "median_ms": round(statistics.median(samples) * 1000, 1),
        "max_ms": round(max(samples) * 1000, 1),
        "n": len(samples),
        "rows_per_action": BARS_PER_DAY,
        "audit_rows_total": audited,
    }
    log(f"mark_suspect_symbol_day: {figures['mark_suspect_symbol_day']}")
    # the service over every bar of one symbol (~50k rows: above TSM_CURATION_SYNC_MAX_ROWS, what the
    # Celery task runs), one UPDATE … RETURNING + INSERT of audit rows; rolled back each time
    from django.db import transaction

    # project modules need Django: imported only after django_up() (bench/lib/django_env.py)
    from timeseries import quality

    samples = []
    for k in range(3):
        with transaction.atomic():
            t = time.perf_counter()
            done = quality.quality_scores_set(
                dataset="market_data",
                rows=models.MarketData.objects.filter(symbol=f"S{900 + k:04d}"),
                score=0.0,
                reason="bench",
            )
            samples.append(time.perf_counter() - t)
            transaction.set_rollback(True)
    figures["mark_suspect_symbol_all_service"] = {
        "median_ms": round(statistics.median(samples) * 1000, 1),
        "max_ms": round(max(samples) * 1000, 1),
        "n": len(samples),
        "rows_per_call": done.changed,
    }
    log(f"mark_suspect_symbol_all_service: {figures['mark_suspect_symbol_all_service']}")
    q("DELETE FROM timeseries_quality_audit WHERE reason = 'bench'")
    q(
        "UPDATE market_data SET quality_score = 1.0 WHERE quality_score = 0.0 AND source = 'bench' AND time < %s",
        [START + timedelta(days=args.runs + 2)],
    )
    out["list_per_page"] = model_admin.list_per_page
    out["figures"] = figures
    out["target_ms"] = 1000
    out["met"] = all(
        f["median_ms"] < 1000 for k, f in figures.items() if not k.startswith(("baseline", "mark_suspect_symbol_all"))
    )
    out["loadavg_end"] = os.getloadavg()
    emit(out, indent=1)


if __name__ == "__main__":
    main()

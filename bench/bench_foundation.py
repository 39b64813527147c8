#!/usr/bin/env python
"""Foundation benchmark: ingest, load, point-in-time reads and storage of minute bars.

Prints ONE JSON object on stdout (progress on stderr). Uses its own database ``tsm_bench``:

    .venv/bin/python bench/bench_foundation.py --rows 2000000 --ingest-rows 1000000   # quick
    .venv/bin/python bench/bench_foundation.py                                        # 50M bars

Figures are reported, never asserted; each carries its target from the issue. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: bench.lib and the project
from bench.lib.data import bar_windows, market_data_info, random_times, truncate_market_data, write_bars_csv  # noqa: E402
from bench.lib.django_env import ROOT, bench_env, django_up, environment, local_url, sql_rows  # noqa: E402
from bench.lib.output import command_line, emit, log, started_at  # noqa: E402
from bench.lib.spec import SPEC_LATEST_SQL, spec_ingest, spec_ingest_rated, spec_table_create  # noqa: E402
from bench.lib.stats import sample, stats_ms, timed  # noqa: E402
from timeseries import demo  # noqa: E402  (numpy and pyarrow only, no Django)

DB_NAME = "tsm_bench"
DB_URL = local_url(DB_NAME)
SPEC_ROWS = 2_000_000
PARTS = ("ingest", "load", "market_state", "reconstruct", "asof_join", "size")


def tsm_ingest_cli(path: Path, **env: str) -> dict:
    """``manage.py ingest market_data FILE --format json`` as a subprocess (Django start-up included)."""
    cmd = [sys.executable, "manage.py", "ingest", "market_data", str(path), "--format", "json"]
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=bench_env(DB_URL, **env), stdout=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - t
    lines = proc.stdout.strip().splitlines()
    try:
        out = json.loads(lines[-1])
    except (IndexError, ValueError):
        out = {"stdout_tail": lines[-3:]}
    out.pop("errors", None)
    rows = out.get("rows_read", 0)
    return {
        "exit_code": proc.returncode,
        "seconds": round(seconds, 2),
        "rows_per_s": round(rows / seconds) if proc.returncode == 0 else None,
        **out,
    }


# --- figures ------------------------------------------------------------------------------------


def fig_ingest(args, symbols) -> dict:
    path = write_bars_csv(symbols, args.ingest_rows, args.seed, args.workdir)
    # the loader's two paths on an empty table, alternating: staging + INSERT ... SELECT (TSM_INGEST_DIRECT
    # off) and the default direct COPY of the rows proven new
    paths: dict[str, list[dict]] = {"staged": [], "direct": []}
    for run in range(args.runs):
        for name, flag in (("staged", "false"), ("direct", "true")):
            truncate_market_data()
            paths[name].append(tsm_ingest_cli(path, TSM_INGEST_DIRECT=flag))
            log(f"tsm ingest ({name}, run {run + 1}): {paths[name][-1]}")
    first = sorted(paths["direct"], key=lambda r: r["rows_per_s"] or 0)[(len(paths["direct"]) - 1) // 2]  # a median run
    again = tsm_ingest_cli(path)
    log(f"tsm re-ingest (all duplicates): {again}")
    by_path = {
        name: {
            "rows_per_s": [r["rows_per_s"] for r in runs],
            "median_rows_per_s": statistics.median(r["rows_per_s"] or 0 for r in runs),
        }
        for name, runs in paths.items()
    }
    log("spec ingester (asyncpg) on the same CSV ...")
    spec = spec_ingest_rated(path, DB_URL)
    log(f"spec ingest: {spec}")
    ratio = by_path["direct"]["median_rows_per_s"] / spec["rows_per_s"] if first["rows_per_s"] else None
    return {
        "rows": args.ingest_rows,
        "csv_bytes": path.stat().st_size,
        "target": "tsm >= 300000 rows/s",
        "tsm": first,
        "tsm_paths": by_path,
        "ratio_direct_over_staged": round(
            by_path["direct"]["median_rows_per_s"] / by_path["staged"]["median_rows_per_s"], 2
        )
        if by_path["staged"]["median_rows_per_s"]
        else None,
        "tsm_reingest_duplicates": again,
        "spec": spec,
        "ratio_tsm_over_spec": round(ratio, 2) if ratio else None,
    }


def fig_load(args, symbols) -> dict:
    # project modules need Django: imported only after django_up() (bench/lib/django_env.py)
    from ingestion.loader import ingest_table

    truncate_market_data()
    load_s = gen_s = 0.0
    calls = []
    gen = bar_windows(symbols, args.rows, args.seed)
    while True:
        seconds, table = timed(next, gen, None)
        gen_s += seconds
        if table is None:
            break
        seconds, result = timed(ingest_table, dataset="market_data", data=table, source=f"bench window {len(calls)}")
        load_s += seconds
        calls.append(
            {
                "rows": table.num_rows,
                "seconds": round(seconds, 2),
                "inserted": result.inserted,
                "duplicates": result.duplicates,
                "revised": result.revised,
            }
        )
        log(f"load call {len(calls)}: {table.num_rows:,} bars in {seconds:.1f}s ({table.num_rows / seconds:,.0f}/s)")
    rows = sum(c["rows"] for c in calls)
    vacuum_s, _ = timed(sql_rows, "VACUUM ANALYZE market_data")
    log(f"loaded {rows:,} bars in {load_s:.1f}s; VACUUM ANALYZE {vacuum_s:.1f}s; spec table ...")
    sql_rows("TRUNCATE spec_market_data")
    spec_rows = min(SPEC_ROWS, args.rows)
    spec = spec_ingest(write_bars_csv(symbols, spec_rows, args.seed, args.workdir), DB_URL)
    sql_rows("VACUUM ANALYZE spec_market_data")
    return {
        "rows": rows,
        "calls": len(calls),
        "seconds": round(load_s, 2),
        "rows_per_s": round(rows / load_s),
        "generate_s": round(gen_s, 2),
        "vacuum_analyze_s": round(vacuum_s, 2),
        "per_call": calls if len(calls) <= 20 else calls[:3] + calls[-2:],
        "spec_table": {"rows": spec["inserted"], "seconds": round(spec["seconds"], 2)},
    }


def data_info() -> dict:
    """The market data loaded (``market_data_info``) and the spec table beside it."""
    slo, shi, scount = sql_rows("SELECT min(time), max(time), count(*) FROM spec_market_data")[0]
    return {**market_data_info(), "spec_rows": scount, "spec_time_min": slo, "spec_time_max": shi}


def fig_market_state(args, info) -> dict:
    from django.db import connection

    # project modules need Django: imported only after django_up() (bench/lib/django_env.py)
    from timeseries import pit

    rng = random.Random(args.seed)
    n_all, n_one, n_spec = 200 * args.runs, 1000 * args.runs, 20 * args.runs
    log(f"market_state: {n_all} x all symbols, {n_one} x one symbol, {n_spec} x spec DISTINCT ON ...")
    all_calls = [{"at": t} for t in random_times(rng, info["time_min"], info["time_max"], n_all)]
    rows_returned = len(pit.market_state(**all_calls[0]))
    all_symbols = stats_ms(sample(pit.market_state, all_calls))
    one_calls = [
        {"at": t, "symbols": [rng.choice(info["symbol_list"])]}
        for t in random_times(rng, info["time_min"], info["time_max"], n_one)
    ]
    one_symbol = stats_ms(sample(pit.market_state, one_calls))

    def spec_latest(at):
        with connection.cursor() as cur:
            cur.execute(SPEC_LATEST_SQL, [at])
            return cur.fetchall()

    spec, ratio = {"skipped": "spec_market_data is empty: run the load part"}, None
    if info["spec_rows"]:
        spec_calls = [{"at": t} for t in random_times(rng, info["spec_time_min"], info["spec_time_max"], n_spec)]
        spec = {**stats_ms(sample(spec_latest, spec_calls, warmup=1)), "table_rows": info["spec_rows"]}
        ratio = round(spec["p50_ms"] / all_symbols["p50_ms"], 1)
    return {
        "all_symbols": {**all_symbols, "symbols_returned": rows_returned, "target": "p99 < 25 ms"},
        "one_symbol": {**one_symbol, "target": "p99 < 2 ms"},
        "spec_distinct_on": spec,
        "ratio_spec_over_tsm_all_symbols_p50": ratio,
        "note": "T uniform over each table's own time range; tsm on the full load, spec on its 2M-bar table",
    }


def fig_reconstruct(args, info) -> dict:
    # project modules need Django: imported only after django_up() (bench/lib/django_env.py)
    from timeseries import pit

    rng = random.Random(args.seed + 1)
    n = 200 * args.runs
    log(f"reconstruct: {n} calls ...")
    calls = [
        {"at": t, "symbol": rng.choice(info["symbol_list"])}
        for t in random_times(rng, info["time_min"], info["time_max"], n)
    ]
    return {
        **stats_ms(sample(pit.reconstruct, calls)),
        "target": "p99 < 20 ms",
        "note": "only market data is loaded: news/insider/sentiment/government queries hit empty tables",
    }


def fig_asof_join(args, info) -> dict:
    import pyarrow as pa

    # project modules need Django: imported only after django_up() (bench/lib/django_env.py)
    from timeseries import pit

    rng = random.Random(args.seed + 2)
    n = args.asof_points
    lo_us = int(info["time_min"].timestamp() * 1e6)
    span_us = int((info["time_max"] - info["time_min"]).total_seconds() * 1e6) + 60_000_000
    points = pa.table(
        {
            "symbol": pa.array([rng.choice(info["symbol_list"]) for _ in range(n)]),
            "time": pa.array([lo_us + rng.randrange(span_us) for _ in range(n)], pa.int64()).cast(
                pa.timestamp("us", tz="UTC")
            ),
        }
    )
    out = {"points": n, "target": "< 5 s"}
    # asof_join_table: the bulk form (an Arrow table); asof_join: the same answer as Python dicts
    for name, selector, close_count in (
        ("table", pit.asof_join_table, lambda t: t.num_rows - t.column("close").null_count),
        ("dicts", pit.asof_join, lambda rows: sum(1 for r in rows if r.get("close") is not None)),
    ):
        walls, matched = [], 0
        for run in range(max(1, args.runs)):
            seconds, answer = timed(selector, points)
            walls.append(seconds)
            matched = close_count(answer)
            del answer
            log(f"asof_join ({name}) run {run + 1}: {n:,} points in {seconds:.2f}s")
        walls.sort()
        out[name] = {
            "matched": matched,
            "runs": len(walls),
            "median_s": round(walls[len(walls) // 2], 3),
            "all_s": [round(w, 3) for w in walls],
        }
    return out


def table_size(table: str, rows: int) -> dict:
    total, heap, indexes = sql_rows(
        "SELECT pg_total_relation_size(%s), pg_relation_size(%s), pg_indexes_size(%s)", [table, table, table]
    )[0]
    per_index = dict(
        sql_rows(
            "SELECT indexrelname, pg_relation_size(indexrelid) FROM pg_stat_user_indexes WHERE relname = %s ORDER BY 1",
            [table],
        )
    )
    per = (lambda b: round(b / rows, 1)) if rows else (lambda b: None)
    return {
        "rows": rows,
        "total_bytes": total,
        "bytes_per_bar": per(total),
        "heap_bytes_per_bar": per(heap),
        "index_bytes_per_bar": per(indexes),
        "other_bytes_per_bar": per(total - heap - indexes),
        "index_bytes": per_index,
    }


def fig_size(args, info) -> dict:
    return {
        "market_data": table_size("market_data", info["rows"]),
        "spec_market_data": table_size("spec_market_data", info["spec_rows"]),
    }


# --- main ---------------------------------------------------------------------------------------


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=50_000_000, help="bars loaded for the read figures")
    p.add_argument("--symbols", type=int, default=1000)
    p.add_argument("--ingest-rows", type=int, default=10_000_000, help="bars in the ingest CSV (capped at --rows)")
    p.add_argument("--runs", type=int, default=1, help="repetitions: latency samples x runs, asof_join median")
    p.add_argument("--asof-points", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--workdir", type=Path, default=Path("/tmp"), help="where the CSV files are written")
    p.add_argument("--skip-load", action="store_true", help="reuse the loaded bench database (skips ingest too)")
    p.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts of {','.join(PARTS)}")
    args = p.parse_args(argv)
    args.ingest_rows = min(args.ingest_rows, args.rows)
    args.runs = max(1, args.runs)
    args.parts = [x.strip() for x in args.only.split(",") if x.strip()]
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        p.error(f"unknown part(s) {', '.join(sorted(unknown))}: expected {', '.join(PARTS)}")
    if args.skip_load:
        args.parts = [x for x in args.parts if x not in ("ingest", "load")]  # ingest would wipe the bars
    args.workdir.mkdir(parents=True, exist_ok=True)
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    command = command_line()
    django_up(DB_URL)
    spec_table_create()

    symbols = demo.make_symbols(args.symbols)
    out: dict = {"command": command, "started_at": started_at(), **environment(), "parts": args.parts, "figures": {}}
    t0 = time.perf_counter()
    if "ingest" in args.parts:
        out["figures"]["ingest"] = fig_ingest(args, symbols)
    if "load" in args.parts:
        out["figures"]["load"] = fig_load(args, symbols)
    info = data_info()
    out.update(
        rows_loaded=info["rows"],
        symbols=info["symbols"],
        time_range=[
            info["time_min"].isoformat() if info["time_min"] else None,
            info["time_max"].isoformat() if info["time_max"] else None,
        ],
        spec_rows=info["spec_rows"],
    )
    for part, fn in (
        ("market_state", fig_market_state),
        ("reconstruct", fig_reconstruct),
        ("asof_join", fig_asof_join),
        ("size", fig_size),
    ):
        if part in args.parts:
            if not info["rows"] and part != "size":
                out["figures"][part] = {"skipped": "market_data is empty: run without --skip-load"}
                continue
            out["figures"][part] = fn(args, info)
            log(f"{part}: {json.dumps(out['figures'][part], default=str)[:300]}")
    out["total_s"] = round(time.perf_counter() - t0, 1)
    out["load_average_at_end"] = os.getloadavg()  # other work on this machine skews the figures
    emit(out)


if __name__ == "__main__":
    main()

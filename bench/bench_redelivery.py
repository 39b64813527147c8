"""Re-delivery after fixes: a vendor's whole file loaded again after 1 % of its rows were fixed.

Issue #16: "Re-delivering a 10M-row file after 1 % of its rows were fixed is no slower than today's
re-merge of the same file (same run), and the replay shortcut still applies where it did." For each tree
given with ``--tree`` (the first is the one under test, later ones are baselines such as a checkout of
the commit before), every run, on a database dropped and created afresh and migrated by that tree:

  1. ``first_load``: ``ingestion.loader.ingest_file(dataset="market_data", path=ORIGINAL)`` — ``--rows``
     demo minute bars (``bench/lib/data.py``: 1,000 symbols, 390 a weekday, known_at = time + 1 min);
  2. ``replay_unchanged``: the same file again, nothing changed since: the replay shortcut
     (``ingestion/replay.py``) should answer it (``replay_of`` set);
  3. ``fix``: a file of 1 % of ORIGINAL's rows (picked at random with ``--seed``), same key and known_at,
     another close (the bar's low, or its high when the close is the low; a flat bar gets close and high
     one cent up), loaded with ``feed="curation"`` where the tree's ``ingest_file`` has ``feed``;
  4. ``redelivery`` (the figure): ORIGINAL again. The fix load logged changes over its spans, so the
     shortcut is refused and the file takes the full path (parse, stage, version merge);
  5. ``fixed_kept``: of the fixed keys, how many still read the fixed close (raw SQL: the version with
     the greatest (known_at, recorded_at) among known_at <= now()); the same count before step 4 is
     ``fixed_kept_before_redelivery`` (100 % in every tree);
  6. ``replay_after_redelivery``: ORIGINAL once more, nothing changed since step 4: shortcut again?

Each tree runs in its own process (cwd and PYTHONPATH = the tree), so it imports its own code; the trees
alternate run by run. ``TSM_FEED_PRECEDENCE_MARKET_DATA`` is ``--precedence`` (default "curation").

    flock /tmp/tsm-bench.lock .venv/bin/python bench/bench_redelivery.py --tree . --tree /work/base \\
        > bench/results/redelivery.json

Prints one JSON object: every run of every tree (seconds, counts, replay_of / replay_note of each load),
per tree the median, min and max seconds of each step, and ``ratio_redelivery_median``: the first tree's
re-delivery median over each later tree's (target: <= 1).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import psycopg.sql

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: bench.lib and the project
from bench.lib.data import write_bars_csv  # noqa: E402
from bench.lib.django_env import PG_SETTINGS, ROOT, bench_env, local_url  # noqa: E402
from bench.lib.output import command_line, emit, log, started_at  # noqa: E402
from timeseries import demo  # noqa: E402  (numpy and pyarrow only, no Django)

FIX_EVERY = 100  # 1 % of the rows are fixed
STEPS = ("first_load", "replay_unchanged", "fix", "redelivery", "replay_after_redelivery")

# One run in one tree: argv[1] is JSON {"original", "fix"} (paths); prints one JSON line last.
CHILD = r"""
import inspect, json, os, sys, time
sys.path.insert(0, os.getcwd())
import django
django.setup()
from django.core.management import call_command
from django.db import connection

call_command("migrate", verbosity=0, interactive=False)
from ingestion.loader import ingest_file

args = json.loads(sys.argv[1])
has_feed = "feed" in inspect.signature(ingest_file).parameters
COUNTS = ("rows_read", "inserted", "revised", "duplicates", "resent", "outranked", "rejected")


def load(path, **options):
    t = time.perf_counter()
    result = ingest_file(dataset="market_data", path=path, **options)
    seconds = time.perf_counter() - t
    out = {"seconds": round(seconds, 3), "rows_per_s": round(result.rows_read / seconds)}
    out.update({k: getattr(result, k) for k in COUNTS if hasattr(result, k)})  # the baseline has no resent / outranked
    out["replay_of"] = str(result.replay_of) if result.replay_of else None
    out["replay_note"] = result.replay_note
    return out


def sql(query, params=None):
    with connection.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchall() if cur.description else []


def fix_keys(path):
    # the fix file's keys and closes as sent, read by PostgreSQL itself (no code of the tree involved)
    sql("CREATE TEMP TABLE bench_fix (time timestamptz, symbol text, open numeric, high numeric, low numeric, "
        "close numeric, volume bigint, vwap numeric, trades int, market_cap numeric, source text, "
        "quality_score float8, known_at timestamptz)")
    with connection.cursor() as cur, open(path, "rb") as fh:
        with cur.cursor.copy("COPY bench_fix FROM STDIN (FORMAT csv, HEADER true)") as copy:
            while chunk := fh.read(1 << 20):
                copy.write(chunk)


def fixed_kept():
    # of the fixed keys, how many read the fixed close now: the version with the greatest
    # (known_at, recorded_at) among known_at <= now()
    (total, fixed, other), = sql(
        "SELECT count(*), count(*) FILTER (WHERE cur.close = f.close), count(*) FILTER (WHERE cur.close <> f.close) "
        "FROM bench_fix f CROSS JOIN LATERAL (SELECT m.close FROM market_data m WHERE m.symbol = f.symbol "
        "AND m.time = f.time AND m.known_at <= now() ORDER BY m.known_at DESC, m.recorded_at DESC LIMIT 1) cur"
    )
    return {"fixed_keys": total, "current_is_fixed": fixed, "current_is_not_fixed": other,
            "current_is_fixed_pct": round(100.0 * fixed / total, 2) if total else None}


out = {"feed_option": has_feed}
out["first_load"] = load(args["original"])
out["replay_unchanged"] = load(args["original"])
out["fix"] = load(args["fix"], **({"feed": "curation"} if has_feed else {}))
fix_keys(args["fix"])
out["fixed_kept_before_redelivery"] = fixed_kept()  # 100 % in every tree: the check itself is checked
out["redelivery"] = load(args["original"])
out["fixed_kept"] = fixed_kept()
out["replay_after_redelivery"] = load(args["original"])
out["market_data_versions"] = sql("SELECT count(*) FROM market_data")[0][0]
print(json.dumps(out))
"""


# --- files -------------------------------------------------------------------------------------------


def write_fix_csv(original: Path, rows: int, seed: int) -> tuple[Path, int]:
    """1 % of ``original``'s rows (``rows // FIX_EVERY`` picked at random with ``seed``), same key and
    known_at, another close inside [low, high] (a flat bar: close and high one cent up). Written once
    next to the original, then reused."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    path = original.with_name(f"tsm_bench_redelivery_fix_{original.stem.removeprefix('tsm_bench_bars_')}.csv")
    if path.exists():
        log(f"reusing {path}")
        return path, rows // FIX_EVERY
    picked = np.zeros(rows, dtype=bool)
    picked[np.random.default_rng(seed).choice(rows, rows // FIX_EVERY, replace=False)] = True
    stamp, price = pa.timestamp("us", tz="UTC"), pa.float64()
    types = {"time": stamp, "known_at": stamp, "symbol": pa.string(), "source": pa.string(), "volume": pa.int64()}
    types.update({c: price for c in ("open", "high", "low", "close", "vwap", "market_cap", "quality_score")})
    reader = pacsv.open_csv(  # the types given: a later block must not disagree with what the first implied
        original,
        read_options=pacsv.ReadOptions(block_size=64 << 20),
        convert_options=pacsv.ConvertOptions(column_types={**types, "trades": pa.int32()}),
    )
    parts, offset = [], 0
    for batch in reader:
        mask = pa.array(picked[offset : offset + batch.num_rows])
        offset += batch.num_rows
        parts.append(pa.Table.from_batches([batch]).filter(mask))
    if offset != rows:
        raise RuntimeError(f"{original} has {offset:,} rows, expected {rows:,}")
    fix = pa.concat_tables(parts)
    close, high, low = fix["close"], fix["high"], fix["low"]
    flat = pc.equal(low, high)
    bumped = pc.divide(pc.add(pc.round(pc.multiply(close, 100.0)), 1.0), 100.0)  # cents / 100: 11.8, not 11.7999…
    new_close = pc.if_else(flat, bumped, pc.if_else(pc.equal(close, low), high, low))
    new_high = pc.if_else(flat, bumped, high)
    fix = fix.set_column(fix.schema.get_field_index("close"), "close", new_close)
    fix = fix.set_column(fix.schema.get_field_index("high"), "high", new_high)
    if pc.any(pc.equal(fix["close"], close)).as_py():
        raise RuntimeError("a fixed close equals the original")
    tmp = path.with_suffix(".part")
    demo.write_csv(fix, tmp)
    tmp.rename(path)
    log(f"wrote {fix.num_rows:,} fixed rows to {path} ({pc.sum(flat).as_py()} flat bars: high raised too)")
    return path, fix.num_rows


# --- trees -------------------------------------------------------------------------------------------


def tree_database(base_url: str, index: int) -> str:
    parts = urlsplit(base_url)
    name = parts.path.lstrip("/") + ("" if index == 0 else f"_t{index}")  # each tree its own database
    return urlunsplit(parts._replace(path="/" + name))


def database_drop(url: str, *, create: bool = False) -> None:
    """Drop the bench's own database; ``create``: create it afresh (the tree's migrate fills it)."""
    name = psycopg.sql.Identifier(urlsplit(url).path[1:])
    admin = urlunsplit(urlsplit(url)._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        if create:
            conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(name))


def commit_of(tree: Path) -> str:
    done = subprocess.run(["git", "-C", str(tree), "rev-parse", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip()


def run_tree(tree: Path, url: str, files: dict, precedence: str) -> dict:
    database_drop(url, create=True)
    env = bench_env(
        url,
        PYTHONPATH=str(tree),
        TSM_CACHE_PREFIX="tsm_bench_redelivery",
        TSM_FEED_PRECEDENCE_MARKET_DATA=precedence,
    )
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps({k: str(v) for k, v in files.items()})],
        cwd=tree,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    if done.returncode:
        raise RuntimeError(f"tree {tree}: the run exited with {done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def server_environment(url: str) -> dict:
    """PostgreSQL's version and the settings the figures depend on (no Django in this process)."""
    with psycopg.connect(urlunsplit(urlsplit(url)._replace(path="/postgres")), autocommit=True) as conn:
        return {
            "postgresql": conn.execute("SELECT version()").fetchone()[0],
            "pg_settings": {n: conn.execute(f"SHOW {n}").fetchone()[0] for n in PG_SETTINGS},
        }


def step_summary(runs: list[dict], step: str) -> dict:
    """Median, min and max seconds of one step over the runs, the counts of the last run (every run loads
    the same files) and whether each run's load took the replay shortcut."""
    seconds = [r[step]["seconds"] for r in runs]
    last = runs[-1][step]
    return {
        "median_s": round(statistics.median(seconds), 3),
        "min_s": min(seconds),
        "max_s": max(seconds),
        "counts": {k: v for k, v in last.items() if k not in ("seconds", "rows_per_s", "replay_of", "replay_note")},
        "replay_shortcut": [r[step]["replay_of"] is not None for r in runs],
    }


# --- main --------------------------------------------------------------------------------------------


def _terminate(signum, frame):
    raise SystemExit(128 + signum)  # subprocess.run kills the running child on the way out; the finally drops


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="demo bars in the delivered file")
    parser.add_argument("--runs", type=int, default=3, help="runs per tree, the trees alternating")
    parser.add_argument(
        "--tree", action="append", default=[], help="a checkout (repeatable; the first is the one under test)"
    )
    parser.add_argument(
        "--database-url",
        default=local_url("tsm_bench_redelivery"),
        help="the first tree's database (dropped and created every run); later trees get _t1, _t2...",
    )
    parser.add_argument("--symbols", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=42, help="the bars and the rows picked for the fix")
    parser.add_argument("--precedence", default="curation", help="TSM_FEED_PRECEDENCE_MARKET_DATA of every run")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp"), help="where the CSVs are written and reused")
    parser.add_argument(
        "--keep-databases", action="store_true", help="keep each tree's database as its last run left it"
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    trees = [Path(t).resolve() for t in (args.tree or [str(ROOT)])]
    urls = [tree_database(args.database_url, i) for i in range(len(trees))]

    out: dict = {"bench": "redelivery", "command": command_line(), "started_at": started_at()}
    original = write_bars_csv(demo.make_symbols(args.symbols), args.rows, args.seed, args.workdir)
    fix, fix_rows = write_fix_csv(original, args.rows, args.seed)
    files = {"original": original, "fix": fix}
    out.update(
        **server_environment(urls[0]),
        cores=os.cpu_count(),
        load_average_at_start=os.getloadavg(),
        rows=args.rows,
        symbols=args.symbols,
        fix_rows=fix_rows,
        files={k: str(v) for k, v in files.items()},
        feed_precedence_market_data=args.precedence,
        runs=args.runs,
    )
    runs: dict[Path, list[dict]] = {t: [] for t in trees}
    try:
        for n in range(args.runs):
            for tree, url in zip(trees, urls):  # alternate, so drift of the machine's speed hits every tree alike
                log(f"run {n + 1}/{args.runs}, tree {tree} ({urlsplit(url).path[1:]}) ...")
                r = run_tree(tree, url, files, args.precedence)
                r["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
                runs[tree].append(r)
                d, k = r["redelivery"], r["fixed_kept"]
                log(
                    f"  re-delivery {d['seconds']}s ({d.get('revised')} revised, {d.get('resent', '-')} resent), "
                    f"fixed close kept on {k['current_is_fixed']:,}/{k['fixed_keys']:,} keys; shortcut: "
                    f"unchanged {r['replay_unchanged']['replay_of'] is not None}, "
                    f"after re-delivery {r['replay_after_redelivery']['replay_of'] is not None}"
                )
    finally:
        if not args.keep_databases:
            for url in urls:
                database_drop(url)
    out["trees"] = [
        {
            "tree": str(tree),
            "commit": commit_of(tree),
            "database": urlsplit(url).path[1:],
            "feed_option": runs[tree][0]["feed_option"],
            **{step: step_summary(runs[tree], step) for step in STEPS},
            "fixed_kept_before_redelivery": runs[tree][-1]["fixed_kept_before_redelivery"],
            "fixed_kept": runs[tree][-1]["fixed_kept"],
            "runs": runs[tree],
        }
        for tree, url in zip(trees, urls)
    ]
    first = out["trees"][0]["redelivery"]["median_s"]
    out["ratio_redelivery_median"] = {
        t["tree"]: round(first / t["redelivery"]["median_s"], 3) for t in out["trees"][1:]
    }
    out["target"] = "re-delivery no slower than the baseline's re-merge of the same file: ratio <= 1"
    out["load_average_at_end"] = os.getloadavg()
    emit(out)


if __name__ == "__main__":
    main(sys.argv[1:])

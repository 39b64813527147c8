"""Validation cost: ``ingestion.checks.prepare_batch`` over demo files, with no database involved.

Every ingest door (files, uploads, the write API) converts and checks each batch with
``prepare_batch``; this times it alone, so a change of the rules (e.g. the shared symbol rule and the
stored-instant range) is measured without the noise of COPY and the merge. Run it from two checkouts
in turn (``--tree``) to compare a change with its baseline in the same run:

    .venv/bin/python bench/bench_checks.py --rows 1000000 --runs 5 --tree . --tree /path/to/baseline

Prints one JSON object: per tree and dataset, rows/s of each run and the median, and the ratio of
each later tree's median to the first's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: bench.lib and the project
from bench.lib.django_env import BENCH_SECRET, ROOT  # noqa: E402
from bench.lib.output import emit  # noqa: E402
from timeseries import demo  # noqa: E402  (numpy and pyarrow only, no Django)

START = datetime(2024, 3, 1, tzinfo=UTC)


def write_files(folder: Path, rows: int) -> dict[str, Path]:
    """Demo CSVs: ``rows`` minute bars (390 a weekday per symbol) and the news of the same window."""
    symbols = demo.make_symbols(max(1, min(2000, rows // (390 * 20) or 1)))
    days = max(1, -(-rows // (390 * len(symbols))) * 7 // 5 + 2)
    bars = demo.market_data(symbols=symbols, start=START, days=days, include_corrections=False).slice(0, rows)
    news = demo.news_events(symbols=symbols, start=START, days=days)
    paths = {"market_data": folder / "market_data.csv", "news_events": folder / "news_events.csv"}
    demo.write_csv(bars, paths["market_data"])
    demo.write_csv(news, paths["news_events"])
    return paths


CHILD = r"""
import json, os, sys, time
sys.path.insert(0, os.getcwd())
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tsm_site.settings")
import django
django.setup()
from datetime import timedelta
from ingestion.checks import prepare_batch
from ingestion.parsers import read_batches
from timeseries.datasets import DATASETS, CheckContext

out = {}
for name, path in json.loads(sys.argv[1]).items():
    dataset = DATASETS[name]
    batches = list(read_batches(path, dataset=dataset))  # parsing is not timed
    ctx = CheckContext(bar_interval=timedelta(minutes=1))
    t0 = time.perf_counter()
    rows = errors = 0
    offset = 0
    for batch in batches:
        prepared = prepare_batch(batch, dataset=dataset, ctx=ctx, row_offset=offset)
        offset += batch.num_rows
        rows += prepared.table.num_rows
        errors += len(prepared.errors)
    out[name] = {"rows": rows, "errors": errors, "seconds": time.perf_counter() - t0}
print(json.dumps(out))
"""


def run_tree(tree: Path, files: dict[str, Path]) -> dict:
    env = {**os.environ, "DEBUG": "false", "SECRET_KEY": os.environ.get("SECRET_KEY", BENCH_SECRET)}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps({k: str(v) for k, v in files.items()})],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="market bars in the file")
    parser.add_argument("--runs", type=int, default=5, help="runs per tree, alternating trees")
    parser.add_argument("--tree", action="append", default=[], help="a checkout to time (repeat; first = reference)")
    args = parser.parse_args()
    trees = [Path(t).resolve() for t in (args.tree or [str(ROOT)])]
    with tempfile.TemporaryDirectory(prefix="tsm-bench-checks-") as tmp:
        files = write_files(Path(tmp), args.rows)
        runs: dict[str, list[dict]] = {str(t): [] for t in trees}
        for _ in range(args.runs):
            for tree in trees:  # alternate, so drift of the machine's speed hits every tree alike
                runs[str(tree)].append(run_tree(tree, files))
    result: dict = {"bench": "checks", "rows": args.rows, "runs": args.runs, "trees": {}}
    for tree, samples in runs.items():
        per = {}
        for name in samples[0]:
            rates = [s[name]["rows"] / s[name]["seconds"] for s in samples]
            per[name] = {
                "rows": samples[0][name]["rows"],
                "errors": samples[0][name]["errors"],
                "rows_per_s": [round(r) for r in rates],
                "median_rows_per_s": round(statistics.median(rates)),
            }
        result["trees"][tree] = per
    first = str(trees[0])
    result["ratio_to_first"] = {
        tree: {
            name: round(per[name]["median_rows_per_s"] / result["trees"][first][name]["median_rows_per_s"], 3)
            for name in per
        }
        for tree, per in result["trees"].items()
        if tree != first
    }
    emit(result, indent=1)


if __name__ == "__main__":
    main()

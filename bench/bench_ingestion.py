#!/usr/bin/env python
"""Ingestion benchmark: admin/Celery uploads, re-upload, memory bound, buffered write API.

Prints ONE JSON object on stdout (progress on stderr). Uses its own database ``tsm_bench_ingest``
(created and migrated when missing) and starts its own Celery worker (private queue) and HTTP server,
stopping them on the way out, errors included. Run it alone (other benchmarks skew every figure):

    flock /tmp/tsm-bench.lock .venv/bin/python bench/bench_ingestion.py --quick          # ~3 min
    flock /tmp/tsm-bench.lock .venv/bin/python bench/bench_ingestion.py > /tmp/ingestion-full.json

Parts (--only): upload (new file -> queryable), reupload (the same file again: the replay shortcut of
ingestion/replay.py may answer it), reupload-full (the same file with the earlier loads' replay keys
cleared: the full parse + stage + merge path a new file of already-stored rows takes), memory, api.
Each upload run records the load average before and after it.

Figures are reported, never asserted; each carries its target from the issue. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: bench.lib and the project
from bench.lib.cpu import CpuMeter  # noqa: E402
from bench.lib.data import BARS_PER_DAY, bar_windows, bars_csv_path, truncate_market_data, write_bars_csv  # noqa: E402
from bench.lib.django_env import ROOT, django_up, environment, local_url, sql_rows  # noqa: E402
from bench.lib.django_env import bench_env as _bench_env
from bench.lib.output import command_line, emit, log, started_at  # noqa: E402
from bench.lib.procs import Proc, RssMonitor, free_port, group_pids, postgres_pids  # noqa: E402
from bench.lib.spec import spec_ingest_rated, spec_table_create, spec_table_truncate  # noqa: E402
from bench.lib.stats import median, pct, target_ratio  # noqa: E402
from timeseries import demo  # noqa: E402  (numpy and pyarrow only, no Django)

DB_NAME = "tsm_bench_ingest"
DB_URL = local_url(DB_NAME)
CACHE_PREFIX = "tsm_bench_ingest"
PARTS = ("upload", "reupload", "reupload-full", "profile", "floor", "memory", "api")
BEAT_ENTRIES = ("flush-write-buffers", "refresh-rollups", "quality-checks")  # tsm_site/settings.py CELERY_BEAT_SCHEDULE
API_START = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday, after every bar the other parts load


# --- environment and processes ------------------------------------------------------------------


def bench_env(**extra: str) -> dict[str, str]:
    return _bench_env(DB_URL, DEBUG="false", TSM_CACHE_PREFIX=CACHE_PREFIX, LOG_LEVEL="WARNING", **extra)


def setup_django(run_dir: Path, queue: str) -> None:
    """Create + migrate tsm_bench_ingest (never tsm_bench), then route this process's tasks to ``queue``."""
    django_up(
        DB_URL, DEBUG="false", TSM_CACHE_PREFIX=CACHE_PREFIX, LOG_LEVEL="WARNING", TSM_MEDIA_ROOT=str(run_dir / "media")
    )
    spec_table_create()
    # project modules need Django: imported only after django_up() (bench/lib/django_env.py)
    from tsm_site.celery import app

    app.conf.task_default_queue = queue


def start_worker(stack: ExitStack, run_dir: Path, queue: str, label: str, concurrency: int = 1) -> Proc:
    """A Celery worker on the private queue: solo pool (one task at a time), or prefork with
    ``concurrency`` processes as `make run` starts it (2), so a rollups refresh runs beside a flush."""
    pool = ["--pool=solo"] if concurrency == 1 else ["--pool=prefork", "--concurrency", str(concurrency)]
    cmd = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "tsm_site",
        "worker",
        *pool,
        "-Q",
        queue,
        "-n",
        f"{queue}-{label}@%h",
        "--without-mingle",
        "--without-gossip",
        "--without-heartbeat",
        "-l",
        "info",
    ]
    proc = Proc(
        f"celery worker ({label})",
        cmd,
        bench_env(TSM_MEDIA_ROOT=str(run_dir / "media")),
        run_dir / f"worker-{label}.log",
    )
    stack.callback(proc.stop)
    proc.wait_for_log(r"ready\.", timeout=120)
    return proc


GUNICORN = (
    "import sys; from tsm_site.celery import app; app.conf.task_default_queue = sys.argv.pop(1); "
    "sys.argv[0] = 'gunicorn'; from gunicorn.app.wsgiapp import run; sys.exit(run())"
)


def start_server(stack: ExitStack, run_dir: Path, queue: str, workers: int) -> tuple[Proc, str]:
    """gunicorn (sync workers) whose flush tasks go to the private queue (set before the app loads)."""
    port = free_port()
    env = bench_env(
        TSM_MEDIA_ROOT=str(run_dir / "media"),
        TSM_API_RATE="none",
        TSM_INGEST_RATE="1000000/min",
        ALLOWED_HOSTS="127.0.0.1",
    )
    cmd = [
        sys.executable,
        "-c",
        GUNICORN,
        queue,
        "tsm_site.wsgi:application",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--timeout",
        "120",
        "--graceful-timeout",
        "10",
        "--log-level",
        "warning",
    ]
    proc = Proc("gunicorn", cmd, env, run_dir / "gunicorn.log")
    stack.callback(proc.stop)
    return proc, f"http://127.0.0.1:{port}"


# --- helpers ------------------------------------------------------------------------------------


def truncate_datasets() -> None:
    truncate_market_data()


def truncate_bookkeeping() -> None:
    sql_rows("TRUNCATE ingestion_upload, ingestion_ingestbatch, ingestion_rejectedrow, ingestion_load CASCADE")


def count_market_data() -> int:
    return sql_rows("SELECT count(*) FROM market_data")[0][0]


# --- 1 + 2: admin upload -> Celery worker -> queryable ----------------------------------------------


def wait_for_rollups(timeout: float) -> float:
    """Seconds until the rollups consumer has no pending change of market_data (the upload task
    enqueues its refresh on the same worker when it finishes)."""
    # project modules need Django: imported only after django_up() (bench/lib/django_env.py)
    from timeseries.changes import changes_lag

    t = time.perf_counter()
    while changes_lag(consumer="rollups", dataset="market_data")["pending"]:
        if time.perf_counter() - t > timeout:
            raise RuntimeError("the rollups consumer did not catch up")
        time.sleep(0.1)
    return round(time.perf_counter() - t, 2)


def upload_once(path: Path, worker: Proc, timeout: float) -> dict:
    """upload_create (the admin form's service) -> the worker loads it -> Upload.status == done."""
    from django.core.files.uploadedfile import UploadedFile

    # project modules need Django: imported only after django_up() (bench/lib/django_env.py)
    from ingestion.models import Load, Upload
    from ingestion.tasks import upload_enqueue
    from ingestion.uploads import upload_create

    rss = RssMonitor(worker.pid)
    rss.start()
    seen: dict[str, float] = {}
    load_before = [round(x, 2) for x in os.getloadavg()]
    with CpuMeter({"worker": lambda: [worker.pid], "bench": lambda: [os.getpid()], "postgres": postgres_pids}) as cpu:
        t0 = time.perf_counter()
        with open(path, "rb") as fh:
            upload = upload_create(
                dataset="market_data",
                bar_interval=None,
                on_error="reject",
                user=None,
                file=UploadedFile(fh, name=path.name, content_type="text/csv", size=path.stat().st_size),
            )
            upload_enqueue(upload_id=upload.pk)  # what the admin does after upload_create
        accepted = time.perf_counter()  # stored, row committed, task sent (on_commit runs at once here)
        status = "queued"
        while status not in ("done", "failed"):
            time.sleep(0.05)
            status = Upload.objects.values_list("status", flat=True).get(pk=upload.pk)
            now = time.perf_counter()
            seen.setdefault(status, round(now - accepted, 2))
            if now - accepted > timeout:
                raise RuntimeError(f"upload {upload.pk} still {status} after {timeout}s:\n{worker.log_tail()}")
        done = time.perf_counter()
    upload.refresh_from_db()
    if upload.status != "done":
        raise RuntimeError(f"upload {upload.pk} failed: {upload.error}")
    load = Load.objects.get(pk=upload.load_id)
    seconds = done - accepted
    rollups_s = wait_for_rollups(timeout)  # the worker's follow-up task; the next upload starts on an idle worker
    return {
        "rollups_caught_up_after_done_s": rollups_s,
        "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "replay_shortcut": load.replay_of_id is not None,
        "replay_note": load.replay_note,
        "upload_id": upload.pk,
        "status": upload.status,
        "rows_read": upload.rows_read,
        "inserted": upload.inserted,
        "revised": upload.revised,
        "duplicates": upload.duplicates,
        "rejected": upload.rejected,
        "store_s": round(accepted - t0, 2),
        "accepted_to_queryable_s": round(seconds, 2),
        "rows_per_s": round(upload.rows_read / seconds),
        "including_store_rows_per_s": round(upload.rows_read / (done - t0)),
        "status_first_seen_s": seen,
        "load_started_to_finished_s": round((load.finished_at - load.started_at).total_seconds(), 2),
        "worker_memory": rss.peak(),
        "cpu": cpu.flat(),
    }


def sha256_seconds(path: Path) -> float:
    """One sha256 pass over the file (what the replay shortcut reads before deciding)."""
    import hashlib

    t = time.perf_counter()
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(4 << 20):
            h.update(chunk)
    return round(time.perf_counter() - t, 2)


def upload_measured(path: Path, worker: Proc, args, into: list[dict], label: str) -> dict:
    """One timed upload of ``path`` (``upload_once``), with the row count after it, kept in ``into``."""
    r = upload_once(path, worker, timeout=args.timeout)
    r["market_data_rows_after"] = count_market_data()
    into.append(r)
    log(
        f"{label}: {r['rows_per_s']:,} rows/s, {r['accepted_to_queryable_s']}s, shortcut "
        f"{r['replay_shortcut']}; {json.dumps(r['status_first_seen_s'])}"
    )
    return r


def fig_upload(args, symbols, run_dir: Path, queue: str, out: dict) -> None:
    path = write_bars_csv(symbols, args.rows, args.seed, args.workdir)
    with ExitStack() as stack:
        worker = start_worker(stack, run_dir, queue, "upload")
        runs, reruns, full_reruns, spec_runs = [], [], [], []
        hash_s = sha256_seconds(path)
        for run in range(args.runs):
            if "upload" in args.parts:
                truncate_datasets()
                truncate_bookkeeping()  # no earlier load of this file: an upload of new content
                log(f"upload run {run + 1}/{args.runs}: {args.rows:,} bars ({path.stat().st_size / 1e9:.2f} GB) ...")
                r = upload_measured(path, worker, args, runs, "upload")
                log(f"  worker peak {r['worker_memory']['peak_rss_vmhwm_mb']} MB")
            if {"reupload", "reupload-full"} & set(args.parts) and count_market_data() != args.rows:
                truncate_datasets()  # --only reupload on an empty database: load it first
                truncate_bookkeeping()
                log("reupload: loading the file once first (not timed) ...")
                upload_once(path, worker, timeout=args.timeout)
            if "reupload" in args.parts:
                log(f"re-upload run {run + 1}/{args.runs} (every row a duplicate; replay shortcut allowed) ...")
                upload_measured(path, worker, args, reruns, "re-upload")
            if "reupload-full" in args.parts:
                # the earlier loads can no longer vouch for the file: the loader treats it as new content
                # (hash while streaming, parse, stage, merge) — what a new file of stored rows costs
                sql_rows("UPDATE ingestion_load SET replay_key = '' WHERE replay_key <> ''")
                log(f"re-upload run {run + 1}/{args.runs} (every row a duplicate; forced full re-merge) ...")
                upload_measured(path, worker, args, full_reruns, "re-upload (full)")
            if "upload" in args.parts and not args.skip_spec and (run == 0 or args.spec_runs_all):
                log("spec ingester (asyncpg COPY + INSERT ON CONFLICT) on the same CSV ...")
                spec = spec_ingest_rated(path, DB_URL)
                spec_runs.append(spec)
                log(f"spec: {spec}")
                spec_table_truncate()
    base = {
        "rows": args.rows,
        "csv_bytes": path.stat().st_size,
        "csv": str(path),
        "runs": args.runs,
        "sha256_of_the_csv_s": hash_s,
    }
    if runs:
        rps = [r["rows_per_s"] for r in runs]
        spec_rps = median([s["rows_per_s"] for s in spec_runs]) if spec_runs else None
        out["upload"] = {
            **base,
            "target": "accepted -> all rows queryable >= 300000 rows/s",
            "median_rows_per_s": round(median(rps)),
            "ratio_to_target": target_ratio(median(rps), 300_000),
            "median_accepted_to_queryable_s": round(median([r["accepted_to_queryable_s"] for r in runs]), 2),
            "worker_peak_rss_mb": max(
                r["worker_memory"]["peak_rss_vmhwm_mb"] or r["worker_memory"]["peak_rss_sampled_mb"] for r in runs
            ),
            "spec": spec_runs[0] if len(spec_runs) == 1 else spec_runs,
            "spec_median_rows_per_s": round(spec_rps) if spec_rps else None,
            "ratio_tsm_over_spec": round(median(rps) / spec_rps, 2) if spec_rps else None,
            "per_run": runs,
            "note": "accepted = upload_create returned (file stored, Upload committed, task sent); queryable = "
            "Upload.status observed 'done' (polled every 50 ms). store_s is the copy into TSM_MEDIA_ROOT.",
        }
    if reruns:
        out["reupload"] = rerun_figure(
            base,
            reruns,
            "re-upload (all duplicates) >= 500000 rows/s",
            "replay shortcut (ingestion/replay.py): same bytes as a finished load and no later change overlapping "
            "its spans -> one sha256 pass over the stored file, nothing parsed or staged",
        )
    if full_reruns:
        out["reupload_full"] = rerun_figure(
            base,
            full_reruns,
            "re-upload (all duplicates) >= 500000 rows/s (here: the full path, shortcut refused)",
            "earlier loads' replay keys cleared first, so the file is treated as new content whose rows are all "
            "stored: parse + validate + stage + version merge (what a new file of duplicates costs)",
        )


def rerun_figure(base: dict, reruns: list[dict], target: str, note: str) -> dict:
    rps = [r["rows_per_s"] for r in reruns]
    return {
        **base,
        "target": target,
        "median_rows_per_s": round(median(rps)),
        "ratio_to_target": target_ratio(median(rps), 500_000),
        "median_accepted_to_queryable_s": round(median([r["accepted_to_queryable_s"] for r in reruns]), 2),
        "worker_peak_rss_mb": max(
            r["worker_memory"]["peak_rss_vmhwm_mb"] or r["worker_memory"]["peak_rss_sampled_mb"] for r in reruns
        ),
        "replay_shortcut_taken": [r["replay_shortcut"] for r in reruns],
        "per_run": reruns,
        "note": note,
    }


# --- where an upload's time goes (in process, no worker) ------------------------------------------


PROFILED = {
    "direct pass (parse + validate + sort + COPY into market_data, merge, commit)": ("direct", "load_direct"),
    "  proven-new test per batch": ("direct", "proven_new"),
    "stage (parse + validate + sort + COPY)": ("staging", "stage_batches"),
    "  validate (prepare_batch)": ("batches", "prepare_batch"),
    "  sort by key": ("batches", "sort_by_key"),
    "  COPY writes (client side)": ("copy", "write"),
    "  COPY segment closes (server finishing)": ("copy", "close"),
    "intra-file conflict scan": ("staging", "drop_conflicts"),
    "merge transaction (incl. commit)": ("merge", "merge_transaction"),
    "  stored-overlap probes": ("merge", "_stored_overlaps"),
    "  version merge (LATERAL probe per row)": ("merge", "_merge_versions"),
    "  append INSERT (heap + every index)": ("merge", "_append"),
    "  series registry": ("merge", "register_series"),
    "  change log rows": ("merge", "changes_record"),
    "  cache generation bump": ("merge", "generation_bump"),
    "  change-log watermark (replay)": ("replay", "change_watermark"),
}


def profiled_ingest(path: Path, *, replay_keys: bool = False) -> dict:
    """``ingest_file`` with wall-clock timers around the loader's phases (no worker, no rollups)."""
    # project modules need Django: imported only after django_up() (bench/lib/django_env.py)
    from ingestion import loader, replay
    from ingestion.loader import batches, copying, direct, merge, staging

    # the loader's phases by module (ingestion/loader/): the profile follows its internals and says which it
    # could not find
    modules = {
        "direct": direct,
        "staging": staging,
        "batches": batches,
        "merge": merge,
        "replay": replay,
        "copy": copying.CopySegments,
    }
    spent: dict[str, float] = {}
    originals, missing = [], []
    for label, (mod, name) in PROFILED.items():
        owner = modules[mod]
        fn = getattr(owner, name, None)
        if fn is None:
            missing.append(f"{mod}.{name}")
            continue
        originals.append((owner, name, fn))

        def timed(*a, _fn=fn, _label=label, **k):
            t = time.perf_counter()
            try:
                return _fn(*a, **k)
            finally:
                spent[_label] = spent.get(_label, 0.0) + time.perf_counter() - t

        setattr(owner, name, timed)
    if not replay_keys:
        sql_rows("UPDATE ingestion_load SET replay_key = '' WHERE replay_key <> ''")
    try:
        t = time.perf_counter()
        result = loader.ingest_file(dataset="market_data", path=path)
        total = time.perf_counter() - t
    finally:
        for owner, name, fn in originals:
            setattr(owner, name, fn)
    phases = {k: round(v, 2) for k, v in spent.items()}
    phases["other (hash check, ANALYZE staging, load row, drop staging)"] = round(
        total
        - spent.get("stage (parse + validate + sort + COPY)", 0)
        - spent.get("intra-file conflict scan", 0)
        - spent.get("merge transaction (incl. commit)", 0)
        - spent.get("direct pass (parse + validate + sort + COPY into market_data, merge, commit)", 0),
        2,
    )
    # on the direct path the COPY overlaps parsing (a writer thread sends): "COPY writes" is then the
    # time this thread waited for the queue, and "segment closes" the wait for PostgreSQL to finish
    return {
        "rows": result.rows_read,
        "seconds": round(total, 2),
        "rows_per_s": round(result.rows_read / total),
        "counts": result.counts(),
        "phases_s": phases,
        **({"phases_not_found": missing} if missing else {}),
    }


def fig_profile(args, symbols, out: dict) -> None:
    """New file into an empty table, with and without the market_data time index; then a full re-merge."""
    path = write_bars_csv(symbols, args.profile_rows, args.seed, args.workdir)
    fig: dict = {"rows": args.profile_rows, "csv_bytes": path.stat().st_size}
    for label, drop_time_index in (
        ("new_file", False),
        ("new_file_without_time_index", True),
        ("new_file_again", False),
    ):
        truncate_datasets()
        truncate_bookkeeping()
        if drop_time_index:
            sql_rows("DROP INDEX market_data_time")
        try:
            before = [round(x, 2) for x in os.getloadavg()]
            fig[label] = profiled_ingest(path)
            fig[label]["load_average_before"] = before
        finally:
            if drop_time_index:
                sql_rows('CREATE INDEX market_data_time ON market_data ("time")')
        log(f"profile {label}: {json.dumps(fig[label])}")
    before = [round(x, 2) for x in os.getloadavg()]
    fig["full_remerge_all_duplicates"] = profiled_ingest(path)
    fig["full_remerge_all_duplicates"]["load_average_before"] = before
    log(f"profile full re-merge: {json.dumps(fig['full_remerge_all_duplicates'])}")
    out["profile"] = fig


def fig_floor(args, symbols, out: dict) -> None:
    """PostgreSQL's own ceiling for the append: the rows the loader stores, already staged in key order,
    INSERTed into empty copies of market_data with more and more of its indexes (no Python, no checks,
    no merge logic). The loader's end-to-end rate on the same file is measured in the same run."""
    # project modules need Django: imported only after django_up() (bench/lib/django_env.py)
    from timeseries.datasets import get_dataset

    path = write_bars_csv(symbols, args.profile_rows, args.seed, args.workdir)
    truncate_datasets()
    truncate_bookkeeping()
    fig: dict = {"rows": args.profile_rows, "loader_new_file": profiled_ingest(path)}
    cols = ", ".join([*get_dataset("market_data").column_names, "known_at", "recorded_at"])
    sql_rows("DROP TABLE IF EXISTS tsm_floor_src, tsm_floor")
    sql_rows(f"CREATE UNLOGGED TABLE tsm_floor_src AS SELECT {cols} FROM market_data ORDER BY symbol, time, known_at")
    # market_data's own indexes as the schema has them (market_data_pkey -> "pkey", ...), built on the copy
    indexes = {
        name.removeprefix("market_data_"): ddl.replace(f"INDEX {name} ON public.market_data ", "INDEX ON tsm_floor ")
        for name, ddl in sql_rows(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename = 'market_data'"
        )
    }
    variants = {"heap_only": [], "heap_pkey_version": ["pkey", "version"], "all_market_data_indexes": sorted(indexes)}
    for label, wanted in variants.items():
        runs = []
        for _ in range(args.runs if args.runs > 1 else 3):
            sql_rows("DROP TABLE IF EXISTS tsm_floor")
            sql_rows("CREATE TABLE tsm_floor (LIKE market_data INCLUDING DEFAULTS INCLUDING IDENTITY)")
            for name in wanted:
                sql_rows(indexes[name])
            sql_rows("CHECKPOINT")
            t = time.perf_counter()
            sql_rows(f"INSERT INTO tsm_floor ({cols}) SELECT {cols} FROM tsm_floor_src")
            runs.append(time.perf_counter() - t)
        med = median(runs)
        fig[label] = {
            "indexes": wanted,
            "seconds": [round(r, 2) for r in runs],
            "median_s": round(med, 2),
            "rows_per_s": round(args.profile_rows / med),
        }
        log(f"floor {label}: {fig[label]}")
    fig.update(_copy_floor(args, cols, indexes))
    sql_rows("DROP TABLE IF EXISTS tsm_floor_src, tsm_floor")
    fig["note"] = (
        "rows/s of a bare INSERT ... SELECT of already-staged rows: the most any loader could reach "
        "with these indexes on this machine, before parsing, validation, COPY and the merge; "
        "copy_*: the same rows as one binary COPY stream from the client (no staging table): "
        "into the table with every index, and into a bare table whose indexes are built after "
        "(sort-based CREATE INDEX, the bulk loader's best case)"
    )
    out["floor"] = fig


def _copy_floor(args, cols: str, indexes: dict[str, str]) -> dict:
    """Binary COPY of tsm_floor_src's rows from the client into copies of market_data: with every index
    maintained row by row, and into a bare heap with the indexes built afterwards."""
    import psycopg
    from django.db import connection

    with connection.cursor() as cur:
        buffer = bytearray()
        with cur.cursor.copy(f"COPY (SELECT {cols} FROM tsm_floor_src) TO STDOUT WITH (FORMAT binary)") as copy:
            for chunk in copy:
                buffer += chunk
    params = connection.get_connection_params()
    fig: dict = {}
    for label, build_after in (("copy_all_indexes", False), ("copy_bare_then_build_indexes", True)):
        runs, builds = [], []
        for _ in range(args.runs if args.runs > 1 else 3):
            sql_rows("DROP TABLE IF EXISTS tsm_floor")
            sql_rows("CREATE TABLE tsm_floor (LIKE market_data INCLUDING DEFAULTS INCLUDING IDENTITY)")
            if not build_after:
                for ddl in indexes.values():
                    sql_rows(ddl)
            sql_rows("CHECKPOINT")
            with psycopg.connect(**params, autocommit=True) as conn:
                t = time.perf_counter()
                with conn.cursor().copy(f"COPY tsm_floor ({cols}) FROM STDIN WITH (FORMAT binary)") as copy:
                    view = memoryview(buffer)
                    for i in range(0, len(view), 1 << 20):
                        copy.write(view[i : i + (1 << 20)])
                copied = time.perf_counter()
                if build_after:
                    for ddl in indexes.values():
                        conn.execute(ddl)
                runs.append(time.perf_counter() - t)
                builds.append(time.perf_counter() - copied)
        med = median(runs)
        fig[label] = {
            "indexes": sorted(indexes),
            "seconds": [round(r, 2) for r in runs],
            "median_s": round(med, 2),
            "rows_per_s": round(args.profile_rows / med),
        }
        if build_after:
            fig[label]["index_build_s"] = [round(b, 2) for b in builds]
        log(f"floor {label}: {fig[label]}")
    return fig


# --- 3: memory bound on a CSV larger than 2 GB ----------------------------------------------------


TIME_V = {
    "Maximum resident set size (kbytes)": "max_rss_kb",
    "Elapsed (wall clock) time (h:mm:ss or m:ss)": "wall",
    "User time (seconds)": "user_s",
    "System time (seconds)": "sys_s",
}


def ingest_cli_measured(path: Path, run_dir: Path) -> dict:
    """``/usr/bin/time -v manage.py ingest market_data FILE --format json`` on an empty market_data."""
    truncate_datasets()
    time_log = run_dir / "time-v.txt"
    cmd = [
        "/usr/bin/time",
        "-v",
        "-o",
        str(time_log),
        sys.executable,
        "manage.py",
        "ingest",
        "market_data",
        str(path),
        "--format",
        "json",
    ]
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=bench_env(), capture_output=True, text=True)
    seconds = time.perf_counter() - t
    measured = {}
    for line in time_log.read_text().splitlines():
        name, _, value = line.strip().rpartition(": ")
        if name in TIME_V:
            measured[TIME_V[name]] = value
    try:
        counts = json.loads(proc.stdout.strip().splitlines()[-1])
        counts.pop("errors", None)
    except (IndexError, ValueError):
        counts = {"stdout_tail": proc.stdout[-500:], "stderr_tail": proc.stderr[-2000:]}
    rows = counts.get("rows_read", 0)
    return {
        "file_bytes": path.stat().st_size,
        "exit_code": proc.returncode,
        "seconds": round(seconds, 2),
        "rows_per_s": round(rows / seconds) if proc.returncode == 0 and rows else None,
        "peak_rss_mb": round(int(measured.get("max_rss_kb", 0)) / 1024, 1),
        "user_s": float(measured.get("user_s", 0)),
        "sys_s": float(measured.get("sys_s", 0)),
        **counts,
    }


def fig_memory(args, symbols, run_dir: Path, out: dict) -> None:
    from django.conf import settings

    big_path = bars_csv_path(symbols, args.memory_rows, args.seed, args.workdir)
    created_big = not big_path.exists()  # never delete a file another benchmark wrote
    big = write_bars_csv(symbols, args.memory_rows, args.seed, args.workdir)
    small = write_bars_csv(symbols, args.memory_small_rows, args.seed, args.workdir)
    tiny = run_dir / "tiny.csv"
    demo.write_csv(next(bar_windows(symbols[:10], 1000, args.seed)), tiny)
    try:
        results = {}
        for name, path in (
            ("baseline_1k_rows", tiny),
            (f"csv_{args.memory_small_rows}_rows", small),
            (f"csv_{args.memory_rows}_rows", big),
        ):
            log(f"memory: manage.py ingest {path.name} ({path.stat().st_size / 1e9:.2f} GB) under /usr/bin/time -v ...")
            results[name] = ingest_cli_measured(path, run_dir)
            log(f"memory {name}: {results[name]}")
        parquet = {}
        if not args.skip_parquet:
            for rows in (args.parquet_small_rows, args.parquet_rows):
                pq_path = run_dir / f"bars_{rows}.parquet"
                demo.write_parquet((b for t in bar_windows(symbols, rows, args.seed) for b in t.to_batches()), pq_path)
                log(f"memory: manage.py ingest {pq_path.name} ({pq_path.stat().st_size / 1e6:.0f} MB Parquet) ...")
                parquet[f"parquet_{rows}_rows"] = ingest_cli_measured(pq_path, run_dir)
                log(f"memory parquet {rows}: {parquet[f'parquet_{rows}_rows']}")
                pq_path.unlink()
    finally:
        if created_big and not args.keep_files:
            big.unlink(missing_ok=True)
            log(f"deleted {big}")
    big_r = results[f"csv_{args.memory_rows}_rows"]
    base_r = results["baseline_1k_rows"]
    chunk = settings.TSM_INGEST_BATCH_ROWS
    bytes_per_row = big_r["file_bytes"] / max(1, args.memory_rows)
    block_rows = round(8 * 2**20 / bytes_per_row)
    # one chunk held as raw CSV strings, the typed prepared table, its key-sorted copy, the pgpq COPY buffer
    # and pyarrow's read-ahead block: ~5 copies of a chunk of CSV-sized rows, on top of the process baseline
    implied = base_r["peak_rss_mb"] + 5 * chunk * bytes_per_row / 2**20
    out["memory"] = {
        "target": "memory bounded (independent of file size) on a CSV > 2 GB; bound stated by the design",
        "batch_rows_setting": chunk,
        "csv_bytes_per_row": round(bytes_per_row, 1),
        "csv_block_rows_actual": block_rows,
        "implied_bound_mb": round(implied),
        "implied_bound_formula": "baseline (Django+pyarrow, 1k-row file) + 5 x TSM_INGEST_BATCH_ROWS x CSV bytes/row "
        "(raw strings, typed table, sorted copy, COPY buffer, read-ahead)",
        "peak_rss_mb": big_r["peak_rss_mb"],
        "rows_per_s": big_r["rows_per_s"],
        "within_bound": big_r["peak_rss_mb"] <= implied,
        "growth_small_to_big_mb": round(
            big_r["peak_rss_mb"] - results[f"csv_{args.memory_small_rows}_rows"]["peak_rss_mb"], 1
        ),
        "runs": results,
        "parquet": parquet,
        "note": "each run on a freshly truncated market_data; peak RSS = /usr/bin/time -v 'Maximum resident set size'",
    }


# --- 4: buffered write API --------------------------------------------------------------------------


CONTENT_TYPES = {"json": "application/json", "ndjson": "application/x-ndjson", "csv": "text/csv"}


def api_bodies(args, symbols, run_dir: Path, fmt: str, start: datetime) -> list[list[tuple[int, bytes]]]:
    """Per client, bodies of ``api_batch_rows`` distinct bars (its own symbols, in time order, no known_at):
    a JSON array, NDJSON lines or CSV with a header."""
    import pyarrow as pa

    per_client_rows = args.api_max_rows // args.api_clients
    minutes = -(-per_client_rows * args.api_clients // len(symbols))
    days = -(-minutes // BARS_PER_DAY) + 1
    cal_days = days * 7 // 5 + 3
    n = args.api_batch_rows
    out = []
    for c in range(args.api_clients):
        mine = symbols[c :: args.api_clients]
        batches = demo.market_data_batches(
            symbols=mine, start=start, days=cal_days, seed=args.seed + 100 + c, include_corrections=False
        )
        table = pa.Table.from_batches(list(batches)).sort_by([("time", "ascending"), ("symbol", "ascending")])
        table = table.drop_columns(["known_at"]).slice(0, per_client_rows)
        tmp = run_dir / f"api-client-{c}.{fmt}"
        (demo.write_csv if fmt == "csv" else demo.write_ndjson)(table, tmp)
        lines = tmp.read_bytes().splitlines()
        tmp.unlink()
        header = [lines.pop(0)] if fmt == "csv" else []
        if fmt == "json":
            make = lambda chunk: b"[" + b",".join(chunk) + b"]"  # noqa: E731
        else:
            make = lambda chunk, header=header: b"\n".join(header + chunk) + b"\n"  # noqa: E731
        out.append([(len(lines[i : i + n]), make(lines[i : i + n])) for i in range(0, len(lines), n)])
    return out


class Poller(threading.Thread):
    """Watches sampled batches, oldest first, with one GET at a time: accepted -> queryable latency."""

    def __init__(self, session, base: str, headers: dict):
        super().__init__(daemon=True)
        self.session, self.base, self.headers = session, base, headers
        self.queue: deque = deque()
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.gets = 0
        self.done_event = threading.Event()

    def add(self, batch_id: str, accepted_at: float) -> None:
        with self.lock:
            self.queue.append((accepted_at, batch_id))

    def run(self) -> None:
        while True:
            with self.lock:
                head = min(self.queue) if self.queue else None
            if head is None:
                if self.done_event.is_set():
                    return
                time.sleep(0.02)
                continue
            accepted_at, batch_id = head
            r = self.session.get(f"{self.base}/api/v1/ingest/batches/{batch_id}/", headers=self.headers, timeout=30)
            self.gets += 1
            if r.status_code == 200 and r.json().get("queryable"):
                self.latencies.append(time.perf_counter() - accepted_at)
                with self.lock:
                    self.queue.remove(head)
                continue
            time.sleep(0.02)


def wait_for_server(server: Proc, base: str, headers: dict) -> None:
    import requests

    deadline = time.monotonic() + 60
    while True:
        try:
            r = requests.get(f"{base}/api/v1/ingest/batches/{uuid.uuid4()}/", headers=headers, timeout=5)
            if r.status_code == 404:
                return
            raise RuntimeError(f"server answered {r.status_code}: {r.text[:300]}")
        except (requests.ConnectionError, requests.Timeout):  # not up yet, or its first request still importing
            if time.monotonic() > deadline or not server.alive():
                raise RuntimeError(f"gunicorn did not come up:\n{server.log_tail()}") from None
            time.sleep(0.3)


def api_run(args, bodies, fmt: str, base: str, key: str, server: Proc, worker: Proc) -> dict:
    """4 clients post for api_seconds; then the buffer drains. Latency from polling + IngestBatch timestamps."""
    import requests
    from django.conf import settings
    from django.db.models import Sum

    # project modules need Django: imported only after django_up() (bench/lib/django_env.py)
    from ingestion.models import IngestBatch
    from tsm_site.celery import app as celery_app

    headers = {"Authorization": f"Bearer {key}", "Content-Type": CONTENT_TYPES[fmt]}
    get_headers = {"Authorization": f"Bearer {key}"}
    sql_rows("TRUNCATE ingestion_ingestbatch CASCADE")
    poller = Poller(requests.Session(), base, get_headers)
    poller.start()
    lock = threading.Lock()
    accepted: list[tuple[float, float, int]] = []  # (sent, answered, rows)
    statuses: dict[int, int] = {}
    errors: list[str] = []
    exhausted: list[int] = []
    stop_at = time.perf_counter() + args.api_seconds

    def client(c: int) -> None:
        session = requests.Session()
        for k, (rows, body) in enumerate(bodies[c]):
            while True:
                if time.perf_counter() >= stop_at:
                    return
                sent = time.perf_counter()
                try:
                    r = session.post(f"{base}/api/v1/ingest/market_data/", data=body, headers=headers, timeout=120)
                except requests.RequestException as exc:
                    with lock:
                        errors.append(f"client {c}: {exc}")
                    return
                answered = time.perf_counter()
                with lock:
                    statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                if r.status_code == 202:
                    with lock:
                        accepted.append((sent, answered, rows))
                    if k % args.api_sample_every == c % args.api_sample_every:
                        poller.add(r.json()["batch_id"], answered)
                    break
                if r.status_code == 429:  # backpressure: wait as told, send the same batch again
                    time.sleep(float(r.headers.get("Retry-After", "1")))
                    continue
                with lock:
                    errors.append(f"client {c}: HTTP {r.status_code}: {r.text[:300]}")
                return
        exhausted.append(c)

    beat_stop = threading.Event()

    entries = [settings.CELERY_BEAT_SCHEDULE[name] for name in BEAT_ENTRIES]

    def beat() -> None:
        """Stands in for celery beat's entries that run during a write burst (BEAT_ENTRIES, at their
        configured intervals), routed to the private queue, so the worker does the flush, rollups and
        quality work a deployment's would."""
        started = time.monotonic()
        due = [started + e["schedule"] for e in entries]
        while not beat_stop.wait(0.25):
            now = time.monotonic()
            for i, entry in enumerate(entries):
                if now >= due[i]:
                    celery_app.send_task(entry["task"])
                    due[i] += entry["schedule"]

    if not args.api_no_beat:
        threading.Thread(target=beat, daemon=True).start()
    rss = RssMonitor(worker.pid)
    rss.start()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(args.api_clients)]
    try:
        with CpuMeter(
            {
                "server": lambda: group_pids(server.pid),
                "worker": lambda: group_pids(worker.pid),
                "bench": lambda: [os.getpid()],
                "postgres": postgres_pids,
            }
        ) as cpu:
            window_start = time.perf_counter()
            wall_start = datetime.now(UTC)
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            window_end = time.perf_counter()
        wall_end = datetime.now(UTC)
        log(f"api {fmt}: window closed after {window_end - window_start:.1f}s; statuses {statuses}; draining ...")
        drain_start = time.perf_counter()
        pending = None
        while time.perf_counter() - drain_start < args.timeout:
            pending = IngestBatch.objects.filter(status="pending").aggregate(n=Sum("rows"))["n"] or 0
            if not pending:
                break
            time.sleep(0.1)
        drain_s = time.perf_counter() - drain_start
    finally:
        poller.done_event.set()
        beat_stop.set()
    poller.join(60)
    worker_mem = rss.peak()
    # server-side view of every batch: created_at (just before the 202) -> merged_at (in the merge transaction)
    rows_db = sql_rows(
        "SELECT extract(epoch FROM merged_at - created_at), rows, merged_at <= %s FROM ingestion_ingestbatch",
        [wall_end],
    )
    server_lat = [float(r[0]) for r in rows_db if r[0] is not None]
    merged_in_window = sum(r[1] for r in rows_db if r[2])
    window = window_end - window_start
    acc_rows = sum(a[2] for a in accepted)
    post_s = [a[1] - a[0] for a in accepted]
    thirds = [0, 0, 0]
    for _sent, answered, rows in accepted:
        thirds[min(2, int(3 * (answered - window_start) / window))] += rows
    lat = poller.latencies
    loads = sql_rows(
        "SELECT count(*), sum(rows_read), avg(extract(epoch FROM finished_at - started_at)), "
        "max(extract(epoch FROM finished_at - started_at)) FROM ingestion_load "
        "WHERE source LIKE 'write API:%%' AND started_at >= %s",
        [wall_start],
    )[0]
    return {
        "format": fmt,
        "content_type": CONTENT_TYPES[fmt],
        "body_bytes_avg": round(statistics.mean(len(b) for client_bodies in bodies for _, b in client_bodies)),
        "target": "sustained accepted >= 100000 rows/s; accepted -> queryable p99 < 2 s",
        "window_s": round(window, 2),
        "accepted_batches": len(accepted),
        "accepted_rows": acc_rows,
        "accepted_rows_per_s": round(acc_rows / window),
        "ratio_to_target": target_ratio(acc_rows / window, 100_000),
        "accepted_rows_per_s_by_third": [round(x / (window / 3)) for x in thirds],
        "merged_rows_per_s_in_window": round(merged_in_window / window),
        "drain_after_window_s": round(drain_s, 2),
        "pending_rows_left": pending,
        "end_to_end_rows_per_s": round(acc_rows / (window + drain_s)),
        "http_status_counts": {str(k): v for k, v in sorted(statuses.items())},
        "backpressure_429": statuses.get(429, 0),
        "errors": errors[:10],
        "clients_out_of_bodies": sorted(exhausted),
        "post_latency_ms": {
            "p50": round(1000 * pct(post_s, 50), 1),
            "p99": round(1000 * pct(post_s, 99), 1),
            "max": round(1000 * max(post_s), 1) if post_s else None,
        },
        "accepted_to_queryable_client_s": {
            "sampled_batches": len(lat),
            "p50": round(pct(lat, 50), 3),
            "p99": round(pct(lat, 99), 3),
            "max": round(max(lat), 3) if lat else None,
            "status_gets": poller.gets,
            "target": "p99 < 2 s",
            "ratio_p99_to_target": round(pct(lat, 99) / 2.0, 2) if lat else None,
            "note": f"every {args.api_sample_every}th batch of each client; 202 received -> first GET that says "
            "queryable (one GET in flight, oldest first, 20 ms pause between misses)",
        },
        "created_to_merged_server_s": {
            "batches": len(server_lat),
            "p50": round(pct(server_lat, 50), 3),
            "p99": round(pct(server_lat, 99), 3),
            "max": round(max(server_lat), 3) if server_lat else None,
            "note": "IngestBatch.merged_at - created_at for every batch (both server clocks)",
        },
        "flush_loads": {
            "count": loads[0],
            "rows": int(loads[1] or 0),
            "avg_rows": round(int(loads[1] or 0) / loads[0]) if loads[0] else None,
            "avg_s": round(float(loads[2] or 0), 3),
            "max_s": round(float(loads[3] or 0), 3),
        },
        "worker_memory": worker_mem,
        "cpu": cpu.flat(),
    }


def fig_api(args, symbols, run_dir: Path, queue: str, out: dict) -> None:
    from django.conf import settings
    from django.contrib.auth.models import User

    # project modules need Django: imported only after django_up() (bench/lib/django_env.py)
    from timeseries.tokens import token_create

    sql_rows("DELETE FROM market_data WHERE time >= %s", [API_START])
    user, _ = User.objects.get_or_create(username="bench_ingest")
    _, key = token_create(user=user, scope="write", name="bench_ingestion")
    runs = {}
    with ExitStack() as stack:
        worker = start_worker(stack, run_dir, queue, "api", concurrency=args.api_worker_concurrency)
        server, base = start_server(stack, run_dir, queue, args.api_http_workers)
        wait_for_server(server, base, {"Authorization": f"Bearer {key}"})
        log(f"api: gunicorn up at {base} ({args.api_http_workers} sync workers)")
        for i, fmt in enumerate(args.api_formats):
            start = API_START + timedelta(days=120 * i)  # each format appends after what is stored
            log(f"api {fmt}: generating up to {args.api_max_rows:,} bars as {args.api_batch_rows:,}-row bodies ...")
            t = time.perf_counter()
            bodies = api_bodies(args, symbols, run_dir, fmt, start)
            log(
                f"api {fmt}: {sum(len(b) for b in bodies)} bodies, "
                f"{sum(len(x[1]) for b in bodies for x in b) / 1e9:.2f} GB in {time.perf_counter() - t:.1f}s; "
                f"{args.api_clients} clients for {args.api_seconds}s ..."
            )
            runs[fmt] = api_run(args, bodies, fmt, base, key, server, worker)
            del bodies
            r = runs[fmt]
            log(
                f"api {fmt}: {r['accepted_rows_per_s']:,} rows/s accepted, 429s {r['backpressure_429']}, "
                f"queryable p50/p99 {r['accepted_to_queryable_client_s']['p50']}/"
                f"{r['accepted_to_queryable_client_s']['p99']} s, drain {r['drain_after_window_s']} s"
            )
    first = runs[args.api_formats[0]]
    out["api"] = {
        "clients": args.api_clients,
        "batch_rows": args.api_batch_rows,
        "http_server": f"gunicorn, {args.api_http_workers} sync workers",
        "beat": "none"
        if args.api_no_beat
        else "from the bench process, standing in for celery beat: "
        + ", ".join(
            f"{settings.CELERY_BEAT_SCHEDULE[n]['task']} every {settings.CELERY_BEAT_SCHEDULE[n]['schedule']:g} s"
            for n in BEAT_ENTRIES
        ),
        **first,
        "other_formats": {f: r for f, r in runs.items() if r is not first},
    }


# --- main ---------------------------------------------------------------------------------------


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes (development)")
    p.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts of {','.join(PARTS)}")
    p.add_argument("--workdir", type=Path, default=Path("/tmp"), help="CSV files, media root, logs")
    p.add_argument("--rows", type=int, help="bars in the upload CSV (default 10M; quick 500k)")
    p.add_argument("--profile-rows", type=int, help="bars for the in-process phase profile (default 2M; quick 200k)")
    p.add_argument("--runs", type=int, default=1, help="upload / re-upload repetitions (medians)")
    p.add_argument(
        "--spec-runs-all", action="store_true", help="time the spec ingester in every run, not only the first"
    )
    p.add_argument("--skip-spec", action="store_true")
    p.add_argument("--memory-rows", type=int, help="bars in the > 2 GB CSV (default 16M; quick 1M)")
    p.add_argument("--memory-small-rows", type=int, help="bars in the comparison CSV (default 1M; quick 200k)")
    p.add_argument("--parquet-rows", type=int, help="bars in the larger Parquet file (default 4M; quick 400k)")
    p.add_argument("--parquet-small-rows", type=int, help="(default 1M; quick 100k)")
    p.add_argument("--skip-parquet", action="store_true")
    p.add_argument("--keep-logs", action="store_true", help="keep the worker and server logs (run directory)")
    p.add_argument("--keep-files", action="store_true", help="keep the > 2 GB CSV (deleted by default)")
    p.add_argument("--api-seconds", type=float, help="posting window (default 30; quick 8)")
    p.add_argument("--api-clients", type=int, default=4)
    p.add_argument("--api-batch-rows", type=int, default=5000)
    p.add_argument("--api-max-rows", type=int, help="bars generated for the clients per format (default 6M; quick 1M)")
    p.add_argument(
        "--api-formats", default="json", help="comma-separated body formats: json,ndjson,csv (first = headline)"
    )
    p.add_argument("--api-http-workers", type=int, default=4, help="gunicorn sync workers")
    p.add_argument(
        "--api-worker-concurrency",
        type=int,
        default=2,
        help="Celery worker processes for the flushes and the rollups refresh (make run: 2; 1 = solo pool)",
    )
    p.add_argument("--api-sample-every", type=int, default=2, help="poll every Nth batch of each client")
    p.add_argument(
        "--api-no-beat", action="store_true", help="no celery beat stand-in (flushes, rollups, quality checks)"
    )
    p.add_argument("--symbols", type=int, default=1000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--timeout", type=float, default=1800, help="per upload / drain")
    args = p.parse_args(argv)
    q = args.quick
    defaults = {
        "rows": (10_000_000, 500_000),
        "memory_rows": (16_000_000, 1_000_000),
        "memory_small_rows": (1_000_000, 200_000),
        "parquet_rows": (4_000_000, 400_000),
        "parquet_small_rows": (1_000_000, 100_000),
        "api_seconds": (30.0, 8.0),
        "api_max_rows": (6_000_000, 1_000_000),
        "profile_rows": (2_000_000, 200_000),
    }
    for name, (full, quick) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if q else full)
    args.runs = max(1, args.runs)
    args.api_formats = [f.strip() for f in args.api_formats.split(",") if f.strip()]
    if not args.api_formats or set(args.api_formats) - set(CONTENT_TYPES):
        p.error(f"--api-formats: expected some of {', '.join(CONTENT_TYPES)}")
    args.parts = [x.strip() for x in args.only.split(",") if x.strip()]
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        p.error(f"unknown part(s) {', '.join(sorted(unknown))}: expected {', '.join(PARTS)}")
    args.workdir.mkdir(parents=True, exist_ok=True)
    return args


def settings_environment() -> dict:
    from django.conf import settings

    return {
        "ingest_batch_rows": settings.TSM_INGEST_BATCH_ROWS,
        "flush_rows": settings.TSM_INGEST_FLUSH_ROWS,
        "flush_seconds": settings.TSM_INGEST_FLUSH_SECONDS,
        "buffer_max_rows": settings.TSM_INGEST_BUFFER_MAX_ROWS,
    }


def _terminate(signum, frame):
    raise SystemExit(128 + signum)  # run the finally blocks: stop the worker / server


def main(argv=None) -> None:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    command = command_line()
    queue = f"tsm-bench-ingest-{uuid.uuid4().hex[:8]}"
    run_dir = Path(tempfile.mkdtemp(prefix="tsm_bench_ingest_", dir=args.workdir))
    (run_dir / "media").mkdir()
    out: dict = {"command": command, "started_at": started_at()}
    ok = False
    try:
        setup_django(run_dir, queue)

        symbols = demo.make_symbols(args.symbols)
        env = environment()
        load_average = env.pop("load_average_at_start")
        out.update(
            **env,
            **settings_environment(),
            load_average_at_start=load_average,
            database=DB_NAME,
            queue=queue,
            parts=args.parts,
            figures={},
        )
        truncate_bookkeeping()
        t0 = time.perf_counter()
        if {"upload", "reupload", "reupload-full"} & set(args.parts):
            fig_upload(args, symbols, run_dir, queue, out["figures"])
        if "profile" in args.parts:
            fig_profile(args, symbols, out["figures"])
        if "floor" in args.parts:
            fig_floor(args, symbols, out["figures"])
        if "memory" in args.parts:
            fig_memory(args, symbols, run_dir, out["figures"])
        if "api" in args.parts:
            fig_api(args, symbols, run_dir, queue, out["figures"])
        out["total_s"] = round(time.perf_counter() - t0, 1)
        out["load_average_at_end"] = os.getloadavg()
        ok = True
    finally:
        try:
            import redis

            redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")).delete(
                queue, f"_kombu.binding.{queue}"
            )
        except Exception as exc:  # the figures matter more than the broker's leftovers
            log(f"could not delete the queue keys: {exc}")
        shutil.rmtree(run_dir / "media", ignore_errors=True)
        if ok and not args.keep_logs:
            shutil.rmtree(run_dir, ignore_errors=True)
        elif ok:
            log(f"worker / server logs kept in {run_dir}")
        else:
            log(f"failed: worker / server logs kept in {run_dir}")
    emit(out)


if __name__ == "__main__":
    main()

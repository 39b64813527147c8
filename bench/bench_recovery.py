"""Fault recovery: seconds from a ``kill -9`` during an upload's load to the upload being ``done``.

Issue #14 item 5 ("faults recover in under a minute and say so"). For each tree given with ``--tree``
(the first is the one under test, e.g. this checkout; later ones are baselines such as a detached
checkout of the commit before), real processes run from that tree (cwd = the tree, the interpreter of
this venv) against the tree's own database and a Redis DB of the bench's own:

  1. ``child``: ``kill -9`` of the prefork pool child (concurrency 1) in the middle of an upload's load;
  2. ``main``: ``kill -9`` of the worker's main process mid-load, a new worker started 2 s later;
     beat runs as its own process where the tree has it so (``celery beat``), else as the tree ran it
     (``worker -B``: the beat is embedded in the worker and dies and returns with it);
  3. ``beat``: (trees with ``bin/supervisord-conf`` only) worker and beat under supervisord as
     ``make run`` starts them; ``kill -9`` of beat during an upload: seconds until supervisord has beat
     RUNNING again, and until the upload is done.

The upload is created the way the admin does (``ingestion.uploads.upload_create``, in a child process
of the tree), from a CSV of demo minute bars (``--rows``, shifted in time for every run so each run's
rows are new), and the kill comes once the upload is ``loading`` with some rows done. Each run checks
exactly-once: rows added to ``market_data`` == rows in the file == the upload's ``inserted``.

    .venv/bin/python bench/bench_recovery.py --tree . --tree /work/base --runs 3 --runs-baseline 1 \\
        > bench/results/recovery.json

Prints one JSON object: every run, and per tree and scenario the median, min and max seconds to done
(a run that did not finish within ``--timeout`` seconds is recorded as such and left out of them).
"""

from __future__ import annotations

import argparse
import configparser
import http.client
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import xmlrpc.client
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import psycopg.sql
import redis
from supervisor.xmlrpc import SupervisorTransport

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: bench.lib and the project
from bench.lib.django_env import BENCH_SECRET  # noqa: E402
from bench.lib.output import emit, log  # noqa: E402
from bench.lib.procs import Processes, children, cpu_ticks, descendants  # noqa: E402
from ingestion.processes import pid_gone  # noqa: E402  (a leaf: standard library only)
from timeseries import demo  # noqa: E402  (numpy and pyarrow only, no Django)

PYTHON = str(Path(sys.executable))
VENV_BIN = Path(sys.executable).parent
START = datetime(2024, 3, 4, tzinfo=UTC)  # a Monday
SYMBOLS = 200  # 78,000 bars a weekday
SCENARIOS = ("child", "main", "beat")

CREATE = r"""
import json, os, sys
sys.path.insert(0, os.getcwd())
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tsm_site.settings")
import django
django.setup()
from datetime import timedelta
from django.core.files import File
from ingestion.uploads import upload_create
try:  # trees since tasks and services were split: the caller enqueues
    from ingestion.tasks import upload_enqueue
except ImportError:  # older trees (a baseline): upload_create enqueued the load itself
    upload_enqueue = None
with open(sys.argv[1], "rb") as fh:
    upload = upload_create(dataset="market_data", file=File(fh, name=os.path.basename(sys.argv[1])),
                           bar_interval=timedelta(minutes=1), on_error="reject", user=None)
if upload_enqueue is not None:
    upload_enqueue(upload_id=upload.pk)
print(json.dumps({"id": upload.pk}))
"""


# --- trees -------------------------------------------------------------------------------------------


class Tree:
    def __init__(self, path: str, index: int, database_url: str, redis_url: str, timescaledb: str):
        self.path = Path(path).resolve()
        self.index = index
        parts = urlsplit(database_url)
        name = parts.path.lstrip("/") + ("" if index == 0 else f"_t{index}")  # each tree its own schema
        self.database_url = urlunsplit(parts._replace(path="/" + name))
        self.redis_url = redis_url
        self.commit = subprocess.run(
            ["git", "-C", str(self.path), "rev-parse", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        settings = (self.path / "tsm_site" / "settings.py").read_text()
        self.has_queue_setting = "TSM_CELERY_QUEUE" in settings  # the new tree: a private queue per run
        self.has_supervisord = (self.path / "bin" / "supervisord-conf").is_file()
        self.media = Path(tempfile.mkdtemp(prefix=f"tsm-bench-recovery-media{index}-"))
        self.timescaledb = timescaledb
        self.file_rows = 0

    def env(self, queue: str) -> dict:
        env = {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "CELERY_BROKER_URL": self.redis_url,
            "SECRET_KEY": BENCH_SECRET,
            "DEBUG": "false",
            "TSM_MEDIA_ROOT": str(self.media),
            "TSM_TIMESCALEDB": self.timescaledb,
            "PYTHONUNBUFFERED": "1",
        }
        if self.has_queue_setting:
            env["TSM_CELERY_QUEUE"] = queue
        else:
            env.pop("TSM_CELERY_QUEUE", None)
        return env

    def queue(self) -> str:
        # the baseline has no setting for the default queue: its uploads go to `celery`, on the bench's
        # own Redis DB (flushed before each run) so nothing else consumes them
        return f"tsm-bench-recovery-{uuid.uuid4().hex[:8]}" if self.has_queue_setting else "celery"

    def manage(self, *args: str) -> None:
        subprocess.run(
            [PYTHON, "manage.py", *args],
            cwd=self.path,
            env=self.env("celery"),
            check=True,
            stdout=sys.stderr,
            stderr=sys.stderr,
        )

    def prepare(self) -> None:
        name = urlsplit(self.database_url).path[1:]
        log(f"tree {self.path} ({self.commit[:7]}): database {name}, dropped and created afresh")
        admin = urlunsplit(urlsplit(self.database_url)._replace(path="/postgres"))
        with psycopg.connect(
            admin, autocommit=True
        ) as conn:  # the bench's own database: every row counted is this run's
            conn.execute(
                psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psycopg.sql.Identifier(name))
            )
        self.manage("ensure_database")
        self.manage("migrate", "--verbosity", "0")

    def worker_command(self, queue: str, schedule: Path) -> list[str]:
        command = [
            PYTHON,
            "-m",
            "celery",
            "-A",
            "tsm_site",
            "worker",
            "--pool",
            "prefork",
            "--concurrency",
            "1",
            "-Q",
            queue,
            "--without-mingle",
            "--without-gossip",
            "--without-heartbeat",
            "-l",
            "info",
        ]
        if not self.has_supervisord:  # as the baseline's `make run` ran it: beat inside the worker
            command += ["-B", "--schedule", str(schedule)]
        return command

    def beat_command(self, schedule: Path) -> list[str]:
        return [PYTHON, "-m", "celery", "-A", "tsm_site", "beat", "-l", "info", "--schedule", str(schedule)]


def write_file(folder: Path, rows: int, run_no: int) -> Path:
    """``rows`` demo minute bars without corrections (every row new), starting ``run_no`` * 4 weeks on."""
    days = math.ceil(rows / (390 * SYMBOLS)) * 7 // 5 + 3
    start = START + timedelta(weeks=run_no * (math.ceil(days / 7) + 1))  # no two runs share a bar
    bars = demo.market_data(
        symbols=demo.make_symbols(SYMBOLS), start=start, days=days, include_corrections=False
    ).slice(0, rows)
    if bars.num_rows != rows:
        raise SystemExit(f"--rows {rows}: the demo window gave only {bars.num_rows} rows")
    path = folder / f"bars-{run_no}.csv"
    demo.write_csv(bars, path)
    return path


# --- one run -----------------------------------------------------------------------------------------


UPLOAD_COLUMNS = (
    "status",
    "attempts",
    "rows_read",
    "rows_total",
    "inserted",
    "revised",
    "duplicates",
    "rejected",
    "error",
)


class Run:
    def __init__(self, tree: Tree, scenario: str, run_no: int, rows: int, timeout: float, folder: Path):
        self.tree, self.scenario, self.run_no, self.rows, self.timeout = tree, scenario, run_no, rows, timeout
        self.logs = Path(tempfile.mkdtemp(prefix=f"{scenario}-", dir=folder))
        self.procs = Processes(self.logs)
        self.queue = tree.queue()
        self.env = tree.env(self.queue)
        self.db = psycopg.connect(tree.database_url, autocommit=True)
        self.result: dict = {
            "tree": str(tree.path),
            "scenario": scenario,
            "run": run_no,
            "queue": self.queue,
            "rows_in_file": rows,
        }

    def upload(self, upload_id: int) -> dict:
        if not hasattr(self, "columns"):  # the baseline's upload has no rows_total / worker
            have = {
                r[0]
                for r in self.db.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = 'ingestion_upload'"
                ).fetchall()
            }
            self.columns = [c for c in UPLOAD_COLUMNS if c in have]
        row = self.db.execute(
            f"SELECT {', '.join(self.columns)} FROM ingestion_upload WHERE id = %s", [upload_id]
        ).fetchone()
        return dict(zip(self.columns, row))

    def market_rows(self) -> int:
        return self.db.execute("SELECT count(*) FROM market_data").fetchone()[0]

    def wait(self, predicate, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.1)
        raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")

    def create_upload(self, path: Path) -> int:
        done = subprocess.run(
            [PYTHON, "-c", CREATE, str(path)], cwd=self.tree.path, env=self.env, capture_output=True, text=True
        )
        if done.returncode:
            raise RuntimeError(f"upload_create failed: {done.stderr[-2000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])["id"]

    def mid_load(self, upload_id: int) -> dict:
        """Wait until the upload is loading with some rows done (the moment to kill)."""

        def ready():
            u = self.upload(upload_id)
            if u["status"] in ("done", "failed"):
                raise RuntimeError(f"the upload was {u['status']} before it could be killed mid-load (use more --rows)")
            return u["status"] == "loading" and 0 < u["rows_read"] < self.rows and u

        return self.wait(ready, timeout=180, what="the upload to be loading with some (not all) rows done")

    def after_kill(self, upload_id: int, killed_at: float, attempts: int) -> None:
        """Seconds from the kill until another attempt holds the upload and until it is done."""
        deadline = killed_at + self.timeout
        retaken = None
        while time.monotonic() < deadline:
            self.procs.note()
            u = self.upload(upload_id)
            if retaken is None and u["attempts"] > attempts:
                retaken = time.monotonic() - killed_at
                self.result["retaken_s"] = round(retaken, 2)
            if u["status"] in ("done", "failed"):
                if u["attempts"] == attempts:  # the killed attempt had finished: nothing was recovered
                    raise RuntimeError("the kill came too late: the killed attempt had finished the upload")
                self.result["done_s"] = round(time.monotonic() - killed_at, 2)
                return
            time.sleep(0.1)
        self.result["done_s"] = None
        self.result["note"] = f"did not finish within {self.timeout:.0f} s"

    def finish(self, upload_id: int, rows_before: int) -> None:
        u = self.upload(upload_id)
        stored = self.market_rows() - rows_before
        self.result.update(
            final={k: v for k, v in u.items() if k != "error"},
            error=u["error"][:500],
            rows_stored=stored,
            exactly_once=None
            if u["status"] not in ("done", "failed")
            else (
                u["status"] == "done"
                and stored == self.rows
                and u["inserted"] == self.rows
                and u["revised"] == 0
                and u["duplicates"] == 0
            ),
        )
        self.result["load_states"] = dict(
            self.db.execute(
                "SELECT status, count(*) FROM ingestion_load WHERE source LIKE %s GROUP BY status",
                [f"upload {upload_id}: %"],
            ).fetchall()
        )

    def go(self, file: Path) -> dict:
        tree = self.tree
        if not tree.has_queue_setting:
            redis.Redis.from_url(tree.redis_url).flushdb()  # the bench's own Redis DB: no stale `celery` messages
        rows_before = self.market_rows()
        try:
            getattr(self, f"scenario_{self.scenario}")(file, rows_before)
        except Exception as exc:  # noqa: BLE001 — one failed run is recorded, the others still run
            self.result["note"] = (
                f"{type(exc).__name__}: {exc}" if not isinstance(exc, (TimeoutError, RuntimeError)) else str(exc)
            )
            self.result.setdefault("done_s", None)
        finally:
            self.result["leftover_processes_killed"] = self.procs.close()
            self.db.close()
            if "var" in self.result:
                shutil.rmtree(self.result["var"], ignore_errors=True)
        return self.result

    def start_worker(self, name: str) -> subprocess.Popen:
        return self.procs.start(
            name, self.tree.worker_command(self.queue, self.logs / "celerybeat-schedule"), self.tree.path, self.env
        )

    def start_load(self, file: Path) -> tuple[int, dict]:
        upload_id = self.create_upload(file)
        self.result["upload"] = upload_id
        t0 = time.monotonic()
        at = self.mid_load(upload_id)
        self.result["at_kill"] = {
            "rows_read": at["rows_read"],
            "attempts": at["attempts"],
            "since_upload_created_s": round(time.monotonic() - t0, 2),
        }
        return upload_id, at

    def pool_child(self, worker: subprocess.Popen, upload_id: int) -> int:
        """The pool child running the load: the one the upload names (``Upload.worker``) where the tree
        records it, else the worker's child that has used the most CPU (with ``-B`` the worker has two
        children: the pool process and the embedded beat)."""
        kids = children(worker.pid)
        cols = {
            r[0]
            for r in self.db.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'ingestion_upload'"
            ).fetchall()
        }
        if "worker" in cols:
            named = self.db.execute("SELECT worker FROM ingestion_upload WHERE id = %s", [upload_id]).fetchone()[0]
            pid = int(named.rpartition(":")[2])
            if pid not in kids:
                raise RuntimeError(f"the upload names {named}, not a child of the worker {worker.pid} ({kids})")
            self.result["child_by"] = "Upload.worker"
            return pid
        self.result["child_by"] = "most CPU among the worker's children"
        self.result["worker_children"] = {pid: cpu_ticks(pid) for pid in kids}
        return max(kids, key=cpu_ticks)

    # --- scenarios ---------------------------------------------------------------------------------

    def scenario_child(self, file: Path, rows_before: int) -> None:
        worker = self.start_worker("worker")
        self.result["beat"] = "none (a separate beat is not needed)" if self.tree.has_supervisord else "worker -B"
        upload_id, at = self.start_load(file)
        child = self.pool_child(worker, upload_id)
        os.kill(child, signal.SIGKILL)
        killed_at = time.monotonic()
        self.after_kill(upload_id, killed_at, at["attempts"])
        self.result["worker_survived"] = worker.poll() is None
        self.finish(upload_id, rows_before)

    def scenario_main(self, file: Path, rows_before: int) -> None:
        if self.tree.has_supervisord:
            self.procs.start(
                "beat", self.tree.beat_command(self.logs / "celerybeat-schedule"), self.tree.path, self.env
            )
            self.result["beat"] = "celery beat, its own process"
        else:
            self.result["beat"] = "worker -B (embedded: killed with the worker, back with the new one)"
        worker = self.start_worker("worker")
        upload_id, at = self.start_load(file)
        kids = {pid: cpu_ticks(pid) for pid in descendants(worker.pid)}
        loader = max(kids, key=kids.get)  # the pool child (with -B the embedded beat is the other child)
        self.procs.note()
        worker.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        worker.wait(10)
        time.sleep(max(0.0, killed_at + 2.0 - time.monotonic()))
        # what outlived the worker's main process, 2 s on; left running (as it would be) until the run ends
        self.result["worker_children_at_kill"] = {
            str(pid): {
                "cpu_ticks": ticks,
                "role": "pool child (the load)" if pid == loader else "other (embedded beat)",
                "alive_2s_after_kill": not pid_gone(pid),
            }
            for pid, ticks in kids.items()
        }
        self.start_worker("worker2")
        self.result["new_worker_started_s"] = round(time.monotonic() - killed_at, 2)
        self.after_kill(upload_id, killed_at, at["attempts"])
        self.finish(upload_id, rows_before)

    def scenario_beat(self, file: Path, rows_before: int) -> None:
        var = Path(tempfile.mkdtemp(prefix="tsm-br-", dir="/tmp"))  # a unix socket path is short
        self.result["var"] = str(var)
        conf = var / "supervisord.conf"
        subprocess.run(
            [
                PYTHON,
                str(self.tree.path / "bin" / "supervisord-conf"),
                "--var",
                str(var),
                "--programs",
                "worker,beat",
                "--queue",
                self.queue,
                "--concurrency",
                "1",
                "--python",
                PYTHON,
                "--out",
                str(conf),
            ],
            cwd=self.tree.path,
            env=self.env,
            check=True,
            timeout=30,
        )
        self.procs.start(
            "supervisord", [str(VENV_BIN / "supervisord"), "-n", "-c", str(conf)], self.tree.path, self.env
        )
        ctl = configparser.RawConfigParser()
        ctl.read(conf)  # the control socket's login, when the configuration sets one
        section = dict(ctl["supervisorctl"]) if ctl.has_section("supervisorctl") else {}

        def running(name: str) -> int:
            proxy = xmlrpc.client.ServerProxy(
                "http://127.0.0.1",
                transport=SupervisorTransport(
                    section.get("username"), section.get("password"), f"unix://{var / 'supervisor.sock'}"
                ),
            )
            try:
                info = proxy.supervisor.getProcessInfo(name)
            except (OSError, http.client.HTTPException, xmlrpc.client.Error):  # not up yet
                return 0
            return info["pid"] if info["statename"] == "RUNNING" else 0

        old_beat = self.wait(lambda: running("beat"), timeout=60, what="beat to run under supervisord")
        self.wait(lambda: running("worker"), timeout=60, what="the worker to run under supervisord")
        upload_id, at = self.start_load(file)
        os.kill(old_beat, signal.SIGKILL)
        killed_at = time.monotonic()
        beat_back = None
        deadline = killed_at + self.timeout
        while time.monotonic() < deadline:
            self.procs.note()
            if beat_back is None and (pid := running("beat")) and pid != old_beat:
                beat_back = time.monotonic() - killed_at
                self.result["beat_running_again_s"] = round(beat_back, 2)
            u = self.upload(upload_id)
            if "done_s" not in self.result and u["status"] in ("done", "failed"):
                self.result["done_s"] = round(time.monotonic() - killed_at, 2)
            if beat_back is not None and "done_s" in self.result:
                break
            time.sleep(0.1)
        else:
            self.result.setdefault("done_s", None)
            self.result["note"] = f"did not finish within {self.timeout:.0f} s"
        self.result["supervisord_log"] = [
            line for line in (var / "log" / "supervisord.log").read_text().splitlines() if "beat" in line
        ][-4:]
        self.finish(upload_id, rows_before)
        self.result["beat"] = "celery beat under supervisord (bin/supervisord-conf --programs worker,beat)"


# --- main --------------------------------------------------------------------------------------------


def summary(runs: list[dict], key: str) -> dict:
    values = [r[key] for r in runs if r.get(key) is not None]
    out = {"runs": len(runs), "finished": len(values)}
    if values:
        out.update(median=round(statistics.median(values), 2), min=min(values), max=max(values))
    if len(values) < len(runs):
        out["unfinished"] = [r.get("note", "") for r in runs if r.get(key) is None]
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tree", action="append", default=[], help="a checkout (repeatable; the first is the one under test)"
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/tsm_bench_recovery"),
        help="the first tree's database; later trees get the same name with _t1, _t2...",
    )
    parser.add_argument(
        "--redis-url", default="redis://127.0.0.1:6379/10", help="a Redis DB of the bench's own (flushed)"
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="demo bars in the uploaded file")
    parser.add_argument("--runs", type=int, default=3, help="runs per scenario of the first tree")
    parser.add_argument("--runs-baseline", type=int, default=1, help="runs per scenario of every later tree")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated subset of child,main,beat")
    parser.add_argument(
        "--timeout",
        type=float,
        default=420.0,
        help="seconds after the kill to give up on a run (420: the baseline's 300 s stale path can finish)",
    )
    parser.add_argument("--timescaledb", default="off", choices=("auto", "on", "off"))
    parser.add_argument(
        "--keep-logs", action="store_true", help="keep the processes' logs (their folder is in the JSON)"
    )
    args = parser.parse_args(argv)
    trees = [
        Tree(path, i, args.database_url, args.redis_url, args.timescaledb) for i, path in enumerate(args.tree or ["."])
    ]
    scenarios = [s for s in args.scenarios.split(",") if s]
    if unknown := [s for s in scenarios if s not in SCENARIOS]:
        parser.error(f"--scenarios: unknown {', '.join(unknown)}; expected some of {', '.join(SCENARIOS)}")

    folder = Path(tempfile.mkdtemp(prefix="tsm-bench-recovery-"))
    out = {
        "bench": "recovery",
        "argv": argv,
        "rows_in_file": args.rows,
        "timeout_s": args.timeout,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "cpus": os.cpu_count(),
        "trees": [],
    }
    run_no = 0
    try:
        for tree in trees:
            tree.prepare()
            entry = {
                "tree": str(tree.path),
                "commit": tree.commit,
                "database": urlsplit(tree.database_url).path[1:],
                "queue": "private per run (TSM_CELERY_QUEUE)"
                if tree.has_queue_setting
                else f"celery (the default; no setting for it) on {tree.redis_url}, flushed before each run",
                "runs": {},
                "summary": {},
            }
            runs = args.runs if tree.index == 0 else args.runs_baseline
            for scenario in scenarios:
                if scenario == "beat" and not tree.has_supervisord:
                    entry["runs"][scenario] = []
                    entry["summary"][scenario] = {
                        "not_run": "this tree has no bin/supervisord-conf: beat ran inside the worker (`worker -B`, "
                        "its Makefile), so there is no separate beat process to kill and nothing that "
                        "restarts one; killing the worker's main process (scenario main) is its beat fault"
                    }
                    continue
                results = []
                for i in range(runs):
                    file = write_file(folder, args.rows, run_no)
                    log(f"{tree.path.name} {scenario} run {i + 1}/{runs}: file {file.name}")
                    result = Run(tree, scenario, run_no, args.rows, args.timeout, folder).go(file)
                    file.unlink()
                    run_no += 1
                    log(
                        f"  done_s={result.get('done_s')} retaken_s={result.get('retaken_s')} "
                        f"beat_back={result.get('beat_running_again_s')} exactly_once={result.get('exactly_once')} "
                        f"{result.get('note', '')}"
                    )
                    results.append(result)
                entry["runs"][scenario] = results
                entry["summary"][scenario] = {"kill_to_done_s": summary(results, "done_s")}
                if scenario in ("child", "main"):
                    entry["summary"][scenario]["kill_to_taken_over_s"] = summary(results, "retaken_s")
                if scenario == "beat":
                    entry["summary"][scenario]["kill_to_beat_running_s"] = summary(results, "beat_running_again_s")
                entry["summary"][scenario]["exactly_once"] = [r.get("exactly_once") for r in results]
            out["trees"].append(entry)
            shutil.rmtree(tree.media, ignore_errors=True)
    finally:
        if not args.keep_logs:
            shutil.rmtree(folder, ignore_errors=True)
        for tree in trees:
            shutil.rmtree(tree.media, ignore_errors=True)
    out["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    emit(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Real Celery worker processes for the ingestion tests, and the "kill it mid-merge" choreography."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
from django.db import connection

from ingestion.processes import pid_gone  # noqa: F401  (the fault tests import it from here)
from tests.helpers import waiting_on_a_lock

ROOT = Path(__file__).resolve().parents[2]


def worker_env(**extra: str) -> dict[str, str]:
    """The environment of a worker that uses the test database."""
    db = connection.settings_dict
    return {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "TSM_TIMESCALEDB": "on" if "timescale" in db["ENGINE"] else "off",
        **extra,
    }


def private_queue() -> str:
    return f"tsm-test-{uuid.uuid4().hex[:8]}"


def start_worker(
    env: dict, queue: str, *, pool: str = "solo", concurrency: int = 1, log: Path | None = None
) -> subprocess.Popen:
    """A worker on ``queue``; ``pool="prefork"`` when the test is about pool children (a killed child is
    replaced by the worker, and dies with it: billiard's pdeathsig). ``log``: where its output goes."""
    return _spawn(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tsm_site",
            "worker",
            f"--pool={pool}",
            f"--concurrency={concurrency}",
            "-Q",
            queue,
            "--without-mingle",
            "--without-gossip",
            "--without-heartbeat",
            "-l",
            "warning",
        ],
        env,
        log,
    )


def start_beat(env: dict, schedule: Path, log: Path | None = None) -> subprocess.Popen:
    """Celery beat as its own process (env's TSM_CELERY_QUEUE is where it sends the schedule)."""
    return _spawn(
        [sys.executable, "-m", "celery", "-A", "tsm_site", "beat", "-l", "warning", "--schedule", str(schedule)],
        env,
        log,
    )


def _spawn(command: list[str], env: dict, log: Path | None) -> subprocess.Popen:
    if log is None:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(log, "ab") as out:  # the child has its own copy of the descriptor
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


@contextlib.contextmanager
def registry_locked():
    """Hold the series registry so a load blocks inside its transaction (after its rows went in) until
    the block is left; yields a function waiting until some load blocks on it."""
    db = connection.settings_dict
    blocker = psycopg.connect(host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=db["NAME"])
    blocker.execute("LOCK TABLE timeseries_series IN EXCLUSIVE MODE")
    try:
        yield lambda: wait_for(lambda: waiting_on_a_lock(db["NAME"]), what="the load to block mid-transaction")
    finally:
        blocker.rollback()
        blocker.close()


def stop_worker(worker: subprocess.Popen) -> None:
    worker.terminate()
    try:
        worker.wait(10)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait(10)


def wait_for(predicate, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@contextlib.contextmanager
def merge_blocked_then_killed(worker: subprocess.Popen):
    """Hold the series registry so a merge blocks after inserting, inside its transaction; on leaving,
    SIGKILL the worker (whatever happened inside) and wait until its backend has rolled back."""
    db = connection.settings_dict
    blocker = psycopg.connect(host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=db["NAME"])
    blocker.execute("LOCK TABLE timeseries_series IN EXCLUSIVE MODE")
    try:
        yield lambda: wait_for(lambda: waiting_on_a_lock(db["NAME"]), what="the merge to block mid-transaction")
    finally:
        worker.send_signal(signal.SIGKILL)  # never leave a worker behind
        worker.wait(10)
        blocker.rollback()
        blocker.close()
    wait_for(lambda: not _other_sessions_on("market_data"), timeout=30, what="the killed worker's backend to end")


def _other_sessions_on(table: str) -> bool:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid() AND query ILIKE %s",
            [connection.settings_dict["NAME"], f"%{table}%"],
        )
        return cur.fetchone()[0] > 0

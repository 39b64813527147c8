#!/usr/bin/env python
"""Read API benchmark: /api/v1/ over real HTTP against a real server process (gunicorn).

Prints ONE JSON object on stdout (progress on stderr). Reuses the bench database ``tsm_bench`` loaded by
bench_foundation.py (50M minute bars, 1,000 symbols); it never loads, truncates or writes bars.

    flock /tmp/tsm-bench.lock .venv/bin/python bench/bench_api.py --quick
    flock /tmp/tsm-bench.lock .venv/bin/python bench/bench_api.py > bench/results/api-full.json 2> /tmp/api-full.log

Figures are reported, never asserted; each carries its target from the issue. See bench/README.md.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import os
import random
import shlex
import signal
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, quote, urlencode, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: bench.lib and the project
from bench.lib.cpu import CpuMeter  # noqa: E402
from bench.lib.data import market_data_info  # noqa: E402
from bench.lib.data import random_times as _random_times
from bench.lib.django_env import bench_env, django_up, local_url, pg_environment, sql_rows  # noqa: E402
from bench.lib.output import command_line, emit, log, started_at  # noqa: E402
from bench.lib.procs import Proc, children, free_port, machine_busy_pct, pids_named  # noqa: E402
from bench.lib.stats import against  # noqa: E402
from bench.lib.stats import stats_ms as _stats_ms
from timeseries.formats import iso as tsm_iso  # noqa: E402  (standard library only, no Django)

DB_NAME = "tsm_bench"
DB_URL = local_url(DB_NAME)
HOST = "127.0.0.1"
PARTS = ("state", "state_cached", "reconstruct", "throughput", "pagination", "asof_join")
PARQUET = "application/vnd.apache.parquet"
BENCH_USER = "bench_api"
# a cache namespace of this run only: the server starts with an empty cache, so a request for a T never
# asked before is a miss by construction (whatever the key is made of), and the keys it stores can be counted
CACHE_PREFIX = f"tsm-bench-api-{os.getpid()}-{int(time.time())}"


# the environment of the bench process (for django.setup()) and of the server: same database, same cache
SERVER_ENV = {
    "DEBUG": "false",
    "ALLOWED_HOSTS": HOST,
    "TSM_API_RATE": "none",  # no throttling: the bench is one token hammering the API
    "TSM_CACHE_PREFIX": CACHE_PREFIX,
    "LOG_LEVEL": "WARNING",
}


def stats_ms(samples_s: list[float]) -> dict:
    return _stats_ms(samples_s, mean=True)


def cpu_meter(server: Server) -> CpuMeter:
    """Where the machine's CPU went during a part: the server's workers, their PostgreSQL backends,
    Redis, this process (the client), and everything else (other work on the shared machine)."""

    def pg_backends() -> list[int]:
        # the workers' persistent connections (conn_max_age) to tsm_bench, not this process's own
        return [
            r[0]
            for r in sql_rows(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND backend_type = "
                "'client backend' AND pid <> pg_backend_pid()",
                [DB_NAME],
            )
        ]

    return CpuMeter(
        {
            "server_workers": server.worker_pids,
            "postgres_backends": pg_backends,
            "redis": lambda: pids_named("redis-server"),
        },
        interval=None,
    )


# --- HTTP client ------------------------------------------------------------------------------------


class Client:
    """A keep-alive HTTP/1.1 client (http.client: the least client CPU per request in pure Python).

    A server that closes the connection (gunicorn sync workers answer ``Connection: close``) makes
    http.client reconnect on the next request; the connect is then part of that request's latency, as
    it would be for any client of such a server.
    """

    def __init__(self, port: int, token: str, timeout: float = 900.0):
        self.port, self.timeout = port, timeout
        self.headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        self.conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
        self.retries = 0

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        """(status, headers, body bytes, seconds from sending to the last byte of the body)."""
        h = {**self.headers, **(headers or {})}
        for attempt in (1, 2):
            t0 = time.perf_counter()
            try:
                self.conn.request(method, path, body=body, headers=h)
                resp = self.conn.getresponse()
                data = resp.read()
                return resp.status, resp.headers, data, time.perf_counter() - t0
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # an idle keep-alive connection the server had closed: one retry on a fresh one
                self.conn.close()
                if attempt == 2:
                    raise
                self.retries += 1

    def get(self, path: str, **kw):
        return self.request("GET", path, **kw)

    def close(self):
        self.conn.close()


class Errors:
    """Non-2xx answers: counted, the first few kept (status + start of the body)."""

    def __init__(self):
        self.count, self.samples, self.lock = 0, [], threading.Lock()

    def add(self, what: str, status: int, body: bytes):
        with self.lock:
            self.count += 1
            if len(self.samples) < 5:
                self.samples.append(
                    {"request": what[:200], "status": status, "body": body[:300].decode("utf-8", "replace")}
                )

    def report(self) -> dict:
        return {"errors": self.count, **({"error_samples": self.samples} if self.samples else {})}


# --- the server -------------------------------------------------------------------------------------


class Server:
    """gunicorn on tsm_site.wsgi, in its own process group; stopped by ``stop()`` (also on errors)."""

    def __init__(self, args):
        self.port = args.port or free_port(HOST)
        self.cmd = [
            str(Path(sys.executable).parent / "gunicorn"),
            "tsm_site.wsgi:application",
            "--bind",
            f"{HOST}:{self.port}",
            "--workers",
            str(args.workers),
            "--worker-class",
            args.worker_class,
            *(["--threads", str(args.threads)] if args.worker_class == "gthread" else []),
            "--timeout",
            "900",
            "--graceful-timeout",
            "5",
            "--keep-alive",
            "5",
            "--log-level",
            "warning",
            "--error-logfile",
            "-",
        ]
        self.log_path = Path(tempfile.mkstemp(prefix="tsm-bench-api-server-", suffix=".log")[1])
        self.proc: Proc | None = None

    @property
    def command(self) -> str:
        env = (
            f"DATABASE_URL={DB_URL} DEBUG=false SECRET_KEY=… ALLOWED_HOSTS={HOST}"
            f" TSM_API_RATE=none TSM_CACHE_PREFIX={CACHE_PREFIX}"
        )
        return env + " " + " ".join(shlex.quote(c) for c in self.cmd)

    def start(self, token: str, probe: str) -> None:
        log(f"starting {self.command}")
        self.proc = Proc("gunicorn", self.cmd, bench_env(DB_URL, **SERVER_ENV), self.log_path)
        deadline = time.monotonic() + 90
        while True:
            if not self.proc.alive():
                raise RuntimeError(f"the server exited with {self.proc.popen.returncode}:\n{self.log_tail()}")
            try:
                client = Client(self.port, token, timeout=30)
                status, _, body, _ = client.get(probe)
                client.close()
                if status == 200:
                    break
                raise RuntimeError(f"the server answered {status} to {probe}: {body[:300]!r}")
            except (ConnectionRefusedError, http.client.RemoteDisconnected, ConnectionResetError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the server did not answer within 90 s:\n{self.log_tail()}") from None
                time.sleep(0.2)
        log(f"server up on port {self.port} (pid {self.proc.pid}), workers {self.worker_pids()}")

    def worker_pids(self) -> list[int]:
        return children(self.proc.pid) if self.proc is not None else []

    def log_tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def log_summary(self) -> dict:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return {}
        lines = text.splitlines()
        exceptions = [
            ln
            for ln in lines
            if ln
            and not ln.startswith((" ", "\t", "Traceback"))
            and ("Error" in ln.split(":")[0] or "Exception" in ln.split(":")[0])
        ]
        out = {"log_lines": len(lines), "tracebacks": text.count("Traceback (most recent call last)")}
        if exceptions:
            out["exceptions"] = sorted(set(exceptions))[:5]
        if out["tracebacks"]:
            out["log_tail"] = lines[-15:]
        return out

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(grace=20.0)  # our own process group: gunicorn and its workers


# --- data, token, cache keys ------------------------------------------------------------------------


def data_info() -> dict:
    return market_data_info(exact_count=False)  # the planner's row estimate: a 50M-row count takes seconds


def make_token() -> tuple[object, str]:
    from django.contrib.auth import get_user_model

    # project modules need Django: imported only after django_up() (bench/lib/django_env.py)
    from timeseries.tokens import token_create

    user, _ = get_user_model().objects.get_or_create(username=BENCH_USER, defaults={"is_active": True})
    return token_create(user=user, scope="read", name=f"bench_api {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}")


def iso(value: datetime) -> str:
    return tsm_iso(value)


def random_times(rng: random.Random, lo: datetime, hi: datetime, n: int) -> list[datetime]:
    """n distinct instants, uniform from the first bar to the close of the last, microsecond precision."""
    return _random_times(rng, lo, hi, n, distinct=True)


def cached_keys() -> int:
    """How many keys this run's server has stored in Redis (its own KEY_PREFIX)."""
    from django.core.cache import cache

    client = cache._cache.get_client(write=False)
    return sum(1 for _ in client.scan_iter(match=f"{CACHE_PREFIX}:*", count=1000))


def drop_cached_keys() -> int:
    from django.core.cache import cache

    client = cache._cache.get_client(write=True)
    keys = list(client.scan_iter(match=f"{CACHE_PREFIX}:*", count=1000))
    for k in range(0, len(keys), 1000):
        client.delete(*keys[k : k + 1000])
    return len(keys)


def url(path: str, params: dict) -> str:
    return f"{path}?{urlencode(params, quote_via=quote, safe=':,')}"


# --- figures ----------------------------------------------------------------------------------------


def uncached_latencies(client: Client, paths: list[str], what: str, check) -> dict:
    """Each path asks for a T (or (symbol, T)) never asked before in this run's empty cache namespace: a
    miss by construction; the number of keys stored meanwhile shows the server computed and cached each."""
    errors, samples = Errors(), []
    keys_before = cached_keys()
    for i, path in enumerate(paths):
        status, _, body, seconds = client.get(path)
        if status != 200:
            errors.add(path, status, body)
            continue
        check(body)
        samples.append(seconds)
        if (i + 1) % max(1, len(paths) // 5) == 0:
            log(f"{what}: {i + 1}/{len(paths)} ({stats_ms(samples).get('p50_ms')} ms p50 so far)")
    stored = cached_keys() - keys_before
    return {
        **stats_ms(samples),
        **errors.report(),
        "cache": {
            "state": "miss: every request asks for a T never asked before, in a cache namespace of "
            "this run only (TSM_CACHE_PREFIX)",
            "requests": len(paths),
            "keys_stored_meanwhile": stored,
        },
    }


def fig_state(args, client: Client, info: dict) -> dict:
    rng = random.Random(args.seed)
    n, warmup = (100, 5) if args.quick else (1000, 10)
    times = random_times(rng, info["time_min"], info["time_max"], n + warmup)
    requests = [url("/api/v1/state/", {"at": iso(t)}) for t in times]
    rows = []

    def check(body):
        rows.append(len(json.loads(body)["results"]))

    log(f"state uncached: {warmup} warm-up + {n} requests for all symbols at distinct random T ...")
    uncached_latencies(client, requests[:warmup], "state warm-up", check)
    out = uncached_latencies(client, requests[warmup:], "state uncached", check)
    return {
        **out,
        "rows_per_answer": sorted(set(rows[warmup:])),
        "warmup": warmup,
        "request": "GET /api/v1/state/?at=T (all symbols), JSON",
        "target": "p99 < 60 ms",
        **against(out.get("p99_ms"), 60, at_most=True),
    }


def fig_state_cached(args, client: Client, info: dict) -> dict:
    rng = random.Random(args.seed + 10)
    n, distinct = (200, 5) if args.quick else (2000, 5)
    paths = [
        url("/api/v1/state/", {"at": iso(t)}) for t in random_times(rng, info["time_min"], info["time_max"], distinct)
    ]
    log(f"state cached: {distinct} distinct T, each warmed, then {n} requests cycling over them ...")
    for path in paths * 3:  # warm-up: the first request of each T stores it, the next ones hit
        client.get(path)
    keys_before = cached_keys()
    errors, samples = Errors(), []
    for i in range(n):
        path = paths[i % distinct]
        status, _, body, seconds = client.get(path)
        if status != 200:
            errors.add(path, status, body)
            continue
        samples.append(seconds)
    stored = cached_keys() - keys_before
    out = stats_ms(samples)
    return {
        **out,
        **errors.report(),
        "distinct_T": distinct,
        "response_bytes": len(body),
        "cache": {
            "state": "hit: each T requested 3 times before the timed requests",
            "keys_stored_during_timed_requests": stored,
        },
        "request": "GET /api/v1/state/?at=T (all symbols), JSON",
        "target": "p99 < 5 ms",
        **against(out.get("p99_ms"), 5, at_most=True),
    }


def fig_reconstruct(args, client: Client, info: dict) -> dict:
    rng = random.Random(args.seed + 1)
    n, warmup = (100, 5) if args.quick else (1000, 10)
    times = random_times(rng, info["time_min"], info["time_max"], n + warmup)
    requests = [url(f"/api/v1/reconstruct/{quote(rng.choice(info['symbol_list']))}/", {"at": iso(t)}) for t in times]
    with_bar = []

    def check(body):
        with_bar.append(json.loads(body)["results"]["market"] is not None)

    log(f"reconstruct uncached: {warmup} warm-up + {n} requests at distinct random (symbol, T) ...")
    uncached_latencies(client, requests[:warmup], "reconstruct warm-up", check)
    out = uncached_latencies(client, requests[warmup:], "reconstruct uncached", check)
    return {
        **out,
        "answers_with_a_bar": sum(with_bar[warmup:]),
        "warmup": warmup,
        "request": "GET /api/v1/reconstruct/<symbol>/?at=T (bars=200 default), JSON",
        "note": "only market data is loaded: the news/insider/sentiment/government parts query empty tables",
        "target": "p99 < 30 ms",
        **against(out.get("p99_ms"), 30, at_most=True),
    }


def fig_throughput(args, server: Server, token: str, info: dict) -> dict:
    rng = random.Random(args.seed + 3)
    clients, duration = args.clients, (3.0 if args.quick else args.duration)
    pairs = [
        (rng.choice(info["symbol_list"]), t) for t in random_times(rng, info["time_min"], info["time_max"], clients)
    ]
    paths = [url("/api/v1/state/", {"symbols": s, "at": iso(t)}) for s, t in pairs]
    warm = Client(server.port, token)
    for path in paths * 2:
        warm.get(path)
    for _ in range(20 * len(server.worker_pids())):  # every worker has served requests before the clock starts
        warm.get(paths[0])
    warm.close()
    keys_before = cached_keys()
    log(f"throughput: {clients} clients x {duration:.0f} s on cached /state/?symbols=ONE&at=T ...")
    errors, lock = Errors(), threading.Lock()
    latencies: list[float] = []
    counts = [0] * clients
    start = threading.Barrier(clients + 1)
    stop_at = [0.0]
    retries = [0] * clients

    def run(i: int):
        c = Client(server.port, token, timeout=60)
        mine = []
        start.wait()
        while time.perf_counter() < stop_at[0]:
            status, _, body, seconds = c.get(paths[i])
            if status != 200:
                errors.add(paths[i], status, body)
                continue
            mine.append(seconds)
        retries[i] = c.retries
        c.close()
        counts[i] = len(mine)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(clients)]
    for th in threads:
        th.start()
    meter = cpu_meter(server).start()
    t0 = time.perf_counter()
    stop_at[0] = t0 + duration
    start.wait()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0
    done = sum(counts)
    cpu = meter.stop().split(requests=done)
    rps = done / wall
    server_ms = sum(v for k, v in cpu.get("cpu_ms_per_request", {}).items() if k != "client")
    stored = cached_keys() - keys_before
    return {
        "clients": clients,
        "seconds": round(wall, 2),
        "requests": done,
        "requests_per_s": round(rps, 1),
        "per_client_requests": counts,
        "reconnects_after_server_close": sum(retries),
        **errors.report(),
        "latency_under_load": stats_ms(latencies),
        "cpu": {
            **cpu,
            "note": "client = this process (the client threads); other = the rest of the machine "
            "(other sessions' work): the server side (workers + PostgreSQL + Redis) needs "
            f"{server_ms:.2f} ms of CPU per request, i.e. at most {2000 / server_ms if server_ms else 0:.0f} "
            "req/s on 2 otherwise idle cores with a free client",
        },
        "cache": {
            "state": "hit: each (symbol, T) requested before the clock starts",
            "keys_stored_during_timed_requests": stored,
        },
        "request": "GET /api/v1/state/?symbols=S&at=T, JSON; one (S, T) per client, keep-alive connections",
        "target": ">= 1000 requests/s",
        **against(rps, 1000, at_most=False),
    }


def page_cursor(row: tuple) -> str:
    """The cursor the API puts in ``next`` after ``row`` (symbol, time, known_at, recorded_at) in the
    default ordering of /market-data/ ("symbol": the version index), see KeysetPagination._encode."""
    values = [row[0], *[iso(v) for v in row[1:]]]
    body = json.dumps({"o": "symbol", "p": values, "r": 0}, separators=(",", ":"))
    return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")


def fig_pagination(args, client: Client, info: dict) -> dict:
    page, size = args.page, args.page_size
    samples_n = 10 if args.quick else 50
    offset = (page - 1) * size - 1  # the last row of page - 1: the next cursor points after it
    log(f"pagination: the row at offset {offset:,} of the version index (for the page-{page:,} cursor) ...")
    row = sql_rows(
        "SELECT symbol, time, known_at, recorded_at FROM market_data "
        "ORDER BY symbol, time, known_at, recorded_at OFFSET %s LIMIT 1",
        [offset],
    )[0]
    cursor = page_cursor(row)
    first = url("/api/v1/market-data/", {"page_size": size})
    out: dict = {
        "page_size": size,
        "deep_page": page,
        "cursor_of_deep_page": "constructed from the row at offset "
        f"{offset:,} in the default ordering (symbol, time, known_at, recorded_at)",
        "deep_page_first_row_after": [row[0], iso(row[1])],
    }
    errors = Errors()

    status, _, body, _ = client.get(first)
    if status != 200:
        errors.add(first, status, body)
        return {
            **out,
            **errors.report(),
            "skipped": f"page 1 answered {status}",
            "target": "page 10,000 within ±20% of page 1",
        }

    if args.follow:
        log(f"pagination: following next links from page 1 to page {page:,} ...")
        walk, path, reached = [], first, None
        t_walk = time.perf_counter()
        for n in range(1, page + 1):
            status, _, body, seconds = client.get(path)
            if status != 200:
                errors.add(path, status, body)
                break
            walk.append(seconds)
            if n == page:
                reached = path
                break
            nxt = json.loads(body)["next"]
            if not nxt:
                break
            parts = urlsplit(nxt)
            path = f"{parts.path}?{parts.query}"
            if n % 2000 == 0:
                log(f"  page {n:,}")
        walk_s = time.perf_counter() - t_walk
        followed = parse_qs(urlsplit(reached).query).get("cursor", [None])[0] if reached else None
        chunk = max(1, len(walk) // 10)
        out["follow_next_links"] = {
            "pages": len(walk),
            "seconds": round(walk_s, 1),
            "latency_by_depth": [
                {"pages": f"{i + 1}-{min(i + chunk, len(walk))}", **stats_ms(walk[i : i + chunk])}
                for i in range(0, len(walk), chunk)
            ],
            "cursor_matches_constructed": followed == cursor if followed else None,
        }

    log(f"pagination: page 1 vs page {page:,}, {samples_n} samples each (alternating) ...")
    results = {}
    for name, extra in (("plain", {}), ("as_of", {"as_of": iso(info["time_max"] + timedelta(days=1))})):
        p1, pn = (
            url("/api/v1/market-data/", {"page_size": size, **extra}),
            url("/api/v1/market-data/", {"page_size": size, **extra, "cursor": cursor}),
        )
        s1, sn, rows = [], [], set()
        for i in range(samples_n + 3):
            for path, into in ((p1, s1), (pn, sn)):
                status, _, body, seconds = client.get(path)
                if status != 200:
                    errors.add(path, status, body)
                    continue
                if i >= 3:  # 3 warm-ups each
                    into.append(seconds)
                    rows.add(len(json.loads(body)["results"]))
        a, b = stats_ms(s1), stats_ms(sn)
        ratio = round(b["p50_ms"] / a["p50_ms"], 3) if a.get("n") and b.get("n") else None
        results[name] = {
            "page_1": a,
            f"page_{page}": b,
            "rows_per_page": sorted(rows),
            "ratio_p50_deep_over_page_1": ratio,
            "meets_target": ratio is not None and 0.8 <= ratio <= 1.2,
        }
    results["as_of"]["note"] = "as_of after the last bar: every version is current, same rows; adds the anti-join probe"
    return {
        **out,
        **results,
        **errors.report(),
        "target": "page 10,000 within ±20% of page 1 (p50 ratio 0.8-1.2)",
        "ratio_to_target": results["plain"]["ratio_p50_deep_over_page_1"],
        "meets_target": results["plain"]["meets_target"],
    }


def fig_asof_join(args, client: Client, info: dict) -> dict:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = args.asof_points if not args.quick else min(args.asof_points, 100_000)
    runs = 1 if args.quick else args.asof_runs
    rng = np.random.default_rng(args.seed + 2)
    lo_us = int(info["time_min"].timestamp() * 1e6)
    span_us = int((info["time_max"] - info["time_min"]).total_seconds() * 1e6) + 60_000_000
    symbols = np.array(info["symbol_list"], dtype=object)
    points = pa.table(
        {
            "symbol": pa.array(symbols[rng.integers(0, len(symbols), n)], pa.string()),
            "time": pa.array(lo_us + rng.integers(0, span_us, n), pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        }
    )
    sink = io.BytesIO()
    pq.write_table(points, sink)
    body = sink.getvalue()
    log(f"asof-join: {n:,} points as Parquet ({len(body) / 1e6:.1f} MB), {runs} run(s) ...")
    walls, errors, answer = [], Errors(), {}
    for run in range(runs):
        status, headers, data, seconds = client.request(
            "POST", "/api/v1/asof-join/", body=body, headers={"Content-Type": PARQUET, "Accept": PARQUET}
        )
        if status != 200:
            errors.add("POST /api/v1/asof-join/", status, data)
            log(f"asof-join run {run + 1}: HTTP {status} after {seconds:.1f}s")
            continue
        walls.append(seconds)
        table = pq.read_table(io.BytesIO(data))
        answer = {
            "rows": table.num_rows,
            "matched": table.num_rows - table.column("close").null_count,
            "columns": table.num_columns,
            "response_bytes": len(data),
            "content_type": headers.get("Content-Type"),
        }
        del table, data
        log(f"asof-join run {run + 1}: {n:,} points in {seconds:.2f}s")
    median = sorted(walls)[len(walls) // 2] if walls else None
    return {
        "points": n,
        "request_bytes": len(body),
        "runs": len(walls),
        **answer,
        "median_s": round(median, 3) if median is not None else None,
        "all_s": [round(w, 3) for w in walls],
        **errors.report(),
        "cache": {"state": "never cached: the view caches joins of at most 10,000 points"},
        "request": "POST /api/v1/asof-join/ Content-Type and Accept application/vnd.apache.parquet; wall time from "
        "sending the body to the last byte of the answer",
        "target": "< 8 s",
        **against(median, 8, at_most=True),
    }


# --- main ---------------------------------------------------------------------------------------


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer samples (100 instead of 1,000 ...), 100k join points")
    p.add_argument("--port", type=int, default=0, help="server port (default: a free one)")
    p.add_argument("--workers", type=int, default=4, help="gunicorn workers")
    p.add_argument("--worker-class", default="sync", choices=("sync", "gthread"))
    p.add_argument("--threads", type=int, default=2, help="threads per worker (gthread only)")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients of the throughput part")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of the throughput part")
    p.add_argument("--asof-points", type=int, default=1_000_000)
    p.add_argument("--asof-runs", type=int, default=3)
    p.add_argument("--page", type=int, default=10_000, help="the deep page of the pagination part")
    p.add_argument("--page-size", type=int, default=100)
    p.add_argument(
        "--follow",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also walk the next links to the deep page (default: on, off with --quick)",
    )
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts of {','.join(PARTS)}")
    args = p.parse_args(argv)
    args.parts = [x.strip() for x in args.only.split(",") if x.strip()]
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        p.error(f"unknown part(s) {', '.join(sorted(unknown))}: expected {', '.join(PARTS)}")
    if args.follow is None:
        args.follow = not args.quick
    return args


def environment() -> dict:
    return {
        **pg_environment(),
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "load_average_at_start": os.getloadavg(),
        "machine_busy_pct_before_start": machine_busy_pct(3.0),
    }


def summary(figures: dict) -> list[dict]:
    rows = []

    def add(name, value, unit, target, fig):
        if fig and "meets_target" in fig:
            rows.append(
                {
                    "figure": name,
                    "value": value,
                    "unit": unit,
                    "target": target,
                    "ratio_to_target": fig.get("ratio_to_target"),
                    "meets_target": fig["meets_target"],
                }
            )

    f = figures
    if "state" in f:
        add("state all symbols, uncached, p99", f["state"].get("p99_ms"), "ms", "< 60", f["state"])
    if "state_cached" in f:
        add("state all symbols, cached, p99", f["state_cached"].get("p99_ms"), "ms", "< 5", f["state_cached"])
    if "reconstruct" in f:
        add("reconstruct uncached, p99", f["reconstruct"].get("p99_ms"), "ms", "< 30", f["reconstruct"])
    if "throughput" in f:
        add(
            "cached one-symbol state, 8 clients",
            f["throughput"].get("requests_per_s"),
            "req/s",
            ">= 1000",
            f["throughput"],
        )
    if "asof_join" in f:
        add("asof-join 1M points Parquet, median", f["asof_join"].get("median_s"), "s", "< 8", f["asof_join"])
    if "pagination" in f:
        add("page 10,000 / page 1 (p50)", f["pagination"].get("ratio_to_target"), "ratio", "0.8-1.2", f["pagination"])
    return rows


def main(argv=None) -> int:
    args = parse_args(argv)
    command = command_line()
    django_up(DB_URL, ensure=False, **SERVER_ENV)  # the API's tables (tokens); bars are untouched
    from django.core.cache import cache

    # project modules need Django: imported only after django_up() (bench/lib/django_env.py)
    from timeseries.models import ApiToken

    def on_signal(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    info = data_info()
    if not info["symbols"]:
        raise SystemExit("tsm_bench has no market data: run bench/bench_foundation.py first")
    out: dict = {
        "command": command,
        "started_at": started_at(),
        **environment(),
        "quick": args.quick,
        "parts": args.parts,
        "data": {
            "database": DB_NAME,
            "rows_estimate": info["rows_estimate"],
            "symbols": info["symbols"],
            "time_range": [iso(info["time_min"]), iso(info["time_max"])],
        },
        "figures": {},
    }
    cache.get("tsm-bench-api-probe")  # fail early if Redis is unreachable (every figure needs it)
    token, key = make_token()
    server = Server(args)
    out["server"] = {
        "command": server.command,
        "workers": args.workers,
        "worker_class": args.worker_class,
        **({"threads": args.threads} if args.worker_class == "gthread" else {}),
        "port": server.port,
        "settings": "DEBUG=false, TSM_API_RATE=none (no throttling), conn_max_age=60, Redis cache "
        f"with TSM_CACHE_PREFIX={CACHE_PREFIX} (empty at start, dropped at the end)",
    }
    t0 = time.perf_counter()
    client = None
    try:
        server.start(key, url("/api/v1/state/", {"symbols": info["symbol_list"][0], "at": iso(info["time_max"])}))
        client = Client(server.port, key)
        for _ in range(10 * args.workers):  # every worker imports, connects and resolves before any timing
            client.get(url("/api/v1/state/", {"symbols": info["symbol_list"][0], "at": iso(info["time_max"])}))
        for part in args.parts:
            log(f"--- {part}")
            meter = cpu_meter(server).start()
            try:
                if part == "state":
                    fig = fig_state(args, client, info)
                elif part == "state_cached":
                    fig = fig_state_cached(args, client, info)
                elif part == "reconstruct":
                    fig = fig_reconstruct(args, client, info)
                elif part == "throughput":
                    fig = fig_throughput(args, server, key, info)
                elif part == "pagination":
                    fig = fig_pagination(args, client, info)
                else:
                    fig = fig_asof_join(args, client, info)
            except (OSError, http.client.HTTPException, RuntimeError, ValueError, KeyError) as exc:
                fig = {"failed": f"{type(exc).__name__}: {exc}"[:500]}
            if part != "throughput":
                fig["cpu_during_part"] = meter.stop().split()
            out["figures"][part] = fig
            log(f"{part}: {json.dumps(fig, default=str)[:400]}")
    finally:
        if client is not None:
            client.close()
        server.stop()
        out["server"]["log"] = server.log_summary()
        ApiToken.objects.filter(pk=token.pk).delete()
        out["server"]["cache_keys_dropped_at_end"] = drop_cached_keys()
    out["summary"] = summary(out["figures"])
    out["total_s"] = round(time.perf_counter() - t0, 1)
    out["load_average_at_end"] = os.getloadavg()
    emit(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

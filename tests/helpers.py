"""Helpers shared by the test modules: input rows, comparisons with the oracle (tests/oracle.py),
aggregates computed from scratch over the oracle, uploads, the InfluxDB backup's rows, the API schema.

Fixtures stay in the conftest.py files; the property tests' history generation is tests/histories.py.
Only plain functions and constants here, imported by name (a test module never imports another).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Context, Decimal
from pathlib import Path
from typing import Any

import schemathesis
from django.core import signals
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections, connection
from django.urls import reverse
from psycopg import sql

from ingestion import influx
from tests.oracle import Oracle
from timeseries import aggregates
from timeseries.cache import generation_bump
from timeseries.datasets import DATASETS

T0 = datetime(2024, 3, 1, 14, 30, tzinfo=UTC)
US = timedelta(microseconds=1)


def iso(d: datetime) -> str:
    return d.astimezone(UTC).isoformat()  # always with +00:00


# --- rows and tables ------------------------------------------------------------------------------------


def wipe_datasets() -> None:
    """Empty every dataset table and the series registry (inside the test's transaction)."""
    tables = [d.table for d in DATASETS.values()]
    tables += ["timeseries_series", "timeseries_outranked_version", "ingestion_rejectedrow", "ingestion_load"]
    with connection.cursor() as cur:
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")  # deferred FK checks of earlier inserts would block TRUNCATE
        cur.execute("TRUNCATE " + ", ".join(tables) + " CASCADE")


def bar(symbol: str, minute: int, *, close: str = "10.5", **extra) -> dict:
    """One valid 1-minute bar as an input row (strings, as a CSV would give them)."""
    row = {
        "time": (T0 + timedelta(minutes=minute)).isoformat(),
        "symbol": symbol,
        "open": "10",
        "high": "11",
        "low": "9",
        "close": close,
        "volume": "100",
    }
    row.update(extra)
    return row


def waiting_on_a_lock(dbname: str) -> bool:
    """Whether a session of ``dbname`` waits on a lock. Asked on the test's autocommit connection:
    inside a transaction pg_stat_activity is a snapshot and would never change."""
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'", [dbname])
        return cur.fetchone()[0] > 0


@contextlib.contextmanager
def api_schema_in_process():
    """The read/write API's OpenAPI schema for schemathesis, calling Django's WSGI app in this process.
    Like Django's test client, a request must not close the connection holding the test's transaction."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield schemathesis.openapi.from_wsgi("/api/v1/schema/?format=json", get_wsgi_application())
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


# --- comparisons with the oracle -----------------------------------------------------------------------


def _plain(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(v)
    if isinstance(v, Decimal):
        return v.normalize() if v else Decimal(0)
    return v


def norm(row: dict | None) -> tuple | None:
    """A hashable, representation-free form of a row (Decimals by value, lists as tuples)."""
    if row is None:
        return None
    return tuple(sorted((k, _plain(v)) for k, v in row.items()))


def bag(rows: list[dict]) -> Counter:
    return Counter(norm(r) for r in rows)


def assert_same_rows(actual: list[dict], expected: list[dict], what: str) -> None:
    a, e = bag(actual), bag(expected)
    if a != e:
        missing = list((e - a).elements())
        extra = list((a - e).elements())
        raise AssertionError(
            f"{what}: rows differ\n  missing (oracle has, tsm lacks): {missing}\n"
            f"  extra (tsm has, oracle lacks): {extra}"
        )


def assert_same_sequence(actual: list[dict], expected: list[dict], what: str) -> None:
    if [norm(r) for r in actual] != [norm(r) for r in expected]:
        raise AssertionError(f"{what}: sequences differ\n  tsm:    {actual}\n  oracle: {expected}")


def total_order(dataset: str) -> bool:
    """Whether the dataset's ``order_newest`` breaks every tie (names every key column)."""
    spec = DATASETS[dataset]
    return set(spec.key) <= {o.split()[0] for o in spec.order_newest}


def assert_listing(
    actual: list[dict],
    expected_all: list[dict],
    order: Callable[[dict], tuple],
    limit: int | None,
    what: str,
    *,
    total: bool,
) -> None:
    """``actual`` is the first ``limit`` rows of ``expected_all`` in the selector's order.

    The oracle lists rows by ``order`` then by key. When the selector's order is ``total`` (ties broken
    by the rest of the key) that is its exact order. Otherwise rows sharing an ordering key may come in
    any order, and the last group, when the limit cuts it, may be any subset of the oracle's group.
    """
    n = len(expected_all) if limit is None else min(limit, len(expected_all))
    if total:
        assert_same_sequence(actual, expected_all[:n], what)
        return
    assert len(actual) == n, f"{what}: {len(actual)} rows, oracle says {n}\n  tsm: {actual}\n  oracle: {expected_all}"
    got_keys = [order(r) for r in actual]
    want_keys = [order(r) for r in expected_all[:n]]
    assert got_keys == want_keys, f"{what}: order differs\n  tsm: {actual}\n  oracle: {expected_all[:n]}"
    groups_got: dict[tuple, list] = {}
    groups_all: dict[tuple, list] = {}
    for r in actual:
        groups_got.setdefault(order(r), []).append(r)
    for r in expected_all:
        groups_all.setdefault(order(r), []).append(r)
    boundary = got_keys[-1] if got_keys else None
    for k, rows in groups_got.items():
        got, want = bag(rows), bag(groups_all[k])
        if k == boundary and n < len(expected_all):
            assert not (got - want), f"{what}: rows not in the oracle's tie group {k}: {list((got - want).elements())}"
        else:
            assert got == want, f"{what}: tie group {k} differs\n  tsm: {rows}\n  oracle: {groups_all[k]}"


def stored_versions(dataset: str) -> list[dict]:
    spec = DATASETS[dataset]
    with connection.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT {} FROM {}").format(
                sql.SQL(", ").join(map(sql.Identifier, spec.stored_columns)), sql.Identifier(spec.table)
            )
        )
        names = [d.name for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]


def count_rows(dataset: str) -> int:
    with connection.cursor() as cur:
        cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(DATASETS[dataset].table)))
        return cur.fetchone()[0]


# --- aggregates from scratch, over the oracle -----------------------------------------------------------

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


def floor(t: datetime, width: timedelta) -> datetime:
    origin = aggregates.ORIGIN
    return origin + ((t - origin) // width) * width


def scratch_buckets(oracle: Oracle, dataset: str, width: timedelta, *, symbol, at, start, end, recorded_by) -> dict:
    """Bucket start -> the current versions known at ``at`` of ``symbol`` in it (brute force), for the
    buckets overlapping [start, min(end, at)]."""
    first, last = floor(start, width), floor(min(end, at), width)
    buckets: dict[datetime, list[dict]] = defaultdict(list)
    for r in oracle.current(dataset, at, recorded_by):
        bucket = floor(r["time"], width)
        if r["symbol"] == symbol and first <= bucket <= last:
            buckets[bucket].append(r)
    return dict(sorted(buckets.items()))


def scratch_daily_bars(oracle: Oracle, *, symbol, at, start, end, recorded_by=None) -> list[dict]:
    """Daily bars from every current version known at ``at`` (brute force)."""
    out = []
    for day, rows in scratch_buckets(
        oracle, "market_data", DAY, symbol=symbol, at=at, start=start, end=end, recorded_by=recorded_by
    ).items():
        bars = sorted(rows, key=lambda r: r["time"])
        priced = [b for b in bars if b["vwap"] is not None]
        pv, pvv = sum(b["vwap"] * b["volume"] for b in priced), sum(b["volume"] for b in priced)
        vwap = (
            None
            if not pvv
            else Context(prec=80)
            .divide(Decimal(pv), Decimal(pvv))
            .quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP)
        )
        out.append(
            {
                "time": day,
                "open": bars[0]["open"],
                "high": max(b["high"] for b in bars),
                "low": min(b["low"] for b in bars),
                "close": bars[-1]["close"],
                "volume": sum(b["volume"] for b in bars),
                "vwap": vwap,
                "bars": len(bars),
                "partial": at < day + DAY,
            }
        )
    return out


def scratch_hourly_sentiment(oracle: Oracle, *, symbol, at, start, end, recorded_by=None) -> list[dict]:
    """Hourly mention-weighted sentiment from every current window known at ``at`` (brute force)."""
    out = []
    for hour, rows in scratch_buckets(
        oracle, "social_sentiment", HOUR, symbol=symbol, at=at, start=start, end=end, recorded_by=recorded_by
    ).items():
        weighted = [r for r in rows if r["sentiment_avg"] is not None and r["mention_count"] is not None]
        weight = sum(r["mention_count"] for r in weighted)
        out.append(
            {
                "time": hour,
                "sentiment": sum(r["sentiment_avg"] * r["mention_count"] for r in weighted) / weight
                if weight
                else None,
                "mentions": sum(r["mention_count"] or 0 for r in rows),
                "platforms": len(rows),
            }
        )
    return out


def same_sentiment(got: list[dict], want: list[dict]) -> bool:
    if [{**g, "sentiment": None} for g in got] != [{**w, "sentiment": None} for w in want]:
        return False
    for g, w in zip(got, want):
        if (g["sentiment"] is None) != (w["sentiment"] is None):
            return False
        if g["sentiment"] is not None and not math.isclose(g["sentiment"], w["sentiment"], rel_tol=1e-9, abs_tol=1e-12):
            return False
    return True


# --- a month of minute bars (rollup tests) ---------------------------------------------------------------

UTC = UTC
FEB = datetime(2024, 2, 1, tzinfo=UTC)
MAR = datetime(2024, 3, 1, tzinfo=UTC)
LATER = datetime(2024, 6, 1, tzinfo=UTC)
MINUTES = [570, 720, 959, 1439]  # 09:30, 12:00, 15:59, 23:59


def bar_row(symbol: str, t: datetime, n: int, *, close: str | None = None, known_at: datetime | None = None) -> dict:
    row = {
        "time": iso(t),
        "symbol": symbol,
        "open": f"{100 + n % 7}",
        "high": f"{110 + n % 5}",
        "low": f"{90 + n % 3}",
        "close": close or f"{100 + n % 9}.25",
        "volume": str(100 + 17 * n),
        "vwap": f"{100 + n % 4}.125",
    }
    if known_at is not None:
        row["known_at"] = iso(known_at)
    return row


def month(symbol: str, skip: set[int] = frozenset()) -> list[dict]:
    return [
        bar_row(symbol, FEB + d * DAY + timedelta(minutes=m), d * 10 + i)
        for d in range(29)
        if d + 1 not in skip
        for i, m in enumerate(MINUTES)
    ]


# --- curation -------------------------------------------------------------------------------------------


def bars(symbol: str, closes: list[str], **extra) -> list[dict]:
    out = []
    for i, c in enumerate(closes):
        row = bar(symbol, i, close=c, **extra)
        row.update(open=c, high=str(float(c) + 0.5), low=str(float(c) - 0.5))
        out.append(row)
    return out


# --- admin uploads --------------------------------------------------------------------------------------


def csv_bytes(rows: list[dict]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def post_upload(client, content: bytes, name: str = "bars.csv", **fields):
    data = {
        "dataset": "market_data",
        "bar_interval_text": "1min",
        "on_error": "reject",
        **fields,
        "file": SimpleUploadedFile(name, content),
    }
    return client.post(reverse("admin:ingestion_upload_add"), data)


# --- the InfluxDB backup ----------------------------------------------------------------------------------

SECOND = timedelta(seconds=1)
FAST = ("X=Y/Z.W", "TICK")  # one-second bars (the first symbol needs line-protocol escaping: "=")
SLOW = "MINUTE"  # one-minute bars: not backed up in "subminute" mode


def tick(symbol: str, second: int, *, close: str = "10.5", **extra) -> dict:
    """``bar`` placed ``second`` seconds after T0 (one-second bars)."""
    return bar(symbol, 0, close=close, **{"time": (T0 + second * SECOND).isoformat(), **extra})


def versions(symbols=FAST) -> list[tuple]:
    """Every stored version without recorded_at, in version order per key."""
    with connection.cursor() as cur:
        cur.execute(
            """
            SELECT symbol, time, known_at, open, high, low, close, volume, vwap, trades, market_cap, source,
                quality_score
            FROM market_data WHERE symbol = ANY(%s) ORDER BY symbol, time, recorded_at, known_at
            """,
            [list(symbols)],
        )
        return cur.fetchall()


def wipe_market_data() -> None:
    with connection.cursor() as cur:
        cur.execute("TRUNCATE market_data")
        cur.execute("DELETE FROM timeseries_series WHERE dataset = 'market_data'")
    generation_bump(datasets=["market_data"])


def restore() -> influx.RestoreResult:
    return influx.influx_restore(dataset="market_data", start=T0 - timedelta(days=1), end=T0 + timedelta(days=1))


# --- commands and the write API (tests/ingestion) --------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def manage(*args: str, **more_env: str) -> subprocess.CompletedProcess:
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "TSM_TIMESCALEDB": "off" if "timescale" not in db["ENGINE"] else "on",
        **more_env,
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def last_json(stdout: str):
    return json.loads(stdout.strip().splitlines()[-1])


def write_api_post(client, rows, *, dataset="market_data", fmt="json", **params):
    """POST ``rows`` to the write API as JSON, NDJSON or CSV (``params``: the query string)."""
    if fmt == "json":
        body, ctype = json.dumps(rows), "application/json"
    elif fmt == "ndjson":
        body, ctype = "\n".join(json.dumps(r) for r in rows) + "\n", "application/x-ndjson"
    else:
        cols = list(rows[0])
        body = "\n".join([",".join(cols)] + [",".join(str(r[c]) for c in cols) for r in rows]) + "\n"
        ctype = "text/csv"
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return client.generic(
        "POST", f"/api/v1/ingest/{dataset}/" + (f"?{query}" if query else ""), body, content_type=ctype
    )

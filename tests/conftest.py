"""Shared fixtures. Tests run against the real PostgreSQL and Redis (docs/architecture.md, "Tests")."""
from __future__ import annotations

import contextlib
from datetime import datetime, timedelta, timezone

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections, connection

from timeseries.datasets import DATASETS

T0 = datetime(2024, 3, 1, 14, 30, tzinfo=timezone.utc)


@pytest.fixture
def t0() -> datetime:
    return T0


def wipe_datasets() -> None:
    """Empty every dataset table and the series registry (inside the test's transaction)."""
    tables = [d.table for d in DATASETS.values()] + ["timeseries_series", "ingestion_rejectedrow", "ingestion_load"]
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

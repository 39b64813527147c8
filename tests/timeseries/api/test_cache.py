"""Caching of point-in-time answers in Redis: invalidated by ingestion, never required to answer."""

from __future__ import annotations

import socket
import subprocess
import time
import uuid
from datetime import timedelta

import pytest
import redis

from ingestion.loader import ingest_table
from tests.helpers import T0, bar
from timeseries.cache import generations
from timeseries.formats import iso
from timeseries.models import MarketData

pytestmark = pytest.mark.django_db

AT = {"at": iso(T0 + timedelta(minutes=10)), "symbols": "AAPL"}


def close_at_state(api) -> str:
    response = api.get("/api/v1/state/", AT)
    assert response.status_code == 200, response.content
    return response.json()["results"][0]["close"]


def test_it_serves_the_state_from_the_cache_until_a_correction_for_a_past_time_arrives(api):
    ingest_table(dataset="market_data", data=[bar("AAPL", 0, close="10.5"), bar("AAPL", 1, close="10.6")])
    assert close_at_state(api) == "10.600000"
    # change the stored row behind the cache's back (no generation bump): the cached answer is served
    MarketData.objects.filter(symbol="AAPL", time=T0 + timedelta(minutes=1)).update(close="10.9")
    assert close_at_state(api) == "10.600000"
    # a correction of the 14:31 bar, ingested later, changes the answer for 14:40: the generation bump retires it
    before = generations(["market_data"])["market_data"]
    ingest_table(dataset="market_data", data=[bar("AAPL", 1, close="10.7")])
    assert generations(["market_data"])["market_data"] > before
    assert close_at_state(api) == "10.700000"


def test_it_keys_cached_answers_by_every_parameter(api):
    ingest_table(dataset="market_data", data=[bar("AAPL", 0, close="10.5"), bar("MSFT", 0, close="10.2")])
    at = iso(T0 + timedelta(minutes=10))
    assert [r["symbol"] for r in api.get("/api/v1/state/", {"at": at, "symbols": "AAPL"}).json()["results"]] == ["AAPL"]
    assert [r["symbol"] for r in api.get("/api/v1/state/", {"at": at, "symbols": "MSFT"}).json()["results"]] == ["MSFT"]
    assert api.get("/api/v1/state/", {"at": iso(T0), "symbols": "MSFT"}).json()["results"] == []
    news = api.get("/api/v1/news/before/", {"at": at, "limit": 1}).json()
    assert news["results"] == []  # another endpoint with the same parameters is another key


def test_it_invalidates_a_cached_reconstruct_when_any_dataset_it_reads_changes(api):
    ingest_table(dataset="market_data", data=[bar("AAPL", 0)])
    url, query = "/api/v1/reconstruct/AAPL/", {"at": iso(T0 + timedelta(minutes=10))}
    assert api.get(url, query).json()["results"]["news"] == []
    ingest_table(dataset="news_events", data=[{"time": iso(T0), "symbol": "AAPL", "title": "late news", "url": "n"}])
    assert [n["title"] for n in api.get(url, query).json()["results"]["news"]] == ["late news"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def private_redis():
    """A redis-server of our own on a free loopback port (killed by its pid at the end)."""
    port = _free_port()
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=0.5)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("the private redis-server did not start")
            time.sleep(0.05)
    yield port, proc, client
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


def test_it_keeps_answering_correctly_from_postgresql_when_redis_goes_down(api, settings, private_redis, caplog):
    port, proc, client = private_redis
    prefix = f"tsm-apitest-{uuid.uuid4().hex}"
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{port}/0",
            "KEY_PREFIX": prefix,
            "TIMEOUT": 60,
            "OPTIONS": {"socket_connect_timeout": 0.25, "socket_timeout": 0.25},
        }
    }
    settings.TSM_API_RATE = "1000/min"
    ingest_table(dataset="market_data", data=[bar("AAPL", 0, close="10.5"), bar("AAPL", 1, close="10.6")])
    assert close_at_state(api) == "10.600000"
    assert client.keys(f"{prefix}:*pit:market_state:*"), "the answer was not cached in the private Redis"
    assert client.keys(f"{prefix}:*throttle_tsm_api_*"), "the rate limiter did not count in the private Redis"

    proc.kill()
    proc.wait(timeout=10)
    caplog.clear()
    started = time.monotonic()
    assert close_at_state(api) == "10.600000"
    ingest_table(dataset="market_data", data=[bar("AAPL", 1, close="10.7")])
    assert close_at_state(api) == "10.700000"  # computed from PostgreSQL, not a stale answer
    assert time.monotonic() - started < 5
    assert api.get("/api/v1/market-data/", {"symbols": "AAPL"}).status_code == 200
    joined = api.post("/api/v1/asof-join/", [{"symbol": "AAPL", "time": AT["at"]}], format="json")
    assert joined.status_code == 200 and joined.json()["results"][0]["close"] == "10.700000"
    assert "cache unavailable" in caplog.text


def test_it_shares_one_cache_entry_between_equivalent_requests(api):
    ingest_table(dataset="market_data", data=[bar("AAPL", 0, close="10.5"), bar("MSFT", 0, close="10.2")])
    at = "2024-03-01T14:40:00Z"
    first = api.get("/api/v1/state/", {"at": at, "symbols": "AAPL,MSFT"}).json()
    MarketData.objects.filter(symbol="AAPL").update(close="10.9")  # behind the cache's back
    same = api.get(
        "/api/v1/state/", {"at": "2024-03-01T15:40:00+01:00", "symbols": "MSFT, AAPL,AAPL", "recorded_by": ""}
    ).json()
    assert same["results"] == first["results"]

"""The OpenAPI schema, its documentation pages, and a schemathesis run against it (zero 5xx)."""

from __future__ import annotations

import re
from datetime import timedelta

import hypothesis
import pytest
from django.contrib.staticfiles import finders
from hypothesis import HealthCheck
from schemathesis.generation.modes import GenerationMode

from ingestion.loader import ingest_table
from tests.helpers import T0, api_schema_in_process, bar
from timeseries.formats import iso

pytestmark = pytest.mark.django_db

ENDPOINTS = {
    "/api/v1/market-data/",
    "/api/v1/news/",
    "/api/v1/insider-trades/",
    "/api/v1/sentiment/",
    "/api/v1/government-events/",
    "/api/v1/state/",
    "/api/v1/news/before/",
    "/api/v1/insider-trades/before/",
    "/api/v1/sentiment/before/",
    "/api/v1/government-events/before/",
    "/api/v1/reconstruct/{symbol}/",
    "/api/v1/asof-join/",
}


def test_it_serves_an_openapi_3_schema_of_every_endpoint(anonymous):
    response = anonymous.get("/api/v1/schema/", {"format": "json"})
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert ENDPOINTS <= set(schema["paths"])
    assert schema["components"]["securitySchemes"]["tokenAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schema["components"]["securitySchemes"]["tokenAuth"]["description"],
    }
    state = {p["name"]: p for p in schema["paths"]["/api/v1/state/"]["get"]["parameters"]}
    assert state["at"]["required"] is True and state["at"]["schema"]["format"] == "date-time"
    listing = {p["name"] for p in schema["paths"]["/api/v1/market-data/"]["get"]["parameters"]}
    assert {
        "as_of",
        "recorded_by",
        "symbols",
        "time_after",
        "time_before",
        "quality_min",
        "cursor",
        "ordering",
    } <= listing
    content = schema["paths"]["/api/v1/asof-join/"]["post"]["requestBody"]["content"]
    assert {"application/json", "text/csv", "application/vnd.apache.parquet"} <= set(content)


def test_it_serves_a_documentation_page_that_loads_nothing_from_another_host(anonymous):
    response = anonymous.get("/api/v1/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
    assert assets, html[:500]
    assert not [a for a in assets if re.match(r"^(https?:)?//", a)], assets
    for asset in assets:
        if asset.startswith("/static/"):
            assert finders.find(asset.removeprefix("/static/")), asset
    assert "/api/v1/schema/" in html


@pytest.fixture
def api_schema(db, settings):
    """The live schema, loaded through the WSGI app, with a little data behind it."""
    settings.TSM_API_RATE = None
    ingest_table(dataset="market_data", data=[bar(s, m) for s in ("AAPL", "MSFT") for m in range(30)])
    ingest_table(dataset="news_events", data=[{"time": iso(T0), "symbol": "AAPL", "title": "t", "url": "u"}])
    ingest_table(
        dataset="insider_trades",
        data=[
            {
                "time": iso(T0),
                "symbol": "AAPL",
                "insider_name": "A",
                "transaction_type": "buy",
                "filing_date": iso(T0 + timedelta(days=1)),
            }
        ],
    )
    ingest_table(
        dataset="social_sentiment", data=[{"time": iso(T0.replace(minute=0)), "symbol": "AAPL", "platform": "x"}]
    )
    ingest_table(
        dataset="government_events", data=[{"time": iso(T0), "event_type": "regulation", "primary_symbol": "AAPL"}]
    )
    with api_schema_in_process() as loaded:
        yield loaded


OPERATIONS = [("POST" if path == "/api/v1/asof-join/" else "GET", path) for path in sorted(ENDPOINTS)]


# schemathesis' own pytest entry point (schema.parametrize / pytest.from_fixture) does not run under
# pytest 9 (it reads a private attribute pytest removed), so each operation is driven here through
# schemathesis' Python API: its Hypothesis strategy, called through the WSGI app.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_it_never_answers_with_a_server_error(api_schema, read_key, method, path, mode):
    operation = api_schema[path][method]
    headers = {"Authorization": f"Bearer {read_key}"}

    @hypothesis.settings(
        max_examples=20, deadline=None, database=None, suppress_health_check=list(HealthCheck), derandomize=True
    )
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def run(case):
        response = case.call(headers=headers)
        assert response.status_code < 500, (
            f"{case.as_curl_command(headers)} -> {response.status_code}: {response.text[:500]}"
        )

    run()

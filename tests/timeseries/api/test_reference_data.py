"""The read API over the security master and corporate actions: their listings (every version, as_of,
the declared filters) and their point-in-time endpoints, which agree with the selectors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ingestion.loader import ingest_table
from timeseries import pit
from timeseries.formats import iso

pytestmark = pytest.mark.django_db

LISTED = datetime(2012, 5, 18, 13, 30, tzinfo=UTC)
ANNOUNCED = datetime(2022, 6, 1, 20, 0, tzinfo=UTC)
SPLIT = datetime(2022, 7, 18, 13, 30, tzinfo=UTC)


@pytest.fixture
def loaded():
    ingest_table(
        dataset="securities",
        data=[
            {"security_id": "S1", "symbol": "FB", "exchange": "XNAS", "listed_at": iso(LISTED)},
            {"security_id": "S2", "symbol": "IBM", "exchange": "XNYS", "listed_at": "1990-01-02T14:30:00Z"},
        ],
    )
    ingest_table(
        dataset="securities",  # a delisting of S2 announced later: a second version
        data=[
            {
                "security_id": "S2",
                "symbol": "IBM",
                "exchange": "XNYS",
                "listed_at": "1990-01-02T14:30:00Z",
                "delisted_at": iso(SPLIT + timedelta(days=90)),
                "known_at": iso(SPLIT),
            }
        ],
    )
    ingest_table(
        dataset="corporate_actions",
        data=[
            {"symbol": "FB", "action_type": "split", "ratio": "4", "ex_date": iso(SPLIT), "known_at": iso(ANNOUNCED)},
            {"security_id": "S2", "action_type": "cash_dividend", "amount": "1.65", "ex_date": iso(ANNOUNCED)},
        ],
    )


def test_the_securities_listing_shows_every_version_and_the_current_ones_as_of_t(api, loaded):
    every = api.get("/api/v1/securities/")
    assert every.status_code == 200
    assert sorted(r["security_id"] for r in every.json()["results"]) == ["S1", "S2", "S2"]
    before = api.get("/api/v1/securities/", {"as_of": iso(SPLIT - timedelta(seconds=1))}).json()["results"]
    assert {r["security_id"]: r["delisted_at"] for r in before} == {"S1": None, "S2": None}
    after = api.get("/api/v1/securities/", {"as_of": iso(SPLIT), "exchange": "XNYS"}).json()["results"]
    assert [(r["security_id"], r["delisted_at"]) for r in after] == [("S2", iso(SPLIT + timedelta(days=90)))]
    by_ticker = api.get("/api/v1/securities/", {"ticker": "FB"}).json()["results"]
    assert [r["security_id"] for r in by_ticker] == ["S1"]


def test_the_actions_listing_includes_announced_actions_before_their_ex_date(api, loaded):
    rows = api.get("/api/v1/corporate-actions/", {"as_of": iso(ANNOUNCED), "action_type": "split"}).json()["results"]
    assert [(r["security_id"], r["symbol"], r["ratio"]) for r in rows] == [("S1", "FB", "4.000000")]
    assert (
        api.get(
            "/api/v1/corporate-actions/", {"as_of": iso(ANNOUNCED - timedelta(seconds=1)), "action_type": "split"}
        ).json()["results"]
        == []
    )


def test_the_point_in_time_endpoints_answer_like_the_selectors(api, loaded):
    at = SPLIT
    response = api.get("/api/v1/securities/at/", {"at": iso(at)})
    assert response.status_code == 200
    expected = pit.securities(at=at)
    assert [(r["security_id"], r["delisted_at"]) for r in response.json()["results"]] == [
        (r["security_id"], iso(r["delisted_at"]) if r["delisted_at"] else None) for r in expected
    ]
    actions = api.get("/api/v1/corporate-actions/before/", {"at": iso(at), "symbols": "S1,S2", "limit": "1"})
    assert actions.status_code == 200
    assert [r["action_type"] for r in actions.json()["results"]] == ["split"]  # newest ex_date first


def test_the_schema_offers_both_listings_and_endpoints(api):
    schema = api.get("/api/v1/schema/", {"format": "json"}).json()
    for path in (
        "/api/v1/securities/",
        "/api/v1/corporate-actions/",
        "/api/v1/securities/at/",
        "/api/v1/corporate-actions/before/",
    ):
        assert path in schema["paths"], path
    write_rows = schema["paths"]["/api/v1/ingest/{dataset}/"]["post"]["requestBody"]
    assert "listed_at" in str(write_rows) and "ex_date" in str(write_rows)

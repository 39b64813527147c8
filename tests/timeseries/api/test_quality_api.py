"""min_quality on the read API (point-in-time endpoints, as-of join, listings); curation retires cached answers."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ingestion.loader import ingest_table
from tests.helpers import T0, bar
from timeseries import quality
from timeseries.models import MarketData

pytestmark = pytest.mark.django_db
AT = (T0 + timedelta(hours=1)).isoformat()


@pytest.fixture
def two_bars():
    ingest_table(dataset="market_data", data=[bar("AAPL", 0, close="10"), bar("AAPL", 1, close="10.5")])


def closes(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [r["close"] for r in response.json()["results"]]


def test_it_answers_market_state_with_the_latest_good_bar(api, two_bars):
    quality.quality_scores_set(
        dataset="market_data", rows=MarketData.objects.filter(close="10.5"), score=0, reason="bad"
    )
    assert closes(api.get("/api/v1/state/", {"at": AT, "symbols": "AAPL"})) == ["10.500000"]
    assert closes(api.get("/api/v1/state/", {"at": AT, "symbols": "AAPL", "min_quality": "0.5"})) == ["10.000000"]


def test_it_retires_a_cached_answer_when_a_score_is_curated(api, two_bars):
    params = {"at": AT, "symbols": "AAPL", "min_quality": "0.5"}
    assert closes(api.get("/api/v1/state/", params)) == ["10.500000"]
    quality.quality_scores_set(
        dataset="market_data", rows=MarketData.objects.filter(close="10.5"), score=0, reason="bad"
    )
    assert closes(api.get("/api/v1/state/", params)) == ["10.000000"]


@pytest.mark.parametrize("value", ["high", "1.5", "-1", "nan"])
def test_it_answers_400_naming_min_quality_for_a_bad_value(api, value):
    for url in ("/api/v1/state/", "/api/v1/news/before/", "/api/v1/market-data/"):
        response = api.get(
            url, {"at": AT, "min_quality": value} if "market-data" not in url else {"min_quality": value}
        )
        assert response.status_code == 400, (url, response.content)
        assert "min_quality" in response.json() and "between 0 and 1" in str(response.json()["min_quality"])


def test_it_refuses_min_quality_on_an_asof_join_of_a_dataset_without_scores(api):
    response = api.post(
        "/api/v1/asof-join/?dataset=insider_trades&min_quality=0.5", [{"symbol": "AAPL", "time": AT}], format="json"
    )
    assert response.status_code == 400
    assert "insider_trades has no quality_score" in str(response.json()["min_quality"])


def test_it_filters_an_asof_join_and_a_listing_by_min_quality(api, two_bars):
    quality.quality_scores_set(
        dataset="market_data", rows=MarketData.objects.filter(close="10.5"), score=0.2, reason="bad"
    )
    response = api.post("/api/v1/asof-join/?min_quality=0.5", [{"symbol": "AAPL", "time": AT}], format="json")
    assert closes(response) == ["10.000000"]
    assert closes(api.get("/api/v1/market-data/", {"min_quality": "0.5"})) == ["10.000000"]
    assert len(closes(api.get("/api/v1/market-data/", {"min_quality": "0.1"}))) == 2


def test_it_reconstructs_with_the_latest_good_bar(api, two_bars):
    quality.quality_scores_set(
        dataset="market_data", rows=MarketData.objects.filter(close="10.5"), score=0, reason="bad"
    )
    response = api.get("/api/v1/reconstruct/AAPL/", {"at": AT, "min_quality": "0.5"})
    assert response.status_code == 200, response.content
    assert response.json()["results"]["market"]["close"] == "10.000000"
    assert api.get("/api/v1/reconstruct/AAPL/", {"at": AT, "min_quality": "x"}).status_code == 400

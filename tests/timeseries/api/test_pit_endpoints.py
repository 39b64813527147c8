"""Point-in-time endpoints: /state/, /<dataset>/before/, /reconstruct/<symbol>/."""

from __future__ import annotations

import io
from datetime import timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingestion.loader import ingest_table
from tests.helpers import T0, bar
from timeseries import pit
from timeseries.formats import iso

pytestmark = pytest.mark.django_db


def z(dt) -> str:
    return iso(dt)


def test_it_answers_the_market_state_at_t_like_pit_market_state(api):
    ingest_table(
        dataset="market_data", data=[bar(s, m, close=f"10.{m}") for s in ("AAPL", "IBM", "MSFT") for m in range(5)]
    )
    at = T0 + timedelta(minutes=3, seconds=30)
    response = api.get("/api/v1/state/", {"at": z(at), "symbols": "MSFT,AAPL"})
    assert response.status_code == 200
    body = response.json()
    assert body["at"] == z(at) and body["recorded_by"] is None
    assert [(r["symbol"], r["time"], r["close"]) for r in body["results"]] == [
        (r["symbol"], z(r["time"]), f"{r['close']:f}") for r in pit.market_state(at=at, symbols=["AAPL", "MSFT"])
    ]
    assert [r["time"] for r in body["results"]] == [z(T0 + timedelta(minutes=2))] * 2  # the 3rd bar is still open
    assert body["max_recorded_at"] == body["results"][0]["recorded_at"]
    assert len(api.get("/api/v1/state/", {"at": z(at)}).json()["results"]) == 3


def test_it_lets_a_client_replay_an_answer_with_its_max_recorded_at(api):
    ingest_table(dataset="market_data", data=[bar("AAPL", 0, close="10.5")])
    at = z(T0 + timedelta(minutes=5))
    before = api.get("/api/v1/state/", {"at": at}).json()
    ingest_table(dataset="market_data", data=[bar("AAPL", 0, close="10.6")])  # a fix of the same bar
    assert api.get("/api/v1/state/", {"at": at}).json()["results"][0]["close"] == "10.600000"
    replay = api.get("/api/v1/state/", {"at": at, "recorded_by": before["max_recorded_at"]}).json()
    assert replay["results"] == before["results"]
    assert replay["recorded_by"] == before["max_recorded_at"]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({}, "at is required"),
        ({"at": ""}, "at is required"),
        ({"at": "2024-03-01T15:30:00"}, "at='2024-03-01T15:30:00' has no UTC offset"),
        ({"at": "2024-03-01 nope"}, "at='2024-03-01 nope' is not an ISO 8601 timestamp"),
        ({"at": "0001-01-01T00:00:00+01:00"}, "at='0001-01-01T00:00:00+01:00' is outside the supported range"),
        ({"at": "0999-12-31T23:59:59Z"}, "outside the supported range of instants (between 1000-01-01 and 9998-12-31)"),
        ({"at": "9999-12-31T23:59:59Z"}, "outside the supported range of instants"),
    ],
)
def test_it_refuses_a_missing_naive_or_malformed_at_saying_why(api, query, message):
    response = api.get("/api/v1/state/", query)
    assert response.status_code == 400
    assert message in response.json()["at"][0]


@pytest.mark.parametrize(
    ("url", "param", "value"),
    [
        ("/api/v1/state/", "recorded_by", "2024-03-01"),
        ("/api/v1/state/", "symbols", "A\x00"),
        ("/api/v1/news/before/", "limit", "0"),
        ("/api/v1/news/before/", "limit", "ten"),
        ("/api/v1/insider-trades/before/", "limit", "100001"),
        ("/api/v1/government-events/before/", "sectors", "x" * 300),
        ("/api/v1/sentiment/before/", "platforms", "a\x00b"),
        ("/api/v1/reconstruct/AAPL/", "bars", "-1"),
        ("/api/v1/reconstruct/AAPL/", "recorded_by", "0001-01-01T00:00:00Z"),
        ("/api/v1/state/", "format", "xlsx"),
    ],
)
def test_it_refuses_an_unparseable_parameter_of_a_pit_endpoint_naming_it(api, url, param, value):
    response = api.get(url, {"at": "2024-03-01T15:30:00Z", param: value})
    assert response.status_code == 400, response.content
    assert list(response.json()) == [param]
    assert param in response.json()[param][0]


def test_it_lists_news_known_at_t_newest_first_with_a_limit(api):
    ingest_table(
        dataset="news_events",
        data=[
            {"time": z(T0 + timedelta(minutes=m)), "symbol": s, "title": f"{s}{m}", "url": f"u{s}{m}"}
            for m in range(5)
            for s in ("AAPL", "MSFT")
        ],
    )
    at = z(T0 + timedelta(minutes=3))
    titles = [n["title"] for n in api.get("/api/v1/news/before/", {"at": at, "symbols": "AAPL"}).json()["results"]]
    assert titles == ["AAPL3", "AAPL2", "AAPL1", "AAPL0"]
    limited = api.get("/api/v1/news/before/", {"at": at, "symbols": "AAPL", "limit": 2}).json()["results"]
    assert [n["title"] for n in limited] == ["AAPL3", "AAPL2"]


def test_it_lists_insider_trades_only_once_filed(api):
    trade = {"time": z(T0), "symbol": "AAPL", "insider_name": "Jane Roe", "transaction_type": "buy", "shares": "100"}
    ingest_table(dataset="insider_trades", data=[{**trade, "filing_date": z(T0 + timedelta(days=2))}])
    url = "/api/v1/insider-trades/before/"
    assert api.get(url, {"at": z(T0 + timedelta(days=1))}).json()["results"] == []
    filed = api.get(url, {"at": z(T0 + timedelta(days=3)), "symbols": "AAPL"}).json()["results"]
    assert [(t["insider_name"], t["shares"], t["filing_date"]) for t in filed] == [
        ("Jane Roe", 100, z(T0 + timedelta(days=2)))
    ]


def test_it_lists_the_latest_closed_sentiment_window_per_platform(api):
    hour = T0.replace(minute=0)
    ingest_table(
        dataset="social_sentiment",
        data=[
            {"time": z(hour + timedelta(hours=h)), "symbol": "AAPL", "platform": p, "mention_count": str(h)}
            for h in range(3)
            for p in ("reddit", "twitter")
        ],
    )
    url = "/api/v1/sentiment/before/"
    at = z(hour + timedelta(hours=2, minutes=30))
    rows = api.get(url, {"at": at}).json()["results"]
    assert {(r["platform"], r["mention_count"]) for r in rows} == {("reddit", 1), ("twitter", 1)}
    assert [r["platform"] for r in api.get(url, {"at": at, "platforms": "twitter"}).json()["results"]] == ["twitter"]


def test_it_lists_government_events_by_symbol_or_sector(api):
    base = {"time": z(T0), "country": "US"}
    ingest_table(
        dataset="government_events",
        data=[
            {
                **base,
                "event_type": "contract_award",
                "primary_symbol": "LMT",
                "affected_symbols": '["BA"]',
                "sectors": '["Industrials"]',
            },
            {**base, "event_type": "regulation", "primary_symbol": "AAPL", "sectors": '["Technology"]'},
            {**base, "event_type": "fed_rate_decision", "primary_symbol": "", "sectors": '["Financials"]'},
        ],
    )
    url, at = "/api/v1/government-events/before/", z(T0 + timedelta(minutes=1))
    events = api.get(url, {"at": at, "symbols": "AAPL", "sectors": "Industrials"}).json()["results"]
    assert {e["event_type"] for e in events} == {"regulation", "contract_award"}
    assert events[0]["affected_symbols"] in ([], ["BA"])
    assert len(api.get(url, {"at": at}).json()["results"]) == 3
    assert api.get(url, {"at": z(T0 - timedelta(seconds=1))}).json()["results"] == []


def test_it_reconstructs_a_symbol_at_t_with_indicators_and_without_look_ahead(api):
    ingest_table(dataset="market_data", data=[bar("AAPL", m, close=f"10.{m:02d}") for m in range(40)])
    ingest_table(
        dataset="news_events",
        data=[
            {"time": z(T0 + timedelta(minutes=5)), "symbol": "AAPL", "title": "past", "url": "a"},
            {"time": z(T0 + timedelta(minutes=50)), "symbol": "AAPL", "title": "future", "url": "b"},
        ],
    )
    at = T0 + timedelta(minutes=30)
    response = api.get("/api/v1/reconstruct/AAPL/", {"at": z(at)})
    assert response.status_code == 200
    body = response.json()
    state = pit.reconstruct(at=at, symbol="AAPL")
    assert body["at"] == z(at)
    assert body["results"]["market"]["time"] == z(T0 + timedelta(minutes=29))
    assert [n["title"] for n in body["results"]["news"]] == ["past"]
    assert body["results"]["indicators"]["sma_20"] == pytest.approx(state["indicators"]["sma_20"])
    assert body["results"]["indicators"]["bars_used"] == 30
    assert body["max_recorded_at"] == z(state["max_recorded_at"])
    assert response["X-TSM-At"] == z(at)


def test_it_answers_reconstruct_in_json_only(api):
    response = api.get("/api/v1/reconstruct/AAPL/", {"at": "2024-03-01T15:30:00Z", "format": "csv"})
    assert response.status_code == 400
    assert "format='csv' is not available here: expected one of json" in response.json()["format"][0]


def test_it_refuses_a_symbol_with_a_nul_character_in_the_path(api):
    response = api.get("/api/v1/reconstruct/AA%00PL/", {"at": "2024-03-01T15:30:00Z"})
    assert response.status_code == 400
    assert "symbol" in response.json()


def test_it_renders_the_state_as_typed_parquet_and_as_csv_with_the_facts_in_headers(api):
    ingest_table(dataset="market_data", data=[bar("AAPL", 0, close="10.123456", vwap="10.1")])
    at = z(T0 + timedelta(minutes=2))
    parquet = api.get("/api/v1/state/", {"at": at, "format": "parquet"})
    table = pq.read_table(io.BytesIO(parquet.content))
    assert table.schema.field("close").type == pa.decimal128(18, 6)
    assert table.schema.field("known_at").type == pa.timestamp("us", tz="UTC")
    assert str(table.column("close")[0].as_py()) == "10.123456"
    assert parquet["X-TSM-At"] == at and parquet["X-TSM-Recorded-By"] == ""
    assert parquet["X-TSM-Max-Recorded-At"] == iso(table.column("recorded_at")[0].as_py())

    csv = api.get("/api/v1/state/", {"at": at}, HTTP_ACCEPT="text/csv")
    header, row = csv.content.decode().splitlines()
    assert header.split(",")[:3] == ["time", "symbol", "open"]
    assert "10.123456" in row.split(",")
    assert csv["X-TSM-Max-Recorded-At"] == parquet["X-TSM-Max-Recorded-At"]


def test_it_states_a_null_max_recorded_at_when_nothing_was_known(api):
    body = api.get("/api/v1/news/before/", {"at": "2024-03-01T15:30:00Z"}).json()
    assert body == {"at": "2024-03-01T15:30:00Z", "recorded_by": None, "max_recorded_at": None, "results": []}


def test_it_answers_the_state_in_a_fixed_number_of_queries_whatever_the_number_of_symbols(
    api, django_assert_num_queries
):
    symbols = [f"S{i:02d}" for i in range(30)]
    ingest_table(dataset="market_data", data=[bar(s, m) for s in symbols for m in range(3)])
    api.get("/api/v1/state/", {"at": z(T0)})  # the token is looked up (and remembered) on first use
    for count in (1, 30):
        query = {"at": z(T0 + timedelta(minutes=count)), "symbols": ",".join(symbols[:count])}
        # dataset generations (cache key), the selector; then from the cache: no selector
        with django_assert_num_queries(2):
            assert len(api.get("/api/v1/state/", query).json()["results"]) == count
        with django_assert_num_queries(1):
            assert len(api.get("/api/v1/state/", query).json()["results"]) == count


def test_it_reconstructs_at_the_earliest_supported_instant(api):
    response = api.get("/api/v1/reconstruct/AAPL/", {"at": "1000-01-01T00:00:00Z"})
    assert response.status_code == 200
    assert response.json()["results"]["market"] is None


def test_it_reads_an_unescaped_plus_of_a_utc_offset_that_the_url_turned_into_a_space(api):
    ingest_table(dataset="market_data", data=[bar("AAPL", 0)])
    # curl ".../state/?at=2024-03-01T15:31:00+01:00" sends a literal +, which a query string decodes as a space
    response = api.get("/api/v1/state/?at=2024-03-01T15:31:00+01:00")
    assert response.status_code == 200
    assert response.json()["at"] == "2024-03-01T14:31:00Z"
    assert [r["symbol"] for r in response.json()["results"]] == ["AAPL"]


def test_it_refuses_a_parameter_the_endpoint_does_not_have(api):
    response = api.get("/api/v1/state/", {"at": "2024-03-01T15:30:00Z", "symbol": "AAPL"})
    assert response.status_code == 400
    assert response.json()["symbol"] == [
        "symbol is not a parameter of this endpoint: expected one of at, format, min_quality, recorded_by, symbols"
    ]

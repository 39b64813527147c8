"""Dataset listings: filters, as_of / recorded_by, keyset pagination, formats, query counts."""

from __future__ import annotations

import io
from datetime import timedelta
from decimal import Decimal

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from ingestion.loader import ingest_table
from tests.helpers import T0, bar
from timeseries import pit
from timeseries.formats import iso

pytestmark = pytest.mark.django_db

URL = "/api/v1/market-data/"


def z(dt) -> str:
    return iso(dt)


def worked_example():
    """README's worked example: original bar, exchange correction (known 18:00), later data-quality fix."""
    t = T0.replace(hour=15, minute=30)
    minute = int((t - T0).total_seconds() // 60)
    first = ingest_table(dataset="market_data", data=[bar("AAPL", minute, close="10.7")])
    ingest_table(
        dataset="market_data", data=[bar("AAPL", minute, close="10.2", known_at=z(t.replace(hour=18, minute=0)))]
    )
    fix = ingest_table(dataset="market_data", data=[bar("AAPL", minute, close="10.4")])
    return t, first.recorded_at, fix.recorded_at


def closes(response) -> list[str]:
    return [row["close"] for row in response.json()["results"]]


def test_it_lists_every_stored_version_without_as_of(api):
    worked_example()
    response = api.get(URL, {"symbols": "AAPL"})
    assert response.status_code == 200
    body = response.json()
    assert sorted(closes(response)) == ["10.200000", "10.400000", "10.700000"]
    assert body["at"] is None and body["recorded_by"] is None
    assert body["max_recorded_at"] == max(r["recorded_at"] for r in body["results"])


def test_it_shows_only_the_versions_current_as_of_t_as_recorded_by_s(api):
    t, first_recorded, _ = worked_example()
    at_16 = z(t.replace(hour=16, minute=0))
    assert closes(api.get(URL, {"as_of": at_16})) == ["10.400000"]
    replay = api.get(URL, {"as_of": at_16, "recorded_by": z(first_recorded)})
    assert closes(replay) == ["10.700000"]
    assert replay.json()["at"] == at_16 and replay.json()["recorded_by"] == z(first_recorded)
    assert replay.json()["max_recorded_at"] == z(first_recorded)
    assert closes(api.get(URL, {"as_of": z(t.replace(hour=19, minute=0))})) == ["10.200000"]
    assert closes(api.get(URL, {"as_of": z(t)})) == []  # the 15:30 bar closes at 15:31


def test_it_agrees_with_pit_history_as_of_any_t(api):
    ingest_table(dataset="market_data", data=[bar(s, m, close=f"10.{m}") for s in ("AAPL", "IBM") for m in range(8)])
    ingest_table(dataset="market_data", data=[bar("AAPL", 3, close="9.5", known_at=z(T0 + timedelta(minutes=30)))])
    ingest_table(dataset="market_data", data=[bar("IBM", 5, close="10.9")])  # same known_at, recorded later
    for minutes in (0, 2, 5, 9, 29, 31, 60):
        at = T0 + timedelta(minutes=minutes)
        got = api.get(URL, {"as_of": z(at), "page_size": 100}).json()["results"]
        want = pit.history(dataset="market_data", at=at)
        assert [(r["symbol"], r["time"], r["close"], r["recorded_at"]) for r in got] == [
            (w["symbol"], z(w["time"]), f"{w['close']:f}", z(w["recorded_at"])) for w in want
        ], minutes


def test_it_filters_by_symbols_event_time_source_and_quality(api):
    ingest_table(
        dataset="market_data",
        data=[
            bar("AAPL", 0, source="x", quality_score="0.2"),
            bar("AAPL", 1, source="y", quality_score="0.9"),
            bar("MSFT", 2, source="x", quality_score="0.5"),
            bar("IBM", 3, source="x", quality_score="1"),
        ],
    )

    def minutes(**params):
        return [(r["symbol"], r["time"]) for r in api.get(URL, params).json()["results"]]

    assert minutes(symbols="MSFT, AAPL") == [
        ("AAPL", z(T0)),
        ("AAPL", z(T0 + timedelta(minutes=1))),
        ("MSFT", z(T0 + timedelta(minutes=2))),
    ]
    assert minutes(symbol="IBM") == [("IBM", z(T0 + timedelta(minutes=3)))]
    assert minutes(time_after=z(T0 + timedelta(minutes=1)), time_before=z(T0 + timedelta(minutes=2))) == [
        ("AAPL", z(T0 + timedelta(minutes=1))),
        ("MSFT", z(T0 + timedelta(minutes=2))),
    ]
    assert minutes(source="x", quality_min="0.4", quality_max="0.99") == [("MSFT", z(T0 + timedelta(minutes=2)))]
    assert minutes(known_at_after=z(T0 + timedelta(minutes=4))) == [("IBM", z(T0 + timedelta(minutes=3)))]


def test_it_filters_each_dataset_by_its_own_columns(api):
    day = T0.replace(minute=0)
    ingest_table(
        dataset="social_sentiment",
        data=[
            {"time": z(day), "symbol": "AAPL", "platform": p, "mention_count": "1"} for p in ("reddit", "twitter", "x")
        ],
    )
    got = api.get("/api/v1/sentiment/", {"platform": "reddit,x"}).json()["results"]
    assert sorted(r["platform"] for r in got) == ["reddit", "x"]

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
        ],
    )
    url = "/api/v1/government-events/"
    assert [e["event_type"] for e in api.get(url, {"symbols": "BA"}).json()["results"]] == ["contract_award"]
    assert [e["event_type"] for e in api.get(url, {"sector": "Technology"}).json()["results"]] == ["regulation"]
    assert [e["event_type"] for e in api.get(url, {"event_type": "regulation"}).json()["results"]] == ["regulation"]

    trade = {
        "time": z(T0),
        "symbol": "AAPL",
        "title": "CEO",
        "shares": "10",
        "price": "1",
        "filing_date": z(T0 + timedelta(days=2)),
    }
    ingest_table(
        dataset="insider_trades",
        data=[
            {**trade, "insider_name": "A", "transaction_type": "buy", "form_type": "4"},
            {**trade, "insider_name": "B", "transaction_type": "sell", "form_type": "4/A"},
        ],
    )
    url = "/api/v1/insider-trades/"
    assert [t["insider_name"] for t in api.get(url, {"transaction_type": "sell"}).json()["results"]] == ["B"]
    assert [t["insider_name"] for t in api.get(url, {"form_type": "4"}).json()["results"]] == ["A"]
    assert api.get(url, {"filing_date_before": z(T0 + timedelta(days=1))}).json()["results"] == []


def test_it_pages_through_every_row_forwards_and_backwards_with_cursors(api):
    ingest_table(dataset="market_data", data=[bar(s, m) for s in ("AAPL", "MSFT") for m in range(12)])
    pages, url, params = [], URL, {"page_size": 5}
    while url:
        body = api.get(url, params).json()
        pages.append([r["id"] for r in body["results"]])
        url, params = body["next"], None
    assert [len(p) for p in pages] == [5, 5, 5, 5, 4]
    ids = [i for p in pages for i in p]
    everything = api.get(URL, {"page_size": 100}).json()["results"]
    assert ids == [r["id"] for r in everything] and len(set(ids)) == 24
    assert [(r["symbol"], r["time"]) for r in everything] == sorted((r["symbol"], r["time"]) for r in everything)

    # walk back from the last page with the previous links
    body = api.get(URL, {"page_size": 5, "cursor": _cursor_of(api, 4)}).json()
    back = [[r["id"] for r in body["results"]]]
    while body["previous"]:
        body = api.get(body["previous"]).json()
        back.append([r["id"] for r in body["results"]])
    assert back[::-1] == pages


def _cursor_of(api, page: int) -> str:
    from urllib.parse import parse_qs, urlparse

    body = api.get(URL, {"page_size": 5}).json()
    for _ in range(page - 1):
        body = api.get(body["next"]).json()
    return parse_qs(urlparse(body["next"]).query)["cursor"][0]


@pytest.mark.parametrize("ordering", ["-symbol", "time", "-time"])
def test_it_pages_in_any_offered_ordering_without_gaps(api, ordering):
    ingest_table(dataset="market_data", data=[bar(s, m) for s in ("AAPL", "IBM", "MSFT") for m in range(4)])
    ingest_table(dataset="market_data", data=[bar("IBM", 2, close="10.1")])  # a second version: a tie on time
    seen, url, params = [], URL, {"page_size": 2, "ordering": ordering}
    while url:
        body = api.get(url, params).json()
        seen += body["results"]
        url, params = body["next"], None
    assert len(seen) == 13 and len({r["id"] for r in seen}) == 13
    if ordering.endswith("time"):
        key = [(r["time"], r["id"]) for r in seen]
    else:
        key = [(r["symbol"], r["time"], r["known_at"], r["recorded_at"]) for r in seen]
    assert key == sorted(key, reverse=ordering.startswith("-"))


def test_it_seeks_on_the_index_instead_of_counting_or_offsetting(api):
    ingest_table(dataset="market_data", data=[bar("AAPL", m) for m in range(3)])
    first = api.get(URL, {"page_size": 1}).json()
    with CaptureQueriesContext(connection) as queries:
        assert api.get(first["next"]).status_code == 200
    listing = [q["sql"] for q in queries if 'FROM "market_data"' in q["sql"]]
    assert len(listing) == 1
    sql = listing[0]
    assert (
        '("market_data"."symbol", "market_data"."time", "market_data"."known_at", "market_data"."recorded_at") >' in sql
    )
    assert "OFFSET" not in sql and "COUNT(" not in sql.upper()
    assert sql.rstrip().endswith("LIMIT 2")


def test_it_probes_the_version_index_per_row_for_as_of_instead_of_anti_joining_from_its_start(api):
    ingest_table(dataset="market_data", data=[bar("AAPL", m) for m in range(3)])
    with CaptureQueriesContext(connection) as queries:
        api.get(URL, {"as_of": z(T0 + timedelta(hours=1)), "page_size": 2})
    sql = next(q["sql"] for q in queries if 'FROM "market_data"' in q["sql"])
    assert "NOT EXISTS(" in sql and "LIMIT 1 OFFSET 0)" in sql
    with connection.cursor() as cur:
        cur.execute("EXPLAIN " + sql)
        plan = "\n".join(row[0] for row in cur.fetchall())
    assert "SubPlan" in plan and "Anti Join" not in plan, plan


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("time_after", "2024-03-01T15:30:00"),  # naive
        ("time_before", "yesterday"),
        ("known_at_after", "2024-13-01T00:00:00Z"),
        ("recorded_at_before", "2024-03-01T25:00:00Z"),
        ("as_of", "2024-03-01"),
        ("as_of", "9999-12-31T23:59:59-05:00"),  # outside the calendar once in UTC
        ("quality_min", "high"),
        ("quality_max", "NaN"),
        ("quality_max", "1e999"),
        ("symbols", "AA\x00PL"),
        ("source", "x" * 500),
        ("page_size", "0"),
        ("page_size", "many"),
        ("page_size", "100001"),
        ("ordering", "close"),
        ("ordering", "--symbol"),
        ("cursor", "not-a-cursor"),
        ("cursor", "eyJvIjoic3ltYm9sIn0"),  # valid base64 JSON, wrong shape
        ("format", "xml"),
    ],
)
def test_it_refuses_an_unparseable_parameter_with_a_400_naming_it(api, param, value):
    response = api.get(URL, {param: value})
    assert response.status_code == 400, response.content
    body = response.json()
    assert list(body) == [param]
    assert all(param in message for message in body[param]), body


def test_it_refuses_recorded_by_without_as_of(api):
    response = api.get(URL, {"recorded_by": "2024-03-01T00:00:00Z"})
    assert response.status_code == 400
    assert "recorded_by needs as_of" in response.json()["recorded_by"][0]


def test_it_refuses_a_cursor_made_for_another_ordering(api):
    ingest_table(dataset="market_data", data=[bar("AAPL", m) for m in range(3)])
    nxt = api.get(URL, {"page_size": 1}).json()["next"]
    response = api.get(nxt + "&ordering=-time")
    assert response.status_code == 400
    assert "cursor belongs to ordering='symbol'" in response.json()["cursor"][0]


def test_it_keeps_the_number_of_queries_flat_whatever_the_page_size(api, django_assert_num_queries):
    ingest_table(
        dataset="insider_trades",
        data=[
            {
                "time": z(T0),
                "symbol": "AAPL",
                "insider_name": f"N{i}",
                "transaction_type": "buy",
                "filing_date": z(T0 + timedelta(days=1)),
            }
            for i in range(60)
        ],
    )
    api.get("/api/v1/insider-trades/")  # the token is looked up (and remembered) on first use
    for size in (5, 60):
        # the page itself (rate-limit counters live in Redis, the token was remembered)
        with django_assert_num_queries(1):
            response = api.get("/api/v1/insider-trades/", {"page_size": size, "as_of": z(T0 + timedelta(days=3))})
        assert len(response.json()["results"]) == size


def test_it_renders_a_page_as_csv_parquet_or_arrow_with_the_facts_in_headers(api):
    t, first_recorded, _ = worked_example()
    params = {"as_of": z(t.replace(hour=16)), "recorded_by": z(first_recorded)}

    csv = api.get(URL, {**params, "format": "csv"})
    assert csv["Content-Type"].startswith("text/csv")
    assert csv["X-TSM-At"] == params["as_of"] and csv["X-TSM-Recorded-By"] == params["recorded_by"]
    assert csv["X-TSM-Max-Recorded-At"] == z(first_recorded)
    lines = csv.content.decode().splitlines()
    assert lines[0].startswith("id,time,symbol,open,high,low,close,volume")
    assert ",10.700000," in lines[1] and len(lines) == 2

    parquet = api.get(URL, params, HTTP_ACCEPT="application/vnd.apache.parquet")
    assert parquet["Content-Type"] == "application/vnd.apache.parquet"
    table = pq.read_table(io.BytesIO(parquet.content))
    assert table.schema.field("close").type == pa.decimal128(18, 6)
    assert table.schema.field("time").type == pa.timestamp("us", tz="UTC")
    assert table.column("close").to_pylist() == [Decimal("10.7")]
    assert table.schema.metadata[b"tsm.at"].decode() == params["as_of"]

    arrow = api.get(URL, {**params, "format": "arrow"})
    assert arrow["X-TSM-At"] == params["as_of"]
    streamed = ipc.open_stream(pa.py_buffer(arrow.content)).read_all()
    assert streamed.column("symbol").to_pylist() == ["AAPL"]


def test_it_puts_next_and_previous_links_in_a_link_header_for_tabular_formats(api):
    ingest_table(dataset="market_data", data=[bar("AAPL", m) for m in range(3)])
    first = api.get(URL, {"page_size": 1, "format": "csv"})
    assert 'rel="next"' in first["Link"] and "cursor=" in first["Link"]
    url = first["Link"].split(";")[0].strip("<>")
    second = api.get(url)
    assert 'rel="prev"' in second["Link"] and 'rel="next"' in second["Link"]


def test_it_answers_errors_in_json_even_when_csv_was_asked_for(api):
    response = api.get(URL, {"format": "csv", "time_after": "nope"})
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert "time_after" in response.json()


def test_it_refuses_a_misspelt_parameter_instead_of_silently_ignoring_it(api):
    worked_example()
    response = api.get(URL, {"asof": "2024-03-01T16:00:00Z"})  # not as_of: would list every version
    assert response.status_code == 400
    assert "asof is not a parameter of this endpoint: expected one of" in response.json()["asof"][0]
    assert "as_of" in response.json()["asof"][0]

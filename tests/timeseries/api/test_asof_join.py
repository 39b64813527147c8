"""POST /api/v1/asof-join/: points as JSON, CSV, Parquet or Arrow; one row per point, same format back."""

from __future__ import annotations

import io
from datetime import timedelta
from decimal import Decimal

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

from ingestion.loader import ingest_table
from tests.helpers import T0, bar
from timeseries import pit
from timeseries.formats import iso

pytestmark = pytest.mark.django_db

URL = "/api/v1/asof-join/"


@pytest.fixture
def bars():
    ingest_table(
        dataset="market_data",
        data=[bar(s, m, close=f"{10 + m / 100:.2f}") for s in ("AAPL", "MSFT") for m in range(60)],
    )


POINTS = [
    ("MSFT", T0 + timedelta(minutes=30, seconds=5)),
    ("AAPL", T0 + timedelta(seconds=30)),  # before the first bar closed
    ("AAPL", T0 + timedelta(hours=5)),
    ("NOPE", T0 + timedelta(hours=5)),
]


def _parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def _arrow(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def test_it_joins_json_points_one_row_per_point_in_input_order(api, bars):
    body = [{"symbol": s, "time": iso(t)} for s, t in POINTS]
    response = api.post(URL, body, format="json")
    assert response.status_code == 200, response.content
    rows = response.json()["results"]
    expected = pit.asof_join(POINTS)
    assert [(r["symbol"], r["at"], r["time"], r["close"]) for r in rows] == [
        (e["symbol"], iso(e["at"]), e["time"] and iso(e["time"]), e["close"] and f"{e['close']:f}") for e in expected
    ]
    assert rows[0]["close"] == "10.290000" and rows[1]["time"] is None and rows[3]["close"] is None
    assert response.json()["max_recorded_at"] == rows[0]["recorded_at"]
    assert response["Content-Type"] == "application/json"


def test_it_answers_a_csv_body_in_csv(api, bars):
    body = "symbol,time\n" + "".join(f"{s},{iso(t)}\n" for s, t in POINTS)
    response = api.generic("POST", URL, body.encode(), content_type="text/csv")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/csv")
    lines = response.content.decode().splitlines()
    assert lines[0].split(",")[:4] == ["at", "symbol", "time", "open"]
    assert len(lines) == 1 + len(POINTS)
    assert lines[1].startswith(f"{iso(POINTS[0][1])},MSFT,{iso(T0 + timedelta(minutes=29))},")
    assert response["X-TSM-At"] == "" and response["X-TSM-Max-Recorded-At"]


def test_it_answers_a_parquet_body_in_typed_parquet(api, bars):
    points = pa.table(
        {"symbol": [s for s, _ in POINTS], "time": pa.array([t for _, t in POINTS], pa.timestamp("ms", tz="UTC"))}
    )
    response = api.generic("POST", URL, _parquet(points), content_type="application/vnd.apache.parquet")
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/vnd.apache.parquet"
    table = pq.read_table(io.BytesIO(response.content))
    assert table.num_rows == len(POINTS)
    assert table.schema.field("close").type == pa.decimal128(18, 6)
    assert table.column("close").to_pylist()[:2] == [Decimal("10.29"), None]
    assert table.column("at").to_pylist() == [t for _, t in POINTS]


def test_it_answers_an_arrow_body_in_arrow_unless_asked_otherwise(api, bars):
    points = pa.table({"symbol": ["AAPL"], "time": [iso(T0 + timedelta(minutes=10))]})
    arrow = api.generic("POST", URL, _arrow(points), content_type="application/vnd.apache.arrow.stream")
    assert arrow["Content-Type"] == "application/vnd.apache.arrow.stream"
    assert ipc.open_stream(pa.py_buffer(arrow.content)).read_all().column("close").to_pylist() == [Decimal("10.09")]
    as_json = api.generic(
        "POST", URL, _arrow(points), content_type="application/vnd.apache.arrow.stream", HTTP_ACCEPT="application/json"
    )
    assert as_json.json()["results"][0]["close"] == "10.090000"
    as_csv = api.generic(
        "POST", URL + "?format=csv", _arrow(points), content_type="application/vnd.apache.arrow.stream"
    )
    assert as_csv["Content-Type"].startswith("text/csv")


def test_it_replays_a_join_as_recorded_by_s(api):
    first = ingest_table(dataset="market_data", data=[bar("AAPL", 0, close="10.5")])
    ingest_table(dataset="market_data", data=[bar("AAPL", 0, close="10.7")])
    body = [{"symbol": "AAPL", "time": iso(T0 + timedelta(minutes=5))}]
    assert api.post(URL, body, format="json").json()["results"][0]["close"] == "10.700000"
    replay = api.post(f"{URL}?recorded_by={iso(first.recorded_at)}", body, format="json").json()
    assert replay["results"][0]["close"] == "10.500000"
    assert replay["recorded_by"] == iso(first.recorded_at)


def test_it_joins_sentiment_points_by_symbol_and_platform(api):
    hour = T0.replace(minute=0)
    ingest_table(
        dataset="social_sentiment",
        data=[
            {"time": iso(hour), "symbol": "AAPL", "platform": p, "mention_count": str(n)}
            for p, n in (("reddit", 5), ("x", 7))
        ],
    )
    body = [{"symbol": "AAPL", "platform": "x", "time": iso(hour + timedelta(hours=2))}]
    rows = api.post(f"{URL}?dataset=social_sentiment", body, format="json").json()["results"]
    assert [(r["symbol"], r["platform"], r["mention_count"]) for r in rows] == [("AAPL", "x", 7)]
    missing = api.post(f"{URL}?dataset=social_sentiment", [{"symbol": "AAPL", "time": iso(hour)}], format="json")
    assert missing.status_code == 400
    assert "point 1: platform is missing" in missing.json()["points"][0]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([{"symbol": "AAPL", "time": "2024-03-01T15:30:00"}], "point 1: time='2024-03-01T15:30:00' has no UTC offset"),
        ([{"symbol": "AAPL", "time": "2024-03-01T15:30:00Z"}, {"symbol": "AAPL"}], "point 2: time is missing"),
        ([{"symbol": 7, "time": "2024-03-01T15:30:00Z"}], "point 1: symbol must be a string, not int"),
        ([{"symbol": "A\x00", "time": "2024-03-01T15:30:00Z"}], "symbol must not contain a NUL character"),
        (["AAPL"], "point 1: expected an object with symbol, time"),
        ({"symbol": "AAPL"}, "expected a JSON array of points"),
    ],
)
def test_it_refuses_bad_json_points_saying_which_and_why(api, body, message):
    response = api.post(URL, body, format="json")
    assert response.status_code == 400
    assert message in response.json()["points"][0]


def test_it_refuses_a_naive_timestamp_column_in_parquet(api):
    points = pa.table({"symbol": ["AAPL"], "time": pa.array([T0.replace(tzinfo=None)], pa.timestamp("us"))})
    response = api.generic("POST", URL, _parquet(points), content_type="application/vnd.apache.parquet")
    assert response.status_code == 400
    assert "time is a naive timestamp column" in response.json()["points"][0]


def test_it_refuses_a_csv_without_the_time_column(api):
    response = api.generic("POST", URL, b"symbol,when\nAAPL,2024-03-01T15:30:00Z\n", content_type="text/csv")
    assert response.status_code == 400
    assert "missing time" in response.json()["points"][0]


def test_it_refuses_an_unreadable_parquet_body(api):
    response = api.generic("POST", URL, b"PAR1 not really", content_type="application/vnd.apache.parquet")
    assert response.status_code == 400
    assert "cannot read the Parquet body" in response.json()["detail"]


def test_it_refuses_an_unknown_dataset_and_an_unsupported_body_type(api):
    response = api.post(f"{URL}?dataset=weather", [], format="json")
    assert response.status_code == 400 and "dataset" in response.json()
    response = api.generic("POST", URL, b"<points/>", content_type="application/xml")
    assert response.status_code == 415


def test_it_refuses_more_points_than_the_configured_maximum(api, settings):
    settings.TSM_API_ASOF_MAX_POINTS = 2
    body = [{"symbol": "AAPL", "time": "2024-03-01T15:30:00Z"}] * 3
    response = api.post(URL, body, format="json")
    assert response.status_code == 400
    assert "at most 2 points per request (got 3)" in response.json()["points"][0]


def test_it_answers_an_empty_list_of_points_with_no_rows(api):
    response = api.post(URL, [], format="json")
    assert response.status_code == 200
    assert response.json()["results"] == []


def test_it_refuses_points_outside_the_supported_range_of_instants(api):
    far = pa.table({"symbol": ["AAPL"], "time": pa.array([-(2**62)], pa.timestamp("us", tz="UTC"))})
    response = api.generic("POST", URL, _parquet(far), content_type="application/vnd.apache.parquet")
    assert response.status_code == 400
    assert "time values must be between 1000-01-01 and 9998-12-31" in response.json()["points"][0]
    overflow = pa.table({"symbol": ["AAPL"], "time": pa.array([2**62], pa.timestamp("s", tz="UTC"))})
    response = api.generic("POST", URL, _arrow(overflow), content_type="application/vnd.apache.arrow.stream")
    assert response.status_code == 400
    assert "time values must be between" in response.json()["points"][0]


def test_it_truncates_nanosecond_points_to_microseconds(api, bars):
    closed = T0 + timedelta(minutes=1)  # the first bar is known from here on
    ns = pa.array([int(closed.timestamp()) * 10**9 + 500], pa.timestamp("ns", tz="UTC"))
    points = pa.table({"symbol": ["AAPL"], "time": ns})
    table = pq.read_table(
        io.BytesIO(api.generic("POST", URL, _parquet(points), content_type="application/vnd.apache.parquet").content)
    )
    assert table.column("at").to_pylist() == [closed]
    assert table.column("time").to_pylist() == [T0]


def test_it_refuses_a_csv_with_a_duplicated_column(api):
    response = api.generic("POST", URL, b"symbol,time,time\nAAPL,2024-03-01T15:30:00Z,x\n", content_type="text/csv")
    assert response.status_code == 400
    assert "column time appears more than once" in response.json()["points"][0]

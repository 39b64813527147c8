"""The shared input rules (timeseries/rules.py) at both ingest doors: files and the write API.

Edges of the stored-instant range [1800-01-01T00:00:00Z, 2200-01-01T00:00:00Z) and of the symbol
rule: the first and last admitted values are stored, one step outside is refused naming the row and
the column, and nothing of a refused input is stored.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from rest_framework.test import APIClient

from ingestion import buffer, influx
from ingestion.loader import LoadRejected, ingest_file
from tests.ingestion.influx_server import influx_server
from timeseries.models import GovernmentEvent, InsiderTrade, MarketData

pytestmark = pytest.mark.django_db

UTC = UTC
SYM32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
assert len(SYM32) == 32


def bar_at(time: str, symbol: str = "AAPL", **extra) -> dict:
    return {
        "time": time,
        "symbol": symbol,
        "open": "10",
        "high": "11",
        "low": "9",
        "close": "10.5",
        "volume": "100",
        **extra,
    }


def csv_bytes(rows: list[dict]) -> bytes:
    columns = list(dict.fromkeys(c for r in rows for c in r))
    lines = [",".join(columns)] + [",".join(str(r.get(c, "")) for c in columns) for r in rows]
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture(scope="session")
def influxd():
    with influx_server() as server:
        yield server


@pytest.fixture
def influx_backup_settings(influxd, settings, db):
    """The backup pointed at a real influxd started by the tests, with a database of its own."""
    settings.TSM_INFLUX_URL = influxd.url
    settings.TSM_INFLUX_DB = f"tsm_test_{uuid.uuid4().hex[:10]}"
    settings.TSM_INFLUX_BACKUP = "subminute"
    yield settings
    influxd.drop_database(settings.TSM_INFLUX_DB)


def through_file(dataset: str, rows: list[dict]) -> list[dict] | int:
    """Rows stored (count) or the errors as dicts."""
    try:
        result = ingest_file(dataset=dataset, path=csv_bytes(rows), fmt="csv")
    except LoadRejected as exc:
        return [{"row": e.row, "column": e.column, "message": e.message} for e in exc.result.errors]
    return result.inserted


def through_api(client: APIClient, dataset: str, rows: list[dict]) -> list[dict] | int:
    response = client.generic("POST", f"/api/v1/ingest/{dataset}/", json.dumps(rows), content_type="application/json")
    if response.status_code == 400:
        return response.json()["errors"]
    assert response.status_code == 202, response.content
    assert response.json()["rejected"] == 0
    return buffer.buffer_flush(dataset=dataset).rows


@pytest.fixture(params=["file", "api"])
def door(request, writer):
    if request.param == "file":
        return through_file
    return lambda dataset, rows: through_api(writer, dataset, rows)


# --- instants --------------------------------------------------------------------------------------


def test_the_first_and_last_admitted_instants_are_stored(door):
    rows = [
        bar_at("1800-01-01T00:00:00Z"),
        # the last bar whose close (time + 1 minute) is still before 2200
        bar_at("2199-12-31T23:58:00Z"),
        bar_at("2199-12-31T23:00:00Z", known_at="2199-12-31T23:59:59.999999Z"),
    ]
    assert door("market_data", rows) == 3
    stored = sorted(MarketData.objects.values_list("time", "known_at"))
    assert stored[0] == (datetime(1800, 1, 1, tzinfo=UTC), datetime(1800, 1, 1, 0, 1, tzinfo=UTC))
    assert stored[-1] == (datetime(2199, 12, 31, 23, 58, tzinfo=UTC), datetime(2199, 12, 31, 23, 59, tzinfo=UTC))
    assert (datetime(2199, 12, 31, 23, tzinfo=UTC), datetime(2199, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)) in stored


@pytest.mark.parametrize(
    "row, column, words",
    [
        (bar_at("1799-12-31T23:59:59.999999Z"), "time", "1799-12-31T23:59:59.999999Z is outside the supported range"),
        (bar_at("2200-01-01T00:00:00Z"), "time", "2200-01-01T00:00:00Z is outside the supported range"),
        (bar_at("9999-12-31T23:59:00Z"), "time", "9999-12-31T23:59:00Z is outside the supported range"),
        (bar_at("0001-01-01T00:00:00Z"), "time", "0001-01-01T00:00:00Z is outside the supported range"),
        (
            bar_at("2199-12-31T23:00:00Z", known_at="2200-01-01T00:00:00Z"),
            "known_at",
            "2200-01-01T00:00:00Z is outside",
        ),
        # derived: the bar's close is one minute past the last admitted instant
        (
            bar_at("2199-12-31T23:59:00Z"),
            "known_at",
            "time 2199-12-31T23:59:00Z gives known_at 2200-01-01T00:00:00Z (derived: bar close",
        ),
    ],
    ids=["before-1800", "at-2200", "year-9999", "year-1", "given-known_at", "derived-known_at"],
)
def test_an_instant_one_step_outside_is_refused_naming_row_and_column(door, row, column, words):
    errors = door("market_data", [bar_at("2024-03-01T14:30:00Z"), row])
    assert [(e["row"], e["column"]) for e in errors] == [(2, column)], errors
    assert words in errors[0]["message"]
    assert "from 1800-01-01T00:00:00Z up to (not including) 2200-01-01T00:00:00Z" in errors[0]["message"]
    assert MarketData.objects.count() == 0


def test_a_derived_known_at_of_every_rule_is_checked(door):
    """Sentiment: window end (time + 1 hour); insider trades: the filing date, itself a stored instant."""
    errors = door("social_sentiment", [{"time": "2199-12-31T23:00:00Z", "symbol": "AAPL", "platform": "x"}])
    assert [(e["row"], e["column"]) for e in errors] == [(1, "known_at")]
    assert "gives known_at 2200-01-01T00:00:00Z (derived: window end" in errors[0]["message"]
    assert door("social_sentiment", [{"time": "2199-12-31T22:00:00Z", "symbol": "AAPL", "platform": "x"}]) == 1

    trade = {"time": "2199-12-30T00:00:00Z", "symbol": "AAPL", "insider_name": "A", "transaction_type": "buy"}
    errors = door("insider_trades", [{**trade, "filing_date": "2200-01-01T00:00:00Z"}])
    assert [(e["row"], e["column"]) for e in errors] == [(1, "filing_date")]
    assert "outside the supported range" in errors[0]["message"]
    assert door("insider_trades", [{**trade, "filing_date": "2199-12-31T23:59:59.999999Z"}]) == 1
    assert InsiderTrade.objects.get().known_at == datetime(2199, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


# --- symbols ----------------------------------------------------------------------------------------


def test_symbols_at_the_edge_of_the_rule_are_stored(door):
    symbols = [SYM32, "A./B^=_:-", "BRK/B", "EUR/USD", "X^Y", "ES=F", "NYSE:IBM", "9"]
    rows = [bar_at("2024-03-01T14:30:00Z", s) for s in symbols]
    assert door("market_data", rows) == len(symbols)
    assert set(MarketData.objects.values_list("symbol", flat=True)) == set(symbols)


@pytest.mark.parametrize(
    "symbol, words",
    [
        (SYM32 + "6", "longer than 32 characters (33)"),
        ("A B", "contains ' '"),
        ("X?Y", "contains '?'"),
        ("X#Y", "contains '#'"),
        ("..", "starts with '.'"),
        (".A", "starts with '.'"),
        ("ÄB", "non-ASCII"),
        ("-A", "starts with '-'"),
        ("A/../B", "has a / not followed by a letter or digit"),
        ("A/", "has a / not followed by a letter or digit"),
    ],
    ids=[
        "33-chars",
        "space",
        "question-mark",
        "hash",
        "dot-dot",
        "leading-dot",
        "non-ascii",
        "leading-dash",
        "dot-segment",
        "trailing-slash",
    ],
)
def test_a_symbol_the_rule_refuses_is_named_and_nothing_is_stored(door, symbol, words):
    errors = door("market_data", [bar_at("2024-03-01T14:30:00Z", "AAPL"), bar_at("2024-03-01T14:31:00Z", symbol)])
    assert [(e["row"], e["column"]) for e in errors] == [(2, "symbol")], errors
    assert words in errors[0]["message"]
    assert MarketData.objects.count() == 0


def test_every_symbol_column_obeys_the_rule_including_arrays(door):
    event = {"time": "2024-03-01T14:30:00Z", "event_type": "tariff"}
    errors = door("government_events", [{**event, "primary_symbol": "A B"}])
    assert [(e["row"], e["column"]) for e in errors] == [(1, "primary_symbol")]
    errors = door("government_events", [{**event, "affected_symbols": "BRK/B|X?Y"}])
    assert [(e["row"], e["column"]) for e in errors] == [(1, "affected_symbols")]
    assert "'X?Y' contains '?'" in errors[0]["message"]
    assert GovernmentEvent.objects.count() == 0
    # a market-wide event (no primary symbol) and admitted symbols in the array are stored
    assert door("government_events", [{**event, "affected_symbols": "BRK/B|" + SYM32}]) == 1
    assert GovernmentEvent.objects.get().affected_symbols == ["BRK/B", SYM32]


# --- the InfluxDB backup (a consumer) ---------------------------------------------------------------


def test_the_influx_backup_round_trips_edge_rows(influx_backup_settings):
    """Sub-minute bars at both ends of the range, with edge symbols, go to InfluxDB and come back."""
    from datetime import timedelta

    from django.db import connection

    second = timedelta(seconds=1)
    first, last = datetime(1800, 1, 1, tzinfo=UTC), datetime(2199, 12, 31, 23, 59, 58, tzinfo=UTC)
    symbols = ("BRK/B", "A.B^C=D_E:F-G", SYM32)
    rows = [bar_at(t.isoformat(), s) for s in symbols for t in (first, first + second, last - second, last)]
    ingest_file(dataset="market_data", path=csv_bytes(rows), fmt="csv", bar_interval=second)
    stored = sorted(MarketData.objects.values_list("symbol", "time", "known_at"))
    assert max(k for _, _, k in stored) == datetime(2199, 12, 31, 23, 59, 59, tzinfo=UTC)

    assert influx.influx_backup_run().points == len(rows)
    with connection.cursor() as cur:
        cur.execute("TRUNCATE market_data")
        cur.execute("DELETE FROM timeseries_series WHERE dataset = 'market_data'")
    for start, end in (
        (first, first + timedelta(days=1)),
        (last - timedelta(days=1), datetime(2200, 1, 1, tzinfo=UTC)),
    ):
        influx.influx_restore(dataset="market_data", start=start, end=end)
    assert sorted(MarketData.objects.values_list("symbol", "time", "known_at")) == stored

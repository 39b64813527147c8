"""The security master (dataset ``securities``): loading by ``listed_at``, its row checks, its versions
(a key without time: a corrected listing is a revision), known_at before the listing, the selector
``pit.securities`` and the ticker helpers of timeseries/securities.py. Runs on both lanes (the
TimescaleDB one with DATABASE_URL pointing at it): the table is a plain table on both."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ingestion.checks import InputError
from ingestion.loader import LoadRejected, ingest_file, ingest_table
from timeseries import lifecycle, pit, securities
from timeseries.models import Security

pytestmark = pytest.mark.django_db

L0 = datetime(2012, 5, 18, 13, 30, tzinfo=UTC)  # a listing
ANNOUNCED = L0 - timedelta(days=30)


def iso(d: datetime) -> str:
    return d.isoformat()


def security(sid: str = "S1", symbol: str = "FB", listed: datetime = L0, **more) -> dict:
    row = {"security_id": sid, "symbol": symbol, "name": f"{symbol} Inc.", "exchange": "XNAS", "listed_at": iso(listed)}
    return {**row, **{k: iso(v) if isinstance(v, datetime) else v for k, v in more.items()}}


def rejected(rows, **kwargs) -> list[str]:
    with pytest.raises(LoadRejected) as info:
        ingest_table(dataset="securities", data=rows, **kwargs)
    assert Security.objects.count() == 0
    return [str(e) for e in info.value.result.errors]


# --- loading --------------------------------------------------------------------------------------


def test_it_loads_securities_by_listed_at_and_defaults_known_at_to_the_listing():
    result = ingest_table(dataset="securities", data=[security(), security("S2", "AAPL", L0 - timedelta(days=9000))])
    assert (result.inserted, result.revised, result.rejected) == (2, 0, 0)
    stored = Security.objects.get(security_id="S1")
    assert (stored.time, stored.known_at, stored.symbol, stored.exchange) == (L0, L0, "FB", "XNAS")
    assert stored.figi == "" and stored.delisted_at is None


def test_it_loads_a_csv_file_and_the_same_file_again_as_duplicates(tmp_path):
    path = tmp_path / "securities.csv"
    path.write_text(
        "security_id,symbol,name,exchange,listed_at,delisted_at,known_at\n"
        f"S1,FB,Meta,XNAS,{iso(L0)},,{iso(ANNOUNCED)}\n"
        f"S2,TWTR,Twitter,XNYS,2013-11-07T14:30:00Z,2022-11-08T14:30:00Z,\n"
    )
    first = ingest_file(dataset="securities", path=path)
    assert first.inserted == 2
    again = ingest_file(dataset="securities", path=tmp_path / "securities.csv", source="again")
    assert again.inserted + again.revised == 0
    twitter = Security.objects.get(security_id="S2")
    assert twitter.delisted_at == datetime(2022, 11, 8, 14, 30, tzinfo=UTC)
    assert Security.objects.get(security_id="S1").known_at == ANNOUNCED


def test_it_accepts_time_as_another_name_of_listed_at_but_not_both():
    row = security()
    row["time"] = row.pop("listed_at")
    assert ingest_table(dataset="securities", data=[row]).inserted == 1
    with pytest.raises(InputError, match="columns 'time' and 'listed_at' name the same column"):
        ingest_table(dataset="securities", data=[{**security("S3"), "time": iso(L0)}])


def test_a_missing_listed_at_column_is_named_as_listed_at():
    row = security()
    del row["listed_at"]
    with pytest.raises(InputError, match="missing required column\\(s\\) 'listed_at'"):
        ingest_table(dataset="securities", data=[row])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"listed_at": "soon"}, "row 1, column 'listed_at': 'soon' is not an ISO 8601 timestamp with an offset"),
        ({"listed_at": ""}, "row 1, column 'listed_at': listed_at is required"),
        ({"exchange": "NYSE!"}, "row 1, column 'exchange': exchange must be an ISO 10383 MIC"),
        ({"exchange": "xnys"}, "row 1, column 'exchange': exchange must be an ISO 10383 MIC"),
        ({"exchange": ""}, "row 1, column 'exchange': exchange is required"),
        ({"security_id": "A B"}, "row 1, column 'security_id': 'A B' contains ' ': a symbol is"),
        ({"security_id": ""}, "row 1, column 'security_id': security_id is required"),
        ({"symbol": "../X"}, "row 1, column 'symbol': '../X' starts with '.'"),
        ({"figi": "BBG000BLNNH6X"}, "row 1, column 'figi': figi is longer than 12 characters (13)"),
        (
            {"delisted_at": iso(L0 - timedelta(days=1))},
            "row 1, column 'delisted_at': delisted_at is before listed_at",
        ),
    ],
)
def test_every_row_check_names_its_column_and_stores_nothing(change, message):
    errors = rejected([security(**change)])
    assert any(e.startswith(message) for e in errors), errors


def test_a_listing_may_be_known_long_before_it_happens():
    ingest_table(dataset="securities", data=[security(known_at=L0 - timedelta(days=3650))])
    assert Security.objects.get().known_at == L0 - timedelta(days=3650)


def test_bad_rows_are_quarantined_with_on_error_skip():
    result = ingest_table(dataset="securities", data=[security(), security("S2", exchange="NOPE!")], on_error="skip")
    assert (result.inserted, result.rejected) == (1, 1)
    assert [e.column for e in result.errors] == ["exchange"]


# --- versions -------------------------------------------------------------------------------------


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "staged"])
def test_a_corrected_listed_at_with_the_same_known_at_is_a_revision_with_one_current_version(settings, direct):
    settings.TSM_INGEST_DIRECT = direct
    ingest_table(dataset="securities", data=[security(known_at=ANNOUNCED)])
    fixed = ingest_table(dataset="securities", data=[security(listed=L0 + timedelta(hours=1), known_at=ANNOUNCED)])
    assert (fixed.inserted, fixed.revised) == (0, 1)
    assert Security.objects.count() == 2
    now = pit.securities(at=L0 + timedelta(days=1))
    assert [(r["security_id"], r["time"]) for r in now] == [("S1", L0 + timedelta(hours=1))]


def test_two_versions_of_one_security_in_one_file_are_two_versions():
    delisted = L0 + timedelta(days=400)
    result = ingest_table(
        dataset="securities",
        data=[security(), security(delisted_at=delisted, known_at=delisted - timedelta(days=10))],
    )
    assert (result.inserted, result.revised) == (1, 1)


def test_a_delisting_announced_later_applies_only_from_its_announcement():
    ingest_table(dataset="securities", data=[security()])
    announced, delisted = L0 + timedelta(days=300), L0 + timedelta(days=330)
    later = ingest_table(dataset="securities", data=[security(delisted_at=delisted, known_at=announced)])
    assert later.revised == 1
    before = pit.securities(at=announced - timedelta(seconds=1))
    after = pit.securities(at=announced)
    assert [r["delisted_at"] for r in before] == [None]
    assert [r["delisted_at"] for r in after] == [delisted]
    state = pit.state_as_of(dataset="securities", at=announced)  # the registry's state selector
    assert [r["delisted_at"] for r in state] == [delisted]


def test_a_security_announced_before_its_listing_is_known_from_the_announcement():
    ingest_table(dataset="securities", data=[security(known_at=ANNOUNCED)])
    assert pit.securities(at=ANNOUNCED - timedelta(seconds=1)) == []
    assert [r["security_id"] for r in pit.securities(at=ANNOUNCED)] == ["S1"]  # listed_at is after T


def test_the_selector_replays_what_was_recorded_and_matches_ids_or_tickers():
    ingest_table(dataset="securities", data=[security(), security("S2", "AAPL")])
    recorded = Security.objects.get(security_id="S1").recorded_at
    ingest_table(dataset="securities", data=[security(name="Meta Platforms", known_at=L0 + timedelta(days=1))])
    at = L0 + timedelta(days=2)
    assert [r["name"] for r in pit.securities(at=at, symbols=["FB"])] == ["Meta Platforms"]
    assert [r["name"] for r in pit.securities(at=at, symbols=["S1"], recorded_by=recorded)] == ["FB Inc."]
    assert [r["security_id"] for r in pit.securities(at=at)] == ["S1", "S2"]


# --- tickers over time (timeseries/securities.py) -------------------------------------------------


def test_a_ticker_names_the_security_listed_under_it_at_that_instant():
    gone = L0 + timedelta(days=100)
    ingest_table(
        dataset="securities",
        data=[
            security("OLD", "XYZ", L0 - timedelta(days=1000), delisted_at=gone),
            security("NEW", "XYZ", gone + timedelta(days=5)),
        ],
    )
    assert securities.security_for_ticker(symbol="XYZ", at=L0) == "OLD"
    assert securities.security_for_ticker(symbol="XYZ", at=gone) is None  # delisted at that instant
    assert securities.security_for_ticker(symbol="XYZ", at=gone, strict=True) == "OLD"  # just before it
    assert securities.security_for_ticker(symbol="XYZ", at=gone + timedelta(days=6)) == "NEW"
    assert securities.ticker_at(security_id="NEW", at=L0) is None  # not listed yet
    assert securities.ticker_at(security_id="OLD", at=L0) == "XYZ"


def test_the_helpers_read_the_security_master_as_known_at_an_instant():
    ingest_table(dataset="securities", data=[security(known_at=ANNOUNCED)])
    assert securities.ticker_at(security_id="S1", at=L0) == "FB"
    assert securities.ticker_at(security_id="S1", at=L0, known_at=ANNOUNCED - timedelta(seconds=1)) is None


# --- lifecycle: reference data never expires ------------------------------------------------------


def test_retention_never_expires_securities_even_if_configured(settings):
    settings.TSM_RETENTION = {**settings.TSM_RETENTION, "securities": "1 day"}
    ingest_table(dataset="securities", data=[security(listed=L0 - timedelta(days=9000))])
    assert lifecycle.retention_horizon(dataset="securities") is None
    assert lifecycle.compress_after(dataset="securities") is None
    assert "reference data never expires" in lifecycle.retention_preview(dataset="securities").method
    assert "securities" not in [r.dataset for r in lifecycle.retention_run()]
    lifecycle.retention_apply(dataset="securities")
    assert Security.objects.count() == 1

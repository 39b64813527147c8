"""``manage.py history market_data --at T --symbols X [--adjust ...] --format json|csv|table``: the
bars of a security across its ticker change, adjusted as known at T, in each format, and its errors."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import CommandError, call_command

from ingestion.loader import ingest_table
from tests.helpers import manage

DAY = timedelta(days=1)
D0 = datetime(2022, 6, 6, 13, 30, tzinfo=UTC)
RENAMED = D0 + DAY  # FB -> META
SPLIT = D0 + 2 * DAY  # 4-for-1, announced ANNOUNCED
ANNOUNCED = D0 + 5 * DAY
LATER = D0 + 10 * DAY


def load() -> None:
    ingest_table(
        dataset="securities",
        data=[
            {
                "security_id": "S1",
                "symbol": "FB",
                "name": "Meta",
                "exchange": "XNAS",
                "listed_at": "2012-05-18T13:30:00Z",
            }
        ],
    )
    change = {"symbol": "FB", "action_type": "symbol_change", "ex_date": RENAMED.isoformat(), "new_symbol": "META"}
    ingest_table(dataset="corporate_actions", data=[change])  # before the actions naming META
    ingest_table(
        dataset="corporate_actions",
        data=[
            {"symbol": "META", "action_type": "split", "ex_date": SPLIT.isoformat(), "ratio": "4"}
            | {"known_at": ANNOUNCED.isoformat()},
            {"symbol": "META", "action_type": "cash_dividend", "ex_date": (D0 + 3 * DAY).isoformat(), "amount": "60"},
        ],
    )
    closes = ["200.10", "200", "50", "50"]
    rows = []
    for i, close in enumerate(closes):
        t = D0 + i * DAY
        o = {"open": close, "high": close, "low": close, "close": close, "volume": "1001", "vwap": close}
        rows.append({"time": t.isoformat(), "symbol": "FB" if t < RENAMED else "META", **o})
    ingest_table(dataset="market_data", data=rows)


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("history", "market_data", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.mark.django_db
def test_json_lists_the_bars_oldest_first_under_each_ticker_with_the_security_id():
    load()
    out, err = run("--at", LATER.isoformat(), "--symbols", "META", "--format", "json")
    bars = json.loads(out)
    assert [(b["symbol"], b["security_id"], b["time"]) for b in bars] == [
        ("FB", "S1", "2022-06-06T13:30:00Z"),
        ("META", "S1", "2022-06-07T13:30:00Z"),
        ("META", "S1", "2022-06-08T13:30:00Z"),
        ("META", "S1", "2022-06-09T13:30:00Z"),
    ]
    assert list(bars[0]) == [
        "symbol", "security_id", "time", "open", "high", "low", "close", "vwap", "volume", "known_at", "recorded_at"
    ]  # fmt: skip
    assert bars[0]["close"] == "200.100000" and bars[0]["volume"] == 1001
    assert bars[0]["known_at"] == "2022-06-06T13:31:00Z" and bars[0]["recorded_at"].endswith("Z")
    assert err == ""


@pytest.mark.django_db
def test_split_and_total_apply_what_is_known_at_t():
    load()
    before, _ = run("--at", (ANNOUNCED - DAY).isoformat(), "--symbols", "META", "--adjust", "split", "--format", "json")
    assert json.loads(before)[0]["close"] == "200.100000"  # the split is not announced yet
    split, _ = run("--at", LATER.isoformat(), "--symbols", "META", "--adjust", "split", "--format", "json")
    first = json.loads(split)[0]
    assert (first["close"], first["volume"]) == ("50.025000", 4004)
    total, err = run("--at", LATER.isoformat(), "--symbols", "META", "--adjust", "total", "--format", "json")
    assert json.loads(total)[0]["close"] == "50.025000"  # the dividend of 60 on a close of 50: unapplied
    assert "dividend of S1 with ex_date 2022-06-09T13:30:00Z not applied: close_prev 50" in err


@pytest.mark.django_db
def test_csv_and_table():
    load()
    out, _ = run("--at", LATER.isoformat(), "--security-ids", "S1", "--adjust", "split", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["symbol"] for r in rows] == ["FB", "META", "META", "META"] and rows[1]["close"] == "50.000000"
    assert (rows[0]["vwap"], rows[0]["volume"], rows[0]["security_id"]) == ("50.025000", "4004", "S1")
    table, _ = run("--at", LATER.isoformat(), "--symbols", "META", "--adjust", "split", "--start", RENAMED.isoformat())
    assert table.startswith("adjust: split\nsymbol") and "(3 rows)" in table and "S1" in table


@pytest.mark.django_db
def test_an_unknown_ticker_prints_its_bars_raw_and_says_so():
    load()
    out, err = run("--at", LATER.isoformat(), "--symbols", "FB", "--adjust", "split", "--format", "json")
    assert [(b["symbol"], b["security_id"], b["close"]) for b in json.loads(out)] == [("FB", None, "200.100000")]
    assert "ticker 'FB' names no security known at --at" in err


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--adjust", "raw"], "--adjust='raw' is not one of none, split, total"),
        (["--at", "yesterday"], "--at="),
        (["--recorded-by", "2024-01-01"], "--recorded-by"),
        (["--symbols", "A B"], "--symbols"),
        (["--symbols", ""], "--symbols or --security-ids is required"),
        (["--start", "2024-02-01T00:00:00Z", "--end", "2024-01-01T00:00:00Z"], "--start must not be after --end"),
        (["--limit", "0"], "--limit must be a positive integer"),
    ],
)
def test_errors_name_the_parameter(args, message):
    base = {"--at": "2024-03-01T00:00:00Z", "--symbols": "META"}
    given = dict(zip(args[::2], args[1::2]))
    argv = [x for k, v in {**base, **given}.items() for x in (k, v)]
    with pytest.raises(CommandError) as info:
        run(*argv)
    assert message in str(info.value)


@pytest.mark.django_db(transaction=True)
def test_the_command_as_a_new_user_runs_it():
    load()
    done = manage(
        "history",
        "market_data",
        "--at",
        LATER.isoformat(),
        "--symbols",
        "META",
        "--adjust",
        "split",
        "--format",
        "json",
    )
    assert done.returncode == 0, done.stderr
    assert [b["close"] for b in json.loads(done.stdout)] == ["50.025000", "50.000000", "50.000000", "50.000000"]
    bad = manage("history", "market_data", "--at", LATER.isoformat(), "--symbols", "META", "--adjust", "everything")
    assert bad.returncode != 0 and "--adjust='everything' is not one of none, split, total" in bad.stderr

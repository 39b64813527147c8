"""Adjusted history as of T (timeseries/pit/adjust.py, docs/adjustment.md): examples of the rule —
a split announced after T, as recorded by S, FB -> META, a reused ticker, dividends that cannot be
applied, the rounding, bad parameters. The property tests against the brute-force model are in
test_adjust_oracle.py. Runs on both lanes (DATABASE_URL at the TimescaleDB cluster for the other)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db.models import Max

from ingestion.loader import ingest_table
from timeseries import params, pit
from timeseries.models import MarketData

pytestmark = pytest.mark.django_db

DAY = timedelta(days=1)
LISTED = datetime(2012, 5, 18, 13, 30, tzinfo=UTC)
D0 = datetime(2022, 6, 1, 13, 30, tzinfo=UTC)  # the first bar
RENAMED = datetime(2022, 6, 9, 13, 30, tzinfo=UTC)  # FB -> META
SPLIT = datetime(2022, 6, 20, 13, 30, tzinfo=UTC)  # 4-for-1 ex_date
ANNOUNCED = SPLIT + 5 * DAY  # ... announced late, after its ex_date


def iso(d: datetime) -> str:
    return d.isoformat()


def day_bar(symbol: str, t: datetime, close: str, volume: int = 1000, **more) -> dict:
    c = Decimal(close)
    row = {"time": iso(t), "symbol": symbol, "open": str(c), "high": str(c + 1), "low": str(c - 1), "close": close}
    return {**row, "volume": str(volume), **more}


def security(sid: str, symbol: str, listed: datetime = LISTED, **more) -> dict:
    row = {"security_id": sid, "symbol": symbol, "name": symbol, "exchange": "XNAS", "listed_at": iso(listed)}
    return {**row, **{k: iso(v) if isinstance(v, datetime) else v for k, v in more.items()}}


def action(kind: str, ex: datetime, symbol: str = "", security_id: str = "", **more) -> dict:
    row = {"security_id": security_id, "symbol": symbol, "action_type": kind, "ex_date": iso(ex)}
    return {**row, **{k: iso(v) if isinstance(v, datetime) else v for k, v in more.items()}}


@pytest.fixture
def meta():
    """S1 listed as FB, renamed META on RENAMED; one bar a day from D0 to D0 + 29 days, close 100 under FB
    and 200 under META before the split, 50 after it (4-for-1 on SPLIT, announced on ANNOUNCED)."""
    ingest_table(dataset="securities", data=[security("S1", "FB")])
    ingest_table(dataset="corporate_actions", data=[action("symbol_change", RENAMED, "FB", new_symbol="META")])
    bars = []
    for i in range(30):
        t = D0 + i * DAY
        close = "100" if t < RENAMED else "200" if t < SPLIT else "50"
        bars.append(day_bar("FB" if t < RENAMED else "META", t, close))
    ingest_table(dataset="market_data", data=bars)
    return bars


def load_split(ratio: str = "4", **more):
    return ingest_table(dataset="corporate_actions", data=[action("split", SPLIT, "META", ratio=ratio, **more)])


def closes(answer: dict) -> list[tuple[str, Decimal]]:
    return [(b["symbol"], b["close"]) for b in answer["bars"]]


# --- the rule ----------------------------------------------------------------------------------------


def test_a_split_announced_after_t_is_not_applied_until_t_passes_its_announcement(meta):
    load_split(known_at=ANNOUNCED)
    before = pit.history(dataset="market_data", at=ANNOUNCED - timedelta(seconds=1), symbols=["META"], adjust="split")
    after = pit.history(dataset="market_data", at=ANNOUNCED, symbols=["META"], adjust="split")
    assert before["adjust"] == after["adjust"] == "split"
    pre_split = [b for b in before["bars"] if b["time"] < SPLIT]
    assert {b["close"] for b in pre_split if b["symbol"] == "META"} == {Decimal("200")}
    applied = {b["time"]: b for b in after["bars"]}
    assert applied[SPLIT - DAY]["close"] == Decimal("50") and applied[SPLIT - DAY]["volume"] == 4000
    assert applied[SPLIT - DAY]["high"] == Decimal("50.25")  # 201 / 4
    assert applied[SPLIT]["close"] == Decimal("50") and applied[SPLIT]["volume"] == 1000  # on the new basis
    assert applied[D0]["close"] == Decimal("25") and applied[D0]["symbol"] == "FB"


def test_as_recorded_before_the_action_was_loaded_it_is_not_applied(meta):
    at = SPLIT + 10 * DAY
    recorded_before = MarketData.objects.aggregate(last=Max("recorded_at"))["last"]
    assert load_split(known_at=SPLIT - 10 * DAY).recorded_at > recorded_before
    now = pit.adjusted_history(at=at, symbols=["META"], adjust="split", start=D0, end=D0)
    replay = pit.adjusted_history(
        at=at, symbols=["META"], adjust="split", start=D0, end=D0, recorded_by=recorded_before
    )
    assert closes(now) == [("FB", Decimal("25"))]
    assert closes(replay) == [("FB", Decimal("100"))]
    assert replay["recorded_by"] == recorded_before


def test_a_split_is_applied_only_once_its_ex_date_is_reached_even_when_announced_before(meta):
    load_split(known_at=SPLIT - 10 * DAY)
    bars = pit.adjusted_history(at=SPLIT - timedelta(seconds=1), symbols=["META"], adjust="split", end=D0)["bars"]
    assert [b["close"] for b in bars] == [Decimal("100")]  # t < ex_date <= T fails: T is before ex_date


def test_a_corrected_ratio_replaces_the_first_from_its_known_at(meta):
    load_split(known_at=SPLIT - 10 * DAY, ratio="2")  # the first announcement said 2-for-1 ...
    fixed_at = SPLIT + 2 * DAY
    load_split(known_at=fixed_at)  # ... corrected to 4-for-1
    q = {"symbols": ["META"], "adjust": "split", "start": D0, "end": D0}
    assert closes(pit.adjusted_history(at=fixed_at - timedelta(seconds=1), **q)) == [("FB", Decimal("50"))]
    assert closes(pit.adjusted_history(at=fixed_at, **q)) == [("FB", Decimal("25"))]


def test_meta_over_the_rename_returns_the_fb_bars_under_fb_with_the_security_id(meta):
    answer = pit.adjusted_history(at=D0 + 40 * DAY, symbols=["META"], start=D0, end=D0 + 29 * DAY)
    assert answer["adjust"] == "none" and answer["unapplied"] == []
    assert answer["securities"] == [
        {"requested": "META", "by": "symbol", "security_id": "S1", "resolved_at": D0 + 40 * DAY}
    ]
    bars = answer["bars"]
    assert len(bars) == 30 and {b["security_id"] for b in bars} == {"S1"}
    assert [b["symbol"] for b in bars] == ["FB" if b["time"] < RENAMED else "META" for b in bars]
    assert [b["time"] for b in bars] == sorted(b["time"] for b in bars)
    by_id = pit.adjusted_history(at=D0 + 40 * DAY, security_ids=["S1"])
    assert [b["time"] for b in by_id["bars"]] == [b["time"] for b in bars]
    through_history = pit.history(dataset="market_data", at=D0 + 40 * DAY, security_ids=["S1"])
    assert through_history["adjust"] == "none" and through_history["bars"] == by_id["bars"]


def test_a_ticker_not_trading_at_t_falls_back_to_the_security_it_named_at_the_end_of_the_range(meta):
    at = D0 + 40 * DAY
    answer = pit.adjusted_history(at=at, symbols=["FB"], end=RENAMED - DAY)
    assert answer["securities"][0]["security_id"] == "S1"
    assert answer["securities"][0]["resolved_at"] == RENAMED - DAY
    assert {b["symbol"] for b in answer["bars"]} == {"FB"}
    # the whole range: FB names nothing at T nor at the end of the range: raw FB bars, no security
    raw = pit.adjusted_history(at=at, symbols=["FB"], adjust="split")
    assert raw["securities"][0]["security_id"] is None
    assert {(b["symbol"], b["security_id"]) for b in raw["bars"]} == {("FB", None)}


def test_before_the_rename_was_known_meta_names_nothing_and_its_bars_are_raw():
    ingest_table(dataset="securities", data=[security("S1", "FB")])
    ingest_table(dataset="market_data", data=[day_bar("META", RENAMED, "200")])
    answer = pit.adjusted_history(at=RENAMED + DAY, symbols=["META"], adjust="total")
    assert [(b["symbol"], b["security_id"], b["close"]) for b in answer["bars"]] == [("META", None, Decimal("200"))]


def test_a_reused_ticker_means_the_security_trading_under_it_at_t():
    gone = D0 + 10 * DAY
    ingest_table(
        dataset="securities",
        data=[security("OLD", "XYZ", delisted_at=gone), security("NEW", "XYZ", listed=gone + 5 * DAY)],
    )
    ingest_table(dataset="market_data", data=[day_bar("XYZ", D0 + i * DAY, str(10 + i)) for i in range(20)])
    ingest_table(dataset="corporate_actions", data=[action("split", D0 + 5 * DAY, security_id="OLD", ratio="2")])
    late = pit.adjusted_history(at=D0 + 30 * DAY, symbols=["XYZ"], adjust="split")
    assert {b["security_id"] for b in late["bars"]} == {"NEW"}
    assert [b["time"] for b in late["bars"]] == [D0 + i * DAY for i in range(15, 20)]
    early = pit.adjusted_history(at=D0 + 8 * DAY, symbols=["XYZ"], adjust="split")
    assert [(b["security_id"], b["close"]) for b in early["bars"]][:2] == [
        ("OLD", Decimal("5")),
        ("OLD", Decimal("5.5")),
    ]
    old = pit.adjusted_history(at=D0 + 30 * DAY, security_ids=["OLD"], adjust="split")
    assert [b["time"] for b in old["bars"]] == [D0 + i * DAY for i in range(10)]  # delisted at `gone`


def test_total_multiplies_by_each_dividends_factor_measured_on_the_last_close_before_it(meta):
    load_split(known_at=SPLIT - 10 * DAY)
    ex = SPLIT + 3 * DAY
    ingest_table(dataset="corporate_actions", data=[action("cash_dividend", ex, "META", amount="1")])
    answer = pit.adjusted_history(at=ex + DAY, symbols=["META"], adjust="total")
    bars = {b["time"]: b for b in answer["bars"]}
    # one bar before both: 100 / 4 * (1 - 1/50) = 24.5; volume 1000 * 4 (a dividend leaves volume alone)
    assert (bars[D0]["close"], bars[D0]["volume"]) == (Decimal("24.5"), 4000)
    assert bars[SPLIT]["close"] == Decimal("49")  # after the split, before the dividend: 50 * 0.98
    assert bars[ex]["close"] == Decimal("50")
    split_only = pit.adjusted_history(at=ex + DAY, symbols=["META"], adjust="split")
    assert {b["time"]: b["close"] for b in split_only["bars"]}[D0] == Decimal("25")
    assert answer["unapplied"] == []


def test_a_dividend_without_an_earlier_bar_or_above_the_close_is_listed_as_unapplied(meta):
    ingest_table(
        dataset="corporate_actions",
        data=[
            action("cash_dividend", D0, "FB", amount="1"),  # no bar before the first bar
            action("cash_dividend", D0 + 3 * DAY, "FB", amount="100"),  # close_prev 100: not above the amount
            action("cash_dividend", D0 + 4 * DAY, "FB", amount="10"),  # applied: 1 - 10/100
        ],
    )
    answer = pit.adjusted_history(at=D0 + 10 * DAY, symbols=["META"], adjust="total")
    reasons = {(u["ex_date"], u["close_prev"]): u["reason"] for u in answer["unapplied"]}
    assert set(reasons) == {(D0, None), (D0 + 3 * DAY, Decimal("100"))}
    assert "no bar" in reasons[(D0, None)]
    assert "not above the amount" in reasons[(D0 + 3 * DAY, Decimal("100"))]
    bars = {b["time"]: b["close"] for b in answer["bars"]}
    assert bars[D0] == bars[D0 + 3 * DAY] == Decimal("90") and bars[D0 + 4 * DAY] == Decimal("100")


def test_prices_are_rounded_half_even_to_six_places_and_volume_to_an_integer():
    ingest_table(dataset="securities", data=[security("S1", "ABC")])
    ingest_table(
        dataset="market_data",
        data=[day_bar("ABC", D0, "10.000001", volume=5, vwap="0.000003"), day_bar("ABC", D0 + DAY, "1")],
    )
    ingest_table(dataset="corporate_actions", data=[action("split", D0 + DAY, "ABC", ratio="2")])
    split = pit.adjusted_history(at=D0 + 2 * DAY, symbols=["ABC"], adjust="split")["bars"][0]
    assert split["close"] == Decimal("5.000000")  # 5.0000005 -> even
    assert split["vwap"] == Decimal("0.000002")  # 0.0000015 -> even
    assert split["volume"] == 10
    ingest_table(
        dataset="corporate_actions", data=[action("split", D0 + DAY, "ABC", ratio="0.5", known_at=D0 + 2 * DAY)]
    )
    reverse = pit.adjusted_history(at=D0 + 2 * DAY, symbols=["ABC"], adjust="split")["bars"][0]
    assert (reverse["close"], reverse["volume"]) == (Decimal("20.000002"), 2)  # 2.5 shares -> 2 (even)


def test_none_returns_the_stored_bars_and_history_keeps_its_list_for_none(meta):
    load_split(known_at=SPLIT - 10 * DAY)
    at = D0 + 40 * DAY
    assert pit.history(dataset="market_data", at=at, symbols=["META"]) == pit.history(
        dataset="market_data", at=at, symbols=["META"], adjust="none"
    )
    listed = pit.history(dataset="market_data", at=at, symbols=["META", "FB"])
    none = pit.adjusted_history(at=at, symbols=["META"])["bars"]
    assert sorted((b["time"], b["close"]) for b in listed) == [(b["time"], b["close"]) for b in none]


# --- errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["Split", "", "raw", None, 1])
def test_a_bad_adjust_is_an_error_naming_the_parameter_and_the_choices(value):
    with pytest.raises(params.ParameterError, match="adjust=.* is not one of none, split, total"):
        pit.history(dataset="market_data", at=D0, symbols=["X"], adjust=value)
    with pytest.raises(params.ParameterError, match="adjust=.* is not one of none, split, total"):
        pit.adjusted_history(at=D0, symbols=["X"], adjust=value)


def test_only_market_data_is_adjusted_and_a_symbol_is_required():
    with pytest.raises(params.ParameterError, match="only market_data has prices to adjust, not news_events"):
        pit.history(dataset="news_events", at=D0, adjust="split")
    with pytest.raises(params.ParameterError, match="security_ids: only market_data has prices to adjust"):
        pit.history(dataset="news_events", at=D0, security_ids=["S1"])
    with pytest.raises(params.ParameterError, match="symbols or security_ids is required"):
        pit.adjusted_history(at=D0, adjust="split")
    with pytest.raises(params.ParameterError, match="security_ids"):
        pit.adjusted_history(at=D0, security_ids=["A B"])
    with pytest.raises(params.ParameterError, match="start must not be after end"):
        pit.adjusted_history(at=D0, symbols=["X"], start=D0, end=D0 - DAY)


def test_a_ticker_naming_two_securities_at_t_asks_for_security_ids():
    ingest_table(dataset="securities", data=[security("S1", "DUP"), security("S2", "DUP")])
    with pytest.raises(params.ParameterError, match="symbols: 'DUP' names 2 securities .*S1, S2.*give security_ids"):
        pit.adjusted_history(at=D0, symbols=["DUP"])


def test_the_worked_example_of_docs_adjustment_md():
    bar_time = datetime(2025, 7, 16, 13, 30, tzinfo=UTC)
    ingest_table(dataset="securities", data=[security("S1", "XYZ")])
    row = {"time": iso(bar_time), "symbol": "XYZ", "open": "198.00", "high": "201.00", "low": "197.50"}
    ingest_table(dataset="market_data", data=[{**row, "close": "200.00", "volume": "1000"}])
    dividend = action("cash_dividend", datetime(2025, 7, 17, 13, 30, tzinfo=UTC), "XYZ", amount="2.00")
    ingest_table(dataset="corporate_actions", data=[{**dividend, "known_at": "2025-07-01T00:00:00Z"}])
    recorded_before_split = MarketData.objects.aggregate(last=Max("recorded_at"))["last"]
    recorded_before_split = max(recorded_before_split, pit.corporate_actions(at=bar_time)[0]["recorded_at"])
    split = action("split", datetime(2025, 7, 18, 13, 30, tzinfo=UTC), "XYZ", ratio="4")
    ingest_table(dataset="corporate_actions", data=[{**split, "known_at": "2025-07-21T00:00:00Z"}])

    def values(at: str, adjust: str, **more) -> tuple:
        t = datetime.fromisoformat(at)
        (b,) = pit.adjusted_history(at=t, symbols=["XYZ"], adjust=adjust, **more)["bars"]
        return tuple(str(b[c]) for c in ("open", "high", "low", "close")) + (b["volume"],)

    raw = ("198.000000", "201.000000", "197.500000", "200.000000", 1000)
    assert values("2025-07-20T00:00:00+00:00", "none") == values("2025-07-21T12:00:00+00:00", "none") == raw
    assert values("2025-07-20T00:00:00+00:00", "split") == raw
    assert values("2025-07-20T00:00:00+00:00", "total") == (
        "196.020000",
        "198.990000",
        "195.525000",
        "198.000000",
        1000,
    )
    assert values("2025-07-21T12:00:00+00:00", "split") == ("49.500000", "50.250000", "49.375000", "50.000000", 4000)
    assert values("2025-07-21T12:00:00+00:00", "total") == ("49.005000", "49.747500", "48.881250", "49.500000", 4000)
    assert all(values("2025-07-16T20:00:00+00:00", a) == raw for a in ("none", "split", "total"))
    replay = values("2025-07-21T12:00:00+00:00", "split", recorded_by=recorded_before_split)
    assert replay == raw

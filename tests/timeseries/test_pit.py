"""Point-in-time selectors: behaviours named in the foundation issue (the oracle tests cover random histories)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
import ta

from ingestion.loader import ingest_table
from tests.helpers import T0, bar
from timeseries import pit
from timeseries.pit import asof as pit_asof

pytestmark = pytest.mark.django_db


def trade(name: str, *, days_to_filing: int, shares: int, form: str = "4", kind: str = "buy", **extra) -> dict:
    return {
        "time": T0.isoformat(),
        "symbol": "AAPL",
        "insider_name": name,
        "title": "CEO",
        "transaction_type": kind,
        "shares": shares,
        "price": "10",
        "value": str(shares * 10),
        "filing_date": (T0 + timedelta(days=days_to_filing)).isoformat(),
        "form_type": form,
        **extra,
    }


@pytest.mark.parametrize(
    "selector", [pit.market_state, pit.news, pit.insider_trades, pit.sentiment, pit.government_events]
)
def test_it_refuses_a_naive_instant(selector):
    with pytest.raises(pit.NaiveDatetime, match=r"at=2024-03-01T15:30:00 is naive"):
        selector(at=datetime(2024, 3, 1, 15, 30))


def test_it_refuses_a_naive_recorded_by():
    with pytest.raises(pit.NaiveDatetime, match="recorded_by="):
        pit.market_state(at=T0, recorded_by=datetime(2024, 3, 1))


def test_it_does_not_show_a_bar_before_it_closes():
    ingest_table(dataset="market_data", data=[bar("AAPL", 0), bar("AAPL", 1, close="10.9")])
    assert pit.market_state(at=T0 + timedelta(seconds=119))[0]["time"] == T0
    assert pit.market_state(at=T0 + timedelta(minutes=2))[0]["close"] == Decimal("10.9")
    assert pit.market_state(at=T0 + timedelta(seconds=59)) == []


def test_it_restricts_market_state_to_the_symbols_asked_for():
    ingest_table(dataset="market_data", data=[bar(s, 0) for s in ("AAPL", "MSFT", "IBM")])
    rows = pit.market_state(at=T0 + timedelta(hours=1), symbols=["MSFT", "IBM", "NOPE"])
    assert [r["symbol"] for r in rows] == ["IBM", "MSFT"]


def test_it_orders_news_newest_first_then_by_impact():
    base = {"symbol": "AAPL", "source": "wire"}
    rows = [
        {**base, "time": T0.isoformat(), "title": "low", "impact_score": "0.1", "url": "u1"},
        {**base, "time": T0.isoformat(), "title": "high", "impact_score": "0.9", "url": "u2"},
        {
            **base,
            "time": (T0 + timedelta(minutes=5)).isoformat(),
            "title": "newest",
            "impact_score": "0.2",
            "url": "u3",
        },
        {
            **base,
            "time": (T0 + timedelta(minutes=1)).isoformat(),
            "title": "delayed",
            "url": "u4",
            "known_at": (T0 + timedelta(hours=1)).isoformat(),
        },
    ]
    ingest_table(dataset="news_events", data=rows)
    titles = [n["title"] for n in pit.news(at=T0 + timedelta(minutes=10))]
    assert titles == ["newest", "high", "low"]
    assert [n["title"] for n in pit.news(at=T0 + timedelta(minutes=10), limit=1)] == ["newest"]
    assert "delayed" in [n["title"] for n in pit.news(at=T0 + timedelta(hours=1))]


def test_it_shows_an_insider_trade_only_once_filed_and_its_amendment_only_once_amended():
    ingest_table(dataset="insider_trades", data=[trade("Jane Roe", days_to_filing=2, shares=100)])
    ingest_table(dataset="insider_trades", data=[trade("Jane Roe", days_to_filing=5, shares=120, form="4/A")])
    assert pit.insider_trades(at=T0 + timedelta(days=1)) == []
    filed = pit.insider_trades(at=T0 + timedelta(days=3))
    assert [(t["shares"], t["form_type"]) for t in filed] == [(100, "4")]
    amended = pit.insider_trades(at=T0 + timedelta(days=6))
    assert [(t["shares"], t["form_type"]) for t in amended] == [(120, "4/A")]


def test_it_orders_insider_trades_by_filing_then_value():
    ingest_table(
        dataset="insider_trades",
        data=[
            trade("A", days_to_filing=1, shares=10),
            trade("B", days_to_filing=2, shares=5),
            trade("C", days_to_filing=2, shares=50),
        ],
    )
    assert [t["insider_name"] for t in pit.insider_trades(at=T0 + timedelta(days=3))] == ["C", "B", "A"]


def test_it_shows_the_latest_closed_sentiment_window_per_platform():
    rows = [
        {
            "time": (T0.replace(minute=0) + timedelta(hours=h)).isoformat(),
            "symbol": "AAPL",
            "platform": p,
            "mention_count": str(h),
        }
        for h in range(3)
        for p in ("reddit", "twitter")
    ]
    ingest_table(dataset="social_sentiment", data=rows)
    at = T0.replace(minute=0) + timedelta(hours=2, minutes=30)  # the 2h window is still open
    got = {(r["platform"], r["mention_count"]) for r in pit.sentiment(at=at)}
    assert got == {("reddit", 1), ("twitter", 1)}


def test_it_matches_government_events_by_primary_or_affected_symbol_or_sector():
    base = {"time": T0.isoformat(), "country": "US"}
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
    at = T0 + timedelta(minutes=1)
    assert {e["event_type"] for e in pit.government_events(at=at, symbols=["BA"])} == {"contract_award"}
    assert {e["event_type"] for e in pit.government_events(at=at, symbols=["AAPL"])} == {"regulation"}
    assert {e["event_type"] for e in pit.government_events(at=at, sectors=["Financials"])} == {"fed_rate_decision"}
    assert {e["event_type"] for e in pit.government_events(at=at, symbols=["AAPL"], sectors=["Industrials"])} == {
        "regulation",
        "contract_award",
    }
    assert len(pit.government_events(at=at)) == 3
    assert pit.government_events(at=T0 - timedelta(seconds=1)) == []


def test_it_returns_history_as_known_at_t_within_the_event_time_range():
    ingest_table(dataset="market_data", data=[bar("AAPL", m) for m in range(10)])
    ingest_table(
        dataset="market_data", data=[bar("AAPL", 3, close="10.1", known_at=(T0 + timedelta(days=1)).isoformat())]
    )
    rows = pit.history(
        dataset="market_data",
        at=T0 + timedelta(hours=1),
        symbols=["AAPL"],
        start=T0 + timedelta(minutes=2),
        end=T0 + timedelta(minutes=4),
    )
    assert [(r["time"] - T0, r["close"]) for r in rows] == [
        (timedelta(minutes=2), Decimal("10.5")),
        (timedelta(minutes=3), Decimal("10.5")),
        (timedelta(minutes=4), Decimal("10.5")),
    ]
    later = pit.history(
        dataset="market_data",
        at=T0 + timedelta(days=2),
        symbols=["AAPL"],
        start=T0 + timedelta(minutes=3),
        end=T0 + timedelta(minutes=3),
    )
    assert [r["close"] for r in later] == [Decimal("10.1")]
    with pytest.raises(ValueError, match="start must not be after end"):
        pit.history(dataset="market_data", at=T0, start=T0 + timedelta(1), end=T0)


def random_walk_bars(n: int, seed: int = 7) -> list[dict]:
    rng = np.random.default_rng(seed)
    close = 100 + np.cumsum(rng.normal(0, 0.3, n))
    rows = []
    for i, c in enumerate(close):
        o = c + rng.normal(0, 0.1)
        hi, lo = max(o, c) + abs(rng.normal(0, 0.1)), min(o, c) - abs(rng.normal(0, 0.1))
        rows.append(
            bar(
                "AAPL",
                i,
                open=f"{o:.4f}",
                high=f"{hi:.4f}",
                low=f"{lo:.4f}",
                close=f"{c:.4f}",
                volume=str(int(rng.integers(100, 5000))),
            )
        )
    return rows


def test_it_computes_indicators_from_bars_known_at_t_matching_ta():
    rows = random_walk_bars(300)
    ingest_table(dataset="market_data", data=rows)
    # a correction of an early bar, known only later, must not change the answer at T
    ingest_table(
        dataset="market_data",
        data=[dict(rows[250], close=rows[250]["high"], known_at=(T0 + timedelta(days=3)).isoformat())],
    )
    at = T0 + timedelta(minutes=260, seconds=30)  # bars 0..259 have closed
    state = pit.reconstruct(at=at, symbol="AAPL")
    known = pd.DataFrame(rows[:260]).astype(
        {"open": float, "high": float, "low": float, "close": float, "volume": float}
    )
    close, high, low, volume = known["close"], known["high"], known["low"], known["volume"]
    expected = {
        "sma_20": ta.trend.SMAIndicator(close, 20).sma_indicator().iloc[-1],
        "ema_20": ta.trend.EMAIndicator(close, 20).ema_indicator().iloc[-1],
        "rsi_14": ta.momentum.RSIIndicator(close, 14).rsi().iloc[-1],
        "macd": ta.trend.MACD(close).macd().iloc[-1],
        "macd_signal": ta.trend.MACD(close).macd_signal().iloc[-1],
        "bb_upper": ta.volatility.BollingerBands(close, 20, 2).bollinger_hband().iloc[-1],
        "bb_lower": ta.volatility.BollingerBands(close, 20, 2).bollinger_lband().iloc[-1],
        "atr_14": ta.volatility.AverageTrueRange(high, low, close, 14).average_true_range().iloc[-1],
        "vwap_14": ta.volume.VolumeWeightedAveragePrice(high, low, close, volume, 14)
        .volume_weighted_average_price()
        .iloc[-1],
    }
    # reconstruct uses the last 200 bars: recursive indicators (EMA, RSI, MACD, ATR) differ from a
    # full-history run only by the decayed influence of the first bars, far below 1e-6 here.
    for name, value in expected.items():
        assert state["indicators"][name] == pytest.approx(value, rel=1e-6), name
    assert state["market"]["time"] == T0 + timedelta(minutes=259)
    assert state["indicators"]["bars_used"] == 200
    assert state["max_recorded_at"] == state["market"]["recorded_at"]


def test_it_reconstructs_the_full_state_without_look_ahead():
    ingest_table(dataset="market_data", data=[bar("AAPL", m) for m in range(30)])
    ingest_table(
        dataset="news_events",
        data=[
            {"time": (T0 + timedelta(minutes=5)).isoformat(), "symbol": "AAPL", "title": "past", "url": "a"},
            {"time": (T0 + timedelta(minutes=50)).isoformat(), "symbol": "AAPL", "title": "future", "url": "b"},
        ],
    )
    ingest_table(
        dataset="insider_trades",
        data=[
            trade("Jane Roe", days_to_filing=0, shares=100),
            trade("John Doe", days_to_filing=3, shares=7, kind="sell"),
        ],
    )
    state = pit.reconstruct(at=T0 + timedelta(minutes=20), symbol="AAPL")
    assert [n["title"] for n in state["news"]] == ["past"]
    assert state["insider"]["filings"] == 1 and state["insider"]["net_shares"] == 100
    assert state["market"]["time"] == T0 + timedelta(minutes=19)
    assert state["indicators"]["bars_used"] == 20


def test_it_joins_many_decision_points_in_one_call_in_input_order():
    ingest_table(
        dataset="market_data",
        data=[bar(s, m, close=f"{10 + m / 100:.2f}") for s in ("AAPL", "MSFT") for m in range(60)],
    )
    points = [
        ("MSFT", T0 + timedelta(minutes=30, seconds=5)),
        ("AAPL", T0 + timedelta(seconds=30)),
        ("AAPL", T0 + timedelta(hours=5)),
    ]
    rows = pit.asof_join(points)
    assert [(r["symbol"], r["at"]) for r in rows] == points
    assert rows[0]["time"] == T0 + timedelta(minutes=29) and rows[0]["close"] == Decimal("10.29")
    assert rows[1]["time"] is None
    assert rows[2]["time"] == T0 + timedelta(minutes=59)


def test_it_refuses_naive_decision_points():
    with pytest.raises(pit.NaiveDatetime):
        pit.asof_join([("AAPL", datetime(2024, 3, 1))])


def test_it_accepts_decision_points_as_a_dataframe():
    ingest_table(dataset="market_data", data=[bar("AAPL", m) for m in range(5)])
    frame = pd.DataFrame({"symbol": ["AAPL"] * 2, "time": [T0 + timedelta(minutes=2), T0 + timedelta(minutes=9)]})
    rows = pit.asof_join(frame)
    assert [r["time"] for r in rows] == [T0 + timedelta(minutes=1), T0 + timedelta(minutes=4)]


def test_it_joins_sentiment_points_per_platform():
    ingest_table(
        dataset="social_sentiment",
        data=[
            {"time": T0.replace(minute=0).isoformat(), "symbol": "AAPL", "platform": p, "mention_count": str(n)}
            for p, n in (("reddit", 3), ("twitter", 9))
        ],
    )
    at = datetime(2024, 3, 1, 16, 0, tzinfo=UTC)
    rows = pit.asof_join([{"symbol": "AAPL", "platform": "twitter", "time": at}], dataset="social_sentiment")
    assert rows[0]["mention_count"] == 9


def test_it_answers_the_readme_worked_example():
    at_1530 = datetime(2024, 3, 1, 15, 30, tzinfo=UTC)
    original = {
        "time": at_1530.isoformat(),
        "symbol": "AAPL",
        "open": "187",
        "high": "187.5",
        "low": "186.9",
        "close": "187.20",
        "volume": "1000",
    }
    first = ingest_table(dataset="market_data", data=[original])
    ingest_table(dataset="market_data", data=[{**original, "close": "187.05", "known_at": "2024-03-01T18:00:00Z"}])
    ingest_table(dataset="market_data", data=[{**original, "close": "187.10"}])

    def close(at: str, recorded_by=None) -> Decimal:
        return pit.market_state(at=datetime.fromisoformat(at), symbols=["AAPL"], recorded_by=recorded_by)[0]["close"]

    assert close("2024-03-01T16:00:00+00:00") == Decimal("187.10")
    assert close("2024-03-01T16:00:00+00:00", recorded_by=first.recorded_at) == Decimal("187.20")
    assert close("2024-03-01T19:00:00+00:00") == Decimal("187.05")


@pytest.mark.django_db(transaction=True)
def test_it_answers_a_large_join_on_two_connections_exactly_like_one(monkeypatch):
    ingest_table(
        dataset="market_data",
        data=[bar(s, m, close=f"{10 + m / 100:.2f}") for s in ("AAPL", "MSFT", "IBM") for m in range(40)],
    )
    ingest_table(
        dataset="market_data", data=[bar("MSFT", 5, close="10.99", known_at=(T0 + timedelta(minutes=30)).isoformat())]
    )
    points = [
        (s, T0 + timedelta(minutes=m, seconds=7)) for m in range(0, 45, 3) for s in ("IBM", "MSFT", "AAPL", "NOPE")
    ]
    single = pit.asof_join(points)
    monkeypatch.setattr(pit_asof, "PARALLEL_ASOF_POINTS", 10)
    assert not connection_in_atomic_block()
    parallel = pit.asof_join(points)
    assert parallel == single
    assert [(r["symbol"], r["at"]) for r in parallel] == points
    assert next(r for r in parallel if r["symbol"] == "MSFT" and r["at"] == T0 + timedelta(minutes=30, seconds=7))[
        "time"
    ] == T0 + timedelta(minutes=29)


@pytest.mark.django_db(transaction=True)
def test_it_answers_points_given_as_a_table_of_several_chunks_in_their_order(monkeypatch):
    """An Arrow table read from a Parquet file comes in chunks; the probes are grouped by series
    across the chunks and the answer keeps the input order."""
    import pyarrow as pa

    ingest_table(
        dataset="market_data",
        data=[bar(s, m, close=f"{10 + m / 100:.2f}") for s in ("AAPL", "MSFT") for m in range(20)],
    )
    points = [(s, T0 + timedelta(minutes=m, seconds=30)) for m in (15, 3, 9) for s in ("MSFT", "AAPL")]
    halves = [points[:3], points[3:]]
    table = pa.Table.from_batches(
        [
            pa.record_batch(
                {"symbol": [p[0] for p in h], "time": pa.array([p[1] for p in h], pa.timestamp("us", tz="UTC"))}
            )
            for h in halves
        ]
    )
    assert table.column("symbol").num_chunks == 2
    monkeypatch.setattr(pit_asof, "PARALLEL_ASOF_POINTS", 2)
    rows = pit.asof_join(table)
    assert [(r["symbol"], r["at"]) for r in rows] == points
    assert [r["close"] for r in rows] == [Decimal(f"{10 + (p[1] - T0).seconds // 60 / 100 - 0.01:.2f}") for p in points]


def connection_in_atomic_block() -> bool:
    from django.db import connection

    return connection.in_atomic_block

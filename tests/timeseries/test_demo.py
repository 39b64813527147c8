"""Demo data generator: determinism, invariants, knowledge-time rules, corrections and writers (no database)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from timeseries import demo

START = datetime(2024, 3, 1, tzinfo=UTC)  # a Friday
KW = {"start": START, "days": 10, "seed": 7}
TS = pa.timestamp("us", tz="UTC")


@pytest.fixture(scope="module")
def symbols() -> list[str]:
    return demo.make_symbols(12)


@pytest.fixture(scope="module")
def tables(symbols: list[str]) -> dict[str, pa.Table]:
    return demo.generate_all(symbols=symbols, **KW)


def _df(table: pa.Table) -> pd.DataFrame:
    return table.to_pandas()


def _originals_and_corrections(df: pd.DataFrame, key: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    df = df.sort_values([*key, "known_at"], kind="stable")
    dup = df.duplicated(key, keep="first")
    return df[~dup], df[dup]


def test_it_makes_real_symbols_first_then_synthetic_ones() -> None:
    syms = demo.make_symbols(len(demo.DEFAULT_SYMBOLS) + 3)
    assert syms[: len(demo.DEFAULT_SYMBOLS)] == demo.DEFAULT_SYMBOLS
    assert syms[-3:] == ["SYM0000", "SYM0001", "SYM0002"]
    assert demo.make_symbols(3) == demo.DEFAULT_SYMBOLS[:3]
    assert demo.sector_of("SYM0042") == demo.sector_of("SYM0042")
    assert demo.sector_of("AAPL") == demo.SECTORS["AAPL"]


def test_it_uses_the_declared_schemas(tables: dict[str, pa.Table]) -> None:
    assert set(tables) == {"market_data", "news_events", "insider_trades", "social_sentiment", "government_events"}
    for name, table in tables.items():
        assert table.schema == demo.SCHEMAS[name], name
        assert table.num_rows > 0, name
        assert table.schema.field("known_at").type == TS
        assert table.column("known_at").null_count == 0


def test_it_matches_the_dataset_declarations(tables: dict[str, pa.Table]) -> None:
    datasets = pytest.importorskip("timeseries.datasets")
    for name, table in tables.items():
        declared = set(datasets.DATASETS[name].column_names) | {"known_at"}
        assert set(table.column_names) == declared, name


def test_it_is_deterministic(symbols: list[str], tables: dict[str, pa.Table]) -> None:
    again = demo.generate_all(symbols=symbols, **KW)
    for name in tables:
        assert again[name].equals(tables[name]), name
    other_seed = demo.market_data(symbols=symbols[:2], start=START, days=3, seed=8)
    assert not other_seed.equals(demo.market_data(symbols=symbols[:2], start=START, days=3, seed=7))


def test_it_generates_a_symbol_identically_alone_or_with_others(symbols: list[str]) -> None:
    sym = symbols[5]
    for name, column in (
        ("market_data", "symbol"),
        ("news_events", "symbol"),
        ("insider_trades", "symbol"),
        ("social_sentiment", "symbol"),
    ):
        fn = getattr(demo, name)
        together = fn(symbols=symbols, **KW)
        alone = fn(symbols=[sym], **KW)
        mask = pc.equal(together.column(column), sym)
        assert together.filter(mask).equals(alone), name
    # batch size must not change the data either
    small = pa.Table.from_batches(list(demo.market_data_batches(symbols=[sym], batch_rows=777, **KW)))
    assert small.equals(demo.market_data(symbols=[sym], **KW))


def test_it_streams_bounded_batches(symbols: list[str]) -> None:
    batches = list(demo.market_data_batches(symbols=symbols[:3], batch_rows=1000, **KW))
    assert all(b.num_rows == 1000 for b in batches[:-1]) and 0 < batches[-1].num_rows <= 1000
    assert all(b.schema == demo.SCHEMAS["market_data"] for b in batches)


def test_it_keeps_ohlc_valid(tables: dict[str, pa.Table]) -> None:
    df = _df(tables["market_data"])
    assert (df.low <= df[["open", "close"]].min(axis=1)).all()
    assert (df[["open", "close"]].max(axis=1) <= df.high).all()
    assert ((df.low <= df.vwap) & (df.vwap <= df.high)).all()
    assert (df.low > 0).all() and (df.volume >= 0).all() and (df.trades >= 0).all()
    assert df.quality_score.between(0, 1).all() and (df.quality_score == 1.0).mean() > 0.9
    for col in ("open", "high", "low", "close", "vwap"):
        assert np.allclose(df[col], df[col].round(4), rtol=0, atol=1e-9)
    assert np.allclose(df.market_cap, df.market_cap.round(2), rtol=0, atol=1e-6)
    assert set(df.source) == {"demo"}
    starts = df.groupby("symbol").open.first()
    assert starts.between(5, 1000).all() and starts.nunique() == len(starts)


def test_it_quotes_prices_in_ticks_and_the_market_cap_once_a_day_from_the_previous_close(tables) -> None:
    df = _df(tables["market_data"])
    originals, _ = _originals_and_corrections(df, ["symbol", "time"])
    for col in ("open", "high", "low", "close"):
        dollars = df[col][df[col] >= 1]
        assert len(dollars) and np.allclose(dollars, dollars.round(2), rtol=0, atol=1e-9), col  # cents from $1
    assert not np.allclose(df.vwap, df.vwap.round(2), rtol=0, atol=1e-9)  # vwap is computed: finer than a tick
    day = originals.time.dt.floor("D")
    assert (originals.groupby(["symbol", day]).market_cap.nunique() == 1).all()
    for symbol, bars in originals.sort_values("time").groupby("symbol"):
        shares = demo._symbol_profile(KW["seed"], symbol)["shares_out"]
        days = bars.groupby(bars.time.dt.floor("D"))
        last_close = days.close.last().shift(1).dropna()
        cap = days.market_cap.first().loc[last_close.index]
        assert np.allclose(cap, (last_close * shares).round(2), rtol=0, atol=0.011), symbol


def test_it_follows_trading_hours_with_u_shaped_volume(tables: dict[str, pa.Table]) -> None:
    df = _df(tables["market_data"])
    t = df.time
    assert (t.dt.day_of_week < 5).all()
    minutes = t.dt.hour * 60 + t.dt.minute
    assert minutes.between(14 * 60 + 30, 20 * 60 + 59).all()
    first = df[df.symbol == df.symbol.iloc[0]].drop_duplicates("time")
    assert len(first) == 390 * 6  # Fri 1 Mar + 5 weekdays of the 10-day window
    by_minute = df.groupby(minutes).volume.mean()
    assert by_minute.iloc[:15].mean() > 1.5 * by_minute.iloc[180:210].mean() < by_minute.iloc[-15:].mean()
    around = demo.market_data(
        symbols=["AAPL"], start=START, days=1, trading_hours_only=False, include_corrections=False
    )
    assert around.num_rows == 1440


def test_it_applies_the_market_known_at_rule(tables: dict[str, pa.Table]) -> None:
    df = _df(tables["market_data"])
    assert (df.known_at >= df.time + pd.Timedelta(minutes=1)).all()
    originals, _ = _originals_and_corrections(df, ["symbol", "time"])
    assert (originals.known_at == originals.time + pd.Timedelta(minutes=1)).all()


def test_it_adds_market_corrections_at_the_requested_rate(symbols: list[str]) -> None:
    df = _df(demo.market_data(symbols=symbols, correction_rate=0.02, **KW))
    originals, corrections = _originals_and_corrections(df, ["symbol", "time"])
    assert 0.014 < len(corrections) / len(originals) < 0.026
    joined = corrections.merge(originals, on=["symbol", "time"], suffixes=("", "_orig"))
    assert len(joined) == len(corrections)
    lag = joined.known_at - joined.known_at_orig
    assert (lag >= pd.Timedelta(hours=1)).all() and (lag <= pd.Timedelta(hours=48)).all()
    assert (joined.close != joined.close_orig).all() and (joined.volume != joined.volume_orig).all()
    assert (joined.open == joined.open_orig).all()
    clean = _df(demo.market_data(symbols=symbols, correction_rate=0.02, include_corrections=False, **KW))
    pd.testing.assert_frame_equal(clean, originals.sort_index().reset_index(drop=True))
    only = _df(demo.market_data_corrections(symbols=symbols, correction_rate=0.02, **KW))
    pd.testing.assert_frame_equal(only, corrections.sort_index().reset_index(drop=True))
    assert (
        demo.market_data(symbols=symbols[:2], correction_rate=0.0, **KW).num_rows
        == demo.market_data(symbols=symbols[:2], include_corrections=False, **KW).num_rows
    )


def test_it_files_insider_trades_one_to_three_business_days_later(symbols: list[str]) -> None:
    df = _df(demo.insider_trades(symbols=symbols, start=START, days=60, seed=7))
    assert (df.known_at == df.filing_date).all()
    originals = df[df.form_type == "4"]
    lag = np.busday_count(
        originals.time.dt.date.to_numpy().astype("datetime64[D]"),
        originals.filing_date.dt.date.to_numpy().astype("datetime64[D]"),
    )
    assert ((lag >= 1) & (lag <= 3)).all()
    assert (df.shares > 0).all() and set(df.transaction_type) <= {"buy", "sell"}
    assert np.allclose(df.value, (df.shares * df.price).round(2), rtol=0, atol=0.011)
    assert not originals.duplicated(["symbol", "time", "insider_name", "transaction_type"]).any()
    assert df.is_cluster_trade.any()


def test_it_amends_insider_trades_with_form_4a(symbols: list[str]) -> None:
    df = _df(demo.insider_trades(symbols=symbols, start=START, days=120, seed=7, amendment_rate=0.1))
    key = ["symbol", "time", "insider_name", "transaction_type"]
    amendments = df[df.form_type == "4/A"]
    joined = amendments.merge(df[df.form_type == "4"], on=key, suffixes=("", "_orig"))
    assert len(joined) == len(amendments) > 0
    assert 0.05 < len(amendments) / (len(df) - len(amendments)) < 0.18
    assert (joined.known_at > joined.known_at_orig).all()
    assert ((joined.shares != joined.shares_orig) & (joined.price != joined.price_orig)).all()


def test_it_applies_the_sentiment_known_at_rule_and_corrections(symbols: list[str]) -> None:
    df = _df(demo.social_sentiment(symbols=symbols, correction_rate=0.05, **KW))
    key = ["symbol", "time", "platform"]
    originals, corrections = _originals_and_corrections(df, key)
    assert (originals.known_at == originals.time + pd.Timedelta(hours=1)).all()
    assert (df.time.dt.minute == 0).all() and (df.time.dt.second == 0).all()
    assert set(df.platform) == {"twitter", "reddit", "stocktwits"}
    assert len(originals) == len(symbols) * KW["days"] * 24 * 3
    assert 0.035 < len(corrections) / len(originals) < 0.065
    joined = corrections.merge(originals, on=key, suffixes=("", "_orig"))
    assert (joined.known_at > joined.known_at_orig).all()
    assert (joined.mention_count != joined.mention_count_orig).all()
    assert (df.unique_users <= df.mention_count).all() and (df.unique_users >= 0).all()
    assert df.sentiment_avg.between(-1, 1).all() and (df.sentiment_std >= 0).all()
    assert (df.total_engagement >= 0).all()


def test_it_lags_news_and_keeps_news_keys_unique(tables: dict[str, pa.Table]) -> None:
    df = _df(tables["news_events"])
    assert (df.known_at >= df.time).all()
    assert 0.5 < (df.known_at == df.time).mean() < 0.9
    assert (df.known_at - df.time).max() <= pd.Timedelta(minutes=15)
    assert df.news_id.is_unique
    assert df.duplicated(["symbol", "time"]).any()  # same-second stories exercise the key
    assert df.sentiment.between(-1, 1).all() and df.impact_score.between(0, 1).all()
    assert (df.language == "en").mean() > 0.8
    assert all(len(c) >= 1 for c in df.categories)


def test_it_generates_government_events_with_symbols(symbols: list[str], tables: dict[str, pa.Table]) -> None:
    df = _df(tables["government_events"])
    assert df.primary_symbol.isin(symbols).all()
    assert all(p in list(a) and set(a) <= set(symbols) for p, a in zip(df.primary_symbol, df.affected_symbols))
    assert not df.duplicated(["time", "event_type", "primary_symbol"]).any()
    assert (df.known_at >= df.time).all()
    assert df.market_impact.between(-1, 1).all() and df.confidence.between(0, 1).all()
    assert set(df.event_type) <= {"contract_award", "regulation", "sanction", "fed_rate_decision", "tariff"}
    assert (df.country == "US").mean() > 0.6


def test_it_rejects_a_naive_start(symbols: list[str]) -> None:
    naive = datetime(2024, 3, 1)
    for fn in (demo.market_data, demo.news_events, demo.insider_trades, demo.social_sentiment, demo.government_events):
        with pytest.raises(ValueError, match="start"):
            fn(symbols=symbols[:1], start=naive, days=1)
    with pytest.raises(ValueError, match="start"):
        next(demo.market_data_batches(symbols=symbols[:1], start=naive, days=1))


def test_it_accepts_non_utc_starts() -> None:
    paris = timezone(timedelta(hours=1))
    a = demo.market_data(symbols=["AAPL"], start=datetime(2024, 3, 1, 1, tzinfo=paris), days=2)
    b = demo.market_data(symbols=["AAPL"], start=datetime(2024, 3, 1, tzinfo=UTC), days=2)
    assert a.equals(b)


def test_it_round_trips_csv_with_tz_aware_timestamps(tmp_path, tables: dict[str, pa.Table], symbols: list[str]) -> None:
    path = tmp_path / "market.csv"
    rows = demo.write_csv(demo.market_data_batches(symbols=symbols[:2], batch_rows=500, **KW), path)
    back = pacsv.read_csv(path)
    original = demo.market_data(symbols=symbols[:2], **KW)
    assert rows == back.num_rows == original.num_rows
    for col in ("time", "known_at"):
        assert pa.types.is_timestamp(back.schema.field(col).type) and back.schema.field(col).type.tz == "UTC"
        assert back.column(col).cast(TS).equals(original.column(col))
    assert back.column("close").equals(original.column("close"))
    assert path.read_text().splitlines()[1].split(",")[0].strip('"').endswith("Z")

    news = tables["news_events"]
    demo.write_csv(news, tmp_path / "news.csv")
    back = pacsv.read_csv(tmp_path / "news.csv")
    assert [json.loads(c) for c in back.column("categories").to_pylist()] == news.column("categories").to_pylist()
    assert back.column("time").type.tz == "UTC"


def test_it_writes_parquet_and_ndjson(tmp_path, tables: dict[str, pa.Table]) -> None:
    gov = tables["government_events"]
    demo.write_parquet(gov, tmp_path / "gov.parquet")
    assert pq.read_table(tmp_path / "gov.parquet").equals(gov)
    demo.write_ndjson(gov, tmp_path / "gov.ndjson")
    lines = (tmp_path / "gov.ndjson").read_text(encoding="utf-8").splitlines()
    assert len(lines) == gov.num_rows
    first = json.loads(lines[0])
    assert first["affected_symbols"] == gov.column("affected_symbols")[0].as_py()
    parsed = datetime.fromisoformat(first["time"].replace("Z", "+00:00"))
    assert parsed == gov.column("time")[0].as_py() and parsed.tzinfo is not None

"""timeseries.indicators against the `ta` reference implementation (no database)."""

from __future__ import annotations

import ast
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ta = pytest.importorskip("ta")

from timeseries import indicators as ind  # noqa: E402

LENGTHS = [1, 2, 13, 14, 15, 19, 20, 21, 26, 33, 34, 35, 500]


def make_bars(n: int, seed: int = 20240601) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    close = 100.0 + np.cumsum(rng.normal(0.0, 1.0, n))
    open_ = close + rng.normal(0.0, 0.3, n)
    high = np.maximum(open_, close) + rng.uniform(0.0, 1.0, n)
    low = np.minimum(open_, close) - rng.uniform(0.0, 1.0, n)
    volume = rng.integers(1, 10_000, n).astype(float)
    return {"open": open_, "high": high, "low": low, "close": close, "volume": volume}


def constant_bars(n: int, price: float = 42.5) -> dict[str, np.ndarray]:
    flat = np.full(n, price)
    return {"open": flat, "high": flat, "low": flat, "close": flat, "volume": np.full(n, 7.0)}


def _s(a: np.ndarray) -> pd.Series:
    return pd.Series(a, dtype="float64")


# name -> (ours(bars), reference(bars) computed with ta's default parameters)
CASES = {
    "sma": (lambda b: ind.sma(close=b["close"]), lambda b: ta.trend.SMAIndicator(_s(b["close"]), 20).sma_indicator()),
    "ema": (lambda b: ind.ema(close=b["close"]), lambda b: ta.trend.EMAIndicator(_s(b["close"]), 20).ema_indicator()),
    "rsi": (lambda b: ind.rsi(close=b["close"]), lambda b: ta.momentum.RSIIndicator(_s(b["close"])).rsi()),
    "macd": (lambda b: ind.macd(close=b["close"])["macd"], lambda b: ta.trend.MACD(_s(b["close"])).macd()),
    "macd_signal": (
        lambda b: ind.macd(close=b["close"])["signal"],
        lambda b: ta.trend.MACD(_s(b["close"])).macd_signal(),
    ),
    "macd_hist": (lambda b: ind.macd(close=b["close"])["hist"], lambda b: ta.trend.MACD(_s(b["close"])).macd_diff()),
    "bb_mid": (
        lambda b: ind.bollinger(close=b["close"])["mid"],
        lambda b: ta.volatility.BollingerBands(_s(b["close"])).bollinger_mavg(),
    ),
    "bb_upper": (
        lambda b: ind.bollinger(close=b["close"])["upper"],
        lambda b: ta.volatility.BollingerBands(_s(b["close"])).bollinger_hband(),
    ),
    "bb_lower": (
        lambda b: ind.bollinger(close=b["close"])["lower"],
        lambda b: ta.volatility.BollingerBands(_s(b["close"])).bollinger_lband(),
    ),
    "vwap": (
        lambda b: ind.vwap(high=b["high"], low=b["low"], close=b["close"], volume=b["volume"]),
        lambda b: ta.volume.VolumeWeightedAveragePrice(
            _s(b["high"]), _s(b["low"]), _s(b["close"]), _s(b["volume"])
        ).volume_weighted_average_price(),
    ),
}


def ta_atr(b: dict[str, np.ndarray]) -> np.ndarray:
    return ta.volatility.AverageTrueRange(_s(b["high"]), _s(b["low"]), _s(b["close"])).average_true_range().to_numpy()


def assert_series_match(ours: np.ndarray, ref) -> None:
    ref = np.asarray(ref, dtype=np.float64)
    assert isinstance(ours, np.ndarray) and ours.dtype == np.float64
    assert ours.shape == ref.shape
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref), err_msg="NaN positions differ")
    ok = ~np.isnan(ref)
    np.testing.assert_allclose(ours[ok], ref[ok], rtol=1e-9, atol=0)


@pytest.mark.parametrize("name", sorted(CASES))
def test_it_matches_ta_on_a_random_walk(name):
    bars = make_bars(500)
    ours, ref = CASES[name]
    assert_series_match(ours(bars), ref(bars))
    assert np.isfinite(ours(bars)[-200:]).all()


@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_it_matches_ta_including_warm_up_at_every_length(name, n):
    bars = make_bars(n, seed=n)
    ours, ref = CASES[name]
    assert_series_match(ours(bars), ref(bars))


@pytest.mark.parametrize(
    "name, window",
    [("sma", 20), ("ema", 20), ("rsi", 14), ("macd", 26), ("macd_signal", 34), ("bb_upper", 20), ("vwap", 14)],
)
def test_it_is_all_nan_with_fewer_bars_than_the_window(name, window):
    for n in (0, 1, window - 1):
        assert np.isnan(CASES[name][0](make_bars(n))).all()


@pytest.mark.parametrize("n", [14, 15, 50, 500])
def test_it_matches_ta_atr_after_its_seed(n):
    bars = make_bars(n)
    ours = ind.atr(high=bars["high"], low=bars["low"], close=bars["close"])
    ref = ta_atr(bars)
    assert_series_match(ours[13:], ref[13:])
    # ta fills the warm-up with 0.0; this module deliberately uses NaN.
    assert (ref[:13] == 0.0).all() and np.isnan(ours[:13]).all()


def test_it_returns_nan_atr_when_ta_cannot_compute_it():
    # ta raises IndexError for fewer than `window` bars.
    for n in (0, 1, 13):
        b = make_bars(n)
        assert np.isnan(ind.atr(high=b["high"], low=b["low"], close=b["close"])).all()


@pytest.mark.parametrize("name", sorted(CASES))
def test_it_matches_ta_on_a_constant_price(name):
    bars = constant_bars(60)
    ours, ref = CASES[name]
    assert_series_match(ours(bars), ref(bars))


def test_it_reports_rsi_100_on_a_constant_price_like_ta():
    rsi = ind.rsi(close=np.full(30, 10.0))
    assert np.isnan(rsi[:13]).all() and (rsi[13:] == 100.0).all()


def test_it_reports_zero_atr_on_a_constant_price():
    b = constant_bars(30)
    ours = ind.atr(high=b["high"], low=b["low"], close=b["close"])
    assert_series_match(ours[13:], ta_atr(b)[13:])
    assert (ours[13:] == 0.0).all()


def test_it_follows_pandas_ewm_across_a_gap():
    close = make_bars(80)["close"]
    close[[0, 1, 30, 31, 50]] = np.nan
    assert_series_match(ind.ema(close=close), ta.trend.EMAIndicator(_s(close), 20).ema_indicator())


def test_it_computes_session_vwap_cumulatively():
    bars = make_bars(300)
    ours = ind.session_vwap(high=bars["high"], low=bars["low"], close=bars["close"], volume=bars["volume"])
    # A rolling window as long as the series with min_periods=0 is the cumulative VWAP.
    ref = ta.volume.VolumeWeightedAveragePrice(
        _s(bars["high"]),
        _s(bars["low"]),
        _s(bars["close"]),
        _s(bars["volume"]),
        window=300,
        fillna=True,
    ).volume_weighted_average_price()
    assert_series_match(ours, ref)


def test_it_returns_nan_vwap_while_there_is_no_volume():
    bars = make_bars(20)
    bars["volume"][:15] = 0.0
    hlcv = {k: bars[k] for k in ("high", "low", "close", "volume")}
    sess = ind.session_vwap(**hlcv)
    assert np.isnan(sess[:15]).all() and np.isfinite(sess[15:]).all()
    rolling = ind.vwap(**hlcv)
    assert np.isnan(rolling[:15]).all() and np.isfinite(rolling[15:]).all()


def to_dicts(bars: dict[str, np.ndarray], as_decimal: bool) -> list[dict]:
    conv = (lambda x: Decimal(repr(float(x)))) if as_decimal else float
    keys = ("open", "high", "low", "close", "volume")
    return [{"time": i, **{k: conv(bars[k][i]) for k in keys}} for i in range(len(bars["close"]))]


LATEST_KEYS = {
    "sma_20": "sma",
    "ema_20": "ema",
    "rsi_14": "rsi",
    "macd": "macd",
    "macd_signal": "macd_signal",
    "macd_hist": "macd_hist",
    "bb_mid": "bb_mid",
    "bb_upper": "bb_upper",
    "bb_lower": "bb_lower",
    "vwap_14": "vwap",
}


def test_it_returns_the_last_value_of_each_indicator_from_decimal_bars():
    bars = make_bars(500)
    out = ind.latest_indicators(bars=to_dicts(bars, as_decimal=True))
    assert set(out) == set(LATEST_KEYS) | {"atr_14", "session_vwap", "bars_used"}
    assert out["bars_used"] == 500
    for key, value in out.items():
        assert type(value) is (int if key == "bars_used" else float), key
    for key, case in LATEST_KEYS.items():
        assert out[key] == pytest.approx(float(CASES[case][1](bars).iloc[-1]), rel=1e-9), key
    assert out["atr_14"] == pytest.approx(ta_atr(bars)[-1], rel=1e-9)
    hlcv = {k: bars[k] for k in ("high", "low", "close", "volume")}
    assert out["session_vwap"] == pytest.approx(ind.session_vwap(**hlcv)[-1], rel=1e-12)


def test_it_accepts_ints_and_floats_alike():
    bars = {k: np.round(v) for k, v in make_bars(60).items()}
    as_int = [{k: (int(v) if k != "time" else v) for k, v in d.items()} for d in to_dicts(bars, as_decimal=False)]
    assert ind.latest_indicators(bars=as_int) == ind.latest_indicators(bars=to_dicts(bars, as_decimal=True))


@pytest.mark.parametrize(
    "n, missing",
    [
        (0, set(LATEST_KEYS) | {"atr_14", "session_vwap"}),
        (15, {"sma_20", "ema_20", "macd", "macd_signal", "macd_hist", "bb_mid", "bb_upper", "bb_lower"}),
        (30, {"macd_signal", "macd_hist"}),
        (34, set()),
    ],
)
def test_it_returns_none_where_there_are_not_enough_bars(n, missing):
    out = ind.latest_indicators(bars=to_dicts(make_bars(n), as_decimal=True))
    assert out["bars_used"] == n
    assert {k for k, v in out.items() if v is None} == missing


def test_it_rejects_a_non_positive_window():
    with pytest.raises(ValueError):
        ind.sma(close=[1.0, 2.0], window=0)


def test_it_does_not_import_ta():
    tree = ast.parse(Path(ind.__file__).read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert "ta" not in imported

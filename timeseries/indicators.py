"""Technical indicators over OHLCV bars, matching the `ta` library's definitions.

Pure functions: the caller passes bars already restricted to what was known at
time T (point-in-time); nothing here queries anything. Every series function
returns a float64 numpy array aligned with its input, NaN where there is not
enough data yet. `ta` is only a test-time reference and is not imported here.

Notes on `ta` (0.11) semantics reproduced below:
* EMA is pandas ``ewm(span=n, adjust=False, min_periods=n)``: seeded with the
  first value (not with an SMA of the first n values); NaN before index n-1.
* RSI treats the first, undefined, price change as 0 (``diff.where(diff > 0, 0)``
  turns the leading NaN into 0), so it is defined from index n-1, not n. When the
  average loss is 0 it is 100 -- including a constant price series.
* MACD's signal line is an EMA of the MACD line, whose leading NaNs are skipped:
  first defined at index slow-1 + signal-1 (33 for 12/26/9).
* Bollinger uses the population standard deviation (ddof=0).
* ATR: see `atr`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from operator import itemgetter
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]


def _arr(values: ArrayLike) -> FloatArray:
    return np.asarray(values, dtype=np.float64)


def _check_window(window: int) -> None:
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")


def _rolling(x: FloatArray, window: int, func: str) -> FloatArray:
    """Rolling mean/std(ddof=0)/sum over full windows only (pandas min_periods=window)."""
    out = np.full(x.shape[0], np.nan)
    if x.shape[0] >= window:
        view = sliding_window_view(x, window)
        out[window - 1 :] = getattr(view, func)(axis=1)
    return out


def _ewm(x: FloatArray, alpha: float, min_periods: int) -> FloatArray:
    """pandas ``Series.ewm(alpha=alpha, adjust=False, min_periods=...).mean()``.

    A recurrence, so a plain loop over Python floats (faster than numpy scalar
    indexing for a few hundred values), with pandas' arithmetic. Leading NaNs are
    skipped; interior NaNs decay the old weight (ignore_na=False); min_periods
    counts non-NaN values.
    """
    beta = 1.0 - alpha
    out = np.full(x.shape[0], np.nan)
    valid = ~np.isnan(x)
    if not valid.any():
        return out
    start = int(valid.argmax())
    xs = x[start:].tolist()
    if valid[start:].all():  # fast path: no gaps
        weighted, denom = xs[0], beta + alpha
        vals = [weighted]
        append = vals.append
        for cur in xs[1:]:
            if weighted != cur:
                weighted = (beta * weighted + alpha * cur) / denom
            append(weighted)
        out[start:] = vals
        out[start : start + min_periods - 1] = np.nan
        return out
    weighted, old_wt, nobs = xs[0], 1.0, 1
    for i, cur in enumerate(xs):
        if i:
            old_wt *= beta
            if cur == cur:
                nobs += 1
                if weighted != cur:
                    weighted = (old_wt * weighted + alpha * cur) / (old_wt + alpha)
                old_wt = 1.0
        if nobs >= min_periods:
            out[start + i] = weighted
    return out


def sma(*, close: ArrayLike, window: int = 20) -> FloatArray:
    """Simple moving average (ta.trend.SMAIndicator)."""
    _check_window(window)
    return _rolling(_arr(close), window, "mean")


def ema(*, close: ArrayLike, window: int = 20) -> FloatArray:
    """Exponential moving average, alpha = 2/(window+1) (ta.trend.EMAIndicator)."""
    _check_window(window)
    return _ewm(_arr(close), 2.0 / (window + 1.0), window)


def rsi(*, close: ArrayLike, window: int = 14) -> FloatArray:
    """Relative strength index with Wilder smoothing (ta.momentum.RSIIndicator)."""
    _check_window(window)
    c = _arr(close)
    diff = np.zeros_like(c)
    diff[1:] = np.diff(c)  # ta: the first change counts as 0, not NaN
    up = _ewm(np.maximum(diff, 0.0), 1.0 / window, window)
    down = _ewm(np.maximum(-diff, 0.0), 1.0 / window, window)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(down == 0, 100.0, 100.0 - 100.0 / (1.0 + up / down))


def macd(*, close: ArrayLike, fast: int = 12, slow: int = 26, signal: int = 9) -> dict[str, FloatArray]:
    """MACD line, signal line and histogram (ta.trend.MACD macd/macd_signal/macd_diff)."""
    c = _arr(close)
    line = ema(close=c, window=fast) - ema(close=c, window=slow)
    _check_window(signal)
    sig = _ewm(line, 2.0 / (signal + 1.0), signal)
    return {"macd": line, "signal": sig, "hist": line - sig}


def bollinger(*, close: ArrayLike, window: int = 20, k: float = 2.0) -> dict[str, FloatArray]:
    """Bollinger bands, population std (ta.volatility.BollingerBands)."""
    _check_window(window)
    c = _arr(close)
    mid = _rolling(c, window, "mean")
    std = _rolling(c, window, "std")
    return {"mid": mid, "upper": mid + k * std, "lower": mid - k * std}


def atr(*, high: ArrayLike, low: ArrayLike, close: ArrayLike, window: int = 14) -> FloatArray:
    """Average true range (ta.volatility.AverageTrueRange).

    ta's recurrence, reproduced exactly:
      TR[0]   = high[0] - low[0]  (no previous close; pandas' max skips the NaNs)
      TR[i]   = max(high-low, |high-prev_close|, |low-prev_close|)
      ATR[w-1] = mean(TR[0:w])    (seed includes the truncated TR[0])
      ATR[i]  = (ATR[i-1] * (w-1) + TR[i]) / w   for i >= w
    Deliberate deviation: ta fills the warm-up (i < w-1) with 0.0 -- a valid-looking
    "no volatility" value -- and raises IndexError for fewer than w bars. Here the
    warm-up is NaN, as for every other indicator in this module.
    """
    _check_window(window)
    h, lo, c = _arr(high), _arr(low), _arr(close)
    n = c.shape[0]
    out = np.full(n, np.nan)
    if n < window:
        return out
    tr = h - lo
    prev = c[:-1]
    tr[1:] = np.fmax(np.fmax(tr[1:], np.abs(h[1:] - prev)), np.abs(lo[1:] - prev))
    value = float(tr[:window].mean())
    vals = [value]
    for t in tr[window:].tolist():
        value = (value * (window - 1) + t) / float(window)
        vals.append(value)
    out[window - 1 :] = vals
    return out


def _typical_pv(high: ArrayLike, low: ArrayLike, close: ArrayLike, volume: ArrayLike) -> tuple[FloatArray, FloatArray]:
    v = _arr(volume)
    return (_arr(high) + _arr(low) + _arr(close)) / 3.0 * v, v


def vwap(
    *,
    high: ArrayLike,
    low: ArrayLike,
    close: ArrayLike,
    volume: ArrayLike,
    window: int = 14,
) -> FloatArray:
    """Rolling typical-price VWAP over `window` bars (ta.volume.VolumeWeightedAveragePrice).

    NaN where the window's total volume is 0.
    """
    _check_window(window)
    pv, v = _typical_pv(high, low, close, volume)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = _rolling(pv, window, "sum") / _rolling(v, window, "sum")
    out[~np.isfinite(out)] = np.nan
    return out


def session_vwap(*, high: ArrayLike, low: ArrayLike, close: ArrayLike, volume: ArrayLike) -> FloatArray:
    """Cumulative typical-price VWAP from the first bar given (NaN while volume is 0)."""
    pv, v = _typical_pv(high, low, close, volume)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.cumsum(pv) / np.cumsum(v)
    out[~np.isfinite(out)] = np.nan
    return out


def _last(series: FloatArray) -> float | None:
    if series.shape[0] == 0:
        return None
    value = float(series[-1])
    return None if math.isnan(value) else value


def latest_indicators(*, bars: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
    """Last value of each indicator over `bars` (dicts with time/open/high/low/close/volume,
    time ascending; Decimal, float or int values). None where not enough bars."""
    n = len(bars)
    high, low, close, volume = (
        np.fromiter(map(float, map(itemgetter(key), bars)), np.float64, n) for key in ("high", "low", "close", "volume")
    )
    m = macd(close=close)
    bb = bollinger(close=close)
    return {
        "sma_20": _last(sma(close=close, window=20)),
        "ema_20": _last(ema(close=close, window=20)),
        "rsi_14": _last(rsi(close=close, window=14)),
        "macd": _last(m["macd"]),
        "macd_signal": _last(m["signal"]),
        "macd_hist": _last(m["hist"]),
        "bb_mid": _last(bb["mid"]),
        "bb_upper": _last(bb["upper"]),
        "bb_lower": _last(bb["lower"]),
        "atr_14": _last(atr(high=high, low=low, close=close, window=14)),
        "vwap_14": _last(vwap(high=high, low=low, close=close, volume=volume, window=14)),
        "session_vwap": _last(session_vwap(high=high, low=low, close=close, volume=volume)),
        "bars_used": n,
    }

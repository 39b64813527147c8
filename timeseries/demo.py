"""Deterministic, vectorised demo data for the five tsm datasets.

Every generator returns pyarrow data with an explicit ``known_at`` column
(``timestamp[us, tz=UTC]``) next to the event ``time``. Randomness comes from
``numpy.random.default_rng`` seeded with ``(seed, dataset, symbol)`` (symbols are
hashed by *name*), so a symbol's rows do not depend on which other symbols are
generated alongside it. Government events are the exception: they are drawn for
the whole symbol universe at once.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

__all__ = [
    "DEFAULT_SYMBOLS",
    "SECTORS",
    "SCHEMAS",
    "make_symbols",
    "sector_of",
    "market_data_batches",
    "market_data",
    "market_data_corrections",
    "market_data_next_session",
    "market_data_fixes",
    "news_events",
    "insider_trades",
    "social_sentiment",
    "government_events",
    "generate_all",
    "write_csv",
    "write_parquet",
    "write_ndjson",
]

TS = pa.timestamp("us", tz="UTC")
US = 1_000_000
HOUR_US = 3600 * US
DAY_US = 86_400 * US
SESSION_OPEN_S = 14 * 3600 + 30 * 60  # 14:30 UTC
SESSION_LEN_S = 6 * 3600 + 30 * 60  # 390 minutes
_BLOCK_BARS = 16_384  # fixed generation block: results never depend on batch_rows
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

SECTORS: dict[str, str] = {
    "AAPL": "Technology",
    "MSFT": "Technology",
    "NVDA": "Technology",
    "GOOGL": "Communication Services",
    "AMZN": "Consumer Discretionary",
    "META": "Communication Services",
    "TSLA": "Consumer Discretionary",
    "AVGO": "Technology",
    "JPM": "Financials",
    "V": "Financials",
    "MA": "Financials",
    "BAC": "Financials",
    "GS": "Financials",
    "WFC": "Financials",
    "UNH": "Health Care",
    "JNJ": "Health Care",
    "LLY": "Health Care",
    "PFE": "Health Care",
    "MRK": "Health Care",
    "ABBV": "Health Care",
    "XOM": "Energy",
    "CVX": "Energy",
    "COP": "Energy",
    "WMT": "Consumer Staples",
    "PG": "Consumer Staples",
    "KO": "Consumer Staples",
    "PEP": "Consumer Staples",
    "COST": "Consumer Staples",
    "HD": "Consumer Discretionary",
    "MCD": "Consumer Discretionary",
    "NKE": "Consumer Discretionary",
    "DIS": "Communication Services",
    "NFLX": "Communication Services",
    "T": "Communication Services",
    "BA": "Industrials",
    "CAT": "Industrials",
    "GE": "Industrials",
    "LMT": "Industrials",
    "RTX": "Industrials",
    "UPS": "Industrials",
    "ORCL": "Technology",
    "CRM": "Technology",
    "AMD": "Technology",
    "INTC": "Technology",
    "CSCO": "Technology",
    "NEE": "Utilities",
    "DUK": "Utilities",
    "LIN": "Materials",
    "FCX": "Materials",
    "PLD": "Real Estate",
}
DEFAULT_SYMBOLS: list[str] = list(SECTORS)
_SECTOR_NAMES: tuple[str, ...] = tuple(sorted(set(SECTORS.values())))


def make_symbols(n: int) -> list[str]:
    """Real tickers first, then synthetic ``SYM0000``-style tickers; deterministic."""
    if n < 0:
        raise ValueError("n must be >= 0")
    extra = n - len(DEFAULT_SYMBOLS)
    width = max(4, len(str(max(extra - 1, 0))))
    return DEFAULT_SYMBOLS[:n] + [f"SYM{i:0{width}d}" for i in range(max(extra, 0))]


def sector_of(symbol: str) -> str:
    """Sector of a real ticker, or a deterministic (hash-based) sector for synthetic ones."""
    return SECTORS.get(symbol) or _SECTOR_NAMES[zlib.crc32(symbol.encode()) % len(_SECTOR_NAMES)]


# --------------------------------------------------------------------------- schemas
_F, _I32, _I64, _S, _LS = pa.float64(), pa.int32(), pa.int64(), pa.string(), pa.list_(pa.string())
SCHEMAS: dict[str, pa.Schema] = {
    "market_data": pa.schema(
        [
            ("time", TS),
            ("symbol", _S),
            ("open", _F),
            ("high", _F),
            ("low", _F),
            ("close", _F),
            ("volume", _I64),
            ("vwap", _F),
            ("trades", _I32),
            ("market_cap", _F),
            ("source", _S),
            ("quality_score", _F),
            ("known_at", TS),
        ]
    ),
    "news_events": pa.schema(
        [
            ("time", TS),
            ("symbol", _S),
            ("news_id", _S),
            ("title", _S),
            ("content", _S),
            ("source", _S),
            ("sentiment", _F),
            ("impact_score", _F),
            ("categories", _LS),
            ("url", _S),
            ("author", _S),
            ("language", _S),
            ("quality_score", _F),
            ("known_at", TS),
        ]
    ),
    "insider_trades": pa.schema(
        [
            ("time", TS),
            ("symbol", _S),
            ("insider_name", _S),
            ("title", _S),
            ("transaction_type", _S),
            ("shares", _I64),
            ("price", _F),
            ("value", _F),
            ("filing_date", TS),
            ("form_type", _S),
            ("is_cluster_trade", pa.bool_()),
            ("political_connection", pa.bool_()),
            ("known_at", TS),
        ]
    ),
    "social_sentiment": pa.schema(
        [
            ("time", TS),
            ("symbol", _S),
            ("platform", _S),
            ("mention_count", _I32),
            ("sentiment_avg", _F),
            ("sentiment_std", _F),
            ("unique_users", _I32),
            ("total_engagement", _I64),
            ("momentum_score", _F),
            ("viral_score", _F),
            ("known_at", TS),
        ]
    ),
    "government_events": pa.schema(
        [
            ("time", TS),
            ("event_type", _S),
            ("amount", _F),
            ("description", _S),
            ("primary_symbol", _S),
            ("affected_symbols", _LS),
            ("sectors", _LS),
            ("country", _S),
            ("state_province", _S),
            ("market_impact", _F),
            ("confidence", _F),
            ("known_at", TS),
        ]
    ),
}


# --------------------------------------------------------------------------- helpers
def _rng(seed: int, dataset: str, symbol: str | None = None, *extra: int) -> np.random.Generator:
    words = [int(seed), zlib.crc32(dataset.encode())]
    if symbol is not None:
        words.append(zlib.crc32(symbol.encode()))
    return np.random.default_rng([*words, *extra])


def _window(start: datetime, days: int) -> tuple[int, int]:
    """``[start, start + days)`` as epoch microseconds."""
    if not isinstance(start, datetime) or start.tzinfo is None or start.utcoffset() is None:
        raise ValueError(f"start must be a timezone-aware datetime, got {start!r}")
    if days < 0:
        raise ValueError("days must be >= 0")
    t0 = (start - _EPOCH) // timedelta(microseconds=1)
    return t0, t0 + days * DAY_US


def _ts(values: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(values, dtype=np.int64), type=pa.int64()).cast(TS)


def _repeat_str(codes: np.ndarray, labels: Sequence[str]) -> pa.Array:
    """String column from integer codes into ``labels`` (fast, via a dictionary cast)."""
    dictionary = pa.array(list(labels), type=pa.string())
    return pa.DictionaryArray.from_arrays(pa.array(codes, type=pa.int32()), dictionary).cast(pa.string())


def _business_days(t0: int, t1: int) -> np.ndarray:
    """Weekdays (as epoch day numbers) whose midnight falls in ``[t0, t1)``."""
    days = np.arange(-(-t0 // DAY_US), -(-t1 // DAY_US), dtype=np.int64)
    return days[(days + 3) % 7 < 5]  # 1970-01-01 was a Thursday


def _expand(n: int, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row index repeating each masked row twice, and positions of the inserted copies."""
    take = np.repeat(np.arange(n), 1 + mask.astype(np.int64))
    picked = np.flatnonzero(mask)
    return take, picked + np.arange(picked.size) + 1


def _symbol_profile(seed: int, symbol: str) -> dict[str, float]:
    r = _rng(seed, "profile", symbol)
    return {
        "price": float(np.exp(r.uniform(np.log(10.0), np.log(500.0)))),
        "vol": float(r.uniform(0.15, 0.60)),  # annualised
        "daily_volume": float(np.exp(r.uniform(np.log(2e5), np.log(3e7)))),
        "shares_out": float(np.exp(r.uniform(np.log(5e7), np.log(1.5e10)))),
        "trade_size": float(r.uniform(60.0, 250.0)),
        "buzz": float(np.exp(r.normal(1.5 if symbol in SECTORS else 0.0, 0.8))),
    }


# --------------------------------------------------------------------------- market data
def _bar_grid(t0: int, t1: int, interval_s: int, trading_hours_only: bool) -> tuple[np.ndarray, ...]:
    """Bar times shared by every symbol, with seasonality and new-session flags."""
    step = interval_s * US
    if trading_hours_only:
        days = _business_days(t0 - t0 % DAY_US, t1)
        offsets = SESSION_OPEN_S * US + np.arange(SESSION_LEN_S // interval_s, dtype=np.int64) * step
        times = (days[:, None] * DAY_US + offsets[None, :]).ravel()
        times = times[(times >= t0) & (times < t1)]
    else:
        times = np.arange(-(-t0 // step) * step, t1, step, dtype=np.int64)
    # U-shaped intraday activity with mean 1 over the session, quiet outside it
    x = ((times % DAY_US) / US - SESSION_OPEN_S) / SESSION_LEN_S
    season = np.where((x >= 0) & (x < 1), (0.55 + 2.2 * (2 * x - 1) ** 2) / (0.55 + 2.2 / 3), 0.1)
    new_session = np.zeros(times.size, dtype=bool)
    if trading_hours_only and times.size:
        new_session[1:] = np.diff(times // DAY_US) != 0
    return times, season, new_session


def _ticks(price: np.ndarray) -> np.ndarray:
    """Exchange price increments: cents from $1 up, 1/100 of a cent below (sub-penny quotes)."""
    return np.where(price >= 1.0, np.round(price, 2), np.round(price, 4))


def _market_block(
    rngs: tuple[np.random.Generator, np.random.Generator],
    last_close: float,
    cap: tuple[float, int],
    prof: dict[str, float],
    times: np.ndarray,
    season: np.ndarray,
    new_session: np.ndarray,
    sigma: float,
    step_us: int,
    correction_rate: float,
    mode: str,
) -> tuple[dict[str, np.ndarray], float, tuple[float, int]]:
    """One symbol's bars for one block; returns the columns, the raw last close (walk state) and the
    market-cap state (reference close, its day).

    Draws are laid out bar-major, so a shorter window yields a prefix of a longer one.
    """
    n = times.size
    cap_ref, cap_day = cap
    z = np.ascontiguousarray(rngs[0].standard_normal((n, 6)).T)
    u = np.ascontiguousarray(rngs[1].random((n, 7)).T)
    r = sigma * np.sqrt(season) * z[0]
    gap = np.where(new_session, z[1] * sigma * 10.0, 0.0)  # overnight gap at each session open
    log_close = np.log(last_close) + np.cumsum(r + gap)
    close = np.exp(log_close)
    open_ = np.exp(log_close - r)
    high = np.maximum(open_, close) * np.exp(np.abs(z[2]) * sigma * 0.6)
    low = np.minimum(open_, close) * np.exp(-np.abs(z[3]) * sigma * 0.6)
    vwap = np.clip(0.5 * (open_ + close) + (u[0] - 0.5) * 0.3 * (high - low), low, high)
    bar_volume = prof["daily_volume"] * step_us / (SESSION_LEN_S * US)
    volume = np.rint(bar_volume * season * np.exp(0.5 * z[4] - 0.125) * (0.6 + 0.5 * np.abs(z[0])))
    volume = volume.astype(np.int64)
    trades = np.rint(volume / prof["trade_size"] * np.exp(0.2 * z[5])).astype(np.int64)
    trades = np.where(volume > 0, np.maximum(trades, 1), 0)
    quality = np.where(u[1] < 0.98, 1.0, np.round(0.5 + (u[1] - 0.98) * 24.5, 3))
    walk_state = float(close[-1]) if n else last_close
    # quoted in ticks (rounding is monotone, so the OHLC ordering survives it); vwap is computed, with
    # four decimals, and kept inside the rounded range
    high_t, low_t = _ticks(high), _ticks(low)
    cols: dict[str, np.ndarray] = {
        "time": times,
        "open": _ticks(open_),
        "high": high_t,
        "low": low_t,
        "close": _ticks(close),
        "volume": volume,
        "vwap": np.clip(np.round(vwap, 4), low_t, high_t),
        "trades": trades,
        "quality_score": quality,
        "known_at": times + step_us,
    }
    # market cap as of the previous day's close: one figure per day, as feeds publish it
    prev_close = np.concatenate(([_ticks(np.array([last_close]))[0]], cols["close"][:-1]))
    day = times // DAY_US
    day_start = np.zeros(n, dtype=bool)
    day_start[:1] = day[:1] != cap_day
    day_start[1:] = day[1:] != day[:-1]
    since = np.maximum.accumulate(np.where(day_start, np.arange(n), -1))  # index of the day's first bar
    ref = np.where(since >= 0, prev_close[np.maximum(since, 0)], cap_ref)
    cols["market_cap"] = np.round(ref * prof["shares_out"], 2)
    cap_state = (float(ref[-1]), int(day[-1])) if n else (cap_ref, cap_day)
    mask = u[2] < correction_rate
    if mode == "none":
        return cols, walk_state, cap_state
    take, pos = _expand(n, mask)
    out = {name: col[take] for name, col in cols.items()}
    cu = u[3:, mask]  # correction draws: size, direction, volume share, lag
    c = out["close"][pos]
    up = (cu[1] < 0.5) | (c < 1.0)
    new_c = _ticks(c + np.where(up, 1.0, -1.0) * np.maximum(0.004 * cu[0] * c, 0.01))
    out["close"][pos] = new_c
    out["high"][pos] = np.maximum(out["high"][pos], new_c)
    out["low"][pos] = np.minimum(out["low"][pos], new_c)
    v = out["volume"][pos]
    dv = np.maximum(1, np.rint(v * (0.01 + 0.09 * cu[2]))).astype(np.int64)
    new_v = np.where(~up & (v >= dv), v - dv, v + dv)
    out["volume"][pos] = new_v
    out["trades"][pos] = np.where(new_v > 0, np.maximum(out["trades"][pos], 1), 0)
    out["known_at"][pos] += (3600 + np.floor(cu[3] * 47 * 3600).astype(np.int64)) * US  # 1-48 h later
    if mode == "only":
        out = {name: col[pos] for name, col in out.items()}
    return out, walk_state, cap_state


def _market_chunks(
    symbols: Sequence[str],
    t0: int,
    t1: int,
    seed: int,
    bar_interval_s: int,
    trading_hours_only: bool,
    correction_rate: float,
    mode: str,
) -> Iterator[dict[str, np.ndarray]]:
    times, season, new_session = _bar_grid(t0, t1, bar_interval_s, trading_hours_only)
    step_us = bar_interval_s * US
    year_s = 252 * SESSION_LEN_S  # volatility is calibrated on regular-session time
    for code, symbol in enumerate(symbols):
        prof = _symbol_profile(seed, symbol)
        sigma = prof["vol"] * float(np.sqrt(bar_interval_s / year_s))
        last = prof["price"]
        cap = (float(_ticks(np.array([last]))[0]), int(times[0] // DAY_US) if times.size else 0)
        for b, lo in enumerate(range(0, times.size, _BLOCK_BARS)):
            sl = slice(lo, lo + _BLOCK_BARS)
            rngs = (_rng(seed, "market_data", symbol, b, 0), _rng(seed, "market_data", symbol, b, 1))
            cols, last, cap = _market_block(
                rngs, last, cap, prof, times[sl], season[sl], new_session[sl], sigma, step_us, correction_rate, mode
            )
            cols["symbol"] = np.full(cols["close"].size, code, dtype=np.int32)
            yield cols


def _market_batch(cols: dict[str, np.ndarray], symbols: Sequence[str]) -> pa.RecordBatch:
    n = cols["time"].size
    arrays = {
        "time": _ts(cols["time"]),
        "symbol": _repeat_str(cols["symbol"], symbols),
        **{k: pa.array(cols[k], type=_F) for k in ("open", "high", "low", "close")},
        "volume": pa.array(cols["volume"], type=_I64),
        "vwap": pa.array(cols["vwap"], type=_F),
        "trades": pa.array(cols["trades"].astype(np.int32), type=_I32),
        "market_cap": pa.array(cols["market_cap"], type=_F),
        "source": _repeat_str(np.zeros(n, dtype=np.int32), ["demo"]),
        "quality_score": pa.array(cols["quality_score"], type=_F),
        "known_at": _ts(cols["known_at"]),
    }
    schema = SCHEMAS["market_data"]
    return pa.RecordBatch.from_arrays([arrays[f.name] for f in schema], schema=schema)


def _market_stream(
    symbols: Sequence[str],
    start: datetime,
    days: int,
    seed: int,
    bar_interval_s: int,
    trading_hours_only: bool,
    correction_rate: float,
    batch_rows: int,
    mode: str,
) -> Iterator[pa.RecordBatch]:
    """Validate eagerly, then return the lazy batch generator."""
    t0, t1 = _window(start, days)
    if bar_interval_s <= 0 or batch_rows <= 0:
        raise ValueError("bar_interval_s and batch_rows must be positive")
    if not 0.0 <= correction_rate <= 1.0:
        raise ValueError("correction_rate must be within [0, 1]")
    chunks = _market_chunks(symbols, t0, t1, seed, bar_interval_s, trading_hours_only, correction_rate, mode)
    return _rebatch(chunks, list(symbols), batch_rows)


def _rebatch(chunks: Iterable[dict[str, np.ndarray]], symbols: list[str], batch_rows: int) -> Iterator[pa.RecordBatch]:
    """Regroup generated chunks into record batches of exactly ``batch_rows`` rows (the last may be shorter)."""
    buf: list[dict[str, np.ndarray]] = []
    rows = 0
    for chunk in chunks:
        if not chunk["time"].size:
            continue
        buf.append(chunk)
        rows += chunk["time"].size
        if rows < batch_rows:
            continue
        merged = {k: np.concatenate([c[k] for c in buf]) for k in buf[0]}
        cut = rows - rows % batch_rows
        for a in range(0, cut, batch_rows):
            yield _market_batch({k: v[a : a + batch_rows] for k, v in merged.items()}, symbols)
        buf = [{k: v[cut:] for k, v in merged.items()}] if cut < rows else []
        rows -= cut
    if rows:
        yield _market_batch({k: np.concatenate([c[k] for c in buf]) for k in buf[0]}, symbols)


def market_data_batches(
    *,
    symbols: Sequence[str],
    start: datetime,
    days: int,
    seed: int = 0,
    bar_interval_s: int = 60,
    trading_hours_only: bool = True,
    correction_rate: float = 0.01,
    batch_rows: int = 1_000_000,
    include_corrections: bool = True,
) -> Iterator[pa.RecordBatch]:
    """Stream OHLCV bars ordered by symbol then time, in batches of ``batch_rows`` rows.

    Bars cover ``[start, start + days)``: 14:30-21:00 UTC on weekdays (390 one-minute
    bars) when ``trading_hours_only``, else around the clock. ``known_at = time +
    bar_interval_s``. With ``include_corrections`` a ``correction_rate`` share of bars
    is followed by a correction row (same symbol/time, known 1-48 h later).
    """
    mode = "inline" if include_corrections else "none"
    return _market_stream(
        symbols, start, days, seed, bar_interval_s, trading_hours_only, correction_rate, batch_rows, mode
    )


def market_data(
    *,
    symbols: Sequence[str],
    start: datetime,
    days: int,
    seed: int = 0,
    bar_interval_s: int = 60,
    trading_hours_only: bool = True,
    correction_rate: float = 0.01,
    batch_rows: int = 1_000_000,
    include_corrections: bool = True,
) -> pa.Table:
    """All of :func:`market_data_batches` as one table."""
    batches = list(
        market_data_batches(
            symbols=symbols,
            start=start,
            days=days,
            seed=seed,
            bar_interval_s=bar_interval_s,
            trading_hours_only=trading_hours_only,
            correction_rate=correction_rate,
            batch_rows=batch_rows,
            include_corrections=include_corrections,
        )
    )
    return pa.Table.from_batches(batches, schema=SCHEMAS["market_data"])


def market_data_corrections(
    *,
    symbols: Sequence[str],
    start: datetime,
    days: int,
    seed: int = 0,
    bar_interval_s: int = 60,
    trading_hours_only: bool = True,
    correction_rate: float = 0.01,
) -> pa.Table:
    """Only the correction rows that :func:`market_data` would include inline."""
    batches = list(
        _market_stream(
            symbols, start, days, seed, bar_interval_s, trading_hours_only, correction_rate, 1_000_000, "only"
        )
    )
    return pa.Table.from_batches(batches, schema=SCHEMAS["market_data"])


def _next_session(end: datetime) -> datetime:
    """Midnight (UTC) of the first weekday on or after ``end``."""
    day = end.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if day < end:
        day += timedelta(days=1)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


def market_data_next_session(
    *, symbols: Sequence[str], start: datetime, days: int, seed: int = 0, bar_interval_s: int = 60
) -> pa.Table:
    """The bars of the first weekday after ``[start, start + days)`` — what a feed delivers next.

    Each symbol's price path continues where the window ended (generation is prefix-stable), so
    loading this after :func:`market_data` of the same window inserts one new session.
    """
    session = _next_session(start + timedelta(days=days))
    span = -(-(session + timedelta(days=1) - start) // timedelta(days=1))
    table = market_data(symbols=symbols, start=start, days=span, seed=seed, bar_interval_s=bar_interval_s)
    return table.filter(pc.greater_equal(table["time"], pa.scalar(session, type=TS)))


def market_data_fixes(
    *, symbols: Sequence[str], start: datetime, days: int, seed: int = 0, per_symbol: int = 10, bar_interval_s: int = 60
) -> pa.Table:
    """A data-quality fix file: the first ``per_symbol`` bars of each symbol's last session in the
    window, re-sent with a different close inside [low, high], the same ``known_at`` and source
    ``demo_fix``. Loaded after :func:`market_data` of the same window, every row is a revision."""
    table = market_data(
        symbols=symbols, start=start, days=days, seed=seed, bar_interval_s=bar_interval_s, include_corrections=False
    )
    if table.num_rows == 0:
        return table
    last = pc.max(table["time"]).as_py()
    session = pa.scalar(last.replace(hour=0, minute=0, second=0, microsecond=0), type=TS)
    day = table.filter(pc.greater_equal(table["time"], session))
    picked = [day.filter(pc.equal(day["symbol"], sym)).slice(0, per_symbol) for sym in symbols]
    day = pa.concat_tables(picked)
    high, low, close = (day[c].to_numpy() for c in ("high", "low", "close"))
    mid = np.round((high + low) / 2, 4)
    fixed = np.where(mid != close, mid, high)
    keep = fixed != close  # a bar with high == low == close has no other value to take
    day = day.set_column(day.schema.get_field_index("close"), "close", pa.array(fixed, type=_F))
    day = day.set_column(
        day.schema.get_field_index("source"), "source", pa.array(["demo_fix"] * day.num_rows, type=pa.string())
    )
    return day.filter(pa.array(keep))


# --------------------------------------------------------------------------- per-symbol tables
def _per_symbol(dataset: str, symbols: Sequence[str], build: Callable[[int, str], dict[str, Any]]) -> pa.Table:
    """Concatenate ``build(code, symbol) -> dict of columns`` over symbols into a table."""
    schema = SCHEMAS[dataset]
    parts = [build(code, sym) for code, sym in enumerate(symbols)]
    cols: dict[str, pa.Array] = {}
    for field in schema:
        if field.name == "symbol":
            codes = [np.full(len(p["time"]), c, np.int32) for c, p in enumerate(parts)]
            cols["symbol"] = _repeat_str(np.concatenate([np.zeros(0, np.int32), *codes]), list(symbols))
            continue
        values = [p[field.name] for p in parts]
        if pa.types.is_timestamp(field.type):
            cols[field.name] = _ts(np.concatenate([np.zeros(0, np.int64), *values]))
        elif values and isinstance(values[0], np.ndarray):
            cols[field.name] = pa.array(np.concatenate(values), type=field.type)
        else:
            cols[field.name] = pa.array([x for v in values for x in v], type=field.type)
    return pa.Table.from_pydict(cols, schema=schema)


_NEWS_TEMPLATES: tuple[tuple[str, int, tuple[str, ...]], ...] = (
    ("{s} beats quarterly earnings expectations", 1, ("earnings",)),
    ("{s} raises full-year guidance", 1, ("earnings", "guidance")),
    ("Analysts upgrade {s} on strong demand", 1, ("analyst",)),
    ("{s} announces share buyback programme", 1, ("corporate_action",)),
    ("{s} unveils new product line", 1, ("product",)),
    ("{s} agrees to acquire smaller rival", 1, ("m&a",)),
    ("{s} misses revenue estimates", -1, ("earnings",)),
    ("{s} cuts full-year guidance", -1, ("earnings", "guidance")),
    ("Analysts downgrade {s} citing margin pressure", -1, ("analyst",)),
    ("Regulators open probe into {s}", -1, ("legal", "regulatory")),
    ("{s} recalls products over safety concerns", -1, ("product", "legal")),
    ("{s} to present at industry conference", 0, ("events",)),
    ("{s} names new chief operating officer", 0, ("management",)),
    ("{s} files quarterly report", 0, ("filings",)),
)
_NEWS_SOURCES = ("demo-newswire", "demo-press-release", "demo-markets-desk", "demo-analyst-notes", "demo-blog")
_FIRST = (
    "Alex",
    "Jordan",
    "Taylor",
    "Morgan",
    "Casey",
    "Jamie",
    "Riley",
    "Avery",
    "Quinn",
    "Drew",
    "Sam",
    "Robin",
    "Cameron",
    "Dana",
    "Elliot",
    "Harper",
)
_LAST = (
    "Smith",
    "Chen",
    "Garcia",
    "Patel",
    "Johnson",
    "Kim",
    "Müller",
    "Rossi",
    "Nguyen",
    "Brown",
    "Okafor",
    "Silva",
    "Novak",
    "Larsen",
    "Cohen",
    "Tanaka",
)


def news_events(
    *, symbols: Sequence[str], start: datetime, days: int, seed: int = 0, per_symbol_per_day: float = 3.0
) -> pa.Table:
    """News stories; known_at is publication time or a short delivery lag after it."""
    t0, t1 = _window(start, days)

    def build(_: int, sym: str) -> dict[str, Any]:
        r = _rng(seed, "news_events", sym)
        n = int(r.poisson(per_symbol_per_day * days))
        t = np.sort(t0 + r.integers(0, max(t1 - t0, 1) // US, size=n) * US)
        same = r.random(n) < 0.05  # some stories share a second with the previous one
        same[:1] = False
        t = np.where(same, np.roll(t, 1), t) if n else t
        tpl = r.integers(0, len(_NEWS_TEMPLATES), size=n)
        tone = np.array([_NEWS_TEMPLATES[i][1] for i in tpl], dtype=np.float64)
        mag = r.uniform(0.2, 0.95, size=n)
        sent = np.round(np.where(tone != 0, tone * mag, np.clip(r.normal(0, 0.1, n), -0.3, 0.3)), 4)
        impact = np.round(np.clip(np.abs(sent) * 0.8 + 0.2 * r.random(n), 0, 1), 4)
        lag_kind = r.random(n)
        lag_s = np.where(lag_kind < 0.7, 0, np.where(lag_kind < 0.95, r.integers(1, 60, n), r.integers(60, 900, n)))
        add_sector = r.random(n) < 0.5
        src, auth = r.integers(0, len(_NEWS_SOURCES), n), r.integers(0, len(_FIRST) * len(_LAST), n)
        lang = np.where(r.random(n) < 0.95, "en", np.array(["de", "fr", "es", "ja"])[r.integers(0, 4, n)])
        sector = sector_of(sym)
        titles = [_NEWS_TEMPLATES[i][0].format(s=sym) for i in tpl]
        ids = [f"{sym}-{seed}-{i:06d}" for i in range(n)]
        return {
            "time": t,
            "news_id": ids,
            "title": titles,
            "content": [
                f"{title}. The {sector.lower()} company said the development was material to its "
                f"outlook. (Synthetic demo story.)"
                for title in titles
            ],
            "source": [_NEWS_SOURCES[i] for i in src],
            "sentiment": sent,
            "impact_score": impact,
            "categories": [
                list(_NEWS_TEMPLATES[i][2]) + ([sector.lower()] if a else []) for i, a in zip(tpl, add_sector)
            ],
            "url": [f"https://news.example.com/{sym.lower()}/{i}" for i in ids],
            "author": [f"{_FIRST[a % len(_FIRST)]} {_LAST[a // len(_FIRST)]}" for a in auth],
            "language": lang.tolist(),
            "quality_score": [None] * n,
            "known_at": t + lag_s * US,
        }

    return _per_symbol("news_events", symbols, build)


_INSIDER_TITLES = ("CEO", "CFO", "COO", "President", "General Counsel", "Director", "Director", "10% Owner")


def insider_trades(
    *, symbols: Sequence[str], start: datetime, days: int, seed: int = 0, amendment_rate: float = 0.05
) -> pa.Table:
    """Form 4 insider trades filed 1-3 business days later, plus ~``amendment_rate`` 4/A amendments."""
    t0, t1 = _window(start, days)
    bdays = _business_days(t0, t1)

    def build(_: int, sym: str) -> dict[str, Any]:
        r = _rng(seed, "insider_trades", sym)
        k = int(r.integers(3, 9))
        names = r.choice(len(_FIRST) * len(_LAST), size=k, replace=False)
        people = [f"{_FIRST[a % len(_FIRST)]} {_LAST[a // len(_FIRST)]}" for a in names]
        roles = np.array(["CEO", "CFO", *[_INSIDER_TITLES[i] for i in r.integers(2, len(_INSIDER_TITLES), k - 2)]])
        political = r.random(k) < 0.05
        n0 = int(r.poisson(0.08 * days)) if bdays.size else 0
        day_i = r.integers(0, max(bdays.size, 1), n0)
        who, sell = r.integers(0, k, n0), r.random(n0) < 0.65
        cluster = r.random(n0) < 0.12
        followers = np.repeat(np.flatnonzero(cluster), r.integers(1, 4, n0)[cluster])
        day_i = np.concatenate(
            [day_i, np.minimum(day_i[followers] + r.integers(0, 4, followers.size), max(bdays.size - 1, 0))]
        )
        who = np.concatenate([who, (who[followers] + r.integers(1, k, followers.size)) % k])
        sell = np.concatenate([sell, sell[followers]])
        is_cluster = np.concatenate([cluster, np.ones(followers.size, bool)])
        n = day_i.size
        intraday = r.random(n) < 0.3
        tod = SESSION_OPEN_S + r.integers(0, SESSION_LEN_S, n)
        t = bdays[day_i] * DAY_US + np.where(intraday, tod, 0) * US if n else np.zeros(0, np.int64)
        # drop duplicate keys (same insider, day/time and direction), keep first
        _, first = (
            np.unique(np.stack([t, who, sell.astype(np.int64)]), axis=1, return_index=True)
            if n
            else (None, np.zeros(0, np.int64))
        )
        order = np.sort(first)
        order = order[np.lexsort((who[order], t[order]))]
        t, who, sell, is_cluster, n = t[order], who[order], sell[order], is_cluster[order], order.size
        owner = roles[who] == "10% Owner"
        shares = np.maximum(1, np.rint(np.exp(r.normal(np.log(3000), 1.2, n)) * np.where(owner, 5, 1)))
        shares = shares.astype(np.int64)
        price = np.round(_symbol_profile(seed, sym)["price"] * np.exp(r.normal(0, 0.08, n)), 4)
        tx_day = (t // DAY_US).astype("datetime64[D]")
        filing_day = np.busday_offset(tx_day, r.integers(1, 4, n), roll="forward").astype(np.int64)
        filing = filing_day * DAY_US + r.integers(11 * 3600, 24 * 3600, n) * US
        # 4/A amendments: same key, later filing, changed shares/price
        amend = r.random(n) < amendment_rate
        m = int(amend.sum())
        a_days, a_sec = r.integers(1, 11, m), r.integers(11 * 3600, 24 * 3600, m)
        a_shares, a_px, a_dir = r.uniform(0.05, 0.3, m), r.uniform(0.001, 0.01, m), r.random((2, m)) < 0.5
        take, pos = _expand(n, amend)
        t, who, sell, is_cluster = t[take], who[take], sell[take], is_cluster[take]
        shares, price, filing = shares[take], price[take], filing[take]
        ds = np.maximum(1, np.rint(shares[pos] * a_shares)).astype(np.int64)
        shares[pos] = np.where(a_dir[0] & (shares[pos] > ds), shares[pos] - ds, shares[pos] + ds)
        dp = np.maximum(0.01, price[pos] * a_px)
        price[pos] = np.round(np.where(a_dir[1] & (price[pos] > 2 * dp), price[pos] - dp, price[pos] + dp), 4)
        f_day = (filing[pos] // DAY_US).astype("datetime64[D]")
        filing[pos] = np.busday_offset(f_day, a_days, roll="forward").astype(np.int64) * DAY_US + a_sec * US
        form = np.full(t.size, "4", dtype=object)
        form[pos] = "4/A"
        return {
            "time": t,
            "insider_name": [people[i] for i in who],
            "title": roles[who].tolist(),
            "transaction_type": np.where(sell, "sell", "buy").tolist(),
            "shares": shares,
            "price": price,
            "value": np.round(shares * price, 2),
            "filing_date": filing,
            "form_type": form.tolist(),
            "is_cluster_trade": is_cluster,
            "political_connection": political[who],
            "known_at": filing,
        }

    return _per_symbol("insider_trades", symbols, build)


_PLATFORMS = ("twitter", "reddit", "stocktwits")
_PLATFORM_SCALE = np.array([1.0, 0.4, 0.7])
_PLATFORM_ENGAGEMENT = np.array([12.0, 25.0, 4.0])


def _viral(momentum: np.ndarray, engagement: np.ndarray) -> np.ndarray:
    return np.round(
        np.clip(0.7 * np.tanh(np.maximum(momentum, 0) / 4) + 0.3 * (1 - np.exp(-engagement / 5e4)), 0, 1), 4
    )


def social_sentiment(
    *, symbols: Sequence[str], start: datetime, days: int, seed: int = 0, correction_rate: float = 0.01
) -> pa.Table:
    """Hourly per-platform sentiment windows, known one hour after the window start.

    A ``correction_rate`` share of windows gets a later correction row (same key,
    known 1-24 h later) with more mentions (late-arriving posts).
    """
    t0, t1 = _window(start, days)
    hours = np.arange(-(-t0 // HOUR_US) * HOUR_US, t1, HOUR_US, dtype=np.int64)
    h = hours.size
    if h == 0:
        return SCHEMAS["social_sentiment"].empty_table()
    hod = (hours % DAY_US) // HOUR_US
    activity = (0.3 + np.exp(-(((hod - 17.5) / 4.0) ** 2))) * np.where((hours // DAY_US + 3) % 7 < 5, 1.0, 0.6)
    lags = np.arange(72)

    def build(_: int, sym: str) -> dict[str, Any]:
        r = _rng(seed, "social_sentiment", sym)
        buzz = _symbol_profile(seed, sym)["buzz"] * 6.0
        impulses = np.where(r.random(h) < 1 / 72, np.exp(r.normal(1.0, 0.8, h)), 0.0)
        burst = np.convolve(impulses, np.exp(-lags[:48] / 6.0))[:h]
        lam = buzz * _PLATFORM_SCALE[None, :] * (activity * (1 + burst))[:, None]  # (h, 3)
        mentions = r.poisson(lam)
        latent = np.convolve(r.normal(0, 0.08, h), 0.95**lags)[:h] + r.uniform(-0.1, 0.2)
        noise = r.normal(0, 0.3, (h, 3)) / np.sqrt(mentions + 1)
        sent = np.where(mentions > 0, np.round(np.clip(latent[:, None] + noise, -1, 1), 4), 0.0)
        std = np.where(mentions >= 2, np.round(r.uniform(0.25, 0.65, (h, 3)), 4), 0.0)
        users = np.where(mentions > 0, np.maximum(1, r.binomial(mentions, r.uniform(0.55, 0.95, (h, 3)))), 0)
        per = np.exp(r.normal(np.log(_PLATFORM_ENGAGEMENT)[None, :], 0.6, (h, 3)))
        engagement = np.rint(mentions * per).astype(np.int64)
        cs = np.vstack([np.zeros((1, 3)), np.cumsum(mentions, axis=0)])
        idx = np.arange(h)
        lo = np.maximum(idx - 24, 0)
        prev_mean = (cs[idx] - cs[lo]) / np.maximum(idx - lo, 1)[:, None]
        prev_mean[:1] = lam[:1]  # no history yet: compare with the expected level
        momentum = np.round((mentions - prev_mean) / np.sqrt(prev_mean + 1), 4)
        cols = {
            "time": np.repeat(hours, 3),
            "platform": np.tile(np.arange(3), h),
            "mention_count": mentions.ravel(),
            "sentiment_avg": sent.ravel(),
            "sentiment_std": std.ravel(),
            "unique_users": users.ravel(),
            "total_engagement": engagement.ravel(),
            "momentum_score": momentum.ravel(),
            "viral_score": _viral(momentum, engagement).ravel(),
            "prev_mean": prev_mean.ravel(),
        }
        n = 3 * h
        mask = r.random(n) < correction_rate
        m = int(mask.sum())
        grow, share, lag_s = r.uniform(0.02, 0.2, m), r.uniform(0.3, 1.0, m), r.integers(3600, 24 * 3600 + 1, m)
        take, pos = _expand(n, mask)
        cols = {k: v[take] for k, v in cols.items()}
        old = cols["mention_count"][pos]
        new = old + np.maximum(1, np.rint(old * grow)).astype(old.dtype)
        cols["mention_count"][pos] = new
        cols["unique_users"][pos] = np.clip(cols["unique_users"][pos] + np.rint((new - old) * share), 1, new)
        cols["total_engagement"][pos] = np.rint(
            cols["total_engagement"][pos] * new / np.maximum(old, 1) + (new - old)
        ).astype(np.int64)
        pm = cols.pop("prev_mean")[pos]
        cols["momentum_score"][pos] = np.round((new - pm) / np.sqrt(pm + 1), 4)
        cols["viral_score"][pos] = _viral(cols["momentum_score"][pos], cols["total_engagement"][pos])
        known = cols["time"] + HOUR_US
        known[pos] += lag_s * US
        cols["known_at"] = known
        cols["platform"] = [_PLATFORMS[i] for i in cols["platform"]]
        cols["mention_count"] = cols["mention_count"].astype(np.int32)
        cols["unique_users"] = cols["unique_users"].astype(np.int32)
        return cols

    return _per_symbol("social_sentiment", symbols, build)


# event type: (share of events, description, log-uniform amount range or None, market impact range)
_GOV: dict[str, tuple[float, str, tuple[float, float] | None, tuple[float, float]]] = {
    "contract_award": (0.40, "Government agency awards a ${m:,.1f}M contract to {sym}", (1e6, 5e9), (0.05, 0.6)),
    "regulation": (0.25, "Regulators propose new {sector} rules affecting {sym}", None, (-0.6, 0.3)),
    "tariff": (0.15, "New tariffs on ${m:,.1f}M of imports relevant to {sector} ({sym})", (1e8, 5e10), (-0.7, 0.0)),
    "sanction": (0.12, "Sanctions imposed on counterparties linked to {sym}", (1e6, 1e9), (-0.8, -0.1)),
    "fed_rate_decision": (0.08, "FOMC {move} the federal funds target range{by}", None, (-0.2, 0.2)),
}
_STATES = ("CA", "TX", "VA", "WA", "FL", "NY", "AZ", "CO", "MD", "OH")
_COUNTRIES = ("CN", "GB", "DE", "JP", "CA", "MX", "IN")


def government_events(
    *, symbols: Sequence[str], start: datetime, days: int, seed: int = 0, per_day: float = 2.0
) -> pa.Table:
    """Government/macro events for the whole symbol universe, known at publication or up to 30 min later.

    Every event has a ``primary_symbol`` from ``symbols`` (macro events pick a financial).
    """
    t0, t1 = _window(start, days)
    symbols = list(symbols)
    r = _rng(seed, "government_events")
    bdays = _business_days(t0, t1)
    kinds = list(_GOV)
    n = int(r.poisson(per_day * days)) if symbols and bdays.size else 0
    etype = r.choice(len(kinds), size=n, p=[v[0] for v in _GOV.values()])
    secs = np.where(etype == kinds.index("fed_rate_decision"), 18 * 3600, r.integers(13 * 3600, 22 * 3600, n))
    t = bdays[r.integers(0, max(bdays.size, 1), n)] * DAY_US + secs * US
    sectors = [sector_of(s) for s in symbols]
    by_sector: dict[str, list[int]] = {}
    for i, sec in enumerate(sectors):
        by_sector.setdefault(sec, []).append(i)
    rows: dict[tuple[int, str, str], dict[str, Any]] = {}
    for i in range(n):
        kind = kinds[etype[i]]
        _, text, amounts, impacts = _GOV[kind]
        macro = kind == "fed_rate_decision"
        p = int(r.choice(by_sector.get("Financials", range(len(symbols))))) if macro else int(r.integers(len(symbols)))
        peers = range(len(symbols)) if macro else by_sector[sectors[p]]
        extra = r.choice(peers, size=min(len(peers), int(r.integers(1, 8 if macro else 5))), replace=False)
        affected = list(dict.fromkeys([p, *(int(x) for x in extra)]))
        amount = round(float(np.exp(r.uniform(*np.log(amounts)))), 2) if amounts and r.random() < 0.9 else None
        bps = int(r.choice([-50, -25, 0, 0, 25, 50])) if macro else 0
        move, by = ("raises" if bps > 0 else "cuts" if bps else "holds"), (f" by {abs(bps)} bp" if bps else "")
        desc = text.format(m=(amount or 0) / 1e6, sym=symbols[p], sector=sectors[p].lower(), move=move, by=by)
        us = macro or r.random() < 0.88
        key = (int(t[i]), kind, symbols[p])
        rows.setdefault(
            key,
            {
                "time": key[0],
                "event_type": kind,
                "amount": amount,
                "description": desc,
                "primary_symbol": key[2],
                "affected_symbols": [symbols[j] for j in affected],
                "sectors": sorted({sectors[j] for j in affected}),
                "country": "US" if us else _COUNTRIES[int(r.integers(len(_COUNTRIES)))],
                "state_province": _STATES[int(r.integers(len(_STATES)))] if us and r.random() < 0.5 else None,
                "market_impact": round(float(np.clip(r.uniform(*impacts) - bps / 100, -1, 1)), 4),
                "confidence": round(float(r.uniform(0.4, 1.0)), 4),
                "known_at": key[0] + (int(r.integers(30, 1800)) if r.random() < 0.25 else 0) * US,
            },
        )
    ordered = [rows[k] for k in sorted(rows)]
    cols: dict[str, Any] = {f.name: [row[f.name] for row in ordered] for f in SCHEMAS["government_events"]}
    cols["time"], cols["known_at"] = _ts(np.array(cols["time"], np.int64)), _ts(np.array(cols["known_at"], np.int64))
    return pa.Table.from_pydict(cols, schema=SCHEMAS["government_events"])


def generate_all(*, symbols: Sequence[str], start: datetime, days: int, seed: int = 0) -> dict[str, pa.Table]:
    """All five datasets, keyed by dataset name."""
    kw: dict[str, Any] = {"symbols": symbols, "start": start, "days": days, "seed": seed}
    return {
        "market_data": market_data(**kw),
        "news_events": news_events(**kw),
        "insider_trades": insider_trades(**kw),
        "social_sentiment": social_sentiment(**kw),
        "government_events": government_events(**kw),
    }


# --------------------------------------------------------------------------- writers
Data = pa.Table | pa.RecordBatch | Iterable[pa.RecordBatch]


def _batches(data: Data) -> tuple[pa.Schema | None, Iterator[pa.RecordBatch]]:
    if isinstance(data, pa.Table):
        return data.schema, iter(data.to_batches(max_chunksize=1_000_000))
    if isinstance(data, pa.RecordBatch):
        return data.schema, iter([data])
    return None, iter(data)


_JSON_ESCAPES = (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"))


def _json_string(arr: pa.Array) -> pa.Array:
    """Strings as JSON string literals (escapes backslash, quote, newline, CR and tab)."""
    for old, new in _JSON_ESCAPES:
        arr = pc.replace_substring(arr, old, new)
    return pc.binary_join_element_wise('"', arr, '"', "")


def _iso(arr: pa.Array) -> pa.Array:
    """Timestamps as ISO 8601 UTC text, e.g. ``2024-03-01T15:30:00.000000Z``."""
    naive = arr.cast(TS).view(pa.timestamp("us"))  # UTC wall clock; ~10x faster than casting a tz-aware value
    text = pc.replace_substring(naive.cast(pa.string()), " ", "T", max_replacements=1)
    return pc.binary_join_element_wise(text, "Z", "")


def _json_list(arr: pa.Array) -> pa.Array:
    """list<string> as JSON array text, e.g. ``["a","b"]``."""
    offsets = pc.subtract(arr.offsets, arr.offsets[0]) if len(arr) else arr.offsets
    items = pa.ListArray.from_arrays(offsets, _json_string(pc.list_flatten(arr)), mask=arr.is_null())
    return pc.binary_join_element_wise("[", pc.binary_join(items, ","), "]", "")


def _json_value(col: pa.Array) -> pa.Array:
    """Any supported column as JSON value text (``null`` for nulls and non-finite floats)."""
    if pa.types.is_timestamp(col.type):
        out = pc.binary_join_element_wise('"', _iso(col), '"', "")
    elif pa.types.is_list(col.type):
        out = _json_list(col)
    elif pa.types.is_floating(col.type):
        out = pc.if_else(pc.is_finite(col), col.cast(pa.string()), pa.scalar(None, pa.string()))
    elif pa.types.is_integer(col.type) or pa.types.is_boolean(col.type):
        out = col.cast(pa.string())
    else:
        out = _json_string(col.cast(pa.string()))
    return pc.fill_null(out, "null")


def _csv_ready(batch: pa.RecordBatch) -> pa.RecordBatch:
    cols = [
        _iso(c) if pa.types.is_timestamp(c.type) else _json_list(c) if pa.types.is_list(c.type) else c
        for c in batch.columns
    ]
    return pa.RecordBatch.from_arrays(cols, names=batch.schema.names)


def _stream(
    data: Data,
    path: str | Path,
    convert: Callable[[pa.RecordBatch], pa.RecordBatch],
    open_writer: Callable[[str, pa.Schema], Any],
) -> int:
    """Write ``convert(batch)`` for every batch through ``open_writer(path, schema)``; returns rows."""
    schema, it = _batches(data)
    rows, writer = 0, None
    try:
        for batch in it:
            out = convert(batch)
            writer = writer or open_writer(str(path), out.schema)
            writer.write_batch(out)
            rows += batch.num_rows
        if writer is None and schema is not None:  # empty table: still write the header / schema
            writer = open_writer(str(path), convert(pa.RecordBatch.from_pylist([], schema=schema)).schema)
    finally:
        if writer is not None:
            writer.close()
    return rows


def write_csv(table_or_batches: Data, path: str | Path) -> int:
    """Stream to CSV batch by batch; ISO 8601 UTC timestamps, list columns as JSON arrays. Returns rows."""
    return _stream(table_or_batches, path, _csv_ready, pacsv.CSVWriter)


def write_parquet(table: Data, path: str | Path) -> int:
    """Stream to Parquet (native tz-aware timestamps and lists). Returns rows."""
    return _stream(table, path, lambda batch: batch, pq.ParquetWriter)


def write_ndjson(table: Data, path: str | Path) -> int:
    """Stream to newline-delimited JSON; ISO 8601 UTC timestamps, lists as JSON arrays. Returns rows."""
    _, it = _batches(table)
    rows = 0
    with open(path, "wb") as fh:
        for batch in it:
            if not batch.num_rows:
                continue
            parts: list[Any] = []
            for i, (name, col) in enumerate(zip(batch.schema.names, batch.columns)):
                parts += [("{" if i == 0 else ",") + json.dumps(name) + ":", _json_value(col)]
            lines = pc.binary_join_element_wise(*parts, "}\n", "")
            offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)[lines.offset : lines.offset + len(lines) + 1]
            fh.write(memoryview(lines.buffers()[2])[offsets[0] : offsets[-1]])  # the lines are contiguous
            rows += batch.num_rows
    return rows

"""Rollups as of T, thin over timeseries/aggregates.py (rollups / continuous aggregates, exact point in
time): stored buckets whose every version is visible as of T are read from the rollup, the rest
aggregated live."""

from __future__ import annotations

from datetime import datetime

from timeseries import aggregates


def daily_bars(
    *, symbol: str, at: datetime, start: datetime, end: datetime, recorded_by: datetime | None = None
) -> list[dict]:
    """Daily OHLCV bars of ``symbol`` (UTC days overlapping [start, end]) built only from the bars known
    at ``at``, oldest first: time (day start), open, high, low, close, volume, vwap (volume-weighted),
    bars (count), partial (the day had not ended at ``at``)."""
    return aggregates.daily_bars(symbol=symbol, at=at, start=start, end=end, recorded_by=recorded_by)


def hourly_sentiment(
    *, symbol: str, at: datetime, start: datetime, end: datetime, recorded_by: datetime | None = None
) -> list[dict]:
    """Hourly sentiment of ``symbol`` over its platforms (hours overlapping [start, end]) as known at
    ``at``, oldest first: time (hour), sentiment (mention-weighted), mentions, platforms."""
    return aggregates.hourly_sentiment(symbol=symbol, at=at, start=start, end=end, recorded_by=recorded_by)


def daily_sentiment(
    *, symbol: str, at: datetime, start: datetime, end: datetime, recorded_by: datetime | None = None
) -> list[dict]:
    """``hourly_sentiment`` per UTC day (mention-weighted over the day's windows), as known at ``at``."""
    return aggregates.daily_sentiment(symbol=symbol, at=at, start=start, end=end, recorded_by=recorded_by)

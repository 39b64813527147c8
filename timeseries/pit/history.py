"""History as of T: a dataset's rows over a time range, a symbol's recent bars, and everything known
about one symbol at T (``reconstruct``)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from psycopg import sql

from timeseries import indicators
from timeseries.datasets import MARKET_DATA, get_dataset
from timeseries.params import ParameterError, adjustment, positive_int
from timeseries.pit._sql import (
    aware,
    current_rows,
    fetch_dicts,
    min_quality_clean,
    quality_ok,
    symbol_filter,
    symbols_clean,
    time_params,
)
from timeseries.pit.adjust import adjusted_history
from timeseries.pit.events import government_events, insider_trades, news
from timeseries.pit.state import market_state, sentiment


def history(
    *,
    dataset: str,
    at: datetime,
    symbols: Iterable[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int | None = None,
    recorded_by: datetime | None = None,
    min_quality: float | None = None,
    adjust: str = "none",
    security_ids: Iterable[str] | None = None,
) -> list[dict] | dict:
    """Rows of ``dataset`` as known at ``at`` with event time in [start, end], oldest first.

    ``min_quality=q`` drops the current rows scored below q (as the score stood at ``recorded_by``).
    ``adjust``: none (default: the stored rows, as a list, ordered by key), or for market_data split or
    total: bars adjusted for corporate actions as known at ``at``, the tickers resolved to securities
    (``adjusted_history``'s answer, a dict saying which adjustment it applied; docs/adjustment.md).
    ``security_ids`` (market_data) names securities directly: the answer is that dict too.
    """
    spec = get_dataset(dataset)
    adjust = adjustment("adjust", adjust)
    if adjust != "none" or security_ids is not None:
        if spec is not MARKET_DATA:
            what = f"adjust={adjust!r}" if adjust != "none" else "security_ids"
            raise ParameterError(f"{what}: only market_data has prices to adjust, not {dataset}")
        return adjusted_history(
            at=at,
            symbols=symbols,
            security_ids=security_ids,
            start=start,
            end=end,
            limit=limit,
            recorded_by=recorded_by,
            min_quality=min_quality,
            adjust=adjust,
        )
    params = time_params(at, recorded_by)
    where = symbol_filter(spec, params, symbols_clean(symbols))
    # the same symbol and time range on the anti-join's b (compressed chunks: ~60x faster, lifecycle.py)
    inner = [sql.SQL("b.{} = ANY(%(symbols)s)").format(sql.Identifier(spec.symbol_column))] if where else []
    min_quality = min_quality_clean(spec, min_quality)
    if min_quality is not None:
        where.append(quality_ok(spec, "a", params, min_quality))
    if start is not None:
        params["start"] = aware("start", start)
        where.append(sql.SQL("a.time >= %(start)s"))
        inner.append(sql.SQL("b.time >= %(start)s"))
    if end is not None:
        params["end"] = aware("end", end)
        where.append(sql.SQL("a.time <= %(end)s"))
        inner.append(sql.SQL("b.time <= %(end)s"))
    if start is not None and end is not None and params["start"] > params["end"]:
        raise ValueError("start must not be after end")
    return current_rows(spec, params, where=where, order=[*spec.key], limit=limit, inner=inner)


RECENT_BARS_SQL = """
SELECT DISTINCT ON (time) time, open, high, low, close, volume, recorded_at
FROM market_data
WHERE symbol = %(symbol)s AND time <= %(at)s AND known_at <= %(at)s AND recorded_at <= %(rb)s
ORDER BY time DESC, known_at DESC, recorded_at DESC
LIMIT %(bars)s
"""

INSIDER_SUMMARY_DAYS = 90


RECENT_GOOD_BARS_SQL = """
SELECT time, open, high, low, close, volume, recorded_at FROM (
    SELECT DISTINCT ON (time) id, time, open, high, low, close, volume, recorded_at, quality_score
    FROM market_data
    WHERE symbol = %(symbol)s AND time <= %(at)s AND known_at <= %(at)s AND recorded_at <= %(rb)s
    ORDER BY time DESC, known_at DESC, recorded_at DESC
) m
WHERE {quality}
ORDER BY time DESC
LIMIT %(bars)s
"""


def recent_bars(
    *, symbol: str, at: datetime, bars: int = 200, recorded_by: datetime | None = None, min_quality: float | None = None
) -> list[dict]:
    """The last ``bars`` bars of ``symbol`` known at ``at`` (current versions), oldest first.

    ``min_quality``: the last ``bars`` current bars scored NULL or >= it (suspect bars are skipped,
    not replaced by older versions); this walks the symbol's whole history up to ``at``.
    """
    params = {**time_params(at, recorded_by), "symbol": symbol, "bars": positive_int("bars", bars)}
    min_quality = min_quality_clean(MARKET_DATA, min_quality)
    if min_quality is None:
        return fetch_dicts(sql.SQL(RECENT_BARS_SQL), params)[::-1]
    query = sql.SQL(RECENT_GOOD_BARS_SQL).format(quality=quality_ok(MARKET_DATA, "m", params, min_quality))
    return fetch_dicts(query, params)[::-1]


def _insider_summary(trades: list[dict], at: datetime) -> dict:
    buys = [t for t in trades if str(t["transaction_type"]).lower() in ("buy", "p", "purchase")]
    sells = [t for t in trades if str(t["transaction_type"]).lower() in ("sell", "s", "sale")]

    def total(rows, column):
        return sum((r[column] or 0) for r in rows)

    return {
        "window_days": INSIDER_SUMMARY_DAYS,
        "filings": len(trades),
        "buys": len(buys),
        "sells": len(sells),
        "net_shares": total(buys, "shares") - total(sells, "shares"),
        "net_value": total(buys, "value") - total(sells, "value"),
        "cluster_trades": sum(1 for t in trades if t["is_cluster_trade"]),
        "latest_filing": trades[0]["filing_date"] if trades else None,
        "recent": trades[:10],
    }


def reconstruct(
    *, at: datetime, symbol: str, recorded_by: datetime | None = None, bars: int = 200, min_quality: float | None = None
) -> dict:
    """Everything known about ``symbol`` at ``at``: bar, indicators, news, insiders, sentiment, events.

    ``min_quality`` applies to the bar, the bars behind the indicators and the news (see market_state).
    """
    at = aware("at", at)
    state = market_state(at=at, symbols=[symbol], recorded_by=recorded_by, min_quality=min_quality)
    recent = recent_bars(symbol=symbol, at=at, bars=bars, recorded_by=recorded_by, min_quality=min_quality)
    earliest = datetime.min.replace(tzinfo=UTC)
    since = (
        max(earliest, at - timedelta(days=INSIDER_SUMMARY_DAYS))
        if at - earliest > timedelta(days=INSIDER_SUMMARY_DAYS)
        else earliest
    )
    trades = [
        t
        for t in insider_trades(at=at, symbols=[symbol], limit=500, recorded_by=recorded_by)
        if t["filing_date"] >= since
    ]
    parts = {
        "market": state[0] if state else None,
        "news": news(at=at, symbols=[symbol], limit=10, recorded_by=recorded_by, min_quality=min_quality),
        "sentiment": sentiment(at=at, symbols=[symbol], recorded_by=recorded_by),
        "government_events": government_events(at=at, symbols=[symbol], limit=10, recorded_by=recorded_by),
    }
    answered = (state, recent, trades, parts["news"], parts["sentiment"], parts["government_events"])
    recorded = [r["recorded_at"] for rows in answered for r in rows]
    return {
        "symbol": symbol,
        "at": at,
        "recorded_by": recorded_by,
        **parts,
        "indicators": indicators.latest_indicators(bars=recent),
        "insider": _insider_summary(trades, at),
        "max_recorded_at": max(recorded) if recorded else None,
    }

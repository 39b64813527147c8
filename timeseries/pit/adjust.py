"""Bars adjusted for splits and dividends as known at T, following a security across its tickers.

The rule (docs/adjustment.md; issue #17 items 3 and 4). As of T (as recorded by S), a bar at time t of
security s is adjusted by exactly the actions of s with ``t < ex_date <= T`` whose current version is
known at T (known_at <= T, recorded_at <= S):

- ``split``: open, high, low, close and vwap divided by the product P of those splits' ratios, volume
  multiplied by P;
- ``total``: the prices also multiplied by each of those cash dividends' factor ``1 - amount /
  close_prev``, where close_prev is the close of s's last bar before the dividend's ex_date as known at
  T (under whichever ticker s traded then). A dividend with no such bar, or with close_prev <= amount,
  is not applied and is listed in the answer's ``unapplied``;
- ``none``: the bars as stored.

The factors are exact rationals (``fractions.Fraction`` of the stored decimals); each adjusted price
is rounded once to the column's 6 decimal places and each volume to an integer, both half to even.

A ticker means the security trading under it at T as known at T (``timeseries.securities``); when
none does, the security it named at ``end`` (when ``end`` is before T); when none did either, the bars
stored under that ticker, unadjusted, with ``security_id`` None. A security's bars are the bars whose
symbol is its ticker at their time while it was listed (its ticker history as known at T), so its
history follows it across ticker changes.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction

from psycopg import sql

from timeseries import params as parameters
from timeseries.datasets import CORPORATE_ACTIONS, MARKET_DATA, SECURITIES
from timeseries.params import ParameterError
from timeseries.pit._sql import (
    aware,
    current_rows,
    fetch_dicts,
    is_current,
    min_quality_clean,
    quality_ok,
    stored_cols,
    symbols_clean,
    time_params,
)
from timeseries.rules import END_OF_TIME
from timeseries.securities import securities_for_tickers

BEGINNING = datetime.min.replace(tzinfo=UTC)
PRICE_COLUMNS = ("open", "high", "low", "close", "vwap")
SCALE = 10**6  # numeric(18,6): prices are integers of micro-units
ONE = Fraction(1)


@dataclass(frozen=True)
class Span:
    """Bars of ``symbol`` with lo <= time < hi belong to ``security_id`` (None: an unresolved ticker)."""

    symbol: str
    lo: datetime
    hi: datetime
    security_id: str | None


# --- exact rounding -------------------------------------------------------------------------------------


def _half_even(n: int, d: int) -> int:
    """n / d (d > 0) rounded to an integer, half to even."""
    q, r = divmod(abs(n), d)
    if 2 * r > d or (2 * r == d and q % 2):
        q += 1
    return q if n >= 0 else -q


def scale_price(value: Decimal | None, factor: Fraction) -> Decimal | None:
    """value × factor rounded to 6 decimal places, half to even (value has at most 6 places)."""
    if value is None or factor == ONE:
        return value
    micro = int(value.scaleb(6))
    return Decimal(_half_even(micro * factor.numerator, factor.denominator)).scaleb(-6)


def scale_volume(value: int | None, factor: Fraction) -> int | None:
    """value × factor rounded to an integer, half to even."""
    if value is None or factor == ONE:
        return value
    return _half_even(value * factor.numerator, factor.denominator)


# --- the security master as known at T ------------------------------------------------------------------


def _resolve(
    symbols: list[str] | None, security_ids: list[str] | None, p: dict, end: datetime | None
) -> tuple[list[dict], list[str]]:
    """Per requested ticker or id: {"requested", "by", "security_id", "resolved_at"}; and the ids to read."""
    at, rb = p["at"], p["rb"]
    bounds = {"known_at": at, "recorded_by": None if rb == END_OF_TIME else rb}
    out: list[dict] = []
    symbols = symbols or []
    found = securities_for_tickers(symbols=symbols, instants=[at] * len(symbols), **bounds)
    fallback_at = end if end is not None and end < at else None
    missing = [s for s, ids in zip(symbols, found) if not ids]
    later = dict(
        zip(
            missing,
            securities_for_tickers(symbols=missing, instants=[fallback_at] * len(missing), **bounds)
            if fallback_at is not None
            else [[] for _ in missing],
        )
    )
    for symbol, ids in zip(symbols, found):
        resolved_at = at
        if not ids:
            ids, resolved_at = later[symbol], fallback_at
        if len(ids) > 1:
            raise ParameterError(
                f"symbols: {symbol!r} names {len(ids)} securities at {resolved_at.isoformat()} ({', '.join(ids)}):"
                " give security_ids"
            )
        sid = ids[0] if ids else None
        out.append({"requested": symbol, "by": "symbol", "security_id": sid, "resolved_at": sid and resolved_at})
    known = {r["security_id"] for r in _securities(security_ids or [], p)}
    for sid in security_ids or []:
        out.append({"requested": sid, "by": "security_id", "security_id": sid if sid in known else None})
        out[-1]["resolved_at"] = None  # an id needs no resolving
    ids = list(dict.fromkeys(r["security_id"] for r in out if r["security_id"] is not None))
    return out, ids


def _securities(ids: list[str], p: dict) -> list[dict]:
    if not ids:
        return []
    return current_rows(SECURITIES, {**p, "ids": ids}, where=[sql.SQL("a.security_id = ANY(%(ids)s)")])


def _actions(ids: list[str], p: dict) -> list[dict]:
    """The current version of every action of ``ids`` known at T (ex_date before or after T)."""
    if not ids:
        return []
    return current_rows(
        CORPORATE_ACTIONS, {**p, "ids": ids}, where=[sql.SQL("a.security_id = ANY(%(ids)s)")], order=("time",)
    )


def ticker_spans(security: dict, changes: list[dict]) -> list[Span]:
    """The security's tickers over its listing: [listed_at, first change), [change, next change) ...
    ``changes``: its symbol changes, ordered by ex_date (time)."""
    listed, hi = security["time"], security["delisted_at"] or END_OF_TIME
    sid = security["security_id"]
    ticker = security["symbol"]
    for c in changes:
        if c["time"] <= listed:
            ticker = c["new_symbol"]
    spans, lo = [], listed
    for c in changes:
        if listed < c["time"] < hi:
            spans.append(Span(ticker, lo, c["time"], sid))
            ticker, lo = c["new_symbol"], c["time"]
    if lo < hi:
        spans.append(Span(ticker, lo, hi, sid))
    return spans


# --- bars -----------------------------------------------------------------------------------------------

SPANS = "unnest(%(sp_symbol)s::text[], %(sp_lo)s::timestamptz[], %(sp_hi)s::timestamptz[], %(sp_id)s::text[])"


def _span_params(spans: list[Span]) -> dict:
    return {
        "sp_symbol": [s.symbol for s in spans],
        "sp_lo": [s.lo for s in spans],
        "sp_hi": [s.hi for s in spans],
        "sp_id": [s.security_id for s in spans],
    }


def _bars(spans: list[Span], p: dict, start, end, limit, min_quality) -> list[dict]:
    """Current bars in the spans with time in [start, end], oldest first (ties: by symbol), each with the
    span's security_id; a bar two spans claim is given once (a resolved span first)."""
    if not spans:
        return []
    p = {**p, **_span_params(spans)}
    where = [is_current(MARKET_DATA)]
    if start is not None:
        p["start"] = start
        where.append(sql.SQL("a.time >= %(start)s"))
    if end is not None:
        p["end"] = end
        where.append(sql.SQL("a.time <= %(end)s"))
    if min_quality is not None:
        where.append(quality_ok(MARKET_DATA, "a", p, min_quality))
    query = sql.SQL(
        "SELECT DISTINCT ON (a.time, a.symbol) {cols}, sp.security_id FROM {spans} AS sp(symbol, lo, hi, security_id)"
        " JOIN market_data a ON a.symbol = sp.symbol AND a.time >= sp.lo AND a.time < sp.hi WHERE {where}"
        " ORDER BY a.time, a.symbol, sp.security_id NULLS LAST"
    ).format(cols=stored_cols(MARKET_DATA, "a", p), spans=sql.SQL(SPANS), where=sql.SQL(" AND ").join(where))
    if limit is not None:
        query += sql.SQL(" LIMIT %(limit)s")
        p["limit"] = parameters.positive_int("limit", limit)
    return fetch_dicts(query, p)


LAST_CLOSE_SQL = """
SELECT a.close FROM market_data a
WHERE a.symbol = %(symbol)s AND a.time >= %(lo)s AND a.time < %(hi)s AND {current}
ORDER BY a.time DESC LIMIT 1
"""


def last_close(spans: list[Span], before: datetime, p: dict) -> Decimal | None:
    """The close of the security's last bar before ``before`` as known at T, walking its spans backwards."""
    query = sql.SQL(LAST_CLOSE_SQL).format(current=is_current(MARKET_DATA))
    for span in sorted(spans, key=lambda s: s.lo, reverse=True):
        if span.lo >= before:
            continue
        rows = fetch_dicts(query, {**p, "symbol": span.symbol, "lo": span.lo, "hi": min(span.hi, before)})
        if rows:
            return rows[0]["close"]
    return None


# --- factors ----------------------------------------------------------------------------------------------


def _factors(
    actions: list[dict], spans: list[Span], adjust: str, p: dict
) -> tuple[list[datetime], list[tuple[Fraction, Fraction]], list[dict]]:
    """For one security: the ex_dates of the actions applied (<= T, ascending) and per bisect index the
    (price factor, volume factor) of a bar before them; plus the dividends that cannot be applied."""
    at = p["at"]
    steps: list[tuple[datetime, Fraction, Fraction]] = []  # (ex_date, price factor, volume factor)
    unapplied: list[dict] = []
    for a in actions:
        if a["time"] > at:
            continue
        if a["action_type"] == "split" and adjust in ("split", "total"):
            ratio = Fraction(a["ratio"])
            steps.append((a["time"], 1 / ratio, ratio))
        elif a["action_type"] == "cash_dividend" and adjust == "total":
            close = last_close(spans, a["time"], p)
            amount = a["amount"]
            reason = None
            if close is None:
                reason = "no bar of the security before ex_date is known at T"
            elif close <= amount:
                reason = f"close_prev {close} is not above the amount {amount}"
            if reason is None:
                steps.append((a["time"], ONE - Fraction(amount) / Fraction(close), ONE))
            else:
                unapplied.append(
                    {
                        "security_id": a["security_id"],
                        "symbol": a["symbol"],
                        "action_type": a["action_type"],
                        "ex_date": a["time"],
                        "amount": amount,
                        "close_prev": close,
                        "reason": reason,
                    }
                )
    steps.sort(key=lambda s: s[0])
    suffix = [(ONE, ONE)] * (len(steps) + 1)
    for i in range(len(steps) - 1, -1, -1):
        price, volume = suffix[i + 1]
        suffix[i] = (price * steps[i][1], volume * steps[i][2])
    return [s[0] for s in steps], suffix, unapplied


def adjust_bars(bars: list[dict], exdates: list[datetime], suffix: list[tuple[Fraction, Fraction]]) -> None:
    """Adjust ``bars`` (one security's) in place: each by the actions with ex_date after its time."""
    for bar in bars:
        price, volume = suffix[bisect_right(exdates, bar["time"])]
        if price != ONE:
            for c in PRICE_COLUMNS:
                bar[c] = scale_price(bar[c], price)
        if volume != ONE:
            bar["volume"] = scale_volume(bar["volume"], volume)


# --- the selector -------------------------------------------------------------------------------------------


def adjusted_history(
    *,
    at: datetime,
    symbols: Iterable[str] | None = None,
    security_ids: Iterable[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int | None = None,
    recorded_by: datetime | None = None,
    min_quality: float | None = None,
    adjust: str = "none",
) -> dict:
    """Bars of the securities named by ``symbols`` (tickers as of ``at``) and ``security_ids`` with time
    in [start, end], as known at ``at`` (as recorded by ``recorded_by``), adjusted by ``adjust``.

    Returns {"adjust", "at", "recorded_by", "securities": one resolution per requested ticker or id
    ({"requested", "by", "security_id", "resolved_at"}), "bars": oldest first (ties: by symbol), every
    stored column plus ``security_id``, "unapplied": the dividends that could not be applied}.
    ``min_quality`` filters the bars returned, not the closes the dividends are measured against.
    """
    adjust = parameters.adjustment("adjust", adjust)
    p = time_params(at, recorded_by)
    symbols, security_ids = symbols_clean(symbols), symbols_clean(security_ids)
    for name, values in (("symbols", symbols), ("security_ids", security_ids)):
        for value in values or ():
            parameters.symbol(name, value)
    if not symbols and not security_ids:
        raise ParameterError("symbols or security_ids is required: the tickers or securities whose bars to return")
    start, end = aware("start", start, required=False), aware("end", end, required=False)
    if start is not None and end is not None and start > end:
        raise ParameterError("start must not be after end")
    min_quality = min_quality_clean(MARKET_DATA, min_quality)
    resolutions, ids = _resolve(symbols, security_ids, p, end)
    actions = _actions(ids, p)
    spans_of: dict[str, list[Span]] = {}
    for security in _securities(ids, p):
        sid = security["security_id"]
        changes = [a for a in actions if a["security_id"] == sid and a["action_type"] == "symbol_change"]
        spans_of[sid] = ticker_spans(security, changes)
    spans = [s for sid in ids for s in spans_of.get(sid, [])]
    unresolved = [r["requested"] for r in resolutions if r["by"] == "symbol" and r["security_id"] is None]
    spans += [Span(symbol, BEGINNING, END_OF_TIME, None) for symbol in unresolved]
    bars = _bars(spans, p, start, end, limit, min_quality)
    unapplied: list[dict] = []
    if adjust != "none":
        by_security: dict[str, list[dict]] = {}
        for bar in bars:
            if bar["security_id"] is not None:
                by_security.setdefault(bar["security_id"], []).append(bar)
        for sid in ids:
            # an action with ex_date <= start adjusts no bar of the range
            mine = [a for a in actions if a["security_id"] == sid and (start is None or a["time"] > start)]
            exdates, suffix, missed = _factors(mine, spans_of.get(sid, []), adjust, p)
            unapplied += missed
            adjust_bars(by_security.get(sid, []), exdates, suffix)
    return {
        "adjust": adjust,
        "at": p["at"],
        "recorded_by": None if p["rb"] == END_OF_TIME else p["rb"],
        "securities": resolutions,
        "bars": bars,
        "unapplied": unapplied,
    }

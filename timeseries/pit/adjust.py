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

import heapq
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import MAX_EMAX, MIN_EMIN, ROUND_HALF_EVEN, Context, Decimal
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
    symbols_clean,
    time_params,
)
from timeseries.rules import END_OF_TIME
from timeseries.securities import securities_for_tickers

BEGINNING = datetime.min.replace(tzinfo=UTC)
PRICE_COLUMNS = ("open", "high", "low", "close", "vwap")
ONE = Fraction(1)


@dataclass(frozen=True)
class Span:
    """Bars of ``symbol`` with lo <= time < hi belong to ``security_id`` (None: an unresolved ticker)."""

    symbol: str
    lo: datetime
    hi: datetime
    security_id: str | None


# --- exact rounding -------------------------------------------------------------------------------------

MICRO = Decimal("0.000001")


def _half_even(n: int, d: int) -> int:
    """n / d (d > 0) rounded to an integer, half to even (divmod floors: r is in [0, d) for any sign)."""
    q, r = divmod(n, d)
    return q + 1 if 2 * r > d or (2 * r == d and q % 2) else q


class Scaler:
    """Multiplies prices by an exact rational N / D, rounding once to 6 places, half to even.

    ``v * N`` is exact, and ``/ D`` is computed with ``precision`` significant digits: 30 more than N
    and D have together. The exact quotient is either a tie at 6 places (at most 7 decimals: exact in
    that precision) or at least 1 / (2·10^6·D) away from every tie, farther than the division's
    rounding error, so the one rounding that counts (``quantize``) sees the exact quotient's side:
    the result is the exact rational rounded half to even."""

    def __init__(self, factor: Fraction) -> None:
        self.identity = factor == ONE
        precision = 30 + len(str(abs(factor.numerator))) + len(str(factor.denominator))
        context = Context(prec=max(precision, 60), rounding=ROUND_HALF_EVEN, Emax=MAX_EMAX, Emin=MIN_EMIN)
        self.n, self.d = Decimal(factor.numerator), Decimal(factor.denominator)
        self.multiply, self.divide, self.quantize = context.multiply, context.divide, context.quantize

    def __call__(self, value: Decimal | None) -> Decimal | None:
        if value is None or self.identity:
            return value
        return self.quantize(self.divide(self.multiply(value, self.n), self.d), MICRO)


def scale_price(value: Decimal | None, factor: Fraction) -> Decimal | None:
    """value × factor rounded to 6 decimal places, half to even (value has at most 6 places)."""
    return Scaler(factor)(value)


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


def _span_bars(span: Span, p: dict, start, end, limit, min_quality) -> list[dict]:
    """Current bars of one span with time in [start, end], oldest first (the version index's order: no
    sort), each with the span's security_id."""
    lo = span.lo if start is None else max(span.lo, start)
    p = {**p, "symbol": span.symbol, "lo": lo, "hi": span.hi}
    bounds = [sql.SQL("b.symbol = %(symbol)s"), sql.SQL("b.time >= %(lo)s"), sql.SQL("b.time < %(hi)s")]
    where = [sql.SQL("a.symbol = %(symbol)s"), sql.SQL("a.time >= %(lo)s"), sql.SQL("a.time < %(hi)s")]
    if end is not None:
        p["end"] = end
        where.append(sql.SQL("a.time <= %(end)s"))
        bounds.append(sql.SQL("b.time <= %(end)s"))
    if min_quality is not None:
        where.append(quality_ok(MARKET_DATA, "a", p, min_quality))
    rows = current_rows(MARKET_DATA, p, where=where, order=("time",), limit=limit, inner=bounds)
    for row in rows:
        row["security_id"] = span.security_id
    return rows


def _merge_order(bar: dict) -> tuple:
    return (bar["time"], bar["symbol"], bar["security_id"] is None, bar["security_id"] or "")


def _bars(spans: list[Span], p: dict, start, end, limit, min_quality) -> list[dict]:
    """Current bars in the spans with time in [start, end], oldest first (ties: by symbol), each with the
    span's security_id; a bar two spans claim is given once (a resolved span first, the smaller id).

    One query per span, merged: each comes in the index's order, so nothing is sorted but the merge."""
    if limit is not None:
        parameters.positive_int("limit", limit)
    parts = [_span_bars(s, p, start, end, limit, min_quality) for s in spans if start is None or s.hi > start]
    out: list[dict] = []
    last = None
    for bar in parts[0] if len(parts) == 1 else heapq.merge(*parts, key=_merge_order):
        if (bar["time"], bar["symbol"]) == last:
            continue
        last = (bar["time"], bar["symbol"])
        out.append(bar)
        if limit is not None and len(out) == limit:
            break
    return out


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
    """Adjust ``bars`` (one security's, oldest first) in place: each by the actions with ex_date after its time.

    The bars between two ex_dates share one factor: they are adjusted together, with ``Scaler``'s
    arithmetic inlined (a call per price would cost as much as the arithmetic)."""
    times = [bar["time"] for bar in bars]
    lo = 0
    for i in range(len(exdates) + 1):
        hi = bisect_left(times, exdates[i]) if i < len(exdates) else len(bars)  # bars with time < exdates[i]
        price, volume = suffix[i]
        group = bars[lo:hi]
        lo = max(lo, hi)
        if price != ONE:
            scaler = Scaler(price)
            n, d, multiply, divide, quantize = scaler.n, scaler.d, scaler.multiply, scaler.divide, scaler.quantize
            for bar in group:
                bar["open"] = quantize(divide(multiply(bar["open"], n), d), MICRO)
                bar["high"] = quantize(divide(multiply(bar["high"], n), d), MICRO)
                bar["low"] = quantize(divide(multiply(bar["low"], n), d), MICRO)
                bar["close"] = quantize(divide(multiply(bar["close"], n), d), MICRO)
                if bar["vwap"] is not None:
                    bar["vwap"] = quantize(divide(multiply(bar["vwap"], n), d), MICRO)
        if volume != ONE:
            vn, vd = volume.numerator, volume.denominator
            for bar in group:
                bar["volume"] = _half_even(bar["volume"] * vn, vd)


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

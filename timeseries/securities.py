"""Securities and their tickers over time, from the security master and the symbol changes.

The ticker of a security at instant t is the ``new_symbol`` of its latest ``symbol_change`` with
ex_date <= t, else the ``symbol`` it listed under; a ticker names a security at t when the security
is listed then (listed_at <= t, delisted_at null or after t). *Just before* t (``strict``) the same
with ex_date < t, listed_at < t and delisted_at null or >= t: the ticker a corporate action with
ex_date t names (its ``symbol``).

Each function reads the versions known at ``known_at`` and recorded by ``recorded_by`` (None: every
version stored, the current knowledge: what the loader resolves against), so the read side can
resolve a ticker as of T the same way. ``corporate_action_securities`` is the ``resolve`` hook the
corporate_actions declaration names (timeseries/datasets.py): the loader fills ``security_id`` from
``symbol`` or ``symbol`` from ``security_id`` with it, before any row check.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import pyarrow as pa
from django.db import connection

from timeseries.datasets import CORPORATE_ACTIONS, SECURITIES
from timeseries.rules import END_OF_TIME

# The current version of every security and of every symbol change, as known at %(k)s and recorded by
# %(rb)s (reference data: a few thousand rows, read whole).
_KNOWN = f"""
sec AS (
    SELECT DISTINCT ON (security_id) security_id, symbol, time AS listed_at, delisted_at
    FROM {SECURITIES.table} WHERE known_at <= %(k)s AND recorded_at <= %(rb)s
    ORDER BY security_id, known_at DESC, recorded_at DESC
), chg AS (
    SELECT DISTINCT ON (security_id, time) security_id, time, new_symbol
    FROM {CORPORATE_ACTIONS.table}
    WHERE action_type = 'symbol_change' AND known_at <= %(k)s AND recorded_at <= %(rb)s
    ORDER BY security_id, time, known_at DESC, recorded_at DESC
)"""
# s listed at p.at (just before it when strict), and its ticker then
_LISTED = """(s.listed_at < p.at OR (s.listed_at = p.at AND NOT %(strict)s))
  AND (s.delisted_at IS NULL OR s.delisted_at > p.at OR (s.delisted_at = p.at AND %(strict)s))"""
_TICKER = """coalesce((
    SELECT c.new_symbol FROM chg c
    WHERE c.security_id = s.security_id AND (c.time < p.at OR (c.time = p.at AND NOT %(strict)s))
    ORDER BY c.time DESC LIMIT 1
), s.symbol)"""

TICKERS_SQL = f"""
WITH {_KNOWN}, p AS (
    SELECT * FROM unnest(%(ids)s::text[], %(ats)s::timestamptz[]) WITH ORDINALITY AS p(security_id, at, i)
)
SELECT p.i, {_TICKER} FROM p JOIN sec s ON s.security_id = p.security_id WHERE {_LISTED}
"""
SECURITIES_SQL = f"""
WITH {_KNOWN}, p AS (
    SELECT * FROM unnest(%(symbols)s::text[], %(ats)s::timestamptz[]) WITH ORDINALITY AS p(symbol, at, i)
), named AS (
    SELECT p.i, p.symbol, s.security_id, {_TICKER} AS ticker
    FROM p JOIN sec s
      ON s.symbol = p.symbol OR s.security_id IN (SELECT c.security_id FROM chg c WHERE c.new_symbol = p.symbol)
    WHERE {_LISTED}
)
SELECT i, array_agg(DISTINCT security_id ORDER BY security_id) FROM named WHERE ticker = symbol GROUP BY i
"""


def _bounds(known_at: datetime | None, recorded_by: datetime | None) -> dict:
    return {"k": known_at or END_OF_TIME, "rb": recorded_by or END_OF_TIME}


def tickers_at(
    *,
    security_ids: Sequence[str],
    instants: Sequence[datetime],
    strict: bool = False,
    known_at: datetime | None = None,
    recorded_by: datetime | None = None,
) -> list[str | None]:
    """Per (security_id, instant): the security's ticker at the instant (just before it with
    ``strict``), None when the security is unknown or not listed then."""
    out: list[str | None] = [None] * len(security_ids)
    if not security_ids:
        return out
    params = {"ids": list(security_ids), "ats": list(instants), "strict": strict, **_bounds(known_at, recorded_by)}
    with connection.cursor() as cur:
        cur.execute(TICKERS_SQL, params)
        for i, ticker in cur.fetchall():
            out[i - 1] = ticker
    return out


def securities_for_tickers(
    *,
    symbols: Sequence[str],
    instants: Sequence[datetime],
    strict: bool = False,
    known_at: datetime | None = None,
    recorded_by: datetime | None = None,
) -> list[list[str]]:
    """Per (ticker, instant): the security_ids trading under the ticker at the instant (just before it
    with ``strict``): none, one, or (inconsistent reference data) several."""
    out: list[list[str]] = [[] for _ in symbols]
    if not symbols:
        return out
    params = {"symbols": list(symbols), "ats": list(instants), "strict": strict, **_bounds(known_at, recorded_by)}
    with connection.cursor() as cur:
        cur.execute(SECURITIES_SQL, params)
        for i, ids in cur.fetchall():
            out[i - 1] = list(ids)
    return out


def ticker_at(
    *,
    security_id: str,
    at: datetime,
    strict: bool = False,
    known_at: datetime | None = None,
    recorded_by: datetime | None = None,
) -> str | None:
    """The ticker of ``security_id`` at ``at`` (None: unknown or not listed then)."""
    return tickers_at(
        security_ids=[security_id], instants=[at], strict=strict, known_at=known_at, recorded_by=recorded_by
    )[0]


def security_for_ticker(
    *,
    symbol: str,
    at: datetime,
    strict: bool = False,
    known_at: datetime | None = None,
    recorded_by: datetime | None = None,
) -> str | None:
    """The security trading under ``symbol`` at ``at`` (None: none, or more than one)."""
    found = securities_for_tickers(
        symbols=[symbol], instants=[at], strict=strict, known_at=known_at, recorded_by=recorded_by
    )[0]
    return found[0] if len(found) == 1 else None


# --- the loader's hook (CORPORATE_ACTIONS.resolve) ------------------------------------------------------

NO_SECURITY = (
    "names no security trading just before ex_date {at} (as the security master is known now);"
    " load it in securities first"
)


def corporate_action_securities(
    columns: dict[str, pa.Array], skip: set[int]
) -> tuple[dict[str, pa.Array], list[tuple[int, str, str]]]:
    """Fill ``security_id`` and ``symbol`` of corporate actions from each other, just before ex_date
    (``time``), against the security master as stored now. Rows in ``skip`` (bad already) and rows
    without ex_date are left as they are. Returns the two columns and the problems, each
    (row index, column, message)."""
    times = columns["time"].to_pylist()
    ids = [v.strip() or None if isinstance(v, str) else v for v in columns["security_id"].to_pylist()]
    symbols = [v.strip() or None if isinstance(v, str) else v for v in columns["symbol"].to_pylist()]
    problems: list[tuple[int, str, str]] = []
    by_id, by_symbol = [], []
    for i, (t, sid, sym) in enumerate(zip(times, ids, symbols)):
        if i in skip or t is None:
            continue
        if sid:
            by_id.append(i)
        elif sym:
            by_symbol.append(i)
        else:
            problems.append((i, "security_id", "security_id or symbol is required (the ticker just before ex_date)"))
    tickers = tickers_at(security_ids=[ids[i] for i in by_id], instants=[times[i] for i in by_id], strict=True)
    for i, ticker in zip(by_id, tickers):
        at = times[i].isoformat()
        if ticker is None:
            problems.append((i, "security_id", f"security_id {ids[i]!r} " + NO_SECURITY.format(at=at)))
        elif symbols[i] and symbols[i] != ticker:
            problems.append(
                (
                    i,
                    "symbol",
                    f"symbol {symbols[i]!r} and security_id {ids[i]!r} disagree: {ids[i]} traded as {ticker!r}"
                    f" just before ex_date {at}",
                )
            )
        else:
            symbols[i] = ticker
    found = securities_for_tickers(
        symbols=[symbols[i] for i in by_symbol], instants=[times[i] for i in by_symbol], strict=True
    )
    for i, candidates in zip(by_symbol, found):
        at = times[i].isoformat()
        if not candidates:
            problems.append((i, "symbol", f"symbol {symbols[i]!r} " + NO_SECURITY.format(at=at)))
        elif len(candidates) > 1:
            problems.append(
                (
                    i,
                    "symbol",
                    f"symbol {symbols[i]!r} names {len(candidates)} securities just before ex_date {at}"
                    f" ({', '.join(candidates)}): give security_id",
                )
            )
        else:
            ids[i] = candidates[0]
    filled = {"security_id": pa.array(ids, pa.string()), "symbol": pa.array(symbols, pa.string())}
    return filled, problems

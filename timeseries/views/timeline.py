"""What the timeline pages show, built only from ``timeseries/pit/`` selectors (no other reads).

``timeline_symbol_build`` and ``timeline_overview_build`` return plain dicts (rows, chart data,
the newest recorded_at used); the views render them. Nothing known after ``at`` can appear: every
selector is asked "as of at (as recorded by recorded_by)", and the "what changed" list compares
``since`` <= ``at`` with ``at``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from timeseries import pit
from timeseries.datasets import DATASETS

MINUTE_BARS_MAX_RANGE = timedelta(days=7)  # longer windows chart daily bars from the aggregates
EVENTS_LIMIT = 1000  # events per kind charted / listed
TABLE_ROWS = 200  # rows per table on the page (the chart has them all)
CHANGES_LIMIT = 500  # rows per dataset in "what changed"
STEPS = (
    ("-1 day", timedelta(days=-1)),
    ("-1 hour", timedelta(hours=-1)),
    ("+1 hour", timedelta(hours=1)),
    ("+1 day", timedelta(days=1)),
)
BUY = ("buy", "p", "purchase")
SELL = ("sell", "s", "sale")


def iso(t: datetime | None) -> str | None:
    """UTC ISO 8601 with Z (what the URLs carry)."""
    if t is None:
        return None
    text = t.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return text


def chart_time(t: datetime) -> str:
    """The form plotly.js reads as a date without shifting it (naive UTC, the axis says UTC)."""
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _num(v: Any) -> float | None:
    return None if v is None else float(v)


def _newest(*values: datetime | None) -> datetime | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _newest_of(rows: Iterable[dict]) -> datetime | None:
    return _newest(*(r.get("recorded_at") for r in rows))


def insider_side(transaction_type: str) -> str:
    kind = str(transaction_type).strip().lower()
    return "buy" if kind in BUY else "sell" if kind in SELL else "other"


def _bars_chart(bars: list[dict]) -> dict:
    return {
        "x": [chart_time(b["time"]) for b in bars],
        "open": [_num(b["open"]) for b in bars],
        "high": [_num(b["high"]) for b in bars],
        "low": [_num(b["low"]) for b in bars],
        "close": [_num(b["close"]) for b in bars],
        "volume": [int(b["volume"] or 0) for b in bars],
    }


def _events_chart(news: list[dict], filings: list[dict], government: list[dict], sentiment: list[dict]) -> dict:
    out = {
        "news": {
            "x": [chart_time(n["time"]) for n in news],
            "impact": [n["impact_score"] for n in news],
            "text": [
                (
                    f"{n['title']} ({n['source'] or 'news'},"
                    f" impact {n['impact_score'] if n['impact_score'] is not None else '?'})"
                )
                for n in news
            ],
        },
        "government": {
            "x": [chart_time(g["time"]) for g in government],
            "text": [f"{g['event_type']}: {g['description'][:120]}" for g in government],
        },
        "sentiment": {"x": [chart_time(s["time"]) for s in sentiment], "y": [s["sentiment"] for s in sentiment]},
    }
    for side in ("buy", "sell", "other"):
        rows = [f for f in filings if insider_side(f["transaction_type"]) == side]
        out[f"insider_{side}"] = {
            "x": [chart_time(f["filing_date"]) for f in rows],
            "text": [
                (
                    f"{f['insider_name']} {f['transaction_type']} {f['shares'] or '?'} sh,"
                    f" traded {f['time']:%Y-%m-%d}, filed {f['filing_date']:%Y-%m-%d %H:%M}"
                )
                for f in rows
            ],
        }
    return out


def timeline_symbol_build(
    *,
    symbol: str,
    at: datetime,
    start: datetime,
    end: datetime,
    since: datetime,
    recorded_by: datetime | None = None,
) -> dict:
    """Everything the symbol page shows as of ``at``: chart data for [start, end], event lists, the
    reconstructed state, what changed in (since, at], and the newest recorded_at of all of it."""
    if since > at:
        raise ValueError("since must not be after at")
    daily = end - start > MINUTE_BARS_MAX_RANGE
    if daily:
        bars = pit.daily_bars(symbol=symbol, at=at, start=start, end=end, recorded_by=recorded_by)
        bars_recorded = pit.newest_recorded_at(
            dataset="market_data", at=at, symbols=[symbol], start=start, end=end, recorded_by=recorded_by
        )
    else:
        bars = pit.history(
            dataset="market_data", at=at, symbols=[symbol], start=start, end=end, recorded_by=recorded_by
        )
        bars_recorded = _newest_of(bars)
    window = {
        "at": at,
        "start": start,
        "end": end,
        "symbols": [symbol],
        "limit": EVENTS_LIMIT,
        "recorded_by": recorded_by,
    }
    news = pit.window_events(dataset="news_events", **window)
    filings = pit.window_events(dataset="insider_trades", **window)
    government = pit.window_events(dataset="government_events", **window)
    if daily:
        hours = pit.daily_sentiment(symbol=symbol, at=at, start=start, end=end, recorded_by=recorded_by)
    else:
        hours = pit.hourly_sentiment(symbol=symbol, at=at, start=start, end=end, recorded_by=recorded_by)
    sentiment_line = [h for h in hours if h["sentiment"] is not None]
    sentiment_recorded = (
        pit.newest_recorded_at(
            dataset="social_sentiment",
            at=at,
            symbols=[symbol],
            start=start - timedelta(hours=1),
            end=end,
            recorded_by=recorded_by,
        )
        if hours
        else None
    )
    state = pit.reconstruct(at=at, symbol=symbol, recorded_by=recorded_by)
    changes = pit.changes_between(t1=since, t2=at, symbols=[symbol], recorded_by=recorded_by, limit=CHANGES_LIMIT)
    newest = _newest(
        bars_recorded,
        sentiment_recorded,
        _newest_of(news),
        _newest_of(filings),
        _newest_of(government),
        state["max_recorded_at"],
        *(_newest_of(rows) for rows in changes.values()),
    )
    return {
        "symbol": symbol,
        "at": at,
        "recorded_by": recorded_by,
        "start": start,
        "end": end,
        "since": since,
        "resolution": "1d" if daily else "1min",
        "bars": bars,
        "news": news,
        "filings": filings,
        "government": government,
        "sentiment": sentiment_line,
        "state": state,
        "changes": changes,
        "changes_listing": changes_listing(changes),
        "events_limit": EVENTS_LIMIT,
        "max_recorded_at": newest,
        "chart": {
            "symbol": symbol,
            "at": chart_time(at),
            "start": chart_time(start),
            "end": chart_time(end),
            "resolution": "1d" if daily else "1min",
            "bars": _bars_chart(bars),
            **_events_chart(news, filings, government, sentiment_line),
        },
    }


def _sentiment_by_symbol(rows: list[dict]) -> dict[str, dict]:
    """Per symbol: mention-weighted sentiment of its platforms' latest windows, mentions, newest window."""
    out: dict[str, dict] = {}
    for r in rows:
        acc = out.setdefault(
            r["symbol"], {"weighted": 0.0, "weight": 0.0, "mentions": 0, "time": None, "recorded_at": None}
        )
        if r["sentiment_avg"] is not None:
            w = float(r["mention_count"] or 0) or 1.0
            acc["weighted"] += w * r["sentiment_avg"]
            acc["weight"] += w
        acc["mentions"] += r["mention_count"] or 0
        acc["time"] = _newest(acc["time"], r["time"])
        acc["recorded_at"] = _newest(acc["recorded_at"], r["recorded_at"])
    return {
        s: {
            "sentiment": a["weighted"] / a["weight"] if a["weight"] else None,
            "mentions": a["mentions"],
            "time": a["time"],
            "recorded_at": a["recorded_at"],
        }
        for s, a in out.items()
    }


def timeline_overview_build(
    *, at: datetime, recorded_by: datetime | None = None, sort: str = "symbol", descending: bool = False
) -> dict:
    """Every symbol's state as of ``at``: its latest bar and its latest sentiment windows (two queries)."""
    bars = {b["symbol"]: b for b in pit.market_state(at=at, recorded_by=recorded_by)}
    sentiment = _sentiment_by_symbol(pit.sentiment(at=at, recorded_by=recorded_by))
    rows = []
    for symbol in sorted(set(bars) | set(sentiment)):
        b, s = bars.get(symbol), sentiment.get(symbol, {})
        rows.append(
            {
                "symbol": symbol,
                "time": b["time"] if b else None,
                "close": b["close"] if b else None,
                "volume": b["volume"] if b else None,
                "sentiment": s.get("sentiment"),
                "mentions": s.get("mentions"),
                "sentiment_time": s.get("time"),
                "recorded_at": _newest(b["recorded_at"] if b else None, s.get("recorded_at")),
            }
        )
    present = [r for r in rows if r[sort] is not None]
    missing = [r for r in rows if r[sort] is None]
    present.sort(key=lambda r: r[sort], reverse=descending)
    return {
        "at": at,
        "recorded_by": recorded_by,
        "rows": present + missing,
        "sort": sort,
        "descending": descending,
        "max_recorded_at": _newest_of(rows),
    }


def symbol_known(*, symbol: str, at: datetime, recorded_by: datetime | None = None) -> bool:
    """Whether anything of ``symbol`` is known at ``at`` (else the page answers 404)."""
    return pit.symbol_known(symbol=symbol, at=at, recorded_by=recorded_by)


def default_at(*, symbol: str | None = None) -> datetime:
    """Where a page without ``at`` starts: the knowledge time of the newest bar known now (else now)."""
    now = datetime.now(UTC)
    state = pit.market_state(at=now, symbols=[symbol] if symbol else None)
    newest = _newest(*(b["known_at"] for b in state))
    t = newest or now
    return t.replace(microsecond=0) + (
        timedelta(seconds=1) if t.microsecond else timedelta(0)
    )  # whole seconds, never earlier


DATASET_LABELS = {name: spec.label for name, spec in DATASETS.items()}
CHANGES_SHOWN = 8  # newest corrections and newest additions listed per dataset (each)


def change_summary(dataset: str, row: dict) -> str:
    """One line describing a changed row (and, for a correction, what it was before)."""
    return DATASETS[dataset].change_summary(row, row.get("previous") or {})


def changes_listing(changes: dict[str, list[dict]], *, limit: int = CHANGES_LIMIT) -> list[dict]:
    """Per dataset: how many keys are new, how many were corrected, and the rows to list."""
    out = []
    for dataset, rows in changes.items():
        corrections = [r for r in rows if r["correction"]]
        additions = [r for r in rows if not r["correction"]]
        shown = corrections[:CHANGES_SHOWN] + additions[:CHANGES_SHOWN]
        shown.sort(key=lambda r: r["known_at"], reverse=True)
        out.append(
            {
                "dataset": dataset,
                "label": DATASET_LABELS.get(dataset, dataset),
                "new": len(additions),
                "corrections": len(corrections),
                "truncated": len(rows) >= limit,
                "hidden": len(rows) - len(shown),
                "rows": [{**r, "summary": change_summary(dataset, r)} for r in shown],
            }
        )
    return out

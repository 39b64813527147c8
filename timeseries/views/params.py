"""Query parameters of the timeline pages: parsed strictly by ``timeseries.params`` (the rules of
the API, the admin and the commands), every error names its parameter."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from timeseries import params as parameters

DEFAULT_RANGE = timedelta(days=2)  # chart window ending at T when no from/to is given
DEFAULT_SINCE = timedelta(days=1)  # "what changed" compares T with T - 1 day unless since= is given
MAX_RANGE = timedelta(days=3660)
OVERVIEW_SORTS = ("symbol", "time", "close", "volume", "sentiment", "mentions")


class BadParameter(parameters.ParameterError):
    """A query parameter is wrong; the message starts with its name."""

    def __init__(self, name: str, message: str):
        self.name = name
        super().__init__(message if message.startswith(name) else f"{name}: {message}")


def _instant(params, name: str) -> datetime | None:
    raw = params.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        return parameters.instant(name, raw)
    except parameters.ParameterError as exc:
        raise BadParameter(name, str(exc)) from None


def _only_known(params, known: set[str]) -> None:
    unknown = sorted(set(params) - known)
    if unknown:
        raise BadParameter(
            unknown[0], f"{unknown[0]} is not a parameter of this page (expected: {', '.join(sorted(known))})"
        )


@dataclass(frozen=True)
class SymbolQuery:
    symbol: str
    at: datetime
    recorded_by: datetime | None
    start: datetime
    end: datetime
    since: datetime
    explicit_range: bool  # from/to were given (the window stays put when T moves)
    explicit_since: bool


@dataclass(frozen=True)
class OverviewQuery:
    at: datetime
    recorded_by: datetime | None
    sort: str
    descending: bool


def symbol_check(symbol: str) -> str:
    """The symbol rule (timeseries/rules.py), shared with ingestion, the API and the admin."""
    try:
        return parameters.symbol("symbol", symbol)
    except parameters.ParameterError as exc:
        raise BadParameter("symbol", str(exc)) from None


def needs_at(params) -> bool:
    """``at`` is absent: the page redirects to a URL that names T."""
    return not (params.get("at") or "").strip()


def symbol_query_parse(*, symbol: str, params) -> SymbolQuery:
    _only_known(params, {"at", "recorded_by", "from", "to", "since"})
    symbol = symbol_check(symbol)
    at = _instant(params, "at")
    if at is None:
        raise BadParameter("at", "at is required (ISO 8601 with an offset, e.g. 2024-03-01T15:30:00Z)")
    recorded_by = _instant(params, "recorded_by")
    start, end = _instant(params, "from"), _instant(params, "to")
    explicit = start is not None or end is not None
    end = end or at
    start = start or end - DEFAULT_RANGE
    if start >= end:
        raise BadParameter("from", "from must be before to")
    if end - start > MAX_RANGE:
        raise BadParameter("from", f"from..to spans {(end - start).days} days; at most {MAX_RANGE.days} days")
    since = _instant(params, "since")
    if since is not None and since > at:
        raise BadParameter("since", "since must not be after at (the page shows nothing known after at)")
    return SymbolQuery(
        symbol=symbol,
        at=at,
        recorded_by=recorded_by,
        start=start,
        end=end,
        since=since if since is not None else at - DEFAULT_SINCE,
        explicit_range=explicit,
        explicit_since=since is not None,
    )


def overview_query_parse(*, params) -> OverviewQuery:
    _only_known(params, {"at", "recorded_by", "sort"})
    at = _instant(params, "at")
    if at is None:
        raise BadParameter("at", "at is required (ISO 8601 with an offset, e.g. 2024-03-01T15:30:00Z)")
    sort = (params.get("sort") or "symbol").strip()
    descending = sort.startswith("-")
    if sort.lstrip("-") not in OVERVIEW_SORTS:
        raise BadParameter(
            "sort", f"sort={sort!r}: expected one of {', '.join(OVERVIEW_SORTS)} (prefix - for descending)"
        )
    return OverviewQuery(
        at=at, recorded_by=_instant(params, "recorded_by"), sort=sort.lstrip("-"), descending=descending
    )

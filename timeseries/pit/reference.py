"""Reference data as of T: the security master and the corporate actions known then.

Both are announced before they take effect, so "known at T" includes securities listed after T and
actions with an ex_date after T (their datasets are declared ``known_after_time=False``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from psycopg import sql

from timeseries.datasets import CORPORATE_ACTIONS, SECURITIES
from timeseries.pit._sql import current_rows, symbols_clean, time_params


def _ids_or_tickers(params: dict, symbols: list[str] | None) -> list[sql.Composable]:
    """Rows whose security_id or ticker (``symbol``) is one of ``symbols``."""
    if symbols is None:
        return []
    params["symbols"] = symbols
    return [sql.SQL("(a.security_id = ANY(%(symbols)s) OR a.symbol = ANY(%(symbols)s))")]


def securities(
    *, at: datetime, symbols: Iterable[str] | None = None, recorded_by: datetime | None = None
) -> list[dict]:
    """The current version of every security known at ``at`` (as recorded by ``recorded_by``), by
    security_id; ``symbols`` matches a security_id or the ticker it listed under. Listing status is
    not filtered: a security delisted before ``at`` (or listed after it) is in the answer with its
    listed_at (``time``) and delisted_at."""
    params = time_params(at, recorded_by)
    where = _ids_or_tickers(params, symbols_clean(symbols))
    return current_rows(SECURITIES, params, where=where, order=("security_id",))


def corporate_actions(
    *,
    at: datetime,
    symbols: Iterable[str] | None = None,
    limit: int = 1000,
    recorded_by: datetime | None = None,
) -> list[dict]:
    """Corporate actions known at ``at`` (the current version of each), newest ex_date (``time``)
    first, at most ``limit``; an action announced before ``at`` with a later ex_date is included.
    ``symbols`` matches a security_id or the ticker just before ex_date (``symbol``)."""
    spec = CORPORATE_ACTIONS
    params = time_params(at, recorded_by)
    where = _ids_or_tickers(params, symbols_clean(symbols))
    return current_rows(spec, params, where=where, order=spec.order_newest, limit=limit)

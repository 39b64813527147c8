"""Point-in-time selectors: what was knowable at ``at`` (as recorded by ``recorded_by``), nothing more.

As of T (optionally as recorded by S), for each key consider the versions with known_at <= T (and
recorded_at <= S); the one with the greatest (known_at, recorded_at) is the truth and every other
version does not exist (the time model: timeseries/datasets.py). Every selector returns plain data:
a list of dicts whose keys are the stored column names (plus time, known_at, recorded_at);
timestamps are aware UTC datetimes, exact decimals are ``decimal.Decimal``.

Queries are parameterised SQL built from the dataset declarations; the ones that need LATERAL or an
anti-join live next to the function that runs them. The modules:

- ``_sql``: the shared pieces (time parameters, cursor, current-version predicate, symbol filters,
  quality score as it stood, latest row per series);
- ``state``: market state, sentiment, a dataset's "state as of T", symbol known, newest recorded_at;
- ``events``: news, insider trades, government events, events in a window;
- ``history``: rows over a time range, recent bars, ``reconstruct`` (everything about one symbol);
- ``asof``: the as-of join (points -> latest row known at each point's time);
- ``diff``: ``changes_between``, the timeline diff between two instants;
- ``rollups``: daily bars, hourly and daily sentiment (thin over timeseries/aggregates.py);
- ``reference``: the security master and the corporate actions known at T;
- ``adjust``: bars adjusted for splits and dividends as known at T, following a security across its
  tickers (``adjusted_history``).

This package re-exports their public names: ``from timeseries import pit; pit.market_state(...)``.
Constants are read where they are used: patch ``timeseries.pit.asof.PARALLEL_ASOF_POINTS``, not
the copy here.
"""

from timeseries.pit._sql import NaiveDatetime, aware
from timeseries.pit.adjust import adjusted_history
from timeseries.pit.asof import ASOF_CONNECTIONS, PARALLEL_ASOF_POINTS, asof_join, asof_join_table
from timeseries.pit.diff import changes_between
from timeseries.pit.events import government_events, insider_trades, news, window_events
from timeseries.pit.history import (
    INSIDER_SUMMARY_DAYS,
    RECENT_BARS_SQL,
    RECENT_GOOD_BARS_SQL,
    history,
    recent_bars,
    reconstruct,
)
from timeseries.pit.reference import corporate_actions, securities
from timeseries.pit.rollups import daily_bars, daily_sentiment, hourly_sentiment
from timeseries.pit.state import (
    SELECTOR_FOR_DATASET,
    market_state,
    newest_recorded_at,
    sentiment,
    state_as_of,
    symbol_known,
)

__all__ = [
    "ASOF_CONNECTIONS",
    "INSIDER_SUMMARY_DAYS",
    "PARALLEL_ASOF_POINTS",
    "RECENT_BARS_SQL",
    "RECENT_GOOD_BARS_SQL",
    "SELECTOR_FOR_DATASET",
    "NaiveDatetime",
    "adjusted_history",
    "asof_join",
    "asof_join_table",
    "aware",
    "changes_between",
    "corporate_actions",
    "daily_bars",
    "daily_sentiment",
    "government_events",
    "history",
    "hourly_sentiment",
    "insider_trades",
    "market_state",
    "news",
    "newest_recorded_at",
    "reconstruct",
    "securities",
    "recent_bars",
    "sentiment",
    "state_as_of",
    "symbol_known",
    "window_events",
]

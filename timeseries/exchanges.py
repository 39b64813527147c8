"""Which exchange a symbol trades on: the one seam every calendar-aware service asks.

Today every symbol trades on the default exchange (``TSM_DEFAULT_EXCHANGE``, docs/calendars.md). The
security master (issue #17, item 1) replaces the body: a symbol's security, as known, gives its exchange,
and a symbol without a known security keeps the default.
"""

from __future__ import annotations

from collections.abc import Iterable

from timeseries.calendars import default_exchange


def exchanges_of(symbols: Iterable[str]) -> dict[str, str]:
    """Each symbol's exchange (a canonical calendar name of the exchange-calendars package)."""
    default = default_exchange()
    return {symbol: default for symbol in symbols}


def exchange_of(symbol: str) -> str:
    """One symbol's exchange (``exchanges_of`` for one)."""
    return exchanges_of([symbol])[symbol]

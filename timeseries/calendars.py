"""Exchange calendars: the trading sessions of an exchange, from the ``exchange-calendars`` package.

A core leaf (settings, the stored-instant range and the ``exchange_calendars`` package; nothing of the
project above the leaves), so that the registry, the services and the shells can all ask it. Every
function takes and returns aware UTC datetimes; see docs/calendars.md.

* A **session** is one trading day of an exchange: its date (the package's session label, the local
  trading date), its open and its close (UTC instants, the session being [open, close)), and for
  exchanges with a lunch break (XHKG, XTKS, ...) the break's start and end. Holidays have no session;
  early closes (XNYS 2024-07-03 at 13:00 New York) have the package's earlier close.
* An exchange is named by the package's calendar names: ISO 10383 MICs (``XNYS``, ``XLON``) and the
  package's aliases (``NYSE``). An unknown name is a ValueError naming it.
* **Bounds.** The package builds a calendar between a start and an end date (by default 20 years back
  to one year ahead of today). tsm stores instants from 1800 to 2200, so calendars are built lazily in
  blocks of ``BLOCK_YEARS`` years of session dates, each the first time an instant in it is asked
  about, and cached per (exchange, block) for the life of the process. A block is clamped to the
  exchange's own bounds (``bound_min``/``bound_max``) and to the stored-instant range: outside them an
  exchange has no session.
"""

from __future__ import annotations

import bisect
import threading
import warnings
from datetime import UTC, date, datetime, timedelta
from typing import NamedTuple

import exchange_calendars as xcals
import pandas as pd
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from timeseries.rules import STORED_MAX, STORED_MIN

BLOCK_YEARS = 10  # session dates per cached calendar (one block of the default exchange: ~0.1 s to build)
# a session labelled D opens and closes within two days of D in UTC (Sydney and the US futures open
# the evening before, in UTC); sessions are looked for among the labels this far around an instant
LABEL_SLACK = timedelta(days=2)
SOURCE_TEXT = "exchange calendars come from the exchange-calendars package (exchange_calendars.get_calendar_names())"


class Session(NamedTuple):
    """One trading session: [open, close) in UTC, with the lunch break where the exchange has one."""

    date: date
    open: datetime
    close: datetime
    break_start: datetime | None = None
    break_end: datetime | None = None

    def periods(self) -> list[tuple[datetime, datetime]]:
        """The session's trading periods, [start, end) each: one, or two around a lunch break."""
        if self.break_start is None or self.break_end is None:
            return [(self.open, self.close)]
        return [(self.open, self.break_start), (self.break_end, self.close)]


class _Block(NamedTuple):
    sessions: tuple[Session, ...]
    opens: list[datetime]
    closes: list[datetime]


_blocks: dict[tuple[str, int], _Block] = {}
_lock = threading.Lock()
_names: frozenset[str] | None = None


# --- names -------------------------------------------------------------------------------------------


def calendar_names() -> frozenset[str]:
    """Every exchange name the package knows (MICs and aliases)."""
    global _names
    if _names is None:
        _names = frozenset(xcals.get_calendar_names(include_aliases=True))
    return _names


def exchange_problem(name: object) -> str | None:
    """None when ``name`` is an exchange the package has a calendar for, else a short reason."""
    if not isinstance(name, str) or not name:
        return f"{name!r} is not an exchange name"
    if name not in calendar_names():
        return f"unknown exchange {name!r}: {SOURCE_TEXT}, e.g. XNYS, XNAS, XLON, XTKS"
    return None


def exchange_check(name: object) -> str:
    """The package's canonical name of exchange ``name`` (an alias resolves to its MIC); ValueError naming
    it when the package has no calendar for it."""
    problem = exchange_problem(name)
    if problem is not None:
        raise ValueError(problem)
    return xcals.resolve_alias(name)


def default_exchange() -> str:
    """The exchange of symbols without a known security: ``TSM_DEFAULT_EXCHANGE`` (canonical name)."""
    name = settings.TSM_DEFAULT_EXCHANGE
    problem = exchange_problem(name)
    if problem is not None:
        raise ImproperlyConfigured(f"TSM_DEFAULT_EXCHANGE: {problem}")
    return xcals.resolve_alias(name)


# --- blocks of sessions ------------------------------------------------------------------------------


def _utc(name: str, value: object) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ValueError(f"{name}={value!r} is not an aware datetime")
    return value.astimezone(UTC)


def _block_no(day: date) -> int:
    return day.year // BLOCK_YEARS


def _bounds(mic: str) -> tuple[date, date]:
    """The first and last session dates the exchange can have: its own bounds within the stored range."""
    # the calendar's class, to ask its bounds without building a calendar (the package's registry)
    cls = xcals.calendar_utils.global_calendar_dispatcher._calendar_factories[mic]
    lo, hi = STORED_MIN.date(), STORED_MAX.date() - timedelta(days=1)
    if cls.bound_min() is not None:
        lo = max(lo, cls.bound_min().date())
    if cls.bound_max() is not None:
        hi = min(hi, cls.bound_max().date())
    return lo, hi


def _build(mic: str, block: int) -> _Block:
    lo, hi = _bounds(mic)
    start = max(date(block * BLOCK_YEARS, 1, 1), lo)
    end = min(date(block * BLOCK_YEARS + BLOCK_YEARS - 1, 12, 31), hi)
    if start > end:
        return _Block((), [], [])
    with warnings.catch_warnings():
        # exchange-calendars 4.13 still uses pandas APIs pandas 3 deprecates (Pandas4Warning): the
        # answers are right today; the package's next release, not tsm, has to change them
        warnings.simplefilter("ignore", DeprecationWarning)
        schedule = xcals.get_calendar(mic, start=pd.Timestamp(start), end=pd.Timestamp(end)).schedule

    def instant(value) -> datetime | None:
        return None if pd.isna(value) else value.to_pydatetime().astimezone(UTC)

    sessions = tuple(
        Session(label.date(), instant(o), instant(c), instant(bs), instant(be))
        for label, o, bs, be, c in zip(
            schedule.index, schedule["open"], schedule["break_start"], schedule["break_end"], schedule["close"]
        )
    )
    return _Block(sessions, [s.open for s in sessions], [s.close for s in sessions])


def _block(mic: str, block: int) -> _Block:
    key = (mic, block)
    found = _blocks.get(key)
    if found is None:
        with _lock:
            found = _blocks.get(key)
            if found is None:
                found = _blocks[key] = _build(mic, block)
    return found


def _blocks_between(mic: str, first: date, last: date) -> list[_Block]:
    lo, hi = _bounds(mic)
    first, last = max(first, lo), min(last, hi)
    if first > last:
        return []
    return [_block(mic, n) for n in range(_block_no(first), _block_no(last) + 1)]


# --- sessions ----------------------------------------------------------------------------------------


def sessions_between(*, exchange: str, start: datetime, end: datetime) -> list[Session]:
    """The sessions of ``exchange`` overlapping [start, end] (open <= end and close > start), in order."""
    mic = exchange_check(exchange)
    start, end = _utc("start", start), _utc("end", end)
    if end < start:
        return []
    out: list[Session] = []
    first = max(start, STORED_MIN + LABEL_SLACK) - LABEL_SLACK
    last = min(end, STORED_MAX - LABEL_SLACK) + LABEL_SLACK
    for block in _blocks_between(mic, first.date(), last.date()):
        i = bisect.bisect_right(block.closes, start)  # the first session closing after start
        for session in block.sessions[i:]:
            if session.open > end:
                break
            out.append(session)
    return out


def session_at(*, exchange: str, at: datetime) -> Session | None:
    """The session of ``exchange`` that ``at`` lies in (open <= at < close), or None outside any session.
    A lunch break lies in its session (``Session.periods`` tells the trading periods apart)."""
    at = _utc("at", at)
    found = sessions_between(exchange=exchange, start=at, end=at)
    return found[0] if found else None


def _step(exchange: str, at: datetime, *, closes: bool, forward: bool) -> datetime | None:
    """The first open (close) after ``at``, or the last before it: searched block by block from ``at``'s."""
    mic = exchange_check(exchange)
    at = _utc("at", at)
    lo, hi = _bounds(mic)
    if lo > hi:
        return None
    day = min(max(at, STORED_MIN), STORED_MAX - timedelta(microseconds=1)).date()
    if forward:
        numbers = range(_block_no(max(day - LABEL_SLACK, lo)), _block_no(hi) + 1)
    else:
        numbers = range(_block_no(min(day + LABEL_SLACK, hi)), _block_no(lo) - 1, -1)
    for n in numbers:
        block = _block(mic, n)
        values = block.closes if closes else block.opens
        if forward:
            i = bisect.bisect_right(values, at)
            if i < len(values):
                return values[i]
        else:
            i = bisect.bisect_left(values, at)
            if i > 0:
                return values[i - 1]
    return None


def next_open(*, exchange: str, at: datetime) -> datetime | None:
    """The first session open of ``exchange`` after ``at`` (strictly), or None past its calendar's end."""
    return _step(exchange, at, closes=False, forward=True)


def next_close(*, exchange: str, at: datetime) -> datetime | None:
    """The first session close of ``exchange`` after ``at`` (strictly), or None past its calendar's end."""
    return _step(exchange, at, closes=True, forward=True)


def previous_open(*, exchange: str, at: datetime) -> datetime | None:
    """The last session open of ``exchange`` before ``at`` (strictly), or None before its calendar's start."""
    return _step(exchange, at, closes=False, forward=False)


def previous_close(*, exchange: str, at: datetime) -> datetime | None:
    """The last session close of ``exchange`` before ``at`` (strictly), or None before its calendar's start."""
    return _step(exchange, at, closes=True, forward=False)

"""Parsing of user-given instants and intervals (commands, API): strict, with messages that name the parameter."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from timeseries.rules import MAX_INSTANT, MIN_INSTANT, RANGE_TEXT

_INTERVAL = re.compile(
    r"\s*([0-9]+)\s*(us|ms|s|sec|secs|second|seconds|min|mins|minute|minutes|h|hour|hours|d|day|days)\s*", re.ASCII
)
_UNITS = {
    "us": timedelta(microseconds=1),
    "ms": timedelta(milliseconds=1),
    "s": timedelta(seconds=1),
    "sec": timedelta(seconds=1),
    "secs": timedelta(seconds=1),
    "second": timedelta(seconds=1),
    "seconds": timedelta(seconds=1),
    "min": timedelta(minutes=1),
    "mins": timedelta(minutes=1),
    "minute": timedelta(minutes=1),
    "minutes": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "hour": timedelta(hours=1),
    "hours": timedelta(hours=1),
    "d": timedelta(days=1),
    "day": timedelta(days=1),
    "days": timedelta(days=1),
}


def parse_instant(name: str, text: str) -> datetime:
    """ISO 8601 with an offset (``Z`` accepted) -> aware UTC datetime. Naive or malformed: ValueError."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{name}={text!r} is not an ISO 8601 timestamp (e.g. 2024-03-01T15:30:00Z)") from None
    if value.tzinfo is None:
        raise ValueError(f"{name}={text!r} has no UTC offset: add Z or +00:00 (naive times are ambiguous)")
    try:
        value = value.astimezone(UTC)
    except OverflowError:
        value = None
    if value is None or not MIN_INSTANT <= value < MAX_INSTANT:
        raise ValueError(f"{name}={text!r} is outside the supported range of instants ({RANGE_TEXT})")
    return value


# The longest bar (or other) interval accepted: a year and a day covers every calendar bar (1d, 1w, 1y
# of 365 or 366 days) while keeping ``time + interval`` far from datetime's limits.
MAX_INTERVAL = timedelta(days=366)
MAX_INTERVAL_TEXT = "366d"
_MICROSECOND = timedelta(microseconds=1)
_MAX_DIGITS = 15  # more digits than any unit needs to reach MAX_INTERVAL (366 days in microseconds has 14)


def parse_interval(name: str, text: str) -> timedelta:
    """'1min', '5 min', '30s', '1h', '1d' -> timedelta (positive, at most ``MAX_INTERVAL``)."""
    match = _INTERVAL.fullmatch(text.lower())
    digits = match.group(1).lstrip("0") if match else ""
    if not digits:
        raise ValueError(f"{name}={text[:64]!r} is not a positive interval such as 1min, 5min, 30s, 1h or 1d")
    unit = _UNITS[match.group(2)]
    # compared in whole microseconds: a timedelta of a billion days cannot even be built (OverflowError)
    if len(digits) > _MAX_DIGITS or int(digits) * (unit // _MICROSECOND) > MAX_INTERVAL // _MICROSECOND:
        raise ValueError(f"{name}={text[:64]!r} is longer than the longest interval accepted ({MAX_INTERVAL_TEXT})")
    return int(digits) * unit

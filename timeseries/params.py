"""The one parameter module: how every door (read API, pages, admin, commands, services) reads a
symbol, an instant, a score, a limit or a list, with the same rule and the same words.

A core leaf: standard library and the other leaves (``timeseries.rules``, ``timeseries.timeparse``)
only; no models, no Django. Every error is a ``ParameterError`` (a ``ValueError``) whose message names
the parameter; each door turns it into its own answer (a 400 of the API, the error page, an admin
message, a command error). Where the doors accept different things today, the difference is an
explicit argument of the one function they all call.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta
from typing import Any

from timeseries.rules import symbol_message
from timeseries.timeparse import parse_instant, parse_interval

# --- errors -----------------------------------------------------------------------------------------


class ParameterError(ValueError):
    """A parameter is wrong; the message names it."""


class CurationError(ParameterError):
    """Bad curation input (a score, a reason, a filter of the curation lists); the message names the parameter."""


# --- text and lists ---------------------------------------------------------------------------------

MAX_LIST_ITEMS = 10_000  # values in one comma-separated list parameter of the read API
MAX_TEXT_LENGTH = 200  # characters of one text value that may reach SQL as a parameter


def text(name: str, value: str, *, max_length: int = MAX_TEXT_LENGTH) -> str:
    """Text that may reach SQL as a parameter: no NUL byte (PostgreSQL text cannot hold one), bounded length."""
    if "\x00" in value:
        raise ParameterError(f"{name} must not contain a NUL character")
    if len(value) > max_length:
        raise ParameterError(f"{name} is too long (at most {max_length} characters per value)")
    return value


def text_list(
    name: str,
    value: str,
    *,
    separators: str = ",",
    unique: bool = True,
    max_items: int | None = MAX_LIST_ITEMS,
    item_max_length: int | None = MAX_TEXT_LENGTH,
    none_when_empty: bool = True,
    drop_blank: bool = True,
) -> list[str] | None:
    """``"A, B,,A"`` -> ``["A", "B"]``: split on any of ``separators``, items stripped, blanks dropped.

    The doors differ only in these arguments: the read API removes duplicates, caps the list at
    ``max_items`` and each item at ``item_max_length`` characters (checked with ``text``); the
    admin's filters and the commands keep every item as given (their whole value is checked
    before). With ``none_when_empty`` a list with nothing left is None ("no filter"); the admin's
    source filter keeps blank items (``drop_blank=False``: "a,,b" also matches an empty source)."""
    for separator in separators[1:]:
        value = value.replace(separator, separators[0])
    items = [s.strip() for s in value.split(separators[0]) if s.strip() or not drop_blank]
    if unique:
        items = list(dict.fromkeys(items))
    if max_items is not None and len(items) > max_items:
        raise ParameterError(f"{name} has more than {max_items} values")
    if item_max_length is not None:
        for item in items:
            text(name, item, max_length=item_max_length)
    return items or (None if none_when_empty else [])


# how the admin's filters and the commands read a list (``text_list``'s options for their doors):
# every item as given, in order, duplicates kept, no cap (the whole value is checked before)
EVERY_ITEM = {"unique": False, "max_items": None, "item_max_length": None, "none_when_empty": False}


# --- symbols ----------------------------------------------------------------------------------------


def symbol(name: str, value: object) -> str:
    """One symbol obeying the symbol rule (timeseries/rules.py); else the rule, naming the parameter."""
    message = symbol_message(name, value)
    if message is not None:
        raise ParameterError(message)
    return value  # type: ignore[return-value]


def symbols(name: str, value: str, **list_options) -> list[str] | None:
    """``text_list`` (same options) whose every item obeys the symbol rule."""
    items = text_list(name, value, **list_options)
    for item in items or ():
        symbol(name, item)
    return items


# --- instants and intervals -------------------------------------------------------------------------

# "…T15:30:00+01:00" typed into a URL arrives as "…T15:30:00 01:00" (a query-string + is a space)
_DECODED_PLUS = re.compile(r"^\s*\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)? \d{2}:\d{2}\s*$")


def instant(name: str, value: str, *, max_length: int | None = None, space_as_plus: bool = False) -> datetime:
    """ISO 8601 with an offset -> aware UTC datetime inside the query-instant range (timeseries/timeparse.py).

    The read API refuses text longer than ``max_length`` (64) or holding a NUL byte up front, and
    reads a space before an offset as the ``+`` a query string decoded (``space_as_plus``); the pages,
    the admin and the commands pass neither."""
    if max_length is not None and ("\x00" in value or len(value) > max_length):
        raise ParameterError(f"{name}={value[:max_length]!r} is not an ISO 8601 timestamp (e.g. 2024-03-01T15:30:00Z)")
    if space_as_plus and _DECODED_PLUS.match(value):
        # a space before an offset can mean nothing else
        head, _, offset = value.strip().rpartition(" ")
        value = f"{head}+{offset}"
    try:
        return parse_instant(name, value)
    except ParameterError:
        raise
    except ValueError as exc:
        raise ParameterError(str(exc)) from None


# how the read API reads an instant (``instant``'s options for its door)
API_INSTANT = {"max_length": 64, "space_as_plus": True}


def interval(name: str, value: str) -> timedelta:
    """'1min', '5 min', '30s', '1h', '1d' -> timedelta (timeseries/timeparse.py)."""
    try:
        return parse_interval(name, value)
    except ValueError as exc:
        raise ParameterError(str(exc)) from None


# --- integers ---------------------------------------------------------------------------------------


def positive_int(name: str, value: Any) -> int:
    """An int given by code or a command (already an int): at least 1."""
    if not isinstance(value, int) or value < 1:
        raise ParameterError(f"{name} must be a positive integer")
    return value


def finite_float(name: str, value: str) -> float:
    """A number parameter given as text: finite (no nan, no inf)."""
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise ParameterError(f"{name}={text[:64]!r} is not a finite number")
    return number


def int_between(name: str, value: str, *, minimum: int, maximum: int) -> int:
    """An integer parameter given as text, in [minimum, maximum]."""
    try:
        number = int(value.strip())
    except ValueError:
        number = minimum - 1
    if not minimum <= number <= maximum:
        raise ParameterError(f"{name}={value[:64]!r} is not an integer between {minimum} and {maximum}")
    return number


# --- choices ----------------------------------------------------------------------------------------

ADJUSTMENTS = ("none", "split", "total")  # how a price series is adjusted for corporate actions (docs/adjustment.md)


def choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    """One of ``allowed`` (exactly as written); else an error naming the parameter and the allowed values."""
    if not isinstance(value, str) or value not in allowed:
        raise ParameterError(f"{name}={str(value)[:64]!r} is not one of {', '.join(allowed)}")
    return value


def adjustment(name: str, value: Any) -> str:
    """``adjust``: none, split or total."""
    return choice(name, value, ADJUSTMENTS)


# --- scores -----------------------------------------------------------------------------------------

GOOD = 1.0  # the default score of a market data bar
SUSPECT = 0.0


def score_check(name: str, value: Any, *, allow_none: bool = False) -> float | None:
    """A score parameter: a finite number in [0, 1] (strings accepted); the error names ``name``."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if allow_none:
            return None
        raise CurationError(f"{name} is required: a number between 0 and 1")
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number) or not 0.0 <= number <= 1.0:
        raise CurationError(f"{name}={str(value)[:64]!r} is not a number between 0 and 1")
    return number


def min_quality_check(value: Any) -> float | None:
    """``min_quality`` of a selector: None (no filter) or a number in [0, 1]."""
    return score_check("min_quality", value, allow_none=True)


# --- the filters of the curation lists (admin changelists; the Celery task of large selections) -------

CURATION_TEXT_FILTERS = ("symbol", "source")
# parameter -> (column, lookup): inclusive ranges
CURATION_RANGE_FILTERS = {
    "time_after": ("time", "gte"),
    "time_before": ("time", "lte"),
    "known_at_after": ("known_at", "gte"),
    "known_at_before": ("known_at", "lte"),
    "quality_min": ("quality_score", "gte"),
    "quality_max": ("quality_score", "lte"),
}
CURATION_FILTER_PARAMS = (*CURATION_TEXT_FILTERS, *CURATION_RANGE_FILTERS, "q")  # q: the search box (symbols)
CURATION_MAX_TEXT = 200


def curation_filters(params: dict[str, Any], *, dataset: str, has_source: bool, curated: bool) -> dict[str, Any]:
    """Read the curation list's filter parameters (unknown ones are ignored): symbols (``symbol``, and
    ``q`` split on commas or spaces), sources, instants and scores; CurationError naming the parameter.
    ``has_source`` / ``curated``: whether ``dataset`` has a source column / a quality_score."""
    out: dict[str, Any] = {}
    try:
        for name in CURATION_FILTER_PARAMS:
            raw = params.get(name)
            if raw is None or not str(raw).strip():
                continue
            value = str(raw).strip()
            if "\x00" in value or len(value) > CURATION_MAX_TEXT:
                raise CurationError(f"{name} must be at most {CURATION_MAX_TEXT} characters, without NUL")
            if name == "source" and not has_source:
                raise CurationError(f"source is not a column of {dataset}")
            if name.startswith("quality") and not curated:
                raise CurationError(f"{name}: {dataset} has no quality_score")
            if name in ("symbol", "q"):
                out[name] = symbols(name, value, separators=", " if name == "q" else ",", **EVERY_ITEM)
            elif name == "source":
                out[name] = text_list(name, value, drop_blank=False, **EVERY_ITEM)
            elif name.startswith("quality"):
                out[name] = score_check(name, value)
            else:
                out[name] = instant(name, value)
    except CurationError:
        raise
    except ParameterError as exc:
        raise CurationError(str(exc)) from None
    for lo, hi in (
        ("time_after", "time_before"),
        ("known_at_after", "known_at_before"),
        ("quality_min", "quality_max"),
    ):
        if lo in out and hi in out and out[lo] > out[hi]:
            raise CurationError(f"{lo} must not be after {hi}")
    return out

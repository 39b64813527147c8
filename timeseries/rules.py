"""The shared input rules: what a symbol may be, and which instants tsm stores and reads.

A leaf module (standard library only; it imports nothing of the project) so that ingestion, the API,
the pages, the admin and the commands all apply the same rule with the same words. See
docs/input-rules.md.

* **Symbol rule**: ASCII, 1-32 characters, first a letter or digit, then letters, digits and
  ``. / ^ = _ : -``, a letter or digit after each ``/``. ``/`` is admitted for share classes and FX
  pairs (``BRK/B``, ``EUR/USD``), ``=`` for futures and FX
  (``ES=F``), ``:`` for exchange prefixes. The ``/`` condition keeps every symbol a working URL path
  (no ``A/../B``, ``A/``, ``A//B``, which browsers collapse).
* **Stored-instant range**: every instant a row stores (event ``time``, ``known_at`` whether given
  or derived by the dataset's rule, filing dates, ...) lies in [1800-01-01T00:00:00Z,
  2200-01-01T00:00:00Z): well inside pandas' nanosecond range (1677-09-21 .. 2262-04-11), so every
  consumer (pandas, Arrow, Parquet, rollups, the InfluxDB backup) can convert it, and far enough
  from datetime's limits that arithmetic such as ``time + bar interval`` never overflows.
* **Query-instant range**: read parameters (``at``, ``recorded_by``, ``from``/``to``) accept the
  wider [1000-01-01, 9999-01-01): asking about an instant no row can have is harmless (it finds
  nothing), and selectors' arithmetic (e.g. ``at - 90 days``) stays valid.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

# --- the symbol rule --------------------------------------------------------------------------------

SYMBOL_MAX_LENGTH = 32
SYMBOL_PUNCTUATION = "./^=_:-"
# Characters and shape, without the length (checked apart: RE2, which Arrow uses, has no lookahead).
# A '/' is followed by a letter or digit, so a symbol is a URL path whose every segment starts with
# one: no empty, '.' or '..' segment that a browser or proxy would collapse (A/../B, A/, A//B).
SYMBOL_SHAPE = r"[A-Za-z0-9][A-Za-z0-9.^=_:-]*(?:/[A-Za-z0-9][A-Za-z0-9.^=_:-]*)*"
# the whole rule as one pattern (Python re; fullmatch)
SYMBOL_PATTERN = rf"(?=.{{1,{SYMBOL_MAX_LENGTH}}}\Z){SYMBOL_SHAPE}"
_SYMBOL = re.compile(SYMBOL_PATTERN, re.DOTALL)
SYMBOL_RULE_TEXT = (
    "a symbol is 1 to 32 ASCII characters: first a letter or digit, then letters, digits and "
    ". / ^ = _ : - with a letter or digit after each / (e.g. AAPL, BRK/B, EUR/USD, ES=F, NYSE:IBM)"
)


def is_symbol(value: object) -> bool:
    """Whether ``value`` is a string the symbol rule admits."""
    return isinstance(value, str) and _SYMBOL.fullmatch(value) is not None


def symbol_problem(value: object) -> str | None:
    """None when ``value`` obeys the symbol rule, else a short reason (without the rule text)."""
    if not isinstance(value, str):
        return "is not text"
    if value == "":
        return "is empty"
    if not value.isascii():
        return "has a non-ASCII character"
    if len(value) > SYMBOL_MAX_LENGTH:
        return f"is {len(value)} characters long (at most {SYMBOL_MAX_LENGTH})"
    if not value[0].isalnum():
        return f"starts with {value[0]!r} (must start with a letter or digit)"
    for char in value:
        if not (char.isalnum() or char in SYMBOL_PUNCTUATION + "/"):
            return f"contains {char!r}"
    if "/" in value and not all(part[:1].isalnum() for part in value.split("/")):
        return "has a / not followed by a letter or digit"
    if _SYMBOL.fullmatch(value) is None:  # pragma: no cover - the checks above cover the pattern
        return "does not match the symbol rule"
    return None


def symbol_message(name: str, value: object) -> str | None:
    """A whole message naming the parameter or column, or None when the value is admitted."""
    problem = symbol_problem(value)
    if problem is None:
        return None
    shown = value if not isinstance(value, str) or len(value) <= 60 else value[:60] + "..."
    return f"{name}={shown!r} {problem}: {SYMBOL_RULE_TEXT}"


def check_symbol(name: str, value: object) -> str:
    """Return ``value`` when the rule admits it; else ValueError whose message names ``name``."""
    message = symbol_message(name, value)
    if message is not None:
        raise ValueError(message)
    return value  # type: ignore[return-value]


# --- the stored-instant range ------------------------------------------------------------------------

STORED_MIN = datetime(1800, 1, 1, tzinfo=UTC)  # first admitted instant
STORED_MAX = datetime(2200, 1, 1, tzinfo=UTC)  # first instant past the range (exclusive)
STORED_RANGE_TEXT = "from 1800-01-01T00:00:00Z up to (not including) 2200-01-01T00:00:00Z"


def format_instant(value: datetime) -> str:
    """ISO 8601 in UTC with a Z, microseconds only when present (the form messages use)."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    text = value.isoformat(timespec="microseconds" if value.microsecond else "seconds")
    return text + "Z"


def in_stored_range(value: datetime) -> bool:
    """Whether an aware datetime lies in the stored-instant range (naive values are taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return STORED_MIN <= value < STORED_MAX


def instant_problem(value: object) -> str | None:
    """None when ``value`` (a datetime) may be stored, else a short reason naming the range."""
    if not isinstance(value, datetime):
        return "is not a timestamp"
    if in_stored_range(value):
        return None
    return f"{format_instant(value)} is outside the supported range of stored instants ({STORED_RANGE_TEXT})"


def check_stored_instant(name: str, value: datetime) -> datetime:
    """Return ``value`` when it may be stored; else ValueError whose message names ``name``."""
    problem = instant_problem(value)
    if problem is not None:
        raise ValueError(f"{name}: {problem}")
    return value


# --- the query-instant range (read parameters: at, recorded_by, from, to) ----------------------------

# Far enough from datetime's limits that every selector's arithmetic (e.g. at - 90 days) stays valid
MIN_INSTANT = datetime(1000, 1, 1, tzinfo=UTC)
MAX_INSTANT = datetime(9999, 1, 1, tzinfo=UTC)
RANGE_TEXT = "between 1000-01-01 and 9998-12-31"
# "recorded by the end of time": the system-time bound of a query that gives no recorded_by (above
# every query instant, so that selectors may compare and add to it)
END_OF_TIME = datetime(9999, 12, 31, tzinfo=UTC)


# --- feeds: the sources a load's rows come from (ranked by TSM_FEED_PRECEDENCE) ---------------------

FEED_RULE_TEXT = "1-64 ASCII characters: letters, digits and _ . : -, the first a letter or digit"
FEED_SHAPE = r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}"  # also the write API's OpenAPI pattern for ``feed``
_FEED_RE = re.compile(FEED_SHAPE)


def feed_problem(value: str) -> str | None:
    """Why ``value`` cannot be a feed name ("" is allowed: an unnamed feed), or None."""
    if value == "" or _FEED_RE.fullmatch(value):
        return None
    return f"{value[:80]!r} is not a feed name ({FEED_RULE_TEXT})"

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
from typing import Any

# --- errors -----------------------------------------------------------------------------------------


class ParameterError(ValueError):
    """A parameter is wrong; the message names it."""


class CurationError(ParameterError):
    """Bad curation input (a score, a reason, a filter of the curation lists); the message names the parameter."""


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

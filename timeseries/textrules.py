"""Text that cannot be stored: lone UTF-16 surrogates (a leaf module, imported by ingestion and the API).

JSON may spell ``"\\ud800"``: half of a UTF-16 pair, not a character. Python's ``json`` reads it into a
``str`` that UTF-8 (PostgreSQL, Arrow, every renderer) cannot encode, so it must be refused where the
body is read, naming the row (or point) and the column that holds it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # in a decoded str every surrogate is a lone one


def has_lone_surrogate(text: str) -> bool:
    return _LONE_SURROGATE.search(text) is not None


def printable(text: str) -> str:
    """``text`` with each lone surrogate written as its escape, e.g. ``'a\\\\ud800'`` (safe to encode)."""
    return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _contains(value: Any) -> bool:
    """Whether ``value`` (JSON data) holds a lone surrogate anywhere; iterative, so that a deeply nested
    body cannot exhaust the stack."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if has_lone_surrogate(item):
                return True
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
    return False


def lone_surrogates(rows: list) -> Iterator[tuple[int, str]]:
    """(1-based row, column) of every value (or key) holding a lone surrogate, in a list of JSON objects.
    A row that is not an object is reported with column ``""`` when anything in it holds one."""
    for number, row in enumerate(rows, start=1):
        if isinstance(row, dict):
            for key, value in row.items():
                if _contains(key) or _contains(value):
                    yield number, printable(key) if isinstance(key, str) else str(key)
        elif _contains(row):
            yield number, ""


def sanitized(value: Any) -> Any:
    """``value`` (JSON data) with lone surrogates replaced by escapes: safe to store as a quarantined raw value."""
    if not _contains(value):
        return value
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, list):
        return [sanitized(v) for v in value]
    if isinstance(value, dict):
        return {sanitized(k): sanitized(v) for k, v in value.items()}
    return value

"""Plain-data rows -> JSON / CSV / text table (management commands today, the API later)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any


def iso(value: datetime) -> str:
    """ISO 8601 in UTC with a Z suffix and microseconds only when present."""
    text = value.astimezone(UTC).isoformat()
    return text.replace("+00:00", "Z")


def decimal_text(v: Any) -> str:
    """A number as plain text: exact decimals without exponent or trailing zeros, None as ""."""
    if v is None:
        return ""
    if isinstance(v, Decimal):
        return f"{v.normalize():f}"
    return str(v)


def plain(value: Any) -> Any:
    """A JSON-ready value: timestamps as ISO 8601 UTC, exact decimals as strings (no float rounding)."""
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def to_json(rows: Any) -> str:
    return json.dumps(plain(rows), ensure_ascii=False)


def _cell(value: Any) -> str:
    value = plain(value)
    if value is None:
        return ""
    if isinstance(value, list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def to_csv(rows: list[dict], columns: Iterable[str] | None = None) -> str:
    columns = list(columns or (rows[0].keys() if rows else []))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return out.getvalue()


def to_table(rows: list[dict], columns: Iterable[str] | None = None, max_width: int = 40) -> str:
    columns = list(columns or (rows[0].keys() if rows else []))
    if not columns:
        return "(no rows)"
    cells = [[_cell(row.get(c))[:max_width] for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(lines) + f"\n({len(rows)} row{'s' if len(rows) != 1 else ''})"

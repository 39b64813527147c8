"""The rejected-rows CSV ("tsm rejected-rows file"): safe to open in a spreadsheet, fixable, re-uploadable.

* One line per rejected row, all its reasons in one column (``REASON_COLUMN``), the other columns are
  the dataset's input columns the rows had (the file's usual order), so the file can be fixed and
  uploaded again as it is.
* Cells are neutralised against formula injection (OWASP "CSV Injection"): a cell beginning with
  ``=``, ``+``, ``-``, ``@``, tab or carriage return gets a leading ``'``, except a plain number such as
  ``-0.5`` (a spreadsheet reads that as a number, not a formula).
* The uploader (``ingestion.parsers``) recognises the file by ``REASON_COLUMN``: it drops that column
  and removes the protective ``'`` again (``UNESCAPE_PATTERN``), so an unfixed cell round-trips as is.

A leaf module (only ``timeseries.datasets``): the admin writes with it, the parsers read with it.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable
from typing import IO, Any

from timeseries.datasets import DATASETS

REASON_COLUMN = "tsm_rejected_reason"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
# RE2 (pyarrow.compute) and Python re alike: a protective quote before a formula-starting character
UNESCAPE_PATTERN = r"^'([=+\-@\t\r])"


def cell_escape(value: Any) -> str:
    """A cell's text, prefixed with ``'`` when a spreadsheet would read it as a formula."""
    if value is None:
        return ""
    text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    if text.startswith(FORMULA_STARTS) and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


def cell_unescape(text: str) -> str:
    """The inverse of ``cell_escape`` (what the uploader applies to every cell of a rejected-rows file)."""
    return re.sub(UNESCAPE_PATTERN, r"\1", text)


def rejected_rows_columns(dataset: str | None, rows: list) -> list[str]:
    """The dataset's input columns the rows carry, in declaration order, then known_at (and news' id).

    Only columns the uploader accepts (a key it would refuse would make the file unusable; such a file
    is refused as a whole at upload, so its rows never reach the quarantine anyway). Without a known
    dataset: every key, sorted."""
    seen: dict[str, None] = {}
    for r in rows:
        seen.update(dict.fromkeys(r.raw or {}))
    spec = DATASETS.get(dataset) if dataset else None
    if spec is None:
        return sorted(seen)
    inputs = [spec.input_name(c) for c in spec.column_names]  # time as the input names it (listed_at)
    declared = [*inputs, "known_at", *sorted(spec.accepted_input_columns.difference(inputs, {"known_at"}))]
    return [c for c in declared if c in seen]


def _reasons(group: list) -> str:
    parts = []
    for r in group:
        part = f"{r.column}: {r.reason}" if r.column else r.reason
        if part not in parts:
            parts.append(part)
    return f"row {group[0].row_number}: " + "; ".join(parts)


def rejected_rows_write(rows: Iterable, out: IO[str], *, dataset: str | None = None) -> int:
    """Write ``rows`` (RejectedRow objects, ordered by load and row number) as one line per input row.

    Returns the number of lines written (header excluded). ``dataset`` names the column order; by
    default the first row's load's dataset.
    """
    rows = list(rows)
    if dataset is None and rows:
        dataset = rows[0].load.dataset
    columns = rejected_rows_columns(dataset, rows)
    writer = csv.writer(out)
    writer.writerow([*columns, REASON_COLUMN])
    groups: dict[tuple[int, int], list] = {}
    for r in rows:
        groups.setdefault((r.load_id, r.row_number), []).append(r)
    for group in groups.values():
        raw = group[0].raw or {}
        writer.writerow([*(cell_escape(raw.get(c)) for c in columns), cell_escape(_reasons(group))])
    return len(groups)

"""Vectorised conversion and validation of input batches (rules live in timeseries/datasets.py).

``prepare_batch`` turns one raw Arrow batch (strings from CSV, typed values from Parquet/NDJSON) into
a typed table holding every stored column except ``recorded_at``, plus ``row_no`` (1-based input
row), and the list of every error found, each naming the row and the column. The happy path is
columnar; only a column that fails to convert is examined value by value to name the bad rows.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from timeseries import rules, securities
from timeseries.datasets import CheckContext, Column, Dataset


@dataclass(frozen=True)
class RowError:
    row: int  # 1-based data row of the input (header excluded)
    column: str
    message: str
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    def __str__(self) -> str:
        col = f", column {self.column!r}" if self.column else ""
        return f"row {self.row}{col}: {self.message}"


class InputError(ValueError):
    """The input as a whole cannot be loaded (unknown/missing columns, unreadable file...)."""


@dataclass
class Prepared:
    table: pa.Table  # good rows only, typed
    errors: list[RowError]
    rows_read: int


NUMERIC_KINDS = frozenset({"price", "money", "float", "int", "bigint"})
TRUE_WORDS = {"true", "t", "1", "yes", "y"}
FALSE_WORDS = {"false", "f", "0", "no", "n"}


# --- per-kind conversion ------------------------------------------------------------------------


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _element_errors(values: list, check) -> dict[int, str]:
    errors = {}
    for i, v in enumerate(values):
        if v is None:
            continue
        message = check(v)
        if message:
            errors[i] = message
    return errors


def _timestamp_problem(v: Any) -> str | None:
    if not isinstance(v, str):
        return f"{_describe(v)} is not an ISO 8601 timestamp"
    try:
        pc.cast(pa.array([v]), pa.timestamp("us", tz="UTC"))
        return None
    except pa.ArrowInvalid:
        pass
    try:
        pc.cast(pa.array([v]), pa.timestamp("us"))
        return f"{_describe(v)} has no UTC offset: naive timestamps are ambiguous, add Z or +00:00"
    except pa.ArrowInvalid:
        return f"{_describe(v)} is not an ISO 8601 timestamp with an offset"


def _decimal_problem(col: Column):
    scale = col.arrow_type.scale
    max_int_digits = col.arrow_type.precision - scale

    def check(v: Any) -> str | None:
        try:
            d = Decimal(str(v).strip())
        except InvalidOperation:
            return f"{_describe(v)} is not a number"
        if not d.is_finite():
            return f"{_describe(v)} is not a finite number (NaN and infinity are not allowed)"
        if -d.as_tuple().exponent > scale and d != d.quantize(Decimal(1).scaleb(-scale)):
            return f"{_describe(v)} has more than {scale} decimal places"
        if d.adjusted() >= max_int_digits:
            return f"{_describe(v)} is too large (at most {max_int_digits} digits before the point)"
        return None

    return check


def _int_problem(col: Column):
    bits = 31 if col.kind == "int" else 63

    def check(v: Any) -> str | None:
        try:
            d = Decimal(str(v).strip())
        except InvalidOperation:
            return f"{_describe(v)} is not an integer"
        if not d.is_finite() or d != d.to_integral_value():
            return f"{_describe(v)} is not an integer"
        if abs(d) >= 2**bits:
            return f"{_describe(v)} is out of range"
        return None

    return check


def _float_problem(v: Any) -> str | None:
    try:
        f = float(str(v).strip())
    except ValueError:
        return f"{_describe(v)} is not a number"
    if not math.isfinite(f):
        return f"{_describe(v)} is not a finite number (NaN and infinity are not allowed)"
    return None


def _bool_problem(v: Any) -> str | None:
    if isinstance(v, bool) or str(v).strip().lower() in TRUE_WORDS | FALSE_WORDS:
        return None
    return f"{_describe(v)} is not a boolean (true/false)"


def _parse_list(v: Any) -> list[str] | None:
    if v is None:
        return None
    if isinstance(v, list):
        return [str(x) for x in v]
    text = str(v).strip()
    if not text:
        return []
    if text.startswith("["):
        parsed = json.loads(text)
        if not isinstance(parsed, list):
            raise ValueError
        return [str(x) for x in parsed]
    return [part.strip() for part in text.split("|") if part.strip()]


def _blank_to_null(arr: pa.Array) -> pa.Array:
    trimmed = pc.utf8_trim_whitespace(arr)
    return pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed)


def _cast_or_find(arr: pa.Array, target: pa.DataType, check) -> tuple[pa.Array, dict[int, str]]:
    try:
        return pc.cast(arr, target), {}
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        values = arr.to_pylist()
        errors = _element_errors(values, check)
        if not errors:  # the vectorised cast and the per-value check disagree: name every row
            errors = {i: f"{_describe(v)} cannot be read as {target}" for i, v in enumerate(values) if v is not None}
        mask = pa.array([i in errors for i in range(len(values))])
        cleaned = pc.if_else(mask, pa.scalar(None, arr.type), arr)
        return pc.cast(cleaned, target), errors


def convert_column(arr: pa.Array, col: Column) -> tuple[pa.Array, dict[int, str]]:
    """Convert one input column to the dataset's type; returns (values, {row index: message})."""
    target = col.arrow_type
    t = arr.type
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_null(t):
        return pa.nulls(len(arr), target), {}
    if col.kind == "text":
        out = arr if pa.types.is_string(t) else pc.cast(arr, pa.string())
        errors = {
            i: f"{col.name} contains a NUL character, which PostgreSQL text cannot hold"
            for i in _true_indices(pc.fill_null(pc.match_substring(out, "\x00"), False))
        }
        if col.max_length is not None:
            lengths = pc.utf8_length(out)
            for i in _true_indices(pc.fill_null(pc.greater(lengths, col.max_length), False)):
                errors.setdefault(i, f"{col.name} is longer than {col.max_length} characters ({lengths[i].as_py()})")
        if col.symbol:
            for i, message in _symbol_errors(out, col).items():
                errors.setdefault(i, message)
        return out, errors
    if col.kind == "text[]":
        errors: dict[int, str] = {}
        values = []
        for i, v in enumerate(arr.to_pylist()):
            try:
                items = _parse_list(v)
            except (ValueError, json.JSONDecodeError):
                errors[i] = f"{_describe(v)} is not a list (use a JSON array or a|b|c)"
                items = None
            if items and any("\x00" in x for x in items if isinstance(x, str)):
                errors[i] = f"{col.name} contains a NUL character, which PostgreSQL text cannot hold"
                items = None
            if items and col.symbol:
                problems = [(x, rules.symbol_problem(x)) for x in items]
                bad = [(x, p) for x, p in problems if p is not None]
                if bad:
                    x, problem = bad[0]
                    errors[i] = f"{col.name} item {_describe(x)} {problem}: {rules.SYMBOL_RULE_TEXT}"
                    items = None
            values.append(items)
        return pa.array(values, target), errors
    if pa.types.is_boolean(t) and col.kind in NUMERIC_KINDS:  # JSON true is not 1: Arrow would cast it so
        noun = "an integer" if col.kind in ("int", "bigint") else "a number"
        return pa.nulls(len(arr), target), {
            i: f"{_describe(v)} is a boolean, not {noun}" for i, v in enumerate(arr.to_pylist()) if v is not None
        }
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        arr = _blank_to_null(arr)
        t = pa.string()
    if col.kind == "timestamp":
        if pa.types.is_timestamp(t):
            if t.tz is None:
                return pa.nulls(len(arr), target), {
                    i: "naive timestamp (no time zone): store timestamps with an offset"
                    for i, v in enumerate(arr.is_valid().to_pylist())
                    if v
                }
            return pc.cast(arr, target), {}
        if not pa.types.is_string(t):
            return pa.nulls(len(arr), target), {
                i: f"{_describe(v)} is not an ISO 8601 timestamp"
                for i, v in enumerate(arr.to_pylist())
                if v is not None
            }
        return _cast_or_find(arr, target, _timestamp_problem)
    if col.kind in ("price", "money", "float"):
        errors: dict[int, str] = {}
        if pa.types.is_floating(t) or col.kind == "float":
            if not pa.types.is_floating(t):
                arr, errors = _cast_or_find(arr, pa.float64(), _float_problem)
            finite = pc.fill_null(pc.is_finite(arr), True)
            for i in _true_indices(pc.invert(finite)):
                errors[i] = f"{_describe(arr[i].as_py())} is not a finite number (NaN and infinity are not allowed)"
            arr = pc.if_else(finite, arr, pa.scalar(None, arr.type))
        if pa.types.is_integer(t) and pa.types.is_decimal(target):  # JSON/Parquet integers (a price of 10):
            arr = pc.cast(arr, pa.decimal128(38, target.scale))  # Arrow needs room for any int64 first
        check = _float_problem if col.kind == "float" else _decimal_problem(col)
        values, more = _cast_or_find(arr, target, check)
        return values, {**more, **errors}
    if col.kind in ("int", "bigint"):
        return _cast_or_find(arr, target, _int_problem(col))
    if col.kind == "bool":
        if pa.types.is_string(t):
            arr = pc.utf8_lower(arr)
        return _cast_or_find(arr, target, _bool_problem)
    raise AssertionError(f"unhandled kind {col.kind}")


# --- the shared input rules (timeseries/rules.py), vectorised ---------------------------------------

_SYMBOL_RE2 = f"^(?:{rules.SYMBOL_SHAPE})$"  # the length: below
_STORED_MIN = pa.scalar(rules.STORED_MIN, pa.timestamp("us", tz="UTC"))
_STORED_MAX = pa.scalar(rules.STORED_MAX, pa.timestamp("us", tz="UTC"))


def _symbol_errors(values: pa.Array, col: Column) -> dict[int, str]:
    """Rows whose value breaks the symbol rule. Left to the other rules: null, "" (a column's default,
    e.g. a market-wide government event) and, in a required column, blanks ("symbol is required")."""
    refused = pc.or_(
        pc.invert(pc.match_substring_regex(values, _SYMBOL_RE2)),
        pc.greater(pc.utf8_length(values), rules.SYMBOL_MAX_LENGTH),
    )
    blank = pc.utf8_trim_whitespace(values) if col.required else values
    refused = pc.and_(refused, pc.not_equal(blank, ""))
    return {
        i: f"{_describe(values[i].as_py())} {rules.symbol_problem(values[i].as_py())}: {rules.SYMBOL_RULE_TEXT}"
        for i in _true_indices(pc.fill_null(refused, False))
    }


def _outside_stored_range(values) -> pa.Array:
    """Mask of instants outside [STORED_MIN, STORED_MAX) (nulls: False)."""
    outside = pc.or_(pc.less(values, _STORED_MIN), pc.greater_equal(values, _STORED_MAX))
    return pc.fill_null(outside, False)


def _stored_instant_problem(scalar: pa.Scalar) -> str:
    """Why the instant ``scalar`` cannot be stored; one Python cannot hold (before year 1, as
    ``0001-01-01T00:00:00+00:01`` is in UTC) is named by its text."""
    try:
        return rules.instant_problem(scalar.as_py())
    except (OverflowError, ValueError):
        text = pc.strftime(scalar, format="%Y-%m-%dT%H:%M:%SZ").as_py()
        return f"{text} is outside the supported range of stored instants ({rules.STORED_RANGE_TEXT})"


def _instant_text(value) -> str:
    return rules.format_instant(value) if value is not None else "?"


# --- the batch ----------------------------------------------------------------------------------


def check_columns(names: list[str], dataset: Dataset) -> None:
    """File-level rules: every column known, every required column present (``time`` under its input
    name, e.g. ``listed_at``, or as ``time``; not both), one of the resolved columns present."""
    unknown = [n for n in names if n not in dataset.accepted_input_columns]
    if unknown:
        raise InputError(
            f"unknown column(s) {', '.join(map(repr, unknown))} for dataset {dataset.name!r}; "
            f"expected some of: {', '.join(sorted(dataset.accepted_input_columns))}"
        )
    present = set(names)
    if dataset.time_input != "time":
        if {"time", dataset.time_input} <= present:
            raise InputError(
                f"columns 'time' and {dataset.time_input!r} name the same column for dataset {dataset.name!r}: "
                f"give {dataset.time_input!r} only"
            )
        if "time" in present:
            present.add(dataset.time_input)
    missing = [name for name in dataset.input_required_columns if name not in present]
    if missing:
        raise InputError(f"missing required column(s) {', '.join(map(repr, missing))} for dataset {dataset.name!r}")
    if dataset.resolved_columns and not present & set(dataset.resolved_columns):
        raise InputError(
            f"missing column {' or '.join(map(repr, dataset.resolved_columns))} for dataset {dataset.name!r}: "
            "give either (or both)"
        )
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InputError(f"column(s) {', '.join(map(repr, duplicates))} appear more than once")


def input_named(batch: pa.RecordBatch, dataset: Dataset) -> tuple[pa.RecordBatch, str]:
    """``batch`` with the dataset's ``time_input`` column (e.g. ``listed_at``) named ``time``, and the
    name the input gave that column (errors name it so)."""
    if dataset.time_input == "time" or dataset.time_input not in batch.schema.names:
        return batch, "time" if "time" in batch.schema.names else dataset.time_input
    names = ["time" if n == dataset.time_input else n for n in batch.schema.names]
    return batch.rename_columns(names), dataset.time_input  # a RecordBatch or (the write API's) a Table


def _resolver(dataset: Dataset):
    """The dataset's ``resolve`` function (timeseries.securities, by name), or None."""
    return getattr(securities, dataset.resolve) if dataset.resolve else None


def prepare_batch(batch: pa.RecordBatch, *, dataset: Dataset, ctx: CheckContext, row_offset: int) -> Prepared:
    n = batch.num_rows
    raw_batch = batch
    batch, time_name = input_named(batch, dataset)
    names = batch.schema.names
    errors: dict[int, list[tuple[str, str]]] = {}

    def add(i: int, column: str, message: str) -> None:
        errors.setdefault(i, []).append((column, message))

    columns: dict[str, pa.Array] = {}
    for col in dataset.columns:
        if col.name == dataset.id_column and col.name not in names:
            columns[col.name] = dataset.derive_ids(batch)
            continue
        if col.name not in names:
            columns[col.name] = pa.array([col.default] * n, col.arrow_type)
            continue
        values, bad = convert_column(batch.column(col.name), col)
        for i, message in bad.items():
            add(i, col.name, message)
        if col.default is not None:
            values = pc.fill_null(values, pa.scalar(col.default, col.arrow_type))
        columns[col.name] = values
    resolve = _resolver(dataset)
    if resolve is not None:
        filled, problems = resolve(columns, set(errors))
        columns.update(filled)
        for i, column, message in problems:
            add(i, column, message)
    for col in dataset.columns:
        if col.required:
            values = columns[col.name]
            missing = pc.is_null(values)
            if col.kind == "text":
                missing = pc.or_(missing, pc.fill_null(pc.equal(pc.utf8_trim_whitespace(values), ""), False))
            for i in _true_indices(missing):
                if col.name in dataset.resolved_columns and i in errors:
                    continue  # the resolution said why (or the row is bad already)
                if i not in errors or all(c != col.name for c, _ in errors[i]):
                    add(i, col.name, f"{col.name} is required")
    table = pa.table(columns)

    outside_rows: set[int] = set()  # rows with a given instant outside the stored range
    for name in dataset.timestamp_columns:
        values = table.column(name)
        for i in _true_indices(_outside_stored_range(values)):
            outside_rows.add(i)
            add(i, name, _stored_instant_problem(values[i]))

    ctx_table = table
    default_known = dataset.default_known_at(ctx_table, ctx)
    given_known = None
    if "known_at" in names:
        given_known, bad = convert_column(batch.column("known_at"), Column("known_at", "timestamp"))
        for i, message in bad.items():
            add(i, "known_at", message)
        known = pc.coalesce(given_known, default_known)
    else:
        known = default_known
    derived = pc.is_null(given_known) if given_known is not None else pa.array([True] * n)
    for i in _true_indices(_outside_stored_range(known)):
        if not derived[i].as_py():
            outside_rows.add(i)
            add(i, "known_at", _stored_instant_problem(known[i]))
        elif i not in outside_rows:  # derived from an instant in range, but the rule pushes it out
            source = dataset.known_at_from
            add(
                i,
                "known_at",
                f"{dataset.input_name(source)} {_instant_text(table.column(source)[i].as_py())} gives known_at "
                f"{_instant_text(known[i].as_py())} (derived: {dataset.known_at_rule}), outside the "
                f"supported range of stored instants ({rules.STORED_RANGE_TEXT})",
            )
    table = table.append_column("known_at", known)
    too_early = pc.fill_null(pc.less(known, dataset.min_known_at(table, ctx)), False)
    for i in _true_indices(too_early):
        add(i, "known_at", f"known_at is earlier than this dataset allows ({dataset.known_at_rule})")
    for check in dataset.checks:
        for i in _true_indices(check.failing(table, ctx)):
            add(i, check.column, check.message)

    table = _numbered(table, row_offset)
    row_errors: list[RowError] = []
    if errors:
        raw_rows = raw_batch.take(pa.array(sorted(errors))).to_pylist()
        for (i, problems), raw in zip(sorted(errors.items()), raw_rows):
            raw = {k: jsonable(v) for k, v in raw.items()}
            for column, message in problems:
                if column == "time" and time_name != "time":  # named as the input names it (listed_at)
                    column, message = time_name, _renamed(message, time_name)
                row_errors.append(RowError(row_offset + i + 1, column, message, raw))
        keep = pa.array([i not in errors for i in range(n)])
        table = table.filter(keep)
    return Prepared(table=table, errors=row_errors, rows_read=n)


def _renamed(message: str, name: str) -> str:
    """A message about ``time`` naming the column as the input did (``listed_at is required``)."""
    return name + message[4:] if message.startswith("time ") else message


def _numbered(table: pa.Table, row_offset: int) -> pa.Table:
    """``table`` with ``row_no``: each row's 1-based number in the whole input."""
    return table.append_column("row_no", pa.array(range(row_offset + 1, row_offset + table.num_rows + 1), pa.int64()))


def prepared_as_is(batch: pa.RecordBatch, *, row_offset: int) -> Prepared:
    """Rows ``prepare_batch`` already made (its table without ``row_no``), numbered again from
    ``row_offset``: nothing is converted or checked."""
    return Prepared(table=_numbered(pa.Table.from_batches([batch]), row_offset), errors=[], rows_read=batch.num_rows)


def _true_indices(mask) -> list[int]:
    if isinstance(mask, pa.ChunkedArray):
        mask = mask.combine_chunks()
    if not pc.any(mask).as_py():
        return []
    return pc.indices_nonzero(mask).to_pylist()


def jsonable(v: Any) -> Any:
    """``v`` as JSONB can keep it (raw values of quarantined rows): a NUL character, which JSONB
    refuses, is written out as the six characters \\u0000."""
    if isinstance(v, str):
        return v.replace("\x00", "\\u0000")
    if v is None or isinstance(v, (str, int, float, bool)):
        if isinstance(v, float) and not math.isfinite(v):
            return str(v)
        return v
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return str(v)

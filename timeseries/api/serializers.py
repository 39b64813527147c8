"""Input validation and output description for the read API.

* Query serializers validate the parameters of the point-in-time endpoints (``at``, ``recorded_by``,
  ``symbols``, ``limit`` …); every error names its parameter.
* Row serializers, built from ``datasets.py``, describe the rows in the OpenAPI schema. Rows
  themselves are rendered straight from the selectors' plain dicts by ``renderers`` (one code path for
  JSON, CSV, Parquet and Arrow; no per-row serializer overhead on a 10,000-row page).
* ``points_table`` turns an as-of-join body (JSON array, CSV, Parquet or Arrow) into a validated Arrow
  table for ``pit.asof_join``.
"""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import ValidationError

from timeseries import params
from timeseries.datasets import DATASETS, Dataset
from timeseries.params import MAX_LIST_ITEMS, ParameterError
from timeseries.rules import MAX_INSTANT, MIN_INSTANT, RANGE_TEXT, SYMBOL_MAX_LENGTH, SYMBOL_SHAPE, symbol_message

MAX_LIMIT = 10_000
UTC_MICROS = pa.timestamp("us", tz="UTC")


# --- query parameters -----------------------------------------------------------------------------


@extend_schema_field(OpenApiTypes.DATETIME)
class InstantField(serializers.Field):
    """ISO 8601 with an offset, e.g. 2024-03-01T15:30:00Z; naive or malformed -> 400 naming the field."""

    def _required(self) -> ValidationError:
        return ValidationError(
            f"{self.field_name} is required: an ISO 8601 instant with offset, e.g. 2024-03-01T15:30:00Z"
        )

    def run_validation(self, data=serializers.empty):
        if data is serializers.empty and self.required:
            raise self._required()
        return super().run_validation(data)

    def to_internal_value(self, data):
        text = data if isinstance(data, str) else str(data)
        if not text.strip():
            if self.required:
                raise self._required()
            return None
        try:
            return params.instant(self.field_name, text, **params.API_INSTANT)
        except ParameterError as exc:
            raise ValidationError(str(exc)) from None

    def to_representation(self, value):
        return value


@extend_schema_field({"type": "string", "description": "comma-separated"})
class CommaListField(serializers.Field):
    """``A,B,C`` -> ["A", "B", "C"] (blank items dropped, duplicates removed); empty -> None."""

    def to_internal_value(self, data):
        try:
            return params.text_list(self.field_name, data if isinstance(data, str) else str(data))
        except ParameterError as exc:
            raise ValidationError([str(exc)]) from None

    def to_representation(self, value):
        return ",".join(value or [])


class SymbolListField(CommaListField):
    """Comma-separated symbols, each obeying the symbol rule (timeseries/rules.py)."""

    def to_internal_value(self, data):
        try:
            return params.symbols(self.field_name, data if isinstance(data, str) else str(data))
        except ParameterError as exc:
            raise ValidationError([str(exc)]) from None


def _limit_field(default: int) -> serializers.IntegerField:
    return serializers.IntegerField(
        required=False,
        default=default,
        min_value=1,
        max_value=MAX_LIMIT,
        help_text=f"At most this many rows (default {default}, at most {MAX_LIMIT}).",
    )


class PitQuery(serializers.Serializer):
    at = InstantField(help_text="The instant T: what was knowable then (ISO 8601 with offset).")
    recorded_by = InstantField(
        required=False,
        allow_null=True,
        help_text="Replay what tsm had recorded by this instant (default: everything recorded).",
    )
    symbols = SymbolListField(
        required=False, allow_null=True, help_text=f"Comma-separated symbols (at most {MAX_LIST_ITEMS})."
    )


@extend_schema_field(OpenApiTypes.FLOAT)
class MinQualityField(serializers.Field):
    """``min_quality``: a number in [0, 1]; rows scored below it are left out (unscored rows are kept)."""

    def to_internal_value(self, data):
        try:
            return params.min_quality_check(data)
        except ParameterError as exc:
            raise ValidationError(str(exc)) from None

    def to_representation(self, value):
        return value


def _min_quality_field() -> MinQualityField:
    return MinQualityField(
        required=False,
        allow_null=True,
        help_text="Leave out rows whose quality score (as it stood at recorded_by) is below this number in [0, 1]; "
        "unscored rows are kept. The latest bar is then the latest good bar.",
    )


class StateQuery(PitQuery):
    min_quality = _min_quality_field()


class SentimentQuery(PitQuery):
    platforms = CommaListField(required=False, allow_null=True, help_text="Comma-separated platforms (default all).")


class NewsQuery(PitQuery):
    limit = _limit_field(1000)
    min_quality = _min_quality_field()


class InsiderQuery(PitQuery):
    limit = _limit_field(500)


class CorporateActionsQuery(PitQuery):
    limit = _limit_field(1000)


class GovernmentQuery(PitQuery):
    sectors = CommaListField(
        required=False,
        allow_null=True,
        help_text="Comma-separated sectors (an event matching a symbol or a sector is returned).",
    )
    limit = _limit_field(1000)


class ReconstructQuery(serializers.Serializer):
    at = InstantField(help_text="The instant T (ISO 8601 with offset).")
    recorded_by = InstantField(
        required=False, allow_null=True, help_text="Replay what tsm had recorded by this instant."
    )
    bars = serializers.IntegerField(
        required=False, default=200, min_value=1, max_value=5000, help_text="Bars used for the indicators."
    )
    min_quality = _min_quality_field()


class AsofJoinQuery(serializers.Serializer):
    # the latest row of a series at each point's time: datasets whose key has time (a security's
    # versions are not a time series: pit.securities answers what was known of it at T)
    dataset = serializers.ChoiceField(
        choices=[name for name, spec in DATASETS.items() if spec.time_keyed], default="market_data", required=False
    )
    recorded_by = InstantField(
        required=False, allow_null=True, help_text="Replay what tsm had recorded by this instant."
    )
    min_quality = _min_quality_field()

    def validate(self, attrs):
        dataset = attrs.get("dataset") or "market_data"
        if attrs.get("min_quality") is not None and not DATASETS[dataset].curated:
            raise ValidationError({"min_quality": [f"min_quality: {dataset} has no quality_score"]})
        return attrs


def check_symbol(symbol: str) -> str:
    """A symbol in a URL path: the symbol rule (timeseries/rules.py), else 400 naming ``symbol``."""
    try:
        return params.symbol("symbol", symbol)
    except ParameterError as exc:
        raise ValidationError({"symbol": [str(exc)]}) from None


# --- rows (for the schema) ------------------------------------------------------------------------

_FIELD_FOR_KIND = {
    "timestamp": lambda: serializers.DateTimeField(),
    "price": lambda: serializers.DecimalField(max_digits=18, decimal_places=6),
    "money": lambda: serializers.DecimalField(max_digits=24, decimal_places=2),
    "float": lambda: serializers.FloatField(),
    "int": lambda: serializers.IntegerField(),
    "bigint": lambda: serializers.IntegerField(),
    "text": lambda: serializers.CharField(),
    "bool": lambda: serializers.BooleanField(),
    "text[]": lambda: serializers.ListField(child=serializers.CharField()),
}


def _field(kind: str, *, nullable: bool, help_text: str = ""):
    field = _FIELD_FOR_KIND[kind]()
    field.read_only = True
    field.allow_null = nullable
    if help_text:
        field.help_text = help_text
    return field


def row_serializer(
    spec: Dataset, *, name: str, columns: list[tuple[str, str]] | None = None, nullable_all: bool = False
) -> type[serializers.Serializer]:
    """A read-only serializer describing rows of ``spec`` (or the given (name, kind) columns)."""
    if columns is None:
        columns = [(c.name, c.kind) for c in spec.columns] + [("known_at", "timestamp"), ("recorded_at", "timestamp")]
    helps = {
        "time": "event time",
        "known_at": "when a market participant could first have known the row",
        "recorded_at": "when tsm committed this version",
    }
    attrs = {}
    for column, kind in columns:
        if column in ("id", "at", "known_at", "recorded_at") or column in spec.series:
            nullable = column in ("known_at", "recorded_at") and nullable_all
        elif column in spec.column_names:
            declared = spec.column(column)
            nullable = nullable_all or declared.is_nullable
        else:
            nullable = True
        attrs[column] = _field(kind, nullable=nullable, help_text=helps.get(column, ""))
    return type(name, (serializers.Serializer,), attrs)


def envelope_serializer(name: str, results) -> type[serializers.Serializer]:
    """``{"at", "recorded_by", "max_recorded_at", "results"}``: every PIT answer states what it depends on."""
    attrs = {
        "at": serializers.DateTimeField(allow_null=True, help_text="The instant T of the answer."),
        "recorded_by": serializers.DateTimeField(allow_null=True, help_text="The system-time bound S, if any."),
        "max_recorded_at": serializers.DateTimeField(
            allow_null=True,
            help_text="Newest recorded_at among the rows: pass it as recorded_by to replay this answer.",
        ),
        "results": results,
    }
    return type(name, (serializers.Serializer,), attrs)


# --- as-of join points ----------------------------------------------------------------------------


def _error(message: str) -> ValidationError:
    return ValidationError({"points": [message]})


def _times(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """A time column -> timestamp[us, UTC]; strings must carry an offset, naive timestamps are refused."""
    times = _parse_times(column)
    if times.null_count:
        first = times.is_null().to_pylist().index(True)
        raise _error(f"point {first + 1}: time is missing")
    if len(times):
        bounds = pc.min_max(times)
        low = pc.less(bounds["min"], pa.scalar(MIN_INSTANT, UTC_MICROS)).as_py()
        high = pc.greater_equal(bounds["max"], pa.scalar(MAX_INSTANT, UTC_MICROS)).as_py()
        if low or high:
            raise _error(f"time values must be {RANGE_TEXT}")
    return times


def _parse_times(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_timestamp(column.type):
        if column.type.tz is None:
            raise _error("time is a naive timestamp column: store timestamps with a time zone (UTC)")
        if column.type.unit == "ns":
            # truncated: stored instants have microsecond precision, so a point at t + 0.5us knows
            # exactly what a point at t knows (and nanoseconds cannot overflow microseconds)
            return column.cast(UTC_MICROS, safe=False)
        try:
            return column.cast(UTC_MICROS)
        except pa.ArrowInvalid:
            raise _error(f"time values must be {RANGE_TEXT}") from None
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        raise _error(f"time must be ISO 8601 text or a timestamp column, not {column.type}")
    try:
        return pc.cast(column, UTC_MICROS)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    # slow path: Python's parser (a superset of Arrow's), and the first bad value named exactly
    values = []
    for i, text in enumerate(column.to_pylist()):
        if text is None:
            raise _error(f"point {i + 1}: time is missing")
        try:
            values.append(params.instant("time", text, **params.API_INSTANT))
        except ParameterError as exc:
            raise _error(f"point {i + 1}: {exc}") from None
    return pa.array(values, UTC_MICROS)


def _texts(name: str, column: pa.ChunkedArray | pa.Array) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        raise _error(f"{name} must be text, not {column.type}")
    column = column.cast(pa.string())
    if column.null_count:
        first = column.is_null().to_pylist().index(True)
        raise _error(f"point {first + 1}: {name} is missing")
    if len(column) and pc.any(pc.match_substring(column, "\x00")).as_py():
        raise _error(f"{name} must not contain a NUL character")
    return column


def points_table(data, *, spec: Dataset, max_points: int) -> pa.Table:
    """A parsed body -> Arrow table (series columns as text, ``time`` as timestamp[us, UTC])."""
    needed = [*spec.series, "time"]
    if isinstance(data, list):
        table = _json_points(data, needed)
    elif isinstance(data, pa.Table):
        table = data
    else:
        raise _error("expected a JSON array of points, or a CSV, Parquet or Arrow table")
    duplicated = sorted({c for c in table.column_names if table.column_names.count(c) > 1} & set(needed))
    if duplicated:
        raise _error(f"column {duplicated[0]} appears more than once")
    missing = [c for c in needed if c not in table.column_names]
    if missing:
        raise _error(f"each point needs {', '.join(needed)}: missing {', '.join(missing)}")
    if table.num_rows > max_points:
        raise _error(f"at most {max_points} points per request (got {table.num_rows})")
    columns = [_texts(c, table.column(c)) for c in spec.series] + [_times(table.column("time"))]
    _symbols_check(spec.symbol_column, columns[spec.series.index(spec.symbol_column)])
    return pa.table(columns, names=needed)


def _symbols_check(name: str, column: pa.Array) -> None:
    """Every point's symbol obeys the symbol rule (timeseries/rules.py); else 400 naming the first."""
    refused = pc.or_(
        pc.invert(pc.match_substring_regex(column, f"^(?:{SYMBOL_SHAPE})$")),
        pc.greater(pc.utf8_length(column), SYMBOL_MAX_LENGTH),
    )
    if len(column) and pc.any(refused).as_py():
        first = refused.to_pylist().index(True)
        raise _error(f"point {first + 1}: {symbol_message(name, column[first].as_py())}")


def _json_points(data: list, needed: list[str]) -> pa.Table:
    columns: dict[str, list] = {c: [] for c in needed}
    for i, point in enumerate(data):
        if not isinstance(point, dict):
            raise _error(f"point {i + 1}: expected an object with {', '.join(needed)}")
        for c in needed:
            value = point.get(c)
            if not isinstance(value, str):
                problem = "is missing" if value is None else f"must be a string, not {type(value).__name__}"
                raise _error(f"point {i + 1}: {c} {problem}")
            columns[c].append(value)
    return pa.table({c: pa.array(v, pa.string()) for c, v in columns.items()})


def points_digest_source(table: pa.Table) -> bytes:
    """Bytes identifying a points table (for cache keys of small joins)."""
    sink = io.BytesIO()
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()

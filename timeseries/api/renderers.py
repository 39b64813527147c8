"""Wire formats of the read API: JSON, CSV, Parquet and Arrow IPC out; JSON, CSV, Parquet and Arrow in.

Views answer with a :class:`TableResponse`: plain rows (dicts of Python values: aware datetimes,
``Decimal``, lists) plus the column declaration (name, kind from ``datasets.KINDS``) and the
point-in-time facts (``at``, ``recorded_by``, ``max_recorded_at``). Every renderer states those facts:
JSON in an envelope, the tabular formats in ``X-TSM-*`` headers (and in the Arrow schema metadata).

* JSON: timestamps ISO 8601 UTC, exact decimals as strings (``formats.plain``), non-finite floats as
  null (JSON has no NaN).
* CSV: ``formats.to_csv`` (lists as JSON arrays, empty cell for null).
* Parquet / Arrow IPC stream: real ``timestamp[us, UTC]`` and ``decimal128`` columns, typed from the
  dataset declaration, so a client never re-parses strings.

Error responses are always JSON (see ``views.ApiView.finalize_response``).
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
from rest_framework import renderers
from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import BaseParser, JSONParser
from rest_framework.response import Response

from timeseries import textrules
from timeseries.datasets import KINDS
from timeseries.formats import iso, plain, to_csv

Columns = Sequence[tuple[str, str]]  # (name, kind) with kind a key of datasets.KINDS

PARQUET_MEDIA_TYPE = "application/vnd.apache.parquet"
ARROW_MEDIA_TYPE = "application/vnd.apache.arrow.stream"
HEADER_AT = "X-TSM-At"
HEADER_RECORDED_BY = "X-TSM-Recorded-By"
HEADER_MAX_RECORDED_AT = "X-TSM-Max-Recorded-At"


def _iso_or_empty(value: datetime | None) -> str:
    return iso(value) if value is not None else ""


def max_recorded_at(rows: Iterable[dict] | pa.Table) -> datetime | None:
    """The newest ``recorded_at`` among ``rows`` (None when there is none)."""
    if isinstance(rows, pa.Table):
        return pc.max(rows.column("recorded_at")).as_py() if rows.num_rows else None
    return max((r["recorded_at"] for r in rows if r.get("recorded_at") is not None), default=None)


class TableResponse(Response):
    """An answer that depends on ``at``: rows + column kinds + the facts needed to replay it."""

    def __init__(
        self,
        results: Any,
        *,
        columns: Columns | None,
        at: datetime | None,
        recorded_by: datetime | None,
        max_recorded: datetime | None,
        links: dict[str, str | None] | None = None,
    ):
        data = {
            "at": at,
            "recorded_by": recorded_by,
            "max_recorded_at": max_recorded,
            **(links or {}),
            "results": results,
        }
        super().__init__(data)
        self.columns = list(columns) if columns is not None else None
        self.links = links or {}
        self[HEADER_AT] = _iso_or_empty(at)
        self[HEADER_RECORDED_BY] = _iso_or_empty(recorded_by)
        self[HEADER_MAX_RECORDED_AT] = _iso_or_empty(max_recorded)
        link = ", ".join(
            f'<{url}>; rel="{"prev" if rel == "previous" else rel}"' for rel, url in self.links.items() if url
        )
        if link:
            self["Link"] = link


def json_ready(value: Any) -> Any:
    """``formats.plain`` plus: non-finite floats become None (JSON has no NaN or infinity)."""
    value = plain(value)
    return _finite(value)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _finite_float(value: float) -> float | None:
    return value if math.isfinite(value) else None


# per column kind, the conversion a JSON value needs (other kinds are JSON-ready as they are)
_JSON_CONVERTERS = {
    "timestamp": iso,
    "price": lambda d: format(d, "f"),
    "money": lambda d: format(d, "f"),
    "float": _finite_float,
}


def json_rows(rows: list[dict], columns: Columns) -> list[dict]:
    """``json_ready`` for rows whose column kinds are known: converts only the columns that need it."""
    converters = [(name, _JSON_CONVERTERS[kind]) for name, kind in columns if kind in _JSON_CONVERTERS]
    out = []
    for row in rows:
        row = dict(row)
        for name, convert in converters:
            value = row.get(name)
            if value is not None:
                row[name] = convert(value)
        out.append(row)
    return out


class JSONRenderer(renderers.JSONRenderer):
    """DRF's JSON renderer over ``json_ready`` data (ISO 8601 UTC, decimals as strings)."""

    def render(self, data, accepted_media_type=None, renderer_context=None):
        response = (renderer_context or {}).get("response")
        columns = getattr(response, "columns", None)
        if columns is not None and isinstance(data, dict) and isinstance(data.get("results"), list):
            data = {k: (json_rows(v, columns) if k == "results" else json_ready(v)) for k, v in data.items()}
        else:
            data = json_ready(data)
        return super().render(data, accepted_media_type, renderer_context)


class _TabularRenderer(renderers.BaseRenderer):
    """Renders ``data["results"]`` of a TableResponse; anything else is a programming error."""

    def _table(self, data, renderer_context) -> tuple[list[dict], Columns, dict]:
        response = (renderer_context or {}).get("response")
        columns = getattr(response, "columns", None)
        if columns is None or not isinstance(data, dict) or not isinstance(data.get("results"), (list, pa.Table)):
            raise TypeError(f"{type(self).__name__} renders tables only")
        meta = {
            "tsm.at": _iso_or_empty(data.get("at")),
            "tsm.recorded_by": _iso_or_empty(data.get("recorded_by")),
            "tsm.max_recorded_at": _iso_or_empty(data.get("max_recorded_at")),
        }
        for rel in ("next", "previous"):
            if data.get(rel):
                meta[f"tsm.{rel}"] = data[rel]
        return data["results"], columns, meta


class CSVRenderer(_TabularRenderer):
    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        rows, columns, _ = self._table(data, renderer_context)
        return to_csv(rows, [name for name, _ in columns]).encode("utf-8")


def arrow_table(rows: list[dict] | pa.Table, columns: Columns, metadata: dict[str, str] | None = None) -> pa.Table:
    """Rows (or an Arrow table already) -> an Arrow table typed from the column kinds.

    Timestamps are UTC, decimals exact.
    """
    fields = [pa.field(name, KINDS[kind][0]) for name, kind in columns]
    if isinstance(rows, pa.Table):
        arrays = [rows.column(f.name).cast(f.type) for f in fields]
        return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=metadata))
    arrays = [pa.array([r.get(f.name) for r in rows], type=f.type) for f in fields]
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=metadata))


class ParquetRenderer(_TabularRenderer):
    media_type = PARQUET_MEDIA_TYPE
    format = "parquet"
    charset = None
    render_style = "binary"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        rows, columns, meta = self._table(data, renderer_context)
        sink = io.BytesIO()
        pq.write_table(arrow_table(rows, columns, meta), sink, compression="zstd")
        return sink.getvalue()


class ArrowRenderer(_TabularRenderer):
    media_type = ARROW_MEDIA_TYPE
    format = "arrow"
    charset = None
    render_style = "binary"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        rows, columns, meta = self._table(data, renderer_context)
        table = arrow_table(rows, columns, meta)
        sink = io.BytesIO()
        with ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return sink.getvalue()


TABULAR_RENDERERS = [JSONRenderer, CSVRenderer, ParquetRenderer, ArrowRenderer, renderers.BrowsableAPIRenderer]
JSON_RENDERERS = [JSONRenderer, renderers.BrowsableAPIRenderer]


class ContentNegotiation(DefaultContentNegotiation):
    """DRF's negotiation, but an unknown ``?format=`` is a 400 naming the parameter (DRF says 404)."""

    def filter_renderers(self, renderers, format):
        found = [r for r in renderers if r.format == format]
        if not found:
            offered = ", ".join(r.format for r in renderers if r.format != "api")
            raise ValidationError({"format": [f"format={format!r} is not available here: expected one of {offered}"]})
        return found


# --- request bodies: tables of decision points ------------------------------------------------------


class PointsJSONParser(JSONParser):
    """DRF's JSON parser, refusing strings no table can hold (a lone UTF-16 surrogate such as
    ``"\\ud800"``) with a 400 naming the point and the field."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - the body nests too deeply") from None
        rows = data if isinstance(data, list) else [data]
        for number, field in textrules.lone_surrogates(rows):
            where = f"point {number}: {field}" if field else f"point {number}"
            raise ParseError({"points": [f"{where} holds a lone UTF-16 surrogate, which is not a character"]})
        return data


class _TableParser(BaseParser):
    """Parse a body into a ``pyarrow.Table`` (validated later against the dataset's series)."""

    label = ""

    def parse(self, stream, media_type=None, parser_context=None):
        data = stream.read() if stream is not None else b""
        if not data:
            raise ParseError(f"the {self.label} body is empty")
        try:
            return self.read(data)
        except (pa.ArrowException, OSError, ValueError, UnicodeDecodeError) as exc:
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ParseError(f"cannot read the {self.label} body: {text}") from None

    def read(self, data: bytes) -> pa.Table:  # pragma: no cover - abstract
        raise NotImplementedError


class CSVParser(_TableParser):
    """CSV with a header row; every column is read as text (times are validated with their offset)."""

    media_type = "text/csv"
    label = "CSV"

    def read(self, data: bytes) -> pa.Table:
        header = data.split(b"\n", 1)[0].decode("utf-8-sig").rstrip("\r")
        import csv

        names = [n.strip() for n in next(csv.reader([header]), [])]
        table = pcsv.read_csv(
            io.BytesIO(data),
            convert_options=pcsv.ConvertOptions(column_types={n: pa.string() for n in names}),
        )
        return table.rename_columns([n.strip() for n in table.column_names])


class ParquetParser(_TableParser):
    media_type = PARQUET_MEDIA_TYPE
    label = "Parquet"

    def read(self, data: bytes) -> pa.Table:
        return pq.read_table(io.BytesIO(data))


class LegacyParquetParser(ParquetParser):
    media_type = "application/x-parquet"


class ArrowParser(_TableParser):
    media_type = ARROW_MEDIA_TYPE
    label = "Arrow IPC"

    def read(self, data: bytes) -> pa.Table:
        return ipc.open_stream(pa.py_buffer(data)).read_all()


class ArrowFileParser(_TableParser):
    media_type = "application/vnd.apache.arrow.file"
    label = "Arrow IPC file"

    def read(self, data: bytes) -> pa.Table:
        return ipc.open_file(pa.py_buffer(data)).read_all()


# the response format a body format answers in, when the client does not ask for one
FORMAT_FOR_CONTENT_TYPE = {
    "application/json": "json",
    "text/csv": "csv",
    PARQUET_MEDIA_TYPE: "parquet",
    "application/x-parquet": "parquet",
    ARROW_MEDIA_TYPE: "arrow",
    "application/vnd.apache.arrow.file": "arrow",
}

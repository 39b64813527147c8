"""Filtering, ``as_of`` and keyset (cursor) pagination for the dataset listings.

One django-filter ``FilterSet`` per dataset, derived from its declaration in ``datasets.py``: every
dataset gets ``symbols`` (comma list; ``symbol`` is an alias), event-time, knowledge-time and
system-time ranges and ``as_of`` / ``recorded_by``; the few dataset-specific filters name a column
(``Dataset.api_filters``), and the column's kind (text, text[], float, timestamp) decides the filter.
Every value is read by ``timeseries.params`` (the pages, the admin and the commands use it too).

Every value that cannot be parsed is a 400 whose message names the parameter; text values with a NUL
byte are refused (PostgreSQL text cannot hold one).

``as_of=T[&recorded_by=S]`` keeps the versions that are current as of T as recorded by S, with the
same anti-join as ``pit._sql.is_current`` written with the ORM: ``known_at <= T``, ``recorded_at <= S``
and no version of the same key with a greater (known_at, recorded_at) that is also known by T / S.

Pagination is a true keyset over the ordering's columns, which are either the dataset's version
index (key + known_at + recorded_at, unique) or an indexed column + ``id``: page N costs what page 1
costs (a row-value comparison ``(a, b, c) > (x, y, z)`` seeks on the index; no COUNT, no OFFSET).
DRF's own CursorPagination only keys on the first ordering column and adds an offset for ties,
which degrades on (symbol, time) orderings with millions of rows per symbol.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

import django_filters
from django import forms
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Exists, F, Func, OuterRef, Q, Value
from django.db.models.lookups import GreaterThan, LessThan
from rest_framework import exceptions
from rest_framework.pagination import BasePagination
from rest_framework.utils.urls import remove_query_param, replace_query_param

from timeseries import params
from timeseries.datasets import DATASETS, Dataset
from timeseries.formats import iso
from timeseries.params import ParameterError
from timeseries.rules import END_OF_TIME


def _invalid(exc: ParameterError) -> ValidationError:
    return ValidationError(str(exc), code="invalid")


# --- form fields and filters ----------------------------------------------------------------------


class ParamField(forms.Field):
    """A form field that knows the query parameter it reads, so its errors can name it."""

    def __init__(self, *, param: str, **kwargs):
        self.param = param
        super().__init__(**kwargs)


class InstantField(ParamField):
    def to_python(self, value):
        if value in self.empty_values or not str(value).strip():
            return None
        try:
            return params.instant(self.param, str(value), **params.API_INSTANT)
        except ParameterError as exc:
            raise _invalid(exc) from None


class ListField(ParamField):
    def to_python(self, value):
        if value in self.empty_values:
            return None
        try:
            return params.text_list(self.param, str(value))
        except ParameterError as exc:
            raise _invalid(exc) from None


class SymbolListField(ParamField):
    def to_python(self, value):
        if value in self.empty_values:
            return None
        try:
            return params.symbols(self.param, str(value))
        except ParameterError as exc:
            raise _invalid(exc) from None


class FiniteFloatField(ParamField):
    def to_python(self, value):
        if value in self.empty_values or not str(value).strip():
            return None
        try:
            return params.finite_float(self.param, str(value))
        except ParameterError as exc:
            raise _invalid(exc) from None


class MinQualityField(forms.Field):
    """``min_quality``: a number in [0, 1] (the error names the parameter)."""

    def to_python(self, value):
        try:
            return params.min_quality_check(value)
        except ParameterError as exc:
            raise _invalid(exc) from None


class MinQualityFilter(django_filters.NumberFilter):
    """Rows whose current quality_score is NULL (not scored) or >= the value."""

    field_class = MinQualityField

    def filter(self, qs, value):
        if value is None:
            return qs
        return qs.filter(Q(quality_score__isnull=True) | Q(quality_score__gte=value))


class InstantFilter(django_filters.IsoDateTimeFilter):
    """An ISO 8601 instant with an offset (naive or malformed: 400 naming the parameter)."""

    field_class = InstantField


class ListFilter(django_filters.CharFilter):
    """A comma-separated list of values (``IN``; ``overlap`` for array columns)."""

    field_class = ListField


class SymbolListFilter(ListFilter):
    """A comma-separated list of symbols, each obeying the symbol rule."""

    field_class = SymbolListField


class FloatFilter(django_filters.NumberFilter):
    field_class = FiniteFloatField


class ListingForm(forms.Form):
    def clean(self):
        data = super().clean()
        if data.get("recorded_by") is not None and data.get("as_of") is None:
            self.add_error(
                "recorded_by", "recorded_by needs as_of: give the instant T to replay (as_of=T&recorded_by=S)"
            )
        return data


# --- as of T, as recorded by S --------------------------------------------------------------------


class Row(Func):
    """A row value ``(a, b, ...)`` for row-wise comparison (the b-tree compares it column by column)."""

    template = "(%(expressions)s)"
    arg_joiner = ", "
    output_field = models.Field()


class ProbeExists(Exists):
    """``EXISTS (… OFFSET 0)``: the OFFSET keeps PostgreSQL from turning the correlated subquery into a
    join. As a join, the planner may merge-anti-join against a scan of the version index from its
    start, which grows with the page number; kept as a subplan it is one index probe per row, so a
    deep page costs what the first page costs."""

    template = "EXISTS(%(subquery)s OFFSET 0)"


def current_versions(queryset, *, spec: Dataset, at: datetime, recorded_by: datetime | None = None):
    """Restrict ``queryset`` to the versions current as of ``at`` as recorded by ``recorded_by``."""
    model = queryset.model
    rb = recorded_by or END_OF_TIME
    newer = model.objects.filter(
        GreaterThan(Row(F("known_at"), F("recorded_at")), Row(OuterRef("known_at"), OuterRef("recorded_at"))),
        known_at__lte=at,
        recorded_at__lte=rb,
        **{k: OuterRef(k) for k in spec.key},
    )
    bound = {"time__lte": at} if spec.known_after_time else {}  # only bounds the scan (timeseries/pit/_sql.py)
    return queryset.filter(~ProbeExists(newer), known_at__lte=at, recorded_at__lte=rb, **bound)


# --- one FilterSet per dataset --------------------------------------------------------------------


class DatasetFilterSet(django_filters.FilterSet):
    spec: Dataset

    as_of = InstantFilter(
        method="filter_as_of",
        param="as_of",
        help_text="Only the versions current as of this instant (ISO 8601 with offset): the truth at T.",
    )
    recorded_by = InstantFilter(
        method="filter_as_of",
        param="recorded_by",
        help_text="With as_of: replay what tsm had recorded by this instant (ISO 8601 with offset).",
    )

    def filter_as_of(self, queryset, name, value: datetime):
        return queryset  # applied last, in filter_queryset, with both instants

    def filter_queryset(self, queryset):
        queryset = super().filter_queryset(queryset)
        at = self.form.cleaned_data.get("as_of")
        if at is not None:
            queryset = current_versions(
                queryset, spec=self.spec, at=at, recorded_by=self.form.cleaned_data.get("recorded_by")
            )
        return queryset

    @property
    def as_of_bounds(self) -> tuple[datetime | None, datetime | None]:
        data = self.form.cleaned_data
        return data.get("as_of"), data.get("recorded_by")


def _range(filters: dict, param: str, column: str, kind: str, what: str) -> None:
    if kind == "timestamp":
        filters[f"{param}_after"] = InstantFilter(
            field_name=column,
            lookup_expr="gte",
            param=f"{param}_after",
            help_text=f"{what} >= this instant (inclusive).",
        )
        filters[f"{param}_before"] = InstantFilter(
            field_name=column,
            lookup_expr="lte",
            param=f"{param}_before",
            help_text=f"{what} <= this instant (inclusive).",
        )
    elif kind == "float":
        filters[f"{param}_min"] = FloatFilter(
            field_name=column, lookup_expr="gte", param=f"{param}_min", help_text=f"{column} >= this number."
        )
        filters[f"{param}_max"] = FloatFilter(
            field_name=column, lookup_expr="lte", param=f"{param}_max", help_text=f"{column} <= this number."
        )
    else:  # pragma: no cover - a declaration error
        raise TypeError(f"no range filter for kind {kind!r}")


def _symbols_any(spec: Dataset):
    """A filter method: the symbol column or one of the symbols in ``spec.symbols_array`` matches."""

    def method(queryset, name, value: str):
        return queryset.filter(
            Q(**{f"{spec.symbol_column}__in": value}) | Q(**{f"{spec.symbols_array}__overlap": value})
        )

    return method


def filterset_for(spec: Dataset) -> type[DatasetFilterSet]:
    """Build the FilterSet of ``spec`` from its declaration (its symbol columns and ``api_filters``)."""
    model = spec.model
    filters: dict[str, Any] = {}
    symbol_help = "Comma-separated symbols."
    if spec.symbols_array is not None:
        symbol_help = "Comma-separated symbols: matches the primary symbol or any affected symbol."
        for param in ("symbols", "symbol"):
            filters[param] = SymbolListFilter(method=_symbols_any(spec), param=param, help_text=symbol_help)
    else:
        for param in ("symbols", "symbol"):
            filters[param] = SymbolListFilter(
                field_name=spec.symbol_column, lookup_expr="in", param=param, help_text=symbol_help
            )
    filters["symbol"].extra["help_text"] = "Alias of symbols."
    _range(filters, "time", "time", "timestamp", "event time")
    _range(filters, "known_at", "known_at", "timestamp", "knowledge time (known_at)")
    _range(filters, "recorded_at", "recorded_at", "timestamp", "system time (recorded_at)")
    for param, column in spec.api_filters:
        kind = spec.column(column).kind
        if kind == "text":
            filters[param] = ListFilter(
                field_name=column, lookup_expr="in", param=param, help_text=f"Comma-separated values of {column}."
            )
        elif kind == "text[]":
            filters[param] = ListFilter(
                field_name=column,
                lookup_expr="overlap",
                param=param,
                help_text=f"Comma-separated; rows whose {column} contain any.",
            )
        else:
            _range(filters, param, column, kind, column)
    if spec.curated:
        filters["min_quality"] = MinQualityFilter(
            help_text=(
                "Leave out rows whose current quality_score is below this number in [0, 1] (unscored rows are kept)."
            )
        )
    meta = type("Meta", (), {"model": model, "fields": [], "form": ListingForm})
    attrs = {**filters, "Meta": meta, "spec": spec, "__module__": __name__}
    return type(f"{model.__name__}FilterSet", (DatasetFilterSet,), attrs)


FILTERSETS: dict[str, type[DatasetFilterSet]] = {name: filterset_for(spec) for name, spec in DATASETS.items()}


class FilterBackend(django_filters.rest_framework.DjangoFilterBackend):
    """django-filter's DRF backend; keeps the validated FilterSet on the view (for as_of / recorded_by)."""

    def filter_queryset(self, request, queryset, view):
        filterset = self.get_filterset(request, queryset, view)
        if not filterset.is_valid():
            raise exceptions.ValidationError(filterset.errors)
        view.filterset = filterset
        return filterset.qs


# --- orderings and keyset pagination --------------------------------------------------------------


def orderings_for(spec: Dataset) -> dict[str, tuple[str, ...]]:
    """Named orderings: the version index (named after its first column) first, then (time, id)."""
    out = {spec.key[0]: (*spec.key, "known_at", "recorded_at")}
    if spec.key[0] != "time":
        out["time"] = ("time", "id")
    out.update(spec.orderings)
    return out


def column_kind(spec: Dataset, name: str) -> str:
    if name == "id":
        return "bigint"
    if name in ("known_at", "recorded_at"):
        return "timestamp"
    return spec.column(name).kind


class _Cursor:
    def __init__(self, ordering: str, values: list, reverse: bool):
        self.ordering, self.values, self.reverse = ordering, values, reverse


class KeysetPagination(BasePagination):
    """``?cursor=…&page_size=N&ordering=name|-name``: seek pagination over an indexed, unique ordering."""

    page_size = 100
    max_page_size = 10_000
    cursor_query_param = "cursor"
    page_size_query_param = "page_size"
    ordering_query_param = "ordering"

    def _invalid(self, param: str, message: str):
        return exceptions.ValidationError({param: [message]})

    def _ordering(self, request, view) -> tuple[str, tuple[str, ...], bool]:
        names = view.orderings
        raw = request.query_params.get(self.ordering_query_param, "").strip()
        if not raw:
            raw = next(iter(names))
        name = raw.lstrip("-")
        if name not in names or raw.count("-") > 1:
            choices = ", ".join(f"{n}, -{n}" for n in names)
            raise self._invalid(self.ordering_query_param, f"ordering={raw[:64]!r} is not one of {choices}")
        return raw, names[name], raw.startswith("-")

    def _page_size(self, request) -> int:
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None or not raw.strip():
            return self.page_size
        try:
            return params.int_between(self.page_size_query_param, raw, minimum=1, maximum=self.max_page_size)
        except ParameterError as exc:
            raise self._invalid(self.page_size_query_param, str(exc)) from None

    def _decode(self, request, spec: Dataset, ordering: str, columns: tuple[str, ...]) -> _Cursor | None:
        raw = request.query_params.get(self.cursor_query_param)
        if raw is None or not raw.strip():
            return None
        message = "cursor is invalid: use the next/previous links of a response"
        try:
            body = json.loads(base64.urlsafe_b64decode(raw.strip() + "=" * (-len(raw.strip()) % 4)))
            values = body["p"]
            if not isinstance(body, dict) or not isinstance(values, list) or not isinstance(body["o"], str):
                raise ValueError
            if body["o"] != ordering:
                made_for = body["o"][:64]
            elif len(values) != len(columns):
                raise ValueError
            else:
                made_for = ordering
        except (ValueError, TypeError, KeyError, binascii.Error):
            raise self._invalid(self.cursor_query_param, message) from None
        if made_for != ordering:
            raise self._invalid(self.cursor_query_param, f"cursor belongs to ordering={made_for!r}, not {ordering!r}")
        try:
            decoded = []
            for column, value in zip(columns, values):
                kind = column_kind(spec, column)
                if kind == "timestamp":
                    value = datetime.fromisoformat(value)
                    if value.tzinfo is None:
                        raise ValueError
                elif kind in ("int", "bigint"):
                    if not isinstance(value, int) or isinstance(value, bool) or abs(value) >= 2**63:
                        raise ValueError
                elif not isinstance(value, str) or "\x00" in value:
                    raise ValueError
                decoded.append(value)
            return _Cursor(ordering, decoded, bool(body.get("r")))
        except (ValueError, TypeError, KeyError, OverflowError):
            raise self._invalid(self.cursor_query_param, message) from None

    def _encode(self, ordering: str, columns: tuple[str, ...], row: dict, reverse: bool) -> str:
        values = [iso(row[c]) if isinstance(row[c], datetime) else row[c] for c in columns]
        body = json.dumps({"o": ordering, "p": values, "r": int(reverse)}, separators=(",", ":"))
        return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")

    def _url(self, cursor: str | None) -> str:
        url = self.request.build_absolute_uri()
        if cursor is None:
            return remove_query_param(url, self.cursor_query_param)
        return replace_query_param(url, self.cursor_query_param, cursor)

    def paginate_queryset(self, queryset, request, view=None):
        """One page of ``queryset.values(*view.value_columns)``; sets ``self.links``."""
        self.request = request
        ordering, columns, descending = self._ordering(request, view)
        size = self._page_size(request)
        cursor = self._decode(request, view.spec, ordering, columns)
        reverse = bool(cursor and cursor.reverse)
        backwards = descending != reverse  # walk the index downwards
        if cursor is not None:
            compare = LessThan if backwards else GreaterThan
            seek = compare(Row(*[F(c) for c in columns]), Row(*[Value(v) for v in cursor.values]))
            queryset = queryset.filter(seek)
        queryset = queryset.order_by(*[("-" if backwards else "") + c for c in columns])
        rows = list(queryset.values(*view.value_columns)[: size + 1])
        more = len(rows) > size
        rows = rows[:size]
        if reverse:
            rows.reverse()
        nxt = prev = None
        if reverse:
            prev = self._url(self._encode(ordering, columns, rows[0], True)) if more else None
            nxt = self._url(self._encode(ordering, columns, rows[-1], False)) if rows else self._url(None)
        else:
            nxt = self._url(self._encode(ordering, columns, rows[-1], False)) if more else None
            prev = self._url(self._encode(ordering, columns, rows[0], True)) if cursor is not None and rows else None
        self.links = {"next": nxt, "previous": prev}
        return rows

    def get_schema_operation_parameters(self, view):
        names = list(view.orderings)
        return [
            {
                "name": self.cursor_query_param,
                "required": False,
                "in": "query",
                "description": "Opaque position from the next/previous link of a previous page.",
                "schema": {"type": "string"},
            },
            {
                "name": self.page_size_query_param,
                "required": False,
                "in": "query",
                "description": f"Rows per page (default {self.page_size}).",
                "schema": {"type": "integer", "minimum": 1, "maximum": self.max_page_size},
            },
            {
                "name": self.ordering_query_param,
                "required": False,
                "in": "query",
                "description": "Index-backed orderings; '-' for descending. "
                + "; ".join(f"{n}: ({', '.join(c)})" for n, c in view.orderings.items())
                + f". Default {names[0]}.",
                "schema": {"type": "string", "enum": [p + n for n in names for p in ("", "-")]},
            },
        ]

    def get_paginated_response_schema(self, schema):
        nullable_time = {"type": "string", "format": "date-time", "nullable": True}
        return {
            "type": "object",
            "required": ["at", "recorded_by", "max_recorded_at", "next", "previous", "results"],
            "properties": {
                "at": {**nullable_time, "description": "as_of, when given"},
                "recorded_by": nullable_time,
                "max_recorded_at": {**nullable_time, "description": "newest recorded_at among the rows"},
                "next": {"type": "string", "format": "uri", "nullable": True},
                "previous": {"type": "string", "format": "uri", "nullable": True},
                "results": schema,
            },
        }

"""The dataset registry (timeseries/datasets.py) against the models: every declared column is a table
column of the declared type, nullability, default and length, and nothing else is stored.

``declaration_problems`` is the check; the tests below run it over every dataset and show that it
fails for a declaration that drifted from its model.
"""

from __future__ import annotations

import dataclasses

import pytest
from django.contrib.postgres.fields import ArrayField
from django.db import connection, models
from timescale.db.models.fields import TimescaleDateTimeField

from timeseries import pit, quality, securities
from timeseries.datasets import DATASETS, Column, Dataset, dataset_of_model, get_dataset

# the database type a column of each kind is stored as (text with a max_length: varchar(n))
DB_TYPES = {
    "timestamp": "timestamp with time zone",
    "price": "numeric(18, 6)",
    "money": "numeric(24, 2)",
    "float": "double precision",
    "int": "integer",
    "bigint": "bigint",
    "text": "text",
    "bool": "boolean",
    "text[]": "text[]",
}
VERSION_COLUMNS = ("id", "time", "known_at", "recorded_at")  # every dataset table has them (TimeSeriesRow)


def _db_type(column: Column) -> str:
    if column.kind == "text" and column.max_length is not None:
        return f"varchar({column.max_length})"
    return DB_TYPES[column.kind]


def _default(field: models.Field):
    return field.get_default() if field.has_default() else None


def declaration_problems(spec: Dataset) -> list[str]:
    """What differs between ``spec`` and its model; empty when they agree."""
    model = spec.model
    problems = []
    if model._meta.db_table != spec.table:
        problems.append(f"{spec.name}: table {spec.table!r}, model table {model._meta.db_table!r}")
    fields = {f.name: f for f in model._meta.concrete_fields}
    for column in spec.columns:
        field = fields.get(column.name)
        where = f"{spec.name}.{column.name}"
        if field is None:
            problems.append(f"{where}: declared, not a field of {model.__name__}")
            continue
        if field.db_type(connection) != _db_type(column):
            problems.append(f"{where}: declared {_db_type(column)}, model {field.db_type(connection)}")
        if field.null != column.is_nullable:
            problems.append(f"{where}: declared nullable={column.is_nullable}, model null={field.null}")
        if _default(field) != column.default:
            problems.append(f"{where}: declared default {column.default!r}, model default {_default(field)!r}")
        if column.kind == "text" and field.max_length != column.max_length:
            problems.append(f"{where}: declared max_length {column.max_length}, model {field.max_length}")
        if column.kind == "text[]" and not isinstance(field, ArrayField):
            problems.append(f"{where}: declared text[], model {type(field).__name__}")
        if column.required and (field.null or field.has_default()):
            problems.append(f"{where}: declared required, model null={field.null} default={_default(field)!r}")
    undeclared = sorted(set(fields) - set(spec.column_names) - set(VERSION_COLUMNS))
    if undeclared:
        problems.append(f"{spec.name}: model fields {', '.join(undeclared)} are not declared")
    version = [c for c in model._meta.constraints if c.name == f"{spec.table}_version"]
    expected = (*spec.key, "known_at", "recorded_at")
    if len(version) != 1 or tuple(version[0].fields) != expected:
        problems.append(f"{spec.name}: the version constraint is not on {', '.join(expected)}")
    return problems


@pytest.mark.parametrize("name", list(DATASETS))
def test_every_declaration_matches_its_model(name):
    assert declaration_problems(DATASETS[name]) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: dataclasses.replace(c, max_length=33) if c.name == "symbol" else c, "symbol: declared varchar(33)"),
        (
            lambda c: dataclasses.replace(c, kind="bigint") if c.name == "trades" else c,
            "trades: declared bigint, model integer",
        ),
        (
            lambda c: dataclasses.replace(c, nullable=None) if c.name == "quality_score" else c,
            "quality_score: declared nullable=False",
        ),
        (lambda c: dataclasses.replace(c, default="x") if c.name == "source" else c, "source: declared default 'x'"),
        (lambda c: dataclasses.replace(c, required=True) if c.name == "vwap" else c, "vwap: declared nullable=False"),
    ],
)
def test_the_check_finds_a_declaration_that_drifted_from_its_model(change, message):
    spec = DATASETS["market_data"]
    drifted = dataclasses.replace(spec, columns=tuple(change(c) for c in spec.columns))
    problems = declaration_problems(drifted)
    assert any(message in p for p in problems), problems


def test_the_check_finds_an_undeclared_or_missing_column():
    spec = DATASETS["news_events"]
    fewer = dataclasses.replace(spec, columns=tuple(c for c in spec.columns if c.name != "author"))
    assert "news_events: model fields author are not declared" in declaration_problems(fewer)
    more = dataclasses.replace(spec, columns=(*spec.columns, Column("mood", "text")))
    assert "news_events.mood: declared, not a field of NewsEvent" in declaration_problems(more)


def test_the_check_finds_a_wrong_key():
    spec = DATASETS["social_sentiment"]
    assert any(
        "version constraint" in p for p in declaration_problems(dataclasses.replace(spec, key=("symbol", "time")))
    )


def test_every_model_maps_back_to_its_dataset():
    for name, spec in DATASETS.items():
        assert dataset_of_model(spec.model) is spec
        assert get_dataset(name) is spec


def test_every_declared_selector_filter_ordering_and_check_exists():
    for name, spec in DATASETS.items():
        assert callable(getattr(pit, spec.state_selector)), name
        for column in (
            *spec.filters.values(),
            spec.window_time_column,
            *(c for cols in spec.orderings.values() for c in cols),
        ):
            assert column == "id" or column in spec.column_names, (name, column)
        if spec.symbols_array is not None:
            assert spec.column(spec.symbols_array).kind == "text[]" and spec.column(spec.symbols_array).symbol
        if spec.id_column is not None:
            assert spec.column(spec.id_column).required and spec.derive_ids is not None
        if spec.quality_checks is not None:
            assert spec.curated and spec.quality_checks.suite in quality.SUITES


def test_a_dataset_is_a_hypertable_exactly_when_its_model_time_is_a_timescale_field():
    for name, spec in DATASETS.items():
        field = spec.model._meta.get_field("time")
        assert isinstance(field, TimescaleDateTimeField) == spec.hypertable, name


def test_every_declared_time_input_and_resolve_hook_exists():
    for name, spec in DATASETS.items():
        assert spec.time_input == "time" or spec.time_input not in spec.column_names, name
        assert spec.input_name("time") == spec.time_input and spec.time_input in spec.accepted_input_columns
        assert set(spec.resolved_columns) <= set(spec.column_names), name
        if spec.resolve is not None:
            assert spec.resolved_columns and callable(getattr(securities, spec.resolve)), name
        if not spec.time_keyed:
            assert not spec.known_after_time, name  # its selectors must not bound scans by time
    assert get_dataset("securities").input_required_columns == ("listed_at", "security_id", "symbol", "exchange")
    assert "security_id" not in get_dataset("corporate_actions").input_required_columns

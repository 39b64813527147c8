"""Both storage lanes: the same tables everywhere; hypertables where TimescaleDB is present."""

from __future__ import annotations

import pytest
from django.db import connection

from ingestion.loader import ingest_table
from tests.helpers import T0, bar
from timeseries import pit
from timeseries.capabilities import capabilities
from timeseries.datasets import DATASETS
from tsm_site.lanes import PLAIN_ENGINE, TIMESCALE_ENGINE, choose_engine

pytestmark = pytest.mark.django_db

NO_TIMESCALE = "TimescaleDB is not installed/preloaded on this server (plain PostgreSQL lane); see docs/architecture.md"


def needs_timescaledb():
    if not capabilities(fresh=True).timescaledb:
        pytest.skip(NO_TIMESCALE)


def test_it_reports_the_lane_the_engine_was_chosen_for():
    caps = capabilities(fresh=True)
    engine = connection.settings_dict["ENGINE"]
    assert caps.lane == ("timescaledb" if engine == TIMESCALE_ENGINE else "postgresql")


def test_it_never_chooses_the_timescale_engine_when_told_off_and_always_when_on():
    db = connection.settings_dict
    assert choose_engine(db, "off") == PLAIN_ENGINE
    assert choose_engine(db, "on") == TIMESCALE_ENGINE


def test_it_falls_back_to_plain_postgresql_when_the_server_is_unreachable():
    assert choose_engine({"HOST": "127.0.0.1", "PORT": 1, "USER": "postgres", "PASSWORD": ""}, "auto") == PLAIN_ENGINE


def test_it_gives_every_dataset_its_version_constraint_including_time_and_known_at():
    with connection.cursor() as cur:
        for spec in DATASETS.values():
            cur.execute(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = %s", [f"{spec.table}_version"]
            )
            definition = cur.fetchone()[0]
            for column in (*spec.key, "known_at", "recorded_at"):
                assert f'"{column}"' in definition or column in definition, (spec.name, column)


HYPERTABLE_DATASETS = [d for d in DATASETS.values() if d.hypertable]
REFERENCE_DATASETS = [d for d in DATASETS.values() if not d.hypertable]


@pytest.mark.timescaledb
def test_it_makes_every_time_series_dataset_a_hypertable_partitioned_by_time():
    needs_timescaledb()
    caps = capabilities(fresh=True)
    assert caps.hypertables == {d.table for d in HYPERTABLE_DATASETS}
    with connection.cursor() as cur:
        cur.execute(
            "SELECT hypertable_name, column_name FROM timescaledb_information.dimensions"
            " WHERE hypertable_name = ANY(%s)",
            [[d.table for d in HYPERTABLE_DATASETS]],
        )
        assert {column for _, column in cur.fetchall()} == {"time"}


def test_it_keeps_reference_data_in_plain_tables_on_both_lanes():
    assert {d.name for d in REFERENCE_DATASETS} == {"securities", "corporate_actions"}
    with connection.cursor() as cur:
        for spec in REFERENCE_DATASETS:
            cur.execute("SELECT relkind FROM pg_class WHERE relname = %s", [spec.table])
            assert cur.fetchone()[0] == "r", spec.table
            cur.execute(  # its id is still the primary key (django-timescaledb never touched it)
                "SELECT 1 FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'p'", [spec.table]
            )
            assert cur.fetchone() is not None, spec.table
    assert not {d.table for d in REFERENCE_DATASETS} & capabilities(fresh=True).hypertables


@pytest.mark.timescaledb
def test_it_loads_and_answers_point_in_time_on_hypertables():
    needs_timescaledb()
    from datetime import timedelta
    from decimal import Decimal

    ingest_table(dataset="market_data", data=[bar("AAPL", m) for m in range(3)])
    ingest_table(
        dataset="market_data", data=[bar("AAPL", 0, close="10.25", known_at=(T0 + timedelta(hours=1)).isoformat())]
    )
    assert pit.market_state(at=T0 + timedelta(minutes=1))[0]["close"] == Decimal("10.5")
    assert [r["close"] for r in pit.history(dataset="market_data", at=T0 + timedelta(hours=2), symbols=["AAPL"])][
        0
    ] == Decimal("10.25")


def test_it_keeps_plain_tables_on_the_plain_lane():
    if capabilities(fresh=True).timescaledb:
        pytest.skip("this server has TimescaleDB; the plain-lane check applies to servers without it")
    with connection.cursor() as cur:
        cur.execute("SELECT relkind FROM pg_class WHERE relname = 'market_data'")
        assert cur.fetchone()[0] == "r"


@pytest.mark.timescaledb
def test_it_indexes_id_on_hypertables_whose_primary_key_was_dropped():
    needs_timescaledb()
    with connection.cursor() as cur:
        for spec in HYPERTABLE_DATASETS:
            cur.execute(
                "SELECT indexdef FROM pg_indexes WHERE tablename = %s AND indexdef LIKE %s", [spec.table, "%(id)"]
            )
            row = cur.fetchone()
            # non-unique: a second unique index would widen every compressed-chunk DML's decompression
            assert row and "UNIQUE" not in row[0], spec.table
            cur.execute(
                "SELECT count(*) FROM pg_indexes WHERE tablename = %s AND indexdef LIKE 'CREATE UNIQUE%%'", [spec.table]
            )
            assert cur.fetchone()[0] == 1, f"{spec.table}: only the version constraint may be unique"

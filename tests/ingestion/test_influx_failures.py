"""The InfluxDB backup passes a span InfluxDB refuses, records it, and resolves it once the bad version was
removed (ingestion/influx.py + timeseries/changes.py), against the real influxd of test_influx.py."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
import requests
from django.core.management import call_command
from django.db import connection

from ingestion import influx
from ingestion.loader import ingest_table
from tests.helpers import SECOND, T0, restore, tick, versions, wipe_market_data
from tests.timeseries.poison import poison_bar
from timeseries.changes import changes_lag
from timeseries.models import ConsumerFailure

pytestmark = pytest.mark.django_db


def test_the_backup_passes_a_span_influxdb_refuses_and_resolves_it_after_the_removal(backup, influxd):
    ingest_table(dataset="market_data", data=[tick("TICK", s) for s in range(10)], bar_interval=SECOND)
    # a one-second bar at the end of year 9999: InfluxDB cannot hold its timestamp (400)
    bad = poison_bar("TICK", time="9999-12-31T23:59:59Z", known_after="1 second")
    ingest_table(dataset="market_data", data=[tick("TICK", 100 + s) for s in range(5)], bar_interval=SECOND)

    sent = influx.influx_backup_run()
    assert (sent.changes, sent.failed, sent.points) == (3, 1, 15)
    assert influxd.count(db=backup.TSM_INFLUX_DB) == 15
    assert changes_lag(consumer="influx", dataset="market_data")["pending"] == 0
    [failure] = ConsumerFailure.objects.filter(consumer="influx", resolved_at__isnull=True)
    assert failure.symbol == "TICK" and "InfluxError: InfluxDB /write answered 400" in failure.error
    status = influx.backup_status()
    assert status["last_error"] == "" and status["open_failures"] == 1  # the backup itself is healthy
    assert "1 change(s) InfluxDB refused, passed and retried" in influx.backup_status_text(status)

    # the next load is backed up; the failure waits for its retry
    ingest_table(dataset="market_data", data=[tick("TICK", 200)], bar_interval=SECOND)
    again = influx.influx_backup_run()
    assert (again.changes, again.failed, again.retried, again.points) == (1, 0, 0, 1)

    call_command("remove_versions", "market_data", "--id", str(bad), "--reason", "tick at 9999", stdout=io.StringIO())
    resumed = influx.influx_backup_run()
    assert (resumed.retried, resumed.resolved, resumed.failed) == (1, 1, 0)
    assert ConsumerFailure.objects.get(pk=failure.pk).resolved_at is not None
    assert influxd.count(db=backup.TSM_INFLUX_DB) == 16


def test_a_refusal_about_the_target_stops_the_run_and_records_no_span_failure(backup, influxd):
    """A field stored with another type: every span would fail alike; the run stops, records the error
    and keeps the cursor (as before), and no change is passed."""
    ingest_table(dataset="market_data", data=[tick("TICK", s) for s in range(3)], bar_interval=SECOND)
    ingest_table(dataset="market_data", data=[tick("OTHER", s) for s in range(3)], bar_interval=SECOND)
    influxd.query(f'CREATE DATABASE "{backup.TSM_INFLUX_DB}"')
    stamp = int(T0.timestamp() * 1_000_000)
    requests.post(
        f"{influxd.url}/write",
        params={"db": backup.TSM_INFLUX_DB, "precision": "u"},
        data=f'market_data,symbol=X,v=0 open="text" {stamp}'.encode(),
        timeout=10,
    ).raise_for_status()
    pending = changes_lag(consumer="influx", dataset="market_data")
    with pytest.raises(influx.InfluxError, match="field type conflict"):
        influx.influx_backup_run()
    assert changes_lag(consumer="influx", dataset="market_data") == pending
    assert not ConsumerFailure.objects.exists()
    assert "field type conflict" in influx.backup_status()["last_error"]


def test_which_errors_are_a_spans_own_fault():
    assert (
        influx.backup_span_error(influx.InfluxError("InfluxDB /write answered 401: unauthorized", status=401)) is False
    )
    assert influx.backup_span_error(influx.InfluxUnavailable("unreachable")) is False
    assert influx.backup_span_error(influx.InfluxError("unable to parse", status=400)) is True
    assert influx.backup_span_error(influx.InfluxError("partial write: field type conflict: …", status=400)) is False
    assert influx.backup_span_error(ValueError("bad value")) is True


def test_a_removed_version_leaves_the_backup_too_and_a_restore_does_not_bring_it_back(backup, influxd):
    ingest_table(dataset="market_data", data=[tick("TICK", s) for s in range(5)], bar_interval=SECOND)
    # a correction of bars 1 and 2, known an hour later: two versions each
    ingest_table(
        dataset="market_data",
        data=[tick("TICK", s, close="10.25", known_at=(T0 + timedelta(hours=1)).isoformat()) for s in (1, 2)],
        bar_interval=SECOND,
    )
    influx.influx_backup_run()
    assert influxd.count(db=backup.TSM_INFLUX_DB) == 7
    with connection.cursor() as cur:  # the original version of bar 1 was wrong: remove it
        cur.execute(
            "SELECT id FROM market_data WHERE symbol = 'TICK' AND time = %s ORDER BY recorded_at LIMIT 1", [T0 + SECOND]
        )
        (original,) = cur.fetchone()
    call_command("remove_versions", "market_data", "--id", str(original), "--reason", "bad tick", stdout=io.StringIO())
    influx.influx_backup_run()
    assert influxd.count(db=backup.TSM_INFLUX_DB) == 6
    stamp = int((T0 + SECOND).timestamp() * 1_000_000)
    [series] = influxd.query(f'SELECT "close", "v" FROM "market_data" WHERE time = {stamp}u', db=backup.TSM_INFLUX_DB)
    assert [(row[1], row[2]) for row in series["values"]] == [(10250000, "0")]  # the correction, renumbered v=0

    before = versions(["TICK"])
    wipe_market_data()
    restored = restore()
    assert restored.points == 6 and versions(["TICK"]) == before

"""The storage report: function, command and admin page (both lanes)."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from ingestion.loader import ingest_table
from tests.helpers import T0, bar
from timeseries.capabilities import capabilities
from timeseries.datasets import DATASETS
from timeseries.lifecycle import bytes_human, storage_report

pytestmark = pytest.mark.django_db


@pytest.fixture
def loaded():
    ingest_table(dataset="market_data", data=[bar(s, m) for s in ("AAA", "BBB") for m in range(50)])
    ingest_table(dataset="market_data", data=[bar("AAA", 90, close="10.75")])
    with connection.cursor() as cur:
        cur.execute("ANALYZE market_data")


@pytest.fixture
def staff_client(client):
    user = User.objects.create_user("storage-staff", password="pw-for-tests", is_staff=True, is_superuser=True)
    client.force_login(user)
    return client


def by_dataset(report):
    return {r["dataset"]: r for r in report}


def test_it_reports_every_dataset():
    assert [r["dataset"] for r in storage_report()] == list(DATASETS)


def test_it_reports_rows_time_range_bytes_and_bytes_per_row(loaded):
    r = by_dataset(storage_report())["market_data"]
    assert r["lane"] == capabilities().lane
    assert r["rows_estimate"] == 101
    assert r["series"] == 2
    assert (r["time_min"], r["time_max"]) == (T0.isoformat(), (T0 + timedelta(minutes=90)).isoformat())
    assert r["bytes"]["total"] >= r["bytes"]["heap"] + r["bytes"]["indexes"] > 0
    assert r["bytes_per_row"] == round(r["bytes"]["total"] / 101, 1)


def test_it_reports_the_retention_horizon_and_the_aggregate_and_backup_lag(loaded, settings):
    r = by_dataset(storage_report())["market_data"]
    assert r["retention"]["horizon"] == settings.TSM_RETENTION["market_data"]
    assert r["retention"]["cutoff"] < T0.replace(year=2020).isoformat()
    assert r["aggregates_lag"]["pending"] >= 2  # two loads logged changes the rollups have not consumed
    backup = r["backup_lag"]
    assert "pending_changes" in backup or "pending" in backup or "error" in backup


def test_it_reports_compression_only_on_the_timescaledb_lane(loaded):
    r = by_dataset(storage_report())["market_data"]
    if capabilities().timescaledb:
        assert r["compression"]["compress_after"] == "7 days"
        assert r["compression"]["segmentby"] == ["symbol"]
    else:
        assert r["compression"] is None


def test_it_never_counts_a_dataset_in_full(loaded):
    with CaptureQueriesContext(connection) as ctx:
        storage_report()
    tables = "|".join(d.table for d in DATASETS.values())
    full_counts = [
        q["sql"]
        for q in ctx.captured_queries
        if re.search(rf'count\(\*\)\s+FROM\s+"?({tables})"?(\s|$)', q["sql"], re.IGNORECASE)
    ]
    assert full_counts == []


def test_it_prints_a_human_report_and_json(loaded, capsys):
    call_command("storage_report", "--dataset", "market_data")
    text = capsys.readouterr().out
    assert text.startswith(f"storage lane: {capabilities().lane}")
    assert re.search(r"rows \(est\.\)\s+~101\n", text)
    assert re.search(r"bytes/row\s+\d+\.\d", text)
    assert re.search(r"compression\s+(n/a \(plain PostgreSQL\)|-|\d+\.\d:1)", text)
    call_command("storage_report", "--json")
    data = json.loads(capsys.readouterr().out)
    assert [d["dataset"] for d in data] == list(DATASETS)
    assert data[0]["rows_estimate"] == 101


def test_it_formats_bytes_for_people():
    assert [bytes_human(n) for n in (None, 512, 2048, 5 * 1024**3)] == ["-", "512 B", "2.0 kB", "5.0 GB"]


def test_it_shows_the_report_on_an_admin_page_linked_from_the_index(loaded, staff_client):
    index = staff_client.get("/admin/")
    assert index.status_code == 200
    assert b'href="/admin/timeseries/storage/"' in index.content
    page = staff_client.get("/admin/timeseries/storage/")
    assert page.status_code == 200
    html = page.content.decode()
    assert f'<strong id="storage-lane">{capabilities().lane}</strong>' in html
    for spec in DATASETS.values():
        assert f'data-dataset="{spec.name}"' in html
    assert "~101" in html


def test_it_keeps_the_admin_page_for_staff(client):
    page = client.get("/admin/timeseries/storage/")
    assert page.status_code == 302 and "/admin/login/" in page["Location"]

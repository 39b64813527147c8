"""Lifecycle on both lanes: policy settings, compression layout, retention (dry run and apply), the beat task."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.db import connection

from ingestion.loader import ingest_table
from tests.helpers import T0, bar
from timeseries import lifecycle, pit
from timeseries.capabilities import capabilities
from timeseries.models import DatasetGeneration, MarketData, OutrankedVersion, Series, SocialSentiment
from timeseries.tasks import retention_run
from tsm_site.celery import app
from tsm_site.settings import env_intervals

pytestmark = pytest.mark.django_db

OLD_DAY = T0  # rows of this day expire in the tests below
NEW_DAY = T0 + timedelta(days=60)  # rows of this day are kept
NOW = T0.replace(year=T0.year + 10) + timedelta(days=30)  # with a 10-year horizon: cutoff = T0 + 30 days


def minute(day, m: int) -> int:
    return int((day - T0).total_seconds() // 60) + m


def load_two_days(symbol: str = "AAA", *, old: int = 3, new: int = 2) -> None:
    ingest_table(
        dataset="market_data",
        data=[bar(symbol, minute(OLD_DAY, m)) for m in range(old)]
        + [bar(symbol, minute(NEW_DAY, m)) for m in range(new)],
    )


def generation(dataset: str) -> int:
    row = DatasetGeneration.objects.filter(dataset=dataset).first()
    return row.generation if row else 0


def analyze(table: str) -> None:
    with connection.cursor() as cur:
        cur.execute(f"ANALYZE {table}")


# --- settings ------------------------------------------------------------------------------------


def test_it_reads_per_dataset_intervals_with_environment_overrides(monkeypatch):
    monkeypatch.setenv("TSM_RETENTION_MARKET_DATA", "5  Years")
    monkeypatch.setenv("TSM_RETENTION_NEWS_EVENTS", "none")
    got = env_intervals(
        "TSM_RETENTION", {"market_data": "10 years", "news_events": "10 years", "social_sentiment": "2 years"}
    )
    assert got == {"market_data": "5 years", "news_events": None, "social_sentiment": "2 years"}


def test_it_refuses_an_interval_it_cannot_parse_naming_the_variable(monkeypatch):
    monkeypatch.setenv("TSM_COMPRESS_AFTER_MARKET_DATA", "a week")
    with pytest.raises(ImproperlyConfigured, match="TSM_COMPRESS_AFTER_MARKET_DATA='a week' is not an interval"):
        env_intervals("TSM_COMPRESS_AFTER", {"market_data": "7 days"})


def test_it_defaults_to_the_spec_policies(settings):
    assert settings.TSM_COMPRESS_AFTER["market_data"] == "7 days"
    assert settings.TSM_COMPRESS_AFTER["news_events"] == "30 days"
    assert settings.TSM_COMPRESS_AFTER["social_sentiment"] == "3 days"
    assert settings.TSM_RETENTION["social_sentiment"] == "2 years"
    assert settings.TSM_RETENTION["news_events"] == "10 years"
    assert settings.TSM_RETENTION["market_data"] == "10 years"


def test_it_segments_compression_by_series_and_orders_newest_first_then_by_version():
    market = lifecycle.compression_layout(dataset="market_data")
    assert market.segmentby == ("symbol",)
    assert market.orderby == ("time DESC", "known_at DESC", "recorded_at DESC")
    assert lifecycle.compression_layout(dataset="social_sentiment").segmentby == ("symbol", "platform")
    government = lifecycle.compression_layout(dataset="government_events")
    assert government.segmentby == ("primary_symbol",)
    assert government.orderby == ("time DESC", "event_type", "known_at DESC", "recorded_at DESC")
    assert lifecycle.compression_layout(dataset="news_events").orderby[:2] == ("time DESC", "news_id")


# --- retention: dry run ---------------------------------------------------------------------------


def test_it_previews_what_retention_would_remove_without_removing_it():
    load_two_days("AAA")
    load_two_days("BBB", old=1)
    analyze("market_data")
    preview = lifecycle.retention_preview(dataset="market_data", now=NOW)
    assert preview.horizon == "10 years"
    assert preview.cutoff == T0 + timedelta(days=30)
    assert (preview.oldest, preview.newest) == (T0, T0 + timedelta(minutes=2))
    assert preview.series == 2
    assert preview.rows_estimate > 0
    assert MarketData.objects.count() == 8


def test_it_previews_nothing_when_no_row_is_past_the_horizon():
    load_two_days("AAA")
    analyze("market_data")
    preview = lifecycle.retention_preview(dataset="market_data", now=T0 + timedelta(days=3000))
    assert (preview.series, preview.rows_estimate, preview.oldest, preview.chunks) == (0, 0, None, [])


def test_it_keeps_a_dataset_forever_when_its_retention_is_none(settings):
    settings.TSM_RETENTION = {**settings.TSM_RETENTION, "market_data": None}
    load_two_days("AAA")
    assert lifecycle.retention_preview(dataset="market_data", now=NOW).method.startswith("kept forever")
    result = lifecycle.retention_apply(dataset="market_data", now=NOW)
    assert (result.rows_deleted, result.chunks_dropped, result.cutoff) == (0, 0, None)
    assert MarketData.objects.count() == 5


def test_it_prints_the_dry_run_per_dataset(capsys, settings):
    settings.TSM_RETENTION = {**settings.TSM_RETENTION, "market_data": "1 year", "news_events": None}
    load_two_days("AAA")
    analyze("market_data")
    call_command("retention", "--dry-run", "--dataset", "market_data", "--dataset", "news_events")
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("market_data: would remove ~") and " row(s) of 1 series, " in out[0]
    assert "time 2024-03-01T14:30:00+00:00 .. 2024-04-30T14:31:00+00:00" in out[0] and "horizon 1 year" in out[0]
    assert out[1] == "news_events: kept forever (retention none) - nothing would be removed"
    assert MarketData.objects.count() == 5


def test_it_refuses_a_batch_size_below_one():
    with pytest.raises(ValueError, match="batch_rows=0 must be at least 1"):
        lifecycle.retention_apply(dataset="market_data", batch_rows=0)
    with pytest.raises(CommandError, match="--batch-rows=0 must be at least 1"):
        call_command("retention", "--apply", "--batch-rows", "0")


# --- retention: apply -----------------------------------------------------------------------------


def test_it_removes_every_version_of_rows_past_the_horizon_and_keeps_the_rest():
    load_two_days("AAA")
    ingest_table(
        dataset="market_data", data=[bar("AAA", 1, close="10.25", known_at=(T0 + timedelta(hours=2)).isoformat())]
    )
    before = generation("market_data")
    result = lifecycle.retention_apply(dataset="market_data", now=NOW)
    assert result.rows_deleted + result.chunks_dropped > 0
    assert sorted(MarketData.objects.values_list("time", flat=True)) == [NEW_DAY, NEW_DAY + timedelta(minutes=1)]
    assert generation("market_data") > before  # cached answers drop at once
    assert pit.market_state(at=T0 + timedelta(days=1), symbols=["AAA"]) == []
    assert [r["time"] for r in pit.market_state(at=NEW_DAY + timedelta(hours=1), symbols=["AAA"])] == [
        NEW_DAY + timedelta(minutes=1)
    ]


def test_it_removes_the_outranked_versions_of_rows_past_the_horizon_with_them(settings):
    settings.TSM_FEED_PRECEDENCE = {**settings.TSM_FEED_PRECEDENCE, "market_data": ("curation",)}
    ingest_table(dataset="market_data", data=[bar("AAA", minute(d, 0)) for d in (OLD_DAY, NEW_DAY)], feed="curation")
    sent = ingest_table(
        dataset="market_data", data=[bar("AAA", minute(d, 0), close="10.25") for d in (OLD_DAY, NEW_DAY)], feed="v"
    )
    assert sent.outranked == 2
    result = lifecycle.retention_apply(dataset="market_data", now=NOW)
    assert result.outranked_deleted == 1
    assert list(OutrankedVersion.objects.values_list("time", flat=True)) == [NEW_DAY]


def test_it_changes_nothing_when_run_again():
    load_two_days("AAA")
    lifecycle.retention_apply(dataset="market_data", now=NOW)
    before = generation("market_data")
    again = lifecycle.retention_apply(dataset="market_data", now=NOW)
    assert (again.rows_deleted, again.chunks_dropped) == (0, 0)
    assert generation("market_data") == before
    assert MarketData.objects.count() == 2


def test_it_leaves_the_series_registry_as_a_superset_the_loader_still_handles():
    load_two_days("AAA")
    lifecycle.retention_apply(dataset="market_data", now=NOW)
    assert Series.objects.get(dataset="market_data", symbol="AAA").first_time == T0  # no longer stored: a hint
    again = ingest_table(dataset="market_data", data=[bar("AAA", 0)])  # the deleted bar is new again
    assert (again.inserted, again.revised, again.duplicates) == (1, 0, 0)
    fix = ingest_table(dataset="market_data", data=[bar("AAA", minute(NEW_DAY, 0), close="10.75")])
    assert (fix.inserted, fix.revised) == (0, 1)
    assert MarketData.objects.count() == 4


def test_it_applies_each_dataset_its_own_horizon():
    ingest_table(
        dataset="social_sentiment",
        data=[
            {
                "time": (T0.replace(minute=0) + timedelta(days=d)).isoformat(),
                "symbol": "AAA",
                "platform": "reddit",
                "mention_count": "3",
            }
            for d in (0, 400, 800)
        ],
    )
    load_two_days("AAA")
    now = T0 + timedelta(days=800 + 2 * 365)  # sentiment keeps 2 years (cutoff day ~799); market data keeps 10
    results = {
        r.dataset: r
        for r in (lifecycle.retention_apply(dataset=d, now=now) for d in ("social_sentiment", "market_data"))
    }
    assert results["social_sentiment"].rows_deleted + results["social_sentiment"].chunks_dropped > 0
    assert results["market_data"].rows_deleted + results["market_data"].chunks_dropped == 0
    assert SocialSentiment.objects.count() == 1
    assert MarketData.objects.count() == 5


def test_it_deletes_in_bounded_batches_on_the_plain_lane():
    if capabilities(fresh=True).timescaledb:
        pytest.skip("TimescaleDB lane: retention drops whole chunks (tested in test_lifecycle_timescaledb.py)")
    load_two_days("AAA", old=5)
    load_two_days("BBB", old=1, new=0)
    result = lifecycle.retention_apply(dataset="market_data", batch_rows=2, now=NOW)
    assert (result.rows_deleted, result.batches, result.chunks_dropped) == (6, 4, 0)  # AAA 2+2+1, BBB 1
    assert MarketData.objects.count() == 2


def test_it_reports_what_it_removed(capsys, settings):
    load_two_days("AAA")
    settings.TSM_RETENTION = {**settings.TSM_RETENTION, "market_data": "1 year"}
    call_command("retention", "--apply", "--dataset", "market_data")
    out = capsys.readouterr().out
    assert out.startswith("market_data: removed ") and "horizon 1 year" in out
    assert MarketData.objects.count() == 0


# --- the beat task ----------------------------------------------------------------------------------


def test_it_schedules_retention_in_beat_as_a_registered_task(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["retention"]
    app.loader.import_default_modules()
    assert entry["task"] in app.tasks


def test_it_runs_retention_for_every_dataset_from_the_task(settings):
    settings.TSM_RETENTION = {**settings.TSM_RETENTION, "market_data": "1 year"}
    load_two_days("AAA")
    out = retention_run.apply().get()
    assert [r["dataset"] for r in out] == [
        "market_data",
        "news_events",
        "insider_trades",
        "social_sentiment",
        "government_events",
    ]
    assert MarketData.objects.count() == 0


# --- lifecycle_apply on the plain lane ----------------------------------------------------------


def test_it_applies_no_timescaledb_policy_on_the_plain_lane(capsys):
    if capabilities(fresh=True).timescaledb:
        pytest.skip("this server has TimescaleDB (see test_lifecycle_timescaledb.py)")
    assert lifecycle.lifecycle_apply() == []
    call_command("lifecycle_apply")
    assert "plain PostgreSQL lane" in capsys.readouterr().out
    with pytest.raises(ValueError, match="market_data: compression needs the TimescaleDB lane"):
        lifecycle.chunks_compress(dataset="market_data")

"""Rollup maintenance (timeseries/aggregates.py): backfills and corrections of last month, partial days,
the state row, bad parameters, a real Celery worker, and the TimescaleDB continuous aggregates."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from psycopg import sql

from ingestion import tasks
from ingestion.loader import ingest_table
from ingestion.models import Upload
from tests.helpers import (
    DAY,
    FEB,
    LATER,
    MAR,
    bar_row,
    csv_bytes,
    iso,
    month,
    same_sentiment,
    scratch_daily_bars,
    scratch_hourly_sentiment,
)
from tests.ingestion.workers import private_queue, start_worker, stop_worker, wait_for, worker_env
from tests.oracle import Oracle, typed_row
from timeseries import aggregates, pit
from timeseries.aggregates import CONSUMER, rollups_refresh
from timeseries.capabilities import capabilities
from timeseries.changes import changes_lag
from timeseries.models import RollupState
from tsm_site.celery import app as celery_app

pytestmark = pytest.mark.django_db(transaction=True)  # the consumer runs outside transactions (TimescaleDB lane)


class History:
    """Loads through the loader and into the oracle alike."""

    def __init__(self):
        self.oracle = Oracle()

    def load(self, dataset: str, rows: list[dict]) -> datetime:
        result = ingest_table(dataset=dataset, data=[dict(r) for r in rows])
        self.oracle.load(dataset, [typed_row(dataset, r) for r in rows], result.recorded_at)
        return result.recorded_at

    def daily(self, symbol="AAA", at=LATER, start=FEB, end=MAR - timedelta(microseconds=1), recorded_by=None):
        got = pit.daily_bars(symbol=symbol, at=at, start=start, end=end, recorded_by=recorded_by)
        assert got == scratch_daily_bars(
            self.oracle, symbol=symbol, at=at, start=start, end=end, recorded_by=recorded_by
        )
        return got


def sources(
    symbol="AAA", at=LATER, start=FEB, end=MAR - timedelta(microseconds=1), recorded_by=None, aggregate="daily_ohlcv"
):
    rows = aggregates.aggregate_read(
        aggregate=aggregate, symbol=symbol, at=at, start=start, end=end, recorded_by=recorded_by
    )
    return {r["time"]: r["source"] for r in rows}


def rollup_rows(table: str) -> list[tuple]:
    with connection.cursor() as cur:
        cur.execute(sql.SQL("SELECT * FROM {} ORDER BY symbol, bucket").format(sql.Identifier(table)))
        return cur.fetchall()


@pytest.fixture
def history():
    return History()


def test_it_updates_last_months_buckets_after_a_backfill_and_a_correction(history):
    history.load("market_data", month("AAA", skip={10}) + month("BBB"))
    rollups_refresh()
    assert set(sources().values()) == {"stored"} and len(sources()) == 28
    history.daily()

    backfilled = history.load("market_data", [r for r in month("AAA") if r["time"].startswith("2024-02-10")])
    feb3 = FEB + 2 * DAY + timedelta(minutes=1439)  # the day's last bar: its close is the day's
    corrected = history.load("market_data", [bar_row("AAA", feb3, 23, close="110.5", known_at=MAR + 4 * DAY)])
    lag = changes_lag(consumer=CONSUMER, dataset="market_data")
    assert lag["pending"] == 2
    # before the consumer ran: the touched days are read live, the rest stored — all exact
    pending = sources()
    assert pending[FEB + 2 * DAY] == "live" and pending[FEB + 9 * DAY] == "live"
    assert sum(s == "stored" for s in pending.values()) == 27
    history.daily()
    history.daily(recorded_by=backfilled - timedelta(microseconds=1))  # as recorded before the backfill: no Feb 10

    report = rollups_refresh()
    assert report["market_data"]["changes"] == 2
    assert set(sources().values()) == {"stored"} and len(sources()) == 29
    bars = history.daily()
    assert bars[2]["close"] == Decimal("110.5") and bars[9]["bars"] == 4
    # as of before the correction was known, Feb 3 is read live with its original close
    before = history.daily(at=MAR + DAY)
    assert before[2]["close"] != Decimal("110.5") and sources(at=MAR + DAY)[FEB + 2 * DAY] == "live"
    history.daily(recorded_by=corrected - timedelta(microseconds=1))

    # the incrementally maintained rollups equal a rebuild from scratch
    incremental = rollup_rows(aggregates.DAILY_OHLCV.rollup_table)
    RollupState.objects.all().delete()
    assert set(sources().values()) == {"live"}  # without the state row nothing stored is trusted
    assert rollups_refresh(dataset="market_data")["market_data"]["rebuilt"] is True
    assert rollup_rows(aggregates.DAILY_OHLCV.rollup_table) == incremental
    stored = aggregates.aggregate_read(aggregate="daily_ohlcv", symbol="AAA", at=LATER, start=FEB, end=MAR)
    live = aggregates.aggregate_read(
        aggregate="daily_ohlcv", symbol="AAA", at=LATER, start=FEB, end=MAR, force_live=True
    )
    assert [{**r, "source": None} for r in stored] == [{**r, "source": None} for r in live]


def test_it_builds_the_day_containing_t_only_from_bars_known_at_t(history):
    day = FEB + 5 * DAY
    history.load("market_data", [bar_row("AAA", day + timedelta(hours=h), h) for h in range(24)])
    rollups_refresh()
    at = day + timedelta(hours=12, seconds=30)  # the 12:00 bar closes at 12:01
    [partial] = history.daily(at=at)
    assert (partial["bars"], partial["close"], partial["partial"]) == (12, Decimal("102.25"), True)
    assert sources(at=at) == {day: "live"}
    assert history.daily(at=day + DAY - timedelta(microseconds=1))[0]["partial"] is True
    [whole] = history.daily(at=day + DAY)  # the 23:00 bar closes at 23:01; the day ends at midnight
    assert (whole["bars"], whole["partial"]) == (24, False)
    assert sources(at=day + DAY) == {day: "stored"}


def test_it_weights_sentiment_by_mentions_per_hour(history):
    hour = FEB + timedelta(hours=14)
    rows = [
        {"time": iso(hour), "symbol": "AAA", "platform": "x", "mention_count": "10", "sentiment_avg": "0.5"},
        {"time": iso(hour), "symbol": "AAA", "platform": "reddit", "mention_count": "30", "sentiment_avg": "-0.5"},
        {"time": iso(hour), "symbol": "AAA", "platform": "stocktwits", "mention_count": "5", "sentiment_avg": ""},
    ]
    history.load("social_sentiment", rows)
    rollups_refresh()
    got = pit.hourly_sentiment(symbol="AAA", at=LATER, start=FEB, end=MAR)
    assert got == [{"time": hour, "sentiment": -0.25, "mentions": 45, "platforms": 3}]
    assert sources(aggregate="hourly_sentiment") == {hour: "stored"}
    # the window is known at its end: not before
    assert pit.hourly_sentiment(symbol="AAA", at=hour + timedelta(minutes=59), start=FEB, end=MAR) == []
    history.load("social_sentiment", [{**rows[0], "sentiment_avg": "0.9", "known_at": iso(hour + timedelta(hours=3))}])
    for at in (hour + timedelta(hours=1), hour + timedelta(hours=3), LATER):
        got = pit.hourly_sentiment(symbol="AAA", at=at, start=FEB, end=MAR)
        assert same_sentiment(got, scratch_hourly_sentiment(history.oracle, symbol="AAA", at=at, start=FEB, end=MAR))


def test_it_reads_every_bucket_live_until_the_first_rollup_run(history):
    history.load("market_data", month("AAA"))
    assert set(sources().values()) == {"live"}
    history.daily()
    rollups_refresh()
    assert set(sources().values()) == {"stored"}


@pytest.mark.parametrize(
    "change, error, message",
    [
        ({"at": datetime(2024, 3, 1)}, ValueError, "at=2024-03-01T00:00:00 is naive"),
        ({"start": MAR, "end": FEB}, ValueError, "start must not be after end"),
        ({"symbol": " "}, ValueError, "symbol is required"),
        ({"end": "2024-03-01"}, TypeError, "end must be a datetime"),
        ({"recorded_by": datetime(2024, 3, 1)}, ValueError, "recorded_by=2024-03-01T00:00:00 is naive"),
    ],
)
def test_it_rejects_bad_parameters_with_a_clear_error(change, error, message):
    params = {"symbol": "AAA", "at": LATER, "start": FEB, "end": MAR, **change}
    for selector in (pit.daily_bars, pit.hourly_sentiment):
        with pytest.raises(error, match=message):
            selector(**params)


def test_it_refuses_a_dataset_without_aggregate():
    with pytest.raises(ValueError, match="dataset 'news_events' has no aggregate"):
        rollups_refresh(dataset="news_events")


# --- a real Celery worker -------------------------------------------------------------------------


def test_it_rolls_up_after_an_upload_in_a_real_celery_worker(tmp_path, settings):
    settings.MEDIA_ROOT = tmp_path / "media"
    queue = private_queue()
    old_queue = celery_app.conf.task_default_queue
    celery_app.conf.task_default_queue = queue
    worker = start_worker(worker_env(TSM_MEDIA_ROOT=str(settings.MEDIA_ROOT)), queue)
    try:
        rows = month("AAA")
        upload = Upload.objects.create(dataset="market_data", file=SimpleUploadedFile("feb.csv", csv_bytes(rows)))
        tasks.upload_enqueue(upload_id=upload.pk)  # the worker loads it, then runs the rollups consumer
        wait_for(lambda: Upload.objects.get(pk=upload.pk).status in ("done", "failed"), what="the upload to load")
        wait_for(
            lambda: (
                RollupState.objects.filter(dataset="market_data").exists()
                and changes_lag(consumer=CONSUMER, dataset="market_data")["pending"] == 0
            ),
            what="the worker's rollups run",
        )
        assert set(sources().values()) == {"stored"} and len(sources()) == 29
        oracle = Oracle()
        oracle.load(
            "market_data", [typed_row("market_data", r) for r in rows], Upload.objects.get(pk=upload.pk).finished_at
        )  # recorded_at is not compared at T = LATER
        assert pit.daily_bars(symbol="AAA", at=LATER, start=FEB, end=MAR) == scratch_daily_bars(
            oracle, symbol="AAA", at=LATER, start=FEB, end=MAR
        )
    finally:
        stop_worker(worker)
        celery_app.conf.task_default_queue = old_queue


# --- TimescaleDB lane ----------------------------------------------------------------------------------


def needs_cagg():
    if not capabilities(fresh=True).continuous_aggregates:
        pytest.skip("needs the TimescaleDB extension: the plain PostgreSQL lane keeps rollup tables instead")


@pytest.mark.timescaledb
def test_it_keeps_continuous_aggregates_with_refresh_policies():
    needs_cagg()
    with connection.cursor() as cur:
        cur.execute("SELECT view_name FROM timescaledb_information.continuous_aggregates ORDER BY 1")
        assert [r[0] for r in cur.fetchall()] == ["daily_ohlcv", "hourly_sentiment"]
        cur.execute(
            "SELECT hypertable_name, config->>'start_offset' FROM timescaledb_information.jobs"
            " WHERE proc_name = 'policy_refresh_continuous_aggregate' ORDER BY 1"
        )
        assert cur.fetchall() == [("daily_ohlcv", "3 days"), ("hourly_sentiment", "1 day")]


@pytest.mark.timescaledb
def test_it_refreshes_the_continuous_aggregate_for_an_old_backfill_and_keeps_corrected_days_exact(history):
    needs_cagg()
    history.load("market_data", month("AAA", skip={10}))
    rollups_refresh()
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM daily_ohlcv WHERE symbol = 'AAA'")
        assert cur.fetchone()[0] == 28  # months older than the policy's 3-day window, refreshed by the consumer
    assert rollup_rows(aggregates.DAILY_OHLCV.rollup_table) == []  # one version per key: the cagg is exact
    history.load("market_data", [r for r in month("AAA") if r["time"].startswith("2024-02-10")])
    feb3 = FEB + 2 * DAY + timedelta(minutes=1439)  # the day's last bar: its close is the day's
    history.load("market_data", [bar_row("AAA", feb3, 23, close="110.5", known_at=MAR + 4 * DAY)])
    rollups_refresh()
    with connection.cursor() as cur:
        cur.execute("SELECT count(*), sum(bars) FROM daily_ohlcv WHERE symbol = 'AAA'")
        assert cur.fetchone() == (29, 29 * 4 + 1)  # the cagg counts both versions of the corrected bar
    assert [r[1] for r in rollup_rows(aggregates.DAILY_OHLCV.rollup_table)] == [FEB + 2 * DAY]
    assert set(sources().values()) == {"stored"}
    bars = history.daily()
    assert bars[2]["close"] == Decimal("110.5") and bars[2]["bars"] == 4
    history.daily(at=MAR + DAY)


@pytest.mark.timescaledb
def test_it_refreshes_the_bucket_at_the_end_of_an_invalidation(history):
    """Found by the random-history test: a load whose newest row starts a bucket that is already
    materialized (03:00 here) left that bucket stale after one refresh_continuous_aggregate call, and
    the change log moved on, so the stale bucket was read as exact."""
    needs_cagg()
    hour = FEB + timedelta(hours=3)
    first = {"time": iso(hour), "symbol": "AAA", "platform": "x", "mention_count": "10", "sentiment_avg": "0.5"}
    history.load("social_sentiment", [first, {**first, "time": iso(hour - 20 * timedelta(hours=1))}])
    rollups_refresh()
    second = {**first, "platform": "reddit", "mention_count": "30", "sentiment_avg": "-0.5"}
    history.load("social_sentiment", [second, {**second, "time": iso(hour - 20 * timedelta(hours=1))}])
    rollups_refresh()
    with connection.cursor() as cur:
        cur.execute("SELECT platforms, mentions FROM hourly_sentiment WHERE symbol = 'AAA' AND bucket = %s", [hour])
        assert cur.fetchone() == (2, 40)
    got = pit.hourly_sentiment(symbol="AAA", at=LATER, start=FEB - DAY, end=MAR)
    assert same_sentiment(
        got, scratch_hourly_sentiment(history.oracle, symbol="AAA", at=LATER, start=FEB - DAY, end=MAR)
    )
    assert got[-1] == {"time": hour, "sentiment": -0.25, "mentions": 40, "platforms": 2}


# --- manage.py rollups ----------------------------------------------------------------------------


def test_it_reports_lag_refreshes_and_rebuilds_from_the_command(history):
    from django.core.management import call_command

    def run(*args) -> dict:
        out = io.StringIO()
        call_command("rollups", *args, stdout=out)
        return json.loads(out.getvalue())

    history.load("market_data", month("AAA"))
    assert run("--lag", "--dataset", "market_data")["market_data"]["pending"] == 1
    assert run("--dataset", "market_data")["market_data"]["rebuilt"] is True
    assert run("--lag")["market_data"]["pending"] == 0
    assert run("--rebuild", "--dataset", "market_data") == {
        "market_data": {"buckets": 0 if aggregates.uses_cagg(aggregates.DAILY_OHLCV) else 29}
    }
    assert set(sources().values()) == {"stored"}
    history.daily()


def test_it_rolls_hourly_sentiment_up_per_day_mention_weighted():
    rows = [
        {"time": iso(FEB + timedelta(hours=h)), "symbol": "AAA", "platform": p, "mention_count": m, "sentiment_avg": s}
        for h, p, m, s in [(1, "reddit", 10, 0.5), (1, "x", 30, -0.1), (5, "reddit", 20, 0.2), (25, "reddit", 5, 0.9)]
    ]
    ingest_table(dataset="social_sentiment", data=rows)
    at = FEB + timedelta(days=3)
    hours = pit.hourly_sentiment(symbol="AAA", at=at, start=FEB, end=at)
    days = pit.daily_sentiment(symbol="AAA", at=at, start=FEB, end=at)
    assert [d["time"] for d in days] == [FEB, FEB + timedelta(days=1)]
    assert days[0]["sentiment"] == pytest.approx((10 * 0.5 + 30 * -0.1 + 20 * 0.2) / 60)
    assert days[0]["mentions"] == sum(h["mentions"] for h in hours if h["time"] < FEB + timedelta(days=1)) == 60
    assert days[0]["platforms"] == 2 and days[1]["platforms"] == 1
    # as of a T inside the first day, only the windows closed by then count
    early = pit.daily_sentiment(symbol="AAA", at=FEB + timedelta(hours=3), start=FEB, end=at)
    assert early == [
        {"time": FEB, "sentiment": pytest.approx((10 * 0.5 + 30 * -0.1) / 40), "mentions": 40, "platforms": 2}
    ]

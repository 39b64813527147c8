"""The curation tasks in a real Celery worker (Redis broker, the test database): the beat task checks
what the change log lists after a load; a bulk curation too large for a request runs there."""

from __future__ import annotations

import pytest

from ingestion.loader import ingest_table
from tests.helpers import bars
from tests.ingestion.workers import private_queue, start_worker, stop_worker, wait_for, worker_env
from timeseries.changes import changes_lag
from timeseries.consumer_runs import CONSUMER_SLOT_KEY
from timeseries.models import MarketData, QualityAudit, QualityFlag
from timeseries.quality_tasks import quality_check_pending, quality_scores_set_filtered
from timeseries.tasks import rollups_refresh

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_checks_new_loads_and_runs_bulk_curations_in_a_real_worker():
    ingest_table(
        dataset="market_data", data=bars("AAPL", ["10", "10.1", "13", "10.05", "10.1"]) + bars("MSFT", ["5", "5.1"])
    )
    queue = private_queue()
    worker = start_worker(worker_env(), queue)
    try:
        quality_check_pending.apply_async(("market_data",), queue=queue)
        wait_for(
            lambda: changes_lag(consumer="quality", dataset="market_data")["pending"] == 0, what="the quality checks"
        )
        assert list(QualityFlag.objects.values_list("check_name", "symbol")) == [("spike", "AAPL")]
        assert MarketData.objects.filter(quality_score=0.2).count() == 1
        quality_scores_set_filtered.apply_async(
            ("market_data", {"symbol": "MSFT"}, 0.0, "feed down", None), queue=queue
        )
        wait_for(lambda: QualityAudit.objects.filter(reason="feed down").count() == 2, what="the bulk curation")
        assert set(MarketData.objects.filter(symbol="MSFT").values_list("quality_score", flat=True)) == {0.0}
    finally:
        stop_worker(worker)


def test_the_beat_tasks_take_a_bounded_share_of_the_backlog_per_run(settings):
    """A write burst leaves thousands of change-log entries; each beat run of the rollups and quality
    consumers takes at most TSM_CONSUMER_CHANGES_PER_RUN of them (rollups: whole batches of 100), so
    the flushes are never queued behind one long run. The next runs take the rest."""

    settings.TSM_CONSUMER_CHANGES_PER_RUN = 100
    symbols = [f"S{i:03d}" for i in range(250)]
    ingest_table(dataset="market_data", data=[row for s in symbols for row in bars(s, ["10", "10.1"])])
    rollups_refresh.apply(("market_data",))  # first run: the rollups state is built from scratch
    for consumer, task in (("quality", quality_check_pending), ("rollups", rollups_refresh)):
        ingest_table(dataset="market_data", data=[row for s in symbols for row in bars(s, ["10", "10.1", "10.2"])])
        pending = changes_lag(consumer=consumer, dataset="market_data")["pending"]
        assert pending >= 250
        task.apply(("market_data",))
        assert changes_lag(consumer=consumer, dataset="market_data")["pending"] == pending - 100, consumer
        while changes_lag(consumer=consumer, dataset="market_data")["pending"]:
            task.apply(("market_data",))


def test_a_bounded_run_in_a_worker_continues_until_the_backlog_is_done():
    """Without beat (an upload's own refresh, or a quiet deployment): one task sent, the worker takes
    the backlog in bounded runs, each run sending the next, until nothing is pending."""

    symbols = [f"S{i:03d}" for i in range(250)]
    ingest_table(dataset="market_data", data=[row for s in symbols for row in bars(s, ["10", "10.1", "10.2"])])
    queue = private_queue()
    worker = start_worker(worker_env(TSM_CONSUMER_CHANGES_PER_RUN="100"), queue)
    try:
        rollups_refresh.apply_async(("market_data",), queue=queue)  # first run rebuilds; the next ones are bounded
        ingest_table(
            dataset="market_data", data=[row for s in symbols for row in bars(s, ["10", "10.1", "10.2", "10.3"])]
        )
        for consumer, task in (("rollups", rollups_refresh), ("quality", quality_check_pending)):
            assert changes_lag(consumer=consumer, dataset="market_data")["pending"] > 100
            task.apply_async(("market_data",), queue=queue)
            wait_for(
                lambda c=consumer: changes_lag(consumer=c, dataset="market_data")["pending"] == 0,
                what=f"the {consumer} backlog",
            )
    finally:
        stop_worker(worker)


@pytest.mark.parametrize("continued", [False, True], ids=["sent once", "continuation"])
def test_a_consumer_run_waits_while_another_holds_the_slot_and_finishes_the_backlog_after(continued):
    """Rollups and quality runs never work side by side (one slot across the worker processes), so one
    process stays free for the write API's flushes. A run finding the slot taken does no work but
    keeps (or starts) a continuation chain, which finishes the backlog once the slot is free — a run
    sent once, as after an upload on a worker without beat, is not lost."""
    from django.core.cache import cache

    symbols = [f"S{i:03d}" for i in range(250)]
    ingest_table(dataset="market_data", data=[row for s in symbols for row in bars(s, ["10", "10.1", "10.2"])])
    pending = changes_lag(consumer="quality", dataset="market_data")["pending"]
    assert pending > 100
    chain_key = "tsm:continue:timeseries.quality_tasks.quality_check_pending:market_data"
    cache.delete(chain_key)
    cache.set(CONSUMER_SLOT_KEY, "held by the test", timeout=120)
    queue = private_queue()
    worker = start_worker(worker_env(TSM_CONSUMER_CHANGES_PER_RUN="100"), queue)
    try:
        quality_check_pending.apply_async(("market_data",), {"continued": continued}, queue=queue)
        wait_for(lambda: cache.get(chain_key) is not None, what="the run to leave a chain behind")
        assert changes_lag(consumer="quality", dataset="market_data")["pending"] == pending
        cache.delete(CONSUMER_SLOT_KEY)
        wait_for(lambda: changes_lag(consumer="quality", dataset="market_data")["pending"] == 0, what="the backlog")
        wait_for(lambda: cache.get(chain_key) is None, what="the chain to end")
        assert cache.get(CONSUMER_SLOT_KEY) is None  # every run gave the slot back
    finally:
        cache.delete(CONSUMER_SLOT_KEY)
        stop_worker(worker)

"""The curation tasks in a real Celery worker (Redis broker, the test database): the beat task checks
what the change log lists after a load; a bulk curation too large for a request runs there."""
from __future__ import annotations

import pytest

from ingestion.loader import ingest_table
from tests.ingestion.workers import private_queue, start_worker, stop_worker, wait_for, worker_env
from tests.timeseries.test_quality import bars
from timeseries.changes import changes_lag
from timeseries.models import MarketData, QualityAudit, QualityFlag
from timeseries.quality_tasks import quality_check_pending, quality_scores_set_filtered

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_checks_new_loads_and_runs_bulk_curations_in_a_real_worker():
    ingest_table(dataset="market_data", data=bars("AAPL", ["10", "10.1", "13", "10.05", "10.1"]) + bars("MSFT", ["5", "5.1"]))
    queue = private_queue()
    worker = start_worker(worker_env(), queue)
    try:
        quality_check_pending.apply_async(("market_data",), queue=queue)
        wait_for(lambda: changes_lag(consumer="quality", dataset="market_data")["pending"] == 0, what="the quality checks")
        assert list(QualityFlag.objects.values_list("check_name", "symbol")) == [("spike", "AAPL")]
        assert MarketData.objects.filter(quality_score=0.2).count() == 1
        quality_scores_set_filtered.apply_async(("market_data", {"symbol": "MSFT"}, 0.0, "feed down", None), queue=queue)
        wait_for(lambda: QualityAudit.objects.filter(reason="feed down").count() == 2, what="the bulk curation")
        assert set(MarketData.objects.filter(symbol="MSFT").values_list("quality_score", flat=True)) == {0.0}
    finally:
        stop_worker(worker)

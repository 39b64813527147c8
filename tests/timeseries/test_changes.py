"""The change log: written by merges that store versions, read through per-consumer cursors."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction

from ingestion.loader import ingest_table
from tests.helpers import T0, bar
from timeseries.changes import changes_consume, changes_lag, changes_pending

pytestmark = pytest.mark.django_db


def test_it_logs_one_change_per_series_with_its_event_time_span():
    result = ingest_table(dataset="market_data", data=[bar("AAA", 0), bar("AAA", 5), bar("BBB", 2)])
    with transaction.atomic():
        changes = changes_pending(consumer="test", dataset="market_data")
    spans = {c.symbol: (c.first_time, c.last_time, c.recorded_at) for c in changes}
    assert spans == {
        "AAA": (T0, T0 + timedelta(minutes=5), result.recorded_at),
        "BBB": (T0 + timedelta(minutes=2), T0 + timedelta(minutes=2), result.recorded_at),
    }


def test_it_logs_nothing_for_a_replay_and_logs_a_correction():
    ingest_table(dataset="market_data", data=[bar("AAA", 0)])
    with transaction.atomic():
        first = changes_pending(consumer="test", dataset="market_data")
        changes_consume(consumer="test", dataset="market_data", through_id=first[-1].id)
    ingest_table(dataset="market_data", data=[bar("AAA", 0)])
    with transaction.atomic():
        assert changes_pending(consumer="test", dataset="market_data") == []
    ingest_table(dataset="market_data", data=[bar("AAA", 0, close="10.75")])
    with transaction.atomic():
        assert [c.symbol for c in changes_pending(consumer="test", dataset="market_data")] == ["AAA"]


def test_it_keeps_cursors_per_consumer_and_never_moves_them_backwards():
    ingest_table(dataset="market_data", data=[bar("AAA", 0)])
    ingest_table(dataset="market_data", data=[bar("BBB", 0)])
    with transaction.atomic():
        pending = changes_pending(consumer="one", dataset="market_data")
        changes_consume(consumer="one", dataset="market_data", through_id=pending[-1].id)
        changes_consume(consumer="one", dataset="market_data", through_id=pending[0].id)
    assert changes_lag(consumer="one", dataset="market_data")["pending"] == 0
    assert changes_lag(consumer="two", dataset="market_data")["pending"] == 2


@pytest.mark.django_db(transaction=True)
def test_it_refuses_a_locking_read_outside_a_transaction():
    with pytest.raises(RuntimeError, match="transaction.atomic"):
        changes_pending(consumer="test", dataset="market_data")

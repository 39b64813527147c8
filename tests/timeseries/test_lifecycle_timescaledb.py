"""TimescaleDB lane: compression layout and policies from settings, loader merges into compressed
chunks (new versions, replays, backfills), chunk-wise retention. Skipped with a reason where the
extension is absent (the plain lane's retention is tested in test_lifecycle.py)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection, transaction

from ingestion.loader import ingest_table
from tests.helpers import T0, bar
from timeseries import lifecycle, pit
from timeseries.capabilities import capabilities
from timeseries.changes import changes_pending
from timeseries.datasets import DATASETS
from timeseries.models import MarketData

pytestmark = [pytest.mark.django_db, pytest.mark.timescaledb]

HYPERTABLE_DATASETS = [d for d in DATASETS.values() if d.hypertable]  # reference data: plain tables, no policies
NO_TIMESCALE = "TimescaleDB is not installed/preloaded on this server (plain PostgreSQL lane); see docs/architecture.md"
DAY = 24 * 60  # minutes


@pytest.fixture(autouse=True)
def needs_timescaledb():
    if not capabilities(fresh=True).timescaledb:
        pytest.skip(NO_TIMESCALE)


def sql_one(query: str, params=None):
    with connection.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchone()


def compressed_chunks(table: str = "market_data") -> tuple[int, int]:
    """(compressed, all) chunks of ``table``."""
    return sql_one(
        "SELECT count(*) FILTER (WHERE is_compressed), count(*) FROM timescaledb_information.chunks"
        " WHERE hypertable_name = %s",
        [table],
    )


def policy(table: str, proc: str):
    row = sql_one(
        "SELECT config->>'compress_after', config->>'drop_after' FROM timescaledb_information.jobs "
        "WHERE hypertable_name = %s AND proc_name = %s",
        [table, proc],
    )
    return None if row is None else (row[0] or row[1])


def load_compressed() -> None:
    """Two symbols, three days of 1-minute bars (a few per day), then every chunk compressed."""
    ingest_table(
        dataset="market_data", data=[bar(s, d * DAY + m) for s in ("AAA", "BBB") for d in range(3) for m in range(5)]
    )
    assert lifecycle.chunks_compress(dataset="market_data", older_than=T0 + timedelta(days=30)) >= 1
    compressed, total = compressed_chunks()
    assert compressed == total >= 1


# --- layout and policies --------------------------------------------------------------------------


def test_it_sets_each_hypertables_compression_layout_at_migrate():
    with connection.cursor() as cur:
        for spec in HYPERTABLE_DATASETS:
            cur.execute(
                "SELECT segmentby, orderby FROM timescaledb_information.hypertable_compression_settings "
                "WHERE hypertable = %s::regclass",
                [spec.table],
            )
            segmentby, orderby = cur.fetchone()
            layout = lifecycle.compression_layout(dataset=spec.name)
            assert segmentby.replace('"', "") == ",".join(layout.segmentby), spec.name
            assert orderby.replace('"', "") == ",".join(layout.orderby), spec.name


def test_it_adds_compression_and_retention_policies_from_settings_at_migrate(settings):
    for spec in HYPERTABLE_DATASETS:
        assert policy(spec.table, "policy_compression") == settings.TSM_COMPRESS_AFTER[spec.name]
        assert policy(spec.table, "policy_retention") == settings.TSM_RETENTION[spec.name]


def test_it_changes_only_what_the_settings_changed_and_removes_a_policy_set_to_none(settings):
    assert all(not d["actions"] for d in lifecycle.lifecycle_apply())  # idempotent
    settings.TSM_COMPRESS_AFTER = {**settings.TSM_COMPRESS_AFTER, "market_data": "14 days"}
    settings.TSM_RETENTION = {**settings.TSM_RETENTION, "news_events": None}
    done = {d["dataset"]: d["actions"] for d in lifecycle.lifecycle_apply()}
    assert done["market_data"] == ["policy_compression 14 days"]
    assert done["news_events"] == ["removed policy_retention"]
    assert done["social_sentiment"] == []
    assert policy("market_data", "policy_compression") == "14 days"
    assert policy("news_events", "policy_retention") is None


def test_it_delays_the_first_run_of_a_new_policy_job(settings):
    settings.TSM_RETENTION = {**settings.TSM_RETENTION, "insider_trades": "30 years"}
    lifecycle.lifecycle_apply(datasets=["insider_trades"])
    wait = sql_one(
        "SELECT min(next_start) - now() FROM timescaledb_information.jobs WHERE hypertable_name = 'insider_trades' "
        "AND proc_name = 'policy_retention'"
    )[0]
    assert timedelta(minutes=50) < wait <= timedelta(hours=1)


def test_it_undoes_policies_and_compression_when_the_migration_is_reversed():
    load_compressed()
    lifecycle.lifecycle_remove()
    assert compressed_chunks()[0] == 0
    assert MarketData.objects.count() == 30
    for spec in DATASETS.values():
        assert policy(spec.table, "policy_compression") is None and policy(spec.table, "policy_retention") is None
    assert sql_one("SELECT bool_or(compression_enabled) FROM timescaledb_information.hypertables")[0] is False
    done = {d["dataset"]: d["actions"] for d in lifecycle.lifecycle_apply()}
    assert len(done["market_data"]) == 3  # layout, compression policy, retention policy back again


def test_it_compresses_only_chunks_older_than_the_setting():
    ingest_table(dataset="market_data", data=[bar("AAA", 0), bar("AAA", 40 * DAY)])
    n = lifecycle.chunks_compress(dataset="market_data", older_than=T0 + timedelta(days=20))
    assert n == 1
    assert compressed_chunks() == (1, 2)


# --- the loader on compressed chunks --------------------------------------------------------------


def test_it_ignores_a_replay_into_compressed_chunks():
    load_compressed()
    again = ingest_table(
        dataset="market_data", data=[bar(s, d * DAY + m) for s in ("AAA", "BBB") for d in range(3) for m in range(5)]
    )
    assert (again.inserted, again.revised, again.duplicates) == (0, 0, 30)
    assert MarketData.objects.count() == 30


def test_it_stores_a_correction_into_a_compressed_chunk_as_a_new_version():
    load_compressed()
    late = T0 + timedelta(days=1, hours=3)
    fix = ingest_table(dataset="market_data", data=[bar("AAA", DAY + 2, close="10.25", known_at=late.isoformat())])
    assert (fix.inserted, fix.revised, fix.duplicates) == (0, 1, 0)
    key_time = T0 + timedelta(days=1, minutes=2)
    old = pit.history(
        dataset="market_data", at=late - timedelta(seconds=1), symbols=["AAA"], start=key_time, end=key_time
    )
    new = pit.history(dataset="market_data", at=late, symbols=["AAA"], start=key_time, end=key_time)
    assert [r["close"] for r in old] == [Decimal("10.5")]
    assert [r["close"] for r in new] == [Decimal("10.25")]
    assert MarketData.objects.filter(symbol="AAA", time=key_time).count() == 2
    with transaction.atomic():
        assert [c.symbol for c in changes_pending(consumer="test-lifecycle", dataset="market_data")][-1] == "AAA"


def test_it_stores_a_same_known_at_fix_into_a_compressed_chunk_and_replays_it_as_a_no_op():
    load_compressed()
    fix = ingest_table(dataset="market_data", data=[bar("BBB", 4, close="10.75")])
    assert (fix.inserted, fix.revised) == (0, 1)
    replay = ingest_table(dataset="market_data", data=[bar("BBB", 4, close="10.75")])
    assert (replay.inserted, replay.revised, replay.duplicates) == (0, 0, 1)
    now = pit.market_state(at=T0 + timedelta(minutes=5), symbols=["BBB"])
    assert [r["close"] for r in now] == [Decimal("10.75")]
    then = pit.market_state(
        at=T0 + timedelta(minutes=5), symbols=["BBB"], recorded_by=fix.recorded_at - timedelta(microseconds=1)
    )
    assert [r["close"] for r in then] == [Decimal("10.5")]


def test_it_corrects_one_bar_in_a_compressed_chunk_decompressing_only_that_series():
    """A correction into a compressed chunk decompresses the batches of its own series only: with a
    second unique index (the old UNIQUE (id, time)) TimescaleDB could filter batches on ``time``
    alone and decompressed every symbol's batch around that minute (30 x 40 rows here)."""
    symbols = [f"S{i:02d}" for i in range(30)]
    ingest_table(dataset="market_data", data=[bar(s, m) for s in symbols for m in range(40)])
    assert lifecycle.chunks_compress(dataset="market_data", older_than=T0 + timedelta(days=30)) >= 1
    late = T0 + timedelta(hours=5)
    with transaction.atomic():
        with connection.cursor() as cur:  # one series' batch holds 40 rows; all 30 hold 1,200
            cur.execute("SET LOCAL timescaledb.max_tuples_decompressed_per_dml_transaction = 200")
        fix = ingest_table(dataset="market_data", data=[bar("S07", 3, close="10.25", known_at=late.isoformat())])
    assert (fix.inserted, fix.revised) == (0, 1)
    got = pit.history(
        dataset="market_data", at=late, symbols=["S07"], start=T0 + timedelta(minutes=3), end=T0 + timedelta(minutes=3)
    )
    assert [r["close"] for r in got] == [Decimal("10.25")]


def test_it_backfills_new_bars_into_a_compressed_chunk():
    load_compressed()
    gap = ingest_table(dataset="market_data", data=[bar("AAA", DAY + m) for m in range(10, 20)] + [bar("CCC", 7)])
    assert (gap.inserted, gap.revised, gap.duplicates) == (11, 0, 0)
    assert MarketData.objects.count() == 41
    got = pit.history(
        dataset="market_data",
        at=T0 + timedelta(days=2),
        symbols=["AAA"],
        start=T0 + timedelta(days=1),
        end=T0 + timedelta(days=1, minutes=30),
    )
    assert [r["time"] for r in got] == [T0 + timedelta(days=1, minutes=m) for m in (*range(5), *range(10, 20))]


def test_it_keeps_the_version_constraint_on_compressed_chunks():
    load_compressed()
    row = MarketData.objects.filter(symbol="AAA").order_by("time").values().first()
    from django.db import IntegrityError

    with pytest.raises(IntegrityError), transaction.atomic():
        MarketData.objects.create(**{k: v for k, v in row.items() if k != "id"})


# --- retention and the report ---------------------------------------------------------------------


def test_it_drops_whole_expired_chunks_and_previews_them():
    ingest_table(dataset="market_data", data=[bar("AAA", 0), bar("AAA", 1), bar("AAA", 40 * DAY)])
    now = T0.replace(year=T0.year + 10) + timedelta(days=20)
    preview = lifecycle.retention_preview(dataset="market_data", now=now)
    assert len(preview.chunks) == 1 and preview.method.startswith("drop_chunks")
    assert (preview.oldest, preview.newest, preview.series) == (T0, T0 + timedelta(minutes=1), 1)
    result = lifecycle.retention_apply(dataset="market_data", now=now)
    assert (result.chunks_dropped, result.rows_deleted) == (1, 0)
    assert list(MarketData.objects.values_list("time", flat=True)) == [T0 + timedelta(days=40)]


def test_it_drops_compressed_chunks_too():
    load_compressed()
    result = lifecycle.retention_apply(dataset="market_data", now=T0.replace(year=T0.year + 11))
    assert result.chunks_dropped >= 1
    assert MarketData.objects.count() == 0


def test_it_reports_the_compression_ratio_of_compressed_chunks():
    ingest_table(dataset="market_data", data=[bar(s, m) for s in ("AAA", "BBB", "CCC") for m in range(600)])
    lifecycle.chunks_compress(dataset="market_data", older_than=T0 + timedelta(days=30))
    (report,) = lifecycle.storage_report(datasets=["market_data"])
    comp = report["compression"]
    assert comp["compressed_chunks"] == comp["chunks"] == 1
    assert comp["before_bytes"] > comp["after_bytes"] > 0
    assert comp["ratio"] == round(comp["before_bytes"] / comp["after_bytes"], 2) > 1
    assert report["time_min"] == T0.isoformat() and report["time_max"] == (T0 + timedelta(minutes=599)).isoformat()
    assert report["bytes"]["total"] == sql_one("SELECT hypertable_size('market_data')")[0]

"""The write path: validation rules (each with its message and "nothing stored"), versions, replays."""

from __future__ import annotations

import gzip
import io
import json
from datetime import timedelta
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingestion.checks import InputError
from ingestion.loader import STAGING_PREFIX, LoadRejected, ingest_file, ingest_table, merge, staging_drop_stale
from ingestion.models import Load, RejectedRow
from tests.helpers import T0, bar
from timeseries import pit
from timeseries.datasets import DATASETS
from timeseries.models import InsiderTrade, MarketData, NewsEvent, SocialSentiment

pytestmark = pytest.mark.django_db


def csv_bytes(rows: list[dict]) -> bytes:
    columns = list(rows[0])
    lines = [",".join(columns)] + [",".join(str(r.get(c, "")) for c in columns) for r in rows]
    return ("\n".join(lines) + "\n").encode()


def rejected(dataset: str, rows, **kwargs) -> LoadRejected:
    with pytest.raises(LoadRejected) as info:
        ingest_table(dataset=dataset, data=rows, **kwargs)
    return info.value


def messages(exc: LoadRejected) -> list[str]:
    return [str(e) for e in exc.result.errors]


# --- validation: every rule names row and column, and nothing is stored ---------------------------

BAD_BAR_CASES = [
    ({"high": "8"}, "row 2, column 'high': high is below low"),
    ({"open": "12"}, "row 2, column 'open': open is outside [low, high]"),
    ({"close": "8.5", "low": "9"}, "row 2, column 'close': close is outside [low, high]"),
    ({"volume": "-5"}, "row 2, column 'volume': volume must not be negative"),
    ({"close": "NaN"}, "row 2, column 'close': 'NaN' is not a finite number (NaN and infinity are not allowed)"),
    ({"close": "inf"}, "row 2, column 'close': 'inf' is not a finite number (NaN and infinity are not allowed)"),
    ({"close": "ten"}, "row 2, column 'close': 'ten' is not a number"),
    ({"volume": "1.5"}, "row 2, column 'volume': '1.5' is not an integer"),
    ({"close": "10.1234567"}, "row 2, column 'close': '10.1234567' has more than 6 decimal places"),
    (
        {"time": "2024-03-01T14:31:00"},
        "row 2, column 'time': '2024-03-01T14:31:00' has no UTC offset:"
        " naive timestamps are ambiguous, add Z or +00:00",
    ),
    ({"time": "yesterday"}, "row 2, column 'time': 'yesterday' is not an ISO 8601 timestamp with an offset"),
    (  # before year 1 in UTC: Python cannot hold it, the message names it all the same
        {"time": "0001-01-01T00:00:00+00:01"},
        "row 2, column 'time': 0000-12-31T23:59:00.000000Z is outside the supported range of stored instants"
        " (from 1800-01-01T00:00:00Z up to (not including) 2200-01-01T00:00:00Z)",
    ),
    ({"symbol": "  "}, "row 2, column 'symbol': symbol is required"),
    ({"quality_score": "1.5"}, "row 2, column 'quality_score': quality_score must be between 0 and 1"),
    ({"symbol": "X" * 33}, "row 2, column 'symbol': symbol is longer than 32 characters (33)"),
    ({"source": "é" * 65}, "row 2, column 'source': source is longer than 64 characters (65)"),
    (
        {"source": "a\x00b"},
        "row 2, column 'source': source contains a NUL character, which PostgreSQL text cannot hold",
    ),
    (
        {"known_at": (T0 + timedelta(seconds=90)).isoformat()},
        "row 2, column 'known_at': known_at is earlier than this dataset allows"
        " (bar close: time + bar interval (default 1 minute))",
    ),
]


@pytest.mark.parametrize("change, message", BAD_BAR_CASES, ids=[m.split(": ", 1)[1][:40] for _, m in BAD_BAR_CASES])
def test_it_rejects_a_bad_bar_naming_row_and_column_and_stores_nothing(change, message):
    rows = [bar("AAPL", 0), {**bar("AAPL", 1), **change}, bar("AAPL", 2)]
    exc = rejected("market_data", rows)
    assert message in messages(exc)
    assert exc.result.rejected == 1
    assert MarketData.objects.count() == 0
    assert Load.objects.get(pk=exc.result.load_id).status == Load.Status.REJECTED


def test_every_text_column_holds_what_its_table_column_holds():
    """The declared max_length of each text column is the model's CharField max_length (None for a
    TextField), so an over-long value is a row error naming its column, never a database error."""
    for spec in DATASETS.values():
        model = spec.model
        for col in spec.columns:
            if col.kind == "text":
                assert col.max_length == model._meta.get_field(col.name).max_length, (spec.name, col.name)


def test_it_reports_every_bad_row_not_just_the_first():
    rows = [bar("AAPL", i, high="8") if i % 2 else bar("AAPL", i) for i in range(10)]
    exc = rejected("market_data", rows)
    assert exc.result.rejected == 5
    assert sorted({e.row for e in exc.result.errors}) == [2, 4, 6, 8, 10]
    assert RejectedRow.objects.filter(load_id=exc.result.load_id).values("row_number").distinct().count() == 5


def test_it_quarantines_bad_rows_and_stores_the_good_ones_on_skip():
    rows = [bar("AAPL", 0), bar("AAPL", 1, volume="-1"), bar("AAPL", 2)]
    result = ingest_table(dataset="market_data", data=rows, on_error="skip")
    assert (result.inserted, result.rejected) == (2, 1)
    assert MarketData.objects.count() == 2
    kept = RejectedRow.objects.get(load_id=result.load_id)
    assert (kept.row_number, kept.column, kept.reason) == (2, "volume", "volume must not be negative")
    assert kept.raw["volume"] == "-1" and kept.raw["symbol"] == "AAPL"


def test_it_rejects_an_unknown_column_by_name():
    with pytest.raises(InputError, match=r"unknown column\(s\) 'colse'"):
        ingest_table(dataset="market_data", data=[{**bar("AAPL", 0), "colse": "1"}])
    assert MarketData.objects.count() == 0


def test_it_rejects_a_missing_key_column_by_name():
    row = bar("AAPL", 0)
    del row["symbol"]
    with pytest.raises(InputError, match=r"missing required column\(s\) 'symbol' for dataset 'market_data'"):
        ingest_table(dataset="market_data", data=[row])


def test_it_rejects_an_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset 'prices'"):
        ingest_table(dataset="prices", data=[bar("AAPL", 0)])


def test_it_rejects_a_bar_known_before_it_closes_for_the_uploads_interval():
    row = bar("AAPL", 0, known_at=(T0 + timedelta(minutes=3)).isoformat())
    exc = rejected("market_data", [row], bar_interval=timedelta(minutes=5))
    assert "row 1, column 'known_at'" in messages(exc)[0]


def test_it_defaults_known_at_to_the_bar_close_for_the_uploads_interval():
    ingest_table(dataset="market_data", data=[bar("AAPL", 0)], bar_interval=timedelta(minutes=5))
    assert MarketData.objects.get().known_at == T0 + timedelta(minutes=5)


def test_it_requires_filing_date_for_insider_trades_and_uses_it_as_known_at():
    trade = {
        "time": T0.isoformat(),
        "symbol": "AAPL",
        "insider_name": "Jane Roe",
        "transaction_type": "buy",
        "shares": "100",
        "price": "10",
        "value": "1000",
    }
    with pytest.raises(InputError, match=r"missing required column\(s\) 'filing_date'"):
        ingest_table(dataset="insider_trades", data=[trade])
    filed = (T0 + timedelta(days=2)).isoformat()
    ingest_table(dataset="insider_trades", data=[{**trade, "filing_date": filed}])
    assert InsiderTrade.objects.get().known_at == T0 + timedelta(days=2)


def test_it_rejects_a_filing_before_the_transaction():
    trade = {
        "time": T0.isoformat(),
        "symbol": "AAPL",
        "insider_name": "Jane Roe",
        "transaction_type": "buy",
        "filing_date": (T0 - timedelta(days=1)).isoformat(),
    }
    exc = rejected("insider_trades", [trade])
    assert "row 1, column 'filing_date': filing_date is before the transaction date (time)" in messages(exc)


def test_it_rejects_a_sentiment_window_not_on_the_hour():
    row = {
        "time": (T0 + timedelta(minutes=15)).isoformat(),
        "symbol": "AAPL",
        "platform": "reddit",
        "mention_count": "3",
    }
    exc = rejected("social_sentiment", [row])
    assert "row 1, column 'time': time must be the start of an hourly window" in messages(exc)


def test_it_rejects_conflicting_versions_in_one_file():
    rows = [bar("AAPL", 0, close="10.5"), bar("AAPL", 0, close="10.6")]
    exc = rejected("market_data", rows)
    assert "row 2, column 'known_at': conflicts with row 1: same key and known_at, different values" in messages(exc)
    assert MarketData.objects.count() == 0


# --- versions, duplicates, replays -------------------------------------------------------------


def test_it_is_a_no_op_to_replay_the_same_rows():
    rows = [bar(s, m) for s in ("AAPL", "MSFT") for m in range(5)]
    first = ingest_table(dataset="market_data", data=rows)
    again = ingest_table(dataset="market_data", data=rows)
    assert first.counts() == {"inserted": 10, "revised": 0, "duplicates": 0, "rejected": 0, "resent": 0, "outranked": 0}
    assert again.counts() == {"inserted": 0, "revised": 0, "duplicates": 10, "rejected": 0, "resent": 0, "outranked": 0}
    assert MarketData.objects.count() == 10


def test_it_counts_exact_duplicates_inside_one_file():
    result = ingest_table(dataset="market_data", data=[bar("AAPL", 0), bar("AAPL", 0), bar("AAPL", 1)])
    assert result.counts() == {"inserted": 2, "revised": 0, "duplicates": 1, "rejected": 0, "resent": 0, "outranked": 0}


def test_it_stores_a_correction_as_a_new_version_and_keeps_the_old_one():
    ingest_table(dataset="market_data", data=[bar("AAPL", 0, close="10.5")])
    late = (T0 + timedelta(hours=3)).isoformat()
    result = ingest_table(dataset="market_data", data=[bar("AAPL", 0, close="10.7", known_at=late)])
    assert result.counts() == {"inserted": 0, "revised": 1, "duplicates": 0, "rejected": 0, "resent": 0, "outranked": 0}
    closes = sorted(MarketData.objects.values_list("close", flat=True))
    assert closes == [Decimal("10.5"), Decimal("10.7")]
    before = pit.market_state(at=T0 + timedelta(hours=1), symbols=["AAPL"])
    after = pit.market_state(at=T0 + timedelta(hours=3), symbols=["AAPL"])
    assert before[0]["close"] == Decimal("10.5") and after[0]["close"] == Decimal("10.7")


def test_it_keeps_a_same_known_at_correction_replayable_by_recorded_by():
    first = ingest_table(dataset="market_data", data=[bar("AAPL", 0, close="10.5")])
    second = ingest_table(dataset="market_data", data=[bar("AAPL", 0, close="10.4")])
    assert second.revised == 1
    at = T0 + timedelta(minutes=5)
    assert pit.market_state(at=at)[0]["close"] == Decimal("10.4")
    assert pit.market_state(at=at, recorded_by=first.recorded_at)[0]["close"] == Decimal("10.5")
    assert pit.market_state(at=at, recorded_by=first.recorded_at - timedelta(microseconds=1)) == []


def test_it_treats_a_later_known_identical_row_as_a_duplicate():
    ingest_table(dataset="market_data", data=[bar("AAPL", 0)])
    result = ingest_table(dataset="market_data", data=[bar("AAPL", 0, known_at=(T0 + timedelta(days=1)).isoformat())])
    assert result.counts()["duplicates"] == 1
    assert MarketData.objects.count() == 1


def test_it_keeps_two_stories_published_in_the_same_second():
    story = {"time": T0.isoformat(), "symbol": "AAPL", "source": "wire"}
    rows = [
        {**story, "title": "Up", "url": "https://example.test/a"},
        {**story, "title": "Down", "url": "https://example.test/b"},
    ]
    result = ingest_table(dataset="news_events", data=rows)
    assert result.inserted == 2
    assert NewsEvent.objects.values("news_id").distinct().count() == 2
    again = ingest_table(dataset="news_events", data=rows)
    assert again.duplicates == 2


# --- formats -----------------------------------------------------------------------------------


def test_it_loads_csv_gzip_parquet_and_ndjson_to_the_same_rows(tmp_path):
    rows = [bar(s, m) for s in ("AAPL", "MSFT") for m in range(3)]
    csv = csv_bytes(rows)
    (tmp_path / "a.csv").write_bytes(csv)
    (tmp_path / "a.csv.gz").write_bytes(gzip.compress(csv))
    (tmp_path / "a.ndjson").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    table = pa.Table.from_pylist(rows)
    table = table.set_column(0, "time", table.column("time").cast(pa.timestamp("us", tz="UTC")))
    pq.write_table(table, tmp_path / "a.parquet")
    first = ingest_file(dataset="market_data", path=tmp_path / "a.csv")
    assert first.inserted == 6
    for name in ("a.csv.gz", "a.parquet", "a.ndjson"):
        result = ingest_file(dataset="market_data", path=tmp_path / name)
        assert result.counts() == {
            "inserted": 0,
            "revised": 0,
            "duplicates": 6,
            "rejected": 0,
            "resent": 0,
            "outranked": 0,
        }, name


def test_it_recognises_the_format_by_content_not_by_name(tmp_path):
    path = tmp_path / "bars.parquet"  # really a CSV
    path.write_bytes(csv_bytes([bar("AAPL", 0)]))
    assert ingest_file(dataset="market_data", path=path).inserted == 1


def test_it_rejects_a_naive_parquet_timestamp():
    table = pa.table(
        {
            "time": pa.array([T0.replace(tzinfo=None)], pa.timestamp("us")),
            "symbol": ["AAPL"],
            "open": [10.0],
            "high": [11.0],
            "low": [9.0],
            "close": [10.0],
            "volume": [1],
        }
    )
    buf = io.BytesIO()
    pq.write_table(table, buf)
    with pytest.raises(LoadRejected) as info:
        ingest_file(dataset="market_data", path=buf.getvalue())
    assert "row 1, column 'time': naive timestamp" in str(info.value.result.errors[0])


def test_it_rejects_a_truncated_gzip(tmp_path):
    data = gzip.compress(csv_bytes([bar("AAPL", m) for m in range(2000)]))
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="cannot read the CSV input"):
        ingest_file(dataset="market_data", path=path)
    assert MarketData.objects.count() == 0


def test_it_rejects_an_empty_file(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_bytes(b"time,symbol,open,high,low,close,volume\n")
    with pytest.raises(InputError, match="no data rows"):
        ingest_file(dataset="market_data", path=path)


def test_it_loads_a_file_larger_than_one_batch(tmp_path, settings):
    settings.TSM_INGEST_BATCH_ROWS = 1000
    rows = [bar(s, m) for s in ("AAPL", "MSFT", "IBM") for m in range(1500)]
    path = tmp_path / "big.csv"
    path.write_bytes(csv_bytes(rows))
    result = ingest_file(dataset="market_data", path=path)
    assert result.inserted == 4500
    assert SocialSentiment.objects.count() == 0
    assert pit.market_state(at=T0 + timedelta(days=2), symbols=["IBM"])[0]["time"] == T0 + timedelta(minutes=1499)


def test_it_quarantines_bad_rows_found_in_later_chunks_of_a_large_file(tmp_path, settings):
    settings.TSM_INGEST_BATCH_ROWS = 500
    rows = [bar("AAPL", m, volume="-1") if m % 700 == 699 else bar("AAPL", m) for m in range(3000)]
    path = tmp_path / "big.csv"
    path.write_bytes(csv_bytes(rows))
    progress: list[int] = []
    result = ingest_file(dataset="market_data", path=path, on_error="skip", progress=progress.append)
    assert (result.inserted, result.rejected) == (2996, 4)
    assert sorted(RejectedRow.objects.filter(load_id=result.load_id).values_list("row_number", flat=True)) == [
        700,
        1400,
        2100,
        2800,
    ]
    assert progress and progress[-1] == 3000


def test_it_drops_staging_tables_of_dead_loads_but_not_of_running_ones():
    from django.db import connection
    from django.utils import timezone

    running = Load.objects.create(dataset="market_data", source="running")
    dead = Load.objects.create(dataset="market_data", source="killed")
    Load.objects.filter(pk=dead.pk).update(started_at=timezone.now() - timedelta(days=1))
    with connection.cursor() as cur:
        for load in (running, dead):
            cur.execute(f'CREATE UNLOGGED TABLE "{STAGING_PREFIX}{load.id.hex}" (x int)')
    assert staging_drop_stale() == [STAGING_PREFIX + dead.id.hex]
    with connection.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE tablename LIKE 'ingest\\_stage\\_%%'")
        assert [r[0] for r in cur.fetchall()] == [STAGING_PREFIX + running.id.hex]
    dead.refresh_from_db()
    assert dead.status == Load.Status.FAILED


def test_it_appends_a_backfill_into_a_gap_of_a_series_without_the_version_merge(monkeypatch):
    ingest_table(dataset="market_data", data=[bar("AAPL", 0), bar("AAPL", 100)])
    merged = []
    original = merge._merge_versions
    monkeypatch.setattr(merge, "_merge_versions", lambda *a, **k: merged.append(1) or original(*a, **k))
    gap = ingest_table(dataset="market_data", data=[bar("AAPL", m) for m in range(10, 20)])
    assert gap.counts()["inserted"] == 10 and merged == []  # nothing stored in [10, 19]: appended
    again = ingest_table(dataset="market_data", data=[bar("AAPL", m, close="10.75") for m in range(15, 25)])
    assert merged == [1] and (again.revised, again.inserted) == (5, 5)  # overlaps stored rows: merged


# --- the direct path: rows proven new are COPYed straight into the dataset ------------------------


def staging_tables() -> list[str]:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE tablename LIKE 'ingest\\_stage\\_%%'")
        return [r[0] for r in cur.fetchall()]


@pytest.mark.django_db(transaction=True)
def test_it_copies_a_new_time_ordered_file_straight_into_the_dataset_batch_by_batch(tmp_path, settings):
    settings.TSM_INGEST_BATCH_ROWS = 7  # series spread over many batches, never overlapping in time
    rows = [bar(s, m) for m in range(20) for s in ("AAPL", "MSFT", "IBM")]
    path = tmp_path / "bars.csv"
    path.write_bytes(csv_bytes(rows))
    result = ingest_file(dataset="market_data", path=path)
    assert (result.inserted, result.copied, result.restarted) == (60, 60, "")
    assert MarketData.objects.count() == 60 and set(MarketData.objects.values_list("recorded_at", flat=True)) == {
        result.recorded_at
    }
    assert staging_tables() == []
    assert {r["symbol"]: r["time"] for r in pit.market_state(at=T0 + timedelta(days=1))} == {
        s: T0 + timedelta(minutes=19) for s in ("AAPL", "MSFT", "IBM")
    }
    again = ingest_file(dataset="market_data", path=path, source="same rows, other name")
    assert (again.inserted, again.duplicates, MarketData.objects.count()) == (0, 60, 60)


@pytest.mark.django_db(transaction=True)
def test_it_redoes_the_load_through_staging_when_a_later_batch_corrects_a_copied_row(settings):
    settings.TSM_INGEST_BATCH_ROWS = 2
    later = (T0 + timedelta(minutes=5)).isoformat()
    rows = [bar("AAPL", 0), bar("AAPL", 1), bar("AAPL", 0, close="10.75", known_at=later)]
    result = ingest_table(dataset="market_data", data=rows)
    assert "COPYed" in result.restarted and result.copied == 0
    assert (result.inserted, result.revised, result.duplicates) == (2, 1, 0)
    assert sorted(MarketData.objects.filter(time=T0).values_list("close", flat=True)) == [
        Decimal("10.5"),
        Decimal("10.75"),
    ]


@pytest.mark.django_db(transaction=True)
def test_it_counts_a_copied_row_repeated_in_a_later_batch_as_a_duplicate_without_redoing(settings):
    settings.TSM_INGEST_BATCH_ROWS = 2
    result = ingest_table(dataset="market_data", data=[bar("AAPL", 0), bar("AAPL", 1), bar("AAPL", 1)])
    assert (result.inserted, result.duplicates, result.restarted) == (2, 1, "")
    assert MarketData.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_bad_row_after_copied_batches_stores_nothing_and_keeps_the_bad_row(settings):
    settings.TSM_INGEST_BATCH_ROWS = 2
    rows = [bar("AAPL", m) for m in range(4)] + [bar("AAPL", 4, volume="-1")]
    with pytest.raises(LoadRejected) as info:
        ingest_table(dataset="market_data", data=rows)
    assert messages(info.value) == ["row 5, column 'volume': volume must not be negative"]
    assert MarketData.objects.count() == 0 and staging_tables() == []
    load = Load.objects.get(pk=info.value.result.load_id)
    assert load.status == Load.Status.REJECTED
    assert list(RejectedRow.objects.filter(load=load).values_list("row_number", "column")) == [(5, "volume")]


@pytest.mark.django_db(transaction=True)
def test_a_conflict_between_batches_after_a_copy_is_quarantined_on_skip(settings):
    settings.TSM_INGEST_BATCH_ROWS = 2
    rows = [bar("AAPL", 0), bar("AAPL", 1), bar("AAPL", 2), bar("AAPL", 0, close="10.75")]
    result = ingest_table(dataset="market_data", data=rows, on_error="skip")
    assert result.restarted  # the fourth row gives a COPYed key other values: redone through staging
    assert (result.inserted, result.rejected) == (2, 2)
    assert sorted(RejectedRow.objects.filter(load_id=result.load_id).values_list("row_number", flat=True)) == [1, 4]
    assert sorted(MarketData.objects.values_list("time", flat=True)) == [T0 + timedelta(minutes=m) for m in (1, 2)]


def test_a_stream_that_cannot_be_read_twice_is_staged(tmp_path):
    class OneWay(io.RawIOBase):
        def __init__(self, data: bytes):
            self.inner = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, b) -> int:
            chunk = self.inner.read(len(b))
            b[: len(chunk)] = chunk
            return len(chunk)

    result = ingest_file(dataset="market_data", path=OneWay(csv_bytes([bar("AAPL", m) for m in range(3)])))
    assert (result.inserted, result.copied) == (3, 0)

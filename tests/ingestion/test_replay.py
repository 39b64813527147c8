"""The replay shortcut (ingestion/replay.py): a file re-sent unchanged stores nothing and stages nothing,
and every case where re-sending could store a version takes the normal path with the oracle's result."""

from __future__ import annotations

import gzip
import hashlib
import io
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from ingestion import replay, uploads
from ingestion.loader import LoadResult, ingest_file, ingest_table, staging
from ingestion.models import Load, RejectedRow, Upload
from tests.helpers import T0, assert_same_rows, bar, csv_bytes, stored_versions
from tests.oracle import Oracle, typed_row

pytestmark = pytest.mark.django_db

ROWS = [bar(s, m, close=f"10.{m % 10}") for s in ("AAPL", "MSFT") for m in range(30)]


class Tracked:
    """Loads through the loader and the oracle side by side; checks counts and stored versions."""

    def __init__(self):
        self.oracle = Oracle()
        self.last = datetime(2000, 1, 1, tzinfo=UTC)

    def ingest(self, rows: list[dict], path, **kwargs) -> LoadResult:
        result = ingest_file(dataset="market_data", path=path, **kwargs)
        recorded_at = result.recorded_at or self.last + timedelta(microseconds=1)  # a shortcut stores nothing
        expected = self.oracle.load(
            "market_data",
            [typed_row("market_data", r) for r in rows],
            recorded_at,
            bar_interval=kwargs.get("bar_interval", timedelta(minutes=1)),
            on_error=kwargs.get("on_error", "reject"),
            feed=kwargs.get("feed", ""),
            reassert=kwargs.get("reassert", False),
        )
        self.last = recorded_at
        assert result.counts() == expected
        assert_same_rows(stored_versions("market_data"), self.oracle.all_versions("market_data"), "stored versions")
        return result


def load_of(result: LoadResult) -> Load:
    return Load.objects.get(pk=result.load_id)


@pytest.fixture
def tracked() -> Tracked:
    return Tracked()


@pytest.fixture
def bars_file(tmp_path):
    path = tmp_path / "bars.csv"
    path.write_bytes(csv_bytes(ROWS))
    return path


def test_it_takes_the_shortcut_for_the_same_file_sent_again(tracked, bars_file, monkeypatch):
    first = tracked.ingest(ROWS, bars_file)
    assert first.inserted == 60 and first.replay_of is None
    stored = load_of(first)
    assert stored.content_sha256 == hashlib.sha256(bars_file.read_bytes()).hexdigest()  # hashed while streaming
    assert stored.content_bytes == bars_file.stat().st_size and stored.replay_key
    assert "not tried" in stored.replay_note
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM timeseries_change")
        changes_before = cur.fetchone()[0]

    def no_staging(*args, **kwargs):
        raise AssertionError("the replay was staged")

    monkeypatch.setattr(staging, "stage_batches", no_staging)
    again = tracked.ingest(ROWS, bars_file)

    assert again.counts() == {"inserted": 0, "revised": 0, "duplicates": 60, "rejected": 0, "resent": 0, "outranked": 0}
    assert again.rows_read == 60 and again.recorded_at is None and again.replay_of == first.load_id
    replayed = load_of(again)
    assert replayed.status == "done" and replayed.replay_of_id == first.load_id
    assert replayed.replay_note.startswith("replay shortcut taken: same bytes and options as load")
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM timeseries_change")
        assert cur.fetchone()[0] == changes_before  # nothing merged, nothing logged


def test_it_takes_the_shortcut_again_for_a_replay_of_a_replay(tracked, bars_file):
    first = tracked.ingest(ROWS, bars_file)
    second = tracked.ingest(ROWS, bars_file)
    third = tracked.ingest(ROWS, bars_file)
    assert second.replay_of == first.load_id
    assert third.replay_of in (first.load_id, second.load_id) and third.duplicates == 60


def test_it_takes_the_normal_path_after_a_correction_with_the_same_known_at(tracked, bars_file, tmp_path):
    tracked.ingest(ROWS, bars_file)
    fix = [bar("AAPL", 7, close="10.99")]  # same key, same known_at (time + 1 min), other values
    tracked.ingest(fix, csv_bytes(fix))

    again = tracked.ingest(ROWS, bars_file)  # the original value is a re-send of a superseded version (#16)

    assert again.replay_of is None and again.revised == 0 and again.duplicates == 60 and again.resent == 1
    note = load_of(again).replay_note
    assert note.startswith("replay shortcut not taken: change ") and "AAPL" in note and "overlaps its span" in note


def test_it_takes_the_shortcut_for_the_next_re_delivery_and_counts_the_re_sent_row_again(tracked, bars_file):
    tracked.ingest(ROWS, bars_file)
    fix = [bar("AAPL", 7, close="10.99")]
    tracked.ingest(fix, csv_bytes(fix))
    merged = tracked.ingest(ROWS, bars_file)  # normal path: nothing stored, one row re-sent

    again = tracked.ingest(ROWS, bars_file)  # nothing changed since: the shortcut, the same outcome

    assert again.replay_of == merged.load_id and again.recorded_at is None
    assert (again.duplicates, again.resent, again.revised) == (60, 1, 0)


def test_it_does_not_try_the_shortcut_for_a_re_assertion(tracked, bars_file):
    tracked.ingest(ROWS, bars_file)
    fix = [bar("AAPL", 7, close="10.99")]
    tracked.ingest(fix, csv_bytes(fix))
    tracked.ingest(ROWS, bars_file)

    again = tracked.ingest(ROWS, bars_file, reassert=True)  # the file's value is made current again

    assert again.replay_of is None and (again.revised, again.duplicates, again.resent) == (1, 59, 0)
    assert load_of(again).replay_note == "replay shortcut not tried: a re-assertion stores rows a replay would not"
    assert load_of(again).reassert


def test_it_takes_the_normal_path_after_a_correction_with_a_later_known_at(tracked, bars_file):
    tracked.ingest(ROWS, bars_file)
    later = (T0 + timedelta(minutes=7, hours=2)).isoformat()
    fix = [bar("MSFT", 7, close="10.99", known_at=later)]
    tracked.ingest(fix, csv_bytes(fix))

    again = tracked.ingest(ROWS, bars_file)  # conservative: normal path, which finds only duplicates

    assert again.replay_of is None and again.counts() == {
        "inserted": 0,
        "revised": 0,
        "duplicates": 60,
        "rejected": 0,
        "resent": 0,
        "outranked": 0,
    }
    assert "MSFT" in load_of(again).replay_note


def test_it_takes_the_normal_path_after_a_correction_with_an_earlier_known_at_between_versions(tracked, tmp_path):
    # the file's row is known late (explicit known_at); a duplicate of the first version when loaded
    early = [bar("AAPL", 0)]
    tracked.ingest(early, csv_bytes(early))
    late_known = (T0 + timedelta(hours=3)).isoformat()
    path = tmp_path / "late.csv"
    rows = [bar("AAPL", 0, known_at=late_known)]
    path.write_bytes(csv_bytes(rows))
    assert tracked.ingest(rows, path).duplicates == 1
    between = [bar("AAPL", 0, close="10.99", known_at=(T0 + timedelta(hours=1)).isoformat())]
    tracked.ingest(between, csv_bytes(between))

    again = tracked.ingest(rows, path)  # now the file's value differs from the version current at its known_at

    assert again.replay_of is None and again.revised == 1


def test_it_keeps_the_shortcut_when_a_later_change_touches_other_series_or_times(tracked, bars_file):
    first = tracked.ingest(ROWS, bars_file)
    other = [bar("TSLA", 3), bar("AAPL", 500)]  # another symbol; AAPL far after the file's span
    tracked.ingest(other, csv_bytes(other))

    again = tracked.ingest(ROWS, bars_file)

    assert again.replay_of == first.load_id and again.duplicates == 60


def test_it_takes_the_normal_path_for_another_bar_interval(tracked, bars_file):
    tracked.ingest(ROWS, bars_file)

    again = tracked.ingest(ROWS, bars_file, bar_interval=timedelta(minutes=5))

    assert again.replay_of is None
    assert (
        load_of(again).replay_note
        == "replay shortcut not tried: no finished load of the same dataset, options and size"
    )


def test_it_takes_the_normal_path_for_another_on_error_mode(tracked, bars_file):
    tracked.ingest(ROWS, bars_file)
    again = tracked.ingest(ROWS, bars_file, on_error="skip")
    assert again.replay_of is None and again.duplicates == 60


def test_it_takes_the_normal_path_for_a_truncated_file(tracked, bars_file, tmp_path):
    tracked.ingest(ROWS, bars_file)
    content = bars_file.read_bytes()
    cut = tmp_path / "cut.csv"
    cut.write_bytes(content[: content.rindex(b"\n", 0, len(content) - 1) + 1])  # the last row dropped

    again = tracked.ingest(ROWS[:-1], cut)

    assert again.replay_of is None and again.duplicates == 59


def test_it_takes_the_normal_path_for_an_edited_file_of_the_same_size(tracked, bars_file, tmp_path):
    tracked.ingest(ROWS, bars_file)
    edited_rows = [dict(r) for r in ROWS]
    edited_rows[5]["close"] = "10.7" if ROWS[5]["close"] != "10.7" else "10.8"
    edited = tmp_path / "edited.csv"
    edited.write_bytes(csv_bytes(edited_rows))
    assert edited.stat().st_size == bars_file.stat().st_size

    again = tracked.ingest(edited_rows, edited)  # hashed up front (same size), no match: normal path

    assert again.replay_of is None and again.revised == 1 and again.duplicates == 59
    assert load_of(again).replay_note == "replay shortcut not taken: no finished load of the same content and options"


def test_it_takes_the_normal_path_when_the_stored_rows_were_removed(tracked, bars_file):
    tracked.ingest(ROWS, bars_file)
    with connection.cursor() as cur:
        cur.execute("TRUNCATE market_data, timeseries_series")
    tracked.oracle = Oracle()

    again = tracked.ingest(ROWS, bars_file)

    assert again.replay_of is None and again.inserted == 60
    assert "no longer covers" in load_of(again).replay_note


def test_it_takes_the_normal_path_when_rows_may_be_past_the_retention_horizon(tracked, bars_file, settings):
    tracked.ingest(ROWS, bars_file)
    settings.TSM_RETENTION = {**settings.TSM_RETENTION, "market_data": "1 day"}

    again = tracked.ingest(ROWS, bars_file)

    assert again.replay_of is None and again.duplicates == 60
    assert "retention horizon" in load_of(again).replay_note


def test_it_takes_the_normal_path_when_the_shortcut_is_off(tracked, bars_file, settings):
    tracked.ingest(ROWS, bars_file)
    settings.TSM_INGEST_REPLAY_SHORTCUT = False

    again = tracked.ingest(ROWS, bars_file)

    assert again.replay_of is None and again.duplicates == 60
    assert load_of(again).replay_note == "replay shortcut off (TSM_INGEST_REPLAY_SHORTCUT=false)"


def test_it_takes_the_normal_path_when_the_earlier_load_quarantined_rows(bars_file, tmp_path):
    rows = ROWS + [bar("AAPL", 99, close="ten")]
    path = tmp_path / "with-bad.csv"
    path.write_bytes(csv_bytes(rows))
    ingest_file(dataset="market_data", path=path, on_error="skip")

    again = ingest_file(dataset="market_data", path=path, on_error="skip")

    assert again.replay_of is None and again.rejected == 1 and again.duplicates == 60
    assert RejectedRow.objects.filter(load_id=again.load_id).count() == 1  # quarantined again for this load


def test_it_takes_the_shortcut_for_gzip_and_in_memory_bytes(tracked, tmp_path):
    packed = gzip.compress(csv_bytes(ROWS))
    path = tmp_path / "bars.csv.gz"
    path.write_bytes(packed)
    first = tracked.ingest(ROWS, path)
    assert load_of(first).content_sha256 == hashlib.sha256(packed).hexdigest()  # the compressed bytes

    assert tracked.ingest(ROWS, path).replay_of == first.load_id
    assert tracked.ingest(ROWS, packed).replay_of is not None  # the same bytes from memory


def test_it_keeps_no_replay_key_for_loads_that_are_not_files():
    result = ingest_table(dataset="market_data", data=ROWS)
    load = Load.objects.get(pk=result.load_id)
    assert load.replay_key == "" and load.content_sha256 == "" and load.replay_spans is None


def test_it_hashes_a_stream_while_the_parser_reads_it():
    content = csv_bytes(ROWS)

    class Unseekable(io.RawIOBase):
        def __init__(self):
            self.inner = io.BytesIO(content)

        def readable(self):
            return True

        def readinto(self, b):
            data = self.inner.read(len(b))
            b[: len(data)] = data
            return len(data)

    result = ingest_file(dataset="market_data", path=io.BufferedReader(Unseekable()))
    load = Load.objects.get(pk=result.load_id)
    assert load.content_sha256 == hashlib.sha256(content).hexdigest() and load.content_bytes == len(content)


def test_it_refuses_a_span_list_too_long_to_keep(monkeypatch, bars_file):
    monkeypatch.setattr(replay, "MAX_SPANS", 1)
    first = ingest_file(dataset="market_data", path=bars_file)  # 2 series > 1: no spans, no key
    assert Load.objects.get(pk=first.load_id).replay_key == ""
    again = ingest_file(dataset="market_data", path=bars_file)
    assert again.replay_of is None and again.duplicates == 60


# --- entry points: the admin upload and manage.py ingest show the outcome -----------------------


def test_it_shows_the_shortcut_on_the_upload_page(staff_client, tmp_path, settings, django_capture_on_commit_callbacks):
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.urls import reverse

    settings.MEDIA_ROOT = tmp_path / "media"
    content = csv_bytes(ROWS)
    with django_capture_on_commit_callbacks(execute=False):
        for _ in range(2):
            staff_client.post(
                reverse("admin:ingestion_upload_add"),
                {
                    "dataset": "market_data",
                    "bar_interval_text": "1min",
                    "on_error": "reject",
                    "file": SimpleUploadedFile("bars.csv", content),
                },
            )
    first, second = (uploads.upload_process(upload_id=u.pk) for u in Upload.objects.order_by("created_at"))

    assert (first.inserted, second.inserted, second.duplicates, second.status) == (60, 0, 60, "done")
    assert second.load.replay_of_id == first.load_id
    page = staff_client.get(reverse("admin:ingestion_upload_change", args=[second.pk])).content.decode()
    assert "replay shortcut taken: same bytes and options as load" in page
    page = staff_client.get(reverse("admin:ingestion_upload_change", args=[first.pk])).content.decode()
    assert "replay shortcut not tried" in page


def test_it_says_so_in_the_ingest_command_output(bars_file):
    from django.core.management import call_command

    out = io.StringIO()
    call_command("ingest", "market_data", str(bars_file), str(bars_file), stdout=out)
    first, second = out.getvalue().strip().splitlines()
    assert "inserted 60" in first and "replay shortcut" not in first
    assert "duplicates 60" in second and "replay shortcut taken" in second

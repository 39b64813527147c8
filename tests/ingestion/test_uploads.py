"""Admin uploads and their Celery task, including a real worker killed in the middle of a merge."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.urls import reverse

from ingestion import tasks, uploads
from ingestion.models import RejectedRow, ResentRow, Upload
from tests.helpers import T0, bar, csv_bytes, post_upload
from tests.ingestion import workers
from tests.ingestion.workers import merge_blocked_then_killed, private_queue, start_worker, stop_worker, wait_for
from timeseries import pit
from tsm_site.celery import app as celery_app


@pytest.mark.django_db
def test_it_queues_an_admin_upload_and_returns_at_once(staff_client, media, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = post_upload(staff_client, csv_bytes([bar("AAPL", m) for m in range(5)]))
    upload = Upload.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:ingestion_upload_change", args=[upload.pk])  # progress page
    assert upload.status == Upload.Status.QUEUED and upload.original_name == "bars.csv"
    assert len(callbacks) == 1  # the task is enqueued only once the upload row is committed
    processed = uploads.upload_process(upload_id=upload.pk)
    assert (processed.status, processed.inserted, processed.percent) == ("done", 5, 100.0)
    page = staff_client.get(reverse("admin:ingestion_upload_change", args=[upload.pk]))
    assert b"upload-progress" in page.content and b"done" in page.content


@pytest.mark.django_db
def test_it_shows_counts_and_a_downloadable_quarantine_for_skipped_rows(
    staff_client, media, django_capture_on_commit_callbacks
):
    rows = [bar("AAPL", 0), bar("AAPL", 1, high="1"), bar("AAPL", 2)]
    with django_capture_on_commit_callbacks(execute=False):
        post_upload(staff_client, csv_bytes(rows), on_error="skip")
    upload = Upload.objects.get()
    uploads.upload_process(upload_id=upload.pk)
    upload.refresh_from_db()
    assert (upload.inserted, upload.rejected) == (2, 1)
    progress = staff_client.get(reverse("admin:ingestion_upload_progress", args=[upload.pk])).json()
    assert progress["finished"] and progress["rejected"] == 1
    page = staff_client.get(reverse("admin:ingestion_upload_change", args=[upload.pk]))
    assert b"download CSV" in page.content
    listing = staff_client.get(reverse("admin:ingestion_rejectedrow_changelist") + f"?load__id__exact={upload.load_id}")
    assert b"high is below low" in listing.content
    download = staff_client.get(reverse("admin:ingestion_upload_rejected_csv", args=[upload.pk]))
    lines = list(csv.reader(io.StringIO(download.content.decode())))
    assert lines[0] == ["time", "symbol", "open", "high", "low", "close", "volume", "tsm_rejected_reason"]
    assert len(lines) == 2  # one line for the row, all its reasons (high, open and close rules all broken) in one cell
    assert lines[1][-1].startswith("row 2: ") and lines[1][-1].count("high: ") == 1 and "open: " in lines[1][-1]


@pytest.mark.django_db
def test_it_reports_revised_rows_for_a_file_of_corrections_and_nothing_for_a_reupload(
    staff_client, media, django_capture_on_commit_callbacks
):
    original = csv_bytes([bar("AAPL", m) for m in range(3)])
    fixes = csv_bytes([bar("AAPL", m, close="10.75") for m in range(2)])
    with django_capture_on_commit_callbacks(execute=False):
        for content in (original, original, fixes):
            post_upload(staff_client, content)
    done = [uploads.upload_process(upload_id=u.pk) for u in Upload.objects.order_by("created_at")]
    assert [(u.inserted, u.revised, u.duplicates) for u in done] == [(3, 0, 0), (0, 0, 3), (0, 2, 0)]


@pytest.mark.django_db
def test_it_marks_a_rejected_file_failed_with_the_reason(staff_client, media, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        post_upload(staff_client, csv_bytes([bar("AAPL", 0, volume="-1")]))
    upload = uploads.upload_process(upload_id=Upload.objects.get().pk)
    assert upload.status == "failed"
    assert "row 1, column 'volume': volume must not be negative" in upload.error
    assert RejectedRow.objects.filter(load_id=upload.load_id).count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    "content, name, message",
    [
        (b"\x00\x01\x02binary junk" * 10, "bars.csv", "not a CSV, Parquet or NDJSON file"),
        (b"", "empty.csv", "The submitted file is empty"),
    ],
)
def test_it_refuses_a_file_by_its_content(staff_client, media, content, name, message):
    response = post_upload(staff_client, content, name=name)
    assert response.status_code == 200 and message.encode() in response.content
    assert Upload.objects.count() == 0


@pytest.mark.django_db
def test_it_refuses_an_oversized_file(staff_client, media, settings):
    settings.TSM_UPLOAD_MAX_BYTES = 100
    response = post_upload(staff_client, csv_bytes([bar("AAPL", m) for m in range(10)]))
    assert b"the limit is 100 bytes" in response.content and Upload.objects.count() == 0


@pytest.mark.django_db
def test_it_lets_only_one_worker_claim_an_upload(media):
    upload = Upload.objects.create(dataset="market_data", file=SimpleUploadedFile("a.csv", csv_bytes([bar("AAPL", 0)])))
    assert uploads.upload_process(upload_id=upload.pk).status == "done"
    assert uploads.upload_process(upload_id=upload.pk) is None  # already done: a redelivered task exits


@pytest.mark.django_db
def test_it_requires_staff_for_the_upload_admin(client, media):
    User.objects.create_user("reader", password="pw-for-tests")
    client.login(username="reader", password="pw-for-tests")
    response = client.get(reverse("admin:ingestion_upload_add"))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


# --- a real Celery worker ----------------------------------------------------------------------


@pytest.fixture
def worker_env(media):
    queue = private_queue()
    old_queue = celery_app.conf.task_default_queue
    celery_app.conf.task_default_queue = queue
    yield workers.worker_env(TSM_MEDIA_ROOT=str(media)), queue
    celery_app.conf.task_default_queue = old_queue


def status(pk: int) -> str:
    return Upload.objects.values_list("status", flat=True).get(pk=pk)


@pytest.mark.django_db(transaction=True)
def test_it_loads_an_upload_in_a_real_worker(worker_env):
    env, queue = worker_env
    worker = start_worker(env, queue)
    try:
        upload = Upload.objects.create(
            dataset="market_data", file=SimpleUploadedFile("a.csv", csv_bytes([bar("AAPL", m) for m in range(50)]))
        )
        tasks.upload_enqueue(upload_id=upload.pk)  # autocommit: on_commit runs at once
        wait_for(lambda: status(upload.pk) in ("done", "failed"), what="the worker to finish")
        upload.refresh_from_db()
        assert (upload.status, upload.inserted) == ("done", 50), upload.error
    finally:
        stop_worker(worker)


@pytest.mark.django_db(transaction=True)
def test_it_leaves_no_partial_load_when_the_worker_is_killed_mid_merge_and_completes_on_rerun(worker_env):
    env, queue = worker_env
    rows = [bar(s, m) for s in ("AAPL", "MSFT") for m in range(300)]
    upload = Upload.objects.create(dataset="market_data", file=SimpleUploadedFile("a.csv", csv_bytes(rows)))
    worker = start_worker(env, queue)
    with merge_blocked_then_killed(worker) as merge_blocked:
        tasks.upload_enqueue(upload_id=upload.pk)
        wait_for(lambda: status(upload.pk) == "loading", what="the merge to start")
        merge_blocked()
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM market_data")
        assert cur.fetchone()[0] == 0  # nothing half-loaded
    assert status(upload.pk) == "loading"  # what a dead worker leaves behind...
    assert tasks.uploads_requeue_stale(older_than=timedelta(0)) == [upload.pk]  # ...until the sweeper reclaims it
    worker = start_worker(env, queue)
    try:
        wait_for(lambda: status(upload.pk) in ("done", "failed"), what="the re-run to finish")
    finally:
        stop_worker(worker)
    upload.refresh_from_db()
    assert (upload.status, upload.inserted, upload.revised, upload.duplicates) == ("done", 600, 0, 0), upload.error
    assert upload.attempts == 2
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM market_data")
        assert cur.fetchone()[0] == 600


@pytest.mark.django_db
def test_it_loads_a_gzipped_parquet_upload(media):
    import gzip

    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [bar("AAPL", m) for m in range(20)]
    table = pa.Table.from_pylist(rows)
    table = table.set_column(0, "time", table.column("time").cast(pa.timestamp("us", tz="UTC")))
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=5)
    upload = Upload.objects.create(
        dataset="market_data", file=SimpleUploadedFile("bars.parquet.gz", gzip.compress(sink.getvalue()))
    )
    done = uploads.upload_process(upload_id=upload.pk)
    assert (done.status, done.inserted) == ("done", 20), done.error


# --- feeds and re-assertion (issue #16) ------------------------------------------------------------


@pytest.mark.django_db
def test_the_form_passes_the_feed_and_the_re_assert_option_to_the_load_with_the_uploader_as_requester(
    staff_client, media, django_capture_on_commit_callbacks
):
    form = staff_client.get(reverse("admin:ingestion_upload_add")).content.decode()
    assert 'name="feed"' in form and 'name="reassert"' in form and "Re-assert" in form and "undoing the fix" in form
    with django_capture_on_commit_callbacks(execute=False):
        post_upload(staff_client, csv_bytes([bar("AAPL", m) for m in range(3)]), feed="vendor_x", reassert="on")
        post_upload(staff_client, csv_bytes([bar("MSFT", 0)]))
    first, second = Upload.objects.order_by("created_at")
    assert (first.feed, first.reassert, second.feed, second.reassert) == ("vendor_x", True, "", False)
    for upload in (first, second):
        uploads.upload_process(upload_id=upload.pk)
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.load.feed, first.load.reassert, first.load.requested_by) == ("vendor_x", True, "staff")
    assert (second.load.feed, second.load.reassert, second.load.requested_by) == ("", False, "staff")
    progress = staff_client.get(reverse("admin:ingestion_upload_progress", args=[first.pk])).json()
    shown = (progress["feed"], progress["reassert"], progress["resent"], progress["outranked"])
    assert shown == ("vendor_x", True, 0, 0)
    page = staff_client.get(reverse("admin:ingestion_upload_change", args=[first.pk])).content.decode()
    assert "vendor_x" in page and "re-sends of superseded versions" in page and 'data-field="outranked"' in page


@pytest.mark.django_db
@pytest.mark.parametrize("feed", ["vendor x", "-x", "é", "x" * 65, "<b>x</b>"])
def test_the_form_refuses_a_bad_feed_name_and_stores_nothing(staff_client, media, feed):
    response = post_upload(staff_client, csv_bytes([bar("AAPL", 0)]), feed=feed)
    page = response.content.decode()
    assert response.status_code == 200 and "is not a feed name" in page and "letters, digits" in page
    assert "<b>x</b>" not in page  # the value is shown escaped
    assert Upload.objects.count() == 0


@pytest.mark.django_db
def test_upload_create_refuses_a_bad_feed(media):
    with pytest.raises(uploads.UploadError, match="feed: 'a b' is not a feed name"):
        uploads.upload_create(
            dataset="market_data",
            file=SimpleUploadedFile("a.csv", csv_bytes([bar("AAPL", 0)])),
            bar_interval=None,
            on_error="reject",
            user=None,
            feed="a b",
        )
    assert Upload.objects.count() == 0


@pytest.mark.django_db
def test_a_re_upload_after_fixes_shows_its_re_sends_and_a_re_assertion_makes_the_file_current(
    staff_client, media, django_capture_on_commit_callbacks, settings
):
    """NEEDS THE LEAD'S MERGE RULE (ingestion/loader/merge.py). A vendor file; curation fixes two
    closes; the vendor file uploaded again stores nothing and its page counts two re-sends with a link
    to the load listing their keys; a lower-ranked feed's other value is outranked; the file uploaded
    with "Re-assert" makes its values current again."""
    original = csv_bytes([bar("AAPL", m) for m in range(3)])
    fixes = csv_bytes([bar("AAPL", m, close="10.75") for m in range(2)])

    def upload(content, **fields) -> Upload:
        with django_capture_on_commit_callbacks(execute=False):
            post_upload(staff_client, content, **fields)
        return uploads.upload_process(upload_id=Upload.objects.order_by("-created_at").first().pk)

    assert upload(original, feed="vendor_x").inserted == 3
    assert upload(fixes, feed="curation").revised == 2
    again = upload(original, feed="vendor_x")
    assert (again.inserted, again.revised, again.duplicates, again.resent, again.outranked) == (0, 0, 3, 2, 0)
    assert ResentRow.objects.filter(load=again.load, kind="superseded").count() == 2
    page = staff_client.get(reverse("admin:ingestion_upload_change", args=[again.pk])).content.decode()
    listing = reverse("admin:ingestion_resentrow_changelist") + f"?load__id__exact={again.load_id}"
    assert "2 rows, not stored" in page and listing in page
    progress = staff_client.get(reverse("admin:ingestion_upload_progress", args=[again.pk])).json()
    assert (progress["resent"], progress["duplicates"]) == (2, 3)

    settings.TSM_FEED_PRECEDENCE = {**settings.TSM_FEED_PRECEDENCE, "market_data": ("curation", "vendor_x")}
    late = upload(csv_bytes([bar("AAPL", 0, close="10.9")]), feed="vendor_x")
    assert (late.outranked, late.revised) == (1, 0)
    settings.TSM_FEED_PRECEDENCE = {**settings.TSM_FEED_PRECEDENCE, "market_data": ()}

    reasserted = upload(original, feed="vendor_x", reassert="on")
    assert (reasserted.revised, reasserted.duplicates, reasserted.resent) == (2, 1, 0)
    assert reasserted.load.reassert is True and reasserted.load.requested_by == "staff"
    state = pit.history(dataset="market_data", at=T0 + timedelta(days=1))
    assert sorted(str(r["close"].normalize()) for r in state) == ["10.5", "10.5", "10.5"]


@pytest.mark.django_db
@pytest.mark.parametrize("may_read_keys", [True, False])
def test_the_upload_page_links_its_re_sent_keys_for_staff_who_may_read_them(client, media, may_read_keys):
    from django.contrib.auth.models import Permission

    from ingestion.models import Load

    viewer = User.objects.create_user("viewer", is_staff=True)
    codenames = ["view_upload", *(["view_resentrow"] if may_read_keys else [])]
    viewer.user_permissions.add(*Permission.objects.filter(content_type__app_label="ingestion", codename__in=codenames))
    client.force_login(viewer)
    load = Load.objects.create(dataset="market_data", source="upload", resent=2, duplicates=3)
    upload = Upload.objects.create(
        dataset="market_data", file=SimpleUploadedFile("a.csv", b"x"), status="done", load=load, resent=2
    )
    page = client.get(reverse("admin:ingestion_upload_change", args=[upload.pk])).content.decode()
    listing = reverse("admin:ingestion_resentrow_changelist") + f"?load__id__exact={load.pk}"
    assert "2 rows, not stored" in page
    assert (listing in page) is may_read_keys
    assert ("need the permission ingestion.view_resentrow" in page) is not may_read_keys

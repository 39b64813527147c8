"""Faults recover in under a minute and say so (issue #14 item 5): heartbeats, take-over of a dead
attempt, abandoned Loads, progress in rows, and real processes killed with SIGKILL during an upload —
a prefork pool child, the worker's main process, and beat under the supervisor of `make run`."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from ingestion import parsers, tasks, uploads
from ingestion.loader import copying
from ingestion.models import Load, Upload
from tests.helpers import bar, csv_bytes, post_upload
from tests.ingestion import workers
from tests.ingestion.workers import ROOT, pid_gone, registry_locked, start_beat, start_worker, stop_worker, wait_for
from tsm_site.celery import app as celery_app

ROWS = [bar(s, m) for s in ("AAPL", "MSFT") for m in range(300)]


def new_upload(rows=ROWS, **fields) -> Upload:
    content = csv_bytes(rows)
    return Upload.objects.create(
        dataset="market_data", file=SimpleUploadedFile("a.csv", content), size=len(content), **fields
    )


def market_rows() -> int:
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM market_data")
        return cur.fetchone()[0]


def abandoned_loads(upload: Upload) -> list[Load]:
    return list(Load.objects.filter(source__startswith=f"upload {upload.pk}:", status=Load.Status.ABANDONED))


def assert_done_exactly_once(upload: Upload, attempts: int) -> None:
    upload.refresh_from_db()
    assert (upload.status, upload.inserted, upload.revised, upload.duplicates) == ("done", 600, 0, 0), upload.error
    assert upload.attempts == attempts
    assert (upload.rows_read, upload.rows_total, upload.percent) == (600, 600, 100.0)
    assert market_rows() == 600  # nothing half-loaded, nothing stored twice
    assert Load.objects.filter(source__startswith=f"upload {upload.pk}:", status=Load.Status.DONE).count() == 1


# --- take-over rules (in process) ----------------------------------------------------------------


@pytest.mark.django_db
def test_a_redelivered_task_takes_over_an_attempt_whose_heartbeat_is_old_and_marks_its_load_abandoned(media, settings):
    settings.TSM_UPLOAD_STALE_SECONDS = 10
    dead = Load.objects.create(dataset="market_data", source="upload x: a.csv")
    upload = new_upload(
        status=Upload.Status.LOADING,
        attempts=1,
        worker="elsewhere:4242",
        load=dead,
        heartbeat_at=timezone.now() - timedelta(seconds=30),
    )
    done = uploads.upload_process(upload_id=upload.pk)
    assert (done.status, done.inserted, done.attempts) == ("done", 600, 2), done.error
    dead.refresh_from_db()
    assert dead.status == Load.Status.ABANDONED and dead.finished_at is not None
    assert re.search(r"attempt 1 on elsewhere:4242 stopped reporting \(3\d s without a heartbeat", dead.error), (
        dead.error
    )
    assert "attempt 2 took over" in dead.error


@pytest.mark.django_db
def test_a_take_over_also_abandons_a_load_its_dead_attempt_had_not_named_yet(media):
    """Killed between creating its Load and recording it on the upload: found by the Load's source."""
    upload = new_upload(
        status=Upload.Status.VALIDATING,
        attempts=1,
        worker="elsewhere:1",
        heartbeat_at=timezone.now() - timedelta(minutes=1),
    )
    unnamed = Load.objects.create(dataset="market_data", source=f"upload {upload.pk}: a.csv")
    other = Load.objects.create(dataset="market_data", source=f"upload {upload.pk}0: a.csv")  # upload 10x's
    assert uploads.upload_process(upload_id=upload.pk).status == "done"
    unnamed.refresh_from_db()
    other.refresh_from_db()
    assert (unnamed.status, other.status) == ("abandoned", "loading")


@pytest.mark.django_db
def test_a_redelivered_task_leaves_a_live_attempt_alone(media):
    upload = new_upload(status=Upload.Status.LOADING, attempts=1, worker="elsewhere:4242", heartbeat_at=timezone.now())
    assert uploads.upload_process(upload_id=upload.pk) is None
    upload.refresh_from_db()
    assert (upload.status, upload.attempts, upload.worker) == ("loading", 1, "elsewhere:4242")
    assert uploads.uploads_reclaim_stale() == []  # the sweep leaves it alone too


@pytest.mark.django_db
def test_a_redelivered_task_takes_over_at_once_when_the_attempts_process_is_gone(media):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # reaped: the pid names no process now
    worker = f"{uploads.worker_id().rpartition(':')[0]}:{gone.pid}"
    upload = new_upload(status=Upload.Status.VALIDATING, attempts=1, worker=worker, heartbeat_at=timezone.now())
    done = uploads.upload_process(upload_id=upload.pk)
    assert (done.status, done.attempts, done.inserted) == ("done", 2, 600), done.error
    assert done.worker == uploads.worker_id()


@pytest.mark.django_db
def test_the_sweep_requeues_a_silent_upload_and_abandons_its_load(media, django_capture_on_commit_callbacks):
    dead = Load.objects.create(dataset="market_data", source="upload x: a.csv")
    upload = new_upload(
        status=Upload.Status.LOADING,
        attempts=1,
        worker="elsewhere:1",
        load=dead,
        heartbeat_at=timezone.now() - timedelta(minutes=2),
    )
    with django_capture_on_commit_callbacks(execute=False) as enqueued:
        assert tasks.uploads_requeue_stale() == [upload.pk]
    assert len(enqueued) == 1  # re-enqueued once the re-queue commits
    upload.refresh_from_db()
    assert upload.status == "queued" and upload.error.startswith(
        "reclaimed: attempt 1 on elsewhere:1 stopped reporting"
    )
    dead.refresh_from_db()
    assert dead.status == "abandoned" and dead.error.endswith("re-queued")


@pytest.mark.django_db
def test_an_attempt_that_was_taken_over_stops_without_touching_the_upload(media, monkeypatch):
    """The old attempt's next report finds the upload held by a newer attempt: it rolls its load back."""
    upload = new_upload()
    real_ingest = uploads.ingest_file

    def taken_over_midway(**kwargs):
        def on_phase(phase, load_id):
            Upload.objects.filter(pk=upload.pk).update(attempts=7, worker="elsewhere:7")  # a newer attempt
            kwargs_on_phase(phase, load_id)

        kwargs_on_phase = kwargs["on_phase"]
        return real_ingest(**{**kwargs, "on_phase": on_phase})

    monkeypatch.setattr(uploads, "ingest_file", taken_over_midway)
    assert uploads.upload_process(upload_id=upload.pk) is None
    upload.refresh_from_db()
    assert (upload.attempts, upload.worker, upload.inserted) == (7, "elsewhere:7", 0)
    assert market_rows() == 0


@pytest.mark.django_db
def test_the_heartbeat_stops_when_an_attempt_fails_before_loading(media):
    """A dead attempt must not keep looking alive: its upload would never be retried."""
    upload = new_upload()
    upload.file.storage.delete(upload.file.name)
    with pytest.raises(FileNotFoundError):
        uploads.upload_process(upload_id=upload.pk)
    assert not [t for t in threading.enumerate() if t.name == f"upload-{upload.pk}-heartbeat"]


# --- progress in rows, and the page saying no worker reports ---------------------------------------


@pytest.mark.django_db
def test_progress_counts_rows_processed_not_bytes_read_ahead(media, settings, monkeypatch):
    settings.TSM_INGEST_BATCH_ROWS = 1_000
    settings.TSM_INGEST_DIRECT = False
    monkeypatch.setattr(copying.CopySegments, "SEGMENT_SECONDS", 0.0)  # report after every batch
    monkeypatch.setattr(parsers, "BLOCK_SIZE", 1 << 16)  # CSV batches of 64 kB (the parser reads ahead of them)
    monkeypatch.setattr(uploads, "PROGRESS_EVERY_SECONDS", 0.0)
    rows = [bar(f"S{s}", m) for s in range(10) for m in range(1_000)]
    upload = new_upload(rows)
    seen = []
    real_ingest = uploads.ingest_file

    def recording(**kwargs):
        report = kwargs["progress"]

        def progress(n):
            report(n)
            seen.append(
                Upload.objects.values_list("rows_read", "rows_total", "percent", "bytes_read").get(pk=upload.pk)
            )

        return real_ingest(**{**kwargs, "progress": progress})

    monkeypatch.setattr(uploads, "ingest_file", recording)
    done = uploads.upload_process(upload_id=upload.pk)
    assert (done.status, done.inserted, done.rows_total, done.percent) == ("done", 10_000, 10_000, 100.0)
    first = seen[0]
    assert first[0] < 10_000 and first[3] == upload.size  # the parser had read every byte already...
    assert first[1] == 10_000 and first[2] == pytest.approx(
        100.0 * first[0] / 10_000
    )  # ...yet the rows done, not 99.9 %
    assert first[2] < 50.0
    assert all(p <= 99.9 for _, _, p, _ in seen)


@pytest.mark.django_db
def test_rows_are_counted_from_parquet_metadata_and_plain_lines_but_not_gzip(media):
    import gzip
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(ROWS[:20]), sink)
    for content, expected in (
        (sink.getvalue(), 20),
        (csv_bytes(ROWS[:30]), 30),
        (csv_bytes(ROWS[:30]).rstrip(b"\r\n"), 30),
        (gzip.compress(csv_bytes(ROWS[:30])), None),
    ):
        upload = new_upload()
        upload.file.save("x", SimpleUploadedFile("x", content))
        assert uploads.count_rows(upload.file.storage, upload.file.name) == expected


@pytest.mark.django_db
def test_the_upload_page_says_when_no_worker_has_reported(staff_client, media):
    upload = new_upload(
        status=Upload.Status.LOADING,
        attempts=1,
        worker="elsewhere:1",
        rows_read=1_200,
        rows_total=2_000,
        percent=60.0,
        heartbeat_at=timezone.now() - timedelta(seconds=42),
    )
    page = staff_client.get(reverse("admin:ingestion_upload_change", args=[upload.pk]))
    assert page.status_code == 200
    assert re.search(
        rb"no worker has reported for 4\d s; it will be retried", page.content
    )  # 42 s and the request's own time
    assert b"1,200 of 2,000 rows (60 %)" in page.content
    progress = staff_client.get(reverse("admin:ingestion_upload_progress", args=[upload.pk])).json()
    assert progress["worker_note"].startswith("no worker has reported for 4")
    assert (progress["rows_read"], progress["rows_total"], progress["progress"]) == (
        1_200,
        2_000,
        "1,200 of 2,000 rows (60 %)",
    )
    Upload.objects.filter(pk=upload.pk).update(heartbeat_at=timezone.now())
    assert staff_client.get(reverse("admin:ingestion_upload_progress", args=[upload.pk])).json()["worker_note"] == ""


@pytest.mark.django_db
def test_the_upload_page_says_when_a_queued_upload_waits_for_a_worker(staff_client, media):
    upload = new_upload()
    Upload.objects.filter(pk=upload.pk).update(created_at=timezone.now() - timedelta(minutes=2))
    progress = staff_client.get(reverse("admin:ingestion_upload_progress", args=[upload.pk])).json()
    assert re.fullmatch(
        r"queued for 1[12]\d s: no worker has taken it yet \(all busy, or none running: make status\)",
        progress["worker_note"],
    ), progress["worker_note"]
    assert progress["progress"] == "queued"
    fresh = new_upload()
    assert staff_client.get(reverse("admin:ingestion_upload_progress", args=[fresh.pk])).json()["worker_note"] == ""


@pytest.mark.django_db
def test_an_upload_filename_of_255_characters_is_kept_whole(staff_client, media, django_capture_on_commit_callbacks):
    name = "b" * 251 + ".csv"
    with django_capture_on_commit_callbacks(execute=False):
        response = post_upload(staff_client, csv_bytes(ROWS[:5]), name=name)
        longer = post_upload(staff_client, csv_bytes(ROWS[:5]), name="c" * 300 + ".csv")
    assert (response.status_code, longer.status_code) == (302, 302)
    upload, cut = Upload.objects.order_by("pk")
    assert upload.original_name == name and upload.file.name.endswith(".csv") and len(upload.file.name) <= 255
    assert Path(upload.file.path).is_file() and upload.file.read() == csv_bytes(ROWS[:5])
    assert (
        cut.original_name == "c" * 251 + ".csv"
    )  # Django keeps a longer name's first 255 characters and its extension


# --- real processes killed with SIGKILL during an upload -----------------------------------------


@pytest.fixture
def fault_env(media):
    queue = workers.private_queue()
    old_queue = celery_app.conf.task_default_queue
    celery_app.conf.task_default_queue = queue
    yield workers.worker_env(TSM_MEDIA_ROOT=str(media), TSM_CELERY_QUEUE=queue), queue
    celery_app.conf.task_default_queue = old_queue


def status(pk: int) -> str:
    return Upload.objects.values_list("status", flat=True).get(pk=pk)


def attempt_pid(pk: int) -> int:
    return int(Upload.objects.values_list("worker", flat=True).get(pk=pk).rpartition(":")[2])


@pytest.mark.django_db(transaction=True)
def test_kill_9_of_a_pool_child_during_an_upload(fault_env, tmp_path):
    env, queue = fault_env
    upload = new_upload()
    worker = start_worker(env, queue, pool="prefork", log=tmp_path / "worker.log")
    try:
        with registry_locked() as load_blocked:
            tasks.upload_enqueue(upload_id=upload.pk)
            wait_for(lambda: status(upload.pk) == "loading", what="the load to start")
            load_blocked()
            beat = Upload.objects.values_list("heartbeat_at", flat=True).get(pk=upload.pk)
            wait_for(
                lambda: Upload.objects.values_list("heartbeat_at", flat=True).get(pk=upload.pk) > beat,
                timeout=15,
                what="a heartbeat while the load reports no progress",
            )
            child = attempt_pid(upload.pk)
            assert child != worker.pid  # the attempt runs in a pool child
            os.kill(child, signal.SIGKILL)
        wait_for(lambda: status(upload.pk) in ("done", "failed"), timeout=60, what="the redelivered task to finish")
        assert worker.poll() is None  # the worker itself lived on
    finally:
        stop_worker(worker)
    assert_done_exactly_once(upload, attempts=2)
    (abandoned,) = abandoned_loads(upload)
    assert "that process is gone" in abandoned.error and "attempt 2 took over" in abandoned.error


@pytest.mark.django_db(transaction=True)
def test_kill_9_of_the_workers_main_process_during_an_upload(fault_env, tmp_path):
    env, queue = fault_env
    upload = new_upload()
    worker = start_worker(env, queue, pool="prefork", log=tmp_path / "worker.log")
    beat = start_beat(env, tmp_path / "beat-schedule", log=tmp_path / "beat.log")
    try:
        with registry_locked() as load_blocked:
            tasks.upload_enqueue(upload_id=upload.pk)
            wait_for(lambda: status(upload.pk) == "loading", what="the load to start")
            load_blocked()
            child = attempt_pid(upload.pk)
            worker.send_signal(signal.SIGKILL)  # its task message stays unacked in Redis (visibility timeout)
            worker.wait(10)
            wait_for(lambda: pid_gone(child), timeout=10, what="the pool child to die with its parent")
        assert status(upload.pk) == "loading"
        worker = start_worker(env, queue, pool="prefork", log=tmp_path / "worker.log")  # the worker returns
        wait_for(
            lambda: status(upload.pk) in ("done", "failed"),
            timeout=60,
            what="beat's sweep to re-queue the upload and the worker to load it",
        )
    finally:
        stop_worker(worker)
        stop_worker(beat)
    assert_done_exactly_once(upload, attempts=2)
    (abandoned,) = abandoned_loads(upload)
    assert abandoned.error.endswith("re-queued")


def supervisorctl(conf: Path, *args: str) -> str:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "supervisorctl"), "-c", str(conf), *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return done.stdout.strip()


def running_pid(conf: Path, program: str) -> int:
    """The program's pid while supervisord reports it RUNNING, else 0."""
    line = supervisorctl(conf, "status", program)
    if " RUNNING " not in line:
        return 0
    return int(line.split("pid ", 1)[1].split(",", 1)[0])


@pytest.mark.django_db(transaction=True)
def test_kill_9_of_beat_during_an_upload_and_the_supervisor_brings_beat_back(fault_env):
    env, queue = fault_env
    var = Path(tempfile.mkdtemp(prefix="tsm-h5-", dir="/tmp"))  # short: a unix socket path is limited to ~100 bytes
    conf = var / "supervisord.conf"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "bin" / "supervisord-conf"),
            "--var",
            str(var),
            "--programs",
            "worker,beat",
            "--queue",
            queue,
            "--concurrency",
            "1",
            "--out",
            str(conf),
        ],
        check=True,
        timeout=30,
    )
    supervisor = subprocess.Popen(
        [str(Path(sys.executable).parent / "supervisord"), "-n", "-c", str(conf)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        old_beat = wait_for(lambda: running_pid(conf, "beat"), timeout=60, what="beat to run")
        wait_for(lambda: running_pid(conf, "worker"), timeout=60, what="the worker to run")
        upload = new_upload()
        with registry_locked() as load_blocked:
            tasks.upload_enqueue(upload_id=upload.pk)
            wait_for(lambda: status(upload.pk) == "loading", what="the load to start")
            load_blocked()
            os.kill(old_beat, signal.SIGKILL)
        wait_for(lambda: status(upload.pk) in ("done", "failed"), timeout=60, what="the upload to finish")
        assert_done_exactly_once(upload, attempts=1)

        new_beat = wait_for(
            lambda: (pid := running_pid(conf, "beat")) != old_beat and pid,
            timeout=60,
            what="supervisord to restart beat",
        )
        assert new_beat != old_beat
        log = (var / "log" / "supervisord.log").read_text()
        assert "exited: beat (terminated by SIGKILL; not expected)" in log and "spawned: 'beat'" in log
        # the restarted beat's schedule ticks: its sweep re-queues an upload whose worker went silent
        silent = new_upload(
            [bar("IBM", m) for m in range(10)],
            status=Upload.Status.LOADING,
            attempts=1,
            worker="elsewhere:1",
            heartbeat_at=timezone.now() - timedelta(minutes=5),
        )
        wait_for(
            lambda: status(silent.pk) == "done",
            timeout=60,
            what="beat's sweep and the worker to load the silent upload",
        )
        silent.refresh_from_db()
        assert (silent.attempts, silent.inserted) == (2, 10)
    finally:
        supervisor.send_signal(signal.SIGTERM)  # stops its programs first
        try:
            supervisor.wait(60)
        except subprocess.TimeoutExpired:
            supervisor.kill()
            supervisor.wait(10)
        shutil.rmtree(var, ignore_errors=True)

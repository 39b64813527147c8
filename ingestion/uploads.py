"""Upload services: create (admin), process (Celery task), fail, reclaim stale ones (beat).

One operation, many thin entry points: the admin calls ``upload_create`` and then enqueues the load
(``ingestion.tasks.upload_enqueue``); the task calls ``upload_process``, which runs the same loader as
``manage.py ingest``. These services enqueue nothing themselves: they return what the caller sends.
"""

from __future__ import annotations

import io
import logging
import os
import socket
import threading
import time
import uuid
from datetime import timedelta

import pyarrow.parquet as pq
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import DatabaseError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from ingestion import parsers
from ingestion.checks import InputError
from ingestion.loader import LoadRejected, ingest_file
from ingestion.models import Load, Upload
from ingestion.processes import pid_gone
from timeseries.datasets import get_dataset
from timeseries.rules import feed_problem

logger = logging.getLogger(__name__)
PROGRESS_EVERY_SECONDS = 1.0
COUNT_ROWS_INLINE_BYTES = 64 << 20  # a larger file's rows are counted by a thread while it loads


class UploadError(ValueError):
    """The upload is refused before it is stored (size, type, dataset)."""


class _CountingReader(io.RawIOBase):
    """Counts the bytes read from the stored file, for a progress percentage."""

    def __init__(self, raw):
        self.raw = raw
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.count += n
        return n

    def seekable(self) -> bool:  # lets the loader hash a likely replay up front, then rewind
        return self.raw.seekable()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self.count = self.raw.seek(offset, whence)
        return self.count

    def tell(self) -> int:
        return self.raw.tell()


def upload_check_file(*, file: UploadedFile) -> str:
    """Refuse oversized files and files whose content is not CSV, Parquet or NDJSON (gzip allowed)."""
    limit = settings.TSM_UPLOAD_MAX_BYTES
    if file.size is not None and file.size > limit:
        raise UploadError(f"the file is {file.size:,} bytes; the limit is {limit:,} bytes (TSM_UPLOAD_MAX_BYTES)")
    file.seek(0)
    head = file.read(65536)
    file.seek(0)
    try:
        stream = parsers._open(io.BufferedReader(io.BytesIO(head)))
        fmt = parsers.sniff_format(stream)
    except (InputError, OSError, EOFError) as exc:
        raise UploadError(f"not a CSV, Parquet or NDJSON file: {exc}") from None
    return fmt


def upload_create(
    *,
    dataset: str,
    file: UploadedFile,
    bar_interval: timedelta | None,
    on_error: str,
    user,
    feed: str = "",
    reassert: bool = False,
) -> Upload:
    """Store the file; the caller enqueues its load (``ingestion.tasks.upload_enqueue``). ``feed`` and
    ``reassert``: as for ``ingestion.loader.ingest_file``; the load records the uploader as requested_by."""
    get_dataset(dataset)
    problem = feed_problem(feed)
    if problem:
        raise UploadError(f"feed: {problem}")
    upload_check_file(file=file)
    upload = Upload(
        dataset=dataset,
        bar_interval=bar_interval,
        on_error=on_error,
        feed=feed,
        reassert=reassert,
        uploaded_by=user,
        original_name=getattr(file, "name", "") or "",
        size=file.size or 0,
    )
    # stored as <uuid>-<the name's last 150 bytes>: unique, keeps the extension, and fits both the
    # field (255 characters with the date folders) and a file system's 255-byte file names
    tail = (upload.original_name or "upload").encode()[-150:].decode("utf-8", "ignore")
    upload.file.save(f"{uuid.uuid4().hex}-{tail}", file, save=False)
    upload.save()
    return upload


def worker_id() -> str:
    """Who runs an attempt: ``host:pid`` of this process (a prefork pool child, or a solo worker)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _worker_gone(worker: str) -> bool:
    """Whether the process named by ``worker`` is known dead: it ran on this host and its pid is gone.

    Unknown for another host (the heartbeat's age decides there). This process itself is alive.
    """
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    return pid_gone(int(pid))


def _silent_reason(upload: Upload, now) -> str:
    """Why the attempt holding ``upload`` is over, or "" while it may still be running."""
    limit = settings.TSM_UPLOAD_STALE_SECONDS
    if upload.heartbeat_at is None:
        return f"attempt {upload.attempts} never reported"
    age = (now - upload.heartbeat_at).total_seconds()
    if age >= limit:
        return (
            f"attempt {upload.attempts} on {upload.worker or 'an unknown worker'} stopped reporting"
            f" ({int(age)} s without a heartbeat; limit {limit} s)"
        )
    if upload.worker and _worker_gone(upload.worker):
        return f"attempt {upload.attempts} on {upload.worker}: that process is gone (killed or crashed)"
    return ""


def _abandon_loads(upload: Upload, reason: str) -> None:
    """The Loads of dead attempts (the one the upload names, and one created by an attempt killed before
    it could name it): their transactions were rolled back with their connections; say so. Called with
    the upload row locked, before the next attempt starts, so every Load still loading for it is dead."""
    Load.objects.filter(
        Q(pk=upload.load_id) | Q(source__startswith=_load_source_prefix(upload.pk)), status=Load.Status.LOADING
    ).update(status=Load.Status.ABANDONED, error=f"abandoned: {reason}"[:10_000], finished_at=timezone.now())


def _load_source_prefix(upload_id: int) -> str:
    return f"upload {upload_id}: "


def _claim(upload_id: int) -> int | None:
    """Take the upload for this process; returns the attempt number, or None when it is finished or a
    live attempt holds it. A QUEUED upload is taken; so is an ACTIVE one whose attempt is over (its
    heartbeat is older than TSM_UPLOAD_STALE_SECONDS, or its process is known dead): a redelivered
    task takes over at once instead of waiting for the beat sweep. The row lock makes one claim win."""
    with transaction.atomic():
        upload = Upload.objects.select_for_update().filter(pk=upload_id).first()
        if upload is None or upload.status not in (Upload.Status.QUEUED, *Upload.ACTIVE):
            return None
        if upload.status != Upload.Status.QUEUED:
            reason = _silent_reason(upload, timezone.now())
            if not reason:
                return None
            logger.warning("upload %s: taking over; %s", upload_id, reason)
            _abandon_loads(upload, f"{reason}; attempt {upload.attempts + 1} took over")
        attempt = upload.attempts + 1
        Upload.objects.filter(pk=upload_id).update(
            status=Upload.Status.VALIDATING,
            attempts=attempt,
            heartbeat_at=timezone.now(),
            worker=worker_id(),
            error="",
            rows_read=0,
            bytes_read=0,
            percent=0.0,
            load=None,
        )
    return attempt


class AttemptSuperseded(Exception):
    """This attempt no longer holds its upload (another took over): stop, rolling the load back."""


class _Heartbeat(threading.Thread):
    """Reports that the attempt is alive every TSM_UPLOAD_HEARTBEAT_SECONDS, whatever the loader is
    doing (a long merge reports no progress), on its own database connection; counts the file's rows
    meanwhile when that is cheap (``rows_total``)."""

    def __init__(self, upload: Upload, attempt: int, rows_total: int | None, count: bool):
        super().__init__(name=f"upload-{upload.pk}-heartbeat", daemon=True)
        self.upload_id = upload.pk
        self.attempt = attempt
        self.file_name = upload.file.name
        self.storage = upload.file.storage
        self.stopped = threading.Event()
        self.rows_total = rows_total
        self.total_written = rows_total is not None
        self.count = count

    def run(self) -> None:
        if self.count:
            threading.Thread(target=self._count_rows, name=f"upload-{self.upload_id}-rows", daemon=True).start()
        try:
            while not self.stopped.wait(settings.TSM_UPLOAD_HEARTBEAT_SECONDS):
                self._beat()
        finally:
            connection.close()  # this thread's own connection

    def _beat(self) -> None:
        fields = {"heartbeat_at": timezone.now()}
        if self.rows_total is not None and not self.total_written:
            fields["rows_total"] = self.rows_total
        try:
            Upload.objects.filter(pk=self.upload_id, attempts=self.attempt, status__in=Upload.ACTIVE).update(**fields)
        except DatabaseError as exc:  # the database restarted, say: try again on a new connection
            logger.warning("upload %s: heartbeat failed: %s", self.upload_id, exc)
            connection.close()
        else:
            self.total_written = "rows_total" in fields or self.total_written

    def _count_rows(self) -> None:
        try:
            self.rows_total = count_rows(self.storage, self.file_name)
        except Exception as exc:  # only a display hint: never disturb the load
            logger.info("upload %s: rows not counted: %s", self.upload_id, exc)

    def stop(self) -> None:
        self.stopped.set()
        self.join(10)


def count_rows(storage, name: str) -> int | None:
    """Rows of a stored upload when cheap to know: Parquet from its metadata, a plain CSV / NDJSON by
    counting its lines (a CSV value holding a newline makes it an over-estimate). None for gzip."""
    with storage.open(name, "rb") as raw:
        stream = io.BufferedReader(_CountingReader(raw), buffer_size=1 << 20)
        head = stream.peek(4)[:4]
        if head[:2] == b"\x1f\x8b":
            return None
        if head == b"PAR1":
            return pq.ParquetFile(stream).metadata.num_rows
        fmt = parsers.sniff_format(stream)
        lines, last = 0, b"\n"
        while chunk := stream.read(1 << 20):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
        lines += last != b"\n"
        return max(0, lines - 1) if fmt == "csv" else lines


def upload_process(*, upload_id: int) -> Upload | None:
    """Load one upload. Returns None when another worker owns it or it is already finished."""
    attempt = _claim(upload_id)
    if attempt is None:
        return None
    upload = Upload.objects.select_related("uploaded_by").get(pk=upload_id)
    mine = Upload.objects.filter(pk=upload_id, attempts=attempt)  # every write of this attempt
    rows_total, count_later = None, upload.size > COUNT_ROWS_INLINE_BYTES
    if not count_later:  # a small file: its rows are counted before the load (milliseconds)
        try:
            rows_total = count_rows(upload.file.storage, upload.file.name)
        except Exception as exc:  # only a display hint
            logger.info("upload %s: rows not counted: %s", upload_id, exc)
        if rows_total is not None:
            mine.update(rows_total=rows_total)
    heartbeat = _Heartbeat(upload, attempt, rows_total, count=count_later)  # a larger one meanwhile
    heartbeat.start()
    try:
        return _load(upload, attempt, mine, heartbeat)
    finally:
        heartbeat.stop()  # whatever happened: a dead attempt must stop looking alive


def _load(upload: Upload, attempt: int, mine, heartbeat: _Heartbeat) -> Upload | None:
    upload_id = upload.pk
    last = {"t": 0.0}

    def on_phase(phase: str, load_id) -> None:
        status = Upload.Status.LOADING if phase == "loading" else Upload.Status.VALIDATING
        if not mine.update(status=status, load_id=load_id, heartbeat_at=timezone.now()):
            raise AttemptSuperseded(f"upload {upload_id}: attempt {attempt} was taken over")

    with upload.file.open("rb") as raw:
        counter = _CountingReader(raw)

        def progress(rows: int) -> None:
            now = time.monotonic()
            if now - last["t"] < PROGRESS_EVERY_SECONDS:
                return
            last["t"] = now
            total = heartbeat.rows_total
            percent = min(99.9, 100.0 * rows / total) if total else 0.0  # rows done, not bytes read ahead
            if not mine.update(rows_read=rows, bytes_read=counter.count, percent=percent, heartbeat_at=timezone.now()):
                raise AttemptSuperseded(f"upload {upload_id}: attempt {attempt} was taken over")

        try:
            result = ingest_file(
                dataset=upload.dataset,
                path=io.BufferedReader(counter, buffer_size=1 << 20),
                bar_interval=upload.bar_interval or timedelta(minutes=1),
                on_error=upload.on_error,
                progress=progress,
                on_phase=on_phase,
                source=f"{_load_source_prefix(upload_id)}{upload.original_name}",
                feed=upload.feed,
                reassert=upload.reassert,
                requested_by=upload.uploaded_by.get_username() if upload.uploaded_by_id else "",
            )
        except AttemptSuperseded:
            logger.warning("upload %s: attempt %s stopped: another attempt took over", upload_id, attempt)
            return None
        except LoadRejected as exc:
            _finish(mine, exc.result, Upload.Status.FAILED, error=str(exc), rows_total=heartbeat.rows_total)
        except InputError as exc:
            upload_fail(upload_id=upload_id, reason=str(exc), attempt=attempt)
        else:
            _finish(mine, result, Upload.Status.DONE, rows_total=heartbeat.rows_total)
    return Upload.objects.get(pk=upload_id)


def _finish(mine, result, status: str, error: str = "", rows_total: int | None = None) -> None:
    mine.update(
        status=status,
        error=error[:10_000],
        rows_read=result.rows_read,
        percent=100.0,
        rows_total=result.rows_read if rows_total is None or status == Upload.Status.DONE else rows_total,
        inserted=result.inserted,
        revised=result.revised,
        duplicates=result.duplicates,
        rejected=result.rejected,
        resent=result.resent,
        outranked=result.outranked,
        load_id=result.load_id,
        finished_at=timezone.now(),
        heartbeat_at=timezone.now(),
    )


def upload_requeue(*, upload_id: int, reason: str) -> None:
    """A transient failure: give the upload back to the queue (the task retries with backoff)."""
    Upload.objects.filter(pk=upload_id, status__in=Upload.ACTIVE).update(
        status=Upload.Status.QUEUED, error=f"retrying after: {reason}"[:10_000]
    )


def upload_fail(*, upload_id: int, reason: str, attempt: int | None = None) -> None:
    """Mark the upload failed (by ``attempt`` only while it still holds it, when given)."""
    rows = Upload.objects.filter(pk=upload_id).exclude(status=Upload.Status.DONE)
    if attempt is not None:
        rows = rows.filter(attempts=attempt)
    rows.update(status=Upload.Status.FAILED, error=reason[:10_000], finished_at=timezone.now())


def uploads_reclaim_stale(*, older_than: timedelta | None = None) -> list[int]:
    """Beat, every 10 s: uploads whose attempt is over (no heartbeat for ``older_than``, default
    TSM_UPLOAD_STALE_SECONDS, or its process known dead) go back to the queue; the dead attempt's Load
    is marked abandoned. Returns their ids for the caller to enqueue (``ingestion.tasks.uploads_requeue_stale``).
    This is what brings an upload back after the worker's main process was killed: its task message
    stays unacked in Redis until the visibility timeout.

    The dead attempt's half-done merge was rolled back with its connection, so a re-run loads cleanly.
    """
    limit = older_than if older_than is not None else timedelta(seconds=settings.TSM_UPLOAD_STALE_SECONDS)
    reclaimed = []
    for upload_id in Upload.objects.filter(status__in=Upload.ACTIVE).values_list("pk", flat=True):
        with transaction.atomic():
            upload = Upload.objects.select_for_update().filter(pk=upload_id, status__in=Upload.ACTIVE).first()
            if upload is None:
                continue
            now = timezone.now()
            if upload.heartbeat_at is not None and now - upload.heartbeat_at >= limit:
                reason = (
                    f"attempt {upload.attempts} on {upload.worker or 'an unknown worker'} stopped reporting"
                    f" ({int((now - upload.heartbeat_at).total_seconds())} s without a heartbeat)"
                )
            else:
                reason = _silent_reason(upload, now)
            if not reason:
                continue
            logger.warning("upload %s: re-queued; %s", upload_id, reason)
            _abandon_loads(upload, f"{reason}; re-queued")
            Upload.objects.filter(pk=upload_id).update(
                status=Upload.Status.QUEUED, error=f"reclaimed: {reason}"[:10_000]
            )
        reclaimed.append(upload_id)
    return reclaimed


def upload_worker_note(upload: Upload, now=None) -> str:
    """What the upload page says when no worker is on the upload (empty while all is well)."""
    now = now or timezone.now()
    limit = settings.TSM_UPLOAD_STALE_SECONDS
    if upload.status in Upload.ACTIVE and upload.heartbeat_at is not None:
        age = (now - upload.heartbeat_at).total_seconds()
        if age >= limit:
            return f"no worker has reported for {int(age)} s; it will be retried"
    if upload.status == Upload.Status.QUEUED:
        since = max(filter(None, (upload.created_at, upload.heartbeat_at)), default=None)
        if since is not None and (now - since).total_seconds() >= limit:
            return (
                f"queued for {int((now - since).total_seconds())} s: no worker has taken it yet "
                "(all busy, or none running: make status)"
            )
    return ""


def upload_progress_text(upload: Upload) -> str:
    """Progress in rows processed: "1,200,000 of 2,000,000 rows (60 %)", or, while the total is not
    known (a gzip file), the rows done with the bytes read as a hint (the parser reads ahead)."""
    if upload.status == Upload.Status.QUEUED:
        return "queued"
    if upload.rows_total:
        return f"{upload.rows_read:,} of {upload.rows_total:,} rows ({upload.percent:.0f} %)"
    if upload.status in Upload.ACTIVE and upload.size:
        return f"{upload.rows_read:,} rows so far ({upload.bytes_read:,} of {upload.size:,} bytes read)"
    return f"{upload.rows_read:,} rows"

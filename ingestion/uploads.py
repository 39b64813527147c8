"""Upload services: create (admin), process (Celery task), fail, reclaim stale ones (beat).

One operation, many thin entry points: the admin calls ``upload_create``; the task calls
``upload_process``, which runs the same loader as ``manage.py ingest``.
"""
from __future__ import annotations

import io
import logging
import time
import uuid
from datetime import timedelta

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from ingestion import parsers
from ingestion.checks import InputError
from ingestion.loader import LoadRejected, ingest_file
from ingestion.models import Upload
from timeseries.datasets import get_dataset

logger = logging.getLogger(__name__)
PROGRESS_EVERY_SECONDS = 1.0


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


def upload_create(*, dataset: str, file: UploadedFile, bar_interval: timedelta | None, on_error: str, user) -> Upload:
    """Store the file and enqueue its load once the transaction commits."""
    get_dataset(dataset)
    upload_check_file(file=file)
    upload = Upload(
        dataset=dataset, bar_interval=bar_interval, on_error=on_error, uploaded_by=user,
        original_name=getattr(file, "name", "") or "", size=file.size or 0,
    )
    upload.file.save(f"{uuid.uuid4().hex}-{upload.original_name or 'upload'}"[-200:], file, save=False)
    upload.save()
    upload_enqueue(upload_id=upload.pk)
    return upload


def upload_enqueue(*, upload_id: int) -> None:
    from ingestion.tasks import ingest_upload

    transaction.on_commit(lambda: ingest_upload.delay(upload_id))


def _claim(upload_id: int) -> bool:
    """QUEUED -> VALIDATING; only one worker wins (healthchecks-style conditional update)."""
    return (
        Upload.objects.filter(pk=upload_id, status=Upload.Status.QUEUED).update(
            status=Upload.Status.VALIDATING, attempts=F("attempts") + 1, heartbeat_at=timezone.now(), error=""
        )
        == 1
    )


def upload_process(*, upload_id: int) -> Upload | None:
    """Load one upload. Returns None when another worker owns it or it is already finished."""
    if not _claim(upload_id):
        return None
    upload = Upload.objects.get(pk=upload_id)
    last = {"t": 0.0}

    def on_phase(phase: str, load_id) -> None:
        status = Upload.Status.LOADING if phase == "loading" else Upload.Status.VALIDATING
        Upload.objects.filter(pk=upload_id).update(status=status, load_id=load_id, heartbeat_at=timezone.now())

    with upload.file.open("rb") as raw:
        counter = _CountingReader(raw)

        def progress(rows: int) -> None:
            now = time.monotonic()
            if now - last["t"] < PROGRESS_EVERY_SECONDS:
                return
            last["t"] = now
            percent = min(99.9, 100.0 * counter.count / upload.size) if upload.size else 0.0
            Upload.objects.filter(pk=upload_id).update(rows_read=rows, percent=percent, heartbeat_at=timezone.now())

        try:
            result = ingest_file(
                dataset=upload.dataset,
                path=io.BufferedReader(counter, buffer_size=1 << 20),
                bar_interval=upload.bar_interval or timedelta(minutes=1),
                on_error=upload.on_error,
                progress=progress,
                on_phase=on_phase,
                source=f"upload {upload_id}: {upload.original_name}",
            )
        except LoadRejected as exc:
            _finish(upload_id, exc.result, Upload.Status.FAILED, error=str(exc))
        except InputError as exc:
            upload_fail(upload_id=upload_id, reason=str(exc))
        else:
            _finish(upload_id, result, Upload.Status.DONE)
    return Upload.objects.get(pk=upload_id)


def _finish(upload_id: int, result, status: str, error: str = "") -> None:
    Upload.objects.filter(pk=upload_id).update(
        status=status, error=error[:10_000], rows_read=result.rows_read, percent=100.0,
        inserted=result.inserted, revised=result.revised, duplicates=result.duplicates, rejected=result.rejected,
        load_id=result.load_id, finished_at=timezone.now(), heartbeat_at=timezone.now(),
    )


def upload_requeue(*, upload_id: int, reason: str) -> None:
    """A transient failure: give the upload back to the queue (the task retries with backoff)."""
    Upload.objects.filter(pk=upload_id, status__in=Upload.ACTIVE).update(
        status=Upload.Status.QUEUED, error=f"retrying after: {reason}"[:10_000]
    )


def upload_fail(*, upload_id: int, reason: str) -> None:
    Upload.objects.filter(pk=upload_id).exclude(status=Upload.Status.DONE).update(
        status=Upload.Status.FAILED, error=reason[:10_000], finished_at=timezone.now()
    )


def uploads_reclaim_stale(*, older_than: timedelta | None = None) -> list[int]:
    """Uploads whose worker stopped reporting (killed, lost) go back to the queue and are re-enqueued.

    Their half-done merge was rolled back with the worker's connection, so a re-run loads cleanly.
    """
    older_than = older_than if older_than is not None else timedelta(seconds=settings.TSM_UPLOAD_STALE_SECONDS)
    cutoff = timezone.now() - older_than
    ids = list(
        Upload.objects.filter(status__in=Upload.ACTIVE, heartbeat_at__lte=cutoff).values_list("pk", flat=True)
    )
    reclaimed = []
    for upload_id in ids:
        moved = Upload.objects.filter(pk=upload_id, status__in=Upload.ACTIVE, heartbeat_at__lte=cutoff).update(
            status=Upload.Status.QUEUED, error="reclaimed: the worker stopped reporting progress"
        )
        if moved:
            reclaimed.append(upload_id)
            upload_enqueue(upload_id=upload_id)
    return reclaimed

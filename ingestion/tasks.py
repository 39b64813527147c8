"""Celery tasks of ingestion: thin, idempotent wrappers around the upload, buffer and backup services.

Tasks are an interface that calls services: they take ids, call the service (which fetches the row
again), retry only transient database errors (with backoff) and record failures on the Upload. A bad
file fails fast inside the service; it is never retried. Services never import tasks: whoever needs a
task enqueued — a shell (the admin, the write API, a command) or another task — enqueues it, with the
helpers below (``upload_enqueue``, ``flush_schedule``) where sending it takes more than ``.delay``.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import Task, shared_task
from django.db import InterfaceError, OperationalError, transaction

from ingestion import buffer, influx, uploads
from ingestion.loader import staging_drop_stale
from ingestion.models import IngestBatch
from timeseries.aggregates import BY_DATASET
from timeseries.consumer_runs import enqueue_beside
from timeseries.tasks import rollups_refresh

logger = logging.getLogger(__name__)
TRANSIENT = (OperationalError, InterfaceError)


class UploadTask(Task):
    def on_failure(self, exc, task_id, args, kwargs, einfo):
        upload_id = args[0] if args else kwargs.get("upload_id")
        if upload_id is not None:
            uploads.upload_fail(upload_id=upload_id, reason=f"{type(exc).__name__}: {exc}")


@shared_task(bind=True, base=UploadTask, acks_late=True, reject_on_worker_lost=True, max_retries=5)
def ingest_upload(self, upload_id: int) -> dict | None:
    try:
        upload = uploads.upload_process(upload_id=upload_id)
    except TRANSIENT as exc:
        uploads.upload_requeue(upload_id=upload_id, reason=f"{type(exc).__name__}: {exc}")
        raise self.retry(exc=exc, countdown=min(60, 2 ** (self.request.retries + 1))) from exc
    if upload is None:
        return None
    if upload.status == "done":
        rollups_enqueue(self, upload.dataset)
    return {
        "status": upload.status,
        "inserted": upload.inserted,
        "revised": upload.revised,
        "duplicates": upload.duplicates,
        "rejected": upload.rejected,
    }


def upload_enqueue(*, upload_id: int) -> None:
    """Have a worker load the upload once the current transaction commits (``uploads.upload_create``
    stores it; the admin, a re-queue and the sweep below send it here)."""
    transaction.on_commit(lambda: ingest_upload.delay(upload_id))


def uploads_requeue_stale(*, older_than: timedelta | None = None) -> list[int]:
    """``uploads.uploads_reclaim_stale``, each reclaimed upload enqueued once its re-queue commits."""
    reclaimed = uploads.uploads_reclaim_stale(older_than=older_than)
    for upload_id in reclaimed:
        upload_enqueue(upload_id=upload_id)
    return reclaimed


@shared_task
def uploads_reclaim_stale() -> list[int]:
    """Beat (every 10 s): give uploads whose worker died back to the queue (their Loads marked
    abandoned), then drop the staging tables of dead loads (the abandoned ones' included)."""
    reclaimed = uploads_requeue_stale()
    staging_drop_stale()
    return reclaimed


def flush_schedule(*, dataset: str, pending: int) -> None:
    """After a write-API batch committed: enqueue a flush of ``dataset`` now when ``pending`` rows
    fill the buffer, else once per age window (``buffer.flush_countdown`` decides)."""
    countdown = buffer.flush_countdown(dataset=dataset, pending=pending)
    if countdown is not None:
        flush_buffer.apply_async((dataset,), countdown=countdown)


@shared_task(bind=True, acks_late=True, max_retries=10)
def flush_buffer(self, dataset: str) -> dict:
    try:
        result = buffer.buffer_flush(dataset=dataset)
    except TRANSIENT as exc:
        raise self.retry(exc=exc, countdown=min(30, 2 ** (self.request.retries + 1))) from exc
    # No rollups refresh per flush: a feed flushes every second or so, and each refresh re-aggregates
    # every bucket the flush touched (a whole day of bars per symbol), which halved the write API's
    # throughput. Beat's 5 s refresh batches them; reads stay exact meanwhile (pending changes are
    # aggregated live), only a little slower.
    return {"batches": result.batches, "rows": result.rows, "loads": result.loads}


def rollups_enqueue(task: Task, dataset: str) -> None:
    """After a committed load: have the rollups consumer pick up its changes now (beat also runs it
    every few seconds), on the queue this task came from."""
    if dataset in BY_DATASET:
        enqueue_beside(rollups_refresh, task, dataset)


@shared_task
def flush_all_buffers() -> None:
    """Safety net: pick up pending batches whose scheduled flush was lost (e.g. Redis restarted)."""
    for dataset in (
        IngestBatch.objects.filter(status=IngestBatch.Status.PENDING).values_list("dataset", flat=True).distinct()
    ):
        flush_buffer.delay(dataset)


@shared_task(bind=True, max_retries=8)
def influx_backup(self) -> dict:
    """Beat: mirror new market data versions to InfluxDB (a no-op when the backup is off).

    Only an unreachable InfluxDB / 5xx answer (or a transient database error) is retried, with
    backoff; the service has recorded the error and left the change-log cursor where it was.
    """
    try:
        return influx.influx_backup_run().as_dict()
    except (influx.InfluxUnavailable, *TRANSIENT) as exc:
        raise self.retry(exc=exc, countdown=min(300, 2 ** (self.request.retries + 2))) from exc

"""Celery tasks: thin, idempotent wrappers around the upload services.

They take ids, fetch the row again, retry only transient database errors (with backoff) and record
failures on the Upload. A bad file fails fast inside the service; it is never retried.
"""
from __future__ import annotations

import logging

from celery import Task, shared_task
from django.db import InterfaceError, OperationalError

from ingestion import uploads

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
        raise self.retry(exc=exc, countdown=min(60, 2 ** (self.request.retries + 1)))
    if upload is None:
        return None
    if upload.status == "done":
        rollups_enqueue(self, upload.dataset)
    return {"status": upload.status, "inserted": upload.inserted, "revised": upload.revised,
            "duplicates": upload.duplicates, "rejected": upload.rejected}


@shared_task
def uploads_reclaim_stale() -> list[int]:
    """Beat (every 10 s): give uploads whose worker died back to the queue (their Loads marked
    abandoned), then drop the staging tables of dead loads (the abandoned ones' included)."""
    from ingestion.loader import staging_drop_stale

    reclaimed = uploads.uploads_reclaim_stale()
    staging_drop_stale()
    return reclaimed


@shared_task(bind=True, acks_late=True, max_retries=10)
def flush_buffer(self, dataset: str) -> dict:
    from ingestion import buffer

    try:
        result = buffer.buffer_flush(dataset=dataset)
    except TRANSIENT as exc:
        raise self.retry(exc=exc, countdown=min(30, 2 ** (self.request.retries + 1)))
    # No rollups refresh per flush: a feed flushes every second or so, and each refresh re-aggregates
    # every bucket the flush touched (a whole day of bars per symbol), which halved the write API's
    # throughput. Beat's 5 s refresh batches them; reads stay exact meanwhile (pending changes are
    # aggregated live), only a little slower.
    return {"batches": result.batches, "rows": result.rows, "loads": result.loads}


def rollups_enqueue(task: Task, dataset: str) -> None:
    """After a committed load: have the rollups consumer pick up its changes now (beat also runs it
    every few seconds), on the queue this task came from."""
    from timeseries.aggregates import BY_DATASET
    from timeseries.tasks import enqueue_beside, rollups_refresh

    if dataset in BY_DATASET:
        enqueue_beside(rollups_refresh, task, dataset)


@shared_task
def flush_all_buffers() -> None:
    """Safety net: pick up pending batches whose scheduled flush was lost (e.g. Redis restarted)."""
    from ingestion.models import IngestBatch

    for dataset in IngestBatch.objects.filter(status=IngestBatch.Status.PENDING).values_list("dataset", flat=True).distinct():
        flush_buffer.delay(dataset)


@shared_task(bind=True, max_retries=8)
def influx_backup(self) -> dict:
    """Beat: mirror new market data versions to InfluxDB (a no-op when the backup is off).

    Only an unreachable InfluxDB / 5xx answer (or a transient database error) is retried, with
    backoff; the service has recorded the error and left the change-log cursor where it was.
    """
    from ingestion import influx

    try:
        return influx.influx_backup_run().as_dict()
    except (influx.InfluxUnavailable, *TRANSIENT) as exc:
        raise self.retry(exc=exc, countdown=min(300, 2 ** (self.request.retries + 2)))

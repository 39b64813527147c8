"""Celery tasks of the timeseries app: thin wrappers around services (DESIGN.md section 6).

Other features may add their tasks here (one import line or one task each).
"""
from __future__ import annotations

from celery import shared_task
from django.db import InterfaceError, OperationalError

from timeseries.quality_tasks import quality_check_pending, quality_scores_set_filtered  # noqa: F401,E402

TRANSIENT = (OperationalError, InterfaceError)


@shared_task(bind=True, acks_late=True, max_retries=10)
def rollups_refresh(self, dataset: str | None = None) -> dict:
    """Beat (every few seconds) and after loads: recompute the aggregate buckets the change log says
    were touched (``timeseries.aggregates.rollups_refresh``). Idempotent; concurrent runs serialise
    on the consumer's cursor row."""
    from django.conf import settings

    from timeseries import aggregates

    try:  # bounded per run, so a write burst's backlog never holds a worker process for long
        return aggregates.rollups_refresh(dataset=dataset, batch=100,
                                          max_batches=max(1, settings.TSM_CONSUMER_CHANGES_PER_RUN // 100))
    except TRANSIENT as exc:
        raise self.retry(exc=exc, countdown=min(30, 2 ** (self.request.retries + 1)))


@shared_task(bind=True, acks_late=True, max_retries=5)
def retention_run(self) -> list[dict]:
    """Beat (hourly): remove rows past each dataset's retention horizon (``timeseries.lifecycle``)."""
    from timeseries import lifecycle

    try:
        return [r.as_dict() for r in lifecycle.retention_run()]
    except TRANSIENT as exc:
        raise self.retry(exc=exc, countdown=min(300, 2 ** (self.request.retries + 4)))

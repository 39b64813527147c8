"""Celery tasks of the timeseries app.

Tasks are an interface that calls services: a task takes plain arguments, calls a service
(``timeseries.aggregates``, ``timeseries.lifecycle``, ``timeseries.quality``), retries transient
database errors and returns a report. Services never import tasks; whoever needs a task enqueued (a
shell, or another task) enqueues it. How a bounded consumer run schedules itself is in
``timeseries.consumer_runs``; the curation tasks are in ``timeseries.quality_tasks``, imported here so
that Celery's autodiscovery (which imports ``<app>.tasks``) registers them.
"""

from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError

from timeseries import aggregates, lifecycle
from timeseries.consumer_runs import consumer_run
from timeseries.quality_tasks import quality_check_pending, quality_scores_set_filtered  # noqa: F401  (registered with Celery)

TRANSIENT = (OperationalError, InterfaceError)


@shared_task(bind=True, acks_late=True, max_retries=10)
def rollups_refresh(self, dataset: str | None = None, continued: bool = False) -> dict:
    """Beat (every few seconds) and after loads: recompute the aggregate buckets the change log says
    were touched (``timeseries.aggregates.rollups_refresh``). Idempotent; concurrent runs serialise
    on the consumer's cursor row."""
    max_batches = max(1, settings.TSM_CONSUMER_CHANGES_PER_RUN // 100)

    def work() -> tuple[dict, bool]:
        try:  # bounded per run, so a write burst's backlog never holds a worker process for long
            report = aggregates.rollups_refresh(dataset=dataset, batch=100, max_batches=max_batches)
        except TRANSIENT as exc:
            raise self.retry(exc=exc, countdown=min(30, 2 ** (self.request.retries + 1))) from exc
        return report, any(isinstance(done, dict) and done.get("batches", 0) >= max_batches for done in report.values())

    return consumer_run(self, dataset, continued=continued, work=work)


@shared_task(bind=True, acks_late=True, max_retries=5)
def retention_run(self) -> list[dict]:
    """Beat (hourly): remove rows past each dataset's retention horizon (``timeseries.lifecycle``)."""
    try:
        return [r.as_dict() for r in lifecycle.retention_run()]
    except TRANSIENT as exc:
        raise self.retry(exc=exc, countdown=min(300, 2 ** (self.request.retries + 4))) from exc

"""Celery tasks of the timeseries app: thin wrappers around services (DESIGN.md section 6).

Other features may add their tasks here (one import line or one task each).
"""
from __future__ import annotations

from celery import Task, shared_task
from django.db import InterfaceError, OperationalError

from timeseries.quality_tasks import quality_check_pending, quality_scores_set_filtered  # noqa: F401,E402

TRANSIENT = (OperationalError, InterfaceError)


CONTINUE_AFTER_S = 5.0  # a consumer's next bounded run: as often as beat runs it, so a burst keeps its CPU


def enqueue_beside(task: Task, current: Task, *args, countdown: float = 0, **kwargs) -> None:
    """Send ``task(*args, **kwargs)`` to the queue ``current`` (a running task) came from."""
    queue = (current.request.delivery_info or {}).get("routing_key")
    task.apply_async(args, kwargs, countdown=countdown, **({"queue": queue} if queue else {}))


def _chain_key(current: Task, dataset: str | None) -> str:
    return f"tsm:continue:{current.name}:{dataset}"


def chain_running(current: Task, dataset: str | None, *, continued: bool) -> bool:
    """Whether a beat run should stand aside: a continuation chain (continue_backlog) is working
    through the backlog at its own pace, and a second run would only double the consumers' share of
    the CPU during a write burst."""
    if continued or current.request.is_eager:
        return False
    from django.core.cache import cache

    try:
        return cache.get(_chain_key(current, dataset)) is not None
    except Exception:  # Redis trouble: run
        return False


def continue_backlog(current: Task, dataset: str | None, *, continued: bool, backlog: bool) -> None:
    """After a bounded consumer run: while changes are pending, run again CONTINUE_AFTER_S later — also
    without beat (after an upload, on a worker without beat). Running at once instead kept the consumers
    busy through a write burst: the write API fell from 91k to 69k rows/s. One chain at a time:
    the chain holds a cache key, renewed by each link and dropped by the last; a beat run starts a chain
    only when none holds it (or its holder died: the key expires). Not from ``apply()`` (tests,
    commands): those callers call again themselves."""
    if current.request.is_eager:
        return
    from django.core.cache import cache

    key = _chain_key(current, dataset)
    try:
        if not backlog:
            if continued:
                cache.delete(key)
            return
        if continued:
            cache.set(key, 1, timeout=60)
        elif not cache.add(key, 1, timeout=60):
            return  # a chain is already on it
    except Exception:  # Redis trouble: the next beat run picks the backlog up
        return
    enqueue_beside(current, current, dataset, countdown=CONTINUE_AFTER_S, continued=True)


@shared_task(bind=True, acks_late=True, max_retries=10)
def rollups_refresh(self, dataset: str | None = None, continued: bool = False) -> dict:
    """Beat (every few seconds) and after loads: recompute the aggregate buckets the change log says
    were touched (``timeseries.aggregates.rollups_refresh``). Idempotent; concurrent runs serialise
    on the consumer's cursor row."""
    from django.conf import settings

    from timeseries import aggregates

    if chain_running(self, dataset, continued=continued):
        return {"skipped": "a continuation is working through the backlog"}
    max_batches = max(1, settings.TSM_CONSUMER_CHANGES_PER_RUN // 100)
    try:  # bounded per run, so a write burst's backlog never holds a worker process for long
        report = aggregates.rollups_refresh(dataset=dataset, batch=100, max_batches=max_batches)
    except TRANSIENT as exc:
        raise self.retry(exc=exc, countdown=min(30, 2 ** (self.request.retries + 1)))
    backlog = any(isinstance(done, dict) and done.get("batches", 0) >= max_batches for done in report.values())
    continue_backlog(self, dataset, continued=continued, backlog=backlog)
    return report


@shared_task(bind=True, acks_late=True, max_retries=5)
def retention_run(self) -> list[dict]:
    """Beat (hourly): remove rows past each dataset's retention horizon (``timeseries.lifecycle``)."""
    from timeseries import lifecycle

    try:
        return [r.as_dict() for r in lifecycle.retention_run()]
    except TRANSIENT as exc:
        raise self.retry(exc=exc, countdown=min(300, 2 ** (self.request.retries + 4)))

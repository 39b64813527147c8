"""Celery tasks of curation: thin wrappers around ``timeseries.quality``.

Tasks are an interface that calls services; services never import tasks (the admin enqueues
``quality_scores_set_filtered`` after validating the filters). ``timeseries/tasks.py`` imports this
module so that Celery's autodiscovery registers these tasks; the task names keep this module's path.
"""

from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError

from timeseries import quality
from timeseries.changes import changes_lag
from timeseries.consumer_runs import consumer_run

TRANSIENT = (OperationalError, InterfaceError)


@shared_task(bind=True, acks_late=True, max_retries=10)
def quality_check_pending(self, dataset: str | None = None, continued: bool = False) -> dict:
    """Beat (every few seconds): run the quality checks over the spans the change log lists after the
    "quality" cursor (``quality.quality_changes_process``). Idempotent; runs serialise on the cursor.
    A span whose checks raise is recorded (``ConsumerFailure``) and passed; open ones are retried."""

    def work() -> tuple[dict, bool]:
        out = {}
        try:
            for name in [dataset] if dataset else quality.CURATED_DATASETS:
                # bounded per run (the rest in the next, see consumer_run): a write burst's backlog must
                # not hold the worker processes the flushes need
                result = quality.quality_changes_process(dataset=name, limit=settings.TSM_CONSUMER_CHANGES_PER_RUN)
                out[name] = {
                    "spans": result.spans,
                    "flags": result.flags,
                    "lowered": result.lowered,
                    "failed": result.failed,
                    "retried": result.retried,
                    "resolved": result.resolved,
                    "pending": changes_lag(consumer=quality.QUALITY_CONSUMER, dataset=name)["pending"],
                }
        except TRANSIENT as exc:
            raise self.retry(exc=exc, countdown=min(30, 2 ** (self.request.retries + 1))) from exc
        return out, any(done["pending"] for done in out.values())

    return consumer_run(self, dataset, continued=continued, work=work)


@shared_task(bind=True, acks_late=True, max_retries=5)
def quality_scores_set_filtered(
    self, dataset: str, params: dict, score: float, reason: str, user_id: int | None
) -> dict:
    """A bulk curation too large for the request: every row matching the admin filters ``params``."""
    try:
        result = quality.quality_scores_set_filtered(
            dataset=dataset, params=params, score=score, reason=reason, user_id=user_id
        )
    except TRANSIENT as exc:
        raise self.retry(exc=exc, countdown=min(60, 2 ** (self.request.retries + 1))) from exc
    return {"batch": str(result.batch), "changed": result.changed}

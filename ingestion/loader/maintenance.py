"""Housekeeping of the loader: staging tables left behind by a killed process (the beat task
``ingestion.tasks.uploads_reclaim_stale`` drops them)."""

from __future__ import annotations

from datetime import timedelta

from django.db import connection
from django.utils import timezone

from ingestion.loader.run import STAGING_PREFIX
from ingestion.loader.staging import staging_drop
from ingestion.models import Load


def staging_drop_stale(*, older_than: timedelta = timedelta(hours=6)) -> list[str]:
    """Drop staging tables left behind by a killed process; returns their names.

    A staging table belongs to a running load while its Load is "loading" and younger than
    ``older_than`` (longer than any load runs); a load found dead is marked failed.
    """
    with connection.cursor() as cur:
        cur.execute(
            "SELECT tablename FROM pg_tables WHERE tablename LIKE %s", [STAGING_PREFIX.replace("_", r"\_") + "%"]
        )
        names = [r[0] for r in cur.fetchall()]
    cutoff = timezone.now() - older_than
    live = {
        pk.hex
        for pk in Load.objects.filter(status=Load.Status.LOADING, started_at__gte=cutoff).values_list("id", flat=True)
    }
    stale = [n for n in names if n[len(STAGING_PREFIX) :] not in live]
    Load.objects.filter(status=Load.Status.LOADING, started_at__lt=cutoff).update(
        status=Load.Status.FAILED, error="the loading process stopped (killed or lost)", finished_at=timezone.now()
    )
    for name in stale:
        staging_drop(name)
    return stale

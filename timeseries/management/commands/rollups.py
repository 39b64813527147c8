"""manage.py rollups — run the aggregates' change-log consumer now, rebuild it, or show its backlog.

    python manage.py rollups                  # consume pending changes (what beat runs every 5 s)
    python manage.py rollups --rebuild        # rebuild the rollups (and continuous aggregates) from scratch
    python manage.py rollups --lag            # pending changes per aggregated dataset
    python manage.py rollups --install        # (re)create the continuous aggregates and policies (TimescaleDB)

Prints one JSON object.
"""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from timeseries import aggregates


class Command(BaseCommand):
    help = "Run, rebuild or inspect the daily_ohlcv / hourly_sentiment rollups (timeseries/aggregates.py)."

    def add_arguments(self, parser):
        parser.add_argument("--dataset", choices=list(aggregates.BY_DATASET), help="only this dataset")
        group = parser.add_mutually_exclusive_group()
        group.add_argument("--rebuild", action="store_true", help="recompute every bucket from scratch")
        group.add_argument("--lag", action="store_true", help="only report the consumer's backlog")
        group.add_argument("--install", action="store_true", help="create missing continuous aggregates")

    def handle(self, *args, dataset, rebuild, lag, install, **options):
        datasets = [dataset] if dataset else list(aggregates.BY_DATASET)
        try:
            if lag:
                out = aggregates.rollups_lag(datasets=datasets)
            elif install:
                with connection.cursor() as cur:
                    out = {"created": aggregates.aggregates_install(cur=cur)}
            elif rebuild:
                out = {d: {"buckets": aggregates.rollups_rebuild(dataset=d)} for d in datasets}
            else:
                out = aggregates.rollups_refresh(dataset=dataset)
        except (ValueError, RuntimeError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(json.dumps(out, default=str, sort_keys=True))

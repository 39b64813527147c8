"""manage.py restore_from_influx DATASET --start T --end T — load the InfluxDB backup back.

The points go through the normal loader (ingestion.loader.ingest_table), in their original order,
so restoring twice stores nothing the second time. Prints the counts (--format json: one JSON line).
"""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from ingestion import influx
from ingestion.loader import LoadRejected
from timeseries import params


class Command(BaseCommand):
    help = "Restore backed-up market data versions with START <= time < END from InfluxDB."

    def add_arguments(self, parser):
        parser.add_argument("dataset", help=f"the dataset to restore (only {influx.DATASET!r} is backed up)")
        parser.add_argument("--start", required=True, help="event time from (ISO 8601 with an offset), inclusive")
        parser.add_argument("--end", required=True, help="event time to (ISO 8601 with an offset), exclusive")
        parser.add_argument("--format", choices=("text", "json"), default="text")

    def handle(self, *args, dataset, start, end, format, **options):
        if dataset != influx.DATASET:
            raise CommandError(f"DATASET {dataset!r}: only {influx.DATASET!r} is backed up to InfluxDB")
        try:
            start_at = params.instant("--start", start)
            end_at = params.instant("--end", end)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if end_at <= start_at:
            raise CommandError(f"--end={end!r} must be after --start={start!r}")
        try:
            result = influx.influx_restore(dataset=dataset, start=start_at, end=end_at)
        except (influx.InfluxError, LoadRejected) as exc:
            raise CommandError(str(exc)) from None
        counts = result.as_dict()
        if format == "json":
            self.stdout.write(json.dumps(counts))
        else:
            self.stdout.write(", ".join(f"{k} {v}" for k, v in counts.items()))

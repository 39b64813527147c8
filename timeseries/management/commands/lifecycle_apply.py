import json

from django.core.management.base import BaseCommand

from timeseries.capabilities import capabilities
from timeseries.datasets import DATASETS
from timeseries.lifecycle import lifecycle_apply


class Command(BaseCommand):
    help = (
        "Bring compression layouts and compression/retention policies in line with TSM_COMPRESS_AFTER "
        "and TSM_RETENTION (TimescaleDB lane; on plain PostgreSQL retention is the beat task)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dataset", action="append", choices=list(DATASETS), help="only this dataset (repeatable)")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args, **options):
        done = lifecycle_apply(datasets=options["dataset"])
        if options["json"]:
            self.stdout.write(json.dumps({"lane": capabilities().lane, "datasets": done}))
            return
        if not capabilities().timescaledb:
            self.stdout.write(
                "plain PostgreSQL lane: no TimescaleDB policies to apply "
                "(retention runs as the Celery beat task timeseries.tasks.retention_run)"
            )
            return
        for item in done:
            self.stdout.write(f"{item['dataset']}: " + ("; ".join(item["actions"]) or "up to date"))

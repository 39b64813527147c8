import json

from django.core.management.base import BaseCommand

from timeseries.datasets import DATASETS
from timeseries.lifecycle import storage_report, storage_report_lines

COLUMNS = (
    ("dataset", "dataset"),
    ("rows", "rows (est.)"),
    ("time_range", "time range"),
    ("bytes", "on disk"),
    ("bytes_per_row", "bytes/row"),
    ("compression", "compression"),
    ("aggregates", "aggregates"),
    ("retention", "retention"),
    ("backup", "backup"),
)


class Command(BaseCommand):
    help = (
        "Per dataset: estimated rows, time range, bytes on disk, bytes per row, compression ratio "
        "(TimescaleDB lane), aggregate freshness, retention horizon and backup lag."
    )

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="print the report as JSON")
        parser.add_argument("--dataset", action="append", choices=list(DATASETS), help="only this dataset (repeatable)")

    def handle(self, *args, **options):
        report = storage_report(datasets=options["dataset"])
        if options["json"]:
            self.stdout.write(json.dumps(report, indent=2, default=str))
            return
        lines = storage_report_lines(report=report)
        lane = report[0]["lane"] if report else "?"
        self.stdout.write(f"storage lane: {lane}")
        for line in lines:
            self.stdout.write("")
            for key, label in COLUMNS:
                self.stdout.write(f"  {label:<12} {line[key]}")

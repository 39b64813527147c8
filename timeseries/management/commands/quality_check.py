"""manage.py quality_check DATASET — run the automatic quality checks on demand.

    manage.py quality_check market_data --start 2024-03-01T00:00Z --end 2024-03-02T00:00Z [--symbols AAPL,MSFT]
    manage.py quality_check market_data --pending      # what the beat task does: the change log's pending spans

Prints one JSON object: spans checked, flags written (per check), scores lowered.
"""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from timeseries import params, quality


class Command(BaseCommand):
    help = "Run the data-quality checks over a time range (or the change log's pending spans)."

    def add_arguments(self, parser):
        parser.add_argument("dataset", choices=list(quality.CURATED_DATASETS))
        parser.add_argument("--start", help="ISO 8601 instant with offset")
        parser.add_argument("--end", help="ISO 8601 instant with offset")
        parser.add_argument("--symbols", help="comma-separated symbols (default: every symbol)")
        parser.add_argument("--pending", action="store_true", help="check the spans the change log lists as pending")

    def handle(self, *args, dataset, start, end, symbols, pending, **options):
        if pending:
            if start or end or symbols:
                raise CommandError("--pending takes no --start/--end/--symbols")
            result = quality.quality_changes_process(dataset=dataset)
        else:
            if not start or not end:
                raise CommandError("give --start and --end (or --pending)")
            try:
                lo, hi = params.instant("--start", start), params.instant("--end", end)
            except ValueError as exc:
                raise CommandError(str(exc)) from None
            if lo > hi:
                raise CommandError("--start must not be after --end")
            try:
                symbol_list = params.symbols("--symbols", symbols, **params.EVERY_ITEM) if symbols else None
            except params.ParameterError as exc:
                raise CommandError(str(exc)) from None
            result = quality.quality_checks_range(dataset=dataset, symbols=symbol_list, start=lo, end=hi)
        self.stdout.write(
            json.dumps(
                {
                    "dataset": dataset,
                    "spans": result.spans,
                    "flags": result.flags,
                    "by_check": result.by_check,
                    "lowered": result.lowered,
                }
            )
        )

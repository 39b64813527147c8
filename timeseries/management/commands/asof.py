"""manage.py asof DATASET --at T — what the dataset's point-in-time selector returns at T.

Each dataset declares its selector (``Dataset.state_selector``): market_data -> market_state,
news_events -> news, insider_trades -> insider_trades, social_sentiment -> sentiment,
government_events -> government_events.
JSON: a list of objects, timestamps ISO 8601 UTC, every stored column plus time, known_at, recorded_at
(exact decimals as strings).
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from timeseries import formats, params, pit
from timeseries.datasets import DATASETS


class Command(BaseCommand):
    help = "Print what was known at --at (as recorded by --recorded-by) for a dataset."

    def add_arguments(self, parser):
        parser.add_argument("dataset", choices=list(DATASETS))
        parser.add_argument("--at", required=True, help="ISO 8601 instant with offset, e.g. 2024-03-01T15:30:00Z")
        parser.add_argument("--recorded-by", help="replay what tsm had recorded by this instant")
        parser.add_argument("--symbols", help="comma-separated symbols")
        parser.add_argument("--limit", type=int, help="at most this many rows")
        parser.add_argument("--format", choices=("table", "json", "csv"), default="table")

    def handle(self, *args, dataset, at, recorded_by, symbols, limit, format, **options):
        try:
            at_value = params.instant("--at", at)
            rb_value = params.instant("--recorded-by", recorded_by) if recorded_by else None
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        try:
            if limit is not None:
                params.positive_int("--limit", limit)
        except params.ParameterError as exc:
            raise CommandError(str(exc)) from None
        try:
            symbol_list = params.symbols("--symbols", symbols, **params.EVERY_ITEM) if symbols else None
        except params.ParameterError as exc:
            raise CommandError(str(exc)) from None
        rows = pit.state_as_of(dataset=dataset, at=at_value, recorded_by=rb_value, symbols=symbol_list, limit=limit)
        columns = list(DATASETS[dataset].stored_columns)
        if format == "json":
            self.stdout.write(formats.to_json([{c: r[c] for c in columns} for r in rows]))
        elif format == "csv":
            self.stdout.write(formats.to_csv(rows, columns), ending="")
        else:
            self.stdout.write(formats.to_table(rows, columns))

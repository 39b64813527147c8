"""manage.py seed_demo [--symbols N] [--days D] [--seed K] — deterministic demo data for all five datasets.

A command of the ingestion app: it loads through the loader, and timeseries never imports ingestion.

Loads through the normal loader, so running it twice stores nothing new (every row is a duplicate).
Market data includes a share of late corrections (new versions known hours later); insider trades
include form 4/A amendments.
"""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from ingestion.loader import ingest_table
from timeseries import demo, params
from timeseries.models import Symbol

DEFAULT_START = "2024-03-01T00:00:00Z"
BUILDERS = (
    ("news_events", demo.news_events),
    ("insider_trades", demo.insider_trades),
    ("social_sentiment", demo.social_sentiment),
    ("government_events", demo.government_events),
)


class Command(BaseCommand):
    help = "Generate and load realistic demo data (deterministic for a given --seed)."

    def add_arguments(self, parser):
        parser.add_argument("--symbols", type=int, default=20, help="number of symbols (real tickers first)")
        parser.add_argument("--days", type=int, default=10, help="calendar days of data")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--start", default=DEFAULT_START, help="first day (ISO 8601 with offset)")
        parser.add_argument("--format", choices=("text", "json"), default="text")
        parser.add_argument(
            "--export",
            metavar="DIR",
            help="write the demo data as CSV files (one per dataset) into DIR instead of loading it",
        )

    def handle(self, *args, symbols, days, seed, start, format, export=None, **options):
        if symbols < 1 or days < 1:
            raise CommandError("--symbols and --days must be positive")
        try:
            start_at = params.instant("--start", start)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        names = demo.make_symbols(symbols)
        kw = {"symbols": names, "start": start_at, "days": days, "seed": seed}
        if export:
            self._export(Path(export), kw)
            return
        self._symbols(names)
        report = {}
        for batch in demo.market_data_batches(**kw, batch_rows=500_000):
            self._add(report, "market_data", ingest_table(dataset="market_data", data=batch, source="seed_demo"))
        for dataset, build in BUILDERS:
            table = build(**kw)
            if table.num_rows == 0:  # e.g. no insider filing in a short window
                report[dataset] = {"inserted": 0, "revised": 0, "duplicates": 0, "rejected": 0}
                continue
            self._add(report, dataset, ingest_table(dataset=dataset, data=table, source="seed_demo"))
        if format == "json":
            self.stdout.write(json.dumps(report))
        else:
            for dataset, counts in report.items():
                self.stdout.write(f"{dataset}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))

    def _export(self, folder: Path, kw: dict) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.stdout.write(
            f"{folder / 'market_data.csv'}: "
            f"{demo.write_csv(demo.market_data_batches(**kw), folder / 'market_data.csv')} rows"
            " (the demo window: loaded by seed_demo already, so an upload of it stores nothing new)"
        )
        follow_ups = (
            ("market_data_next_session.csv", demo.market_data_next_session(**kw), "the next session's bars: inserted"),
            ("market_data_fixes.csv", demo.market_data_fixes(**kw), "closes re-sent with other values: revised"),
        )
        for name, table, effect in follow_ups:
            self.stdout.write(f"{folder / name}: {demo.write_csv(table, folder / name)} rows ({effect})")
        for dataset, build in BUILDERS:
            table = build(**kw)
            if table.num_rows == 0:  # a header-only file would be rejected as empty: write none
                self.stdout.write(f"{dataset}: no rows in this window, no file written")
                continue
            self.stdout.write(f"{folder / (dataset + '.csv')}: {demo.write_csv(table, folder / f'{dataset}.csv')} rows")

    @staticmethod
    def _add(report: dict, dataset: str, result) -> None:
        totals = report.setdefault(dataset, dict.fromkeys(result.counts(), 0))
        for k, v in result.counts().items():
            totals[k] += v

    @staticmethod
    def _symbols(names: list[str]) -> None:
        existing = set(Symbol.objects.filter(symbol__in=names).values_list("symbol", flat=True))
        Symbol.objects.bulk_create(
            [Symbol(symbol=s, sector=demo.sector_of(s), exchange="DEMO") for s in names if s not in existing]
        )

"""manage.py ingest DATASET FILE [FILE ...] — the same loader the Celery workers run.

With --format json the last line of stdout is one JSON object with the summed counts:
{"inserted": …, "revised": …, "duplicates": …, "rejected": …, "rows_read": …, "errors": [...]}.
Exits non-zero when a file is rejected (on --on-error reject) or cannot be read.
"""

from __future__ import annotations

import json
import sys

from django.core.management.base import BaseCommand, CommandError

from ingestion.checks import InputError
from ingestion.loader import ON_ERROR_MODES, LoadRejected, ingest_file
from timeseries import params
from timeseries.datasets import DATASETS


class Command(BaseCommand):
    help = "Load CSV / Parquet / NDJSON files (gzip accepted) into a dataset."

    def add_arguments(self, parser):
        parser.add_argument("dataset", choices=list(DATASETS))
        parser.add_argument("files", nargs="+")
        parser.add_argument("--bar-interval", default="1min", help="market_data bar length (default 1min)")
        parser.add_argument("--on-error", choices=ON_ERROR_MODES, default="reject")
        parser.add_argument("--format", choices=("text", "json"), default="text")

    def handle(self, *args, dataset, files, bar_interval, on_error, format, **options):
        try:
            interval = params.interval("--bar-interval", bar_interval)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        totals = {"inserted": 0, "revised": 0, "duplicates": 0, "rejected": 0, "rows_read": 0}
        errors: list[str] = []
        failed: list[str] = []
        for path in files:
            bar = self._progress(path, format)
            try:
                result = ingest_file(
                    dataset=dataset,
                    path=path,
                    bar_interval=interval,
                    on_error=on_error,
                    progress=bar.update_to if bar else None,
                )
            except LoadRejected as exc:
                result = exc.result
                failed.append(path)
                errors += [f"{path}: {e}" for e in result.errors]
            except (InputError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
                failed.append(path)
                errors.append(f"{path}: {exc}")
                if bar:
                    bar.close()
                self._say(format, f"{path}: rejected: {exc}")
                continue
            finally:
                if bar:
                    bar.close()
            for k in totals:
                totals[k] += getattr(result, k)
            if path not in failed:
                errors += [f"{path}: {e}" for e in result.errors]
            self._say(format, self._summary(path, result, rejected=path in failed))
        if format == "json":
            self.stdout.write(json.dumps({**totals, "errors": errors[:1000]}))
        if failed:
            raise CommandError(f"{len(failed)} file(s) rejected, nothing stored from them: {', '.join(failed)}")

    def _say(self, format: str, text: str) -> None:
        (self.stderr if format == "json" else self.stdout).write(text)

    def _summary(self, path, result, *, rejected: bool) -> str:
        head = f"{path}: " + ", ".join(f"{k} {v}" for k, v in result.counts().items())
        if rejected:
            lines = [head + " — REJECTED, nothing stored"] + [f"  {e}" for e in result.errors[:50]]
            if result.rejected > 50:
                lines.append(f"  … {result.rejected - 50} more bad rows (see the quarantine for load {result.load_id})")
            return "\n".join(lines)
        if result.rejected:
            head += f" (bad rows quarantined with load {result.load_id})"
        if result.replay_of:
            head += f" — {result.replay_note}"
        return head

    def _progress(self, path: str, format: str):
        if not sys.stderr.isatty():
            return None
        from tqdm import tqdm

        bar = tqdm(desc=path, unit=" rows", unit_scale=True, file=sys.stderr, leave=False)

        def update_to(rows: int) -> None:
            bar.update(rows - bar.n)

        bar.update_to = update_to
        return bar

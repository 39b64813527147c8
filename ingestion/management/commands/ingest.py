"""manage.py ingest DATASET FILE [FILE ...] [--feed NAME] [--reassert] — the same loader the Celery workers run.

``--feed NAME``: the source the rows come from (ranked by TSM_FEED_PRECEDENCE; names follow
timeseries.rules.FEED_RULE_TEXT). ``--reassert``: rows equal to a superseded version of their
(key, known_at) become current again instead of counting as re-sends (deliberate: it can undo fixes).
Every load records who asked: "manage.py ingest (<OS user>)".

With --format json the last line of stdout is one JSON object with the summed counts:
{"inserted": …, "revised": …, "duplicates": …, "rejected": …, "resent": …, "outranked": …,
"rows_read": …, "errors": [...]} ("resent" is part of "duplicates": rows equal to a superseded or
outranked version, not stored). Exits non-zero when a file is rejected (on --on-error reject) or
cannot be read.
"""

from __future__ import annotations

import getpass
import json
import sys

from django.core.management.base import BaseCommand, CommandError

from ingestion.checks import InputError
from ingestion.loader import ON_ERROR_MODES, LoadRejected, ingest_file
from timeseries import params
from timeseries.datasets import DATASETS
from timeseries.rules import feed_problem

COUNTS = ("inserted", "revised", "duplicates", "rejected", "resent", "outranked", "rows_read")


def requested_by() -> str:
    """Who runs the command, as the Load records it."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name and no password-file entry (a bare container)
        user = "unknown OS user"
    return f"manage.py ingest ({user})"


class Command(BaseCommand):
    help = "Load CSV / Parquet / NDJSON files (gzip accepted) into a dataset."

    def add_arguments(self, parser):
        parser.add_argument("dataset", choices=list(DATASETS))
        parser.add_argument("files", nargs="+")
        parser.add_argument("--bar-interval", default="1min", help="market_data bar length (default 1min)")
        parser.add_argument("--on-error", choices=ON_ERROR_MODES, default="reject")
        parser.add_argument("--format", choices=("text", "json"), default="text")
        parser.add_argument(
            "--feed", default="", help="the source the rows come from, e.g. vendor_x (ranked by TSM_FEED_PRECEDENCE)"
        )
        parser.add_argument(
            "--reassert",
            action="store_true",
            help="rows equal to a superseded version become current again (deliberate: undoes later fixes)",
        )

    def handle(self, *args, dataset, files, bar_interval, on_error, format, feed, reassert, **options):
        try:
            interval = params.interval("--bar-interval", bar_interval)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        problem = feed_problem(feed)
        if problem:
            raise CommandError(f"--feed {problem}")
        who = requested_by()
        totals = dict.fromkeys(COUNTS, 0)
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
                    feed=feed,
                    reassert=reassert,
                    requested_by=who,
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
        if result.resent:  # the load lists their keys (ResentRow), a replay's too (carried from its earlier load)
            head += (
                f"\n  {result.resent} re-sends of superseded versions: rows equal to a version since fixed or"
                f" outranked, not stored (the keys: load {result.load_id} in the admin)"
            )
        if result.outranked:
            head += (
                f"\n  {result.outranked} rows outranked: a higher-ranked feed's version stays current; kept as"
                f" outranked versions of load {result.load_id}"
            )
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

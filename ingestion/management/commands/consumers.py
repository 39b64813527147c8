"""manage.py consumers — the change-log consumers: backlog and open failures; --retry retries now.

    python manage.py consumers            # pending changes per consumer and dataset, open failures
    python manage.py consumers --retry    # retry every open failure now (then show the same)
    python manage.py consumers --json     # one JSON object instead of the text

Consumers: "rollups" (daily_ohlcv / hourly_sentiment), "quality" (automatic checks), "influx" (the
InfluxDB backup of market_data). A span a consumer cannot process is recorded as a failure and passed,
so the others go on; see docs/operations.md for finding and removing the bad version behind one.
It lives in the ingestion app because the InfluxDB backup does (ingestion depends on timeseries).
"""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand

from ingestion import influx
from timeseries import aggregates, quality
from timeseries.changes import changes_lag, failures_open


def consumer_datasets() -> list[tuple[str, str]]:
    return (
        [(aggregates.CONSUMER, d) for d in aggregates.BY_DATASET]
        + [(quality.QUALITY_CONSUMER, d) for d in quality.CURATED_DATASETS]
        + [(influx.CONSUMER, influx.DATASET)]
    )


def retry_all() -> dict:
    """Every open failure of every consumer, now (no new changes are consumed)."""
    out = {}
    for name in aggregates.BY_DATASET:
        done = aggregates.rollups_refresh(dataset=name, max_batches=0, force_retry=True)[name]
        out[f"{aggregates.CONSUMER}/{name}"] = {"retried": done["retried"], "resolved": done["resolved"]}
    for name in quality.CURATED_DATASETS:
        done = quality.quality_changes_process(dataset=name, limit=0, force_retry=True)
        out[f"{quality.QUALITY_CONSUMER}/{name}"] = {"retried": done.retried, "resolved": done.resolved}
    if influx.influx_config().enabled:
        done = influx.influx_backup_run(changes_per_transaction=0, force_retry=True)
        out[f"{influx.CONSUMER}/{influx.DATASET}"] = {"retried": done.retried, "resolved": done.resolved}
    return out


class Command(BaseCommand):
    help = "Show the change-log consumers' backlog and open failures; --retry retries the failures now."

    def add_arguments(self, parser):
        parser.add_argument("--retry", action="store_true", help="retry every open failure now")
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args, retry, json: bool = False, **options):
        retried = retry_all() if retry else None
        lag = []
        for consumer, dataset in consumer_datasets():
            state = changes_lag(consumer=consumer, dataset=dataset)
            lag.append(
                {
                    "consumer": consumer,
                    "dataset": dataset,
                    "pending": state["pending"],
                    "oldest_pending_recorded_at": state["oldest_pending_recorded_at"],
                    "open_failures": failures_open(consumer=consumer, dataset=dataset).count(),
                }
            )
        failures = [
            {
                "id": f.id,
                "consumer": f.consumer,
                "dataset": f.dataset,
                "change_id": f.change_id,
                "symbol": f.symbol,
                "subkey": f.subkey,
                "span": f.span,
                "attempts": f.attempts,
                "first_attempt_at": f.first_attempt_at,
                "last_attempt_at": f.last_attempt_at,
                "next_attempt_at": f.next_attempt_at,
                "error": f.error,
            }
            for f in failures_open()[:200]
        ]
        if json:
            out = {"consumers": lag, "open_failures": failures, **({"retried": retried} if retried is not None else {})}
            self.stdout.write(_json(out))
            return
        if retried is not None:
            for key, done in retried.items():
                self.stdout.write(f"retried {key}: {done['retried']} retried, {done['resolved']} resolved")
        self.stdout.write(f"{'consumer':<9} {'dataset':<17} {'pending':>8}  {'oldest pending':<25} open failures")
        for row in lag:
            oldest = row["oldest_pending_recorded_at"]
            self.stdout.write(
                f"{row['consumer']:<9} {row['dataset']:<17} {row['pending']:>8}  "
                f"{oldest.isoformat(timespec='seconds') if oldest else '-':<25} {row['open_failures']}"
            )
        if not failures:
            self.stdout.write("No open failures.")
            return
        self.stdout.write(f"\n{len(failures)} open failure(s), oldest first:")
        for f in failures:
            self.stdout.write(
                f"  #{f['id']} {f['consumer']}/{f['dataset']} change {f['change_id']} symbol {f['symbol']!r}"
                f"{' ' + repr(f['subkey']) if f['subkey'] else ''} span {f['span']}: {f['attempts']} attempt(s) since"
                f" {f['first_attempt_at']:%Y-%m-%d %H:%M:%S}, next {f['next_attempt_at']:%Y-%m-%d %H:%M:%S} UTC\n"
                f"      {f['error']}"
            )
        self.stdout.write(
            "Find the bad version (docs/operations.md) and remove it: "
            "manage.py remove_versions DATASET --id ROW_ID --reason TEXT; then manage.py consumers --retry"
        )


def _json(value) -> str:
    return json.dumps(value, default=str, sort_keys=True)

"""manage.py history market_data --at T --symbols X — bars of securities as known at T, adjusted or not.

The tickers in ``--symbols`` name the securities trading under them at T (as known at T), whose bars
follow them across ticker changes; ``--security-ids`` names securities directly. ``--adjust split``
or ``total`` adjusts the bars for the splits (and dividends) known at T (docs/adjustment.md).
JSON: a list of bars oldest first, each with ``symbol`` (the ticker it traded under), ``security_id``,
``time``, prices, ``volume``, ``known_at``, ``recorded_at`` (timestamps ISO 8601 UTC, exact decimals
as strings), as ``asof`` prints them. Which adjustment was applied, the dividends that could not be
applied and the tickers that name no security go to stderr (the table prints the adjustment too).
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from timeseries import formats, params, pit

COLUMNS = (
    "symbol",
    "security_id",
    "time",
    "open",
    "high",
    "low",
    "close",
    "vwap",
    "volume",
    "known_at",
    "recorded_at",
)


class Command(BaseCommand):
    help = "Print the bars of securities as known at --at (as recorded by --recorded-by), adjusted by --adjust."

    def add_arguments(self, parser):
        parser.add_argument("dataset", choices=["market_data"])
        parser.add_argument("--at", required=True, help="ISO 8601 instant with offset, e.g. 2024-03-01T15:30:00Z")
        parser.add_argument("--recorded-by", help="replay what tsm had recorded by this instant")
        parser.add_argument(
            "--symbols", help="comma-separated tickers, each meaning the security trading under it at --at"
        )
        parser.add_argument("--security-ids", help="comma-separated security_ids")
        parser.add_argument("--start", help="first bar time (inclusive)")
        parser.add_argument("--end", help="last bar time (inclusive)")
        parser.add_argument("--adjust", default="none", help="none (default), split or total")
        parser.add_argument("--limit", type=int, help="at most this many bars")
        parser.add_argument("--format", choices=("table", "json", "csv"), default="table")

    def handle(self, *args, dataset, at, recorded_by, symbols, security_ids, start, end, adjust, limit, format, **kw):
        try:
            query = {
                "at": params.instant("--at", at),
                "recorded_by": params.instant("--recorded-by", recorded_by) if recorded_by else None,
                "start": params.instant("--start", start) if start else None,
                "end": params.instant("--end", end) if end else None,
                "adjust": params.adjustment("--adjust", adjust),
                "symbols": params.symbols("--symbols", symbols, **params.EVERY_ITEM) if symbols else None,
                "security_ids": params.symbols("--security-ids", security_ids, **params.EVERY_ITEM)
                if security_ids
                else None,
                "limit": params.positive_int("--limit", limit) if limit is not None else None,
            }
            if not query["symbols"] and not query["security_ids"]:
                raise params.ParameterError("--symbols or --security-ids is required")
            if query["start"] and query["end"] and query["start"] > query["end"]:
                raise params.ParameterError("--start must not be after --end")
            answer = pit.adjusted_history(**query)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        for r in answer["securities"]:
            if r["security_id"] is None and r["by"] == "symbol":
                self.stderr.write(f"ticker {r['requested']!r} names no security known at --at: its bars, unadjusted")
            elif r["security_id"] is None:
                self.stderr.write(f"security_id {r['requested']!r} is not a security known at --at: no bars")
        for u in answer["unapplied"]:
            self.stderr.write(
                f"dividend of {u['security_id']} with ex_date {formats.iso(u['ex_date'])} not applied: {u['reason']}"
            )
        bars = [{c: b[c] for c in COLUMNS} for b in answer["bars"]]
        if format == "json":
            self.stdout.write(formats.to_json(bars))
        elif format == "csv":
            self.stdout.write(formats.to_csv(bars, COLUMNS), ending="")
        else:
            self.stdout.write(f"adjust: {answer['adjust']}")
            self.stdout.write(formats.to_table(bars, COLUMNS))

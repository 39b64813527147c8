"""The per-symbol-day quality report: what was flagged and curated."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from timeseries.models import QualityAudit, QualityFlag
from timeseries.quality.curation import curated_spec


def quality_report(*, dataset: str, symbol: str, day: date) -> dict:
    """What was flagged and curated for ``symbol`` on ``day`` (UTC): flags, audit entries, counts."""
    spec = curated_spec(dataset)
    lo = datetime(day.year, day.month, day.day, tzinfo=UTC)
    hi = lo + timedelta(days=1)
    flags = list(
        QualityFlag.objects.filter(dataset=spec.name, symbol=symbol, time__gte=lo, time__lt=hi).order_by(
            "time", "check_name"
        )
    )
    audits = list(
        QualityAudit.objects.filter(dataset=spec.name, symbol=symbol, time__gte=lo, time__lt=hi)
        .select_related("user")
        .order_by("-changed_at", "-id")[:1000]
    )
    counts: dict[str, int] = {}
    for f in flags:
        counts[f.check_name] = counts.get(f.check_name, 0) + 1
    return {"dataset": spec.name, "symbol": symbol, "day": day, "flags": flags, "audits": audits, "counts": counts}

"""The storage report as display strings (the ``storage_report`` command and the admin's Storage page)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def bytes_human(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _short(iso: str | None) -> str:
    """An ISO timestamp from the report as 'YYYY-MM-DD HH:MM:SS' (UTC), '-' for none."""
    return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if iso else "-"


def storage_report_lines(*, report: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The report as display strings, one dict per dataset (same keys for the command and the admin)."""
    lines = []
    for r in report:
        comp = r["compression"]
        if comp is None:
            compression = "n/a (plain PostgreSQL)"
        elif comp["compress_after"] is None:
            compression = "off"
        else:
            ratio = f"{comp['ratio']:.1f}:1" if comp["ratio"] else "-"
            compression = (
                f"{ratio} ({comp['compressed_chunks']}/{comp['chunks']} chunks, after {comp['compress_after']})"
            )
        agg = r["aggregates_lag"]
        backup = r["backup_lag"]
        if "error" in backup:
            backup_text = f"error: {backup['error'].splitlines()[0]}"
        elif backup.get("backed_up") is False:
            backup_text = "not backed up"
        elif "enabled" in backup and not backup["enabled"]:
            backup_text = f"off ({backup.get('why_off') or 'disabled'})"
        else:
            pending = backup.get("pending_changes", backup.get("pending", 0))
            lag = backup.get("lag_seconds")
            backup_text = f"{pending} change(s) pending" + (f", {lag:.0f} s behind" if lag else "")
        lines.append(
            {
                "dataset": r["dataset"],
                "rows": f"~{r['rows_estimate']:,}",
                "time_range": f"{_short(r['time_min'])} .. {_short(r['time_max'])} UTC" if r["time_min"] else "-",
                "bytes": bytes_human(r["bytes"]["total"]),
                "bytes_per_row": f"{r['bytes_per_row']:.1f}" if r["bytes_per_row"] is not None else "-",
                "compression": compression,
                "aggregates": f"{agg['pending']} change(s) pending"
                + (
                    f" since {_short(agg['oldest_pending_recorded_at'])} UTC"
                    if agg.get("oldest_pending_recorded_at")
                    else ""
                ),
                "retention": f"{r['retention']['horizon']} (before {r['retention']['cutoff'][:10]})"
                if r["retention"]["horizon"]
                else "kept forever",
                "backup": backup_text,
            }
        )
    return lines

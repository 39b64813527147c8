"""The change log: what each merge touched, and per-consumer cursors over it.

The loader calls ``changes_record`` inside its merge transaction. A consumer (rollups, quality
checks, the InfluxDB backup) reads ``changes_pending`` and, in the same transaction as the work it
derives from them, calls ``changes_consume`` — so a crash either keeps both or neither, and the next
run picks up exactly where the last committed one stopped.
"""
from __future__ import annotations

from datetime import datetime

from django.db import connection

from timeseries.models import Change, ChangeCursor


def changes_record(*, cur, dataset: str, bounds: dict[tuple, tuple[datetime, datetime]], recorded_at: datetime) -> None:
    """Log one row per series with the event-time span staged for it (call inside the merge txn)."""
    if not bounds:
        return
    keys = list(bounds)
    cur.execute(
        """
        INSERT INTO timeseries_change (dataset, symbol, subkey, first_time, last_time, recorded_at)
        SELECT %s, n.symbol, n.subkey, n.lo, n.hi, %s
        FROM unnest(%s::text[], %s::text[], %s::timestamptz[], %s::timestamptz[]) AS n(symbol, subkey, lo, hi)
        ORDER BY n.symbol, n.subkey
        """,
        [
            dataset,
            recorded_at,
            [k[0] for k in keys],
            [k[1] if len(k) > 1 else "" for k in keys],
            [bounds[k][0] for k in keys],
            [bounds[k][1] for k in keys],
        ],
    )


def changes_pending(*, consumer: str, dataset: str, limit: int = 10_000, lock: bool = True) -> list[Change]:
    """Changes of ``dataset`` after ``consumer``'s cursor, oldest first.

    With ``lock`` (the default) the cursor row is locked FOR UPDATE, so two workers of the same
    consumer never process the same changes: call it inside ``transaction.atomic()``.
    """
    if lock and not connection.in_atomic_block:
        raise RuntimeError("changes_pending(lock=True) must run inside transaction.atomic()")
    cursor, _ = ChangeCursor.objects.get_or_create(consumer=consumer, dataset=dataset)
    if lock:
        cursor = ChangeCursor.objects.select_for_update().get(pk=cursor.pk)
    return list(Change.objects.filter(dataset=dataset, id__gt=cursor.last_id).order_by("id")[:limit])


def changes_consume(*, consumer: str, dataset: str, through_id: int) -> None:
    """Move ``consumer``'s cursor to ``through_id`` (never backwards)."""
    ChangeCursor.objects.update_or_create(consumer=consumer, dataset=dataset, defaults={})
    ChangeCursor.objects.filter(consumer=consumer, dataset=dataset, last_id__lt=through_id).update(last_id=through_id)


def changes_lag(*, consumer: str, dataset: str) -> dict:
    """How far behind ``consumer`` is: pending change rows and the oldest pending recorded_at."""
    cursor = ChangeCursor.objects.filter(consumer=consumer, dataset=dataset).values_list("last_id", flat=True).first() or 0
    pending = Change.objects.filter(dataset=dataset, id__gt=cursor).order_by("id")
    first = pending.values_list("recorded_at", flat=True).first()
    return {"pending": pending.count(), "oldest_pending_recorded_at": first, "through_id": cursor}




"""The change log: what each merge touched, and per-consumer cursors over it.

The loader calls ``changes_record`` inside its merge transaction. A consumer (rollups, quality
checks, the InfluxDB backup) reads ``changes_pending`` and, in the same transaction as the work it
derives from them, calls ``changes_consume`` — so a crash either keeps both or neither, and the next
run picks up exactly where the last committed one stopped.

No span can wedge a consumer (``changes_run``, ``failures_retry``). A consumer hands its work over
as two callables: ``process(changes)`` for a slice and ``process_one(change)`` for one entry. The
slice runs in a savepoint; when it raises anything but a systemic error (``span_error``: a lost
connection, a missing table), each entry of the slice runs alone in its own savepoint, an entry that
still raises is recorded as a ``ConsumerFailure`` and the cursor moves past it with the others — in
the same transaction, so the other series and datasets go on. Open failures are retried by later runs
(at most ``RETRIES_PER_RUN`` per run, the pause doubling from ``RETRY_FIRST`` to ``RETRY_MAX``; an
operator can retry at once with ``manage.py consumers --retry``) and resolved when a retry succeeds.
A retry processes the span as it is stored *now*: after ``manage.py remove_versions`` took the bad
version out, the span's other rows are processed and the failure resolves.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import (
    InterfaceError,
    NotSupportedError,
    OperationalError,
    ProgrammingError,
    connection,
    transaction,
)
from django.utils import timezone
from psycopg import sql

from timeseries.datasets import DATASETS
from timeseries.models import Change, ChangeCursor, ConsumerFailure

logger = logging.getLogger(__name__)

RETRY_FIRST = timedelta(seconds=30)  # pause before the first retry of a failed span; doubles per attempt...
RETRY_MAX = timedelta(hours=1)  # ...up to this (a span keeps being retried at this pace until it resolves)
RETRIES_PER_RUN = 20  # open failures one consumer run retries at most (per dataset)
SYSTEMIC = (OperationalError, InterfaceError, ProgrammingError, NotSupportedError)


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
    cursor = (
        ChangeCursor.objects.filter(consumer=consumer, dataset=dataset).values_list("last_id", flat=True).first() or 0
    )
    pending = Change.objects.filter(dataset=dataset, id__gt=cursor).order_by("id")
    first = pending.values_list("recorded_at", flat=True).first()
    return {"pending": pending.count(), "oldest_pending_recorded_at": first, "through_id": cursor}


# --- consumers that no span can wedge -----------------------------------------------------------------


def span_error(exc: BaseException) -> bool:
    """Whether ``exc`` is the span's own fault (its data), not the system's (a lost connection, a
    missing table, a bug in SQL): only the former is recorded against the span and skipped."""
    return isinstance(exc, Exception) and not isinstance(exc, SYSTEMIC)


@dataclass
class RunResult:
    """One ``changes_run``: the change-log entries it consumed, which of them failed, the cursor."""

    changes: list[Change] = field(default_factory=list)  # processed
    failed: list[int] = field(default_factory=list)  # change ids recorded as failures
    through_id: int | None = None
    skipped: int = 0  # unreadable entries whose span holds no row any more

    @property
    def consumed(self) -> int:
        return len(self.changes) + len(self.failed) + self.skipped


def _cursor_lock(consumer: str, dataset: str) -> int:
    """Lock ``consumer``'s cursor row of ``dataset`` (inside a transaction); returns its last_id."""
    ChangeCursor.objects.get_or_create(consumer=consumer, dataset=dataset)
    return (
        ChangeCursor.objects.select_for_update()
        .filter(consumer=consumer, dataset=dataset)
        .values_list("last_id", flat=True)
        .get()
    )


def _pending_ids(*, dataset: str, after: int, limit: int) -> list[int]:
    return list(
        Change.objects.filter(dataset=dataset, id__gt=after).order_by("id").values_list("id", flat=True)[:limit]
    )


def _load(ids: list[int], is_span_error) -> tuple[list[Change], dict[int, BaseException]]:
    """The change rows of ``ids``; one the database cannot hand to Python (an instant before year 1
    or past 9999) is returned as a failure instead — or left out when its span holds no row."""
    try:
        with transaction.atomic():
            return list(Change.objects.filter(id__in=ids).order_by("id")), {}
    except Exception as exc:
        if not is_span_error(exc):
            raise
    found, failed = [], {}
    for i in ids:
        try:
            with transaction.atomic():
                found.append(Change.objects.get(pk=i))
        except Exception as exc:
            if not is_span_error(exc):
                raise
            if _span_holds_rows(i):
                failed[i] = exc
            # else: its rows are gone (e.g. the entry a removal appended): nothing to process
    return found, failed


def _isolate(
    changes: list[Change],
    whole: Callable[[list[Change]], object],
    one: Callable[[Change], object],
    is_span_error,
    *,
    savepoints: bool,
) -> dict[int, BaseException]:
    """Run ``whole(changes)``; if it fails on a span, ``one(change)`` for each: the ones that fail."""
    if not changes:
        return {}
    guard = transaction.atomic if savepoints else nullcontext
    try:
        with guard():
            whole(changes)
        return {}
    except Exception as exc:
        if not is_span_error(exc):
            raise
    failed: dict[int, BaseException] = {}
    for change in changes:
        try:
            with guard():
                one(change)
        except Exception as exc:
            if not is_span_error(exc):
                raise
            failed[change.id] = exc
    return failed


def changes_run(
    *,
    consumer: str,
    dataset: str,
    limit: int,
    process: Callable[[list[Change]], object],
    process_one: Callable[[Change], object] | None = None,
    prepare: Callable[[list[Change]], object] | None = None,
    prepare_one: Callable[[Change], object] | None = None,
    is_span_error: Callable[[BaseException], bool] = span_error,
) -> RunResult:
    """Consume up to ``limit`` pending entries of ``dataset``: ``process`` them in one transaction with
    the cursor move; an entry that fails alone is recorded (``ConsumerFailure``) and passed.

    ``prepare`` (and ``prepare_one``) run first, outside any transaction, for work that cannot run
    inside one (TimescaleDB's refresh of a continuous aggregate); an entry failing there is recorded too.
    """
    process_one = process_one or (lambda change: process([change]))
    failed: dict[int, BaseException] = {}
    through = None
    if prepare is not None:
        if connection.in_atomic_block:
            raise RuntimeError("changes_run(prepare=...) must run outside transaction.atomic()")
        cursor = (
            ChangeCursor.objects.filter(consumer=consumer, dataset=dataset).values_list("last_id", flat=True).first()
        )
        ids = _pending_ids(dataset=dataset, after=cursor or 0, limit=limit)
        if not ids:
            return RunResult()
        through = ids[-1]
        peek, failed = _load(ids, is_span_error)
        failed.update(
            _isolate(peek, prepare, prepare_one or (lambda change: prepare([change])), is_span_error, savepoints=False)
        )
    with transaction.atomic():
        ids = _pending_ids(dataset=dataset, after=_cursor_lock(consumer, dataset), limit=limit)
        if through is not None:
            ids = [i for i in ids if i <= through]
        if not ids:
            return RunResult()
        changes, bad = _load(ids, is_span_error)
        failed = {i: exc for i, exc in failed.items() if i in set(ids)} | bad
        changes = [c for c in changes if c.id not in failed]
        failed.update(_isolate(changes, process, process_one, is_span_error, savepoints=True))
        for change_id, exc in sorted(failed.items()):
            failure_record(consumer=consumer, dataset=dataset, change_id=change_id, exc=exc)
        changes_consume(consumer=consumer, dataset=dataset, through_id=ids[-1])
    done = [c for c in changes if c.id not in failed]
    return RunResult(
        changes=done, failed=sorted(failed), through_id=ids[-1], skipped=len(ids) - len(done) - len(failed)
    )


def retry_pause(attempts: int) -> timedelta:
    """The pause after the ``attempts``-th failed attempt at a span."""
    return min(RETRY_MAX, RETRY_FIRST * (2 ** min(max(attempts - 1, 0), 20)))


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:5000]


def failure_record(*, consumer: str, dataset: str, change_id: int, exc: BaseException) -> ConsumerFailure:
    """Record a failed attempt at change ``change_id`` (call in the consumer's transaction)."""
    now = timezone.now()
    with connection.cursor() as cur:  # as text: an instant Python cannot hold still shows
        cur.execute(
            "SELECT symbol, subkey, first_time::text || ' .. ' || last_time::text FROM timeseries_change WHERE id = %s",
            [change_id],
        )
        symbol, subkey, span = cur.fetchone() or ("", "", "")
    failure, created = ConsumerFailure.objects.get_or_create(
        consumer=consumer,
        dataset=dataset,
        change_id=change_id,
        defaults={
            "symbol": symbol,
            "subkey": subkey,
            "span": span,
            "error": _error_text(exc),
            "attempts": 1,
            "first_attempt_at": now,
            "last_attempt_at": now,
            "next_attempt_at": now + retry_pause(1),
        },
    )
    if not created:
        failure.attempts += 1
        failure.error, failure.last_attempt_at, failure.resolved_at = _error_text(exc), now, None
        failure.next_attempt_at = now + retry_pause(failure.attempts)
        failure.save(update_fields=["attempts", "error", "last_attempt_at", "next_attempt_at", "resolved_at"])
    logger.warning(
        "%s consumer could not process %s change %s (%s %s, attempt %s): %s",
        consumer,
        dataset,
        change_id,
        symbol,
        span,
        failure.attempts,
        failure.error,
    )
    return failure


@dataclass
class RetryResult:
    retried: int = 0
    resolved: int = 0

    def as_dict(self) -> dict:
        return {"retried": self.retried, "resolved": self.resolved}


def failures_retry(
    *,
    consumer: str,
    dataset: str,
    process_one: Callable[[Change], object],
    prepare_one: Callable[[Change], object] | None = None,
    is_span_error: Callable[[BaseException], bool] = span_error,
    force: bool = False,
    limit: int = RETRIES_PER_RUN,
) -> RetryResult:
    """Retry ``consumer``'s open failures of ``dataset`` whose pause is over (all with ``force``), at
    most ``limit``: each in its own transaction holding the consumer's cursor lock. A success resolves
    the failure; a failure waits twice as long. An entry since deleted from the change log resolves."""
    due = ConsumerFailure.objects.filter(consumer=consumer, dataset=dataset, resolved_at__isnull=True)
    if not force:
        due = due.filter(next_attempt_at__lte=timezone.now())
    result = RetryResult()
    for failure_id, change_id in due.order_by("next_attempt_at", "id").values_list("id", "change_id")[:limit]:
        result.retried += 1
        error = None
        try:
            try:
                with transaction.atomic():
                    change = Change.objects.filter(pk=change_id).first()
            except Exception as exc:
                if not is_span_error(exc) or _span_holds_rows(change_id):
                    raise
                change = None  # an entry Python cannot read, whose rows are gone: nothing left to do
            if change is not None and prepare_one is not None:
                if connection.in_atomic_block:
                    raise RuntimeError("failures_retry(prepare_one=...) must run outside transaction.atomic()")
                prepare_one(change)
        except Exception as exc:
            if not is_span_error(exc):
                raise
            error, change = exc, None
        with transaction.atomic():
            _cursor_lock(consumer, dataset)
            failure = (
                ConsumerFailure.objects.select_for_update(skip_locked=True)
                .filter(pk=failure_id, resolved_at__isnull=True)
                .first()
            )
            if failure is None:
                continue  # resolved by someone else meanwhile
            if error is None and change is not None:
                try:
                    with transaction.atomic():
                        process_one(change)
                except Exception as exc:
                    if not is_span_error(exc):
                        raise
                    error = exc
            if error is not None:
                failure_record(consumer=consumer, dataset=dataset, change_id=change_id, exc=error)
                continue
            failure.resolved_at = failure.last_attempt_at = timezone.now()
            failure.attempts += 1
            failure.save(update_fields=["resolved_at", "last_attempt_at", "attempts"])
            result.resolved += 1
            logger.info("%s consumer resolved its failure on %s change %s", consumer, dataset, change_id)
    return result


def _span_holds_rows(change_id: int) -> bool:
    """Whether the series of change ``change_id`` still holds a row in its span (asked in SQL: for an
    entry whose instants Python cannot hold)."""
    with connection.cursor() as cur:
        cur.execute("SELECT dataset FROM timeseries_change WHERE id = %s", [change_id])
        found = cur.fetchone()
        spec = DATASETS.get(found[0]) if found else None
        if spec is None:
            return False
        cur.execute(
            sql.SQL(
                "SELECT EXISTS (SELECT 1 FROM timeseries_change c JOIN {t} m ON m.{s} = c.symbol"
                " AND m.time BETWEEN c.first_time AND c.last_time WHERE c.id = %s)"
            ).format(t=sql.Identifier(spec.table), s=sql.Identifier(spec.symbol_column)),
            [change_id],
        )
        return cur.fetchone()[0]


def failures_due_now(*, dataset: str, symbols: Iterable[str]) -> int:
    """Make the open failures of ``dataset``'s ``symbols`` due for retry at once (after a removal)."""
    return ConsumerFailure.objects.filter(dataset=dataset, symbol__in=list(symbols), resolved_at__isnull=True).update(
        next_attempt_at=timezone.now()
    )


def failures_open(*, consumer: str | None = None, dataset: str | None = None):
    """Open failures, oldest first."""
    qs = ConsumerFailure.objects.filter(resolved_at__isnull=True)
    if consumer:
        qs = qs.filter(consumer=consumer)
    if dataset:
        qs = qs.filter(dataset=dataset)
    return qs.order_by("first_attempt_at", "id")

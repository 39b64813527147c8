"""One load run: what every step of a load needs (the dataset, its Load row and result, the staging
table's name, the check context, the caller's options and callbacks), and the bad rows it quarantines."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from django.db import connection
from django.utils import timezone

from ingestion import replay
from ingestion.checks import RowError
from ingestion.loader.outcome import MAX_REPORTED_ERRORS, LoadResult, rejected_rows_save
from ingestion.models import Load, RejectedRow
from timeseries.datasets import CheckContext, Dataset

STAGING_PREFIX = "ingest_stage_"


@dataclass
class LoadRun:
    """A load in progress. ``stage`` names its private staging table (created only when rows need the
    merge); ``validated``: the input holds rows ``checks.prepare_batch`` made already (not checked again);
    ``reassert``: a row equal to a superseded version of its (key, known_at) is stored again as current;
    ``overrule``: feed precedence does not apply (an admin's "make this version current again")."""

    spec: Dataset
    load: Load
    result: LoadResult
    ctx: CheckContext
    on_error: str
    progress: Callable[[int], None] | None = None
    on_phase: Callable[[str, uuid.UUID], None] | None = None
    validated: bool = False
    reassert: bool = False
    overrule: bool = False

    @property
    def stage(self) -> str:
        return STAGING_PREFIX + self.load.id.hex

    def phase(self, name: str) -> None:
        """Tell the caller the load entered phase ``name`` ("validating", "loading")."""
        if self.on_phase:
            self.on_phase(name, self.load.id)

    def report_progress(self) -> None:
        if self.progress:
            self.progress(self.result.rows_read)

    def refused(self) -> bool:
        """Whether a bad row refuses the whole load (on_error="reject")."""
        return bool(self.result.rejected) and self.on_error == "reject"

    def finish(self, status: str, error: str = "", digest: replay.Digest | None = None) -> None:
        """Record the outcome on the Load row (with the replay record when the load is done and its digest complete)."""
        if transaction_broken():  # the load row goes with the caller's rollback; keep the original error
            return
        result = self.result
        replay_fields = {}
        if digest is not None and status == Load.Status.DONE and digest.complete():
            replay_fields = dict(
                content_sha256=digest.content_sha256,
                content_bytes=digest.content_bytes,
                replay_key=digest.key() if result.spans is not None else "",
                replay_spans=result.spans,
                change_watermark=result.change_watermark,
            )
        Load.objects.filter(pk=self.load.pk).update(
            **replay_fields,
            replay_of_id=result.replay_of,
            replay_note=result.replay_note,
            status=status,
            error=error[:10_000],
            rows_read=result.rows_read,
            inserted=result.inserted,
            revised=result.revised,
            duplicates=result.duplicates,
            rejected=result.rejected,
            resent=result.resent,
            outranked=result.outranked,
            recorded_at=result.recorded_at,
            finished_at=timezone.now(),
        )

    def restart(self) -> None:
        """Forget what a rolled-back direct pass counted and quarantined: the staged pass redoes it."""
        RejectedRow.objects.filter(load=self.load).delete()
        result = self.result
        result.rows_read = result.inserted = result.revised = result.duplicates = result.rejected = result.copied = 0
        result.resent = result.outranked = 0
        result.errors.clear()


class Quarantine:
    """Bad rows waiting to be written to the quarantine (RejectedRow), and the rows counted rejected."""

    DUE_ROWS = 10_000

    def __init__(self, run: LoadRun):
        self.run = run
        self.pending: list[RowError] = []
        self.rows: set[int] = set()

    def due(self) -> bool:
        return len(self.pending) >= self.DUE_ROWS

    def write(self) -> None:
        """Keep every pending bad row with the load, whatever the mode, and count the rows rejected."""
        if not self.pending:
            return
        errors, result = self.pending, self.run.result
        rejected_rows_save(load=self.run.load, errors=errors)
        new_rows = {e.row for e in errors} - self.rows
        self.rows |= new_rows
        result.rejected += len(new_rows)
        room = MAX_REPORTED_ERRORS - len(result.errors)
        if room > 0:
            result.errors.extend(errors[:room])
        self.pending = []


def transaction_broken() -> bool:
    """Whether the caller's transaction can run nothing more: a broken atomic block, or a statement
    that failed inside a transaction PostgreSQL now refuses to go on with. Writing to it then would
    raise "current transaction is aborted" and hide the error that broke it."""
    if connection.needs_rollback:
        return True
    raw = connection.connection
    return raw is not None and raw.info.transaction_status == psycopg.pq.TransactionStatus.INERROR

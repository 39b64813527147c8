"""The loader's entry points and the order of a load: the replay shortcut, else the direct path, else
(or after a direct pass had to be rolled back) the staged path; then the Load row records the outcome."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import IO

import pyarrow as pa
from django.conf import settings
from django.db import connection, transaction

from ingestion import parsers, replay
from ingestion.checks import InputError
from ingestion.loader import direct, staging
from ingestion.loader.outcome import ON_ERROR_MODES, LoadOptions, LoadRejected, LoadResult
from ingestion.loader.run import LoadRun
from ingestion.models import Load
from timeseries.datasets import CheckContext, Dataset, get_dataset


def ingest_file(
    *,
    dataset: str,
    path: str | Path | IO[bytes] | bytes,
    fmt: str | None = None,
    bar_interval: timedelta = timedelta(minutes=1),
    on_error: str = "reject",
    progress: Callable[[int], None] | None = None,
    source: str | None = None,
    on_phase: Callable[[str, uuid.UUID], None] | None = None,
    feed: str = "",
    reassert: bool = False,
    requested_by: str = "",
) -> LoadResult:
    """Load a CSV / Parquet / NDJSON file (optionally gzip-compressed) into ``dataset``.

    ``feed``: the source the rows come from, ranked by TSM_FEED_PRECEDENCE; ``reassert``: rows equal
    to a superseded version of their (key, known_at) become current again instead of being duplicates
    (see ``loader.merge``); ``requested_by``: who asked (kept on the Load, the audit of a re-assertion).

    ``progress(rows_read)`` is called after each chunk; ``on_phase(phase, load_id)`` with
    "validating" when the load starts and "loading" when rows start going into the dataset: when the
    merge begins, or on the direct path (which validates and COPYs batch by batch) once it holds the
    merge lock.
    """
    spec = get_dataset(dataset)
    name = source or (str(path) if isinstance(path, (str, Path)) else "stream")
    readable, digest, opened = replay.replay_prepare(
        source=path, dataset=spec.name, bar_interval=bar_interval, on_error=on_error, fmt=fmt
    )
    start = path.tell() if hasattr(path, "seekable") and path.seekable() else None

    def reread() -> Iterator[pa.RecordBatch]:  # after a whole first read (the digest is complete by then)
        if start is not None:
            path.seek(start)
        return parsers.read_batches(path, dataset=spec, fmt=fmt, batch_rows=settings.TSM_INGEST_BATCH_ROWS)

    rereadable = isinstance(path, (str, Path, bytes, bytearray)) or start is not None
    try:
        batches = parsers.read_batches(readable, dataset=spec, fmt=fmt, batch_rows=settings.TSM_INGEST_BATCH_ROWS)
        return _ingest(
            spec,
            batches,
            source=name,
            bar_interval=bar_interval,
            on_error=on_error,
            progress=progress,
            on_phase=on_phase,
            digest=digest,
            reread=reread if rereadable else None,
            options=LoadOptions(feed=feed, reassert=reassert, requested_by=requested_by),
        )
    finally:
        if opened is not None:
            opened.close()


def ingest_table(
    *,
    dataset: str,
    data,
    bar_interval: timedelta = timedelta(minutes=1),
    on_error: str = "reject",
    source: str = "table",
    validated: bool = False,
    feed: str = "",
    reassert: bool = False,
    requested_by: str = "",
    overrule: bool = False,
) -> LoadResult:
    """Load an in-memory Arrow table, pandas DataFrame or list of dicts into ``dataset``.

    ``validated=True``: ``data`` holds good rows exactly as ``checks.prepare_batch`` made them (typed
    columns, known_at filled in) — the write API's buffered batches, checked when they were accepted,
    with the bar interval the client gave then. They are staged as they are: checking them again
    would cost a tenth of a flush and judge them by this call's ``bar_interval``. ``feed``,
    ``reassert``, ``requested_by``: as for :func:`ingest_file`; ``overrule=True``: feed precedence
    does not apply (an admin making a version current again)."""
    spec = get_dataset(dataset)
    table = parsers.as_table(data)  # converted once: a second pass (see loader.direct) reads it again

    def batches() -> Iterator[pa.RecordBatch]:
        return parsers.table_batches(table, batch_rows=settings.TSM_INGEST_BATCH_ROWS)

    return _ingest(
        spec,
        batches(),
        source=source,
        bar_interval=bar_interval,
        on_error=on_error,
        progress=None,
        validated=validated,
        reread=batches,
        options=LoadOptions(feed=feed, reassert=reassert, requested_by=requested_by, overrule=overrule),
    )


def _ingest(
    spec: Dataset,
    batches: Iterator[pa.RecordBatch],
    *,
    source: str,
    bar_interval: timedelta,
    on_error: str,
    progress: Callable[[int], None] | None,
    on_phase: Callable[[str, uuid.UUID], None] | None = None,
    digest: replay.Digest | None = None,
    validated: bool = False,
    reread: Callable[[], Iterator[pa.RecordBatch]] | None = None,
    options: LoadOptions,
) -> LoadResult:
    """``reread()``: the input's batches again from the start (None: the input cannot be read twice,
    so only the staged path is taken)."""
    if on_error not in ON_ERROR_MODES:
        raise ValueError(f"on_error={on_error!r}: expected one of {', '.join(ON_ERROR_MODES)}")
    if bar_interval <= timedelta(0):
        raise ValueError(f"bar_interval={bar_interval} must be positive")
    options.check()
    load = Load.objects.create(
        dataset=spec.name,
        source=source,
        on_error=on_error,
        bar_interval=bar_interval,
        feed=options.feed,
        reassert=options.reassert,
        requested_by=options.requested_by[:150],
    )
    run = LoadRun(
        spec=spec,
        load=load,
        result=LoadResult(load_id=load.id, dataset=spec.name),
        ctx=CheckContext(bar_interval=bar_interval),
        on_error=on_error,
        progress=progress,
        on_phase=on_phase,
        validated=validated,
        reassert=options.reassert,
        overrule=options.overrule,
    )
    result = run.result
    try:
        run.phase("validating")
        if digest is not None and _replay_shortcut(run, digest):
            run.report_progress()
            return result
        use_direct = reread is not None and settings.TSM_INGEST_DIRECT
        if not (use_direct and direct.load_direct(run, batches)):
            if use_direct:  # a key of a row already COPYed came again: redo the load through staging
                batches = reread()
                run.restart()
            staging.load_staged(run, batches)
        if run.refused():
            run.finish(Load.Status.REJECTED, error=f"{result.rejected} bad row(s); nothing stored")
            raise LoadRejected(result)
        run.finish(Load.Status.DONE, digest=digest)
        return result
    except InputError as exc:
        run.finish(Load.Status.REJECTED, error=str(exc))
        raise
    except LoadRejected:
        raise
    except BaseException as exc:
        run.finish(Load.Status.FAILED, error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        staging.staging_drop(run.stage)


def _replay_shortcut(run: LoadRun, digest: replay.Digest) -> bool:
    """Finish the load as a replay of an earlier load without staging anything, when provably safe
    (ingestion/replay.py says when). Returns whether it did; records why or why not either way."""
    spec, result = run.spec, run.result
    if run.reassert:
        result.replay_note = "replay shortcut not tried: a re-assertion stores rows a replay would not"
        return False
    if not replay.replay_enabled():
        result.replay_note = "replay shortcut off (TSM_INGEST_REPLAY_SHORTCUT=false)"
        return False
    if not digest.content_sha256:
        result.replay_note = "replay shortcut not tried: no finished load of the same dataset, options and size"
        return False
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"tsm.merge.{spec.name}"])
        earlier = replay.replay_candidate(key=digest.key(), dataset=spec.name)
        if earlier is None:
            result.replay_note = "replay shortcut not taken: no finished load of the same content and options"
            return False
        blocker = replay.replay_blocker(cur=cur, dataset=spec.name, earlier=earlier)
        if blocker:
            result.replay_note = f"replay shortcut not taken: {blocker}"
            return False
        result.rows_read = result.duplicates = earlier.rows_read
        # rows the earlier load found re-sent or outranked equal a superseded or outranked version now
        result.resent = earlier.resent + earlier.outranked
        if result.resent:
            replay.resent_carry(cur=cur, spec=spec, earlier=earlier, load_id=run.load.id)
        result.replay_of = earlier.pk
        result.spans = earlier.replay_spans
        result.change_watermark = replay.change_watermark(cur=cur, dataset=spec.name)
        result.replay_note = (
            f"replay shortcut taken: same bytes and options as load {earlier.pk}; no change logged since "
            f"(change id > {earlier.change_watermark}) overlaps its {len(earlier.replay_spans)} series span(s), "
            "so every row is a duplicate; nothing staged"
        )
        run.finish(Load.Status.DONE, digest=digest)
    return True

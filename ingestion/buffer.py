"""The buffered write API's services: accept a batch durably, flush buffered batches into the datasets.

A batch is validated with the same rules and messages as files, then stored in PostgreSQL
(``IngestBatch.payload``) before the caller gets its 202: Redis is never the only copy of an accepted
row. A flush (a Celery task the write API sends by size or age, ``flush_countdown``) merges pending
batches in arrival order through the normal loader, inside one transaction with marking them merged
— so a crash leaves them pending and a re-flush merges them exactly once. Batches are combined into
one load per (feed, reassert) — a load has one feed and one re-assertion option — unless two of them
hold the same (key, known_at), in which case each is merged on its own, as if they had arrived
serially.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass
from datetime import timedelta

import orjson
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction
from django.db.models import Sum
from django.utils import timezone
from psycopg import sql

from ingestion import parsers
from ingestion.checks import InputError, RowError, check_columns, jsonable, prepare_batch
from ingestion.loader import LoadRejected, ingest_table, rejected_rows_save, repeated_keys
from ingestion.models import IngestBatch, Load
from timeseries import textrules
from timeseries.datasets import CheckContext, Dataset, get_dataset
from timeseries.rules import feed_problem

logger = logging.getLogger(__name__)

JSON_TYPES = {"application/json"}
NDJSON_TYPES = {"application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines"}
CSV_TYPES = {"text/csv", "application/csv"}


class UnsupportedBody(ValueError):
    """The Content-Type is not one the API reads (415)."""


class BadBody(ValueError):
    """The body cannot be read as the format it claims (400)."""


class Backpressure(Exception):
    def __init__(self, pending: int, limit: int):
        self.pending, self.limit = pending, limit
        super().__init__(f"{pending:,} rows are waiting to be merged (limit {limit:,}): retry shortly")


class BatchRejected(Exception):
    def __init__(self, errors: list[RowError], rejected: int):
        self.errors, self.rejected = errors, rejected
        super().__init__(f"{rejected} bad row(s), nothing stored")


@dataclass
class Accepted:
    """A batch stored by ``batch_accept``, and the rows now waiting to be merged, this batch's included
    (0 when the batch stored no row: no flush to send)."""

    batch: IngestBatch
    pending: int


@dataclass
class FlushResult:
    batches: int = 0
    rows: int = 0
    loads: int = 0


def body_table(*, body: bytes, content_type: str, dataset: Dataset) -> tuple[pa.Table, list[RowError]]:
    """The body as a table, and the errors of rows no table can hold (a JSON string with a lone
    surrogate: such values are replaced by their escapes, so the row can be named and quarantined)."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if not body.strip():
        raise BadBody("the body is empty")
    if kind in JSON_TYPES:
        try:
            rows, strict = _json_loads(body)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, undecodable bytes, a 5,000-digit number, nesting
            raise BadBody(f"the body is not valid JSON: {_short_message(exc)}") from None
        if isinstance(rows, dict):
            rows = [rows]
        if not isinstance(rows, list) or not rows:
            raise BadBody("expected a JSON array of row objects")
        unreadable = [] if strict else _lone_surrogates(rows)  # orjson refuses every lone surrogate itself
        try:
            return parsers.rows_to_table(rows), unreadable
        except InputError as exc:
            raise BadBody(str(exc)) from None
    if kind in NDJSON_TYPES or kind in CSV_TYPES:
        fmt = "csv" if kind in CSV_TYPES else "ndjson"
        try:
            batches = list(parsers.read_batches(io.BytesIO(body), dataset=dataset, fmt=fmt))
        except InputError as exc:
            raise BadBody(str(exc)) from None
        except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError) as exc:
            raise BadBody(f"cannot read the {fmt.upper()} body: {exc}") from None
        if not batches:
            raise BadBody("the body has no rows")
        return pa.Table.from_batches(batches), []
    raise UnsupportedBody(
        f"Content-Type {kind or '(none)'!r} is not supported: send application/json, application/x-ndjson or text/csv"
    )


def _lone_surrogates(rows: list) -> list[RowError]:
    """Rows holding a lone UTF-16 surrogate (``"\\ud800"``, which UTF-8 cannot encode): each such value
    is replaced in ``rows`` by its escape, and the row reported (a column name holding one: BadBody)."""
    errors = []
    for number, column in textrules.lone_surrogates(rows):
        row = rows[number - 1]
        if not isinstance(row, dict):
            raise BadBody(f"row {number}: expected an object, got {type(row).__name__}")
        if column not in row:
            raise BadBody(
                f"row {number}: the column name {column!r} holds a lone UTF-16 surrogate, which is not a character"
            )
        value = row[column] = textrules.sanitized(row[column])
        errors.append(
            RowError(
                number,
                column,
                f"{_short(value)} holds a lone UTF-16 surrogate, which is not a character",
                {k: jsonable(textrules.sanitized(v)) for k, v in row.items()},
            )
        )
    return errors


def _short_message(exc: Exception) -> str:
    if isinstance(exc, RecursionError):
        return "it nests too deeply"
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _json_loads(body: bytes) -> tuple[object, bool]:
    """The parsed body, and whether orjson (3x faster) read it. What orjson refuses — integers beyond
    64 bits, NaN literals, a lone UTF-16 surrogate, or a real syntax error — goes to the standard
    library, which reads the first three and words the error message; only such a body can hold a
    lone surrogate, so only it is scanned for them (the scan costs ~4x orjson's parse)."""
    try:
        return orjson.loads(body), True
    except orjson.JSONDecodeError:
        return json.loads(body), False


def pending_rows(*, dataset: str) -> int:
    return (
        IngestBatch.objects.filter(dataset=dataset, status=IngestBatch.Status.PENDING).aggregate(n=Sum("rows"))["n"]
        or 0
    )


def batch_accept(
    *,
    dataset: str,
    body: bytes,
    content_type: str,
    on_error: str = "reject",
    bar_interval: timedelta = timedelta(minutes=1),
    user=None,
    feed: str = "",
    reassert: bool = False,
    requested_by: str = "",
) -> Accepted:
    """Validate a body and store its good rows durably; raises BatchRejected / BadBody / Backpressure.
    The caller sends the flush once the batch is committed (``ingestion.tasks.flush_schedule``).
    ``feed``, ``reassert``, ``requested_by``: what the flush's load records and how it merges the rows
    (``ingestion.loader.ingest_table``); the caller decides them (a token bound to a feed: the API)."""
    spec = get_dataset(dataset)
    if on_error not in ("reject", "skip"):
        raise ValueError(f"on_error={on_error!r}: expected reject or skip")
    problem = feed_problem(feed)
    if problem:
        raise ValueError(f"feed: {problem}")
    waiting = pending_rows(dataset=dataset)
    if waiting > settings.TSM_INGEST_BUFFER_MAX_ROWS:
        raise Backpressure(waiting, settings.TSM_INGEST_BUFFER_MAX_ROWS)
    table, unreadable = body_table(body=body, content_type=content_type, dataset=spec)
    try:
        check_columns(table.column_names, spec)
    except InputError as exc:
        raise BadBody(str(exc)) from None
    ctx = CheckContext(bar_interval=bar_interval)
    try:
        prepared = prepare_batch(table, dataset=spec, ctx=ctx, row_offset=0)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise BadBody(f"cannot convert the rows: {exc}") from None
    named = {(e.row, e.column) for e in unreadable}  # the escaped value's own errors would say it twice
    later = [e for e in prepared.errors if (e.row, e.column) not in named] + _conflicts(spec, prepared.table, table)
    errors = unreadable + later
    rejected = len({e.row for e in errors})
    if rejected and on_error == "reject":
        raise BatchRejected(sorted(errors, key=lambda e: e.row), rejected)
    good = prepared.table
    if unreadable or len(later) > len(prepared.errors):  # these rows were still in the prepared table
        bad = pa.array(sorted({e.row for e in errors}), pa.int64())
        good = good.filter(pc.invert(pc.is_in(good.column("row_no"), value_set=bad)))
    good = good.drop_columns(["row_no"])
    with transaction.atomic():
        quarantine = _quarantine(spec, errors, rejected, feed=feed, requested_by=requested_by) if rejected else None
        batch = _batch_insert(
            IngestBatch(
                dataset=spec.name,
                rows=good.num_rows,
                rejected=rejected,
                payload=_ipc(good),
                submitted_by=user,
                feed=feed,
                reassert=reassert,
                requested_by=requested_by[:150],
                quarantine=quarantine,
                status=IngestBatch.Status.PENDING if good.num_rows else IngestBatch.Status.MERGED,
            )
        )
    return Accepted(batch=batch, pending=waiting + good.num_rows if good.num_rows else 0)


def _conflicts(spec: Dataset, prepared: pa.Table, body: pa.Table) -> list[RowError]:
    """Rows of one batch giving one (key, known_at) different values: which is right cannot be told,
    so each is refused, naming the others (as a file load does). The flush would otherwise refuse the
    whole batch — and with it every batch behind it."""
    key = (*spec.key, "known_at")
    if prepared.num_rows < 2 or not repeated_keys(prepared, key):
        return []
    groups: dict[tuple, list[dict]] = {}
    for row in prepared.select([*key, *spec.value_columns, "row_no"]).to_pylist():
        groups.setdefault(tuple(row[c] for c in key), []).append(row)
    errors = []
    for members in groups.values():
        if len({tuple(_hashable(m[c]) for c in spec.value_columns) for m in members}) < 2:
            continue  # the same row twice: a duplicate, merged once
        numbers = [m["row_no"] for m in members]
        for n in numbers:
            others = ", ".join(str(o) for o in numbers if o != n)
            raw = {k: jsonable(v) for k, v in body.slice(n - 1, 1).to_pylist()[0].items()}
            errors.append(
                RowError(n, "known_at", f"conflicts with row(s) {others}: same key and known_at, different values", raw)
            )
    return errors


def _hashable(value):
    return tuple(value) if isinstance(value, list) else value  # text[] columns (categories, sectors)


def _quarantine(spec: Dataset, errors: list[RowError], rejected: int, *, feed: str, requested_by: str) -> Load:
    load = Load.objects.create(
        dataset=spec.name,
        source="write API",
        feed=feed,
        requested_by=requested_by[:150],
        on_error="skip",
        status=Load.Status.DONE,
        rejected=rejected,
        finished_at=timezone.now(),
    )
    rejected_rows_save(load=load, errors=errors)
    return load


def _batch_insert(batch: IngestBatch) -> IngestBatch:
    """INSERT ``batch`` with its payload sent as a binary parameter: Django's client-side binding would
    spell the payload out in hex inside the statement text (4x the bytes, and 20 ms of a 5,000-row
    request's CPU)."""
    fields = [f for f in IngestBatch._meta.concrete_fields if f.attname != "seq"]
    for field in fields:
        if getattr(field, "auto_now_add", False):
            setattr(batch, field.attname, timezone.now())
    values = [field.get_db_prep_save(getattr(batch, field.attname), connection) for field in fields]
    statement = sql.SQL("INSERT INTO {} ({}) VALUES ({}) RETURNING {}").format(
        sql.Identifier(IngestBatch._meta.db_table),
        sql.SQL(", ").join(sql.Identifier(f.column) for f in fields),
        sql.SQL(", ").join(sql.Placeholder() for _ in fields),
        sql.Identifier(IngestBatch._meta.pk.column),
    )
    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cur:  # server-side binding: the payload travels as bytes
        cur.execute(statement, values)
        batch.seq = cur.fetchone()[0]
    batch._state.adding, batch._state.db = False, connection.alias
    return batch


def _ipc(table: pa.Table) -> bytes:
    """An Arrow IPC stream, LZ4-compressed (a third of the bytes for ~1 ms per 5,000 bars)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema, options=pa.ipc.IpcWriteOptions(compression="lz4")) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _table(payload) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(bytes(payload))).read_all()


def flush_countdown(*, dataset: str, pending: int) -> float | None:
    """Whether to send a flush of ``dataset`` now that ``pending`` rows wait, and in how many seconds:
    at once when the buffer is big enough, else once per age window (None: one is already on its way
    in this window, or Redis is in trouble and the periodic flush will pick the batch up). The caller
    sends it (``ingestion.tasks.flush_schedule``)."""
    big = pending >= settings.TSM_INGEST_FLUSH_ROWS
    key = _flush_key(dataset, now=big)
    window = 0.2 if big else settings.TSM_INGEST_FLUSH_SECONDS
    try:
        first = cache.add(key, 1, timeout=max(1, int(window + 0.999)))
    except Exception as exc:  # Redis trouble: the periodic flush will still pick the batch up
        logger.warning("cannot schedule a flush (%s); the periodic flush will merge the batch", exc)
        return None
    if not first:
        return None
    return 0 if big else settings.TSM_INGEST_FLUSH_SECONDS


def _flush_key(dataset: str, *, now: bool) -> str:
    return f"tsm:flush:{'now' if now else 'later'}:{dataset}"


def buffer_flush(*, dataset: str, max_rows: int = 200_000) -> FlushResult:
    """Merge every pending batch of ``dataset`` in arrival order. One flusher per dataset at a time.

    No batch is left waiting when the flusher stops: a batch committed after the flusher's last look
    sends a flush of its own, but that flush finds the lock still held and returns, and the next
    one is sent at most once a second (``flush_countdown``) — up to a second of waiting in a steady
    write stream. So after letting go of the lock the flusher forgets that a flush was sent (a
    batch from now on sends a new one) and looks once more, resuming if anything is pending."""
    out = FlushResult()
    while True:
        if not _flush_drain(dataset, max_rows, out):
            return out
        try:
            cache.delete(_flush_key(dataset, now=True))
        except Exception:  # Redis trouble: the next scheduled or periodic flush picks the batch up
            return out
        if not IngestBatch.objects.filter(dataset=dataset, status=IngestBatch.Status.PENDING).exists():
            return out


def _flush_drain(dataset: str, max_rows: int, out: FlushResult) -> bool:
    """Under the dataset's flush lock, merge pending batches until none is left; False if another
    flusher holds the lock."""
    spec = get_dataset(dataset)
    with connection.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_lock(hashtext(%s))", [f"tsm.flush.{dataset}"])
        if not cur.fetchone()[0]:
            return False
    try:
        while True:
            batches = _next_batches(dataset, max_rows)
            if not batches:
                return True
            tables = [_table(b.payload) for b in batches]
            for group in _groups(spec, batches, tables):
                _merge_group(dataset, group, out)
    finally:
        with connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(hashtext(%s))", [f"tsm.flush.{dataset}"])


def _merge_group(dataset: str, group: list[tuple[IngestBatch, pa.Table]], out: FlushResult) -> None:
    """Merge a group of batches as one load. A load the loader or the database refuses (not a
    transient error: that raises, and the task retries) is tried again batch by batch, and a batch
    refused on its own is marked failed with the reason — never left pending, where it would hold
    every later batch."""
    try:
        with transaction.atomic():
            first = group[0][0]  # every batch of a group has its feed and reassert (_groups)
            result = ingest_table(  # one chunk: one sort, one range scan, one COPY for the group
                dataset=dataset,
                data=pa.concat_tables([t for _, t in group]).combine_chunks(),
                source=f"write API: {len(group)} batch(es) from #{first.seq}",
                validated=True,  # checked at accept (batch_accept), with the client's bar_interval
                feed=first.feed,
                reassert=first.reassert,
                requested_by=_requesters([b for b, _ in group]),
            )
            IngestBatch.objects.filter(seq__in=[b.seq for b, _ in group]).update(
                status=IngestBatch.Status.MERGED, load_id=result.load_id, merged_at=timezone.now()
            )
    except (OperationalError, InterfaceError, psycopg.OperationalError, psycopg.InterfaceError):
        raise  # transient (connection lost, deadlock, shutdown): the task retries, the batches wait
    except (LoadRejected, InputError, DatabaseError, psycopg.Error) as exc:  # psycopg's own: the COPY
        if len(group) > 1:
            for one in group:
                _merge_group(dataset, [one], out)
            return
        batch = group[0][0]
        logger.error("write-API batch %s (#%s) cannot be merged: %s", batch.id, batch.seq, exc)
        IngestBatch.objects.filter(seq=batch.seq).update(status=IngestBatch.Status.FAILED, error=str(exc))
        return
    out.loads += 1
    out.batches += len(group)
    out.rows += sum(t.num_rows for _, t in group)


def _next_batches(dataset: str, max_rows: int) -> list[IngestBatch]:
    """The oldest pending batches up to ``max_rows`` rows; payloads are read only for those picked."""
    picked, total = [], 0
    pending = IngestBatch.objects.filter(dataset=dataset, status=IngestBatch.Status.PENDING).order_by("seq")
    for seq, rows in pending.values_list("seq", "rows")[:1000]:
        if picked and total + rows > max_rows:
            break
        picked.append(seq)
        total += rows
    return list(IngestBatch.objects.filter(seq__in=picked).order_by("seq"))


def _groups(spec: Dataset, batches: list[IngestBatch], tables: list[pa.Table]):
    """The loads to merge the batches as, in order. A load carries one feed and one re-assertion
    option, so batches with different (feed, reassert) never share one. When a (key, known_at)
    repeats across the batches: one load per batch, in arrival order, as if they had come serially.
    Else one load per (feed, reassert), in the order of each group's first batch, when no key occurs in
    two groups (merging a group before another's earlier batch then changes no answer: their rows
    meet in no key); else one load per run of consecutive batches with the same options (arrival
    order kept, as a single group would be merged)."""
    pairs = list(zip(batches, tables))
    if len(pairs) == 1:
        return [pairs]
    if repeated_keys(pa.concat_tables(tables), (*spec.key, "known_at")):
        return [[p] for p in pairs]
    groups: dict[tuple[str, bool], list[tuple[IngestBatch, pa.Table]]] = {}
    for batch, table in pairs:
        groups.setdefault((batch.feed, batch.reassert), []).append((batch, table))
    if len(groups) == 1:
        return [pairs]
    keys = list(spec.key)
    distinct = [pa.concat_tables([t.select(keys) for _, t in g]).group_by(keys).aggregate([]) for g in groups.values()]
    if not repeated_keys(pa.concat_tables(distinct), spec.key):
        return list(groups.values())
    runs: list[list[tuple[IngestBatch, pa.Table]]] = []
    for batch, table in pairs:
        if runs and (runs[-1][0][0].feed, runs[-1][0][0].reassert) == (batch.feed, batch.reassert):
            runs[-1].append((batch, table))
        else:
            runs.append([(batch, table)])
    return runs


def _requesters(batches: list[IngestBatch]) -> str:
    """Who sent a group's batches, as its load records it (each batch keeps its own ``requested_by``)."""
    names = list(dict.fromkeys(b.requested_by for b in batches if b.requested_by))
    text = "; ".join(names)
    if len(text) <= 150:
        return text
    return (f"{len(names)} senders: {text}")[:149] + "…"


def batch_status(*, batch_id) -> dict | None:
    batch = IngestBatch.objects.select_related("load").filter(id=batch_id).first()
    if batch is None:
        return None
    info = {
        "batch_id": str(batch.id),
        "dataset": batch.dataset,
        "status": batch.status,
        "rows": batch.rows,
        "rejected": batch.rejected,
        "created_at": batch.created_at,
        "merged_at": batch.merged_at,
        "queryable": batch.status == IngestBatch.Status.MERGED,
        "error": batch.error,
        "feed": batch.feed,
        "reassert": batch.reassert,
    }
    if batch.load:  # the counts are the whole load's: a flush may merge several batches as one load
        info["load"] = {
            "id": str(batch.load.id),
            "inserted": batch.load.inserted,
            "revised": batch.load.revised,
            "duplicates": batch.load.duplicates,
            "resent": batch.load.resent,
            "outranked": batch.load.outranked,
            "recorded_at": batch.load.recorded_at,
        }
    return info

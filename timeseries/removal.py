"""An operator's audited removal of bad versions (``manage.py remove_versions``, the admin action
"Remove selected versions (audited)").

Versions are never removed by ingestion: a correction is a new version. A version that should never
have been stored — a bar at 9999-12-31 from before tsm checked instants at the door, a row whose
values make a consumer fail — is removed here, in one transaction under the dataset's merge lock:

* each removed row is written to ``VersionRemoval`` (who, when, why, every stored value as JSON);
* the rows are deleted, with the quality flags that point at them (the audit of past scores stays);
* one change-log entry per touched series is appended over the removed rows' span, so the rollups,
  the quality checks, the InfluxDB backup and the API cache (the dataset's generation is bumped, as
  a load does) follow;
* the series registry's range is recomputed from the rows left (``timeseries.registry``);
* the consumers' open failures on those symbols become due at once: their next run retries them
  over what the span holds now, and they resolve.

Removing a version changes past point-in-time answers (as of a T when it was the latest version):
that is the point, and the audit row says who did it and why.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db import connection, transaction
from psycopg import sql

from timeseries.cache import generation_bump
from timeseries.changes import failures_due_now
from timeseries.datasets import DATASETS
from timeseries.registry import series_registry_recompute
from timeseries.rules import STORED_MAX, STORED_MIN

MAX_IDS = 10_000  # rows one removal may name


def versions_outside_range(*, dataset: str, limit: int = 100) -> list[tuple[int, str, str, str]]:
    """(id, symbol, time, known_at) of up to ``limit`` stored versions whose ``time`` or ``known_at``
    lies outside the stored-instant range (legacy rows from before the rules at the door), instants
    as PostgreSQL's text so that none has to become a Python datetime (past year 9999 none can)."""
    spec = DATASETS[dataset]
    query = sql.SQL(
        "SELECT id, {sym}, time::text, known_at::text FROM {table}"
        " WHERE time < %(lo)s OR time >= %(hi)s OR known_at < %(lo)s OR known_at >= %(hi)s ORDER BY id LIMIT %(limit)s"
    ).format(sym=sql.Identifier(spec.symbol_column), table=sql.Identifier(spec.table))
    with connection.cursor() as cur:
        cur.execute(query, {"lo": STORED_MIN, "hi": STORED_MAX, "limit": limit})
        return [tuple(row) for row in cur.fetchall()]


class RemovalError(ValueError):
    """Bad removal input; the message names the parameter (dataset, id, reason)."""


@dataclass
class RemovalResult:
    dataset: str
    removed: list[int] = field(default_factory=list)  # row ids
    symbols: list[str] = field(default_factory=list)
    change_ids: list[int] = field(default_factory=list)
    failures_due: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _ids(ids: Iterable) -> list[int]:
    out = []
    for value in ids:
        try:
            number = int(str(value).strip())
        except (TypeError, ValueError):
            raise RemovalError(f"id: {value!r} is not a row id (a positive whole number)") from None
        if number <= 0 or number >= 2**63:
            raise RemovalError(f"id: {value!r} is not a row id (a positive whole number)")
        out.append(number)
    if not out:
        raise RemovalError("id: give at least one row id to remove")
    if len(out) > MAX_IDS:
        raise RemovalError(f"id: at most {MAX_IDS} rows per removal ({len(out)} given)")
    return sorted(set(out))


def versions_remove(*, dataset: str, ids: Iterable, reason: str, user=None, actor: str = "") -> RemovalResult:
    """Remove the version rows ``ids`` of ``dataset`` (all or none), audited; see the module doc."""
    spec = DATASETS.get(dataset)
    if spec is None:
        raise RemovalError(f"dataset: {dataset!r} is unknown; expected one of {', '.join(DATASETS)}")
    wanted = _ids(ids)
    reason = (reason or "").strip()
    if not reason:
        raise RemovalError("reason: say why the versions are removed (it is kept in the audit)")
    actor = (actor or (user.get_username() if user is not None else "")).strip()[:150] or "unknown"
    table = sql.Identifier(spec.table)
    subkey = sql.SQL("t.{}").format(sql.Identifier(spec.series[1])) if len(spec.series) > 1 else sql.SQL("''")
    result = RemovalResult(dataset=spec.name)
    with transaction.atomic(), connection.cursor() as cur:
        # the loader's lock: change-log ids of one dataset must become visible in increasing order
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"tsm.merge.{spec.name}"])
        cur.execute(sql.SQL("SELECT id FROM {} WHERE id = ANY(%s) FOR UPDATE").format(table), [wanted])
        missing = sorted(set(wanted) - {r[0] for r in cur.fetchall()})
        if missing:
            raise RemovalError(
                f"id: {spec.name} has no row with id {', '.join(map(str, missing[:20]))}"
                f"{' …' if len(missing) > 20 else ''}; nothing was removed"
            )
        cur.execute(
            sql.SQL(
                "WITH gone AS (DELETE FROM {t} t WHERE t.id = ANY(%(ids)s)"
                " RETURNING t.id, t.{symbol} AS symbol, {subkey} AS subkey, t.time, to_jsonb(t) AS row),"
                " now AS (SELECT clock_timestamp() AS at),"
                " logged AS (INSERT INTO timeseries_change"
                " (dataset, symbol, subkey, first_time, last_time, recorded_at)"
                " SELECT %(dataset)s, g.symbol, g.subkey, min(g.time), max(g.time), (SELECT at FROM now) FROM gone g"
                " GROUP BY g.symbol, g.subkey ORDER BY g.symbol, g.subkey RETURNING id, symbol, subkey),"
                " audit AS (INSERT INTO timeseries_version_removal"
                " (dataset, row_id, symbol, row, reason, user_id, actor, removed_at, change_id)"
                " SELECT %(dataset)s, g.id, g.symbol, g.row, %(reason)s, %(user)s, %(actor)s,"
                " (SELECT at FROM now), l.id"
                " FROM gone g JOIN logged l ON l.symbol = g.symbol AND l.subkey = g.subkey RETURNING row_id)"
                " SELECT (SELECT array_agg(row_id ORDER BY row_id) FROM audit),"
                " (SELECT array_agg(DISTINCT symbol) FROM logged), (SELECT array_agg(id ORDER BY id) FROM logged)"
            ).format(t=table, symbol=sql.Identifier(spec.symbol_column), subkey=subkey),
            {"ids": wanted, "dataset": spec.name, "reason": reason, "user": getattr(user, "pk", None), "actor": actor},
        )
        removed, symbols, change_ids = cur.fetchone()
        result.removed, result.symbols, result.change_ids = removed or [], sorted(symbols or []), change_ids or []
        cur.execute("DELETE FROM timeseries_quality_flag WHERE dataset = %s AND row_id = ANY(%s)", [spec.name, wanted])
        series_registry_recompute(dataset=spec.name, symbols=result.symbols)
        generation_bump(datasets=[spec.name], cur=cur)
        result.failures_due = failures_due_now(dataset=spec.name, symbols=result.symbols)
    return result

"""Curation: set scores (audited), accept the checks' proposals, and the admin changelist filters.

Curation is the one place where a stored version row is changed in place: ``quality_score`` is tsm's
annotation of a row, not part of the fact (the loader does not compare it when deciding whether a
re-sent row is a new version, see ``Dataset.value_columns``). Every change is set-based — one
``UPDATE … RETURNING`` feeding one ``INSERT`` of ``QualityAudit`` rows, never a Python loop — runs
under a per-dataset advisory lock (so "old score" is exact under concurrent curations) and bumps the
dataset's generation in the same transaction, so cached answers never serve an old score.

Scores: 1.0 good (the market data default), 0.0 suspect, NULL not scored (news). ``min_quality=q``
on a selector keeps a row whose score is NULL or >= q, and with ``recorded_by=S`` the score used is
the one the row had at S: ``old_score`` of its earliest audit with ``changed_at > S``, else its
current score. A row excluded that way is not replaced by an older version of the same key.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import EmptyResultSet
from django.db import connection, transaction
from django.db.models import QuerySet
from psycopg import sql

from timeseries.cache import generation_bump
from timeseries.datasets import DATASETS, Dataset
from timeseries.params import (
    CURATION_FILTER_PARAMS,
    CURATION_RANGE_FILTERS,
    CurationError,
    curation_filters,
    score_check,
)

CURATED_DATASETS = tuple(name for name, spec in DATASETS.items() if spec.curated)


def curated_spec(dataset: str) -> Dataset:
    spec = DATASETS.get(dataset)
    if spec is None or not spec.curated:
        raise CurationError(f"dataset={dataset!r} has no quality_score: expected one of {', '.join(CURATED_DATASETS)}")
    return spec


@dataclass
class Curation:
    batch: uuid.UUID
    changed: int
    queued: bool = False


# --- setting scores -------------------------------------------------------------------------------


def _lock(cur, spec: Dataset) -> None:
    cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"tsm.curate.{spec.name}"])


def _ids_source(spec: Dataset, rows: QuerySet | Iterable[int]) -> tuple[sql.Composable, list]:
    """SQL yielding the ids to curate: the queryset's own SQL (set-based) or an id array."""
    if isinstance(rows, QuerySet):
        if rows.model._meta.db_table != spec.table:
            raise CurationError(f"rows are {rows.model._meta.db_table}, not {spec.name}")
        ids = rows.values("id") if rows.query.is_sliced else rows.order_by().values("id")
        try:
            query, params = ids.query.sql_with_params()
        except EmptyResultSet:  # e.g. queryset.none(): no row
            return sql.SQL("SELECT NULL::bigint WHERE false"), []
        return sql.SQL(query), list(params)
    ids = [int(i) for i in rows]
    return sql.SQL("SELECT unnest(%s::bigint[])"), [ids]


AUDIT_COLUMNS = (
    "dataset, row_id, symbol, time, known_at, recorded_at, old_score, new_score, reason, source, user_id,"
    " changed_at, batch"
)


def quality_scores_set(
    *,
    dataset: str,
    rows: QuerySet | Iterable[int],
    score: Any,
    reason: str,
    user=None,
    source: str = "user",
) -> Curation:
    """Set ``quality_score`` of ``rows`` (a queryset of the dataset, or ids) to ``score``; audited.

    Rows that already have the score are left alone (no audit row). One statement: the update
    returns each row's old score and key, which are inserted as audit rows.
    """
    spec = curated_spec(dataset)
    score = score_check("score", score)
    reason = (reason or "").strip()
    if not reason:
        raise CurationError("reason is required: say why the score changes")
    ids_sql, ids_params = _ids_source(spec, rows)
    batch = uuid.uuid4()
    statement = sql.SQL(
        """
        WITH target AS (
            SELECT t.id, t.quality_score AS old FROM {t} t
            WHERE t.id IN ({ids}) AND t.quality_score IS DISTINCT FROM %s
        ), upd AS (
            UPDATE {t} t SET quality_score = %s FROM target WHERE t.id = target.id
            RETURNING t.id, {sym} AS symbol, t.time, t.known_at, t.recorded_at, target.old
        )
        INSERT INTO timeseries_quality_audit ({audit})
        SELECT %s, id, symbol, time, known_at, recorded_at, old, %s, %s, %s, %s, clock_timestamp(), %s FROM upd
        """
    ).format(
        t=sql.Identifier(spec.table),
        ids=ids_sql,
        sym=sql.Identifier("t", spec.symbol_column),
        audit=sql.SQL(AUDIT_COLUMNS),
    )
    params = [*ids_params, score, score, spec.name, score, reason, source, getattr(user, "pk", user), batch]
    with transaction.atomic(), connection.cursor() as cur:
        _lock(cur, spec)
        cur.execute(statement, params)
        changed = cur.rowcount
        if changed:
            generation_bump(datasets=[spec.name])
    return Curation(batch=batch, changed=changed)


def quality_scores_apply(
    *, dataset: str, findings: list[tuple[int, float, str]], source: str, user=None, lower_only: bool = False
) -> Curation:
    """Per row (id, score, reason): set the row's score (with ``lower_only``, only where it lowers it);
    audited, one statement. A row named twice gets its lowest score."""
    spec = curated_spec(dataset)
    batch = uuid.uuid4()
    if not findings:
        return Curation(batch=batch, changed=0)
    for _, score, _ in findings:
        score_check("score", score)
    change = "t.quality_score > f.score" if lower_only else "t.quality_score IS DISTINCT FROM f.score"
    statement = sql.SQL(
        """
        WITH f AS (
            SELECT DISTINCT ON (id) id, score, reason
            FROM unnest(%s::bigint[], %s::float8[], %s::text[]) AS f(id, score, reason)
            ORDER BY id, score
        ), target AS (
            SELECT t.id, t.quality_score AS old, f.score, f.reason FROM {t} t JOIN f ON f.id = t.id
            WHERE t.quality_score IS NULL OR {change}
        ), upd AS (
            UPDATE {t} t SET quality_score = target.score FROM target WHERE t.id = target.id
            RETURNING t.id, {sym} AS symbol, t.time, t.known_at, t.recorded_at, target.old, target.score, target.reason
        )
        INSERT INTO timeseries_quality_audit ({audit})
        SELECT %s, id, symbol, time, known_at, recorded_at, old, score, reason, %s, %s, clock_timestamp(), %s FROM upd
        """
    ).format(
        t=sql.Identifier(spec.table),
        sym=sql.Identifier("t", spec.symbol_column),
        audit=sql.SQL(AUDIT_COLUMNS),
        change=sql.SQL(change),
    )
    ids, scores, reasons = zip(*findings)
    with transaction.atomic(), connection.cursor() as cur:
        _lock(cur, spec)
        cur.execute(
            statement, [list(ids), list(scores), list(reasons), spec.name, source, getattr(user, "pk", user), batch]
        )
        changed = cur.rowcount
        if changed:
            generation_bump(datasets=[spec.name])
    return Curation(batch=batch, changed=changed)


def quality_scores_lower(*, dataset: str, findings: list[tuple[int, float, str]], source: str) -> Curation:
    """Per row (id, score, reason): lower the row's score to ``score`` (never raise it); audited."""
    return quality_scores_apply(dataset=dataset, findings=findings, source=source, lower_only=True)


def quality_flags_accept(*, flags: QuerySet, user) -> int:
    """A curator accepts checks' proposals: each flagged row gets its flag's proposed score (audited
    as the user's, with the check's reason); flags without a proposed score are skipped. Returns rows changed."""
    changed = 0
    rows = (
        flags.exclude(proposed_score=None)
        .order_by()
        .values_list("dataset", "row_id", "proposed_score", "check_name", "reason")
    )
    by_dataset: dict[str, list[tuple[int, float, str]]] = {}
    for dataset, row_id, score, check, reason in rows:
        by_dataset.setdefault(dataset, []).append((row_id, score, f"accepted {check}: {reason}"))
    for dataset, findings in by_dataset.items():
        changed += quality_scores_apply(dataset=dataset, findings=findings, source="user", user=user).changed
    flags.exclude(proposed_score=None).update(applied=True)
    return changed


# --- the filters of the admin changelist (also used by the Celery task for large selections) ------
# read by timeseries.params.curation_filters; applied here

FILTER_PARAMS = CURATION_FILTER_PARAMS
RANGE_FILTERS = CURATION_RANGE_FILTERS


def curation_filters_clean(*, dataset: str, params: dict[str, Any]) -> dict[str, Any]:
    """Validate the changelist filter parameters (unknown ones are ignored); errors name the parameter."""
    spec = DATASETS[dataset]
    return curation_filters(params, dataset=spec.name, has_source="source" in spec.column_names, curated=spec.curated)


def curation_filters_apply(queryset: QuerySet, *, dataset: str, filters: dict[str, Any]) -> QuerySet:
    """Apply cleaned filters: exact symbols (filter or search box), sources, inclusive ranges."""
    spec = DATASETS[dataset]
    for name in ("symbol", "q"):
        if filters.get(name):
            queryset = queryset.filter(**{f"{spec.symbol_column}__in": filters[name]})
    if filters.get("source"):
        queryset = queryset.filter(source__in=filters["source"])
    for name, (column, lookup) in RANGE_FILTERS.items():
        if name in filters:
            queryset = queryset.filter(**{f"{column}__{lookup}": filters[name]})
    if "known_at_before" in filters:
        # every stored row has known_at >= time (the loader refuses earlier ones), so this bound is
        # implied; it lets the scan start on the time index at the right place instead of the newest row
        queryset = queryset.filter(time__lte=filters["known_at_before"])
    return queryset


def curation_queryset(*, dataset: str, params: dict[str, Any]) -> QuerySet:
    filters = curation_filters_clean(dataset=dataset, params=params)
    return curation_filters_apply(DATASETS[dataset].model.objects.all(), dataset=dataset, filters=filters)


def quality_scores_set_filtered(
    *, dataset: str, params: dict[str, Any], score: Any, reason: str, user_id: int | None
) -> Curation:
    """``quality_scores_set`` over every row matching the changelist filters (the Celery path)."""
    return quality_scores_set(
        dataset=dataset,
        rows=curation_queryset(dataset=dataset, params=params),
        score=score,
        reason=reason,
        user=user_id,
    )

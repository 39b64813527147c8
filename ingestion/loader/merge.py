"""The set-based merge of a staging table into its dataset: one transaction under the dataset's merge
lock, one ``recorded_at`` for every row stored.

* fast path: the staged rows *proven new* are appended as they are (``_append``);
* revision path: the others keep one row per (key, known_at), drop rows equal to the version current
  for their (key, known_at) ("duplicates") or to another version of it, superseded or outranked ("re-sent":
  duplicates too, listed as ResentRow), keep as an OutrankedVersion a row whose (key, known_at) has a
  current version from a feed ranked above the load's, and insert the rest as new versions ("inserted"
  for keys never seen, "revised" for keys that already had a version) — ``MERGE_SQL``.

The series registry, the change log, the cache generation and the replay record are updated in the
same transaction.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import connection, transaction
from psycopg import sql

from ingestion import replay
from ingestion.loader.batches import SeriesRanges
from ingestion.loader.run import LoadRun
from timeseries.cache import generation_bump
from timeseries.changes import changes_record
from timeseries.datasets import Dataset
from timeseries.sqltext import identifiers


def merge_transaction(run: LoadRun, ranges: SeriesRanges) -> None:
    """Append the rows proven new; run the version merge on the rest. One transaction, one recorded_at.

    A staged row is *proven new* when its key occurs once in its batch (``multi`` is false), its
    series' batches do not overlap in time (so the key is in no other batch) and its series' time
    range does not overlap what is stored (so the key is not stored). The merge lock makes the last
    test hold until commit.
    """
    with transaction.atomic():
        with connection.cursor() as cur:
            recorded_at = merge_begin(cur, run)
            merge_staged(cur, run, ranges, recorded_at)


def merge_begin(cur, run: LoadRun) -> datetime:
    """Take the dataset's merge lock and set the merge's session settings; returns the load's recorded_at."""
    result = run.result
    cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"tsm.merge.{run.spec.name}"])
    # set-based merges over millions of rows: sort in memory, skip JIT compilation, and no Memoize
    # in front of the per-row version probe (every staged key is distinct: it only misses)
    cur.execute("SET LOCAL work_mem = '256MB'")
    cur.execute("SET LOCAL jit = off")
    cur.execute("SET LOCAL enable_memoize = off")
    cur.execute("SET LOCAL TimeZone = 'UTC'")  # the JSON of kept rows and keys: timestamps in UTC
    cur.execute("SELECT clock_timestamp()")
    result.recorded_at = cur.fetchone()[0]
    # the load's recorded_at commits with its versions: a version's feed (the load of the same dataset
    # and recorded_at) is known to the next merge, which may start before this load's outcome is written
    cur.execute("UPDATE ingestion_load SET recorded_at = %s WHERE id = %s", [result.recorded_at, run.load.id])
    return result.recorded_at


def merge_staged(
    cur, run: LoadRun, ranges: SeriesRanges, recorded_at: datetime, also: SeriesRanges | None = None
) -> None:
    """The merge of the staging table, under the lock ``merge_begin`` took. ``also``: the spans of rows
    this load stored already (COPYed directly), for the change log and the replay record."""
    spec, stage, result = run.spec, run.stage, run.result
    if ranges.spans:
        straddling = ranges.straddling()
        mixed = straddling | _stored_overlaps(cur, spec, ranges)
        # every staged series needs the version merge (a replay, a file of corrections, a dataset
        # whose key has no time): no row is left to append, and no per-row series test is needed
        everything = not spec.time_keyed or mixed >= ranges.spans.keys()
        subset = sql.SQL("true") if everything else subset_predicate(spec, mixed, ranges.any_multi)
        if subset is not None:
            # row counts for the version merge's planner (it would guess ~34k rows); an append
            # needs no plan choice, and a 90k-row write-API flush spent 12 % of its time here
            cur.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(stage)))
            _merge_versions(
                cur,
                run,
                stage,
                recorded_at,
                subset,
                keys_repeat=ranges.any_multi or bool(straddling) or not spec.time_keyed,
            )
        if not everything:
            result.inserted += _append(cur, spec, stage, recorded_at, subset)
        register_series(cur, spec, ranges)
    bounds = ranges.union(also).bounds()
    if result.inserted or result.revised:
        changes_record(cur=cur, dataset=spec.name, bounds=bounds, recorded_at=recorded_at)
        generation_bump(datasets=[spec.name], cur=cur)
    result.change_watermark = replay.change_watermark(cur=cur, dataset=spec.name)  # for a later replay
    result.spans = replay.spans_encode(bounds)


def _series_expr(spec: Dataset, alias: str) -> sql.Composable:
    return sql.SQL("concat_ws(chr(31), {})").format(
        sql.SQL(", ").join(sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(c)) for c in spec.series)
    )


def subset_predicate(spec: Dataset, mixed: set[tuple], any_multi: bool) -> sql.Composable | None:
    """SQL condition on staging alias ``s`` selecting the rows that need the version merge (None: no row)."""
    if not mixed and not any_multi:
        return None
    parts = [sql.SQL("s.multi")]
    if mixed:
        names = sql.Literal(["\x1f".join(str(v) for v in key) for key in sorted(mixed)])
        parts.append(sql.SQL("{} = ANY({}::text[])").format(_series_expr(spec, "s"), names))
    return sql.SQL("(") + sql.SQL(" OR ").join(parts) + sql.SQL(")")


def _stored_overlaps(cur, spec: Dataset, ranges: SeriesRanges) -> set[tuple]:
    """Series of which a stored row falls inside the staged time range.

    The registry's [first, last] range rules most series out at once; for the others one index probe
    per series asks whether a stored row really lies in the staged range, so a backfill into a gap
    (or after a later load) still takes the append path.
    """
    bounds = ranges.bounds()
    if not bounds:
        return set()
    keys = list(bounds)
    match = sql.SQL(" AND ").join(
        sql.SQL("t.{} = n.{}").format(sql.Identifier(column), sql.Identifier(name))
        for column, name in zip(spec.series, ("symbol", "subkey"))
    )
    cur.execute(
        sql.SQL(
            """
            SELECT n.i FROM unnest(%s::text[], %s::text[], %s::timestamptz[], %s::timestamptz[])
                            WITH ORDINALITY AS n(symbol, subkey, lo, hi, i)
            JOIN timeseries_series s ON s.dataset = %s AND s.symbol = n.symbol AND s.subkey = n.subkey
            WHERE n.lo <= s.last_time AND n.hi >= s.first_time
              AND EXISTS (SELECT 1 FROM {table} t WHERE {match} AND t.time BETWEEN n.lo AND n.hi)
            """
        ).format(table=sql.Identifier(spec.table), match=match),
        [
            [k[0] for k in keys],
            [k[1] if len(k) > 1 else "" for k in keys],
            [bounds[k][0] for k in keys],
            [bounds[k][1] for k in keys],
            spec.name,
        ],
    )
    return {keys[i - 1] for (i,) in cur.fetchall()}


def register_series(cur, spec: Dataset, ranges: SeriesRanges) -> None:
    bounds = ranges.bounds()
    if not bounds:
        return
    cur.execute(
        """
        INSERT INTO timeseries_series (dataset, symbol, subkey, first_time, last_time)
        SELECT %s, n.symbol, n.subkey, n.lo, n.hi
        FROM unnest(%s::text[], %s::text[], %s::timestamptz[], %s::timestamptz[]) AS n(symbol, subkey, lo, hi)
        ON CONFLICT (dataset, symbol, subkey) DO UPDATE
        SET first_time = LEAST(timeseries_series.first_time, EXCLUDED.first_time),
            last_time = GREATEST(timeseries_series.last_time, EXCLUDED.last_time)
        """,
        [
            spec.name,
            [k[0] for k in bounds],
            [k[1] if len(k) > 1 else "" for k in bounds],
            [b[0] for b in bounds.values()],
            [b[1] for b in bounds.values()],
        ],
    )


def _append(cur, spec: Dataset, stage: str, recorded_at: datetime, subset: sql.Composable | None) -> int:
    """Insert the staged rows proven new (those outside ``subset``) as they are."""
    cols = [*spec.column_names, "known_at"]
    where = sql.SQL("") if subset is None else sql.SQL(" WHERE NOT ") + subset
    cur.execute(
        sql.SQL("INSERT INTO {t} ({cols}, recorded_at) SELECT {cols}, %s FROM {s} s{where}").format(
            t=sql.Identifier(spec.table), s=sql.Identifier(stage), cols=identifiers(cols), where=where
        ),
        [recorded_at],
    )
    return cur.rowcount


def key_match(spec: Dataset, left: str, right: str) -> sql.Composable:
    return sql.SQL(" AND ").join(
        sql.SQL("{}.{} = {}.{}").format(
            sql.Identifier(left), sql.Identifier(k), sql.Identifier(right), sql.Identifier(k)
        )
        for k in spec.key
    )


def conflicting_rows(cur, spec: Dataset, stage: str, subset: sql.Composable) -> list[list[int]]:
    """Groups of input rows with the same key and known_at but different values."""
    cur.execute(
        sql.SQL(
            "SELECT array_agg(row_no ORDER BY row_no) FROM {s} s WHERE {subset} GROUP BY {key}, known_at "
            "HAVING count(DISTINCT ROW({vals})) > 1"
        ).format(
            s=sql.Identifier(stage), key=identifiers(spec.key), vals=identifiers(spec.value_columns), subset=subset
        )
    )
    return [row[0] for row in cur.fetchall()]


# Each row's outcome is one CASE, evaluated once per row and in this order, so a row equal to the
# version it follows (most rows of a re-delivery) costs one comparison: DUPLICATE; then, for rows
# compared with a stored version, the searches for an equal superseded (SUPERSEDED) or outranked
# (OUTRANKED_EQUAL) version and the precedence test (OUTRANKED); the rest are new versions. The
# outcome is a small integer; ``p`` is read twice (as by the merge before re-sends were told apart):
# by the counts, and to pick the rows not duplicates (``n``) that the inserts read.
OUTCOMES = dict(DUPLICATE=0, INSERTED=1, REVISED=2, SUPERSEDED=3, OUTRANKED_EQUAL=4, OUTRANKED=5)
_CODES = {name: sql.SQL(str(code)) for name, code in OUTCOMES.items()}
MERGE_SQL = """
WITH {rows}, p AS (
    SELECT l.*, cur.recorded_at AS cur_recorded,
           CASE WHEN {is_dup} THEN {DUPLICATE}
                WHEN {stored_ref} THEN {stored_outcome}
                WHEN {is_revision} THEN {REVISED}
                ELSE {INSERTED} END AS outcome
    FROM l LEFT JOIN LATERAL (
        SELECT t.known_at, t.recorded_at, ROW({t_vals}) AS vals FROM {t} t
        WHERE {t_key} AND t.known_at <= l.known_at
        ORDER BY t.known_at DESC, t.recorded_at DESC LIMIT 1
    ) cur ON true
), n AS (
    SELECT * FROM p WHERE outcome <> {DUPLICATE}
), ins AS (
    INSERT INTO {t} ({cols}, recorded_at)
    SELECT {cols}, %(recorded_at)s FROM n WHERE outcome IN ({INSERTED}, {REVISED})
){keep}
SELECT count(*) FILTER (WHERE outcome = {INSERTED}),
       count(*) FILTER (WHERE outcome = {REVISED}),
       count(*) FILTER (WHERE outcome IN ({DUPLICATE}, {SUPERSEDED}, {OUTRANKED_EQUAL})),
       count(*) FILTER (WHERE outcome IN ({SUPERSEDED}, {OUTRANKED_EQUAL})),
       count(*) FILTER (WHERE outcome = {OUTRANKED}),
       (SELECT count(*) FROM {s} s WHERE {subset}) - count(*)
FROM p
"""
# the rows kept aside (only when the load can have such rows: precedence applies / equals are searched)
KEEP_OUTRANKED = """, kept AS (
    INSERT INTO timeseries_outranked_version
        (dataset, symbol, time, known_at, recorded_at, feed, load_id, outranked_by, row)
    SELECT %(dataset)s, {symbol}, time, known_at, %(recorded_at)s, %(feed)s, %(load_id)s, cur_recorded,
           jsonb_build_object({row_json})
    FROM n WHERE outcome = {OUTRANKED}
)"""
KEEP_RESENT = """, told AS (
    INSERT INTO ingestion_resentrow (load_id, key, known_at, kind, current_recorded_at)
    SELECT %(load_id)s, jsonb_build_object({key_json}), known_at,
           CASE outcome WHEN {SUPERSEDED} THEN 'superseded' ELSE 'outranked' END, cur_recorded
    FROM n WHERE outcome IN ({SUPERSEDED}, {OUTRANKED_EQUAL})
)"""

# Keys may repeat in the input: keep one row per (key, known_at) and compare each row with the
# version before it in the input too (an earlier-known row of the same load).
REPEATED_KEY_ROWS = """d AS (
    SELECT DISTINCT ON ({key}, known_at) {cols}, row_no FROM {s} s WHERE {subset} ORDER BY {key}, known_at, row_no
), l AS (
    SELECT d.*, lag(ROW({vals})) OVER w AS prev_vals, lag(known_at) OVER w AS prev_known
    FROM d WINDOW w AS (PARTITION BY {key} ORDER BY known_at)
)"""
REPEATED_KEY_DUP = """CASE WHEN l.prev_known IS NOT NULL AND (cur.known_at IS NULL OR l.prev_known >= cur.known_at)
                    THEN l.prev_vals IS NOT DISTINCT FROM ROW({l_vals})
                WHEN cur.known_at IS NOT NULL THEN cur.vals IS NOT DISTINCT FROM ROW({l_vals})
                ELSE false END"""
REPEATED_KEY_REVISION = "(l.prev_known IS NOT NULL OR EXISTS (SELECT 1 FROM {t} x WHERE {x_key}))"
# the row is compared with a stored version (not with an earlier-known row of the same load)
REPEATED_KEY_STORED_REF = "(cur.known_at IS NOT NULL AND (l.prev_known IS NULL OR l.prev_known < cur.known_at))"

# Every key occurs once in the input (a replay, or corrections of stored rows): no sort, no window.
UNIQUE_KEY_ROWS = "l AS (SELECT {cols}, row_no FROM {s} s WHERE {subset})"
UNIQUE_KEY_DUP = "(cur.known_at IS NOT NULL AND cur.vals IS NOT DISTINCT FROM ROW({l_vals}))"
UNIQUE_KEY_REVISION = "(cur.known_at IS NOT NULL OR EXISTS (SELECT 1 FROM {t} x WHERE {x_key}))"
UNIQUE_KEY_STORED_REF = "(cur.known_at IS NOT NULL)"

# A row that is not the current version of the (key, known_at) it is compared with, but equals another
# version of it: one stored and superseded since, or one kept as outranked. Evaluated (a CASE branch)
# only for rows that differ from the current version.
SUPERSEDED_TEST = """WHEN EXISTS (
        SELECT 1 FROM {t} x
        WHERE {x_key} AND x.known_at = cur.known_at AND ROW({x_vals}) IS NOT DISTINCT FROM ROW({l_vals})
    ) THEN {SUPERSEDED}"""
OUTRANKED_TEST = """WHEN EXISTS (
        SELECT 1 FROM timeseries_outranked_version o CROSS JOIN LATERAL jsonb_populate_record(NULL::{t}, o.row) v
        WHERE o.dataset = %(dataset)s AND o.symbol = {l_symbol} AND o.time = l.time AND o.known_at = cur.known_at
          AND {vl_key} AND ROW({v_vals}) IS NOT DISTINCT FROM ROW({l_vals})
    ) THEN {OUTRANKED_EQUAL}"""
# The version current for the row's own (key, known_at) comes from a feed ranked above the load's:
# ``ranks`` lists the dataset's feeds best first; an unlisted feed (or a version no load recorded)
# ranks last.
OUTRANKS = """WHEN cur.known_at = l.known_at AND coalesce((
        SELECT array_position(%(ranks)s::text[], ld.feed::text) FROM ingestion_load ld
        WHERE ld.dataset = %(dataset)s AND ld.recorded_at = cur.recorded_at LIMIT 1
    ), %(unranked)s) < %(load_rank)s THEN {OUTRANKED}"""


def _merge_versions(
    cur, run: LoadRun, stage: str, recorded_at: datetime, subset: sql.Composable, *, keys_repeat: bool
) -> None:
    """The version merge of the staged rows in ``subset`` (docs/ingestion.md, "Re-deliveries"): adds to
    the result's inserted / revised / duplicates / resent / outranked."""
    spec, result = run.spec, run.result
    cols = [*spec.column_names, "known_at"]
    vals = spec.value_columns
    rest_of_key = [k for k in spec.key if k not in (spec.symbol_column, "time")]
    parts = (
        (REPEATED_KEY_ROWS, REPEATED_KEY_DUP, REPEATED_KEY_REVISION, REPEATED_KEY_STORED_REF)
        if keys_repeat
        else (UNIQUE_KEY_ROWS, UNIQUE_KEY_DUP, UNIQUE_KEY_REVISION, UNIQUE_KEY_STORED_REF)
    )
    names = dict(
        s=sql.Identifier(stage),
        t=sql.Identifier(spec.table),
        key=identifiers(spec.key),
        cols=identifiers(cols),
        vals=identifiers(vals),
        l_vals=identifiers(vals, "l"),
        t_vals=identifiers(vals, "t"),
        x_vals=identifiers(vals, "x"),
        v_vals=identifiers(vals, "v"),
        t_key=key_match(spec, "t", "l"),
        x_key=key_match(spec, "x", "l"),
        vl_key=sql.SQL(" AND ").join(
            [sql.SQL("true")] + [sql.SQL("v.{c} = l.{c}").format(c=sql.Identifier(c)) for c in rest_of_key]
        ),
        l_symbol=sql.SQL("l.{}").format(sql.Identifier(spec.symbol_column)),
        symbol=sql.Identifier(spec.symbol_column),
        subset=subset,
        row_json=_json_pairs(cols),
        key_json=_json_pairs(spec.key),
        **_CODES,
    )
    rows, is_dup, is_revision, stored_ref = (sql.SQL(part).format(**names) for part in parts)
    tests = [] if run.reassert else [SUPERSEDED_TEST]
    if not run.reassert and _has_outranked(cur, spec):
        tests.append(OUTRANKED_TEST)
    ranks = list(settings.TSM_FEED_PRECEDENCE.get(spec.name, ()))
    load_rank = ranks.index(run.load.feed) + 1 if run.load.feed in ranks else len(ranks) + 1
    precedence = bool(ranks) and load_rank > 1 and not run.overrule
    branches = [sql.SQL(test).format(**names) for test in tests] + (
        [sql.SQL(OUTRANKS).format(**_CODES)] if precedence else []
    )
    stored_outcome = (
        sql.SQL("CASE {} ELSE {} END").format(sql.SQL(" ").join(branches), _CODES["REVISED"])
        if branches
        else _CODES["REVISED"]
    )
    query = sql.SQL(MERGE_SQL).format(
        rows=rows,
        is_dup=is_dup,
        is_revision=is_revision,
        stored_ref=stored_ref,
        stored_outcome=stored_outcome,
        keep=sql.SQL("").join(
            sql.SQL(part).format(**names)
            for part, wanted in ((KEEP_OUTRANKED, precedence), (KEEP_RESENT, tests))
            if wanted
        ),
        **names,
    )
    cur.execute(
        query,
        {
            "recorded_at": recorded_at,
            "dataset": spec.name,
            "feed": run.load.feed,
            "load_id": run.load.id,
            "ranks": ranks,
            "unranked": len(ranks) + 1,
            "load_rank": load_rank,
        },
    )
    inserted, revised, duplicates, resent, outranked, same_version_repeats = cur.fetchone()
    result.inserted += inserted
    result.revised += revised
    result.duplicates += duplicates + same_version_repeats
    result.resent += resent
    result.outranked += outranked


def _json_pairs(columns) -> sql.Composable:
    """``'a', "a", 'b', "b"``: the arguments of jsonb_build_object for these columns of the row."""
    return sql.SQL(", ").join(sql.SQL("{}, {}").format(sql.Literal(c), sql.Identifier(c)) for c in columns)


def _has_outranked(cur, spec: Dataset) -> bool:
    """Whether any outranked version of the dataset is kept (else the merge need not look for one)."""
    cur.execute("SELECT EXISTS (SELECT 1 FROM timeseries_outranked_version WHERE dataset = %s)", [spec.name])
    return cur.fetchone()[0]

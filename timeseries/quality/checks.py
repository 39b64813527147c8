"""Automatic quality checks: the checks' SQL per suite, spans, and running them (over spans, a range,
admin rows, or the change log after the "quality" cursor).

Automatic checks (``quality_checks_run``) are SQL over the current versions of the given spans
(symbol, [lo, hi) widened to whole UTC days for news; bars add margins counted in bars, so neighbours
are seen). The gap check of minute bars follows the sessions of each symbol's exchange
(``timeseries.calendars``, ``timeseries.exchanges``; docs/calendars.md). Each finding is a
``QualityFlag`` (one per row and check, refreshed on re-runs). Checks the dataset declares ``applied``
(``Dataset.quality_checks``) also lower the row's score (never raise it), audited with the check's
name as source; the others only propose a score for a curator to accept.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import Max, Min, QuerySet
from psycopg import sql

from timeseries.calendars import sessions_between
from timeseries.changes import changes_run, failures_retry
from timeseries.datasets import DATASETS, Dataset
from timeseries.exchanges import exchanges_of
from timeseries.models import Series
from timeseries.params import CurationError
from timeseries.quality.curation import curated_spec, quality_scores_lower

QUALITY_CONSUMER = "quality"

# dataset -> check name -> (proposed score, applied automatically?), from the declarations
CHECKS: dict[str, dict[str, tuple[float | None, bool]]] = {
    name: {c.name: (c.proposed_score, c.applied) for c in spec.quality_checks.checks}
    for name, spec in DATASETS.items()
    if spec.quality_checks is not None
}
SPIKE_JUMP = 0.10  # close at least 10% away from both neighbours...
SPIKE_NEIGHBOURS_AGREE = 0.02  # ...which are within 2% of each other
STALE_BARS = 5  # this many consecutive bars with identical open/high/low/close
VOLUME_FACTOR = 10  # volume above 10x the mean of the 60 surrounding bars
DUPLICATE_TITLE_WINDOW = timedelta(hours=24)


# --- automatic checks -----------------------------------------------------------------------------

Span = tuple[str, datetime, datetime]  # symbol, lo, hi ([lo, hi) whole days for news; [first, last] bars)


def spans_merge(spans: Iterable[tuple[str, datetime, datetime]], *, whole_days: bool = True) -> list[Span]:
    """Merge each symbol's overlapping (symbol, first, last) spans; with ``whole_days`` widen each to
    [day(first), day(last) + 1) first (news). Market data keeps them as they are: its checks add their
    margins in SQL, counted in bars."""
    by_symbol: dict[str, list[tuple[datetime, datetime]]] = {}
    for symbol, lo, hi in spans:
        if whole_days:
            lo = lo.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
            hi = hi.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
        by_symbol.setdefault(symbol, []).append((lo, hi))
    out: list[Span] = []
    for symbol in sorted(by_symbol):
        ranges = sorted(by_symbol[symbol])
        cur_lo, cur_hi = ranges[0]
        for lo, hi in ranges[1:]:
            if lo <= cur_hi:
                cur_hi = max(cur_hi, hi)
            else:
                out.append((symbol, cur_lo, cur_hi))
                cur_lo, cur_hi = lo, hi
        out.append((symbol, cur_lo, cur_hi))
    return out


SPANS_CTE = (
    "WITH spans AS (SELECT * FROM unnest(%(symbols)s::text[], %(los)s::timestamptz[], %(his)s::timestamptz[])"
    " AS s(symbol, lo, hi))"
)

# Bars whose verdict a change can move: its own and those within EVAL_MARGIN bars of it (the widest
# window is 30 bars either side, plus the previous bar's time for the gap step); each of them is
# judged with CONTEXT_MARGIN bars of context, so its windows are whole. Margins count bars, not time,
# so a check costs the same late in a trading day as early in it, for minute and daily bars alike.
EVAL_MARGIN = 32
CONTEXT_MARGIN = 64

# each span's bounds: EVAL_MARGIN and CONTEXT_MARGIN bars either side (the first query of the bars suite;
# the sessions the gap check needs are those overlapping [eval_lo, eval_hi])
BARS_BOUNDS_SQL = """WITH spans AS (
    SELECT row_number() OVER () AS span_no, s.*
    FROM unnest(%(symbols)s::text[], %(los)s::timestamptz[], %(his)s::timestamptz[]) AS s(symbol, lo, hi)
)
SELECT s.span_no, s.symbol, coalesce(cb.t, s.lo) AS ctx_lo, coalesce(eb.t, s.lo) AS eval_lo,
       coalesce(ca.t, s.hi) AS ctx_hi, coalesce(ea.t, s.hi) AS eval_hi
FROM spans s
LEFT JOIN LATERAL (SELECT min(x.time) AS t FROM (SELECT DISTINCT m.time FROM market_data m
    WHERE m.symbol = s.symbol AND m.time < s.lo ORDER BY m.time DESC LIMIT %(ctx)s) x) cb ON true
LEFT JOIN LATERAL (SELECT min(x.time) AS t FROM (SELECT DISTINCT m.time FROM market_data m
    WHERE m.symbol = s.symbol AND m.time < s.lo ORDER BY m.time DESC LIMIT %(eval)s) x) eb ON true
LEFT JOIN LATERAL (SELECT max(x.time) AS t FROM (SELECT DISTINCT m.time FROM market_data m
    WHERE m.symbol = s.symbol AND m.time > s.hi ORDER BY m.time LIMIT %(ctx)s) x) ca ON true
LEFT JOIN LATERAL (SELECT max(x.time) AS t FROM (SELECT DISTINCT m.time FROM market_data m
    WHERE m.symbol = s.symbol AND m.time > s.hi ORDER BY m.time LIMIT %(eval)s) x) ea ON true
ORDER BY s.span_no
"""

# the spans with their bounds and exchange, and the trading periods of those exchanges' sessions
# ([open, close), or the two halves around a lunch break), all passed as parameters
MARKET_CHECKS_SQL = """WITH bounds AS (
    SELECT * FROM unnest(%(span_nos)s::bigint[], %(span_symbols)s::text[], %(span_exchanges)s::text[],
                         %(ctx_los)s::timestamptz[], %(eval_los)s::timestamptz[],
                         %(ctx_his)s::timestamptz[], %(eval_his)s::timestamptz[])
        AS b(span_no, symbol, exchange, ctx_lo, eval_lo, ctx_hi, eval_hi)
), periods AS (
    SELECT * FROM unnest(%(period_exchanges)s::text[], %(period_opens)s::timestamptz[],
                         %(period_closes)s::timestamptz[]) AS p(period_exchange, period_open, period_close)
), cur AS (
    SELECT c.*, b.span_no, b.exchange, b.eval_lo, b.eval_hi FROM bounds b CROSS JOIN LATERAL (
        SELECT DISTINCT ON (m.time) m.id, m.symbol, m.time, m.open, m.high, m.low, m.close, m.volume, m.vwap
        FROM market_data m WHERE m.symbol = b.symbol AND m.time >= b.ctx_lo AND m.time <= b.ctx_hi
        ORDER BY m.time, m.known_at DESC, m.recorded_at DESC
    ) c
), w1 AS (
    SELECT cur.*,
        lag(close) OVER w AS prev_close, lead(close) OVER w AS next_close, lag(time) OVER w AS prev_time,
        (open, high, low, close) = (lag(open) OVER w, lag(high) OVER w, lag(low) OVER w, lag(close) OVER w)
            AS same_as_prev,
        sum(volume) OVER around AS vol_sum, count(*) OVER around AS vol_n
    FROM cur
    WINDOW w AS (PARTITION BY span_no ORDER BY time),
           around AS (PARTITION BY span_no ORDER BY time ROWS BETWEEN 30 PRECEDING AND 30 FOLLOWING)
), w2 AS (
    -- "the bars around are one minute apart" = the smallest step within 30 bars is one minute, counted
    -- with two moving counts (min() over a sliding frame is recomputed for every row: 40 per cent of the time)
    SELECT w1.*,
        count(*) FILTER (WHERE same_as_prev) OVER last AS same_run,
        count(*) FILTER (WHERE time - prev_time = interval '1 minute') OVER around AS minute_steps,
        count(*) FILTER (WHERE time - prev_time < interval '1 minute') OVER around AS shorter_steps
    FROM w1
    WINDOW last AS (PARTITION BY span_no ORDER BY time ROWS BETWEEN %(stale_frame)s PRECEDING AND CURRENT ROW),
           around AS (PARTITION BY span_no ORDER BY time ROWS BETWEEN 30 PRECEDING AND 30 FOLLOWING)
)
-- cheap tests first: float and integer pre-checks keep numeric division and time-zone conversion
-- to the few candidate bars (the decisions themselves stay exact)
SELECT DISTINCT ON (id, v.check_name) id, symbol, time, v.check_name, v.reason FROM (
SELECT id, symbol, time,
    CASE
        WHEN least(open, high, low, close) <= 0
            THEN format('a price is not positive (open %%s, high %%s, low %%s, close %%s)', open, high, low, close)
        WHEN vwap IS NOT NULL AND (vwap < low OR vwap > high)
            THEN format('vwap %%s is outside [low %%s, high %%s]', vwap, low, high)
        WHEN high < greatest(open, close) OR low > least(open, close)
            THEN format('open/close outside [low %%s, high %%s]', low, high)
    END AS r_ohlc,
    CASE WHEN prev_close > 0 AND next_close > 0
        AND abs(close::float8 / prev_close::float8 - 1) > 0.999 * %(jump)s
        AND abs(close / prev_close - 1) > %(jump)s AND abs(close / next_close - 1) > %(jump)s
        AND abs(next_close / prev_close - 1) < %(agree)s
        THEN format('close %%s is %%s%%%% away from its neighbours (%%s before, %%s after)', close,
                    round(100 * abs(close / prev_close - 1), 1), prev_close, next_close) END AS r_spike,
    CASE WHEN same_run >= %(stale_prev)s
        THEN format('open/high/low/close unchanged for %%s consecutive bars', %(stale)s) END AS r_stale,
    CASE WHEN vol_n >= 11 AND (vol_sum - volume) > 0
        AND volume::numeric * (vol_n - 1) > %(vol_factor)s * (vol_sum - volume)::numeric
        THEN format('volume %%s is %%sx the mean of the %%s surrounding bars', volume,
                    round(volume / ((vol_sum - volume)::numeric / (vol_n - 1)), 1), vol_n - 1) END AS r_volume,
    CASE WHEN time - prev_time > interval '1 minute' AND minute_steps > 0 AND shorter_steps = 0
        AND EXISTS (SELECT 1 FROM periods p WHERE p.period_exchange = w2.exchange
                    AND p.period_open <= w2.prev_time AND w2.time < p.period_close)
        THEN format('no bar for %%s minutes before this one during the %%s session (previous bar %%s)',
                    extract(epoch FROM time - prev_time)::bigint / 60 - 1, exchange, prev_time) END AS r_gap
FROM w2 WHERE time >= eval_lo AND time <= eval_hi
) x CROSS JOIN LATERAL (
    VALUES ('ohlc', r_ohlc), ('spike', r_spike), ('stale', r_stale), ('volume', r_volume), ('gap', r_gap)
) AS v(check_name, reason)
WHERE (r_ohlc IS NOT NULL OR r_spike IS NOT NULL OR r_stale IS NOT NULL OR r_volume IS NOT NULL OR r_gap IS NOT NULL)
  AND v.reason IS NOT NULL
ORDER BY id, v.check_name
"""

NEWS_CHECKS_SQL = (
    SPANS_CTE
    + """,
cur AS (
    SELECT c.* FROM spans s CROSS JOIN LATERAL (
        SELECT DISTINCT ON (n.time, n.news_id) n.id, n.symbol, n.time, n.news_id, n.title
        FROM news_events n WHERE n.symbol = s.symbol AND n.time >= s.lo - %(window)s AND n.time < s.hi
        ORDER BY n.time, n.news_id, n.known_at DESC, n.recorded_at DESC
    ) c
), w AS (
    SELECT cur.*, lag(news_id) OVER t AS prev_id, lag(time) OVER t AS prev_time
    FROM cur WINDOW t AS (PARTITION BY symbol, lower(btrim(title)) ORDER BY time, news_id)
)
SELECT id, symbol, time, 'duplicate_title', format('same title as story %%s published %%s', prev_id, prev_time)
FROM w WHERE prev_id IS NOT NULL AND prev_id <> news_id AND time - prev_time <= %(window)s
"""
)


# the SQL of each suite a dataset may declare (Dataset.quality_checks.suite), and its parameters
SUITES: dict[str, tuple[str, dict[str, Any]]] = {
    "bars": (
        MARKET_CHECKS_SQL,
        {
            "jump": SPIKE_JUMP,
            "agree": SPIKE_NEIGHBOURS_AGREE,
            "stale": STALE_BARS,
            "stale_prev": STALE_BARS - 1,
            "stale_frame": STALE_BARS - 2,
            "vol_factor": VOLUME_FACTOR,
            "eval": EVAL_MARGIN,
            "ctx": CONTEXT_MARGIN,
        },
    ),
    "stories": (NEWS_CHECKS_SQL, {"window": DUPLICATE_TITLE_WINDOW}),
}


def bars_sessions(cur, params: dict[str, Any]) -> dict[str, Any]:
    """The bars suite's first step: each span's bounds (``BARS_BOUNDS_SQL``), its symbol's exchange, and
    the trading periods of the sessions overlapping the spans' [eval_lo, eval_hi] on those exchanges.

    A gap is judged only between two bars of one trading period (a session's [open, close), or one
    half of it around a lunch break), so holidays, early closes, nights and weekends have none."""
    cur.execute(BARS_BOUNDS_SQL, params)
    bounds = cur.fetchall()
    exchanges = exchanges_of({row[1] for row in bounds})
    periods: set[tuple[str, datetime, datetime]] = set()
    for exchange, lo, hi in spans_merge(
        [(exchanges[symbol], eval_lo, eval_hi) for _, symbol, _, eval_lo, _, eval_hi in bounds], whole_days=False
    ):
        for session in sessions_between(exchange=exchange, start=lo, end=hi):
            periods.update((exchange, start, end) for start, end in session.periods())
    ordered = sorted(periods)
    return {
        "span_nos": [row[0] for row in bounds],
        "span_symbols": [row[1] for row in bounds],
        "span_exchanges": [exchanges[row[1]] for row in bounds],
        "ctx_los": [row[2] for row in bounds],
        "eval_los": [row[3] for row in bounds],
        "ctx_his": [row[4] for row in bounds],
        "eval_his": [row[5] for row in bounds],
        "period_exchanges": [p[0] for p in ordered],
        "period_opens": [p[1] for p in ordered],
        "period_closes": [p[2] for p in ordered],
    }


# a suite's first step, run on the checks' cursor before its SQL: returns more parameters for it
SUITE_PREPARE = {"bars": bars_sessions}


@dataclass
class CheckResult:
    spans: int = 0
    flags: int = 0
    lowered: int = 0
    by_check: dict[str, int] = field(default_factory=dict)
    failed: int = 0  # change-log entries the consumer could not check (ConsumerFailure)
    retried: int = 0  # open failures retried
    resolved: int = 0  # ...of which now resolved


def quality_checks_run(*, dataset: str, spans: Iterable[tuple[str, datetime, datetime]]) -> CheckResult:
    """Run the dataset's checks over ``spans`` (symbol, first, last): flag rows, lower applied scores."""
    spec = curated_spec(dataset)
    declared = spec.quality_checks
    if declared is None:
        raise CurationError(f"dataset={dataset!r} has no automatic quality checks")
    merged = spans_merge(spans, whole_days=declared.whole_days)
    result = CheckResult(spans=len(merged))
    if not merged:
        return result
    params: dict[str, Any] = {
        "symbols": [s for s, _, _ in merged],
        "los": [lo for _, lo, _ in merged],
        "his": [hi for _, _, hi in merged],
    }
    query, suite_params = SUITES[declared.suite]
    params.update(suite_params)
    checks = CHECKS[spec.name]
    prepare = SUITE_PREPARE.get(declared.suite)
    with transaction.atomic(), connection.cursor() as cur:
        if prepare is not None:
            params.update(prepare(cur, params))
        cur.execute(query, params)
        found = cur.fetchall()
        if not found:
            return result
        cur.execute(
            """
            INSERT INTO timeseries_quality_flag
                (dataset, row_id, symbol, time, check_name, reason, proposed_score, applied, created_at)
            SELECT %s, f.id, f.symbol, f.time, f.check_name, f.reason, f.score, f.applied, clock_timestamp()
            FROM unnest(%s::bigint[], %s::text[], %s::timestamptz[], %s::text[], %s::text[], %s::float8[], %s::bool[])
                 AS f(id, symbol, time, check_name, reason, score, applied)
            ON CONFLICT (dataset, row_id, check_name) DO UPDATE
            SET reason = EXCLUDED.reason, proposed_score = EXCLUDED.proposed_score, created_at = EXCLUDED.created_at,
                applied = timeseries_quality_flag.applied OR EXCLUDED.applied
            """,
            [
                spec.name,
                [r[0] for r in found],
                [r[1] for r in found],
                [r[2] for r in found],
                [r[3] for r in found],
                [r[4] for r in found],
                [checks[r[3]][0] for r in found],
                [checks[r[3]][1] for r in found],
            ],
        )
        result.flags = len(found)
        for _, _, _, name, _ in found:
            result.by_check[name] = result.by_check.get(name, 0) + 1
        for name, (score, applied) in checks.items():
            rows = [(r[0], score, f"{name}: {r[4]}") for r in found if r[3] == name]
            if applied and rows:
                result.lowered += quality_scores_lower(dataset=spec.name, findings=rows, source=f"check:{name}").changed
    return result


def quality_checks_range(
    *, dataset: str, symbols: Iterable[str] | None = None, start: datetime, end: datetime
) -> CheckResult:
    """On demand: run the checks over [start, end] for ``symbols`` (default: every series of the dataset)."""
    spec = curated_spec(dataset)
    series = Series.objects.filter(dataset=spec.name, first_time__lte=end, last_time__gte=start)
    if symbols is not None:
        series = series.filter(symbol__in=list(symbols))
    spans = [(s, max(lo, start), min(hi, end)) for s, lo, hi in series.values_list("symbol", "first_time", "last_time")]
    return quality_checks_run(dataset=spec.name, spans=spans)


def quality_checks_rows(*, dataset: str, rows: QuerySet) -> CheckResult:
    """On demand from the admin: the checks over the spans (per symbol, first to last time) of ``rows``."""
    spec = curated_spec(dataset)
    spans = rows.order_by().values(spec.symbol_column).annotate(lo=Min("time"), hi=Max("time"))
    return quality_checks_run(dataset=spec.name, spans=[(r[spec.symbol_column], r["lo"], r["hi"]) for r in spans])


def quality_changes_process(
    *, dataset: str, limit: int = 10_000, retry: bool = True, force_retry: bool = False
) -> CheckResult:
    """On ingest: check the spans the change log lists after the "quality" cursor, then move it.

    Runs in one transaction with the cursor locked: a crash keeps neither the flags nor the move.
    No span wedges it (``timeseries.changes.changes_run``): an entry whose checks raise is recorded
    as a ``ConsumerFailure`` and passed; open failures are retried first (``retry``; all at once with
    ``force_retry``), each over the rows its span holds now.
    """
    spec = curated_spec(dataset)
    result = CheckResult()

    def add(done: CheckResult) -> None:
        result.spans += done.spans
        result.flags += done.flags
        result.lowered += done.lowered
        for name, n in done.by_check.items():
            result.by_check[name] = result.by_check.get(name, 0) + n

    def process(changes) -> None:
        add(quality_checks_run(dataset=spec.name, spans=[(c.symbol, c.first_time, c.last_time) for c in changes]))

    def process_one(change) -> None:
        add(quality_checks_run(dataset=spec.name, spans=_span_now(spec, change)))

    if retry or force_retry:
        retried = failures_retry(
            consumer=QUALITY_CONSUMER, dataset=spec.name, process_one=process_one, force=force_retry
        )
        result.retried, result.resolved = retried.retried, retried.resolved
    run = changes_run(
        consumer=QUALITY_CONSUMER, dataset=spec.name, limit=limit, process=process, process_one=process_one
    )
    result.failed = len(run.failed)
    return result


def _span_now(spec: Dataset, change) -> list[Span]:
    """The part of one change-log entry's span that holds rows now (empty when none is left)."""
    with connection.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT min(time), max(time) FROM {} WHERE {} = %s AND time BETWEEN %s AND %s").format(
                sql.Identifier(spec.table), sql.Identifier(spec.symbol_column)
            ),
            [change.symbol, change.first_time, change.last_time],
        )
        lo, hi = cur.fetchone()
    return [] if lo is None else [(change.symbol, lo, hi)]

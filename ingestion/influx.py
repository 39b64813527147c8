"""InfluxDB 1.x backup of high-frequency market data, and the restore from it.

Backup (``influx_backup_run``, run by the Celery task ``ingestion.tasks.influx_backup``) consumes the
change log (``timeseries.changes``, consumer "influx"): for a slice of pending changes it reads the
versions those merges stored, streams them as line protocol (``POST /write?precision=u``) in batches
of ``TSM_INFLUX_BATCH_LINES`` points and, only once InfluxDB acknowledged every batch (HTTP 204),
moves the cursor — in the transaction that locked it. A failure leaves the cursor where it was; the
next run re-sends the slice, which InfluxDB absorbs (a point with the same measurement, tag set and
timestamp is overwritten by identical values).

One InfluxDB point per stored *version*:

* measurement ``market_data``, timestamp = the bar's ``time`` (microseconds);
* tags ``symbol`` and ``v`` — the version's ordinal among the versions of its (symbol, time), in
  ``(recorded_at, known_at)`` order. Versions only ever append (each merge's ``recorded_at`` is later
  than every stored one), so an ordinal never changes: corrections get their own point, re-sending a
  version overwrites its own point, and series cardinality stays at symbols x versions-per-bar;
* fields: prices and ``vwap`` as integer micro-units (``187.2`` -> ``187200000i``; ``numeric(18,6)``
  fits int64 exactly), ``volume``/``trades`` integers, ``market_cap`` the decimal as a string
  (``numeric(24,2)`` can exceed int64 in cents), ``source`` a string, ``quality_score`` a float (the
  shortest text that round-trips), ``known_at``/``recorded_at`` integer microseconds. NULL = field
  absent.

Which bars (``TSM_INFLUX_BACKUP``): ``all`` = every bar; ``subminute`` (default) = bars finer than one
minute. Rows do not store their bar interval, so a bar (symbol, time) counts as sub-minute when its
``time`` is not on a whole minute, or one of its versions was known less than 60 s after ``time``
(the loader refuses a bar known before it closed, so a 1-minute or longer bar never is). All
versions of such a bar are backed up, including corrections known much later; when a bar only
becomes sub-minute through a later version, its earlier versions are sent with that version.

Restore (``influx_restore``, ``manage.py restore_from_influx``) reads the points of an event-time
range back in time order, drops those the database already holds (same key, version ordinal,
known_at and values) and loads the rest through ``ingestion.loader.ingest_table`` in the order of
their original ``recorded_at`` (versions recorded together are loaded together), so a restore into
an emptied dataset reproduces every version with its ``known_at`` and every as-of-T answer, and a
second restore stores nothing. Restored versions get new ``recorded_at`` values (tsm always stamps
its own), in the original order; the original one stays in InfluxDB.
"""

from __future__ import annotations

import json
import logging
import operator
import queue
import threading
import uuid
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote, urlsplit, urlunsplit

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import requests
from django.conf import settings
from django.db import connection
from django.db.models import F
from django.utils import timezone as djtz

from ingestion.loader import ingest_table
from ingestion.models import InfluxBackupState
from timeseries.changes import Change, changes_lag, changes_run, failures_open, failures_retry, span_error

logger = logging.getLogger(__name__)

CONSUMER = "influx"
DATASET = "market_data"  # the only dataset backed up
MEASUREMENT = "market_data"
PRICE_SCALE = 1_000_000
PRICE_FIELDS = ("open", "high", "low", "close")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class InfluxError(Exception):
    """InfluxDB refused the request (bad credentials, bad data, missing database): not retried.

    ``status`` is the HTTP status when InfluxDB answered; 400 means it refused the points themselves
    (e.g. a timestamp outside its range), which the backup records against the span and passes."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class InfluxUnavailable(InfluxError):
    """InfluxDB could not be reached or answered 5xx/429: transient, retried with backoff."""


class InfluxOff(InfluxError):
    """The backup is not configured (TSM_INFLUX_URL unset or TSM_INFLUX_BACKUP=off)."""


@dataclass(frozen=True)
class InfluxConfig:
    url: str
    database: str
    user: str
    password: str
    mode: str  # off | subminute | all
    batch_lines: int
    timeout: float

    @property
    def enabled(self) -> bool:
        return bool(self.url) and self.mode != "off"

    @property
    def why_off(self) -> str:
        if not self.url:
            return "TSM_INFLUX_URL is not set"
        return "TSM_INFLUX_BACKUP=off" if self.mode == "off" else ""


def influx_config() -> InfluxConfig:
    """The settings; credentials written into the URL move to user/password (never shown or logged)."""
    url, user, password = settings.TSM_INFLUX_URL, settings.TSM_INFLUX_USER, settings.TSM_INFLUX_PASSWORD
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        user, password = user or unquote(parts.username or ""), password or unquote(parts.password or "")
        url = urlunsplit(parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")))
    return InfluxConfig(
        url=url,
        database=settings.TSM_INFLUX_DB,
        user=user,
        password=password,
        mode=settings.TSM_INFLUX_BACKUP,
        batch_lines=max(1, settings.TSM_INFLUX_BATCH_LINES),
        timeout=settings.TSM_INFLUX_TIMEOUT,
    )


# --- HTTP ---------------------------------------------------------------------------------------


class _Client:
    """Plain HTTP against the InfluxDB 1.x API (``/write`` line protocol, ``/query`` InfluxQL)."""

    def __init__(self, config: InfluxConfig):
        self.config = config
        self.session = requests.Session()
        if config.user:
            self.session.auth = (config.user, config.password)

    def close(self) -> None:
        self.session.close()

    def _post(self, path: str, **kwargs) -> requests.Response:
        try:
            response = self.session.post(f"{self.config.url}{path}", timeout=self.config.timeout, **kwargs)
        except requests.RequestException as exc:
            raise InfluxUnavailable(f"InfluxDB at {self.config.url} unreachable: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 500 or response.status_code == 429:
            raise InfluxUnavailable(f"InfluxDB {path} answered {response.status_code}: {response.text[:500]}")
        return response

    def query(self, q: str, *, db: str | None = None) -> dict:
        response = self._post("/query", params={"q": q, **({"db": db} if db else {})})
        if response.status_code != 200:
            raise InfluxError(f"InfluxDB /query answered {response.status_code}: {response.text[:500]}")
        result = response.json()["results"][0]
        if "error" in result:
            raise InfluxError(f"InfluxDB: {result['error']}")
        return result

    def write(self, body: bytes) -> None:
        params = {"db": self.config.database, "precision": "u"}
        response = self._post("/write", params=params, data=body)
        if response.status_code == 404 and "database not found" in response.text:
            self.query(f"CREATE DATABASE {_ident(self.config.database)}")
            response = self._post("/write", params=params, data=body)
        if response.status_code != 204:
            raise InfluxError(
                f"InfluxDB /write answered {response.status_code}: {response.text[:500]}", status=response.status_code
            )

    def select_chunks(self, q: str, chunk_size: int) -> Iterator[dict]:
        """The series of a chunked ``SELECT``, one chunk at a time."""
        params = {"db": self.config.database, "q": q, "epoch": "u", "chunked": "true", "chunk_size": str(chunk_size)}
        try:
            response = self.session.post(
                f"{self.config.url}/query", params=params, timeout=self.config.timeout, stream=True
            )
        except requests.RequestException as exc:
            raise InfluxUnavailable(f"InfluxDB at {self.config.url} unreachable: {type(exc).__name__}: {exc}") from exc
        with response:
            if response.status_code >= 500:
                raise InfluxUnavailable(f"InfluxDB /query answered {response.status_code}: {response.text[:500]}")
            if response.status_code != 200:
                raise InfluxError(f"InfluxDB /query answered {response.status_code}: {response.text[:500]}")
            for line in response.iter_lines(chunk_size=1 << 20):  # one JSON document per line, ~MBs each
                if not line:
                    continue
                doc = json.loads(line)
                if "error" in doc:
                    raise InfluxError(f"InfluxDB: {doc['error']}")
                for result in doc.get("results", []):
                    if "error" in result:
                        if result["error"].startswith("database not found"):
                            raise InfluxError(
                                f"InfluxDB database {self.config.database!r} does not exist:"
                                " nothing was backed up there"
                            )
                        raise InfluxError(f"InfluxDB: {result['error']}")
                    yield from result.get("series", [])


def _ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- backup -------------------------------------------------------------------------------------

_MICROS = "(extract(epoch FROM {0}) * 1000000)::bigint"
_SUBMINUTE = "(m.known_at - m.time < interval '60 seconds' OR date_trunc('minute', m.time) <> m.time)"

# One line-protocol line per version stored by the pending changes (see the module docstring).
_LINES_SQL = r"""
SELECT concat(
    'market_data,symbol=', replace(replace(replace(x.symbol, ',', '\,'), '=', '\='), ' ', '\ '), ',v=', x.v,
    ' open=', (x.open * 1000000)::bigint, 'i,high=', (x.high * 1000000)::bigint,
    'i,low=', (x.low * 1000000)::bigint, 'i,close=', (x.close * 1000000)::bigint, 'i,volume=', x.volume, 'i',
    ',vwap=' || (x.vwap * 1000000)::bigint || 'i',
    ',trades=' || x.trades || 'i',
    ',market_cap="' || x.market_cap || '"',
    ',source="', replace(replace(x.source, '\', '\\'), '"', '\"'), '"',
    ',quality_score=' || x.quality_score,
    ',known_at=', {known_us}, 'i,recorded_at=', {recorded_us}, 'i ', {time_us})
FROM unnest(%(symbols)s::text[], %(firsts)s::timestamptz[], %(lasts)s::timestamptz[], %(recs)s::timestamptz[])
     AS c(symbol, first_time, last_time, recorded_at)
CROSS JOIN LATERAL (
    SELECT y.* FROM (
        SELECT m.*, row_number() OVER w - 1 AS v,
               bool_or({cond}) FILTER (WHERE m.recorded_at < c.recorded_at) OVER w AS q_before,
               bool_or({cond}) FILTER (WHERE m.recorded_at <= c.recorded_at) OVER w AS q_upto
        FROM market_data m
        WHERE m.symbol = c.symbol AND m.time BETWEEN c.first_time AND c.last_time
        WINDOW w AS (PARTITION BY m.time ORDER BY m.recorded_at, m.known_at
                     ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
    ) y
    WHERE y.q_upto AND y.recorded_at <= c.recorded_at
      AND (y.recorded_at = c.recorded_at OR NOT coalesce(y.q_before, false))
) x
"""


_LINE_SELECT = _LINES_SQL[: _LINES_SQL.index("FROM unnest(")]

# Every version of the bars (symbol, time) given, for re-sending them after a removal renumbered them
_BAR_LINES_SQL = (
    _LINE_SELECT
    + r"""FROM (
    SELECT m.*, row_number() OVER w - 1 AS v, bool_or({cond}) OVER w AS q
    FROM market_data m JOIN unnest(%(symbols)s::text[], %(times)s::timestamptz[]) AS b(symbol, time)
         ON m.symbol = b.symbol AND m.time = b.time
    WINDOW w AS (PARTITION BY m.symbol, m.time ORDER BY m.recorded_at, m.known_at
                 ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
) x WHERE x.q
"""
)

INFLUX_RANGE = (datetime(1677, 9, 22, tzinfo=UTC), datetime(2262, 4, 11, tzinfo=UTC))


def _lines_sql(mode: str) -> str:
    return _LINES_SQL.format(
        known_us=_MICROS.format("x.known_at"),
        recorded_us=_MICROS.format("x.recorded_at"),
        time_us=_MICROS.format("x.time"),
        cond="true" if mode == "all" else _SUBMINUTE,
    )


@dataclass
class BackupResult:
    enabled: bool
    changes: int = 0
    points: int = 0
    posts: int = 0
    failed: int = 0  # change-log entries InfluxDB refused (ConsumerFailure), passed
    retried: int = 0
    resolved: int = 0

    def as_dict(self) -> dict:
        return {
            "enabled": self.enabled,
            "changes": self.changes,
            "points": self.points,
            "posts": self.posts,
            "failed": self.failed,
            "retried": self.retried,
            "resolved": self.resolved,
        }


# 400 answers about the target rather than the points: every span would fail alike
TARGET_REFUSALS = (
    "field type conflict",
    "database not found",
    "retention policy not found",
    "max-values-per-tag",
    "max-series-per-database",
)


def backup_span_error(exc: BaseException) -> bool:
    """A span's own fault: InfluxDB refused its points (400: e.g. a timestamp outside its range), or
    rendering them raised. Not one: InfluxDB unreachable or 5xx (retried with backoff), bad credentials,
    a missing database or a field stored with another type (``TARGET_REFUSALS``: every span would fail
    alike, so the run stops and records the error), a database outage."""
    if isinstance(exc, InfluxUnavailable):
        return False
    if isinstance(exc, InfluxError):
        return exc.status == 400 and not any(marker in str(exc) for marker in TARGET_REFUSALS)
    return span_error(exc)


def influx_backup_run(
    *, changes_per_transaction: int = 2000, retry: bool = True, force_retry: bool = False
) -> BackupResult:
    """Send every pending change of market_data to InfluxDB; a no-op when the backup is off.

    Each slice of changes is one transaction: lock the cursor, stream the versions, POST them in
    batches, advance the cursor only when every batch was acknowledged. On an error the error is
    recorded in ``InfluxBackupState`` and re-raised (``InfluxUnavailable`` is worth a retry); slices
    already acknowledged stay consumed. A change whose points InfluxDB refuses (400) is sent alone,
    recorded as a ``ConsumerFailure`` and passed (``timeseries.changes.changes_run``), so one bad
    version never holds back the backup; open failures are retried first (``retry``; all at once with
    ``force_retry``) and resolve once the version was removed (``manage.py remove_versions``). A
    removal's own entry retracts the removed versions' points (``_retract_removed``).
    """
    config = influx_config()
    if not config.enabled:
        return BackupResult(enabled=False)
    result = BackupResult(enabled=True)
    client = _Client(config)

    def process(changes: list[Change]) -> None:
        points, posts = _send_changes(client, changes, config)
        points_again, posts_again = _retract_removed(client, changes, config)
        result.points += points + points_again
        result.posts += posts + posts_again

    try:
        if retry or force_retry:
            retried = failures_retry(
                consumer=CONSUMER,
                dataset=DATASET,
                process_one=lambda change: process([change]),
                is_span_error=backup_span_error,
                force=force_retry,
            )
            result.retried, result.resolved = retried.retried, retried.resolved
        while True:
            before = result.points
            run = changes_run(
                consumer=CONSUMER,
                dataset=DATASET,
                limit=changes_per_transaction,
                process=process,
                is_span_error=backup_span_error,
            )
            if not run.consumed:
                break
            _state(DATASET).update(
                points_sent=F("points_sent") + (result.points - before),
                changes_done=F("changes_done") + run.consumed,
                last_run_at=djtz.now(),
            )
            result.changes += run.consumed
            result.failed += len(run.failed)
    except InfluxError as exc:
        _state(DATASET).update(last_error=str(exc)[:5000], last_error_at=djtz.now(), last_run_at=djtz.now())
        logger.warning("InfluxDB backup failed: %s", exc)
        raise
    finally:
        client.close()
    _state(DATASET).update(last_success_at=djtz.now(), last_run_at=djtz.now(), last_error="")
    return result


def _retract_removed(client: _Client, changes: list[Change], config: InfluxConfig) -> tuple[int, int]:
    """Follow ``manage.py remove_versions``: for each bar a removal in ``changes`` touched, delete the
    bar's points and send its remaining versions again (their ordinals ``v`` were renumbered), so a
    restore never brings a removed version back. Bars outside InfluxDB's time range were never there."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT DISTINCT r.symbol, (r.row->>'time')::timestamptz FROM timeseries_version_removal r"
            " WHERE r.dataset = %s AND r.change_id = ANY(%s)"
            " AND (r.row->>'time')::timestamptz BETWEEN %s AND %s ORDER BY 1, 2",
            [DATASET, [c.id for c in changes], *INFLUX_RANGE],
        )
        bars = cur.fetchall()
    if not bars:
        return 0, 0
    for symbol, t in bars:
        instant = _rfc3339(t)
        client.query(
            f"DELETE FROM {_ident(MEASUREMENT)} WHERE \"symbol\" = '{_quoted(symbol)}' AND time >= '{instant}'"
            f" AND time <= '{instant}'",
            db=config.database,
        )
    with connection.cursor() as cur:
        cur.execute(
            _BAR_LINES_SQL.format(
                known_us=_MICROS.format("x.known_at"),
                recorded_us=_MICROS.format("x.recorded_at"),
                time_us=_MICROS.format("x.time"),
                cond="true" if config.mode == "all" else _SUBMINUTE,
            ),
            {"symbols": [b[0] for b in bars], "times": [b[1] for b in bars]},
        )
        lines = [r[0] for r in cur.fetchall()]
    if lines:
        client.write("\n".join(lines).encode())
    return len(lines), int(bool(lines))


def _quoted(value: str) -> str:
    """An InfluxQL string literal's content."""
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _state(dataset: str):
    InfluxBackupState.objects.get_or_create(dataset=dataset)
    return InfluxBackupState.objects.filter(dataset=dataset)


def _send_changes(client: _Client, changes, config: InfluxConfig) -> tuple[int, int]:
    """Stream the lines of ``changes`` from a server-side cursor and POST them in batches."""
    params = {
        "symbols": [c.symbol for c in changes],
        "firsts": [c.first_time for c in changes],
        "lasts": [c.last_time for c in changes],
        "recs": [c.recorded_at for c in changes],
    }
    connection.ensure_connection()
    points = posts = 0
    in_flight = None  # one POST runs in a thread while PostgreSQL renders the next batch
    with ThreadPoolExecutor(1, thread_name_prefix="influx-write") as pool:
        with connection.connection.cursor(name=f"influx_{uuid.uuid4().hex}") as cur:
            cur.execute(_lines_sql(config.mode), params)
            while rows := cur.fetchmany(config.batch_lines):
                body = "\n".join(r[0] for r in rows).encode()
                if in_flight is not None:
                    in_flight.result()  # raises what the previous POST raised
                in_flight = pool.submit(client.write, body)
                points += len(rows)
                posts += 1
        if in_flight is not None:
            in_flight.result()
    return points, posts


def backup_status() -> dict:
    """What the admin and the storage report show: on/off, backlog, last success and last error."""
    config = influx_config()
    state = InfluxBackupState.objects.filter(dataset=DATASET).first()
    lag = changes_lag(consumer=CONSUMER, dataset=DATASET)
    return {
        "enabled": config.enabled,
        "why_off": config.why_off,
        "mode": config.mode if config.enabled else "off",
        "url": config.url,
        "database": config.database,
        "dataset": DATASET,
        "pending_changes": lag["pending"],
        "oldest_pending_recorded_at": lag["oldest_pending_recorded_at"],
        "lag_seconds": (
            (djtz.now() - lag["oldest_pending_recorded_at"]).total_seconds()
            if lag["oldest_pending_recorded_at"]
            else 0.0
        ),
        "last_run_at": state.last_run_at if state else None,
        "last_success_at": state.last_success_at if state else None,
        "last_error": state.last_error if state else "",
        "last_error_at": state.last_error_at if state else None,
        "points_sent": state.points_sent if state else 0,
        "open_failures": failures_open(consumer=CONSUMER, dataset=DATASET).count(),
    }


def backup_status_text(status: dict | None = None) -> str:
    """One line for humans (admin message, storage report)."""
    s = status or backup_status()
    if not s["enabled"]:
        return f"InfluxDB backup is off ({s['why_off']})."
    text = (
        f"InfluxDB backup ({s['mode']}) to {s['url']} database {s['database']!r}: "
        f"{s['pending_changes']} change(s) pending, last success {_when(s['last_success_at'])}, "
        f"{s['points_sent']} point(s) sent"
    )
    if s["last_error"]:
        text += f"; last error {_when(s['last_error_at'])}: {s['last_error']}"
    if s.get("open_failures"):
        text += (
            f"; {s['open_failures']} change(s) InfluxDB refused, passed and retried"
            " (manage.py consumers, Admin › Consumer failures)"
        )
    return text + "."


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "never"


# --- restore ------------------------------------------------------------------------------------

_FIELDS = (
    "v",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "vwap",
    "trades",
    "market_cap",
    "source",
    "quality_score",
    "known_at",
    "recorded_at",
)


@dataclass
class RestoreResult:
    points: int = 0  # read from InfluxDB
    already_present: int = 0  # skipped: the database holds that version already
    loads: int = 0
    inserted: int = 0
    revised: int = 0
    duplicates: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class _Window:
    rows: list[tuple] = field(default_factory=list)  # (symbol, time_us, *_FIELDS)


def influx_restore(*, dataset: str, start: datetime, end: datetime, window_points: int = 200_000) -> RestoreResult:
    """Load the backed-up versions with ``start <= time < end`` back through the loader (idempotent)."""
    if dataset != DATASET:
        raise ValueError(f"dataset={dataset!r}: only {DATASET!r} is backed up to InfluxDB")
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware")
    if end <= start:
        raise ValueError(f"end ({end.isoformat()}) must be after start ({start.isoformat()})")
    config = influx_config()
    if not config.url:
        raise InfluxOff("the InfluxDB backup is off: set TSM_INFLUX_URL to restore from it")
    client = _Client(config)
    result = RestoreResult()
    window = _Window()
    # GROUP BY symbol: InfluxDB streams one series after the other, each in time order (many times
    # faster than merging every series by time); every version of a bar is in its symbol's series
    q = (
        f"SELECT * FROM {_ident(MEASUREMENT)} WHERE time >= '{_rfc3339(start)}' AND time < '{_rfc3339(end)}' "
        "GROUP BY symbol"
    )
    try:
        last_key = None
        done_symbols: set[str] = set()
        for series in _prefetch(client.select_chunks(q, chunk_size=10_000)):
            symbol = series.get("tags", {}).get("symbol", "")
            index = {name: i for i, name in enumerate(series["columns"])}
            pick = [index.get(name) for name in ("time", *_FIELDS)]
            if None in pick:  # a field no point of the range has (e.g. market_cap): read as NULL
                pick = [len(series["columns"]) if i is None else i for i in pick]
                series["values"] = [[*v, None] for v in series["values"]]
            get = operator.itemgetter(*pick)
            if last_key is None or symbol != last_key[0]:
                if symbol in done_symbols:
                    raise InfluxError(f"InfluxDB returned the series of {symbol!r} twice")
                if last_key is not None:
                    done_symbols.add(last_key[0])
            for values in series["values"]:
                row = (symbol, *get(values))
                key = (symbol, row[1])
                if last_key is not None and key[0] == last_key[0] and key[1] < last_key[1]:
                    raise InfluxError("InfluxDB returned points out of time order")
                if key != last_key and len(window.rows) >= window_points:
                    _restore_window(window.rows, result)
                    window = _Window()
                last_key = key
                window.rows.append(row)
        if window.rows:
            _restore_window(window.rows, result)
    finally:
        client.close()
    return result


def _prefetch(items: Iterator, depth: int = 4) -> Iterator:
    """``items`` produced by a thread (reading and decoding InfluxDB's answer) while the caller loads."""
    box: queue.Queue = queue.Queue(depth)
    stop = threading.Event()
    end = object()

    def offer(item) -> bool:
        while not stop.is_set():
            try:
                box.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False  # the consumer has gone

    def produce() -> None:
        try:
            for item in items:
                if not offer(item):
                    return
            offer(end)
        except BaseException as exc:  # handed to the consumer, raised there
            offer(exc)

    thread = threading.Thread(target=produce, name="influx-read", daemon=True)
    thread.start()
    try:
        while (item := box.get()) is not end:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _us(value: datetime) -> int:
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _canonical(row: tuple) -> tuple:
    """(symbol, time, v, known_at, values...) with v as int: what "the same version" means."""
    symbol, t, v, o, h, lo, c, vol, vwap, trades, cap, source, q, known, _recorded = row
    return (symbol, t, int(v), known, o, h, lo, c, vol, vwap, trades, cap, source or "", q)


_EXISTING_SQL = """
SELECT m.symbol, {time_us}, row_number() OVER (PARTITION BY m.symbol, time ORDER BY recorded_at, known_at) - 1,
       {known_us}, (open * 1000000)::bigint, (high * 1000000)::bigint, (low * 1000000)::bigint,
       (close * 1000000)::bigint, volume, (vwap * 1000000)::bigint, trades, market_cap::text, source, quality_score
FROM market_data m JOIN unnest(%s::text[], %s::timestamptz[], %s::timestamptz[]) AS b(symbol, lo, hi)
     ON m.symbol = b.symbol AND m.time BETWEEN b.lo AND b.hi
""".format(time_us=_MICROS.format("time"), known_us=_MICROS.format("known_at"))


def _restore_window(rows: list[tuple], result: RestoreResult) -> None:
    """Load one event-time window (every version of a key is in the same window)."""
    result.points += len(rows)
    bounds: dict[str, list[int]] = {}
    for r in rows:
        b = bounds.setdefault(r[0], [r[1], r[1]])
        b[0], b[1] = min(b[0], r[1]), max(b[1], r[1])
    symbols = list(bounds)
    with connection.cursor() as cur:
        cur.execute(
            _EXISTING_SQL,
            [
                symbols,
                [EPOCH + timedelta(microseconds=bounds[s][0]) for s in symbols],
                [EPOCH + timedelta(microseconds=bounds[s][1]) for s in symbols],
            ],
        )
        existing = {tuple(r) for r in cur.fetchall()}
    todo = [r for r in rows if _canonical(r) not in existing] if existing else rows
    result.already_present += len(rows) - len(todo)
    # versions recorded together are loaded together, in original recorded_at order; groups without a
    # common bar share a load (their versions cannot interact)
    groups: dict[int, list[tuple]] = defaultdict(list)
    for r in todo:
        groups[r[-1]].append(r)
    batch: list[tuple] = []
    keys: set[tuple] = set()
    for recorded in sorted(groups):
        group = groups[recorded]
        group_keys = {(r[0], r[1]) for r in group}
        if keys & group_keys:
            _load(batch, result)
            batch, keys = [], set()
        batch.extend(group)
        keys |= group_keys
    if batch:
        _load(batch, result)


def _load(rows: list[tuple], result: RestoreResult) -> None:
    table = _rows_table(rows)
    lags = [r[13] - r[1] for r in rows]
    # every row has its known_at: the bar interval only bounds how early known_at may be
    interval = timedelta(microseconds=max(1, min(lags)))
    load = ingest_table(dataset=DATASET, data=table, bar_interval=interval, source="InfluxDB restore")
    result.loads += 1
    result.inserted += load.inserted
    result.revised += load.revised
    result.duplicates += load.duplicates


def _scaled_decimal(values: list[int | None], precision: int, scale: int) -> pa.Array:
    """Integers in units of 10**-scale -> decimal128 exactly (no float, no per-value Decimal)."""
    ints = pa.array(values, pa.int64())
    raw = np.asarray(ints.fill_null(0), dtype=np.int64)
    words = np.empty((len(raw), 2), dtype=np.int64)
    words[:, 0] = raw
    words[:, 1] = raw >> 63  # sign extension to 128 bits (little endian)
    return pa.Array.from_buffers(
        pa.decimal128(precision, scale), len(raw), [ints.buffers()[0], pa.py_buffer(words)], null_count=ints.null_count
    )


def _rows_table(rows: list[tuple]) -> pa.Table:
    cols = list(zip(*rows))
    name = {n: i for i, n in enumerate(("symbol", "time", *_FIELDS))}

    def col(n):
        return list(cols[name[n]])

    def instant(n):
        return pa.array(col(n), pa.int64()).cast(pa.timestamp("us", tz="UTC"))

    data = {
        "time": instant("time"),
        "symbol": pa.array(col("symbol"), pa.string()),
        **{n: _scaled_decimal(col(n), 18, 6) for n in PRICE_FIELDS},
        "volume": pa.array(col("volume"), pa.int64()),
        "vwap": _scaled_decimal(col("vwap"), 18, 6),
        "trades": pa.array(col("trades"), pa.int32()),
        "market_cap": pc.cast(pa.array(col("market_cap"), pa.string()), pa.decimal128(24, 2)),
        "source": pa.array([s or "" for s in col("source")], pa.string()),
        "quality_score": pa.array(col("quality_score"), pa.float64()),
        "known_at": instant("known_at"),
    }
    return pa.table(data)

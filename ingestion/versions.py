"""A key's version history with its sources, and the admin's "make this version current again".

``version_history(dataset, key)`` lists every version of one key: the versions stored in the dataset
table (every known_at, every recorded_at) and the outranked versions kept beside it
(``timeseries.models.OutrankedVersion``), each with its feed and load (the Load of the same dataset
and recorded_at) and its status:

* ``current``: the version with the greatest recorded_at among the stored versions of its known_at —
  the as-of answer from its known_at until the key's next known_at (``current_now``: the one at the
  greatest known_at, the answer from then on);
* ``superseded``: a later-recorded version of the same known_at replaced it;
* ``outranked``: never current — a higher-ranked feed's version (TSM_FEED_PRECEDENCE) stayed current.

``version_reassert(dataset, version, user)`` loads a superseded or outranked version's values again
(same key and known_at) through the loader with ``feed="curation"``, ``reassert=True`` and
``overrule=True``: the new version is current for that known_at. Its Load (source, requested_by,
reassert) is the audit; a django.contrib.admin LogEntry on the new row puts it in the admin's history.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.admin.models import CHANGE, LogEntry
from django.db import connection
from psycopg import sql

from ingestion.loader import LoadResult, ingest_table
from ingestion.models import Load
from timeseries import params
from timeseries.datasets import Dataset, get_dataset
from timeseries.formats import plain
from timeseries.models import OutrankedVersion
from timeseries.rules import format_instant
from timeseries.sqltext import identifiers

CURRENT = "current"
SUPERSEDED = "superseded"
OUTRANKED = "outranked"
REASSERT_FEED = "curation"  # the feed of an admin's re-assertion


class VersionError(params.ParameterError):
    """A version history or a re-assertion was asked for with a bad key or version; the message says what."""


@dataclass
class VersionInfo:
    """One version of a key: stored in the dataset table (``row_id``) or kept as outranked (``outranked_id``)."""

    key: dict[str, object]
    known_at: datetime
    recorded_at: datetime
    values: dict[str, object]  # the dataset's value columns (what decides whether two versions differ)
    row: dict[str, object]  # every column of the dataset + known_at, as a loader input row
    feed: str
    load: Load | None  # the load that recorded it (None: no load of the dataset has its recorded_at)
    status: str = ""
    why: str = ""
    current_now: bool = False  # the as-of answer of the key from its known_at on (no later known_at)
    row_id: int | None = None
    outranked_id: int | None = None
    outranked_by: datetime | None = None  # outranked: recorded_at of the version that stayed current
    load_id: object = None  # outranked: the load that sent it (stored versions: found by recorded_at)
    outranks: list[VersionInfo] = field(default_factory=list, repr=False)

    @property
    def stored(self) -> bool:
        return self.row_id is not None

    @property
    def may_reassert(self) -> bool:
        return self.status in (SUPERSEDED, OUTRANKED)

    def describe(self) -> str:
        """``known at 2024-03-01T14:31:00Z, recorded at …`` (the version's identity, with its feed)."""
        return (
            f"known at {format_instant(self.known_at)}, recorded at {format_instant(self.recorded_at)}"
            f" ({feed_text(self.feed)})"
        )


# --- keys ---------------------------------------------------------------------------------------------


def version_key_parse(dataset: str, values: Mapping[str, str]) -> dict[str, object]:
    """A key from text parameters (a query string): every key column of the dataset, each by its rule
    (symbols by the symbol rule, instants as ISO 8601 with an offset). Errors name the parameter."""
    spec = get_dataset(dataset)
    key: dict[str, object] = {}
    for name in spec.key:
        column = spec.column(name)
        raw = values.get(name)
        raw = raw.strip() if isinstance(raw, str) else ""
        if column.kind == "timestamp":
            if not raw:
                raise VersionError(f"{name} is required: the key of {dataset} is {', '.join(spec.key)}")
            key[name] = params.instant(name, raw)
            continue
        if raw == "" and column.default == "":
            key[name] = ""  # e.g. a market-wide government event (no primary symbol)
            continue
        if not raw:
            raise VersionError(f"{name} is required: the key of {dataset} is {', '.join(spec.key)}")
        key[name] = (
            params.symbol(name, raw) if column.symbol else params.text(name, raw, max_length=column.max_length or 200)
        )
    return key


def version_key_params(dataset: str, key: Mapping[str, object]) -> dict[str, str]:
    """The query parameters of a key (the inverse of ``version_key_parse``)."""
    spec = get_dataset(dataset)
    return {name: format_instant(key[name]) if isinstance(key[name], datetime) else str(key[name]) for name in spec.key}


def key_text(spec: Dataset, key: Mapping[str, object]) -> str:
    return ", ".join(
        f"{name} {format_instant(key[name]) if isinstance(key[name], datetime) else key[name]}" for name in spec.key
    )


def _check_key(spec: Dataset, key: Mapping[str, object]) -> None:
    missing = [name for name in spec.key if name not in key]
    extra = sorted(set(key) - set(spec.key))
    if missing or extra:
        raise VersionError(
            f"the key of {spec.name} is {', '.join(spec.key)}"
            + (f"; missing: {', '.join(missing)}" if missing else "")
            + (f"; not a key column: {', '.join(extra)}" if extra else "")
        )


# --- feeds and ranks ----------------------------------------------------------------------------------


def feed_text(feed: str) -> str:
    return f"feed {feed}" if feed else "unnamed feed"


def feed_rank(dataset: str, feed: str) -> int | None:
    """1-based rank of ``feed`` in TSM_FEED_PRECEDENCE[dataset] (1 = highest); None: not listed."""
    ranks = settings.TSM_FEED_PRECEDENCE.get(dataset, ())
    return ranks.index(feed) + 1 if feed in ranks else None


def _rank_text(dataset: str, feed: str) -> str:
    rank = feed_rank(dataset, feed)
    if rank is None:
        return f"{feed_text(feed)}: not listed, below every listed feed"
    return f"{feed_text(feed)}: rank {rank}"


def _ranks_below(dataset: str, lower: str, higher: str) -> bool:
    """Whether TSM_FEED_PRECEDENCE ranks feed ``lower`` strictly below feed ``higher`` (now)."""
    a, b = feed_rank(dataset, lower), feed_rank(dataset, higher)
    return b is not None and (a is None or a > b)


# --- the history --------------------------------------------------------------------------------------


def version_history(dataset: str, key: Mapping[str, object]) -> list[VersionInfo]:
    """Every version of ``key`` (stored and outranked), newest known_at first and, within one known_at,
    newest recorded_at first, each with its feed, load, status and why."""
    spec = get_dataset(dataset)
    _check_key(spec, key)
    versions = _stored_versions(spec, key) + _outranked_versions(spec, key)
    _attach_loads(spec, versions)
    _judge(spec, versions)
    versions.sort(key=lambda v: (v.known_at, v.recorded_at), reverse=True)
    return versions


def _stored_versions(spec: Dataset, key: Mapping[str, object]) -> list[VersionInfo]:
    columns = ("id", "known_at", "recorded_at", *spec.column_names)
    query = sql.SQL("SELECT {columns} FROM {table} WHERE {match} ORDER BY known_at, recorded_at").format(
        columns=identifiers(columns),
        table=sql.Identifier(spec.table),
        match=sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(name)) for name in spec.key),
    )
    with connection.cursor() as cur:
        cur.execute(query, [key[name] for name in spec.key])
        fetched = cur.fetchall()
    out = []
    for values in fetched:
        record = dict(zip(columns, values))
        out.append(
            VersionInfo(
                key=dict(key),
                known_at=record["known_at"],
                recorded_at=record["recorded_at"],
                values={name: record[name] for name in spec.value_columns},
                row=_input_row(spec, record, record["known_at"]),
                feed="",
                load=None,
                row_id=record["id"],
            )
        )
    return out


def _outranked_versions(spec: Dataset, key: Mapping[str, object]) -> list[VersionInfo]:
    # the model's columns hold the symbol and time of the key; the other key columns are in ``row``
    # (a dataset whose key has no time: its versions' times differ, the key alone finds them)
    lookup = {"dataset": spec.name, "symbol": key.get(spec.symbol_column, "")}
    if spec.time_keyed:
        lookup["time"] = key["time"]
    lookup |= {f"row__{name}": key[name] for name in spec.key if name not in ("time", spec.symbol_column)}
    out = []
    for kept in OutrankedVersion.objects.filter(**lookup).order_by("known_at", "recorded_at"):
        record = {name: kept.row.get(name) for name in spec.column_names} | {n: key[n] for n in spec.key}
        out.append(
            VersionInfo(
                key=dict(key),
                known_at=kept.known_at,
                recorded_at=kept.recorded_at,
                values={name: record[name] for name in spec.value_columns},
                row=_input_row(spec, record, kept.known_at),
                feed=kept.feed,
                load=None,
                outranked_id=kept.id,
                outranked_by=kept.outranked_by,
                load_id=kept.load_id,
            )
        )
    return out


def _input_row(spec: Dataset, record: Mapping[str, object], known_at: datetime) -> dict[str, object]:
    """A loader input row (JSON-ready text for decimals and instants, as the write API takes them)."""
    return {name: plain(record[name]) for name in spec.column_names} | {"known_at": plain(known_at)}


def _attach_loads(spec: Dataset, versions: list[VersionInfo]) -> None:
    """Each version's load: an outranked version's own; a stored version's, the load of the dataset with
    its recorded_at (a finished one first: a load that stored nothing has no version)."""
    instants = {v.recorded_at for v in versions if v.stored}
    sent_by = Load.objects.in_bulk({v.load_id for v in versions if not v.stored})
    by_instant: dict[datetime, Load] = {}
    if instants:
        found = Load.objects.filter(dataset=spec.name, recorded_at__in=instants).order_by("started_at")
        for load in found:
            known = by_instant.get(load.recorded_at)
            if known is None or (known.status != Load.Status.DONE and load.status == Load.Status.DONE):
                by_instant[load.recorded_at] = load
    for version in versions:
        if version.stored:
            version.load = by_instant.get(version.recorded_at)
            version.feed = version.load.feed if version.load is not None else ""
        else:
            version.load = sent_by.get(version.load_id)


def _judge(spec: Dataset, versions: list[VersionInfo]) -> None:
    """Status and why of every version (see the module's docstring)."""
    stored: dict[datetime, list[VersionInfo]] = defaultdict(list)
    for version in versions:
        if version.stored:
            stored[version.known_at].append(version)
    known = sorted(stored)
    for position, known_at in enumerate(known):
        chain = sorted(stored[known_at], key=lambda v: v.recorded_at)
        current = chain[-1]
        current.status = CURRENT
        current.current_now = position == len(known) - 1
        if current.current_now:
            current.why = f"current: the newest version of the latest known_at, the as-of answer from {_t(known_at)} on"
        else:
            current.why = (
                f"current for known_at {_t(known_at)}: the as-of answer from then until {_t(known[position + 1])}"
                " (a later known_at)"
            )
        if current.load is not None and current.load.reassert:
            who = current.load.requested_by or "unknown"
            current.why += f"; made current again by {who} (re-assertion)"
        for older, newer in zip(chain, chain[1:]):
            older.status = SUPERSEDED
            older.why = f"superseded by the version recorded at {_t(newer.recorded_at)} ({feed_text(newer.feed)})"
            if newer is not current:
                older.why += f"; current for this known_at: recorded at {_t(current.recorded_at)}"
    for version in versions:
        if version.stored:
            continue
        version.status = OUTRANKED
        winner = next((v for v in stored.get(version.known_at, ()) if v.recorded_at == version.outranked_by), None)
        if winner is None:
            version.why = (
                f"outranked, never current: the version recorded at {_t(version.outranked_by)} stayed current"
                " (it is no longer stored)"
            )
            continue
        winner.outranks.append(version)
        version.why = (
            f"outranked, never current: the version recorded at {_t(winner.recorded_at)} ({feed_text(winner.feed)})"
            f" stayed current; TSM_FEED_PRECEDENCE[{spec.name}] ranks {_rank_text(spec.name, version.feed)}"
            f" and {_rank_text(spec.name, winner.feed)}"
        )
        if not _ranks_below(spec.name, version.feed, winner.feed):
            version.why += " (the setting changed since: it no longer ranks this feed below)"
    for version in versions:
        if version.status == CURRENT and version.outranks:
            version.why += f"; kept over {len(version.outranks)} outranked version(s) of lower-ranked feeds"


def _t(instant: datetime | None) -> str:
    return format_instant(instant) if instant is not None else "?"


def version_find(versions: list[VersionInfo], *, known_at: datetime, recorded_at: datetime) -> VersionInfo | None:
    """The version of a history with this (known_at, recorded_at): a version's identity within its key."""
    return next((v for v in versions if v.known_at == known_at and v.recorded_at == recorded_at), None)


# --- making a version current again -------------------------------------------------------------------


def version_reassert(dataset: str, version: VersionInfo, user) -> LoadResult:
    """Store ``version``'s values again as a new version of its key and known_at, current for that
    known_at (feed "curation", re-assertion, feed precedence overruled). The Load is the audit; a
    LogEntry (CHANGE) on the new row names the version. A version already current: VersionError,
    nothing stored."""
    spec = get_dataset(dataset)
    if not version.may_reassert:
        raise VersionError(
            f"the version {version.describe()} is already current for its known_at: nothing stored"
            if version.status == CURRENT
            else f"the version {version.describe()} has no status a re-assertion applies to ({version.status!r})"
        )
    bar_interval = (version.load.bar_interval if version.load is not None else None) or timedelta(minutes=1)
    result = ingest_table(
        dataset=spec.name,
        data=[dict(version.row)],
        bar_interval=bar_interval,
        feed=REASSERT_FEED,
        reassert=True,
        overrule=True,
        requested_by=user.username,
        source=f"admin: make current again (version recorded at {format_instant(version.recorded_at)})",
    )
    new_id = _stored_row_id(spec, version.key, version.known_at, result.recorded_at)
    if new_id is not None:
        LogEntry.objects.log_actions(
            user.pk,
            spec.model.objects.filter(pk=new_id),
            CHANGE,
            f"Made current again: the version {version.describe()}, re-asserted by load {result.load_id}.",
            single_object=True,
        )
    return result


def _stored_row_id(spec: Dataset, key: Mapping[str, object], known_at: datetime, recorded_at) -> int | None:
    """The id of the version a load stored for (key, known_at), or None when it stored none."""
    if recorded_at is None:
        return None
    query = sql.SQL("SELECT id FROM {table} WHERE {match} AND known_at = %s AND recorded_at = %s").format(
        table=sql.Identifier(spec.table),
        match=sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(name)) for name in spec.key),
    )
    with connection.cursor() as cur:
        cur.execute(query, [*(key[name] for name in spec.key), known_at, recorded_at])
        found = cur.fetchone()
    return found[0] if found else None

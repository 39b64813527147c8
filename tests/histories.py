"""Random histories for the property tests (hypothesis): loads of input rows with duplicates, exact
replays, corrections with the same and later known_at, conflicts and, in extended histories, feeds
ranked by TSM_FEED_PRECEDENCE, re-deliveries of earlier loads, re-assertions and curation fixes; run
through the loader and the oracle (tests/oracle.py) alike, and compared load by load: counts, stored
versions, outranked versions and the load's re-sent rows.

Shared by tests/timeseries/test_pit_oracle.py (every selector against the oracle) and
tests/timeseries/test_views_changes.py (the changes views against the oracle).
"""

from __future__ import annotations

import copy
import csv
import io
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from hypothesis import HealthCheck, Phase, event, note
from hypothesis import strategies as st

from ingestion.loader import LoadRejected, LoadResult, ingest_file, ingest_table
from ingestion.models import ResentRow
from tests.helpers import T0, US, assert_same_rows, csv_bytes, iso, stored_versions, wipe_datasets
from tests.oracle import Oracle, OracleConflict, key_of, typed_row
from timeseries.datasets import DATASETS

HOUR0 = T0.replace(minute=0)  # sentiment windows start on the hour
DAY0 = T0.replace(hour=0, minute=0)

SETTINGS = dict(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)
BATCH_ROWS = st.sampled_from([1, 2, 3, 250_000])  # small batches exercise the loader's multi-batch paths
SEEDS = st.integers(0, 2**32 - 1)


# --- generating histories ---------------------------------------------------------------------------


@dataclass
class Plan:
    """One load of a history: its input rows (all with the same columns), its on_error mode, its feed,
    whether it re-asserts (and overrules precedence), the dataset's feed precedence while it runs
    (TSM_FEED_PRECEDENCE, highest first) and whether it goes in as a CSV file (``ingest_file``: the
    replay shortcut may answer it) rather than a table."""

    rows: list[dict]
    on_error: str = "reject"
    feed: str = ""
    reassert: bool = False
    overrule: bool = False
    ranks: tuple[str, ...] = ()
    as_file: bool = False


VENDORS = ("vendor_x", "vendor_y", "")  # "" = an unnamed feed
CURATION = "curation"
RANKS = [(), (CURATION, "vendor_x"), (CURATION,), ("vendor_x", CURATION, "vendor_y")]


def resolved(dataset: str, raw: dict) -> dict:
    return Oracle().complete(DATASETS[dataset], typed_row(dataset, raw))


def version_key(dataset: str, raw: dict) -> tuple:
    row = resolved(dataset, raw)
    return key_of(DATASETS[dataset], row), row["known_at"]


def remove_conflicts(dataset: str, rows: list[dict]) -> list[dict]:
    """Make rows sharing (key, known_at) identical (copies of the first one), so the load is valid."""
    first: dict[tuple, dict] = {}
    out = []
    for r in rows:
        vk = version_key(dataset, r)
        if vk in first:
            out.append(dict(first[vk]))
        else:
            first[vk] = r
            out.append(r)
    return out


@st.composite
def histories(
    draw,
    dataset: str,
    row: Callable,
    pinned: tuple[str, ...] = (),
    max_loads: int = 5,
    max_rows: int = 6,
    conflicts: bool = True,
    extended: bool = False,
    files: bool = False,
):
    """A list of :class:`Plan`.

    A load is fresh rows, an exact replay of an earlier load, a correction of an earlier load (new
    values for the same key and known_at: the key, known_at and ``pinned`` columns are kept), a chain
    (several versions of keys seen before, with new known_at and values) or fresh rows mixed with
    earlier ones. Every load gets repeated rows and is shuffled; now and then a load keeps a conflict
    (same key and known_at, different values), loaded with on_error "reject" or "skip".

    ``extended``: the history has a feed precedence (one of :data:`RANKS`, none included) and every
    load a feed, and a load may also be a re-delivery of an earlier load (its rows, feed and mode), a
    re-assertion of one (``reassert``, now and then ``overrule``), or a curation fix of an earlier
    load's rows (feed "curation": same key and known_at, new values). ``files`` (with ``extended``):
    a load goes in as a CSV file or a table, drawn; a re-delivery in the form of the original.
    """
    spec = DATASETS[dataset]
    keep = (*spec.key, "known_at", *pinned)
    n_syms = draw(st.integers(2, 3))
    ranks = draw(st.sampled_from(RANKS)) if extended else ()
    kinds = ["fresh", "replay", "correct", "chain", "mixed"]
    if extended:
        kinds += ["redeliver", "redeliver", "reassert", "fix", "fix"]
    plans: list[Plan] = []
    for _ in range(draw(st.integers(1, max_loads))):
        kind = draw(st.sampled_from(kinds)) if plans else "fresh"
        if kind in ("redeliver", "reassert"):
            earlier = draw(st.sampled_from(plans))
            again = Plan([dict(r) for r in earlier.rows], earlier.on_error, earlier.feed, ranks=ranks)
            again.as_file = earlier.as_file
            if kind == "reassert":
                again.reassert, again.overrule = True, draw(st.booleans())
                again.as_file = again.as_file and not again.overrule  # overrule: ingest_table only
            plans.append(again)
            continue
        if kind == "fix":
            source = draw(st.sampled_from(plans)).rows
            picked = [r for r in source if draw(st.booleans())] or source[:1]
            rows = remove_conflicts(dataset, [fixed(dataset, r, draw(row(n_syms, like=r)), keep) for r in picked])
            plans.append(Plan(rows, draw(st.sampled_from(["reject", "skip"])), CURATION, ranks=ranks))
            plans[-1].as_file = files and draw(st.booleans())
            continue
        feed = draw(st.sampled_from(VENDORS)) if extended else ""
        if kind == "replay":
            plans.append(
                Plan(
                    [dict(r) for r in draw(st.sampled_from(plans)).rows],
                    draw(st.sampled_from(["reject", "skip"])),
                    feed,
                    ranks=ranks,
                )
            )
            plans[-1].as_file = extended and files and draw(st.booleans())
            continue
        earlier = [r for p in plans for r in p.rows]
        if kind == "correct":
            rows = []
            for r in draw(st.sampled_from(plans)).rows:
                if draw(st.booleans()):
                    fresh = draw(row(n_syms, like=r))
                    rows.append({**fresh, **{k: r[k] for k in keep if k in r}})
                else:
                    rows.append(dict(r))
        elif kind == "chain":
            rows = []
            for r in draw(st.lists(st.sampled_from(earlier), min_size=1, max_size=2)):
                rows += draw(st.lists(row(n_syms, like=r), min_size=1, max_size=4))
            rows += draw(st.lists(row(n_syms), max_size=2))
        else:
            rows = draw(st.lists(row(n_syms), min_size=1, max_size=max_rows))
            if kind == "mixed":
                rows += [dict(r) for r in draw(st.lists(st.sampled_from(earlier), max_size=3))]
        rows += [dict(r) for r in draw(st.lists(st.sampled_from(rows), max_size=3))]
        rows = list(draw(st.permutations(rows)))
        if not (conflicts and draw(st.integers(0, 3)) == 0):
            rows = remove_conflicts(dataset, rows)
        plans.append(Plan(rows, draw(st.sampled_from(["reject", "skip"])), feed, ranks=ranks))
        plans[-1].as_file = extended and files and draw(st.booleans())
    return plans


PINNED = {"insider_trades": ("filing_date",)}  # a correction keeps the filing (known_at is never before it)


@st.composite
def vendor_histories(draw, dataset: str, row: Callable, max_loads: int = 6, files: bool = False):
    """Histories of the vendor-file case: every key has one known_at, its dataset's rule (derived from
    the event time; an insider trade keeps its first filing date), whoever sends it.

    A load is a vendor file (fresh rows, or new values for keys sent before) from a feed of
    :data:`VENDORS`, a curation fix (feed "curation": new values, same key and known_at) or a
    re-delivery of an earlier load (its rows, feed, mode and form). The history has one feed
    precedence of :data:`RANKS`. ``files``: a load goes in as a CSV file or a table, drawn.
    """
    spec = DATASETS[dataset]
    pinned = PINNED.get(dataset, ())
    keep = (*spec.key, "known_at", *pinned)
    n_syms = draw(st.integers(2, 3))
    ranks = draw(st.sampled_from(RANKS))
    first: dict[tuple, dict] = {}  # key -> its pinned columns as first sent

    def vendor(r: dict) -> dict:
        r = {**r, "known_at": None}
        pins = first.setdefault(key_of(spec, resolved(dataset, r)), {c: r[c] for c in pinned})
        return {**r, **pins}

    plans: list[Plan] = []
    for _ in range(draw(st.integers(1, max_loads))):
        kind = draw(st.sampled_from(["file", "file", "update", "fix", "fix", "redeliver", "redeliver"]))
        kind = kind if plans else "file"
        if kind == "redeliver":
            earlier = draw(st.sampled_from(plans))
            again = Plan([dict(r) for r in earlier.rows], earlier.on_error, earlier.feed, ranks=ranks)
            again.as_file = earlier.as_file
            plans.append(again)
            continue
        earlier_rows = [r for p in plans for r in p.rows]
        feed = CURATION if kind == "fix" else draw(st.sampled_from(VENDORS))
        if kind == "fix":
            picked = [r for r in earlier_rows if draw(st.booleans())] or earlier_rows[:1]
            rows = [fixed(dataset, r, draw(row(n_syms, like=r)), keep) for r in picked]
        elif kind == "update":
            picked = draw(st.lists(st.sampled_from(earlier_rows), min_size=1, max_size=4))
            rows = [vendor(draw(row(n_syms, like=r))) for r in picked]  # like=r: the same key
            rows += [vendor(r) for r in draw(st.lists(row(n_syms), max_size=2))]
        else:
            rows = [vendor(r) for r in draw(st.lists(row(n_syms), min_size=1, max_size=6))]
        rows += [dict(r) for r in draw(st.lists(st.sampled_from(rows), max_size=2))]
        rows = list(draw(st.permutations(rows)))
        if draw(st.integers(0, 4)) != 0:
            rows = remove_conflicts(dataset, rows)
        as_file = files and draw(st.booleans())
        plans.append(Plan(rows, draw(st.sampled_from(["reject", "skip"])), feed, ranks=ranks, as_file=as_file))
    return plans


def fixed(dataset: str, original: dict, fresh: dict, keep: tuple[str, ...]) -> dict:
    """``fresh``'s values for ``original``'s key, ``keep`` columns and known_at (given explicitly)."""
    return {**fresh, **{k: original[k] for k in keep if k in original}, "known_at": known_text(dataset, original)}


def known_text(dataset: str, raw: dict) -> str:
    """The row's known_at (given, or its dataset's rule) as input text."""
    return iso(resolved(dataset, raw)["known_at"])


def _same(draw, like: dict | None, name: str, strategy):
    """The column of the row being re-versioned (``like``), else a fresh draw."""
    return like[name] if like is not None else draw(strategy)


def _time(draw, like: dict | None, strategy) -> datetime:
    return datetime.fromisoformat(like["time"]) if like is not None else draw(strategy)


SYMS = ("AAA", "BBB", "CCC")
MARKET_PRICES = [  # open, high, low, close; the same number written two ways must be a duplicate
    ("10", "11", "9", "10.5"),
    ("10.000000", "11.0", "9.00", "10.500000"),
    ("10", "11", "9", "10.25"),
    ("12.5", "13", "12", "12.75"),
]
MARKET_KNOWN = [
    None,
    None,
    timedelta(minutes=1),
    timedelta(minutes=1) + US,
    timedelta(seconds=90),
    timedelta(minutes=2),
    timedelta(hours=3),
    timedelta(hours=3) + US,
]


@st.composite
def market_row(draw, n_syms: int, like: dict | None = None) -> dict:
    time = _time(draw, like, st.integers(0, 4).map(lambda m: T0 + timedelta(minutes=m)))
    o, h, lo, c = draw(st.sampled_from(MARKET_PRICES))
    known = draw(st.sampled_from(MARKET_KNOWN))
    return {
        "time": iso(time),
        "symbol": _same(draw, like, "symbol", st.sampled_from(SYMS[:n_syms])),
        "open": o,
        "high": h,
        "low": lo,
        "close": c,
        "volume": draw(st.sampled_from(["100", "250"])),
        "vwap": draw(st.sampled_from([None, "10.4", "10.400"])),
        "source": draw(st.sampled_from([None, "", "feed"])),
        "quality_score": draw(st.sampled_from([None, "1", "1.0", "0.5"])),
        "known_at": None if known is None else iso(time + known),
    }


@st.composite
def news_row(draw, n_syms: int, like: dict | None = None) -> dict:
    # two stories in the same second (or at the same instant) for the same symbol, told apart by id
    offsets = [timedelta(0), timedelta(0), timedelta(milliseconds=400), timedelta(seconds=1), timedelta(minutes=1)]
    time = _time(draw, like, st.sampled_from(offsets).map(lambda d: T0 + d))
    known = draw(st.sampled_from([None, None, timedelta(0), timedelta(seconds=1), timedelta(hours=2)]))
    return {
        "time": iso(time),
        "symbol": _same(draw, like, "symbol", st.sampled_from(SYMS[:n_syms])),
        "id": _same(draw, like, "id", st.sampled_from(["n1", "n2", "n3"])),
        "title": draw(st.sampled_from(["Up", "Down"])),
        "source": draw(st.sampled_from([None, "wire"])),
        "sentiment": draw(st.sampled_from([None, "0.1", "-0.5"])),
        "impact_score": draw(st.sampled_from([None, "0.5", "0.9", "0.5"])),
        "categories": draw(st.sampled_from([None, "a|b", '["a", "b"]', "c"])),
        "known_at": None if known is None else iso(time + known),
    }


@st.composite
def insider_row(draw, n_syms: int, like: dict | None = None) -> dict:
    time = _time(draw, like, st.integers(0, 2).map(lambda d: DAY0 + timedelta(days=d)))
    # 4/A amendments: the same trade (key) filed again later, known when filed
    filing = time + draw(st.sampled_from([timedelta(0), timedelta(days=1), timedelta(days=2), timedelta(days=30)]))
    known = draw(st.sampled_from([None, None, None, timedelta(0), timedelta(hours=1)]))
    return {
        "time": iso(time),
        "symbol": _same(draw, like, "symbol", st.sampled_from(SYMS[:n_syms])),
        "insider_name": _same(draw, like, "insider_name", st.sampled_from(["ALICE", "BOB"])),
        "transaction_type": _same(draw, like, "transaction_type", st.sampled_from(["buy", "sell"])),
        "shares": draw(st.sampled_from([None, "100", "250"])),
        "price": draw(st.sampled_from([None, "10.5", "10.500000"])),
        "value": draw(st.sampled_from([None, "1000.00", "1000", "2500.50"])),
        "filing_date": iso(filing),
        "form_type": draw(st.sampled_from([None, "4", "4/A"])),
        "is_cluster_trade": draw(st.sampled_from([None, "true", "false"])),
        "known_at": None if known is None else iso(filing + known),
    }


@st.composite
def sentiment_row(draw, n_syms: int, like: dict | None = None) -> dict:
    time = _time(draw, like, st.integers(0, 2).map(lambda h: HOUR0 + timedelta(hours=h)))
    known = draw(st.sampled_from([None, None, timedelta(hours=1), timedelta(hours=1, minutes=30), timedelta(hours=6)]))
    return {
        "time": iso(time),
        "symbol": _same(draw, like, "symbol", st.sampled_from(SYMS[:n_syms])),
        "platform": _same(draw, like, "platform", st.sampled_from(["reddit", "twitter"])),
        "mention_count": draw(st.sampled_from([None, "10", "12"])),
        "sentiment_avg": draw(st.sampled_from([None, "0.25", "-0.5"])),
        "viral_score": draw(st.sampled_from([None, "0.1"])),
        "known_at": None if known is None else iso(time + known),
    }


@st.composite
def government_row(draw, n_syms: int, like: dict | None = None) -> dict:
    time = _time(draw, like, st.sampled_from([0, 0, 30, 60]).map(lambda m: T0 + timedelta(minutes=m)))
    known = draw(st.sampled_from([None, None, timedelta(0), timedelta(hours=1)]))
    return {
        "time": iso(time),
        "event_type": _same(draw, like, "event_type", st.sampled_from(["tariff", "contract"])),
        "primary_symbol": _same(draw, like, "primary_symbol", st.sampled_from([None, "", *SYMS[:n_syms]])),
        "amount": draw(st.sampled_from([None, "1000000.00", "1000000"])),
        "affected_symbols": draw(st.sampled_from([None, "[]", "AAA|CCC", '["BBB"]'])),
        "sectors": draw(st.sampled_from([None, "tech", "energy|tech"])),
        "market_impact": draw(st.sampled_from([None, "0.5"])),
        "confidence": draw(st.sampled_from([None, "0.9"])),
        "known_at": None if known is None else iso(time + known),
    }


# --- running a history ------------------------------------------------------------------------------


def describe(plans: list[Plan]) -> str:
    lines = []
    for i, p in enumerate(plans):
        options = [f"on_error={p.on_error}", f"feed={p.feed!r}"]
        options += [name for name in ("reassert", "overrule", "as_file") if getattr(p, name)]
        options += [f"ranks={p.ranks}"] if p.ranks else []
        lines.append(f"load {i} ({', '.join(options)}):")
        lines += [f"    {r}" for r in p.rows]
    return "\n".join(lines)


def file_rows(rows: list[dict]) -> list[dict]:
    """The rows as the CSV file of :func:`tests.helpers.csv_bytes` gives them back (None is "")."""
    return list(csv.DictReader(io.StringIO(csv_bytes(rows).decode())))


def _typed_json(dataset: str, values: dict) -> dict:
    """Columns (and known_at) of a JSON object as tsm wrote it -> typed like the oracle's rows."""
    spec = DATASETS[dataset]
    wanted = {*spec.column_names, "known_at"}
    extra = set(values) - wanted
    assert not extra, f"unexpected columns {sorted(extra)} in {values}"
    return typed_row(dataset, values)


def outranked_versions(dataset: str) -> list[dict]:
    """The dataset's outranked versions: every column and known_at of ``row``, recorded_at, feed,
    outranked_by, load_id. Checks that the row's symbol, time and known_at are the model's columns."""
    spec = DATASETS[dataset]
    with connection.cursor() as cur:
        cur.execute(
            "SELECT symbol, time, known_at, recorded_at, feed, outranked_by, load_id, row::text"
            " FROM timeseries_outranked_version WHERE dataset = %s",
            [dataset],
        )
        out = []
        for symbol, time, known_at, recorded_at, feed, outranked_by, load_id, text in cur.fetchall():
            row = _typed_json(dataset, json.loads(text, parse_float=Decimal))
            assert (row["time"], row["known_at"]) == (time, known_at), f"outranked version {text}: {time}, {known_at}"
            assert (row[spec.symbol_column] or "") == symbol, f"outranked version {text}: symbol {symbol!r}"
            out.append(
                {**row, "recorded_at": recorded_at, "feed": feed, "outranked_by": outranked_by, "load_id": load_id}
            )
        return out


def oracle_outranked(oracle: Oracle, dataset: str, load_ids: dict[datetime, object]) -> list[dict]:
    return [{**o, "load_id": load_ids[o["recorded_at"]]} for o in oracle.outranked[dataset]]


def resent_rows(dataset: str, load_id) -> list[dict]:
    """The ResentRow rows of a load: key (as the dataset's key tuple), known_at, kind, current_recorded_at."""
    spec = DATASETS[dataset]
    out = []
    for r in ResentRow.objects.filter(load_id=load_id):
        key = r.key if isinstance(r.key, dict) else dict(zip(spec.key, r.key))
        typed = typed_row(dataset, key)
        out.append(
            {
                "key": tuple(typed[k] for k in spec.key),
                "known_at": r.known_at,
                "kind": r.kind,
                "current_recorded_at": r.current_recorded_at,
            }
        )
    return out


class Runner:
    """Loads plans one at a time through the loader and the oracle and compares, after each load: the
    counts (all six), a conflict's rejection, the stored versions, the outranked versions and the
    load's re-sent rows. ``direct``: the loader's direct path (COPY of rows proven new into the
    dataset) or staging only."""

    def __init__(self, dataset: str, batch_rows: int, django_settings, *, direct: bool = True):
        wipe_datasets()
        django_settings.TSM_INGEST_BATCH_ROWS = batch_rows
        django_settings.TSM_INGEST_DIRECT = direct
        self.dataset, self.settings, self.direct = dataset, django_settings, direct
        self.oracle = Oracle()
        self.recorded: list[datetime] = []
        self.load_ids: dict[datetime, object] = {}
        self.results: list[LoadResult | None] = []  # per plan (None: rejected for a conflict)

    def load(self, i: int, plan: Plan) -> LoadResult | None:
        dataset, oracle = self.dataset, self.oracle
        self.settings.TSM_FEED_PRECEDENCE = {**self.settings.TSM_FEED_PRECEDENCE, dataset: plan.ranks}
        given = file_rows(plan.rows) if plan.as_file else plan.rows
        typed = [typed_row(dataset, r) for r in given]
        before = stored_versions(dataset)
        options = dict(on_error=plan.on_error, feed=plan.feed, reassert=plan.reassert)
        try:
            if plan.as_file:
                assert not plan.overrule, "overrule is an option of ingest_table only"
                result = ingest_file(dataset=dataset, path=csv_bytes(plan.rows), **options)
            else:
                result = ingest_table(
                    dataset=dataset, data=[dict(r) for r in plan.rows], overrule=plan.overrule, **options
                )
        except LoadRejected as exc:
            assert plan.on_error == "reject", f"load {i}: LoadRejected in skip mode: {exc}"
            with pytest.raises(OracleConflict):
                oracle.collapse(dataset, typed)
            assert all("conflicts with row" in e.message for e in exc.result.errors), exc.result.errors
            assert_same_rows(stored_versions(dataset), before, f"load {i} was rejected but changed the table")
            event("a load was rejected for a conflict")
            self.results.append(None)
            return None
        kw = dict(options, overrule=plan.overrule, ranks=plan.ranks)
        if result.recorded_at is None:  # nothing merged (the replay shortcut): the oracle must store nothing
            assert plan.as_file and result.replay_of is not None, f"load {i}: no recorded_at, {result}"
            probe = copy.deepcopy(oracle)
            last = self.recorded[-1] if self.recorded else T0
            try:
                expected = probe.load(dataset, typed, last + US, **kw)
            except OracleConflict as exc:
                raise AssertionError(f"load {i} took the shortcut although it has a conflict: {exc}") from None
            assert probe.versions[dataset] == oracle.versions[dataset], f"load {i}: shortcut, but the oracle stores"
            assert probe.outranked[dataset] == oracle.outranked[dataset], f"load {i}: shortcut, oracle outranks"
            assert_same_rows(
                resent_rows(dataset, result.load_id),
                probe.resent_rows[(dataset, last + US)],
                f"re-sent rows of load {i} (the replay shortcut)",
            )
            event("the replay shortcut was taken")
        else:
            try:
                expected = oracle.load(dataset, typed, result.recorded_at, **kw)
            except OracleConflict as exc:
                raise AssertionError(f"load {i} stored rows although it has a conflict: {exc}") from None
        got = result.counts()
        assert got == expected, f"load {i}: loader counts {got}, oracle {expected}"
        assert all("conflicts with row" in e.message for e in result.errors), result.errors
        if result.recorded_at is not None:
            assert not self.recorded or result.recorded_at > self.recorded[-1]
            self.recorded.append(result.recorded_at)
            self.load_ids[result.recorded_at] = result.load_id
            assert_same_rows(
                resent_rows(dataset, result.load_id),
                oracle.resent_rows[(dataset, result.recorded_at)],
                f"re-sent rows of load {i}",
            )
        for name in ("revised", "duplicates", "rejected", "resent", "outranked"):
            if got[name]:
                event(f"a load had {name}")
        if self.direct:
            event(
                "direct path: "
                + ("redone through staging" if result.restarted else "rows COPYed" if result.copied else "all staged")
            )
        else:
            assert not result.copied, f"load {i} COPYed rows with TSM_INGEST_DIRECT off"
        assert_same_rows(stored_versions(dataset), oracle.all_versions(dataset), f"stored versions after load {i}")
        assert_same_rows(
            outranked_versions(dataset),
            oracle_outranked(oracle, dataset, self.load_ids),
            f"outranked versions after load {i}",
        )
        self.results.append(result)
        return result

    def events(self) -> None:
        spec, dataset = DATASETS[self.dataset], self.dataset
        same_known = Counter((key_of(spec, v), v["known_at"]) for v in self.oracle.versions[dataset])
        if any(n > 1 for n in same_known.values()):
            event("a key has two versions with the same known_at")
        keys = Counter(key_of(spec, v) for v in self.oracle.versions[dataset])
        event(f"most versions of one key: {max(keys.values(), default=0)}")


def run_history(
    dataset: str, plans: list[Plan], batch_rows: int, django_settings, *, direct: bool = True
) -> tuple[Oracle, list[datetime]]:
    """Load every plan through the loader and the oracle (a :class:`Runner`), comparing as it goes."""
    note(f"batch_rows={batch_rows} direct={direct}\n{describe(plans)}")
    event(f"batch_rows={batch_rows}")
    runner = Runner(dataset, batch_rows, django_settings, direct=direct)
    for i, plan in enumerate(plans):
        runner.load(i, plan)
    runner.events()
    return runner.oracle, runner.recorded


def instants(dataset: str, plans: list[Plan]) -> list[datetime]:
    """Every event and knowledge time of the history, 1 µs either side, before and after everything."""
    base = set()
    for plan in plans:
        for r in plan.rows:
            row = resolved(dataset, r)
            base |= {row["time"], row["known_at"]}
            if row.get("filing_date"):
                base.add(row["filing_date"])
    out = set()
    for t in base:
        out |= {t - US, t, t + US}
    out |= {min(base) - timedelta(days=1), max(base) + timedelta(days=400)}
    return sorted(out)


def record_times(recorded: list[datetime]) -> list[datetime | None]:
    """None, before the first load, and each load's recorded_at with 1 µs either side (between loads)."""
    out: set[datetime] = set()
    for r in recorded:
        out |= {r - US, r, r + US}
    if recorded:
        out.add(recorded[0] - timedelta(seconds=1))
    return [None, *sorted(out)]


ROWS = {
    "market_data": market_row,
    "news_events": news_row,
    "insider_trades": insider_row,
    "social_sentiment": sentiment_row,
    "government_events": government_row,
}
# datasets the random histories do not model yet, and why (test_pit_oracle checks every dataset is in
# ROWS or here)
NOT_MODELLED = {
    name: "reference data (#17): a key without time, rows known before their time and the symbol"
    " resolution of corporate actions; its loads are tested example by example in"
    " tests/timeseries/test_securities.py until the adjustment oracle of #17 models them"
    for name in ("securities", "corporate_actions")
}

"""Random histories for the property tests (hypothesis): loads of input rows with duplicates, exact
replays, corrections with the same and later known_at, conflicts; run through the loader and the
oracle (tests/oracle.py) alike, counts and stored versions compared load by load.

Shared by tests/timeseries/test_pit_oracle.py (every selector against the oracle) and
tests/timeseries/test_views_changes.py (the changes views against the oracle).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, Phase, event, note
from hypothesis import strategies as st

from ingestion.loader import LoadRejected, ingest_table
from tests.helpers import T0, US, assert_same_rows, iso, stored_versions, wipe_datasets
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
    """One load of a history: its input rows (all with the same columns) and its on_error mode."""

    rows: list[dict]
    on_error: str = "reject"


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
):
    """A list of :class:`Plan`.

    A load is fresh rows, an exact replay of an earlier load, a correction of an earlier load (new
    values for the same key and known_at: the key, known_at and ``pinned`` columns are kept), a chain
    (several versions of keys seen before, with new known_at and values) or fresh rows mixed with
    earlier ones. Every load gets repeated rows and is shuffled; now and then a load keeps a conflict
    (same key and known_at, different values), loaded with on_error "reject" or "skip".
    """
    spec = DATASETS[dataset]
    keep = (*spec.key, "known_at", *pinned)
    n_syms = draw(st.integers(2, 3))
    plans: list[Plan] = []
    for _ in range(draw(st.integers(1, max_loads))):
        kind = draw(st.sampled_from(["fresh", "replay", "correct", "chain", "mixed"])) if plans else "fresh"
        if kind == "replay":
            plans.append(
                Plan([dict(r) for r in draw(st.sampled_from(plans)).rows], draw(st.sampled_from(["reject", "skip"])))
            )
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
        plans.append(Plan(rows, draw(st.sampled_from(["reject", "skip"]))))
    return plans


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
        lines.append(f"load {i} (on_error={p.on_error}):")
        lines += [f"    {r}" for r in p.rows]
    return "\n".join(lines)


def run_history(
    dataset: str, plans: list[Plan], batch_rows: int, django_settings, *, direct: bool = True
) -> tuple[Oracle, list[datetime]]:
    """Load every plan through the loader and the oracle; compare counts, conflicts and stored versions.

    ``direct``: the loader's direct path (COPY of rows proven new into the dataset) or staging only."""
    wipe_datasets()
    django_settings.TSM_INGEST_BATCH_ROWS = batch_rows
    django_settings.TSM_INGEST_DIRECT = direct
    note(f"batch_rows={batch_rows} direct={direct}\n{describe(plans)}")
    event(f"batch_rows={batch_rows}")
    oracle = Oracle()
    recorded: list[datetime] = []
    for i, plan in enumerate(plans):
        typed = [typed_row(dataset, r) for r in plan.rows]
        before = stored_versions(dataset)
        try:
            result = ingest_table(dataset=dataset, data=[dict(r) for r in plan.rows], on_error=plan.on_error)
        except LoadRejected as exc:
            assert plan.on_error == "reject", f"load {i}: LoadRejected in skip mode: {exc}"
            with pytest.raises(OracleConflict):
                oracle.collapse(dataset, typed)
            assert all("conflicts with row" in e.message for e in exc.result.errors), exc.result.errors
            assert_same_rows(stored_versions(dataset), before, f"load {i} was rejected but changed the table")
            event("a load was rejected for a conflict")
            continue
        try:
            expected = oracle.load(dataset, typed, result.recorded_at, on_error=plan.on_error)
        except OracleConflict as exc:
            raise AssertionError(f"load {i} stored rows although it has a conflict: {exc}") from None
        got = result.counts()
        assert got == expected, f"load {i}: loader counts {got}, oracle {expected}"
        assert all("conflicts with row" in e.message for e in result.errors), result.errors
        assert not recorded or result.recorded_at > recorded[-1]
        recorded.append(result.recorded_at)
        for name in ("revised", "duplicates", "rejected"):
            if got[name]:
                event(f"a load had {name}")
        if direct:
            event(
                "direct path: "
                + ("redone through staging" if result.restarted else "rows COPYed" if result.copied else "all staged")
            )
        else:
            assert not result.copied, f"load {i} COPYed rows with TSM_INGEST_DIRECT off"
        assert_same_rows(stored_versions(dataset), oracle.all_versions(dataset), f"stored versions after load {i}")
    spec = DATASETS[dataset]
    same_known = Counter((key_of(spec, v), v["known_at"]) for v in oracle.versions[dataset])
    if any(n > 1 for n in same_known.values()):
        event("a key has two versions with the same known_at")
    keys = Counter(key_of(spec, v) for v in oracle.versions[dataset])
    event(f"most versions of one key: {max(keys.values(), default=0)}")
    return oracle, recorded


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

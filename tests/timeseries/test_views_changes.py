"""``pit.changes_between`` (the timeline's "what changed" list) against the brute-force oracle.

Random histories (corrections, late and out-of-order rows, replays, ties) are loaded through the
loader and into ``tests.oracle.Oracle`` by the helpers of ``test_pit_oracle``; for many (t1, t2, S)
the answer must be exactly the difference between the oracle's state at t1 and at t2: the version
current at t2 of every key whose current version was not known at t1, with the version current at t1
(if any) as ``previous``.
"""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import settings as hsettings

from ingestion.loader import ingest_table
from tests.helpers import T0, assert_listing, assert_same_sequence, bar, total_order, wipe_datasets
from tests.histories import BATCH_ROWS, ROWS, SEEDS, SETTINGS, SYMS, histories, instants, record_times, run_history
from tests.oracle import Oracle, _symbols, key_of, version_of
from timeseries import pit
from timeseries.datasets import DATASETS

PINNED = {"insider_trades": ("filing_date",)}  # a correction keeps the filing (known_at is never before it)


def matches(dataset: str, row: dict, symbols: list[str] | None) -> bool:
    """The selectors' symbol filter: government events match their primary or affected symbols."""
    if symbols is None:
        return True
    if dataset == "government_events":
        return row["primary_symbol"] in symbols or bool(set(row["affected_symbols"] or ()) & set(symbols))
    return row["symbol"] in symbols


def oracle_changes(oracle: Oracle, dataset: str, *, t1, t2, symbols, recorded_by, limit) -> list[dict]:
    spec = DATASETS[dataset]
    symbols = _symbols(symbols)  # blanks dropped, as pit does

    out = []
    for row in oracle.current(dataset, t2, recorded_by):
        if row["known_at"] <= t1 or not matches(dataset, row, symbols):
            continue
        earlier = [
            v
            for v in oracle.versions[dataset]
            if key_of(spec, v) == key_of(spec, row)
            and v["known_at"] <= t1
            and (recorded_by is None or v["recorded_at"] <= recorded_by)
        ]
        previous = dict(max(earlier, key=version_of)) if earlier else None
        out.append({**row, "previous": previous, "correction": previous is not None})
    # newest known_at first, then by key (the known_at sort is stable over the key sort)
    out.sort(key=lambda r: key_of(spec, r))
    out.sort(key=lambda r: r["known_at"], reverse=True)
    return out if limit is None else out[:limit]


ORDERS = {"news_events": Oracle.news_order, "insider_trades": Oracle.insider_order}  # others: time desc
WINDOW_COLUMN = {"insider_trades": "filing_date"}


def oracle_window(oracle: Oracle, dataset: str, *, at, start, end, symbols, recorded_by) -> list[dict]:
    """Current rows at ``at`` placed in [start, end], matching ``symbols``, in the selector's order."""
    spec = DATASETS[dataset]
    symbols = _symbols(symbols)
    column = WINDOW_COLUMN.get(dataset, "time")

    rows = [
        r
        for r in oracle.current(dataset, at, recorded_by)
        if start <= r[column] <= end and matches(dataset, r, symbols)
    ]
    order = ORDERS.get(dataset, Oracle.government_order)
    rows.sort(key=lambda r: (order(r), key_of(spec, r)))
    return rows


def flat(rows: list[dict]) -> list[dict]:
    """Nested ``previous`` dicts as sorted tuples, so rows compare with ``assert_same_sequence``."""
    return [{**r, "previous": None if r["previous"] is None else tuple(sorted(r["previous"].items()))} for r in rows]


def check_changes(dataset: str, plans, batch_rows, seed, settings) -> None:
    rng = random.Random(seed)
    oracle, recorded = run_history(dataset, plans, batch_rows, settings)
    ts, ss = instants(dataset, plans), record_times(recorded)
    universe = [*SYMS, "ZZZ"] + ([""] if dataset == "government_events" else [])
    for _ in range(30):
        t1, t2 = sorted((rng.choice(ts), rng.choice(ts)))
        rb = rng.choice(ss)
        symbols = rng.choice([None, None, [rng.choice(universe)], rng.sample(universe, 2)])
        limit = rng.choice([None, None, 1, 3])
        got = pit.changes_between(t1=t1, t2=t2, symbols=symbols, datasets=[dataset], recorded_by=rb, limit=limit)
        assert list(got) == [dataset]
        want = oracle_changes(oracle, dataset, t1=t1, t2=t2, symbols=symbols, recorded_by=rb, limit=limit)
        for row in got[dataset]:
            assert row["previous"] is None or row["previous"]["known_at"] <= t1
        assert_same_sequence(
            flat(got[dataset]),
            flat(want),
            f"changes_between({dataset}, t1={t1}, t2={t2}, symbols={symbols}, rb={rb}, limit={limit})",
        )
        # window_events: the same history, a window [start, end] seen at t2
        start, end = t1 - timedelta(hours=rng.choice([0, 1, 48])), t2 + timedelta(hours=rng.choice([0, 1]))
        kw = dict(dataset=dataset, at=t2, start=start, end=end, symbols=symbols, recorded_by=rb)
        all_rows = oracle_window(oracle, dataset, **{k: v for k, v in kw.items() if k != "dataset"})
        order = ORDERS.get(dataset, Oracle.government_order)
        assert_listing(
            pit.window_events(**kw, limit=limit or 1000),
            all_rows,
            order,
            limit or 1000,
            f"window_events({kw}, limit={limit})",
            total=total_order(dataset),
        )


@pytest.mark.parametrize("dataset", list(ROWS))
def test_it_matches_the_oracle_difference_between_two_states(dataset, db, settings):
    # conflicting loads are the loader's business (test_pit_oracle); here every load is stored
    @hsettings(max_examples=6, **SETTINGS)
    @given(
        plans=histories(dataset, ROWS[dataset], pinned=PINNED.get(dataset, ()), conflicts=False),
        batch_rows=BATCH_ROWS,
        seed=SEEDS,
    )
    def run(plans, batch_rows, seed):
        check_changes(dataset, plans, batch_rows, seed, settings)

    run()


def test_it_flags_a_late_correction_with_its_previous_version(db):
    wipe_datasets()
    ingest_table(dataset="market_data", data=[bar("AAA", 0, close="10.5"), bar("AAA", 1)])
    late = (T0 + timedelta(hours=3)).isoformat()
    ingest_table(dataset="market_data", data=[{**bar("AAA", 0, close="10.25"), "known_at": late}])
    got = pit.changes_between(t1=T0 + timedelta(hours=1), t2=T0 + timedelta(hours=4), datasets=["market_data"])
    [row] = got["market_data"]
    assert row["correction"] and str(row["close"]) == "10.250000" and str(row["previous"]["close"]) == "10.500000"
    before = pit.changes_between(t1=T0, t2=T0 + timedelta(hours=1), datasets=["market_data"])["market_data"]
    assert [(r["time"], r["correction"]) for r in before] == [(T0 + timedelta(minutes=1), False), (T0, False)]


def test_it_refuses_t1_after_t2(db):
    with pytest.raises(ValueError, match="t1 must not be after t2"):
        pit.changes_between(t1=T0 + timedelta(hours=1), t2=T0)


def test_it_gives_the_newest_recorded_at_of_the_visible_versions(db):
    wipe_datasets()
    first = ingest_table(dataset="market_data", data=[bar("AAA", 0)]).recorded_at
    second = ingest_table(dataset="market_data", data=[bar("AAA", 10)]).recorded_at
    assert pit.newest_recorded_at(dataset="market_data", at=T0 + timedelta(minutes=5), symbols=["AAA"]) == first
    assert pit.newest_recorded_at(dataset="market_data", at=T0 + timedelta(hours=1), symbols=["AAA"]) == second
    assert (
        pit.newest_recorded_at(dataset="market_data", at=T0 + timedelta(hours=1), symbols=["AAA"], recorded_by=first)
        == first
    )
    assert pit.newest_recorded_at(dataset="market_data", at=T0 + timedelta(hours=1), symbols=["BBB"]) is None

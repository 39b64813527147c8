"""Property tests: random histories loaded through the loader, every selector compared with the oracle.

Each example wipes the datasets, generates a history (several loads with duplicates, exact replays,
corrections with the same known_at, late corrections, out-of-order rows, same-timestamp ties), loads
it one load at a time through ``ingestion.loader.ingest_table`` and into ``tests.oracle.Oracle`` with
the load's ``recorded_at``, then compares

* the loader's counts (inserted / revised / duplicates / rejected / resent / outranked) with the
  oracle's, load by load, and a conflicting load (same key and known_at, different values):
  LoadRejected and nothing stored with on_error="reject", the conflicting rows rejected and the rest
  loaded with "skip",
* the stored versions (every row with its known_at and recorded_at), the outranked versions and the
  load's re-sent rows with the oracle's,
* ``timeseries.pit`` selectors (market_state, recent_bars, news, insider_trades, sentiment,
  government_events, history, asof_join) with the oracle for many T (every event, filing and
  knowledge time, 1 µs either side of each, before and after everything) and many S (None, before
  the first load, each load's recorded_at and 1 µs either side of it, i.e. between loads).

Loads go through the loader in batches of 1, 2, 3 or 250,000 rows, so that the append-as-is path
(keys proven new) and the version merge both run, alone and mixed within one load.

Issue #16's properties (section "re-deliveries, re-assertion, feed precedence"): extended histories
(feeds under a precedence, re-deliveries, re-assertions, curation fixes, CSV files) against the
oracle; re-delivering any earlier file of a vendor-file history (one known_at per key) stores nothing
and changes no answer; a re-asserted file is current again; a lower-ranked feed changes no answer and
is kept as outranked.

Listings (news, insider trades, government events) are compared in exact order when the dataset's
``order_newest`` is total (names every key column, ties broken by key); where it is not (e.g. news
by time, impact_score only), rows are compared group by group of equal ordering keys, and a group cut
by ``limit`` only has to be a subset of the oracle's group.
"""

from __future__ import annotations

import dataclasses
import random
from datetime import datetime
from typing import Any

import pytest
from django.db import connection
from hypothesis import event, given, note
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from psycopg import sql

from ingestion.loader import LoadRejected, ingest_table
from ingestion.models import Load, RejectedRow
from tests.helpers import (
    T0,
    US,
    assert_listing,
    assert_same_rows,
    assert_same_sequence,
    bar,
    iso,
    norm,
    stored_versions,
    total_order,
    wipe_datasets,
)
from tests.histories import (
    BATCH_ROWS,
    CURATION,
    NOT_MODELLED,
    PINNED,
    RANKS,
    ROWS,
    SEEDS,
    SETTINGS,
    SYMS,
    VENDORS,
    Plan,
    Runner,
    describe,
    file_rows,
    fixed,
    government_row,
    histories,
    insider_row,
    instants,
    market_row,
    news_row,
    record_times,
    remove_conflicts,
    resolved,
    run_history,
    sentiment_row,
    vendor_histories,
)
from tests.oracle import Oracle, OracleConflict, key_of, typed_row, values_of
from timeseries import pit
from timeseries.datasets import DATASETS


def test_every_dataset_is_modelled_or_named_out_of_scope_with_a_reason():
    assert set(ROWS) | set(NOT_MODELLED) == set(DATASETS) and not set(ROWS) & set(NOT_MODELLED)
    assert all(NOT_MODELLED.values())


def count_rows(dataset: str) -> int:
    with connection.cursor() as cur:
        cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(DATASETS[dataset].table)))
        return cur.fetchone()[0]


def sample_pairs(rng: random.Random, ts: list[datetime], ss: list, n: int) -> list[tuple[datetime, Any]]:
    """Every T with S=None and with the newest S, plus ``n`` random (T, S) pairs."""
    pairs = [(t, None) for t in ts]
    pairs += [(t, ss[-1]) for t in rng.sample(ts, min(len(ts), 6))]
    pairs += [(rng.choice(ts), rng.choice(ss)) for _ in range(n)]
    return pairs


def some_symbols(rng: random.Random, universe: list[str]):
    return rng.choice(
        [
            None,
            None,
            [rng.choice(universe)],
            rng.sample(universe, min(2, len(universe))),
            [],
            ["ZZZ"],
            rng.choice(universe),
        ]
    )


def check_history(oracle: Oracle, dataset: str, rng: random.Random, pairs) -> None:
    spec = DATASETS[dataset]
    universe = list(SYMS) + ([""] if dataset == "government_events" else [])
    times = sorted({r["time"] for r in oracle.versions[dataset]}) or [T0]
    for at, rb in pairs:
        got = pit.history(dataset=dataset, at=at, recorded_by=rb)
        assert_same_sequence(
            got, oracle.history(dataset=dataset, at=at, recorded_by=rb), f"history({dataset}, at={at}, rb={rb})"
        )
        if rng.random() < 0.4:
            symbols = (
                some_symbols(rng, universe)
                if spec.symbol_column == "symbol"
                else rng.choice([None, [""], ["AAA"], ["AAA", "BBB"]])
            )
            start = rng.choice([None, rng.choice(times), rng.choice(times) + US])
            end = rng.choice([None, rng.choice(times), rng.choice(times) - US])
            if start is not None and end is not None and start > end:
                start, end = end, start
            limit = rng.choice([None, None, 1, 2])
            kw = dict(dataset=dataset, at=at, recorded_by=rb, symbols=symbols, start=start, end=end, limit=limit)
            assert_same_sequence(pit.history(**kw), oracle.history(**kw), f"history({kw})")


def check_asof(oracle: Oracle, dataset: str, ts: list[datetime], ss: list, series: list[dict]) -> None:
    """One asof_join per S with a point for every series (known or not) at every T."""
    spec = DATASETS[dataset]
    points = [{**s, "time": t} for t in ts for s in series]
    for rb in ss:
        got = pit.asof_join(points, dataset=dataset, recorded_by=rb)
        assert len(got) == len(points)
        for p, row in zip(points, got):
            what = f"asof_join({dataset}) point {p} rb={rb}"
            assert row["at"] == p["time"] and all(row[c] == p[c] for c in spec.series), f"{what}: echoed {row}"
            candidates = oracle.asof_candidates(p, dataset, rb)
            if not candidates:
                assert all(row[c] is None for c in spec.stored_columns if c not in spec.series), (
                    f"{what}: expected no row, got {row}"
                )
                continue
            stripped = {c: row[c] for c in spec.stored_columns if c not in spec.series}
            options = [norm({c: r[c] for c in spec.stored_columns if c not in spec.series}) for r in candidates]
            assert norm(stripped) in options, f"{what}: got {row}, oracle allows {candidates}"


# --- the selectors of each dataset against the oracle ------------------------------------------------


def check_market_data(oracle: Oracle, plans, recorded, rng: random.Random) -> None:
    ts, ss = instants("market_data", plans), record_times(recorded)
    pairs = sample_pairs(rng, ts, ss, 30)
    for at, rb in pairs:
        assert_same_sequence(
            pit.market_state(at=at, recorded_by=rb),
            oracle.market_state(at=at, recorded_by=rb),
            f"market_state(at={at}, rb={rb})",
        )
    for at, rb in pairs[::3]:
        symbols = some_symbols(rng, list(SYMS))
        assert_same_sequence(
            pit.market_state(at=at, symbols=symbols, recorded_by=rb),
            oracle.market_state(at=at, symbols=symbols, recorded_by=rb),
            f"market_state(at={at}, symbols={symbols}, rb={rb})",
        )
    for at, rb in pairs[::4]:
        symbol, bars = rng.choice(SYMS), rng.choice([1, 2, 200])
        got = pit.recent_bars(symbol=symbol, at=at, bars=bars, recorded_by=rb)
        want = oracle.recent_bars(symbol=symbol, at=at, bars=bars, recorded_by=rb)
        columns = list(got[0]) if got else []  # recent_bars returns a subset of the columns
        assert set(columns) <= set(want[0] if want else columns), f"recent_bars: unexpected columns {columns}"
        assert_same_sequence(
            got,
            [{c: r[c] for c in columns} for r in want],
            f"recent_bars(symbol={symbol}, at={at}, bars={bars}, rb={rb})",
        )
    check_history(oracle, "market_data", rng, pairs[::2])
    check_asof(oracle, "market_data", ts, ss, [{"symbol": s} for s in (*SYMS, "ZZZ")])


def check_news(oracle: Oracle, plans, recorded, rng: random.Random) -> None:
    ts, ss = instants("news_events", plans), record_times(recorded)
    pairs = sample_pairs(rng, ts, ss, 30)
    for at, rb in pairs:
        symbols = some_symbols(rng, list(SYMS))
        limit = rng.choice([1000, 1, 2, 3])
        assert_listing(
            pit.news(at=at, symbols=symbols, limit=limit, recorded_by=rb),
            oracle.news(at=at, symbols=symbols, limit=None, recorded_by=rb),
            Oracle.news_order,
            limit,
            f"news(at={at}, symbols={symbols}, limit={limit}, rb={rb})",
            total=total_order("news_events"),
        )
    check_history(oracle, "news_events", rng, pairs[::2])
    check_asof(oracle, "news_events", ts[::2], ss[::2], [{"symbol": s} for s in SYMS])


def check_insider_trades(oracle: Oracle, plans, recorded, rng: random.Random) -> None:
    ts, ss = instants("insider_trades", plans), record_times(recorded)
    pairs = sample_pairs(rng, ts, ss, 30)
    for at, rb in pairs:
        symbols = some_symbols(rng, list(SYMS))
        limit = rng.choice([500, 1, 2, 3])
        assert_listing(
            pit.insider_trades(at=at, symbols=symbols, limit=limit, recorded_by=rb),
            oracle.insider_trades(at=at, symbols=symbols, limit=None, recorded_by=rb),
            Oracle.insider_order,
            limit,
            f"insider_trades(at={at}, symbols={symbols}, limit={limit}, rb={rb})",
            total=total_order("insider_trades"),
        )
    check_history(oracle, "insider_trades", rng, pairs[::2])
    check_asof(oracle, "insider_trades", ts[::3], ss[::2], [{"symbol": s} for s in SYMS])


def check_social_sentiment(oracle: Oracle, plans, recorded, rng: random.Random) -> None:
    ts, ss = instants("social_sentiment", plans), record_times(recorded)
    pairs = sample_pairs(rng, ts, ss, 30)
    for at, rb in pairs:
        symbols = some_symbols(rng, list(SYMS))
        assert_same_sequence(
            pit.sentiment(at=at, symbols=symbols, recorded_by=rb),
            oracle.sentiment(at=at, symbols=symbols, recorded_by=rb),
            f"sentiment(at={at}, symbols={symbols}, rb={rb})",
        )
    check_history(oracle, "social_sentiment", rng, pairs[::2])
    series = [{"symbol": s, "platform": p} for s in SYMS for p in ("reddit", "twitter", "stocktwits")]
    check_asof(oracle, "social_sentiment", ts, ss, series)


def check_government_events(oracle: Oracle, plans, recorded, rng: random.Random) -> None:
    ts, ss = instants("government_events", plans), record_times(recorded)
    pairs = sample_pairs(rng, ts, ss, 30)
    for at, rb in pairs:
        symbols = rng.choice([None, None, ["AAA"], ["BBB"], ["CCC"], ["AAA", "BBB"], [], ["ZZZ"]])
        sectors = rng.choice([None, None, ["tech"], ["energy"], ["energy", "tech"], [], ["none"]])
        limit = rng.choice([1000, 1, 2, 3])
        assert_listing(
            pit.government_events(at=at, symbols=symbols, sectors=sectors, limit=limit, recorded_by=rb),
            oracle.government_events(at=at, symbols=symbols, sectors=sectors, limit=None, recorded_by=rb),
            Oracle.government_order,
            limit,
            f"government_events(at={at}, symbols={symbols}, sectors={sectors}, limit={limit}, rb={rb})",
            total=total_order("government_events"),
        )
    check_history(oracle, "government_events", rng, pairs[::2])
    check_asof(oracle, "government_events", ts[::3], ss[::2], [{"primary_symbol": s} for s in ("", *SYMS)])


CHECKS = {
    "market_data": check_market_data,
    "news_events": check_news,
    "insider_trades": check_insider_trades,
    "social_sentiment": check_social_sentiment,
    "government_events": check_government_events,
}


# --- the properties -----------------------------------------------------------------------------


@hsettings(max_examples=45, **SETTINGS)
@given(plans=histories("market_data", market_row), batch_rows=BATCH_ROWS, direct=st.booleans(), seed=SEEDS)
def test_it_matches_the_oracle_for_market_data(db, settings, plans, batch_rows, direct, seed):
    oracle, recorded = run_history("market_data", plans, batch_rows, settings, direct=direct)
    check_market_data(oracle, plans, recorded, random.Random(seed))


@hsettings(max_examples=35, **SETTINGS)
@given(plans=histories("news_events", news_row), batch_rows=BATCH_ROWS, direct=st.booleans(), seed=SEEDS)
def test_it_matches_the_oracle_for_news(db, settings, plans, batch_rows, direct, seed):
    oracle, recorded = run_history("news_events", plans, batch_rows, settings, direct=direct)
    check_news(oracle, plans, recorded, random.Random(seed))


@hsettings(max_examples=35, **SETTINGS)
@given(
    plans=histories("insider_trades", insider_row, pinned=("filing_date",)),
    batch_rows=BATCH_ROWS,
    direct=st.booleans(),
    seed=SEEDS,
)
def test_it_matches_the_oracle_for_insider_trades(db, settings, plans, batch_rows, direct, seed):
    oracle, recorded = run_history("insider_trades", plans, batch_rows, settings, direct=direct)
    check_insider_trades(oracle, plans, recorded, random.Random(seed))


@hsettings(max_examples=35, **SETTINGS)
@given(plans=histories("social_sentiment", sentiment_row), batch_rows=BATCH_ROWS, direct=st.booleans(), seed=SEEDS)
def test_it_matches_the_oracle_for_social_sentiment(db, settings, plans, batch_rows, direct, seed):
    oracle, recorded = run_history("social_sentiment", plans, batch_rows, settings, direct=direct)
    check_social_sentiment(oracle, plans, recorded, random.Random(seed))


@hsettings(max_examples=35, **SETTINGS)
@given(plans=histories("government_events", government_row), batch_rows=BATCH_ROWS, direct=st.booleans(), seed=SEEDS)
def test_it_matches_the_oracle_for_government_events(db, settings, plans, batch_rows, direct, seed):
    oracle, recorded = run_history("government_events", plans, batch_rows, settings, direct=direct)
    check_government_events(oracle, plans, recorded, random.Random(seed))


# --- re-deliveries, re-assertion, feed precedence (issue #16) ----------------------------------------


def change_count(dataset: str) -> int:
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM timeseries_change WHERE dataset = %s", [dataset])
        return cur.fetchone()[0]


def answers(dataset: str, pairs) -> list[list[dict]]:
    return [pit.history(dataset=dataset, at=at, recorded_by=rb) for at, rb in pairs]


def answer_pairs(rng: random.Random, ts: list[datetime], recorded: list[datetime]) -> list[tuple[datetime, Any]]:
    """Every T as recorded by now, and T as recorded by an earlier load (or between loads), sampled."""
    ss = record_times(recorded)
    return [(t, None) for t in ts] + [(rng.choice(ts), rng.choice(ss)) for _ in range(12)]


def is_redelivery(plans: list[Plan], results: list, i: int) -> bool:
    """Plan ``i`` sends again the rows of an earlier load that was not rejected, in the same mode."""
    return not plans[i].reassert and any(
        p.rows == plans[i].rows and p.on_error == plans[i].on_error and results[j] is not None
        for j, p in enumerate(plans[:i])
    )


def held_above(oracle: Oracle, dataset: str, plans, challenger: str | None, ranks) -> list[dict]:
    """Input rows of ``plans`` whose (key, known_at) has a stored version, the current one of which comes
    from a feed ranked above ``challenger`` (None: any)."""
    spec = DATASETS[dataset]
    out = []
    for r in (r for p in plans for r in p.rows):
        row = resolved(dataset, r)
        at_k = [
            v
            for v in oracle.versions[dataset]
            if (key_of(spec, v), v["known_at"]) == (key_of(spec, row), row["known_at"])
        ]
        if at_k:
            cur = max(at_k, key=lambda v: v["recorded_at"])
            if challenger is None or oracle.rank(challenger, ranks) > oracle.rank(oracle.feed_of(dataset, cur), ranks):
                out.append(r)
    return out


def assert_stores_nothing(runner: Runner, dataset: str, i: int, plan: Plan, pairs) -> None:
    """Loads ``plan`` (a re-delivery): nothing stored, no change logged, every answer unchanged."""
    before, changes, seen = stored_versions(dataset), change_count(dataset), answers(dataset, pairs)
    result = runner.load(i, plan)
    assert result is not None, f"load {i}: a re-delivery of a stored load was rejected"
    assert (result.inserted, result.revised, result.outranked) == (0, 0, 0), f"load {i}: {result.counts()}"
    assert result.duplicates + result.rejected == result.rows_read
    assert_same_rows(stored_versions(dataset), before, f"re-delivery {i} changed the dataset table")
    assert change_count(dataset) == changes, f"re-delivery {i} logged a change"
    for (at, rb), old, new in zip(pairs, seen, answers(dataset, pairs)):
        assert_same_sequence(new, old, f"history({dataset}, at={at}, rb={rb}) after re-delivery {i}")
    event("a re-delivery" + (" took the replay shortcut" if result.replay_of else " was merged"))
    if result.resent:
        event("a re-delivery re-sent superseded or outranked values")


@pytest.mark.parametrize("dataset", sorted(ROWS))
@hsettings(max_examples=20, **SETTINGS)
@given(data=st.data(), batch_rows=BATCH_ROWS, direct=st.booleans(), seed=SEEDS)
def test_extended_histories_match_the_oracle(dataset, db, settings, data, batch_rows, direct, seed):
    """(i) Histories with feeds and a feed precedence, re-deliveries, re-assertions and curation fixes
    (market data: some loads as CSV files, so the replay shortcut answers some re-deliveries): counts,
    stored, outranked and re-sent rows load by load, then every selector as of many T and as recorded
    by every load, against the oracle."""
    pinned = PINNED.get(dataset, ())
    files = dataset == "market_data"
    plans = data.draw(histories(dataset, ROWS[dataset], pinned=pinned, max_loads=7, extended=True, files=files))
    oracle, recorded = run_history(dataset, plans, batch_rows, settings, direct=direct)
    CHECKS[dataset](oracle, plans, recorded, random.Random(seed))


@pytest.mark.parametrize("dataset", sorted(ROWS))
@hsettings(max_examples=15, **SETTINGS)
@given(data=st.data(), batch_rows=BATCH_ROWS, direct=st.booleans(), seed=SEEDS)
def test_re_delivering_any_earlier_file_stores_nothing_and_changes_no_answer(
    dataset, db, settings, data, batch_rows, direct, seed
):
    """(ii) The issue's promise. Where each key has one known_at (vendor files: known_at from the event
    time), re-delivering any earlier file without re-assertion, at any point of the history (after
    curation fixes, vendor updates, under any feed precedence), stores nothing (inserted = revised =
    outranked = 0), logs no change, and every answer as of any T, as recorded by now or by any earlier
    instant, stays what it was."""
    plans = data.draw(vendor_histories(dataset, ROWS[dataset], files=dataset == "market_data"))
    rng = random.Random(seed)
    note(f"batch_rows={batch_rows} direct={direct}\n{describe(plans)}")
    runner = Runner(dataset, batch_rows, settings, direct=direct)
    ts = instants(dataset, plans)
    for i, plan in enumerate(plans):
        if is_redelivery(plans, runner.results, i):
            assert_stores_nothing(runner, dataset, i, plan, answer_pairs(rng, ts, runner.recorded))
        else:
            runner.load(i, plan)
    # then every earlier load again, in any order
    for j in data.draw(st.permutations(range(len(plans)))):
        if runner.results[j] is not None:  # (a load rejected for a conflict loaded nothing)
            pairs = answer_pairs(rng, ts, runner.recorded)
            assert_stores_nothing(runner, dataset, len(runner.results), plans[j], pairs)
    CHECKS[dataset](runner.oracle, plans, runner.recorded, rng)


@pytest.mark.parametrize("dataset", sorted(ROWS))
@hsettings(max_examples=10, **SETTINGS)
@given(data=st.data(), batch_rows=BATCH_ROWS, direct=st.booleans(), seed=SEEDS)
def test_re_asserting_a_fixed_file_makes_its_values_current_again(
    dataset, db, settings, data, batch_rows, direct, seed
):
    """(iii) A vendor file, then curation fixes of its rows, then the file re-delivered with
    reassert=True (overruling the precedence where the vendor ranks below): every row of the file is
    current again (as of its known_at and after), and every answer, as recorded by any instant, equals
    the oracle's (as recorded before the re-assertion: the fixes)."""
    spec = DATASETS[dataset]
    keep = (*spec.key, "known_at", *PINNED.get(dataset, ()))
    plans = data.draw(vendor_histories(dataset, ROWS[dataset], max_loads=4))
    note(f"batch_rows={batch_rows} direct={direct}\n{describe(plans)}")
    runner = Runner(dataset, batch_rows, settings, direct=direct)
    for i, plan in enumerate(plans):
        runner.load(i, plan)
    vendor_loads = [j for j, p in enumerate(plans) if p.feed != CURATION and runner.results[j] is not None]
    if not vendor_loads:
        event("no vendor load was stored")
        return
    file = plans[data.draw(st.sampled_from(vendor_loads))]
    fixes = [fixed(dataset, r, data.draw(ROWS[dataset](3, like=r)), keep) for r in file.rows]
    fix = Plan(remove_conflicts(dataset, fixes), "reject", CURATION, ranks=file.ranks)
    outranked = bool(file.ranks) and runner.oracle.rank(file.feed, file.ranks) > 0
    overrule = outranked or data.draw(st.booleans())
    again = Plan([dict(r) for r in file.rows], file.on_error, file.feed, True, overrule, file.ranks)
    again.as_file = file.as_file and not overrule
    note(f"fix:\n{describe([fix])}\nre-asserted:\n{describe([again])}")
    runner.load(len(plans), fix)
    result = runner.load(len(plans) + 1, again)
    assert result is not None and result.resent == 0 and result.outranked == 0, result.counts()
    event("the re-assertion stored versions" if result.revised else "the fixes equalled the file")

    given_rows = file_rows(file.rows) if file.as_file else file.rows
    sent, _, _ = runner.oracle.collapse(dataset, [typed_row(dataset, r) for r in given_rows], on_error="skip")
    for (key, known_at), row in sent.items():
        now = {key_of(spec, r): r for r in pit.history(dataset=dataset, at=known_at)}
        assert key in now and values_of(spec, now[key]) == values_of(spec, row), (
            f"as of {known_at}: {now.get(key)}, the re-asserted file says {row}"
        )
    end = instants(dataset, plans)[-1]
    latest = {key_of(spec, r): r for r in pit.history(dataset=dataset, at=end)}
    for (key, _), row in sent.items():
        assert values_of(spec, latest[key]) == values_of(spec, row), f"as of {end}: {latest[key]}, file {row}"
    CHECKS[dataset](runner.oracle, [*plans, fix, again], runner.recorded, random.Random(seed))


@pytest.mark.parametrize("dataset", sorted(ROWS))
@hsettings(max_examples=12, **SETTINGS)
@given(
    data=st.data(),
    ranks=st.sampled_from([r for r in RANKS if r]),
    batch_rows=BATCH_ROWS,
    direct=st.booleans(),
    seed=SEEDS,
)
def test_a_lower_ranked_feed_never_changes_an_answer_and_is_kept_as_outranked(
    dataset, db, settings, data, ranks, batch_rows, direct, seed
):
    """(iv) Under a feed precedence, a feed ranked lower sends other values for (key, known_at)s whose
    current version comes from a feed ranked higher: nothing is stored in the dataset, no change is
    logged, no answer changes (as of any T, as recorded by any instant); the rows are kept as outranked
    versions (or are re-sends of one); afterwards every selector, as recorded by every earlier load,
    equals the oracle's."""
    spec = DATASETS[dataset]
    keep = (*spec.key, "known_at", *PINNED.get(dataset, ()))
    drawn = data.draw(histories(dataset, ROWS[dataset], pinned=PINNED.get(dataset, ()), max_loads=5, extended=True))
    plans = [dataclasses.replace(p, ranks=ranks) for p in drawn]
    challenger = data.draw(st.sampled_from([f for f in (*VENDORS, CURATION) if f != ranks[0]]), label="challenger")
    note(f"batch_rows={batch_rows} direct={direct}\n{describe(plans)}")
    rng = random.Random(seed)
    runner = Runner(dataset, batch_rows, settings, direct=direct)
    for i, plan in enumerate(plans):
        runner.load(i, plan)
    oracle = runner.oracle
    targets = held_above(oracle, dataset, plans, challenger, ranks)
    if not targets:  # the top-ranked feed takes over some (key, known_at)s first
        stored = held_above(oracle, dataset, plans, None, ranks)
        if not stored:
            event("nothing stored")
            return
        picked = data.draw(st.lists(st.sampled_from(stored), min_size=1, max_size=4))
        top = Plan(
            remove_conflicts(dataset, [fixed(dataset, r, data.draw(ROWS[dataset](3, like=r)), keep) for r in picked]),
            "reject",
            ranks[0],
            ranks=ranks,
        )
        note(f"the top-ranked feed:\n{describe([top])}")
        runner.load(len(plans), top)
        plans = [*plans, top]
        targets = held_above(oracle, dataset, plans, challenger, ranks)
        if not targets:
            event("the top-ranked feed sent only what was current")
            return
    picked = data.draw(st.lists(st.sampled_from(targets), min_size=1, max_size=5))
    rows = remove_conflicts(dataset, [fixed(dataset, r, data.draw(ROWS[dataset](3, like=r)), keep) for r in picked])
    challenge = Plan(rows, "reject", challenger, ranks=ranks)
    note(f"challenge:\n{describe([challenge])}")
    pairs = answer_pairs(rng, instants(dataset, plans), runner.recorded)
    before, changes, seen = stored_versions(dataset), change_count(dataset), answers(dataset, pairs)
    kept_before = len(oracle.outranked[dataset])
    result = runner.load(len(plans), challenge)
    assert (result.inserted, result.revised) == (0, 0), result.counts()
    assert result.outranked + result.duplicates == result.rows_read, result.counts()
    assert len(oracle.outranked[dataset]) == kept_before + result.outranked
    assert_same_rows(stored_versions(dataset), before, "a lower-ranked feed changed the dataset table")
    assert change_count(dataset) == changes, "a lower-ranked feed logged a change"
    for (at, rb), old, new in zip(pairs, seen, answers(dataset, pairs)):
        assert_same_sequence(new, old, f"history({dataset}, at={at}, rb={rb}) after the lower-ranked feed")
    event("rows were outranked" if result.outranked else "the lower-ranked rows were all re-sends")
    CHECKS[dataset](oracle, [*plans, challenge], runner.recorded, rng)


# --- conflicts -------------------------------------------------------------------------------------


def _conflicting(dataset: str, row: dict) -> dict:
    """The same key and known_at as ``row`` with different values."""
    if dataset == "market_data":
        changed = {"open": "10", "high": "11", "low": "9", "close": "10.75"}
    elif dataset == "news_events":
        changed = {"title": row["title"] + " (corrected)"}
    elif dataset == "government_events":
        changed = {"market_impact": "-0.25"}
    else:  # insider_trades, social_sentiment
        changed = {"shares": "999"} if dataset == "insider_trades" else {"mention_count": "999"}
    return {**row, **changed, "known_at": iso(resolved(dataset, row)["known_at"])}


@hsettings(max_examples=20, **SETTINGS)
@given(data=st.data(), batch_rows=BATCH_ROWS)
def test_the_direct_path_on_its_own_connection_stores_what_the_oracle_does(
    transactional_db, settings, data, batch_rows
):
    """Outside a transaction the direct path runs on a second connection (commit, rollback and the redo
    through staging are its own): the same counts and versions as the oracle, load after load."""
    dataset = data.draw(st.sampled_from(["market_data", "social_sentiment", "news_events"]))
    plans = data.draw(histories(dataset, ROWS[dataset]))
    run_history(dataset, plans, batch_rows, settings, direct=True)


@hsettings(max_examples=25, **SETTINGS)
@given(data=st.data(), batch_rows=BATCH_ROWS)
def test_it_rejects_a_conflicting_load_and_stores_nothing(db, settings, data, batch_rows):
    dataset = data.draw(st.sampled_from(sorted(ROWS)))
    row = ROWS[dataset]
    pinned = ("filing_date",) if dataset == "insider_trades" else ()
    plans = data.draw(histories(dataset, row, pinned=pinned, max_loads=3, conflicts=False))
    oracle, recorded = run_history(dataset, plans, batch_rows, settings, direct=data.draw(st.booleans()))
    before = stored_versions(dataset)
    rows = data.draw(st.lists(row(3), min_size=1, max_size=5))
    bad = _conflicting(dataset, data.draw(st.sampled_from(rows)))
    rows = list(data.draw(st.permutations([*rows, bad])))
    with pytest.raises(OracleConflict):
        oracle.collapse(dataset, [typed_row(dataset, r) for r in rows])
    with pytest.raises(LoadRejected) as caught:
        ingest_table(dataset=dataset, data=rows)
    result = caught.value.result
    assert result.rejected >= 2
    assert all(e.column == "known_at" and "conflicts with row" in e.message for e in result.errors)
    assert_same_rows(stored_versions(dataset), before, "a rejected load changed the table")
    assert_same_rows(stored_versions(dataset), oracle.all_versions(dataset), "stored versions")


def test_it_marks_a_load_rejected_for_a_conflict_as_rejected_and_keeps_its_bad_rows(db):
    """A conflict rejection finishes its Load as "rejected" and keeps the conflicting rows quarantined.

    Regression (loader at commit 9fe9d27): ``_reject_conflicts`` quarantined the rows and raised
    LoadRejected inside the merge's ``transaction.atomic()``, so the RejectedRow inserts were rolled
    back, and ``_ingest`` re-raised LoadRejected without ``_finish``: the Load stayed
    status="loading", rejected=0, error="", with no RejectedRow.
    """
    wipe_datasets()
    rows = [bar("AAA", 0, close="10.5"), bar("AAA", 0, close="10.75")]
    with pytest.raises(LoadRejected) as caught:
        ingest_table(dataset="market_data", data=rows)
    assert count_rows("market_data") == 0
    load = Load.objects.get(pk=caught.value.result.load_id)
    assert (load.status, load.rejected) == (Load.Status.REJECTED, 2)
    assert sorted(RejectedRow.objects.filter(load=load).values_list("row_number", flat=True)) == [1, 2]

"""Aggregates (timeseries/aggregates.py, pit.daily_bars / pit.hourly_sentiment) against a brute-force
from-scratch computation over the oracle (tests/oracle.py).

Random seeded histories (hypothesis) of minute bars and hourly sentiment windows with corrections
(same and later known_at), late bars, backfills of old days and exact replays are loaded one load at
a time through the loader; between loads the rollups consumer runs fully, partly (one change at a
time) or not at all. At many T (every time and knowledge time, 1 µs either side, day and hour
boundaries, T inside a day: partial days) and many S (None, every recorded_at and 1 µs either side)
the selectors must equal the aggregates computed from scratch from the oracle's versions. Each example
starts from empty tables without rollup state, so the consumer's first run is a rebuild from scratch.
"""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from hypothesis import HealthCheck, Phase, event, given, note
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from ingestion.loader import ingest_table
from tests.helpers import T0, floor, iso, same_sentiment, scratch_daily_bars, scratch_hourly_sentiment, wipe_datasets
from tests.oracle import Oracle, typed_row
from timeseries import aggregates, pit
from timeseries.aggregates import AGGREGATES, CONSUMER, rollups_refresh
from timeseries.changes import changes_lag

# outside a transaction: on the TimescaleDB lane the consumer refreshes continuous aggregates, which
# cannot run inside one (the same tests run on both lanes)
pytestmark = pytest.mark.django_db(transaction=True)

US = timedelta(microseconds=1)
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
DAY0 = T0.replace(hour=0, minute=0)
SETTINGS = dict(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)
SEEDS = st.integers(0, 2**32 - 1)


# --- random histories ---------------------------------------------------------------------------------


def wipe_all() -> None:
    wipe_datasets()
    tables = ["timeseries_change", "timeseries_change_cursor", "timeseries_rollup_state"]
    tables += [a.rollup_table for a in AGGREGATES.values()]
    with connection.cursor() as cur:
        cur.execute("TRUNCATE " + ", ".join(tables))


def random_bar(rng: random.Random, symbol: str, t: datetime, known_at: datetime | None) -> dict:
    low = Decimal(rng.randint(900, 1000)) / 100
    high = low + Decimal(rng.randint(0, 300)) / 100
    span = int((high - low) * 100)
    row = {
        "time": iso(t),
        "symbol": symbol,
        "low": str(low),
        "high": str(high),
        "open": str(low + Decimal(rng.randint(0, span)) / 100),
        "close": str(low + Decimal(rng.randint(0, span)) / 100),
        "volume": str(rng.choice([0, 1, 100, 250, rng.randint(0, 10_000)])),
        "vwap": rng.choice(["", str(low + Decimal(rng.randint(0, span * 1000)) / 100_000)]),
    }
    if known_at is not None:
        row["known_at"] = iso(known_at)
    return row


BAR_MINUTES = [0, 1, 2, 59, 60, 61, 719, 720, 1438, 1439]  # 23:59 closes exactly at midnight


def market_loads(rng: random.Random, symbols=("AAA", "BBB"), days: int = 4, loads: int = 6) -> list[list[dict]]:
    """Loads: day by day arrivals, late corrections (known next day), same-known_at corrections,
    backfills of old days (arriving after later days) and exact replays of earlier loads."""
    slots = [(s, DAY0 + d * DAY + timedelta(minutes=m)) for s in symbols for d in range(days) for m in BAR_MINUTES]
    rng.shuffle(slots)
    sent: list[dict] = []
    out = []
    for i in range(loads):
        rows: dict[tuple, dict] = {}
        for s, t in slots[i * len(slots) // loads : (i + 1) * len(slots) // loads]:
            late = rng.random() < 0.2
            rows[(s, t)] = random_bar(rng, s, t, t + timedelta(minutes=rng.choice([2, 90, 1500])) if late else None)
        for old in rng.sample(sent, min(len(sent), rng.randint(0, 4))):  # corrections
            t = datetime.fromisoformat(old["time"])
            choice = rng.random()
            known_at = None if choice < 0.4 else t + timedelta(minutes=rng.choice([1, 30, 600, 2000]))
            rows[(old["symbol"], t)] = random_bar(rng, old["symbol"], t, known_at)
        if sent and rng.random() < 0.3:  # a replay of a row already sent: a duplicate, or a version if superseded
            old = rng.choice(sent)
            rows[(old["symbol"], datetime.fromisoformat(old["time"]))] = dict(old)
        out.append(list(rows.values()))
        sent.extend(rows.values())
    return out


PLATFORMS = ["x", "reddit", "stocktwits"]


def sentiment_loads(rng: random.Random, symbols=("AAA",), hours: int = 30, loads: int = 5) -> list[list[dict]]:
    slots = [(s, p, DAY0 + h * HOUR) for s in symbols for p in PLATFORMS for h in range(hours) if rng.random() < 0.6]
    rng.shuffle(slots)
    sent: list[dict] = []
    out = []

    def window(s, p, t, known_at):
        row = {
            "time": iso(t),
            "symbol": s,
            "platform": p,
            "mention_count": rng.choice(["", "0", str(rng.randint(1, 500))]),
            "sentiment_avg": rng.choice(["", str(rng.randint(-100, 100) / 100)]),
        }
        if known_at is not None:
            row["known_at"] = iso(known_at)
        return row

    for i in range(loads):
        rows: dict[tuple, dict] = {}
        for s, p, t in slots[i * len(slots) // loads : (i + 1) * len(slots) // loads]:
            rows[(s, p, t)] = window(s, p, t, t + HOUR + timedelta(minutes=rng.choice([0, 0, 0, 30, 200])))
        for old in rng.sample(sent, min(len(sent), rng.randint(0, 4))):
            t = datetime.fromisoformat(old["time"])
            known_at = None if rng.random() < 0.4 else t + HOUR + timedelta(minutes=rng.choice([1, 45, 900]))
            rows[(old["symbol"], old["platform"], t)] = window(old["symbol"], old["platform"], t, known_at)
        out.append(list(rows.values()))
        sent.extend(rows.values())
    return out


def load_all(
    oracle: Oracle, dataset: str, loads: list[list[dict]], rng: random.Random, after_each=None
) -> list[datetime]:
    recorded = []
    for rows in loads:
        result = ingest_table(dataset=dataset, data=[dict(r) for r in rows])
        oracle.load(dataset, [typed_row(dataset, r) for r in rows], result.recorded_at)
        recorded.append(result.recorded_at)
        mode = rng.choice(["all", "one", "none"])
        note(f"load {len(recorded)}: {len(rows)} rows, rollups: {mode}")
        if mode == "all":
            rollups_refresh(dataset=dataset)
        elif mode == "one":
            rollups_refresh(dataset=dataset, batch=1, max_batches=1)
        if after_each:
            after_each()
    return recorded


def instants(oracle: Oracle, dataset: str, width: timedelta, rng: random.Random, n: int) -> list[datetime]:
    base = set()
    for v in oracle.all_versions(dataset):
        for t in (v["time"], v["known_at"]):
            base |= {t - US, t, t + US}
        base |= {floor(v["time"], width) + width - US, floor(v["time"], width) + width}
    base = sorted(base)
    return sorted(rng.sample(base, min(n, len(base)))) + [base[-1] + DAY]


def replays(recorded: list[datetime], rng: random.Random) -> list[datetime | None]:
    points = [None, recorded[0] - US] + [r + d for r in recorded for d in (-US, timedelta(0), US)]
    return [None] + rng.sample(points[1:], min(4, len(points) - 1))


def check_daily(oracle, recorded, rng, n_at=25) -> dict[str, int]:
    sources: dict[str, int] = defaultdict(int)
    for at in instants(oracle, "market_data", DAY, rng, n_at):
        for rb in replays(recorded, rng):
            symbol = rng.choice(["AAA", "BBB"])
            start = DAY0 + rng.choice([-DAY, timedelta(0), timedelta(hours=13), DAY + timedelta(minutes=1)])
            end = start + rng.choice([timedelta(0), DAY, 10 * DAY])
            got = pit.daily_bars(symbol=symbol, at=at, start=start, end=end, recorded_by=rb)
            want = scratch_daily_bars(oracle, symbol=symbol, at=at, start=start, end=end, recorded_by=rb)
            assert got == want, (symbol, at, start, end, rb)
            for r in aggregates.aggregate_read(
                aggregate="daily_ohlcv", symbol=symbol, at=at, start=start, end=end, recorded_by=rb
            ):
                sources[r["source"]] += 1
    return sources


def check_hourly(oracle, recorded, rng, n_at=25) -> dict[str, int]:
    sources: dict[str, int] = defaultdict(int)
    for at in instants(oracle, "social_sentiment", HOUR, rng, n_at):
        for rb in replays(recorded, rng):
            start = DAY0 + rng.choice([-HOUR, timedelta(0), timedelta(minutes=90), 5 * HOUR])
            end = start + rng.choice([timedelta(0), 3 * HOUR, 3 * DAY])
            got = pit.hourly_sentiment(symbol="AAA", at=at, start=start, end=end, recorded_by=rb)
            want = scratch_hourly_sentiment(oracle, symbol="AAA", at=at, start=start, end=end, recorded_by=rb)
            assert same_sentiment(got, want), (at, start, end, rb, got, want)
            for r in aggregates.aggregate_read(
                aggregate="hourly_sentiment", symbol="AAA", at=at, start=start, end=end, recorded_by=rb
            ):
                sources[r["source"]] += 1
    return sources


# --- property tests ---------------------------------------------------------------------------------


def run_before_and_after_rollups(seed: int, dataset: str, loads, check) -> tuple[dict, dict]:
    """Load a random history (the consumer running fully, partly or not between loads), check at many
    T and S, run the consumer to the end, check again; returns the read sources of both checks."""
    wipe_all()
    rng = random.Random(seed)
    oracle = Oracle()
    recorded = load_all(oracle, dataset, loads(rng), rng)
    note(f"lag before the first check: {changes_lag(consumer=CONSUMER, dataset=dataset)}")
    before = check(oracle, recorded, rng)
    rollups_refresh(dataset=dataset)
    after = check(oracle, recorded, rng)
    assert after["stored"] > 0
    event(f"stored buckets read before the final refresh: {'some' if before['stored'] else 'none'}")
    return before, after


@hsettings(max_examples=12, **SETTINGS)
@given(seed=SEEDS)
def test_it_matches_daily_bars_from_scratch_on_random_histories_before_and_after_rollups(seed):
    run_before_and_after_rollups(seed, "market_data", market_loads, check_daily)


@hsettings(max_examples=10, **SETTINGS)
@given(seed=SEEDS)
def test_it_matches_hourly_sentiment_from_scratch_on_random_histories_before_and_after_rollups(seed):
    run_before_and_after_rollups(seed, "social_sentiment", sentiment_loads, check_hourly)


@hsettings(max_examples=4, **SETTINGS)
@given(seed=SEEDS)
def test_it_stays_exact_while_checked_between_every_load(seed):
    """Answers are checked after every load, whatever the consumer has or has not caught up with."""
    wipe_all()
    rng = random.Random(seed)
    oracle = Oracle()
    recorded: list[datetime] = []

    def check():
        recorded[:] = sorted(oracle.loads)
        check_daily(oracle, recorded, rng, n_at=8)

    load_all(oracle, "market_data", market_loads(rng, loads=5), rng, after_each=check)

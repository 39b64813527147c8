"""Property tests: random histories of loads *and curations*, selectors with min_quality compared with the oracle.

Each example wipes the store, then runs a random sequence of loads (corrections, late known_at,
replays) through the loader and curations (random stored versions set to random scores) through
``quality.quality_scores_set``, mirroring both into ``tests.oracle.Oracle`` with the load's
recorded_at and each audit row's changed_at. Then ``pit.market_state``, ``pit.history`` and
``pit.asof_join`` and ``pit.recent_bars`` are compared with the oracle for many T, many S (None, every load and every
curation instant, 1 µs either side) and min_quality in {None, 0.3, 0.5, 1}:

* a row's score as recorded by S is the old score of its earliest audit after S, else its current score;
* min_quality keeps unscored rows and rows scored >= min_quality, and drops an excluded truth without
  bringing back an older version of its key; market_state then gives the latest *good* bar.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import exchange_calendars as xcals
import pytest
from django.db import connection
from django.test import override_settings
from hypothesis import given, note
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from ingestion.loader import ingest_table
from tests.helpers import T0, assert_same_rows, assert_same_sequence, bar, wipe_datasets
from tests.histories import SETTINGS
from tests.oracle import Oracle, gap_findings, trading_periods, typed_row
from timeseries import pit, quality
from timeseries.datasets import DATASETS
from timeseries.models import MarketData, QualityAudit, QualityFlag

pytestmark = pytest.mark.django_db
US = timedelta(microseconds=1)
SPEC = DATASETS["market_data"]
QUALITIES = [None, 0.3, 0.5, 1.0]


@st.composite
def steps(draw):
    out = []
    for _ in range(draw(st.integers(1, 4))):
        rows: dict[tuple, dict] = {}
        for _ in range(draw(st.integers(1, 7))):
            symbol, minute = draw(st.sampled_from(["A", "B"])), draw(st.integers(0, 4))
            delay = draw(st.sampled_from([0, 0, 2]))
            close = draw(st.sampled_from(["9.5", "10", "10.5"]))
            known = T0 + timedelta(minutes=minute + 1 + delay)
            extra = {"known_at": known.isoformat()}
            if draw(st.booleans()):
                extra["quality_score"] = draw(st.sampled_from(["1", "0.4"]))
            rows.setdefault((symbol, minute, delay), bar(symbol, minute, close=close, **extra))
        out.append(("load", list(rows.values())))
        for _ in range(draw(st.integers(0, 2))):
            picks = draw(st.lists(st.integers(0, 10_000), min_size=1, max_size=4))
            out.append(("curate", picks, draw(st.sampled_from([0.0, 0.3, 0.45, 0.7, 1.0]))))
    return out


def wipe() -> None:
    wipe_datasets()
    with connection.cursor() as cur:
        cur.execute("TRUNCATE timeseries_quality_audit, timeseries_quality_flag, timeseries_change")


def run(history) -> tuple[Oracle, list]:
    oracle, instants = Oracle(), []
    for step in history:
        if step[0] == "load":
            result = ingest_table(dataset="market_data", data=step[1])
            if result.inserted or result.revised:
                oracle.load("market_data", [typed_row("market_data", r) for r in step[1]], result.recorded_at)
            instants.append(result.recorded_at)
            continue
        _, picks, score = step
        ids = sorted(MarketData.objects.values_list("id", flat=True))
        chosen = sorted({ids[p % len(ids)] for p in picks})
        done = quality.quality_scores_set(dataset="market_data", rows=chosen, score=score, reason="property test")
        audits = {a.row_id: a.changed_at for a in QualityAudit.objects.filter(batch=done.batch)}
        changed = 0
        for row in MarketData.objects.filter(id__in=chosen):
            version = (str(row.symbol), row.time, row.known_at, row.recorded_at)
            changed_at = audits.get(row.id)
            if changed_at is not None:
                instants.append(changed_at)
            changed += oracle.curate("market_data", version, score, changed_at) if changed_at else 0
            assert (changed_at is not None) == (row.quality_score == score and row.id in audits)
        assert changed == done.changed
    return oracle, instants


@hsettings(max_examples=25, **SETTINGS)
@given(history=steps(), seed=st.integers(0, 2**32 - 1))
def test_it_agrees_with_the_oracle_on_min_quality_and_scores_as_recorded(history, seed):
    wipe()
    note(f"history={history}")
    oracle, instants = run(history)
    rnd = random.Random(seed)
    times = sorted({v[c] for v in oracle.all_versions("market_data") for c in ("time", "known_at")})
    ats = sorted({t + d for t in times for d in (-US, timedelta(0))} | {T0 + timedelta(hours=1)})
    ses = [None] + sorted({s + d for s in instants for d in (-US, timedelta(0), US)})
    for at in rnd.sample(ats, min(4, len(ats))):
        points = [{"symbol": s, "time": at} for s in ("A", "B", "C")]
        for rb in rnd.sample(ses, min(5, len(ses))):
            for mq in QUALITIES:
                what = f"at={at} recorded_by={rb} min_quality={mq}"
                assert_same_sequence(
                    pit.market_state(at=at, recorded_by=rb, min_quality=mq),
                    oracle.market_state(at=at, recorded_by=rb, min_quality=mq),
                    f"market_state {what}",
                )
                assert_same_sequence(
                    pit.history(dataset="market_data", at=at, recorded_by=rb, min_quality=mq),
                    oracle.history(dataset="market_data", at=at, recorded_by=rb, min_quality=mq),
                    f"history {what}",
                )
                bars_cols = ("time", "open", "high", "low", "close", "volume", "recorded_at")
                assert_same_sequence(
                    pit.recent_bars(symbol="A", at=at, bars=3, recorded_by=rb, min_quality=mq),
                    [
                        {c: r[c] for c in bars_cols}
                        for r in oracle.recent_bars(symbol="A", at=at, bars=3, recorded_by=rb, min_quality=mq)
                    ],
                    f"recent_bars {what}",
                )
                assert_same_rows(
                    pit.asof_join(points, recorded_by=rb, min_quality=mq),
                    oracle.asof_join(points, recorded_by=rb, min_quality=mq),
                    f"asof_join {what}",
                )


def test_it_excludes_a_suspect_truth_without_bringing_back_its_older_version():
    ingest_table(dataset="market_data", data=[bar("A", 0, close="10"), bar("A", 1, close="10")])
    ingest_table(
        dataset="market_data", data=[bar("A", 1, close="10.5", known_at=(T0 + timedelta(minutes=5)).isoformat())]
    )
    at = T0 + timedelta(minutes=10)
    corrected = MarketData.objects.get(close="10.5")
    quality.quality_scores_set(dataset="market_data", rows=[corrected.id], score=0, reason="bad correction")
    state = pit.market_state(at=at, min_quality=0.5)
    assert [(r["time"], r["close"]) for r in state] == [
        (T0, 10)
    ]  # the latest good bar, not the old version of minute 1
    assert [r["time"] for r in pit.history(dataset="market_data", at=at, min_quality=0.5)] == [T0]


def test_it_replays_the_score_as_it_stood_when_recorded():
    ingest_table(dataset="market_data", data=[bar("A", 0)])
    with connection.cursor() as cur:
        cur.execute("SELECT clock_timestamp()")
        before = cur.fetchone()[0]
    quality.quality_scores_set(dataset="market_data", rows=MarketData.objects.all(), score=0.2, reason="r")
    at = T0 + timedelta(hours=1)
    assert pit.market_state(at=at, min_quality=0.5) == []
    replay = pit.market_state(at=at, recorded_by=before, min_quality=0.5)
    assert [r["quality_score"] for r in replay] == [1.0]
    assert [r["quality_score"] for r in pit.market_state(at=at, recorded_by=before)] == [1.0]


def test_it_keeps_unscored_news_and_drops_news_scored_below_min_quality():
    story = {"symbol": "AAPL", "source": "wire"}
    ingest_table(
        dataset="news_events",
        data=[
            {**story, "time": T0.isoformat(), "title": "a", "url": "a"},
            {**story, "time": T0.isoformat(), "title": "b", "url": "b", "quality_score": "0.2"},
            {**story, "time": T0.isoformat(), "title": "c", "url": "c", "quality_score": "0.9"},
        ],
    )
    titles = [r["title"] for r in pit.news(at=T0 + timedelta(hours=1), min_quality=0.5)]
    assert sorted(titles) == ["a", "c"]


@pytest.mark.parametrize("bad", [-0.1, 1.5, "x", float("nan")])
def test_it_refuses_a_bad_min_quality_naming_it(bad):
    with pytest.raises(ValueError, match="min_quality="):
        pit.market_state(at=T0, min_quality=bad)


def test_it_refuses_min_quality_on_a_dataset_without_scores():
    with pytest.raises(ValueError, match="min_quality: insider_trades has no quality_score"):
        pit.history(dataset="insider_trades", at=T0, min_quality=0.5)


# --- the gap check against a brute-force rule on the package's own schedule --------------------------

# minute bars drawn around an ordinary close and open (July 2 / 3), the early close of July 3 (17:00
# UTC), the July 4 holiday, and a lunch break (XHKG); a bar is kept or dropped at random
XNYS_WINDOWS = [
    (datetime(2024, 7, 2, 19, 40, tzinfo=UTC), 30),
    (datetime(2024, 7, 3, 13, 20, tzinfo=UTC), 25),
    (datetime(2024, 7, 3, 16, 40, tzinfo=UTC), 40),
    (datetime(2024, 7, 4, 15, 0, tzinfo=UTC), 20),
    (datetime(2024, 7, 5, 13, 25, tzinfo=UTC), 25),
]
XHKG_WINDOWS = [(datetime(2024, 3, 4, 3, 45, tzinfo=UTC), 90)]


@st.composite
def minute_bars(draw, windows):
    candidates = [start + timedelta(minutes=m) for start, count in windows for m in range(count)]
    keep = draw(st.lists(st.booleans(), min_size=len(candidates), max_size=len(candidates)))
    return [t for t, k in zip(candidates, keep) if k or t.minute % 7 == 0]  # a few always there


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pandas 3 deprecations inside exchange-calendars
@pytest.mark.parametrize("mic, windows", [("XNYS", XNYS_WINDOWS), ("XHKG", XHKG_WINDOWS)])
@hsettings(max_examples=15, **SETTINGS)
@given(data=st.data())
def test_the_gap_check_agrees_with_a_brute_force_rule_on_the_packages_sessions(mic, windows, data):
    times = data.draw(minute_bars(windows))
    wipe()
    schedule = xcals.get_calendar(mic, start="2024-02-01", end="2024-07-31").schedule
    ingest_table(dataset="market_data", data=[{**bar("S", 0), "time": t.isoformat()} for t in times])
    with override_settings(TSM_DEFAULT_EXCHANGE=mic):
        quality.quality_checks_range(
            dataset="market_data", symbols=["S"], start=times[0] - timedelta(days=1), end=times[-1] + timedelta(days=1)
        )
    flagged = {
        f.time: int(f.reason.split("no bar for ")[1].split(" ")[0])
        for f in QualityFlag.objects.filter(check_name="gap")
    }
    assert flagged == gap_findings(times, trading_periods(schedule))

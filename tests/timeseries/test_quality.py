"""Curation services (timeseries/quality/): audited score changes and the automatic checks."""

from __future__ import annotations

import json
import warnings
from datetime import UTC, datetime, timedelta
from io import StringIO

import exchange_calendars as xcals
import pandas as pd
import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from ingestion.loader import ingest_table
from tests.helpers import T0, bar, bars
from timeseries import cache, quality
from timeseries.calendars import session_at
from timeseries.changes import changes_lag
from timeseries.models import ChangeCursor, MarketData, NewsEvent, QualityAudit, QualityFlag

pytestmark = pytest.mark.django_db


def generation(dataset: str) -> str:
    return cache.generations([dataset])[dataset]


def test_it_sets_scores_of_a_queryset_and_audits_each_row_with_old_and_new_score():
    ingest_table(dataset="market_data", data=[bar("AAPL", i) for i in range(3)] + [bar("MSFT", 0)])
    user = User.objects.create(username="curator")
    before = generation("market_data")
    result = quality.quality_scores_set(
        dataset="market_data", rows=MarketData.objects.filter(symbol="AAPL"), score=0.25, reason="bad feed", user=user
    )
    assert result.changed == 3
    assert sorted(MarketData.objects.values_list("symbol", "quality_score")) == [
        ("AAPL", 0.25),
        ("AAPL", 0.25),
        ("AAPL", 0.25),
        ("MSFT", 1.0),
    ]
    audits = list(QualityAudit.objects.order_by("time"))
    assert [(a.symbol, a.time, a.old_score, a.new_score, a.reason, a.source, a.user_id, a.batch) for a in audits] == [
        ("AAPL", T0 + timedelta(minutes=i), 1.0, 0.25, "bad feed", "user", user.pk, result.batch) for i in range(3)
    ]
    assert {a.row_id for a in audits} == set(MarketData.objects.filter(symbol="AAPL").values_list("id", flat=True))
    assert generation("market_data") != before


def test_it_leaves_rows_that_already_have_the_score_unaudited():
    ingest_table(dataset="market_data", data=[bar("AAPL", 0), bar("AAPL", 1, quality_score="0.5")])
    result = quality.quality_scores_set(dataset="market_data", rows=MarketData.objects.all(), score=0.5, reason="r")
    assert result.changed == 1
    assert QualityAudit.objects.get().time == T0


def test_it_sets_scores_in_one_statement_whatever_the_number_of_rows():
    ingest_table(dataset="market_data", data=[bar(f"S{i}", m) for i in range(20) for m in range(10)])
    with CaptureQueriesContext(connection) as ctx:
        result = quality.quality_scores_set(dataset="market_data", rows=MarketData.objects.all(), score=0, reason="all")
    assert result.changed == 200 and QualityAudit.objects.count() == 200
    touching = [q["sql"] for q in ctx.captured_queries if "UPDATE market_data" in q["sql"].replace('"', "")]
    assert len(touching) == 1 and "UPDATE" in touching[0] and "INSERT INTO timeseries_quality_audit" in touching[0]
    assert len(ctx.captured_queries) <= 5  # savepoint, lock, the statement, generation bump, release


@pytest.mark.parametrize(
    ("score", "reason", "message"),
    [
        ("1.5", "r", "score='1.5' is not a number between 0 and 1"),
        ("nan", "r", "score='nan' is not a number between 0 and 1"),
        ("high", "r", "score='high' is not a number between 0 and 1"),
        (None, "r", "score is required"),
        (0.5, "  ", "reason is required"),
    ],
)
def test_it_refuses_a_bad_score_or_no_reason_and_changes_nothing(score, reason, message):
    ingest_table(dataset="market_data", data=[bar("AAPL", 0)])
    with pytest.raises(quality.CurationError, match=message):
        quality.quality_scores_set(dataset="market_data", rows=MarketData.objects.all(), score=score, reason=reason)
    assert MarketData.objects.get().quality_score == 1.0 and not QualityAudit.objects.exists()


def test_it_refuses_to_curate_a_dataset_without_quality_score():
    with pytest.raises(quality.CurationError, match="dataset='insider_trades' has no quality_score"):
        quality.quality_scores_set(dataset="insider_trades", rows=[1], score=0, reason="r")


def test_it_keeps_a_curated_score_when_the_same_file_is_replayed():
    rows = [bar("AAPL", 0), bar("AAPL", 1)]
    ingest_table(dataset="market_data", data=rows)
    quality.quality_scores_set(dataset="market_data", rows=MarketData.objects.filter(time=T0), score=0, reason="r")
    replay = ingest_table(dataset="market_data", data=rows)
    assert (replay.inserted, replay.revised, replay.duplicates) == (0, 0, 2)
    assert sorted(MarketData.objects.values_list("quality_score", flat=True)) == [0.0, 1.0]


def test_it_curates_news_whose_score_starts_unscored():
    ingest_table(dataset="news_events", data=[{"time": T0.isoformat(), "symbol": "AAPL", "title": "t", "url": "u"}])
    assert NewsEvent.objects.get().quality_score is None
    quality.quality_scores_set(dataset="news_events", rows=NewsEvent.objects.all(), score=0.1, reason="spam")
    audit = QualityAudit.objects.get()
    assert (audit.dataset, audit.old_score, audit.new_score) == ("news_events", None, 0.1)


# --- the automatic checks --------------------------------------------------------------------------


def flags() -> dict[tuple[str, int], str]:
    return {(f.check_name, int((f.time - T0).total_seconds() // 60)): f.reason for f in QualityFlag.objects.all()}


def run_checks(symbol: str = "AAPL"):
    return quality.quality_checks_range(
        dataset="market_data", symbols=[symbol], start=T0 - timedelta(days=1), end=T0 + timedelta(days=1)
    )


def test_it_flags_and_marks_down_a_price_spike_against_its_neighbours():
    ingest_table(dataset="market_data", data=bars("AAPL", ["10", "10.1", "13", "10.05", "10.1"]))
    result = run_checks()
    assert list(flags()) == [("spike", 2)]
    assert "13.000000 is 28.7% away from its neighbours" in flags()[("spike", 2)]
    assert result.lowered == 1
    spiked = MarketData.objects.get(time=T0 + timedelta(minutes=2))
    assert spiked.quality_score == 0.2
    audit = QualityAudit.objects.get()
    assert (audit.row_id, audit.source, audit.user_id, audit.old_score) == (spiked.id, "check:spike", None, 1.0)


def test_it_judges_the_bars_next_to_a_later_load_again_with_their_new_neighbours():
    """A spike needs the bar after it: checking each load's own bars would never flag the last bar of
    one load once the next load supplies its neighbour. The checks re-judge bars within the margin."""
    closes = ["10", "10.1", "10.05", "10.1", "13"]
    ingest_table(dataset="market_data", data=bars("AAPL", closes))
    quality.quality_changes_process(dataset="market_data")
    assert list(flags()) == []  # minute 4 has no next bar yet
    later = bars("AAPL", closes + ["10.05", "10.1"])[5:]
    ingest_table(dataset="market_data", data=later)
    result = quality.quality_changes_process(dataset="market_data")
    assert list(flags()) == [("spike", 4)] and result.lowered == 1


def test_it_does_not_judge_bars_beyond_the_margin_of_a_change():
    """A load late in a day costs the bars around it, not the whole day: a bar far before the change
    is not judged again (its flag, cleared by hand here, is not recreated)."""
    closes = ["10", "10.1", "13", "10.05"] + ["10.1"] * (quality.EVAL_MARGIN + 10)
    ingest_table(dataset="market_data", data=bars("AAPL", closes))
    quality.quality_changes_process(dataset="market_data")
    assert ("spike", 2) in flags()
    QualityFlag.objects.all().delete()
    ingest_table(dataset="market_data", data=[bars("AAPL", closes + ["10.1"])[-1]])
    assert quality.quality_changes_process(dataset="market_data").spans == 1
    assert ("spike", 2) not in flags()


def test_it_flags_an_inconsistent_bar():
    data = bars("AAPL", ["10", "10", "10"])
    data[1].update(vwap="12")
    data[2].update(low="0", open="0.5")
    ingest_table(dataset="market_data", data=data)
    run_checks()
    found = flags()
    assert "vwap 12.000000 is outside [low 9.500000, high 10.500000]" in found[("ohlc", 1)]
    assert "a price is not positive" in found[("ohlc", 2)]
    assert MarketData.objects.get(time=T0 + timedelta(minutes=2)).quality_score == 0.0


def test_it_proposes_a_score_for_stale_prices_without_applying_it():
    ingest_table(dataset="market_data", data=bars("AAPL", ["10", "11", "11", "11", "11", "11", "12"]))
    run_checks()
    assert list(flags()) == [("stale", 5)]
    flag = QualityFlag.objects.get()
    assert (flag.proposed_score, flag.applied) == (0.5, False)
    assert set(MarketData.objects.values_list("quality_score", flat=True)) == {1.0}


def test_it_flags_a_volume_outlier():
    data = bars("AAPL", ["10"] * 3 + ["10.2", "10.1"] * 6)
    data[7]["volume"] = "5000"
    ingest_table(dataset="market_data", data=data)
    run_checks()
    assert "volume 5000 is" in flags()[("volume", 7)]
    assert ("volume", 6) not in flags()


def test_it_flags_a_gap_in_minute_bars_during_trading_hours_only():
    closes = ["10", "10.1"] * 5
    data = [b for i, b in enumerate(bars("AAPL", closes)) if i not in (4, 5)]
    # 09:30 New York is 14:30 UTC (T0); bars after 16:00 New York are outside the session
    late = [bar("AAPL", 60 * 7 + m) for m in (0, 5)]
    ingest_table(dataset="market_data", data=data + late)
    run_checks()
    assert [k for k in flags() if k[0] == "gap"] == [("gap", 6)]
    assert "no bar for 2 minutes" in flags()[("gap", 6)]


@pytest.mark.parametrize("step_s, gap_flagged", [(60, True), (30, False), (300, False)])
def test_it_looks_for_gaps_only_where_the_bars_around_are_one_minute_apart(step_s, gap_flagged):
    """Gaps are judged where the smallest step among the 30 bars around is one minute: 30-second bars
    missing a minute, or 5-minute bars, have no gap."""
    times = [T0 + timedelta(seconds=step_s * i) for i in range(20)]
    times = times[:8] + times[11:]  # three bars missing
    ingest_table(
        dataset="market_data",
        data=[{**bar("AAPL", 0), "time": t.isoformat()} for t in times],
        bar_interval=timedelta(seconds=min(step_s, 60)),
    )
    run_checks()
    assert [k[0] for k in flags() if k[0] == "gap"] == (["gap"] if gap_flagged else [])


# --- the gap check follows the sessions of the symbol's exchange (docs/calendars.md) --------------


def at_times(symbol: str, times: list[datetime]) -> list[dict]:
    return [{**bar(symbol, 0), "time": t.isoformat()} for t in times]


def minutes(start: datetime, count: int, missing: tuple[int, ...] = ()) -> list[datetime]:
    return [start + timedelta(minutes=m) for m in range(count) if m not in missing]


def gap_flags(symbol: str = "AAPL") -> dict[datetime, str]:
    quality.quality_checks_range(
        dataset="market_data",
        symbols=[symbol],
        start=datetime(2024, 1, 1, tzinfo=UTC),
        end=datetime(2025, 1, 1, tzinfo=UTC),
    )
    return {f.time: f.reason for f in QualityFlag.objects.filter(check_name="gap", symbol=symbol)}


def package_session(mic: str, day: str):
    """One session as the exchange-calendars package gives it (built here, not through timeseries.calendars)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # pandas 3 deprecations inside the package
        row = xcals.get_calendar(mic, start="2024-01-02", end="2024-12-31").schedule.loc[day]
    return {k: (None if pd.isna(v) else v.to_pydatetime()) for k, v in row.items()}


def test_a_gap_inside_a_session_is_flagged_with_the_minutes_missing():
    start = package_session("XNYS", "2024-07-02")["open"] + timedelta(hours=2)
    ingest_table(dataset="market_data", data=at_times("AAPL", minutes(start, 20, missing=(7, 8, 9, 10))))
    found = gap_flags()
    assert list(found) == [start + timedelta(minutes=11)]
    assert "no bar for 4 minutes before this one during the XNYS session" in found[start + timedelta(minutes=11)]


def test_no_gap_across_an_early_close_or_after_it_though_a_normal_day_has_them():
    """2024-07-03: the package closes XNYS at 13:00 New York (17:00 UTC); the same minutes on July 2
    lie inside its session and are gaps."""
    early, normal = package_session("XNYS", "2024-07-03")["close"], package_session("XNYS", "2024-07-02")["close"]
    assert early == datetime(2024, 7, 3, 17, tzinfo=UTC) and normal + timedelta(days=1) - early == timedelta(hours=3)
    # 10 bars up to the close, then bars from 2 minutes after it with a gap of 3 minutes among them
    pattern = minutes(early - timedelta(minutes=10), 30, missing=(10, 11, 20, 21, 22))
    ingest_table(dataset="market_data", data=at_times("EARLY", pattern))
    assert gap_flags("EARLY") == {}
    ingest_table(dataset="market_data", data=at_times("NORMAL", [t + timedelta(days=-1) for t in pattern]))
    assert sorted(gap_flags("NORMAL")) == [
        early + timedelta(days=-1, minutes=2),
        early + timedelta(days=-1, minutes=13),
    ]


def test_no_gap_on_a_holiday_though_the_next_day_has_one():
    assert session_at(exchange="XNYS", at=datetime(2024, 7, 4, 16, tzinfo=UTC)) is None
    pattern = minutes(datetime(2024, 7, 4, 16, tzinfo=UTC), 20, missing=(5, 6))
    ingest_table(dataset="market_data", data=at_times("AAPL", pattern))
    assert gap_flags() == {}
    ingest_table(dataset="market_data", data=at_times("AAPL", [t + timedelta(days=1) for t in pattern]))
    assert list(gap_flags()) == [datetime(2024, 7, 5, 16, 7, tzinfo=UTC)]


def test_no_gap_overnight_at_a_weekend_or_at_the_close_itself():
    friday, monday = package_session("XNYS", "2024-07-05"), package_session("XNYS", "2024-07-08")
    times = minutes(friday["close"] - timedelta(minutes=10), 8)  # Friday, up to 3 minutes before the close
    times += [friday["close"], friday["close"] + timedelta(minutes=3)]  # at the close and after: outside
    times += minutes(datetime(2024, 7, 6, 15, tzinfo=UTC), 10, missing=(4,))  # Saturday
    times += minutes(monday["open"], 10)  # Monday's open: the bar before it is Saturday's
    ingest_table(dataset="market_data", data=at_times("AAPL", times))
    assert gap_flags() == {}


def test_a_lunch_break_is_no_gap_but_a_gap_after_it_is():
    hk = package_session("XHKG", "2024-03-04")
    times = minutes(hk["break_start"] - timedelta(minutes=10), 10) + minutes(hk["break_end"], 15, missing=(6, 7))
    with override_settings(TSM_DEFAULT_EXCHANGE="XHKG"):
        ingest_table(dataset="market_data", data=at_times("0700", times))
        found = gap_flags("0700")
    assert list(found) == [hk["break_end"] + timedelta(minutes=8)]
    assert "during the XHKG session" in found[hk["break_end"] + timedelta(minutes=8)]


def test_it_flags_and_marks_down_a_duplicate_news_title():
    story = {"symbol": "AAPL", "source": "wire"}
    ingest_table(
        dataset="news_events",
        data=[
            {**story, "time": T0.isoformat(), "title": "Apple beats", "url": "a"},
            {**story, "time": (T0 + timedelta(hours=1)).isoformat(), "title": "apple beats ", "url": "b"},
            {**story, "time": (T0 + timedelta(days=3)).isoformat(), "title": "Apple beats", "url": "c"},
            {**story, "time": (T0 + timedelta(hours=2)).isoformat(), "title": "Other", "url": "d"},
        ],
    )
    quality.quality_checks_range(dataset="news_events", start=T0 - timedelta(days=1), end=T0 + timedelta(days=5))
    flag = QualityFlag.objects.get()
    assert (flag.check_name, flag.time, flag.applied) == ("duplicate_title", T0 + timedelta(hours=1), True)
    assert "same title as story" in flag.reason
    assert NewsEvent.objects.get(time=flag.time).quality_score == 0.3


def test_it_checks_the_change_log_spans_on_ingest_and_moves_its_cursor():
    ingest_table(dataset="market_data", data=bars("AAPL", ["10", "10.1", "13", "10.05", "10.1"]))
    ingest_table(dataset="market_data", data=bars("MSFT", ["10", "10.1", "10", "10.05", "10.1"]))
    assert changes_lag(consumer="quality", dataset="market_data")["pending"] == 2
    result = quality.quality_changes_process(dataset="market_data")
    assert (result.spans, result.flags, result.lowered) == (2, 1, 1)
    assert changes_lag(consumer="quality", dataset="market_data")["pending"] == 0
    assert quality.quality_changes_process(dataset="market_data").spans == 0
    assert ChangeCursor.objects.get(consumer="quality", dataset="market_data").last_id > 0


def test_it_never_raises_a_score_a_curator_lowered():
    ingest_table(dataset="market_data", data=bars("AAPL", ["10", "10.1", "13", "10.05", "10.1"]))
    quality.quality_scores_set(dataset="market_data", rows=MarketData.objects.all(), score=0.1, reason="whole day bad")
    run_checks()
    assert set(MarketData.objects.values_list("quality_score", flat=True)) == {0.1}
    assert QualityAudit.objects.filter(source="check:spike").count() == 0


def test_it_refreshes_a_flag_when_the_checks_run_again():
    ingest_table(dataset="market_data", data=bars("AAPL", ["10", "10.1", "13", "10.05", "10.1"]))
    run_checks()
    run_checks()
    assert QualityFlag.objects.count() == 1 and QualityAudit.objects.count() == 1


def test_it_runs_the_checks_from_the_command():
    ingest_table(dataset="market_data", data=bars("AAPL", ["10", "10.1", "13", "10.05", "10.1"]))
    out = StringIO()
    call_command(
        "quality_check", "market_data", "--start", "2024-03-01T00:00Z", "--end", "2024-03-02T00:00Z", stdout=out
    )
    assert json.loads(out.getvalue()) == {
        "dataset": "market_data",
        "spans": 1,
        "flags": 1,
        "by_check": {"spike": 1},
        "lowered": 1,
    }


def test_it_refuses_a_bad_command_range():
    with pytest.raises(CommandError, match="--start"):
        call_command("quality_check", "market_data", "--start", "yesterday", "--end", "2024-03-02T00:00Z")
    with pytest.raises(CommandError, match="--start must not be after --end"):
        call_command("quality_check", "market_data", "--start", "2024-03-03T00:00Z", "--end", "2024-03-02T00:00Z")


def test_it_reports_flags_and_curations_of_a_symbol_day():
    ingest_table(dataset="market_data", data=bars("AAPL", ["10", "10.1", "13", "10.05", "10.1"]))
    run_checks()
    report = quality.quality_report(dataset="market_data", symbol="AAPL", day=T0.date())
    assert report["counts"] == {"spike": 1}
    assert [a.source for a in report["audits"]] == ["check:spike"]
    assert (
        quality.quality_report(dataset="market_data", symbol="AAPL", day=(T0 + timedelta(days=1)).date())["flags"] == []
    )


def test_it_validates_changelist_filters_naming_the_parameter():
    with pytest.raises(quality.CurationError, match="time_after"):
        quality.curation_filters_clean(dataset="market_data", params={"time_after": "2024-03-01"})
    with pytest.raises(quality.CurationError, match="quality_min='2' is not a number between 0 and 1"):
        quality.curation_filters_clean(dataset="market_data", params={"quality_min": "2"})
    with pytest.raises(quality.CurationError, match="quality_min must not be after quality_max"):
        quality.curation_filters_clean(dataset="market_data", params={"quality_min": "0.8", "quality_max": "0.2"})
    with pytest.raises(quality.CurationError, match="quality_max: insider_trades has no quality_score"):
        quality.curation_filters_clean(dataset="insider_trades", params={"quality_max": "0.2"})


def test_it_applies_proposed_scores_a_curator_accepts():
    ingest_table(dataset="market_data", data=bars("AAPL", ["10", "11", "11", "11", "11", "11", "12"]))
    run_checks()
    user = User.objects.create(username="curator")
    changed = quality.quality_flags_accept(flags=QualityFlag.objects.all(), user=user)
    assert changed == 1
    audit = QualityAudit.objects.get()
    assert (audit.new_score, audit.user_id, audit.source) == (0.5, user.pk, "user")
    assert audit.reason.startswith("accepted stale: open/high/low/close unchanged for 5 consecutive bars")
    assert QualityFlag.objects.get().applied

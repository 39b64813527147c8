"""Exchange calendars (timeseries/calendars.py): sessions, holidays and early closes compared with the
exchange-calendars package's own schedule; the session of an instant and the previous/next open and
close at their boundaries; lazily built blocks; unknown exchanges; the default exchange."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import exchange_calendars as xcals
import pandas as pd
import pytest
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from timeseries import calendars
from timeseries.calendars import (
    BLOCK_YEARS,
    next_close,
    next_open,
    previous_close,
    previous_open,
    session_at,
    sessions_between,
)
from timeseries.exchanges import exchange_of, exchanges_of

US = timedelta(microseconds=1)
# the package's own calendars, built here to compare with, warn of pandas deprecations (see calendars._build)
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def package_schedule(mic: str, start: str, end: str) -> pd.DataFrame:
    """The package's schedule, from a calendar built here (not through the module under test)."""
    return xcals.get_calendar(mic, start=start, end=end).schedule


def as_tuples(schedule: pd.DataFrame) -> list[tuple[date, datetime, datetime]]:
    return [
        (label.date(), o.to_pydatetime(), c.to_pydatetime())
        for label, o, c in zip(schedule.index, schedule["open"], schedule["close"])
    ]


def test_a_week_with_a_holiday_and_an_early_close_is_the_packages_schedule():
    week = sessions_between(exchange="XNYS", start=utc(2024, 7, 1), end=utc(2024, 7, 7, 23, 59))
    schedule = package_schedule("XNYS", "2024-06-03", "2024-08-30").loc["2024-07-01":"2024-07-07"]
    assert [(s.date, s.open, s.close) for s in week] == as_tuples(schedule)
    # independence day: the package has no session, so neither do we
    assert not xcals.get_calendar("XNYS", start="2024-06-03", end="2024-08-30").is_session("2024-07-04")
    assert date(2024, 7, 4) not in [s.date for s in week] and len(week) == 4
    # July 3 closes early: the package says 13:00 New York, 17:00 UTC, three hours before July 2's close
    july_3 = next(s for s in week if s.date == date(2024, 7, 3))
    assert july_3.close == schedule.loc["2024-07-03", "close"].to_pydatetime() == utc(2024, 7, 3, 17)
    july_2 = next(s for s in week if s.date == date(2024, 7, 2))
    assert (july_2.close - july_2.open) - (july_3.close - july_3.open) == timedelta(hours=3)
    assert all(s.open.tzinfo is UTC and s.close.tzinfo is UTC for s in week)


def test_the_day_after_thanksgiving_closes_early_and_thanksgiving_has_no_session():
    days = sessions_between(exchange="XNYS", start=utc(2024, 11, 27, 12), end=utc(2024, 11, 29, 23))
    schedule = package_schedule("XNYS", "2024-11-01", "2024-12-31").loc["2024-11-27":"2024-11-29"]
    assert [(s.date, s.open, s.close) for s in days] == as_tuples(schedule)
    assert [s.date for s in days] == [date(2024, 11, 27), date(2024, 11, 29)]
    assert days[1].close == utc(2024, 11, 29, 18)  # 13:00 New York (EST)


def test_sessions_overlapping_an_interval_include_one_cut_by_either_end():
    july_3 = session_at(exchange="XNYS", at=utc(2024, 7, 3, 15))
    inside = sessions_between(exchange="XNYS", start=july_3.close - US, end=july_3.close - US)
    assert [s.date for s in inside] == [date(2024, 7, 3)]
    assert sessions_between(exchange="XNYS", start=july_3.close, end=utc(2024, 7, 5, 13, 29)) == []
    assert [s.date for s in sessions_between(exchange="XNYS", start=july_3.close, end=utc(2024, 7, 5, 13, 30))] == [
        date(2024, 7, 5)
    ]
    assert sessions_between(exchange="XNYS", start=utc(2024, 7, 5), end=utc(2024, 7, 4)) == []


def test_the_session_of_an_instant_at_its_boundaries():
    schedule = package_schedule("XNYS", "2024-06-03", "2024-08-30")
    opens, closes = schedule["open"], schedule["close"]
    open_, close = opens["2024-07-03"].to_pydatetime(), closes["2024-07-03"].to_pydatetime()
    assert session_at(exchange="XNYS", at=open_).date == date(2024, 7, 3)
    assert session_at(exchange="XNYS", at=open_ + US).date == date(2024, 7, 3)
    assert session_at(exchange="XNYS", at=open_ - US) is None  # before the open: outside any session
    assert session_at(exchange="XNYS", at=close - US).date == date(2024, 7, 3)
    assert session_at(exchange="XNYS", at=close) is None  # a session is [open, close)
    assert session_at(exchange="XNYS", at=utc(2024, 7, 4, 15)) is None  # the holiday
    assert session_at(exchange="XNYS", at=utc(2024, 7, 6, 15)) is None  # Saturday


def test_previous_and_next_open_and_close_step_over_the_holiday_strictly():
    schedule = package_schedule("XNYS", "2024-06-03", "2024-08-30")
    opens = {k.date(): v.to_pydatetime() for k, v in schedule["open"].items()}
    closes = {k.date(): v.to_pydatetime() for k, v in schedule["close"].items()}
    d2, d3, d5 = date(2024, 7, 2), date(2024, 7, 3), date(2024, 7, 5)
    at_close = closes[d3]
    assert next_open(exchange="XNYS", at=at_close) == opens[d5]  # July 4 skipped
    assert next_close(exchange="XNYS", at=at_close) == closes[d5]  # strictly after
    assert next_close(exchange="XNYS", at=at_close - US) == at_close
    assert previous_close(exchange="XNYS", at=at_close) == closes[d2]  # strictly before
    assert previous_close(exchange="XNYS", at=at_close + US) == at_close
    at_open = opens[d3]
    assert previous_open(exchange="XNYS", at=at_open) == opens[d2]
    assert previous_open(exchange="XNYS", at=at_open + US) == at_open
    assert next_open(exchange="XNYS", at=at_open - US) == at_open
    assert next_open(exchange="XNYS", at=at_open) == opens[d5]
    assert previous_close(exchange="XNYS", at=utc(2024, 7, 4, 12)) == closes[d3]


def test_blocks_are_stitched_where_one_ends_and_the_next_begins():
    edge = BLOCK_YEARS * (2030 // BLOCK_YEARS)  # the first year of a block
    start, end = utc(edge - 1, 12, 27), utc(edge, 1, 6)
    got = sessions_between(exchange="XNYS", start=start, end=end)
    schedule = package_schedule("XNYS", f"{edge - 1}-12-01", f"{edge}-01-31")
    assert [(s.date, s.open, s.close) for s in got] == as_tuples(
        schedule.loc[pd.Timestamp(start.date()) : pd.Timestamp(end.date())]
    )
    first_of_block = next(s for s in got if s.date.year == edge)
    last_before = [s for s in got if s.date.year == edge - 1][-1]
    assert previous_close(exchange="XNYS", at=first_of_block.open) == last_before.close
    assert next_open(exchange="XNYS", at=last_before.close) == first_of_block.open


def test_instants_outside_the_stored_range_have_no_session():
    far = utc(2300, 6, 1, 15)
    assert session_at(exchange="XNYS", at=far) is None
    assert next_open(exchange="XNYS", at=far) is None
    assert sessions_between(exchange="XNYS", start=far, end=far + timedelta(days=30)) == []
    assert previous_close(exchange="XNYS", at=utc(1000, 1, 1)) is None
    assert previous_close(exchange="XNYS", at=far) is not None  # the last session before 2200


def test_a_lunch_break_splits_a_session_into_two_trading_periods():
    got = sessions_between(exchange="XHKG", start=utc(2024, 3, 4), end=utc(2024, 3, 4, 23))
    schedule = package_schedule("XHKG", "2024-02-01", "2024-03-29").loc["2024-03-04"]
    (session,) = got
    assert session.periods() == [
        (schedule["open"].to_pydatetime(), schedule["break_start"].to_pydatetime()),
        (schedule["break_end"].to_pydatetime(), schedule["close"].to_pydatetime()),
    ]
    assert session_at(exchange="XHKG", at=session.break_start).date == date(2024, 3, 4)  # the break is in it
    assert session_at(exchange="XNYS", at=utc(2024, 3, 4, 15)).periods() == [
        (utc(2024, 3, 4, 14, 30), utc(2024, 3, 4, 21))
    ]


def test_an_alias_is_the_same_exchange():
    assert calendars.exchange_check("NYSE") == "XNYS"
    assert sessions_between(exchange="NYSE", start=utc(2024, 7, 1), end=utc(2024, 7, 7)) == sessions_between(
        exchange="XNYS", start=utc(2024, 7, 1), end=utc(2024, 7, 7)
    )


@pytest.mark.parametrize(
    "call",
    [
        lambda mic: sessions_between(exchange=mic, start=utc(2024, 7, 1), end=utc(2024, 7, 2)),
        lambda mic: session_at(exchange=mic, at=utc(2024, 7, 1)),
        lambda mic: next_open(exchange=mic, at=utc(2024, 7, 1)),
        lambda mic: previous_close(exchange=mic, at=utc(2024, 7, 1)),
    ],
)
def test_an_unknown_exchange_is_a_value_error_naming_it_and_the_source(call):
    with pytest.raises(ValueError, match=r"unknown exchange 'XQQQ': .*exchange-calendars package"):
        call("XQQQ")


def test_a_naive_instant_is_a_value_error_naming_the_parameter():
    with pytest.raises(ValueError, match="at=.* is not an aware datetime"):
        session_at(exchange="XNYS", at=datetime(2024, 7, 1, 15))
    with pytest.raises(ValueError, match="start=.* is not an aware datetime"):
        sessions_between(exchange="XNYS", start=datetime(2024, 7, 1), end=utc(2024, 7, 2))


def test_symbols_trade_on_the_default_exchange_which_the_setting_names():
    assert exchange_of("AAPL") == "XNYS"  # TSM_DEFAULT_EXCHANGE's default
    with override_settings(TSM_DEFAULT_EXCHANGE="XLON"):
        assert exchanges_of(["AAPL", "VOD"]) == {"AAPL": "XLON", "VOD": "XLON"}
    with override_settings(TSM_DEFAULT_EXCHANGE="LSE"):
        assert exchange_of("VOD") == "XLON"  # an alias, resolved


def default_exchange_errors() -> list[str]:
    return [m.msg for m in checks.run_checks() if m.id == "timeseries.E001"]


def test_an_unknown_default_exchange_is_refused_naming_the_variable():
    assert default_exchange_errors() == []
    with override_settings(TSM_DEFAULT_EXCHANGE="NYS"):
        assert default_exchange_errors() == [
            "TSM_DEFAULT_EXCHANGE: unknown exchange 'NYS': exchange calendars come from the exchange-calendars "
            "package (exchange_calendars.get_calendar_names()), e.g. XNYS, XNAS, XLON, XTKS"
        ]
        with pytest.raises(ImproperlyConfigured, match="TSM_DEFAULT_EXCHANGE: unknown exchange 'NYS'"):
            exchange_of("AAPL")

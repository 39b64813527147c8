"""No poisoned row wedges a change-log consumer (timeseries/changes.py changes_run / failures_retry), and
an operator removes the bad version, audited (timeseries/removal.py, manage.py remove_versions,
manage.py consumers, the admin). Poison is stored as an older tsm stored it (tests/timeseries/poison.py)."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import CommandError, call_command
from django.db import OperationalError, connection
from django.utils import timezone

from ingestion.loader import ingest_table
from tests.helpers import DAY, FEB, LATER, MAR, bar_row, month
from tests.ingestion.workers import private_queue, start_worker, stop_worker, wait_for, worker_env
from tests.timeseries.poison import poison, poison_bar
from timeseries import aggregates, pit, quality, tasks
from timeseries.capabilities import capabilities
from timeseries.changes import RETRY_FIRST, changes_lag, changes_run, failures_retry
from timeseries.models import Change, ConsumerFailure, MarketData, QualityFlag, RollupState, Series, VersionRemoval

pytestmark = pytest.mark.django_db(transaction=True)  # the consumers run outside transactions


def news(symbol: str, time: str, news_id: str, title: str = "a story") -> dict:
    return {
        "time": time,
        "symbol": symbol,
        "news_id": news_id,
        "title": title,
        "content": "",
        "source": "",
        "categories": [],
        "url": "",
        "author": "",
        "language": "en",
    }


def daily(symbol: str, **kw) -> list[dict]:
    return pit.daily_bars(symbol=symbol, at=LATER, start=FEB, end=MAR - timedelta(microseconds=1), **kw)


def stored_equals_live(symbol: str) -> None:
    stored = aggregates.aggregate_read(aggregate="daily_ohlcv", symbol=symbol, at=LATER, start=FEB, end=MAR)
    live = aggregates.aggregate_read(
        aggregate="daily_ohlcv", symbol=symbol, at=LATER, start=FEB, end=MAR, force_live=True
    )
    assert [{**r, "source": None} for r in stored] == [{**r, "source": None} for r in live]
    assert {r["source"] for r in stored} == {"stored"}


def open_failures(consumer: str | None = None) -> list[ConsumerFailure]:
    qs = ConsumerFailure.objects.filter(resolved_at__isnull=True)
    return list(qs.filter(consumer=consumer) if consumer else qs)


@pytest.fixture
def poisoned():
    """AAA and BBB in February, consumed; then a bar of AAA at 9999-12-31T23:59Z (known_at past year
    9999) and a story of AAA on 9999-12-31; then new bars of BBB and of AAA and a good story."""
    ingest_table(dataset="market_data", data=month("AAA", skip={20}) + month("BBB", skip={20}))
    ingest_table(dataset="news_events", data=[news("AAA", "2024-02-03T10:00:00Z", "n0")])
    aggregates.rollups_refresh()
    for name in quality.CURATED_DATASETS:
        quality.quality_changes_process(dataset=name)
    bad_bar = poison_bar("AAA", span_first="2024-02-20T12:00:00Z")
    bad_story = poison("news_events", news("AAA", "9999-12-31T12:00:00Z", "n-bad"), known_after="0 s")
    ingest_table(dataset="market_data", data=[r for r in month("BBB") if r["time"].startswith("2024-02-20")])
    ingest_table(dataset="market_data", data=[bar_row("AAA", FEB + 19 * DAY + timedelta(hours=12), 3)])
    ingest_table(dataset="news_events", data=[news("BBB", "2024-02-21T10:00:00Z", "n1")])
    return {"bar": bad_bar, "story": bad_story}


def test_the_consumers_pass_a_poisoned_span_record_it_and_go_on(poisoned):
    report = aggregates.rollups_refresh()
    assert report["market_data"]["failed"] == 1 and report["market_data"]["changes"] == 3
    assert changes_lag(consumer=aggregates.CONSUMER, dataset="market_data")["pending"] == 0
    [failure] = open_failures("rollups")
    assert (failure.dataset, failure.symbol, failure.attempts) == ("market_data", "AAA", 1)
    assert failure.span == "2024-02-20 12:00:00+00 .. 9999-12-31 23:59:00+00" and "OverflowError" in failure.error
    assert failure.next_attempt_at >= failure.last_attempt_at + RETRY_FIRST
    # the other symbol's and the same symbol's other changes were processed
    assert len(daily("BBB")) == 29 and daily("BBB")[19]["bars"] == 4
    stored_equals_live("BBB")
    assert daily("AAA")[19]["bars"] == 1

    checked = quality.quality_changes_process(dataset="news_events")
    assert checked.failed == 1 and checked.spans == 1  # BBB's story was checked
    assert quality.quality_changes_process(dataset="market_data").failed == 0
    assert [(f.consumer, f.dataset) for f in open_failures("quality")] == [("quality", "news_events")]

    # the consumers keep running: a later load is processed, the failure waits for its retry
    ingest_table(dataset="market_data", data=[bar_row("BBB", FEB + 27 * DAY + timedelta(hours=20), 5)])
    again = aggregates.rollups_refresh(dataset="market_data")["market_data"]
    assert (again["changes"], again["failed"], again["retried"]) == (1, 0, 0)
    assert daily("BBB")[27]["bars"] == 5
    forced = aggregates.rollups_refresh(dataset="market_data", force_retry=True)["market_data"]
    assert (forced["retried"], forced["resolved"]) == (1, 0)
    assert ConsumerFailure.objects.get(pk=failure.pk).attempts == 2


def test_removing_the_bad_versions_resolves_the_failures_and_the_rollups_are_right(poisoned):
    aggregates.rollups_refresh()
    quality.quality_changes_process(dataset="news_events")
    assert len(open_failures()) == 2
    # the passed span reads live meanwhile: AAA's 20 Feb bucket is not stale
    assert {
        r["source"]
        for r in aggregates.aggregate_read(
            aggregate="daily_ohlcv", symbol="AAA", at=LATER, start=FEB + 19 * DAY, end=FEB + 20 * DAY
        )
    } == {"live"}

    out = io.StringIO()
    call_command(
        "remove_versions",
        "market_data",
        "--id",
        str(poisoned["bar"]),
        "--reason",
        "bar at 9999-12-31 from the old feed",
        stdout=out,
    )
    done = json.loads(out.getvalue())
    assert done["removed"] == [poisoned["bar"]] and done["symbols"] == ["AAA"] and done["failures_due"] == 1
    call_command(
        "remove_versions",
        "news_events",
        "--id",
        str(poisoned["story"]),
        "--reason",
        "story dated 9999",
        stdout=io.StringIO(),
    )

    report = aggregates.rollups_refresh()["market_data"]
    assert (report["retried"], report["resolved"], report["failed"]) == (1, 1, 0)
    assert quality.quality_changes_process(dataset="news_events").resolved == 1
    assert open_failures() == []
    assert ConsumerFailure.objects.filter(resolved_at__isnull=False).count() == 2
    stored_equals_live("AAA")
    stored_equals_live("BBB")
    assert daily("AAA")[19]["bars"] == 1
    # the registry forgot 9999
    series = Series.objects.get(dataset="market_data", symbol="AAA")
    assert series.last_time.year == 2024
    assert not MarketData.objects.filter(pk=poisoned["bar"]).exists()


def test_a_removal_is_audited_and_followed_by_the_change_log_and_the_cache(poisoned):
    with connection.cursor() as cur:
        cur.execute("SELECT generation FROM timeseries_datasetgeneration WHERE dataset = 'market_data'")
        (generation,) = cur.fetchone()
    last_change = Change.objects.filter(dataset="market_data").order_by("-id").first().id
    call_command(
        "remove_versions", "market_data", "--id", str(poisoned["bar"]), "--reason", "  bad bar  ", stdout=io.StringIO()
    )
    [audit] = VersionRemoval.objects.all()
    assert (audit.dataset, audit.row_id, audit.symbol, audit.reason) == (
        "market_data",
        poisoned["bar"],
        "AAA",
        "bad bar",
    )
    assert audit.actor.startswith("manage.py") and audit.user is None
    assert audit.row["known_at"].startswith("10000-01-01") and audit.row["close"] == 10.5
    change = Change.objects.get(pk=audit.change_id)
    assert change.id > last_change and (change.symbol, change.first_time.year, change.last_time.year) == (
        "AAA",
        9999,
        9999,
    )
    with connection.cursor() as cur:
        cur.execute("SELECT generation FROM timeseries_datasetgeneration WHERE dataset = 'market_data'")
        assert cur.fetchone()[0] == generation + 1


def test_a_removal_with_a_bad_id_or_no_reason_removes_nothing(poisoned):
    with pytest.raises(CommandError, match=r"id: market_data has no row with id 999999999"):
        call_command(
            "remove_versions", "market_data", "--id", str(poisoned["bar"]), "--id", "999999999", "--reason", "x"
        )
    with pytest.raises(CommandError, match=r"id: 'abc' is not a row id"):
        call_command("remove_versions", "market_data", "--id", "abc", "--reason", "x")
    with pytest.raises(CommandError, match=r"reason: say why"):
        call_command("remove_versions", "market_data", "--id", str(poisoned["bar"]), "--reason", "  ")
    with pytest.raises(CommandError, match=r"--user: no user named 'nobody'"):
        call_command(
            "remove_versions", "market_data", "--id", str(poisoned["bar"]), "--reason", "x", "--user", "nobody"
        )
    assert MarketData.objects.filter(pk=poisoned["bar"]).exists() and not VersionRemoval.objects.exists()


def test_rollups_rebuild_recomputes_the_registry_and_works_after_the_row_is_deleted(poisoned):
    with pytest.raises(CommandError, match=r"market_data symbol 'AAA' holds a row at 9999-12-31 23:59:00\+00, outside"):
        call_command("rollups", "--rebuild", "--dataset", "market_data", stdout=io.StringIO())
    with connection.cursor() as cur:  # deleted by hand: the registry still says 9999
        cur.execute("DELETE FROM market_data WHERE id = %s", [poisoned["bar"]])
    assert Series.objects.get(dataset="market_data", symbol="AAA").last_time.year == 9999
    out = io.StringIO()
    call_command("rollups", "--rebuild", "--dataset", "market_data", stdout=out)
    # plain lane: the rollups rebuilt bucket by bucket; TimescaleDB lane: the continuous aggregates refreshed
    assert json.loads(out.getvalue())["market_data"]["buckets"] == (
        0 if capabilities(fresh=True).continuous_aggregates else 58
    )
    assert Series.objects.get(dataset="market_data", symbol="AAA").last_time.year == 2024
    stored_equals_live("AAA")
    stored_equals_live("BBB")


def test_a_row_before_year_one_is_named_by_the_rebuild_recorded_by_the_consumer_and_removable():
    ingest_table(dataset="market_data", data=month("AAA"))
    aggregates.rollups_refresh()
    old = poison_bar("OLD", time="4000-01-01T00:00:00Z BC")
    with pytest.raises(CommandError, match=r"market_data symbol 'OLD' holds a row at 4000-01-01 00:00:00\+00 BC"):
        call_command("rollups", "--rebuild", stdout=io.StringIO())
    # the consumer records the entry Python cannot even read, and goes on
    ingest_table(
        dataset="social_sentiment",
        data=[
            {
                "time": "2024-02-05T10:00:00Z",
                "symbol": "AAA",
                "platform": "x",
                "mention_count": "3",
                "sentiment_avg": "0.5",
            }
        ],
    )
    report = aggregates.rollups_refresh()
    assert (report["market_data"]["changes"], report["market_data"]["failed"]) == (1, 1)
    assert report["social_sentiment"]["changes"] == 1
    [failure] = open_failures("rollups")
    assert failure.symbol == "OLD" and "timestamp too small" in failure.error and failure.span.endswith(" BC")
    # removed: the registry forgets OLD, the entry (still unreadable) resolves as its span holds no row
    call_command("remove_versions", "market_data", "--id", str(old), "--reason", "year 4000 BC", stdout=io.StringIO())
    assert not Series.objects.filter(dataset="market_data", symbol="OLD").exists()
    assert aggregates.rollups_refresh(dataset="market_data")["market_data"]["resolved"] == 1
    assert open_failures() == []
    call_command("rollups", "--rebuild", stdout=io.StringIO())
    ingest_table(dataset="market_data", data=month("BBB"))
    aggregates.rollups_refresh()
    stored_equals_live("BBB")


def test_the_automatic_rebuild_of_a_poisoned_dataset_does_not_hold_back_the_others(poisoned):
    RollupState.objects.all().delete()
    ingest_table(
        dataset="social_sentiment",
        data=[
            {
                "time": "2024-02-05T10:00:00Z",
                "symbol": "AAA",
                "platform": "x",
                "mention_count": "3",
                "sentiment_avg": "0.5",
            }
        ],
    )
    report = aggregates.rollups_refresh()
    assert "rebuild failed" in report["market_data"]["error"] and "remove_versions" in report["market_data"]["error"]
    assert report["social_sentiment"]["rebuilt"] is True
    assert set(
        r["source"]
        for r in aggregates.aggregate_read(  # without the state row: read live, right
            aggregate="daily_ohlcv", symbol="BBB", at=LATER, start=FEB, end=MAR
        )
    ) == {"live"}


def test_any_exception_in_one_span_is_isolated_not_only_bad_instants():
    """The mechanism is generic: a span whose processing raises (here a check that cannot cope with
    a symbol) is passed and recorded; a systemic error (the database) is not recorded but raised."""
    ingest_table(dataset="market_data", data=month("AAA") + month("BAD") + month("CCC"))
    seen: list[str] = []

    def process(changes):
        for c in changes:
            if c.symbol == "BAD":
                raise ValueError(f"cannot check {c.symbol}")
            seen.append(c.symbol)

    run = changes_run(consumer="test", dataset="market_data", limit=100, process=process)
    assert sorted(set(seen)) == ["AAA", "CCC"] and len(run.failed) == 1 and run.consumed == 3
    assert [c.symbol for c in run.changes] == ["AAA", "CCC"]
    [failure] = ConsumerFailure.objects.filter(consumer="test")
    assert failure.symbol == "BAD" and failure.error == "ValueError: cannot check BAD"
    assert changes_lag(consumer="test", dataset="market_data")["pending"] == 0
    # not due yet; forced it fails again and waits twice as long
    assert failures_retry(consumer="test", dataset="market_data", process_one=lambda c: process([c])).retried == 0
    assert (
        failures_retry(consumer="test", dataset="market_data", process_one=lambda c: process([c]), force=True).resolved
        == 0
    )
    failure.refresh_from_db()
    assert failure.attempts == 2 and failure.next_attempt_at - failure.last_attempt_at == 2 * RETRY_FIRST
    # fixed: the retry resolves it
    ConsumerFailure.objects.filter(pk=failure.pk).update(next_attempt_at=timezone.now())
    assert (
        failures_retry(consumer="test", dataset="market_data", process_one=lambda c: seen.append(c.symbol)).resolved
        == 1
    )
    failure.refresh_from_db()
    assert failure.resolved_at is not None and seen[-1] == "BAD"

    def outage(changes):
        raise OperationalError("server closed the connection unexpectedly")

    ingest_table(dataset="market_data", data=[bar_row("AAA", MAR, 1)])
    with pytest.raises(OperationalError):
        changes_run(consumer="test", dataset="market_data", limit=100, process=outage)
    assert changes_lag(consumer="test", dataset="market_data")["pending"] == 1  # not passed
    assert ConsumerFailure.objects.filter(consumer="test", resolved_at__isnull=True).count() == 0


def test_manage_py_consumers_shows_lag_and_failures_and_retries_them(poisoned):
    aggregates.rollups_refresh()
    out = io.StringIO()
    call_command("consumers", stdout=out)
    text = out.getvalue()
    assert "rollups   market_data" in text and "1 open failure(s)" in text
    assert "symbol 'AAA' span 2024-02-20 12:00:00+00 .. 9999-12-31 23:59:00+00" in text and "OverflowError" in text
    out = io.StringIO()
    call_command("consumers", "--json", stdout=out)
    state = json.loads(out.getvalue())
    rows = {(r["consumer"], r["dataset"]): r for r in state["consumers"]}
    assert rows[("rollups", "market_data")]["open_failures"] == 1 and rows[("quality", "news_events")]["pending"] == 2
    assert [f["consumer"] for f in state["open_failures"]] == ["rollups"]

    call_command(
        "remove_versions", "market_data", "--id", str(poisoned["bar"]), "--reason", "bad", stdout=io.StringIO()
    )
    ConsumerFailure.objects.update(next_attempt_at=timezone.now() + timedelta(hours=1))  # not due: --retry forces
    out = io.StringIO()
    call_command("consumers", "--retry", stdout=out)
    assert (
        "retried rollups/market_data: 1 retried, 1 resolved" in out.getvalue() and "No open failures." in out.getvalue()
    )


# --- admin ---------------------------------------------------------------------------------------------


def staff(username: str, *perms: str) -> User:
    user = User.objects.create_user(username, password="pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=perms))
    return user


def test_the_admin_lists_failures_open_first_by_model_permission(client, poisoned):
    aggregates.rollups_refresh()
    quality.quality_changes_process(dataset="news_events")
    resolved = ConsumerFailure.objects.get(consumer="quality")
    ConsumerFailure.objects.filter(pk=resolved.pk).update(resolved_at=timezone.now())
    url = "/admin/timeseries/consumerfailure/"
    client.force_login(staff("nobody"))
    assert client.get(url).status_code == 403
    client.force_login(staff("operator", "view_consumerfailure", "view_marketdata"))
    response = client.get(url)
    assert response.status_code == 200
    listed = [(f.consumer, f.resolved_at is None) for f in response.context["cl"].result_list]
    assert listed == [("rollups", True), ("quality", False)]
    assert b"OverflowError" in response.content and b"open</strong>" in response.content
    assert client.get(url + "?state=open").context["cl"].result_list[0].consumer == "rollups"
    assert client.post(url + f"{resolved.pk}/delete/").status_code == 403
    assert client.get(url).context["action_form"] is None  # viewing is not retrying
    client.force_login(staff("retrier", "view_consumerfailure", "change_consumerfailure"))
    failing = ConsumerFailure.objects.get(consumer="rollups")
    assert failing.next_attempt_at > timezone.now()
    response = client.post(
        url, {"action": "retry_next_run", "_selected_action": [failing.pk, resolved.pk], "index": 0}, follow=True
    )
    assert b"1 open failure(s) will be retried" in response.content
    assert ConsumerFailure.objects.get(pk=failing.pk).next_attempt_at <= timezone.now()
    assert aggregates.rollups_refresh(dataset="market_data")["market_data"]["retried"] == 1
    # the removal action needs the dataset's delete permission
    client.force_login(staff("curator", "view_marketdata", "change_marketdata"))  # change, not delete
    form = client.get("/admin/timeseries/marketdata/?symbol=BBB").context["action_form"]
    choices = [name for name, _ in form.fields["action"].choices]
    assert "mark_suspect" in choices and "remove_versions" not in choices
    response = client.post(
        "/admin/timeseries/marketdata/?symbol=BBB",
        {
            "action": "remove_versions",
            "_selected_action": [poisoned["bar"]],
            "confirm": "yes",
            "reason": "x",
            "index": 0,
        },
    )
    assert MarketData.objects.filter(pk=poisoned["bar"]).exists() and not VersionRemoval.objects.exists()


def test_the_admin_action_removes_selected_versions_after_a_reason_audited(client, poisoned):
    user = staff("curator", "view_marketdata", "change_marketdata", "delete_marketdata")
    client.force_login(user)
    url = "/admin/timeseries/marketdata/?symbol=BBB"
    choices = [name for name, _ in client.get(url).context["action_form"].fields["action"].choices]
    assert "remove_versions" in choices
    victim = MarketData.objects.filter(symbol="BBB").order_by("time").first()
    QualityFlag.objects.create(
        dataset="market_data",
        row_id=victim.pk,
        symbol="BBB",
        time=victim.time,
        check_name="ohlc",
        reason="r",
        created_at=timezone.now(),
    )
    ids = [poisoned["bar"], victim.pk]
    url = "/admin/timeseries/marketdata/?symbol=AAA,BBB"  # an action takes the selected rows the filter shows
    page = client.post(
        url, {"action": "remove_versions", "_selected_action": ids, "index": 0, "score": "", "reason": ""}
    )
    assert page.status_code == 200 and b"Reason (required" in page.content and b"10000-01-01" in page.content
    assert MarketData.objects.filter(pk__in=ids).count() == 2  # nothing yet
    missing = client.post(url, {"action": "remove_versions", "_selected_action": ids, "confirm": "yes", "reason": " "})
    assert b"reason: say why" in missing.content and MarketData.objects.filter(pk__in=ids).count() == 2
    done = client.post(
        url,
        {"action": "remove_versions", "_selected_action": ids, "confirm": "yes", "reason": "old feed and a duplicate"},
        follow=True,
    )
    assert done.status_code == 200 and b"Removed 2 version(s) of market_data" in done.content
    assert not MarketData.objects.filter(pk__in=ids).exists()
    audits = VersionRemoval.objects.order_by("row_id")
    assert [(a.row_id, a.user_id, a.actor, a.reason) for a in audits] == sorted(
        (i, user.pk, "curator", "old feed and a duplicate") for i in ids
    )
    assert not QualityFlag.objects.filter(row_id=victim.pk).exists()
    assert Series.objects.get(dataset="market_data", symbol="BBB").first_time > victim.time
    client.force_login(staff("auditor", "view_versionremoval"))
    assert client.get("/admin/timeseries/versionremoval/").context["cl"].result_count == 2


# --- a real Celery worker ------------------------------------------------------------------------------


def test_a_real_worker_passes_the_poisoned_spans_keeps_consuming_and_resolves_them_after_the_removal(poisoned):
    def run_consumers() -> None:
        tasks.rollups_refresh.apply_async(queue=queue)
        tasks.quality_check_pending.apply_async(queue=queue)

    def caught_up() -> bool:
        return all(
            changes_lag(consumer=c, dataset=d)["pending"] == 0
            for c, d in (("rollups", "market_data"), ("quality", "market_data"), ("quality", "news_events"))
        )

    queue = private_queue()
    worker = start_worker(worker_env(), queue)
    try:
        run_consumers()
        wait_for(caught_up, what="the worker's consumer runs")
        assert sorted((f.consumer, f.dataset) for f in open_failures()) == [
            ("quality", "news_events"),
            ("rollups", "market_data"),
        ]
        stored_equals_live("BBB")

        ingest_table(dataset="market_data", data=[bar_row("BBB", FEB + 27 * DAY + timedelta(hours=20), 5)])
        run_consumers()
        wait_for(caught_up, what="the next runs")
        assert daily("BBB")[27]["bars"] == 5 and len(open_failures()) == 2

        call_command(
            "remove_versions", "market_data", "--id", str(poisoned["bar"]), "--reason", "bad", stdout=io.StringIO()
        )
        call_command(
            "remove_versions", "news_events", "--id", str(poisoned["story"]), "--reason", "bad", stdout=io.StringIO()
        )
        run_consumers()
        wait_for(lambda: not open_failures(), what="the failures to resolve")
        wait_for(caught_up, what="the removals' change-log entries")
        stored_equals_live("AAA")
    finally:
        stop_worker(worker)


def test_a_poisoned_sentiment_window_is_passed_and_the_hourly_rollups_are_right_after_its_removal():
    def window(symbol, hour, platform, mentions):
        return {
            "time": f"2024-02-05T{hour:02d}:00:00Z",
            "symbol": symbol,
            "platform": platform,
            "mention_count": str(mentions),
            "sentiment_avg": "0.25",
        }

    ingest_table(dataset="social_sentiment", data=[window("AAA", h, p, 10 + h) for h in range(6) for p in ("x", "y")])
    aggregates.rollups_refresh()
    bad = poison(
        "social_sentiment",
        {"time": "9999-12-31T23:00:00Z", "symbol": "AAA", "platform": "x", "mention_count": 5, "sentiment_avg": 0.5},
        known_after="1 hour",
        span_first="2024-02-05T03:00:00Z",
    )
    ingest_table(dataset="social_sentiment", data=[window("AAA", 4, "y", 99), window("BBB", 2, "x", 7)])
    report = aggregates.rollups_refresh(dataset="social_sentiment")["social_sentiment"]
    assert (report["changes"], report["failed"]) == (3, 1)
    [failure] = open_failures("rollups")
    assert (failure.dataset, failure.symbol, failure.subkey) == ("social_sentiment", "AAA", "x")

    def hours(symbol):
        rows = aggregates.aggregate_read(aggregate="hourly_sentiment", symbol=symbol, at=LATER, start=FEB, end=MAR)
        live = aggregates.aggregate_read(
            aggregate="hourly_sentiment", symbol=symbol, at=LATER, start=FEB, end=MAR, force_live=True
        )
        assert [{**r, "source": None} for r in rows] == [{**r, "source": None} for r in live]
        return rows

    assert [r["mentions"] for r in hours("AAA")] == [20, 22, 24, 26, 14 + 99, 30]
    assert {r["source"] for r in hours("AAA")[3:]} == {"live"}  # the open failure's span
    assert [r["source"] for r in hours("BBB")] == ["stored"]
    call_command(
        "remove_versions", "social_sentiment", "--id", str(bad), "--reason", "window at 9999", stdout=io.StringIO()
    )
    assert aggregates.rollups_refresh(dataset="social_sentiment")["social_sentiment"]["resolved"] == 1
    assert {r["source"] for r in hours("AAA")} == {"stored"}
    assert Series.objects.get(dataset="social_sentiment", symbol="AAA", subkey="x").last_time.year == 2024


def test_an_admin_list_holding_a_legacy_row_past_year_9999_says_so_and_lists_it(client, poisoned):
    """A row stored before the rules at the door, with a known_at Python cannot hold, no longer makes
    the dataset's admin list and its change page answer 500: a 409 page names the rows and the command."""
    client.force_login(staff("curator", "view_marketdata", "change_marketdata", "delete_marketdata"))
    for url in (
        "/admin/timeseries/marketdata/",
        "/admin/timeseries/marketdata/?symbol=AAA",
        f"/admin/timeseries/marketdata/{poisoned['bar']}/change/",
    ):
        page = client.get(url)
        assert page.status_code == 409, url
        text = page.content.decode()
        assert (
            f"<td>{poisoned['bar']}</td><td>AAA</td><td>9999-12-31 23:59:00+00</td><td>10000-01-01 00:00:00+00</td>"
            in text
        )
        assert f"bin/tsm remove_versions market_data --id {poisoned['bar']} --reason" in text
    assert client.get("/admin/timeseries/marketdata/?symbol=BBB").status_code == 200  # pages without it are as before
    call_command("remove_versions", "market_data", "--id", str(poisoned["bar"]), "--reason", "legacy row")
    assert client.get("/admin/timeseries/marketdata/").status_code == 200
    client.force_login(staff("nobody"))
    assert client.get("/admin/timeseries/marketdata/").status_code == 403

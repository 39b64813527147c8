"""A key's version history in the admin (issue #16): sources, status and why; "make this version current
again" (audited); the re-sent rows of a load; permissions; escaping.

Histories are made through the loader with feeds (``ingest_table(feed=…)``). The two tests whose names
say "resent" and "lower ranked" check the merge rule's outcome too (ingestion/loader/merge.py: re-sends
are duplicates, lower-ranked feeds are kept as outranked versions).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import Permission, User
from django.test import override_settings
from django.urls import reverse
from django.utils.html import escape
from django.utils.http import urlencode

from ingestion.loader import ingest_table
from ingestion.models import Load, ResentRow
from ingestion.versions import (
    CURRENT,
    OUTRANKED,
    SUPERSEDED,
    VersionError,
    version_find,
    version_history,
    version_key_parse,
    version_reassert,
)
from tests.helpers import T0, bar
from timeseries.models import MarketData, NewsEvent, OutrankedVersion
from timeseries.rules import format_instant

pytestmark = pytest.mark.django_db

KEY = {"symbol": "AAPL", "time": T0}
KNOWN = T0 + timedelta(minutes=1)  # a 1-minute bar's default known_at: its close
LATER = T0 + timedelta(hours=2)
RANKS = {"market_data": ("curation", "vendor_x")}


def load_bar(close: str, feed: str, known_at=None, **options):
    extra = {"known_at": known_at.isoformat()} if known_at is not None else {}
    return ingest_table(dataset="market_data", data=[bar("AAPL", 0, close=close, **extra)], feed=feed, **options)


def history_url(dataset: str = "market_data", **key) -> str:
    key = key or {"symbol": "AAPL", "time": format_instant(T0)}
    return reverse("admin:ingestion_load_versions", args=[dataset]) + "?" + urlencode(key)


def reassert_post(client, version, dataset: str = "market_data", **key):
    key = key or {"symbol": "AAPL", "time": format_instant(T0)}
    data = key | {"known_at": format_instant(version.known_at), "recorded_at": format_instant(version.recorded_at)}
    return client.post(reverse("admin:ingestion_load_versions_reassert", args=[dataset]), data)


def staff(client, name: str, perms: list[str]):
    user = User.objects.create_user(name, password="pw-for-tests", is_staff=True)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    client.force_login(user)
    client.user = user
    return client


@pytest.fixture
def fixed():
    """vendor_x sent close 10.5; curation fixed it to 10.6 (same known_at); vendor_x sent a later
    known_at (close 10.8). Loads in that order."""
    first = load_bar("10.5", "vendor_x")
    fix = load_bar("10.6", "curation")
    later = load_bar("10.8", "vendor_x", known_at=LATER)
    assert (first.inserted, fix.revised, later.revised) == (1, 1, 1)
    return first, fix, later


def by_recorded(history):
    return {v.recorded_at: v for v in history}


def closes(history) -> list[str]:
    return [str(v.values["close"].normalize()) if v.stored else str(v.values["close"]) for v in history]


# --- the service: statuses and why ---------------------------------------------------------------


def test_a_fix_supersedes_the_vendor_version_and_a_later_known_at_is_current_now(fixed):
    first, fix, later = fixed
    history = version_history("market_data", KEY)
    assert [(v.known_at, v.recorded_at) for v in history] == [
        (LATER, later.recorded_at),
        (KNOWN, fix.recorded_at),
        (KNOWN, first.recorded_at),
    ]
    assert closes(history) == ["10.8", "10.6", "10.5"]
    newest, fixed_version, vendor = history
    assert [v.status for v in history] == [CURRENT, CURRENT, SUPERSEDED]
    assert [v.current_now for v in history] == [True, False, False]
    assert [v.feed for v in history] == ["vendor_x", "curation", "vendor_x"]
    assert [v.load.pk for v in history] == [later.load_id, fix.load_id, first.load_id]
    assert "the as-of answer from " + format_instant(LATER) + " on" in newest.why
    assert f"current for known_at {format_instant(KNOWN)}" in fixed_version.why
    assert f"until {format_instant(LATER)}" in fixed_version.why
    assert f"superseded by the version recorded at {format_instant(fix.recorded_at)} (feed curation)" in vendor.why
    assert vendor.may_reassert and not fixed_version.may_reassert and not newest.may_reassert


def test_a_resent_superseded_value_is_a_duplicate_listed_with_its_key():
    first = load_bar("10.5", "vendor_x")
    fix = load_bar("10.6", "curation")
    again = load_bar("10.5", "vendor_x")  # the vendor re-delivers its original file
    assert (again.resent, again.duplicates, again.revised) == (1, 1, 0)
    history = version_history("market_data", KEY)
    assert [(v.recorded_at, v.status) for v in history] == [
        (fix.recorded_at, CURRENT),
        (first.recorded_at, SUPERSEDED),
    ]
    resent = ResentRow.objects.get(load_id=again.load_id)
    assert (resent.kind, resent.known_at, resent.current_recorded_at) == ("superseded", KNOWN, fix.recorded_at)


@override_settings(TSM_FEED_PRECEDENCE=RANKS)
def test_a_lower_ranked_feed_is_kept_as_outranked_and_never_current():
    load_bar("10.5", "vendor_x")
    fix = load_bar("10.6", "curation")
    late = load_bar("10.7", "vendor_x")  # different values, same known_at, lower rank
    assert (late.outranked, late.revised, late.inserted) == (1, 0, 0)
    history = version_history("market_data", KEY)
    outranked = by_recorded(history)[late.recorded_at]
    assert (outranked.status, outranked.feed, outranked.load.pk) == (OUTRANKED, "vendor_x", late.load_id)
    assert str(outranked.values["close"]).rstrip("0") == "10.7"
    assert f"the version recorded at {format_instant(fix.recorded_at)} (feed curation) stayed current" in outranked.why
    assert "feed vendor_x: rank 2" in outranked.why and "feed curation: rank 1" in outranked.why
    current = by_recorded(history)[fix.recorded_at]
    assert current.status == CURRENT and "kept over 1 outranked version" in current.why


def kept_outranked(load, *, close: str, outranked_by) -> OutrankedVersion:
    """An outranked version as the merge keeps it (written directly: independent of the merge)."""
    row = bar("AAPL", 0, close=close) | {"known_at": KNOWN.isoformat(), "source": "", "quality_score": 1.0}
    return OutrankedVersion.objects.create(
        dataset="market_data",
        symbol="AAPL",
        time=T0,
        known_at=KNOWN,
        recorded_at=load.recorded_at,
        feed=load.feed,
        load_id=load.pk,
        outranked_by=outranked_by,
        row=row,
    )


@override_settings(TSM_FEED_PRECEDENCE=RANKS)
def test_a_kept_outranked_version_names_the_winner_and_the_ranks_and_can_be_made_current(fixed):
    first, fix, _ = fixed
    sender = Load.objects.create(dataset="market_data", source="vendor file", feed="vendor_y", status="done")
    Load.objects.filter(pk=sender.pk).update(recorded_at=fix.recorded_at + timedelta(seconds=5))
    sender.refresh_from_db()
    kept_outranked(sender, close="10.9", outranked_by=fix.recorded_at)
    history = version_history("market_data", KEY)
    outranked = by_recorded(history)[sender.recorded_at]
    assert (outranked.status, outranked.feed, outranked.load.pk) == (OUTRANKED, "vendor_y", sender.pk)
    assert outranked.values["close"] == "10.9"
    assert "feed vendor_y: not listed, below every listed feed" in outranked.why
    assert "feed curation: rank 1" in outranked.why
    assert by_recorded(history)[fix.recorded_at].why.endswith("kept over 1 outranked version(s) of lower-ranked feeds")

    admin = User.objects.create_user("curator", is_staff=True)
    result = version_reassert("market_data", outranked, admin)
    assert result.revised == 1
    now = version_history("market_data", KEY)
    made = by_recorded(now)[result.recorded_at]
    assert (made.status, made.known_at, made.feed, str(made.values["close"].normalize())) == (
        CURRENT,
        KNOWN,
        "curation",
        "10.9",
    )
    assert by_recorded(now)[fix.recorded_at].status == SUPERSEDED


# --- making a version current again ---------------------------------------------------------------


def test_make_current_again_stores_the_values_anew_and_audits_who_and_what(client, fixed):
    first, fix, _ = fixed
    curator = staff(client, "curator", ["timeseries.view_marketdata", "timeseries.change_marketdata"])
    vendor = version_find(version_history("market_data", KEY), known_at=KNOWN, recorded_at=first.recorded_at)
    response = reassert_post(client, vendor)
    assert response.status_code == 302 and response["Location"] == history_url()

    load = Load.objects.exclude(pk__in=[v.load.pk for v in version_history("market_data", KEY) if v.load]).first()
    assert load is None  # every load is a version's: the re-assertion's too
    audit = Load.objects.filter(reassert=True).get()
    assert (audit.feed, audit.requested_by, audit.revised, audit.status) == ("curation", "curator", 1, "done")
    assert audit.source == f"admin: make current again (version recorded at {format_instant(first.recorded_at)})"

    history = version_history("market_data", KEY)
    made = by_recorded(history)[audit.recorded_at]
    assert (made.status, made.known_at, made.feed, str(made.values["close"].normalize())) == (
        CURRENT,
        KNOWN,
        "curation",
        "10.5",
    )
    assert "made current again by curator (re-assertion)" in made.why
    assert by_recorded(history)[fix.recorded_at].status == SUPERSEDED
    # as of known_at the answer is the vendor's value again; the later known_at still answers from then on
    stored = MarketData.objects.get(symbol="AAPL", time=T0, known_at=KNOWN, recorded_at=audit.recorded_at)
    assert str(stored.close.normalize()) == "10.5"

    entry = LogEntry.objects.get()
    assert (entry.user_id, entry.action_flag, entry.object_id) == (curator.user.pk, CHANGE, str(stored.pk))
    assert entry.content_type.model_class() is MarketData
    assert format_instant(first.recorded_at) in entry.change_message
    assert format_instant(KNOWN) in entry.change_message and str(audit.pk) in entry.change_message

    page = client.get(history_url())
    assert "Made current again for known_at" in page.content.decode()
    assert page.content.decode().count('data-status="current"') == 2

    row_history = client.get(reverse("admin:timeseries_marketdata_history", args=[stored.pk])).content.decode()
    assert "Made current again: the version known at" in row_history  # the admin's history of the new row


def test_an_already_current_version_is_refused_and_nothing_is_stored(client, fixed):
    _, fix, _ = fixed
    staff(client, "curator", ["timeseries.change_marketdata"])
    loads, rows = Load.objects.count(), MarketData.objects.count()
    current = version_find(version_history("market_data", KEY), known_at=KNOWN, recorded_at=fix.recorded_at)
    response = reassert_post(client, current)
    assert response.status_code == 302
    followed = client.get(response["Location"])
    assert "is already current for its known_at: nothing stored" in followed.content.decode()
    assert (Load.objects.count(), MarketData.objects.count(), LogEntry.objects.count()) == (loads, rows, 0)
    with pytest.raises(VersionError, match="already current"):
        version_reassert("market_data", current, User.objects.get(username="curator"))


def test_an_unknown_version_is_a_400_naming_it(client, fixed):
    first, _, _ = fixed
    staff(client, "curator", ["timeseries.change_marketdata"])
    vendor = version_find(version_history("market_data", KEY), known_at=KNOWN, recorded_at=first.recorded_at)
    vendor.recorded_at += timedelta(microseconds=1)
    loads = Load.objects.count()
    response = reassert_post(client, vendor)
    assert response.status_code == 400
    assert f"recorded at {format_instant(vendor.recorded_at)}: nothing stored" in response.content.decode()
    assert Load.objects.count() == loads


# --- permissions ----------------------------------------------------------------------------------


def test_without_the_view_permission_the_page_and_the_action_answer_403(client, fixed):
    staff(client, "nobody", ["ingestion.view_load"])
    first, _, _ = fixed
    vendor = version_find(version_history("market_data", KEY), known_at=KNOWN, recorded_at=first.recorded_at)
    assert client.get(history_url()).status_code == 403
    assert reassert_post(client, vendor).status_code == 403
    assert not Load.objects.filter(reassert=True).exists()


def test_view_without_change_shows_the_history_without_the_button_and_refuses_the_post(client, fixed):
    staff(client, "viewer", ["timeseries.view_marketdata"])
    first, _, _ = fixed
    page = client.get(history_url())
    body = page.content.decode()
    assert page.status_code == 200 and body.count("data-status=") == 3
    assert "make this version current again" not in body
    vendor = version_find(version_history("market_data", KEY), known_at=KNOWN, recorded_at=first.recorded_at)
    assert reassert_post(client, vendor).status_code == 403
    assert not Load.objects.filter(reassert=True).exists() and not LogEntry.objects.exists()


def test_change_permission_shows_the_button_on_the_superseded_version_only(client, fixed):
    staff(client, "curator", ["timeseries.change_marketdata"])
    body = client.get(history_url()).content.decode()
    assert body.count(">make this version current again</button>") == 1
    assert body.count("csrfmiddlewaretoken") >= 1


def test_the_action_is_post_only_and_needs_the_csrf_token(fixed):
    from django.test import Client

    strict = staff(Client(enforce_csrf_checks=True), "curator", ["timeseries.change_marketdata"])
    first, _, _ = fixed
    vendor = version_find(version_history("market_data", KEY), known_at=KNOWN, recorded_at=first.recorded_at)
    assert strict.get(reverse("admin:ingestion_load_versions_reassert", args=["market_data"])).status_code == 405
    assert reassert_post(strict, vendor).status_code == 403  # no CSRF token
    assert not Load.objects.filter(reassert=True).exists()


# --- bad parameters -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ({"symbol": "AA PL", "time": "2024-03-01T14:30:00Z"}, "symbol"),
        ({"symbol": "AAPL", "time": "yesterday"}, "time"),
        ({"symbol": "AAPL", "time": "2024-03-01T14:30:00"}, "time"),  # no offset
        ({"symbol": "AAPL"}, "time is required"),
        ({"time": "2024-03-01T14:30:00Z"}, "symbol is required"),
    ],
)
def test_a_bad_key_is_a_400_naming_the_parameter(client, query, named):
    staff(client, "viewer", ["timeseries.view_marketdata"])
    response = client.get(history_url(**query))
    assert response.status_code == 400
    assert named in response.context["error"]
    assert escape(response.context["error"]) in response.content.decode()


def test_the_empty_form_is_not_an_error_and_an_unknown_dataset_is_404(client):
    staff(client, "viewer", ["timeseries.view_marketdata"])
    response = client.get(reverse("admin:ingestion_load_versions", args=["market_data"]))
    assert response.status_code == 200 and response.context["error"] == ""
    assert 'name="symbol"' in response.content.decode() and 'name="time"' in response.content.decode()
    assert client.get(reverse("admin:ingestion_load_versions", args=["bogus"])).status_code == 404


def test_a_key_without_versions_says_so(client):
    staff(client, "viewer", ["timeseries.view_marketdata"])
    body = client.get(history_url(symbol="MSFT", time=format_instant(T0))).content.decode()
    assert 'id="version-none"' in body


def test_key_parsing_follows_each_key_column_rule():
    assert version_key_parse("government_events", {"time": "2024-03-01T14:30:00Z", "event_type": "fomc"}) == {
        "time": T0,
        "event_type": "fomc",
        "primary_symbol": "",  # a market-wide event
    }
    with pytest.raises(VersionError, match="news_id is required"):
        version_key_parse("news_events", {"time": "2024-03-01T14:30:00Z", "symbol": "AAPL"})
    with pytest.raises(ValueError, match="platform is too long"):
        version_key_parse("social_sentiment", {"time": "2024-03-01T14:00:00Z", "symbol": "A", "platform": "x" * 65})


def test_a_market_wide_event_has_a_history_under_its_empty_primary_symbol():
    event = {"time": T0.isoformat(), "event_type": "fomc", "description": "rates held"}
    first = ingest_table(dataset="government_events", data=[event], feed="vendor_x")
    fix = ingest_table(dataset="government_events", data=[event | {"description": "rates cut"}], feed="curation")
    key = version_key_parse("government_events", {"time": "2024-03-01T14:30:00Z", "event_type": "fomc"})
    history = version_history("government_events", key)
    assert [(v.recorded_at, v.status, v.values["description"]) for v in history] == [
        (fix.recorded_at, CURRENT, "rates cut"),
        (first.recorded_at, SUPERSEDED, "rates held"),
    ]


# --- escaping -------------------------------------------------------------------------------------


def test_values_and_keys_are_escaped(client):
    story = {"time": T0.isoformat(), "symbol": "AAPL", "news_id": "<b>n1</b>", "title": "<script>alert(1)</script>"}
    ingest_table(dataset="news_events", data=[story], feed="vendor_x")
    ingest_table(dataset="news_events", data=[story | {"title": "<img src=x onerror=alert(2)>"}], feed="curation")
    staff(client, "viewer", ["timeseries.view_newsevent"])
    url = history_url("news_events", symbol="AAPL", time=format_instant(T0), news_id="<b>n1</b>")
    response = client.get(url)
    body = response.content.decode()
    assert response.status_code == 200 and body.count("data-status=") == 2
    assert "<script>alert(1)</script>" not in body and "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "<img src=x" not in body and "&lt;img src=x onerror=alert(2)&gt;" in body
    assert "<b>n1</b>" not in body and "&lt;b&gt;n1&lt;/b&gt;" in body
    assert NewsEvent.objects.count() == 2


# --- links ----------------------------------------------------------------------------------------


def test_a_dataset_row_page_links_to_its_key_history(client, fixed):
    staff(client, "viewer", ["timeseries.view_marketdata"])
    row = MarketData.objects.filter(symbol="AAPL", known_at=LATER).get()
    page = client.get(reverse("admin:timeseries_marketdata_change", args=[row.pk])).content.decode()
    link = history_url().replace("&", "&amp;")
    assert f'href="{link}"' in page
    assert client.get(history_url()).content.decode().count("data-status=") == 3


def test_the_load_page_links_its_resent_rows_and_they_link_to_the_history(client, fixed):
    first, fix, _ = fixed
    again = load_bar("10.4", "vendor_x")  # stands for a re-send: its ResentRow written as the merge would
    Load.objects.filter(pk=again.load_id).update(resent=1)
    ResentRow.objects.create(
        load_id=again.load_id,
        key={"symbol": "AAPL", "time": format_instant(T0)},
        known_at=KNOWN,
        kind="superseded",
        current_recorded_at=fix.recorded_at,
    )
    staff(client, "reader", ["ingestion.view_load", "ingestion.view_resentrow", "timeseries.view_marketdata"])
    page = client.get(reverse("admin:ingestion_load_change", args=[again.load_id])).content.decode()
    listing = reverse("admin:ingestion_resentrow_changelist") + "?" + urlencode({"load__id__exact": again.load_id})
    assert f'href="{listing.replace("&", "&amp;")}"' in page and "1 row(s)" in page
    rows = client.get(listing)
    assert rows.status_code == 200
    assert 'href="' + history_url().replace("&", "&amp;") + '"' in rows.content.decode()
    assert "superseded" in rows.content.decode()


def test_the_resent_rows_need_their_own_view_permission(client, fixed):
    _, fix, _ = fixed
    again = load_bar("10.4", "vendor_x")
    Load.objects.filter(pk=again.load_id).update(resent=1)
    staff(client, "reader", ["ingestion.view_load"])
    page = client.get(reverse("admin:ingestion_load_change", args=[again.load_id]))
    assert page.status_code == 200
    assert "their keys need the permission ingestion.view_resentrow" in page.content.decode()
    assert client.get(reverse("admin:ingestion_resentrow_changelist")).status_code == 403


def test_the_load_list_shows_feed_resent_and_outranked(client, fixed):
    staff(client, "reader", ["ingestion.view_load"])
    body = client.get(reverse("admin:ingestion_load_changelist")).content.decode()
    for column in ("column-feed", "column-resent", "column-outranked"):
        assert column in body
    assert body.count(">vendor_x<") == 2 and body.count(">curation<") == 1


@pytest.mark.parametrize(
    ("key", "named"),
    [
        ({"news_id": "n\x001"}, "news_id must not contain a NUL character"),
        ({"news_id": "n" * 129}, "news_id is too long"),
        ({"time": "2024-03-01T14:30:00Z\x01"}, "time="),
        ({"symbol": "AAPL\x00"}, "symbol="),
    ],
)
def test_hostile_key_values_are_a_400_naming_the_parameter(client, key, named):
    staff(client, "viewer", ["timeseries.view_newsevent"])
    query = {"symbol": "AAPL", "time": "2024-03-01T14:30:00Z", "news_id": "n1"} | key
    response = client.get(history_url("news_events", **query))
    assert response.status_code == 400
    assert response.context["error"].startswith(named)

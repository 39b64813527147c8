"""The dataset admin: input-box filters, bounded queries, curation by inline edit and bulk actions, audit, report."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from ingestion.loader import ingest_table
from tests.helpers import T0, bar
from timeseries import quality, tasks
from timeseries.models import MarketData, NewsEvent, QualityAudit, QualityFlag

pytestmark = pytest.mark.django_db
URL = "/admin/timeseries/marketdata/"
Z = lambda d: d.isoformat().replace("+00:00", "Z")  # noqa: E731


@pytest.fixture
def day():
    """AAPL: 150 minute bars (more than one page), MSFT: 3 bars from another source, one suspect."""
    rows = [bar("AAPL", m, source="feed") for m in range(150)]
    rows += [bar("MSFT", m, source="other", quality_score="0.3" if m == 1 else "1") for m in range(3)]
    ingest_table(dataset="market_data", data=rows)


def listed(response) -> list[tuple[str, int]]:
    assert response.status_code == 200
    return [(r.symbol, int((r.time - T0).total_seconds() // 60)) for r in response.context["cl"].result_list]


def test_it_lists_newest_first_without_counting_or_distinct(admin_client, day):
    with CaptureQueriesContext(connection) as ctx:
        response = admin_client.get(URL)
    assert listed(response)[:2] == [("AAPL", 149), ("AAPL", 148)]
    sqls = [q["sql"] for q in ctx.captured_queries]
    assert not any("DISTINCT" in s.upper() for s in sqls)
    counts = [s for s in sqls if "COUNT(" in s.upper() and "market_data" in s]
    assert all("LIMIT 10001" in s for s in counts), counts  # at most a capped count, never a full one
    assert len(sqls) <= 12


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"symbol": "MSFT"}, [("MSFT", 2), ("MSFT", 1), ("MSFT", 0)]),
        ({"q": "msft"}, []),  # exact symbols: an index probe, no case-insensitive scan
        ({"q": "MSFT"}, [("MSFT", 2), ("MSFT", 1), ("MSFT", 0)]),
        ({"source": "other", "time_after": Z(T0 + timedelta(minutes=1))}, [("MSFT", 2), ("MSFT", 1)]),
        (
            {"time_after": Z(T0 + timedelta(minutes=2)), "time_before": Z(T0 + timedelta(minutes=3))},
            [("AAPL", 3), ("MSFT", 2), ("AAPL", 2)],
        ),
        ({"known_at_before": Z(T0 + timedelta(minutes=1))}, [("MSFT", 0), ("AAPL", 0)]),
        ({"quality_max": "0.5"}, [("MSFT", 1)]),
        ({"quality_min": "0.2", "quality_max": "0.4", "symbol": "MSFT,AAPL"}, [("MSFT", 1)]),
    ],
)
def test_it_filters_with_input_boxes(admin_client, day, params, expected):
    assert listed(admin_client.get(URL, params))[:3] == expected


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"time_after": "yesterday"}, "time_after"),
        ({"quality_min": "2"}, "quality_min='2' is not a number between 0 and 1"),
        ({"quality_min": "0.9", "quality_max": "0.1"}, "quality_min must not be after quality_max"),
    ],
)
def test_it_shows_a_bad_filter_and_no_rows(admin_client, day, params, message):
    response = admin_client.get(URL, params)
    assert listed(response) == []
    assert any(message in m for m in shown(response))


def shown(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def action(admin_client, name: str, ids: list[int] | None = None, *, query: str = "", **extra):
    data = {"action": name, "index": "0", "_selected_action": [str(i) for i in (ids or [0])], **extra}
    if ids is None:
        data["select_across"] = "1"
    return admin_client.post(URL + query, data, follow=True)


def test_it_marks_the_selected_rows_suspect_and_audits_who_and_why(admin_client, admin_user, day):
    ids = list(
        MarketData.objects.filter(symbol="AAPL", time__lt=T0 + timedelta(minutes=2)).values_list("id", flat=True)
    )
    response = action(admin_client, "mark_suspect", ids, reason="exchange outage")
    assert any("Quality score set to 0 on 2 row(s)" in m for m in shown(response))
    audits = QualityAudit.objects.order_by("time")
    assert [(a.row_id, a.old_score, a.new_score, a.reason, a.user_id) for a in audits] == [
        (i, 1.0, 0.0, "exchange outage", admin_user.pk) for i in sorted(ids)
    ]


def test_it_curates_all_rows_matching_the_filter_not_only_the_page(admin_client, day):
    action(admin_client, "mark_suspect", query="?symbol=AAPL&time_before=" + Z(T0 + timedelta(minutes=119)))
    assert MarketData.objects.filter(quality_score=0).count() == 120
    assert MarketData.objects.filter(symbol="MSFT", quality_score=0).count() == 0
    assert QualityAudit.objects.count() == 120 and QualityAudit.objects.values("batch").distinct().count() == 1


def test_it_sets_a_typed_score_and_refuses_a_bad_one(admin_client, day):
    ids = list(MarketData.objects.filter(symbol="MSFT").values_list("id", flat=True))
    response = action(admin_client, "set_score", ids, score="1.7", reason="x")
    assert "score='1.7' is not a number between 0 and 1" in shown(response)
    assert not QualityAudit.objects.exists()
    action(admin_client, "set_score", ids, score="0.65", reason="vendor says so")
    assert set(MarketData.objects.filter(symbol="MSFT").values_list("quality_score", flat=True)) == {0.65}
    assert set(QualityAudit.objects.values_list("reason", flat=True)) == {"vendor says so"}


def test_it_curates_nothing_when_the_filter_is_bad(admin_client, day):
    action(admin_client, "mark_suspect", query="?symbol=AAPL&time_before=tomorrow")
    assert not QualityAudit.objects.exists()


def test_it_sends_a_large_selection_to_celery(
    admin_client, day, settings, monkeypatch, django_capture_on_commit_callbacks
):
    settings.TSM_CURATION_SYNC_MAX_ROWS = 100
    task = tasks.quality_scores_set_filtered
    monkeypatch.setattr(task, "delay", lambda *args: task.apply(args=args))  # run the task in this process
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = action(admin_client, "mark_good", query="?symbol=AAPL")
    assert len(callbacks) == 1
    assert any("runs in the background" in m for m in shown(response))
    assert QualityAudit.objects.count() == 0  # every AAPL bar had score 1 already
    with django_capture_on_commit_callbacks(execute=True):
        action(admin_client, "mark_suspect", query="?symbol=AAPL")
    assert MarketData.objects.filter(symbol="AAPL", quality_score=0).count() == 150


def test_it_audits_an_inline_edit_of_the_score(admin_client, admin_user):
    ingest_table(dataset="market_data", data=[bar("AAPL", 0), bar("AAPL", 1)])
    rows = list(MarketData.objects.order_by("-time"))
    data = {
        "form-TOTAL_FORMS": "2",
        "form-INITIAL_FORMS": "2",
        "form-MIN_NUM_FORMS": "0",
        "form-MAX_NUM_FORMS": "1000",
        "form-0-id": str(rows[0].id),
        "form-0-quality_score": "0.4",
        "form-1-id": str(rows[1].id),
        "form-1-quality_score": "1.0",
        "_save": "Save",
        "reason": "looked wrong",
    }
    response = admin_client.post(URL, data)
    assert response.status_code == 302
    audit = QualityAudit.objects.get()
    assert (audit.row_id, audit.old_score, audit.new_score, audit.reason, audit.user_id) == (
        rows[0].id,
        1.0,
        0.4,
        "looked wrong",
        admin_user.pk,
    )


def test_it_allows_only_the_score_to_change_on_a_row_page(admin_client):
    ingest_table(dataset="market_data", data=[bar("AAPL", 0)])
    row = MarketData.objects.get()
    url = f"{URL}{row.id}/change/"
    page = admin_client.get(url)
    assert (
        page.status_code == 200
        and 'name="quality_score"' in page.content.decode()
        and 'name="close"' not in page.content.decode()
    )
    admin_client.post(url, {"quality_score": "0.1", "close": "99"})
    row.refresh_from_db()
    assert (row.quality_score, str(row.close)) == (0.1, "10.500000")
    assert QualityAudit.objects.get().new_score == 0.1
    assert admin_client.get(URL + "add/").status_code == 403


def test_it_shows_the_audit_read_only_and_by_batch(admin_client, day):
    done = quality.quality_scores_set(
        dataset="market_data", rows=MarketData.objects.filter(symbol="MSFT"), score=0.5, reason="r"
    )
    quality.quality_scores_set(
        dataset="market_data", rows=MarketData.objects.filter(symbol="AAPL")[:1], score=0.5, reason="r"
    )
    response = admin_client.get("/admin/timeseries/qualityaudit/", {"batch": str(done.batch)})
    assert response.status_code == 200 and len(response.context["cl"].result_list) == 3
    audit = QualityAudit.objects.first()
    assert admin_client.post(f"/admin/timeseries/qualityaudit/{audit.id}/delete/", {"post": "yes"}).status_code == 403
    assert admin_client.get("/admin/timeseries/qualityaudit/add/").status_code == 403
    assert QualityAudit.objects.count() == 4


def test_it_runs_the_checks_from_the_admin_and_reports_the_symbol_day(admin_client):
    ingest_table(
        dataset="market_data",
        data=[
            bar("AAPL", 0, close="10"),
            bar("AAPL", 1, close="10.2"),
            {**bar("AAPL", 2, close="14"), "high": "14.5", "open": "14"},
            bar("AAPL", 3, close="10.1"),
            bar("AAPL", 4, close="10.2"),
        ],
    )
    ids = list(MarketData.objects.values_list("id", flat=True))
    response = action(admin_client, "run_quality_checks", ids)
    assert any("1 flag(s) (spike 1), 1 score(s) lowered" in m for m in shown(response))
    report = admin_client.get(
        "/admin/timeseries/qualityflag/report/", {"dataset": "market_data", "symbol": "AAPL", "day": "2024-03-01"}
    )
    body = report.content.decode()
    assert (
        report.status_code == 200 and "spike" in body and "away from its neighbours" in body and "check:spike" in body
    )
    bad = admin_client.get("/admin/timeseries/qualityflag/report/", {"symbol": "AAPL", "day": "March 1st"})
    assert "day=&#x27;March 1st&#x27; is not a date (YYYY-MM-DD)" in bad.content.decode()
    other = admin_client.get(
        "/admin/timeseries/qualityflag/report/", {"symbol": "AAPL", "day": "2024-03-01", "dataset": "insider_trades"}
    )
    assert "insider_trades&#x27; has no quality_score" in other.content.decode()
    empty = admin_client.get("/admin/timeseries/qualityflag/report/")
    assert empty.status_code == 200 and "errornote" not in empty.content.decode()


def test_it_lists_and_curates_news(admin_client):
    ingest_table(dataset="news_events", data=[{"time": T0.isoformat(), "symbol": "AAPL", "title": "t", "url": "u"}])
    response = admin_client.get("/admin/timeseries/newsevent/", {"symbol": "AAPL", "quality_max": "1"})
    assert response.status_code == 200 and len(response.context["cl"].result_list) == 0  # unscored is not <= 1
    story = NewsEvent.objects.get()
    admin_client.post(
        "/admin/timeseries/newsevent/", {"action": "mark_suspect", "index": "0", "_selected_action": [str(story.id)]}
    )
    assert QualityAudit.objects.get().dataset == "news_events"


@pytest.mark.parametrize("model", ["insidertrade", "socialsentiment", "governmentevent"])
def test_it_lists_the_other_datasets_with_symbol_and_time_filters(admin_client, model):
    response = admin_client.get(
        f"/admin/timeseries/{model}/", {"symbol": "AAPL", "time_after": "2024-01-01T00:00Z", "q": "AAPL"}
    )
    assert response.status_code == 200
    # no quality score here: Django's answer to an unknown parameter (back to the list, "?e=1")
    assert admin_client.get(f"/admin/timeseries/{model}/", {"quality_min": "0.5"})["Location"].endswith("?e=1")


def test_it_accepts_proposed_scores_from_the_flags_list(admin_client):
    ingest_table(dataset="market_data", data=[bar("AAPL", m, close="10") for m in range(6)])
    quality.quality_checks_range(dataset="market_data", symbols=["AAPL"], start=T0, end=T0 + timedelta(hours=1))
    flag = QualityFlag.objects.order_by("time").first()  # stale: bars 4 and 5 end runs of 5 equal bars
    response = admin_client.post(
        "/admin/timeseries/qualityflag/",
        {"action": "accept_proposals", "index": "0", "_selected_action": [str(flag.id)]},
        follow=True,
    )
    assert any("1 row(s) changed" in m for m in shown(response))
    assert MarketData.objects.get(id=flag.row_id).quality_score == 0.5
    assert admin_client.get(f"/admin/timeseries/qualityflag/{flag.id}/change/").status_code == 200

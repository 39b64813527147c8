"""Curating quality scores in the admin, in headless Chromium: filter, bulk action over every row
matching the filter, inline edit, and the audit log showing who changed what and why."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ingestion.loader import ingest_table
from tests.helpers import T0, bar
from timeseries import quality
from timeseries.models import MarketData, QualityAudit

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def bars():
    # 130 AAPL bars (more than the list's 100 per page) and a few MSFT bars
    ingest_table(dataset="market_data", data=[bar("AAPL", m) for m in range(130)] + [bar("MSFT", m) for m in range(3)])


def test_it_marks_every_row_matching_the_filter_suspect_and_shows_it_in_the_audit(
    live_url, staff_page, bars, screenshot
):
    page = staff_page
    page.goto(live_url("/admin/timeseries/marketdata/"))
    page.fill("input[name=symbol]", "AAPL")
    page.locator("form.tsm-input-filter").first.locator("input[type=submit]").click()
    page.wait_for_url("**symbol=AAPL**")
    assert page.locator("#result_list tbody tr").count() == 100

    page.check("#action-toggle")
    page.click("div.actions .question a")  # "Select all … market data" (every row matching the filter)
    page.select_option("select[name=action]", "mark_suspect")
    page.fill("input[name=reason]", "exchange outage")
    page.click("button[name=index]")
    page.wait_for_load_state("domcontentloaded")
    assert "Quality score set to 0 on 130 row(s)" in page.locator("ul.messagelist").inner_text()
    screenshot(page, "curation-marked-suspect")

    assert MarketData.objects.filter(symbol="AAPL", quality_score=0).count() == 130
    assert not MarketData.objects.filter(symbol="MSFT", quality_score=0).exists()

    page.click("ul.messagelist a")  # the message links to this action's audit entries
    page.wait_for_url("**/qualityaudit/**batch=**")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 100  # one page of the 130 entries
    first = rows.first.inner_text()
    assert "AAPL" in first and "exchange outage" in first and "staff" in first
    assert "1.0" in first and "0.0" in first
    screenshot(page, "curation-audit")


def test_it_audits_a_score_edited_inline_in_the_list(live_url, staff_page, bars):
    page = staff_page
    page.goto(live_url("/admin/timeseries/marketdata/?symbol=MSFT"))
    newest = MarketData.objects.get(symbol="MSFT", time=T0 + timedelta(minutes=2))
    page.fill("#result_list tbody tr >> nth=0 >> input[name$=quality_score]", "0.35")
    page.fill("input[name=reason]", "spread too wide")
    page.click("input[name=_save]")
    page.wait_for_load_state("domcontentloaded")
    audit = QualityAudit.objects.get()
    assert (audit.row_id, audit.old_score, audit.new_score, audit.reason, audit.user.username) == (
        newest.id,
        1.0,
        0.35,
        "spread too wide",
        "staff",
    )
    page.goto(live_url("/admin/timeseries/qualityaudit/"))
    assert "spread too wide" in page.locator("#result_list").inner_text()


def test_it_shows_the_quality_report_of_a_symbol_day(live_url, staff_page, screenshot):
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
    quality.quality_checks_range(dataset="market_data", start=T0, end=T0 + timedelta(hours=1))
    page = staff_page
    page.goto(live_url("/admin/timeseries/qualityflag/report/"))
    page.fill("input[name=symbol]", "AAPL")
    page.fill("input[name=day]", "2024-03-01")
    page.click("#quality-report-form input[type=submit]")
    page.wait_for_selector("#quality-flags")
    assert "spike 1" in page.locator("#quality-report-summary").inner_text()
    flags = page.locator("#quality-flags tbody tr")
    assert flags.count() == 1 and "away from its neighbours" in flags.first.inner_text()
    assert "check:spike" in page.locator("#quality-audits").inner_text()
    screenshot(page, "curation-quality-report")

"""A key's version history in headless Chromium: from a market data row's admin page to its history,
then "make this version current again" on the superseded vendor version (issue #16)."""

from __future__ import annotations

import pytest

from ingestion.loader import ingest_table
from ingestion.models import Load
from tests.helpers import bar
from timeseries.models import MarketData
from timeseries.rules import format_instant

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_opens_the_history_from_a_row_and_makes_the_vendor_version_current_again(live_url, staff_page, screenshot):
    vendor = ingest_table(dataset="market_data", data=[bar("AAPL", 0, close="10.5")], feed="vendor_x")
    fix = ingest_table(dataset="market_data", data=[bar("AAPL", 0, close="10.6")], feed="curation")
    row = MarketData.objects.get(symbol="AAPL", recorded_at=fix.recorded_at)
    page = staff_page

    page.goto(live_url(f"/admin/timeseries/marketdata/{row.pk}/change/"))
    page.click("text=every version of this key, its source and status")
    page.wait_for_url("**/admin/ingestion/load/versions/market_data/**")
    rows = page.locator("#version-history tbody tr")
    assert rows.count() == 2
    assert rows.nth(0).get_attribute("data-status") == "current"
    assert rows.nth(1).get_attribute("data-status") == "superseded"
    assert "vendor_x" in rows.nth(1).inner_text() and "close 10.5" in rows.nth(1).inner_text()
    assert f"superseded by the version recorded at {format_instant(fix.recorded_at)}" in rows.nth(1).inner_text()
    assert rows.nth(0).locator("button.reassert").count() == 0  # the current version has no button
    screenshot(page, "version-history")

    rows.nth(1).locator("button.reassert").click()
    page.wait_for_load_state("domcontentloaded")
    message = page.locator("ul.messagelist").inner_text()
    assert f"the version recorded at {format_instant(vendor.recorded_at)} (vendor_x)" in message
    rows = page.locator("#version-history tbody tr")
    assert rows.count() == 3
    newest = rows.nth(0)
    assert newest.get_attribute("data-status") == "current" and "close 10.5" in newest.inner_text()
    assert "curation" in newest.inner_text() and "made current again by staff" in newest.inner_text()
    assert [rows.nth(i).get_attribute("data-status") for i in (1, 2)] == ["superseded", "superseded"]
    screenshot(page, "version-history-made-current")

    audit = Load.objects.get(reassert=True)
    assert (audit.requested_by, audit.feed) == ("staff", "curation")
    assert page.js_errors == []

"""The storage report admin page (timeseries/admin_storage.py) in headless Chromium."""

from __future__ import annotations

import pytest

from ingestion.loader import ingest_table
from tests.helpers import bar
from timeseries.capabilities import capabilities
from timeseries.datasets import DATASETS

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_reaches_the_storage_report_from_the_admin_index_and_shows_every_dataset(
    live_url, staff_page, screenshot, foreign_assets
):
    ingest_table(dataset="market_data", data=[bar(s, m) for s in ("AAA", "BBB") for m in range(30)])
    staff_page.goto(live_url("/admin/"))
    staff_page.click("text=Storage report")
    staff_page.wait_for_selector("#storage-report")
    assert staff_page.url.endswith("/admin/timeseries/storage/")
    assert staff_page.locator("#storage-lane").inner_text() == capabilities().lane
    rows = staff_page.locator("#storage-report tbody tr")
    assert [rows.nth(i).get_attribute("data-dataset") for i in range(rows.count())] == list(DATASETS)
    market = staff_page.locator('#storage-report tr[data-dataset="market_data"] td')
    assert market.nth(1).inner_text() == "2024-03-01 14:30:00 .. 2024-03-01 14:59:00 UTC"
    screenshot(staff_page, "storage-report")
    assert foreign_assets(staff_page) == []
    assert staff_page.js_errors == []

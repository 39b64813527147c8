"""Admin readability at 1,400 px (issue #14 item 7): the quality audit and flag lists keep their reason
column readable, and a read-only upload page shows no Save buttons."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from ingestion import uploads
from ingestion.loader import ingest_table
from ingestion.models import Upload
from tests.helpers import T0, bar
from timeseries import quality
from timeseries.models import MarketData

pytestmark = pytest.mark.django_db(transaction=True)

WIDE = {"width": 1400, "height": 900}
LONG_REASON = "exchange outage: the feed repeated the 14:31 print for six minutes, confirmed with the venue's own tape"


@pytest.fixture
def curated():
    """An audit entry with a long reason, and stale/spike flags with their generated reasons."""
    ingest_table(dataset="market_data", data=[bar("AAPL", m, close="10") for m in range(8)])
    quality.quality_checks_range(dataset="market_data", symbols=["AAPL"], start=T0, end=T0 + timedelta(hours=1))
    quality.quality_scores_set(
        dataset="market_data", rows=MarketData.objects.filter(symbol="AAPL")[:2], score=0.3, reason=LONG_REASON
    )


def reason_cell_width(page, url: str) -> tuple[float, float]:
    page.goto(url)
    page.wait_for_selector("#result_list")
    header = page.locator("#result_list thead th.column-reason")
    cell = page.locator("#result_list tbody td.field-reason").first
    return header.bounding_box()["width"], cell.bounding_box()["height"]


@pytest.mark.parametrize("path", ["/admin/timeseries/qualityaudit/", "/admin/timeseries/qualityflag/"])
def test_the_reason_column_is_readable_at_1400_px(live_url, staff_page, screenshot, curated, path):
    staff_page.set_viewport_size(WIDE)
    width, height = reason_cell_width(staff_page, live_url(path))
    screenshot(staff_page, "admin" + path.replace("/", "-").rstrip("-"))
    assert width >= 220, f"reason column {width:.0f} px wide"
    assert height < 120, f"a reason cell {height:.0f} px high"  # a few lines, not a character per line
    table = staff_page.locator("#result_list").bounding_box()
    content = staff_page.locator("#changelist .results").bounding_box()
    assert table["x"] + table["width"] <= content["x"] + content["width"] + 1  # no column pushed off the page


def test_a_read_only_upload_page_has_no_save_buttons(live_url, browser_page, make_user, login, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    made = Upload.objects.create(
        dataset="market_data",
        file=SimpleUploadedFile(
            "a.csv", b"time,symbol,open,high,low,close,volume\n2024-03-01T14:30Z,AAPL,10,11,9,10.5,100\n"
        ),
    )
    assert uploads.upload_process(upload_id=made.pk).status == "done"
    viewer = make_user(staff=True, perms=["ingestion.view_upload"])
    login(browser_page, viewer)
    browser_page.set_viewport_size(WIDE)
    browser_page.goto(live_url(f"/admin/ingestion/upload/{made.pk}/change/"))
    browser_page.wait_for_selector("#upload-progress")
    assert browser_page.locator('input[name="_save"], input[name="_continue"], input[name="_addanother"]').count() == 0
    assert browser_page.locator("text=download CSV").count() == 0

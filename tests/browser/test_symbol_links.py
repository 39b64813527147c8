"""In a real browser, the link of every symbol the rule admits (with /, ^, =, :) reaches that symbol's
page at the same T, the step links keep it, and a symbol nothing is known of says so (404)."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from ingestion.loader import ingest_table

SYMS = ("BRK/B", "A.B^C=D_E:F-G", "ABCDEFGHIJKLMNOP/QRSTUVWXYZ01234", "NYSE:IBM")
LAST_BAR = datetime(2199, 12, 31, 23, 58, tzinfo=UTC)
AT = "2199-12-31T23:59:59Z"


@pytest.fixture
def edge_rows(transactional_db):
    ingest_table(
        dataset="market_data",
        data=[
            {
                "time": LAST_BAR.isoformat(),
                "symbol": s,
                "open": "10",
                "high": "11",
                "low": "9",
                "close": "10.5",
                "volume": "100",
            }
            for s in SYMS
        ],
    )


def test_every_symbol_link_reaches_its_own_page_in_the_browser(edge_rows, live_url, staff_page, screenshot):
    page = staff_page
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    for sym in SYMS:
        page.goto(live_url(f"/timeline/?at={AT}"))
        assert page.locator("#overview tbody tr").count() == len(SYMS)
        page.locator("#overview a", has_text=sym).first.click()
        page.wait_for_selector("#chart[data-ready=true] .main-svg")
        assert unquote(urlsplit(page.url).path) == f"/timeline/{sym}/"
        assert parse_qs(urlsplit(page.url).query)["at"] == [AT]
        assert page.locator("h1").inner_text().startswith(f"{sym} as of")
        page.click("a[data-step='+1 hour']")
        page.wait_for_selector("#chart[data-ready=true] .main-svg")
        assert unquote(urlsplit(page.url).path) == f"/timeline/{sym}/"
    assert errors == []
    screenshot(page, "timeline-edge-symbol")


def test_a_symbol_nothing_is_known_of_says_so_in_the_browser(edge_rows, live_url, staff_page):
    page = staff_page
    response = page.goto(live_url(f"/timeline/NOSUCH/?at={AT}"))
    assert response.status == 404
    assert page.locator("#error-message").inner_text() == f"No data for symbol NOSUCH is known at {AT}."
    page.click("text=Market overview")
    assert urlsplit(page.url).path == "/timeline/" and parse_qs(urlsplit(page.url).query)["at"] == [AT]

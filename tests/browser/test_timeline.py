"""The timeline pages in headless Chromium against the live server (127.0.0.1).

A staff user logs in, opens a symbol's timeline at T, moves T with the step buttons, the date-time
field and the slider; a story published late (known only after T) is absent from the table and the
chart until T passes its knowledge time, then it appears (and is listed under "what changed"). The
chart is drawn (plotly served by the site: no asset from another host), screenshots are not blank,
the tables work with JavaScript off, and the overview sorts and links to the symbol pages.
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from ingestion.loader import ingest_table
from tests.helpers import T0, bar
from timeseries.views.timeline import iso

LATE_TITLE = "Late story: AAA recalls widgets"
EARLY_TITLE = "Early story: AAA ships widgets"


@pytest.fixture
def history(transactional_db):
    """Two hours of AAA/BBB bars, an early story, a story published at +10 min but known only at +90 min,
    a filing at +100 min for a trade at +5 min, sentiment windows, and a correction of the first bar at +80 min."""
    ingest_table(
        dataset="market_data",
        data=[bar(s, m, close=str(10 + (m % 7) / 10)) for s in ("AAA", "BBB") for m in range(0, 180)],
    )
    ingest_table(
        dataset="market_data",
        data=[{**bar("AAA", 0, close="9.5"), "known_at": (T0 + timedelta(minutes=80)).isoformat()}],
    )
    ingest_table(
        dataset="news_events",
        data=[
            {
                "time": (T0 + timedelta(minutes=5)).isoformat(),
                "symbol": "AAA",
                "news_id": "early",
                "title": EARLY_TITLE,
                "impact_score": "0.4",
            },
            {
                "time": (T0 + timedelta(minutes=10)).isoformat(),
                "symbol": "AAA",
                "news_id": "late",
                "title": LATE_TITLE,
                "impact_score": "0.9",
                "known_at": (T0 + timedelta(minutes=90)).isoformat(),
            },
        ],
    )
    ingest_table(
        dataset="insider_trades",
        data=[
            {
                "time": (T0 + timedelta(minutes=5)).isoformat(),
                "symbol": "AAA",
                "insider_name": "Jane Insider",
                "transaction_type": "buy",
                "shares": "1000",
                "price": "10",
                "value": "10000",
                "filing_date": (T0 + timedelta(minutes=100)).isoformat(),
            }
        ],
    )
    hour = T0.replace(minute=0)
    ingest_table(
        dataset="social_sentiment",
        data=[
            {
                "time": (hour + timedelta(hours=h)).isoformat(),
                "symbol": "AAA",
                "platform": "reddit",
                "mention_count": "10",
                "sentiment_avg": str(0.1 * h),
            }
            for h in range(3)
        ],
    )


def chart_news(page) -> int:
    return page.evaluate("() => JSON.parse(document.getElementById('chart-data').textContent).news.x.length")


def wait_chart(page) -> None:
    page.wait_for_selector("#chart[data-ready=true] .main-svg")


def news_titles(page) -> list[str]:
    return page.locator("#news tbody tr td:nth-child(2)").all_inner_texts()


def at_of(page) -> str:
    return parse_qs(urlsplit(page.url).query)["at"][0]


def test_it_moves_t_and_shows_a_late_story_only_once_it_is_known(
    history, live_url, staff_page, screenshot, foreign_assets
):
    page = staff_page
    page.goto(live_url(f"/timeline/AAA/?at={iso(T0 + timedelta(minutes=60))}"))
    wait_chart(page)
    assert page.locator("#as-of").get_attribute("datetime") == iso(T0 + timedelta(minutes=60))
    assert EARLY_TITLE in news_titles(page) and LATE_TITLE not in page.content()
    assert chart_news(page) == 1
    assert "Jane Insider" not in page.content()  # filed at +100 min
    assert page.locator("#max-recorded-at").inner_text().endswith("Z")
    assert foreign_assets(page) == [] and page.js_errors == []
    screenshot(page, "timeline-before")
    screenshot(page, "timeline-chart-before", selector="#chart")

    page.click("a[data-step='+1 hour']")  # T = +120 min: the late story (known at +90) and the filing appear
    wait_chart(page)
    assert at_of(page) == iso(T0 + timedelta(minutes=120))
    assert LATE_TITLE in news_titles(page) and chart_news(page) == 2
    assert page.locator("#filings").inner_text().count("Jane Insider") == 1
    changes = page.locator("#changes").inner_text()
    assert LATE_TITLE in changes and "correction" in changes  # both became known since the previous T
    screenshot(page, "timeline-after")

    page.click("a[data-step='-1 hour']")  # back: gone again
    wait_chart(page)
    assert at_of(page) == iso(T0 + timedelta(minutes=60)) and LATE_TITLE not in page.content()

    page.fill("#at-field", iso(T0 + timedelta(minutes=90)))  # the date-time field: exactly its knowledge time
    page.click("#time-control button[type=submit]")
    wait_chart(page)
    assert at_of(page) == iso(T0 + timedelta(minutes=90)) and LATE_TITLE in news_titles(page)
    page.fill("#at-field", iso(T0 + timedelta(minutes=90) - timedelta(microseconds=1)))
    page.click("#time-control button[type=submit]")
    wait_chart(page)
    assert LATE_TITLE not in page.content()


def test_it_moves_t_with_the_slider_and_keeps_the_window(history, live_url, staff_page):
    page = staff_page
    start, end = T0, T0 + timedelta(hours=3)
    page.goto(live_url(f"/timeline/AAA/?at={iso(T0 + timedelta(minutes=30))}&from={iso(start)}&to={iso(end)}"))
    wait_chart(page)
    assert LATE_TITLE not in page.content()
    with page.expect_navigation():
        page.evaluate(
            "() => { const s = document.getElementById('slider'); s.value = '1000';"
            " s.dispatchEvent(new Event('change')); }"
        )
    wait_chart(page)
    query = parse_qs(urlsplit(page.url).query)
    assert query["at"] == [iso(end)] and query["from"] == [iso(start)] and query["to"] == [iso(end)]
    assert LATE_TITLE in news_titles(page)


def test_it_shows_the_tables_without_javascript(history, browser, live_url, make_user, login):
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        login(page, make_user("reader", perms=["timeseries.view_marketdata"]))
        page.goto(live_url(f"/timeline/AAA/?at={iso(T0 + timedelta(minutes=120))}"))
        assert LATE_TITLE in news_titles(page) and page.locator("#chart .main-svg").count() == 0
        assert "9.5" not in page.locator("#last-close").inner_text()
        page.goto(live_url(f"/timeline/?at={iso(T0 + timedelta(minutes=120))}&sort=-symbol"))
        assert page.locator("#overview tbody tr").evaluate_all("rows => rows.map(r => r.dataset.symbol)") == [
            "BBB",
            "AAA",
        ]
    finally:
        context.close()


def test_it_sorts_the_overview_and_links_to_the_symbol_at_the_same_t(
    history, live_url, staff_page, screenshot, foreign_assets
):
    page = staff_page
    at = iso(T0 + timedelta(minutes=100))
    page.goto(live_url(f"/timeline/?at={at}"))
    assert page.locator("#overview tbody tr").count() == 2
    page.click("a[data-sort=symbol]")  # ascending -> descending
    assert page.locator("#overview tbody tr").evaluate_all("rows => rows.map(r => r.dataset.symbol)") == ["BBB", "AAA"]
    assert foreign_assets(page) == []
    screenshot(page, "timeline-overview")
    page.click("#overview a:text-is('AAA')")
    wait_chart(page)
    assert urlsplit(page.url).path == "/timeline/AAA/" and at_of(page) == at


def test_it_sends_an_anonymous_visitor_to_the_login_page(live_url, browser_page, transactional_db):
    browser_page.goto(live_url(f"/timeline/AAA/?at={iso(T0)}"))
    assert urlsplit(browser_page.url).path == "/accounts/login/"


def test_it_charts_daily_bars_for_a_long_window_and_says_so(history, live_url, staff_page, screenshot):
    page = staff_page
    at = T0 + timedelta(minutes=120)
    page.goto(live_url(f"/timeline/AAA/?at={iso(at)}&from={iso(T0 - timedelta(days=30))}&to={iso(at)}"))
    wait_chart(page)
    assert page.locator("#resolution").get_attribute("data-resolution") == "1d"
    assert "daily bars" in page.locator("#resolution").inner_text()
    days = page.evaluate("() => JSON.parse(document.getElementById('chart-data').textContent).bars.x")
    assert days == ["2024-03-01 00:00:00.000000"]  # one (partial) day, built from the bars known at T
    assert page.locator("#chart .candlestick, #chart .trace.boxes, #chart g.cartesianlayer path").count() > 0
    screenshot(page, "timeline-daily", selector="#chart")


def test_every_axis_label_of_the_chart_is_inside_the_chart(history, live_url, staff_page):
    """The event lanes' category labels ("government" is the longest) are drawn whole, not clipped
    at the chart's left edge."""
    ingest_table(
        dataset="government_events",
        data=[
            {
                "time": (T0 + timedelta(minutes=30)).isoformat(),
                "event_type": "contract_award",
                "primary_symbol": "AAA",
                "description": "AAA wins a widget contract",
                "market_impact": "0.3",
            }
        ],
    )
    page = staff_page
    page.set_viewport_size({"width": 1400, "height": 900})
    page.goto(live_url(f"/timeline/AAA/?at={iso(T0 + timedelta(minutes=120))}"))
    wait_chart(page)
    boxes = page.evaluate("""() => {
        const chart = document.getElementById('chart').getBoundingClientRect();
        return Array.from(document.querySelectorAll(
            '#chart .yaxislayer-above text, #chart .g-ytitle text, #chart .g-y3title text, #chart .g-y4title text'))
          .map(t => { const r = t.getBoundingClientRect(); return {text: t.textContent, left: r.left - chart.left}; });
    }""")
    labels = {b["text"] for b in boxes}
    assert {"government", "insider", "news", "price", "volume", "sentiment"} <= labels
    assert [b for b in boxes if b["left"] < 0] == []

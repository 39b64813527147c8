"""The shared browser fixtures themselves work: login, screenshot check, same-origin check."""

from __future__ import annotations

import pytest

from tests.browser.conftest import assert_not_blank


def test_it_logs_a_staff_user_in_and_screenshots_the_admin(live_url, staff_page, screenshot, foreign_assets):
    staff_page.goto(live_url("/admin/"))
    assert "Site administration" in staff_page.content()
    stats = assert_not_blank(screenshot(staff_page, "admin-index"))
    assert stats["width"] == 1280
    assert foreign_assets(staff_page) == []


def test_it_reports_a_blank_screenshot_as_blank(browser_page):
    browser_page.set_content("<html><body style='background:#fff'></body></html>")
    with pytest.raises(AssertionError, match="blank"):
        assert_not_blank(browser_page.screenshot())


def test_it_reports_assets_from_another_host(browser_page, live_url, foreign_assets):
    browser_page.goto(live_url("/admin/login/"))
    browser_page.evaluate(
        "() => { const s = document.createElement('link'); s.rel = 'x-none';"
        " s.href = 'https://cdn.example.com/a.css'; document.head.appendChild(s); }"
    )
    assert foreign_assets(browser_page) == ["https://cdn.example.com/a.css"]

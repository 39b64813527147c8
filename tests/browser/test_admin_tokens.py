"""API tokens in the admin, in headless Chromium: create (the key shown once), use, revoke."""

from __future__ import annotations

import pytest
from django.test import Client

from timeseries.models import ApiToken

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_token_admin_creates_a_token_sees_its_key_once_and_revokes_it(
    live_url, browser_page, make_user, login, screenshot, settings
):
    settings.TSM_TOKEN_CACHE_SECONDS = 0  # the live server's thread is "another process": no cached token
    owner = make_user("ci-bot")
    admin = make_user(
        "tokenadmin",
        staff=True,
        perms=["timeseries.view_apitoken", "timeseries.add_apitoken", "timeseries.change_apitoken"],
    )
    login(browser_page, admin)
    page = browser_page
    page.goto(live_url("/admin/"))
    page.click("text=Api tokens")
    page.click('a.addlink[href$="/admin/timeseries/apitoken/add/"]')
    page.fill("input[name=user]", str(owner.pk))
    page.fill("input[name=name]", "nightly export")
    page.select_option("select[name=scope]", "read")
    page.click("input[name=_save]")
    key = page.locator("#new-token-key").input_value()
    assert key.startswith("tsm_") and "shown only this once" in page.content()
    screenshot(page, "admin-token-created")

    api = Client()
    assert (
        api.get(live_url("/api/v1/state/?at=2024-03-01T15:30:00Z"), HTTP_AUTHORIZATION=f"Bearer {key}").status_code
        == 200
    )

    page.goto(live_url("/admin/timeseries/apitoken/"))
    assert key not in page.content() and f"{key[:8]}…" in page.content() and "nightly export" in page.content()
    page.check("input[name=_selected_action]")
    page.select_option("select[name=action]", "revoke_tokens")
    page.click("button[name=index]")
    page.wait_for_selector("text=Revoked 1 token(s)")
    assert ApiToken.objects.get().revoked
    assert (
        api.get(live_url("/api/v1/state/?at=2024-03-01T15:30:00Z"), HTTP_AUTHORIZATION=f"Bearer {key}").status_code
        == 401
    )
    assert page.js_errors == []

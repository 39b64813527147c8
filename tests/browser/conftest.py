"""Reusable fixtures for browser tests: headless Chromium (Debian's /usr/bin/chromium, driven by
Playwright for Python), Django's live server on 127.0.0.1, logged-in pages and screenshot checks.

Typical use::

    def test_it_shows_the_page(live_url, staff_page, screenshot):
        staff_page.goto(live_url("/timeline/"))
        assert staff_page.locator("h1").inner_text() == "Market overview"
        screenshot(staff_page, "overview")          # saved + asserted not blank

    def test_it_needs_a_permission(live_url, browser_page, make_user, login):
        user = make_user(perms=["timeseries.view_marketdata"])
        login(browser_page, user)
        ...

Fixtures (all usable from any test module under tests/browser/):

* ``browser``       headless Chromium shared by the tests of this package (``playwright.sync_api.Browser``).
* ``browser_page``  a fresh, anonymous page (own context: own cookies) closed after the test.
* ``live_server``   pytest-django's live server, forced onto 127.0.0.1 (``DJANGO_LIVE_TEST_SERVER_ADDRESS``);
                    requesting it makes the test transactional (the server thread sees committed rows only).
* ``live_url``      ``live_url("/path/?q=1")`` -> absolute URL on the live server.
* ``make_user``     ``make_user(username=..., staff=..., superuser=..., perms=["app.codename", ...])`` -> a
                    saved user whose clear-text password is ``user.raw_password``.
* ``login``         ``login(page, user[, path])``: logs in through a real login form (the admin's for
                    staff, ``/accounts/login/`` for other users, or the form at ``path``).
* ``staff_page``    a page logged in as a staff superuser (``staff_page.user`` is the user).
* ``screenshot``    ``screenshot(page, name)``: full-page PNG saved under ``var/test-screenshots/``,
                    asserted not blank (see :func:`assert_not_blank`); returns the PNG bytes.
* ``foreign_assets`` ``foreign_assets(page)``: every script/link/img/iframe URL of the page that is not
                    served by the page's own origin (an empty list is what a test wants).

Notes: Playwright's sync API keeps an asyncio loop in the test thread, which makes Django's ORM refuse
to run ("SynchronousOnlyOperation"); ``browser`` sets ``DJANGO_ALLOW_ASYNC_UNSAFE`` while it lives
(and restores it after). Never run ``playwright install``: the browser is the system's Chromium.
"""

from __future__ import annotations

import io
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest

os.environ.setdefault("DJANGO_LIVE_TEST_SERVER_ADDRESS", "127.0.0.1")  # never localhost / 0.0.0.0

CHROMIUM = os.environ.get("TSM_CHROMIUM", "/usr/bin/chromium")
SCREENSHOT_DIR = Path(__file__).resolve().parents[2] / "var" / "test-screenshots"
DEFAULT_TIMEOUT_MS = 15_000


@pytest.fixture(scope="package")  # one Chromium for tests/browser; closed (and the env restored) after it
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: install the Debian package (make system-packages)")
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    pw = sync_playwright().start()
    try:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        try:
            yield chromium
        finally:
            chromium.close()
    finally:
        pw.stop()
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def browser_page(browser) -> Iterator:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US", timezone_id="UTC")
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.js_errors = errors  # uncaught JavaScript errors of the page, for tests that want none
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def live_url(live_server) -> Callable[[str], str]:
    base = live_server.url
    assert urlsplit(base).hostname == "127.0.0.1", f"live server must bind 127.0.0.1, not {base}"

    def url(path: str = "/") -> str:
        return urljoin(base + "/", path.lstrip("/"))

    return url


@pytest.fixture
def make_user(db) -> Callable:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission

    def make(
        username: str | None = None,
        *,
        staff: bool = False,
        superuser: bool = False,
        perms: list[str] = (),
        password: str | None = None,
    ):
        User = get_user_model()
        password = password or secrets.token_urlsafe(12)
        user = User.objects.create_user(
            username=username or f"user-{secrets.token_hex(4)}",
            password=password,
            is_staff=staff or superuser,
            is_superuser=superuser,
        )
        for perm in perms:
            app_label, codename = perm.split(".", 1)
            user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
        user.raw_password = password
        return user

    return make


@pytest.fixture
def login(live_url) -> Callable:
    def do_login(page, user, path: str | None = None) -> None:
        # staff log in through the admin's form; other users through the site's (/accounts/login/)
        page.goto(live_url(path or ("/admin/login/?next=/admin/" if user.is_staff else "/accounts/login/")))
        page.fill("input[name=username]", user.username)
        page.fill("input[name=password]", user.raw_password)
        page.click("input[type=submit], button[type=submit]")
        page.wait_for_load_state("domcontentloaded")
        if not any(c["name"] == "sessionid" for c in page.context.cookies()):
            raise AssertionError(f"login as {user.username!r} failed: {page.url}\n{page.content()[:2000]}")

    return do_login


@pytest.fixture
def staff_page(browser_page, make_user, login):
    user = make_user("staff", superuser=True)
    login(browser_page, user)
    browser_page.user = user
    return browser_page


def png_stats(png: bytes) -> dict:
    """Pixel statistics of a PNG: size, standard deviation of the grey levels, share of non-white pixels."""
    import numpy as np
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("L")
    grey = np.asarray(image, dtype=np.float64)
    return {
        "width": image.width,
        "height": image.height,
        "std": float(grey.std()),
        "non_white": float((grey < 245).mean()),
        "distinct": int(len(np.unique(grey))),
    }


def assert_not_blank(png: bytes, *, min_std: float = 8.0, min_non_white: float = 0.01, min_distinct: int = 16) -> dict:
    """A screenshot shows something: grey levels vary, some pixels are not white, many shades occur."""
    stats = png_stats(png)
    assert stats["std"] >= min_std and stats["non_white"] >= min_non_white and stats["distinct"] >= min_distinct, (
        f"screenshot looks blank: {stats}"
    )
    return stats


@pytest.fixture
def screenshot(request) -> Callable:
    def take(page, name: str | None = None, *, full_page: bool = True, selector: str | None = None) -> bytes:
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOT_DIR / f"{name or request.node.name}.png"
        target = page.locator(selector) if selector else page
        png = target.screenshot(path=str(path)) if selector else page.screenshot(path=str(path), full_page=full_page)
        assert_not_blank(png)
        return png

    return take


FOREIGN_ASSETS_JS = """() => {
  const out = [];
  for (const el of document.querySelectorAll('script[src], link[href], img[src], iframe[src], source[src]')) {
    const raw = el.getAttribute('src') || el.getAttribute('href');
    out.push(new URL(raw, document.baseURI).href);
  }
  for (const r of performance.getEntriesByType('resource')) out.push(r.name);
  return out;
}"""


@pytest.fixture
def foreign_assets() -> Callable:
    def find(page) -> list[str]:
        origin = urlsplit(page.url)
        own = (origin.scheme, origin.netloc)
        urls = page.evaluate(FOREIGN_ASSETS_JS)
        return sorted(
            {u for u in urls if (urlsplit(u).scheme, urlsplit(u).netloc) != own and not u.startswith("data:")}
        )

    return find

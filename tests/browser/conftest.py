"""Shared fixtures for browser tests: Debian's chromium driven by Playwright against
pytest-django's live server.

Use them in a flow test like this:

    @pytest.mark.browser
    def test_a_manager_opens_the_kpis(page, login, live_server, screenshot):
        login(page, "manager")
        page.goto(live_server.url + "/kpis/")
        screenshot(page, "kpis")

- `browser`: a headless chromium for the test (skipped when /usr/bin/chromium is missing,
  unless CI=true, where a missing browser fails the run).
- `page`: a fresh browser context and page per test (own cookies), 1280x900; JavaScript errors on
  the page fail the test at teardown.
- `login(page, username)`: logs one of the `role_users` (ops, sales1, sales2, manager, admin) in
  through the real login form; the test's database is transactional, so the live server sees
  what the test wrote.
- `screenshot(page, step)`: saves test-artifacts/screenshots/<test>-<step>.png and returns the
  path.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
IN_CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture(autouse=True)
def _allow_orm_beside_playwright(monkeypatch):
    """Playwright's sync API runs an asyncio event loop in this thread; Django refuses ORM
    calls from a thread with a running loop unless told that this is deliberate. Set for each
    browser test (before its database is set up, and until it is torn down), not at import:
    a process-wide value leaks into other tests' subprocesses, and the deploy check rejects it."""
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(autouse=True)
def _browser_test_settings(_allow_orm_beside_playwright, settings, transactional_db):
    """Every browser test uses a transactional database (the live server runs in another
    thread and must see the test's rows) and a fast password hasher for `role_users`.
    A transactional test flushes every table afterwards, including the role groups that the
    roles migration created, so they are put back here (capabilities go by group name)."""
    from django.contrib.auth.models import Group

    from scoring.roles import ROLES

    for role in ROLES:
        Group.objects.get_or_create(name=role)


@pytest.fixture
def browser(django_db_setup) -> Iterator[object]:
    # Per test, not per session: Playwright's event loop must be stopped before the test's
    # database is flushed and before any later test runs, so that Django's async-safety check
    # is relaxed only inside browser tests (about a second per test for chromium to start).
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: apt-get install -y chromium"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()
        # Inside sync_playwright() the test's ORM calls run in another context than
        # pytest-django's, and Django keeps connections per context (asgiref's Local): they
        # are closed here, still inside it, or they outlive the test database's teardown.
        from django.db import connections

        connections.close_all()


@pytest.fixture
def page(browser, live_server) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=live_server.url)
    context.set_default_timeout(10_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    # Whatever the Content-Security-Policy blocks (an inline script, an eval, a foreign host)
    # is reported on the console: each flow fails on it.
    page.on(
        "console",
        lambda message: (
            errors.append(message.text)
            if message.type == "error" and "Content Security Policy" in message.text
            else None
        ),
    )
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture
def login(live_server, role_users) -> Callable[[object, str], None]:
    """login(page, "sales1"): sign in through the login form and wait for the home page."""
    from tests.conftest import TEST_PASSWORD

    def do_login(page, username: str) -> None:
        page.goto(live_server.url + "/accounts/login/")
        page.fill("input[name=username]", username)
        page.fill("input[name=password]", TEST_PASSWORD)
        with page.expect_navigation():
            page.click("button[type=submit], input[type=submit]")
        if "/accounts/login/" in page.url:
            raise AssertionError(f"login as {username} failed")

    return do_login


@pytest.fixture
def screenshot(request) -> Callable[[object, str], Path]:
    """screenshot(page, "step") -> test-artifacts/screenshots/<test>-<step>.png (full page)."""
    folder = Path(request.config.rootpath) / "test-artifacts" / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    test_name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)

    def take(page, step: str) -> Path:
        path = folder / f"{test_name}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', step)}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take

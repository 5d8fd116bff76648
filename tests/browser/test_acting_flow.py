"""Marketing ops set up acting on scores in a real browser: routing rules (an invalid document
is refused with the JSON path of each problem, a valid one becomes version 1), then an
outgoing webhook (added, listed, paused); a manager reads the routing but cannot save it."""

from __future__ import annotations

import json

import pytest
from cryptography.fernet import Fernet

pytestmark = pytest.mark.browser

DOCUMENT = {
    "rules": [
        {
            "name": "EMEA devs",
            "when": [{"field": "country", "op": "in", "value": ["DE", "FR"]}],
            "team": ["sales1", "sales2"],
            "method": "round_robin",
        }
    ],
    "fallback": {"team": ["sales1"], "method": "least_loaded"},
}


def test_ops_set_up_routing_and_a_webhook(page, login, settings, browser, live_server, screenshot):
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    settings.WEBHOOK_ALLOW_PRIVATE = True
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    login(page, "ops")
    page.get_by_role("link", name="Routing", exact=True).click()
    page.wait_for_url("**/routing/")
    bad = json.loads(json.dumps(DOCUMENT))
    bad["rules"][0]["method"] = "random"
    page.fill("#id_document", json.dumps(bad))
    page.get_by_role("button", name="Save as a new version").click()
    alert = page.get_by_role("alert")
    assert "$.rules[0].method" in alert.inner_text()
    screenshot(page, "1-routing-refused")
    page.fill("#id_document", json.dumps(DOCUMENT))
    with page.expect_navigation():
        page.get_by_role("button", name="Save as a new version").click()
    assert page.get_by_role("heading", name="Version 1").is_visible()
    assert page.get_by_role("link", name="v1").is_visible()

    page.get_by_role("link", name="Webhooks", exact=True).click()
    page.wait_for_url("**/webhooks/")
    page.fill("#id_url", "http://127.0.0.1:9/hook")
    page.fill("#id_secret", "a-webhook-secret-of-some-length")
    page.get_by_label("lead.qualified").check()
    with page.expect_navigation():
        page.get_by_role("button", name="Add").click()
    row = page.locator("tr", has_text="http://127.0.0.1:9/hook")
    assert row.get_by_text("Active").is_visible()
    with page.expect_navigation():
        row.get_by_role("button", name="Pause").click()
    assert page.locator("tr", has_text="http://127.0.0.1:9/hook").get_by_text("Paused").is_visible()
    screenshot(page, "2-webhooks")
    assert not errors, errors

    context = browser.new_context(base_url=live_server.url)
    manager = context.new_page()
    try:
        login(manager, "manager")
        manager.goto("/routing/")
        assert "EMEA devs" in manager.locator("pre").inner_text()
        assert not manager.get_by_role("button", name="Save as a new version").count()
        assert not manager.get_by_role("link", name="Webhooks", exact=True).count()
    finally:
        context.close()

"""An admin's self-service set-up in a real browser: invite a user, who opens the one-time
set-password link in their own browser, sets a password and logs in; then the admin makes an
API token on the profile page, sees it once, calls the API with it and revokes it."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

NEW_PASSWORD = "Fresh-pass-8421"


def test_an_admin_invites_a_user_who_sets_a_password_and_logs_in(
    page, login, live_server, browser, screenshot
):
    login(page, "admin")
    page.get_by_role("link", name="Users", exact=True).click()
    page.wait_for_url("**/users/")
    page.fill("#id_username", "newrep")
    page.fill("#id_email", "newrep@example.com")
    page.select_option("#id_role", "sales")
    with page.expect_navigation():
        page.get_by_role("button", name="Invite").click()
    link = page.get_by_test_id("invitation-link").input_value()
    assert link.startswith(live_server.url + "/accounts/reset/")
    assert page.locator('tr[data-username="newrep"]').get_by_text("invited").is_visible()
    screenshot(page, "1-invited")

    # The invitee's own browser: no session of the admin's.
    context = browser.new_context(base_url=live_server.url)
    invitee = context.new_page()
    errors: list[str] = []
    invitee.on("pageerror", lambda error: errors.append(str(error)))
    invitee.on(
        "console",
        lambda m: (
            errors.append(m.text)
            if m.type == "error" and "Content Security Policy" in m.text
            else None
        ),
    )
    try:
        invitee.goto(link)
        invitee.fill("#id_new_password1", NEW_PASSWORD)
        invitee.fill("#id_new_password2", NEW_PASSWORD)
        with invitee.expect_navigation():
            invitee.get_by_role("button", name="Set password").click()
        assert invitee.url.endswith("/accounts/reset/done/")
        invitee.get_by_role("link", name="Log in").click()
        invitee.fill("input[name=username]", "newrep")
        invitee.fill("input[name=password]", NEW_PASSWORD)
        with invitee.expect_navigation():
            invitee.click("button[type=submit]")
        assert "/accounts/login/" not in invitee.url
        assert invitee.locator("header .who").get_by_text("sales").is_visible()
        assert not invitee.get_by_role("link", name="Users", exact=True).count()
    finally:
        context.close()
    assert not errors, errors

    page.reload()
    row = page.locator('tr[data-username="newrep"]')
    assert row.get_by_text("invited").count() == 0
    assert page.get_by_test_id("user-audit").get_by_text("Invited").is_visible()


def test_an_admin_creates_an_api_token_sees_it_once_uses_it_and_revokes_it(
    page, login, live_server, screenshot
):
    login(page, "admin")
    page.locator("header .who").get_by_role("link", name="admin").click()
    page.wait_for_url("**/profile/")
    assert page.get_by_role("link", name="API docs").first.is_visible()
    page.fill("#id_expires_days", "30")
    with page.expect_navigation():
        page.get_by_role("button", name="Create token").click()
    token = page.get_by_test_id("new-token-value").input_value()
    assert len(token) > 30
    prefix = token[:15]
    assert page.locator(f'tr[data-prefix="{prefix}"]').is_visible()
    screenshot(page, "1-token-shown")

    # A request context of its own: no session cookie, so the token alone authenticates.
    client = page.context.browser.new_context()
    me_url = live_server.url + "/api/v1/me/"
    try:
        me = client.request.get(me_url, headers={"Authorization": f"Token {token}"})
        assert me.status == 200 and me.json()["username"] == "admin"
        assert client.request.get(me_url).status in (401, 403)

        page.goto(live_server.url + "/profile/")
        assert page.get_by_test_id("new-token").count() == 0
        assert token not in page.content()
        with page.expect_navigation():
            page.get_by_role("button", name=f"Revoke token {prefix}").click()
        assert page.locator(f'tr[data-prefix="{prefix}"]').count() == 0
        screenshot(page, "2-revoked")

        gone = client.request.get(me_url, headers={"Authorization": f"Token {token}"})
        assert gone.status in (401, 403)
    finally:
        client.close()


def test_an_admin_saves_integration_settings_and_sees_errors_in_the_error_style(
    page, login, live_server, screenshot, settings, monkeypatch
):
    from cryptography.fernet import Fernet

    from integrations.config import ENV_VARIABLES

    for name in ENV_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    login(page, "admin")
    page.get_by_role("link", name="Integrations", exact=True).click()
    page.wait_for_url("**/integrations/")
    mixpanel = page.get_by_test_id("connection-mixpanel")
    # Not configured: its Sync now is disabled and looks it.
    sync = mixpanel.get_by_role("button", name="Sync now")
    assert sync.is_disabled()
    assert float(sync.evaluate("b => getComputedStyle(b).opacity")) < 0.6

    # A failed test: one error, beside the button, in the error colour.
    with page.expect_navigation():
        mixpanel.get_by_role("button", name="Test connection").click()
    mixpanel = page.get_by_test_id("connection-mixpanel")
    error = mixpanel.locator("span.error")
    assert "MIXPANEL_PROJECT_ID" in error.inner_text()
    assert page.locator(".messages").count() == 0
    assert error.evaluate("e => getComputedStyle(e).color") == "rgb(180, 35, 24)"

    mixpanel.get_by_text("Settings", exact=True).click()
    mixpanel.get_by_label("Project id").fill("424242")
    mixpanel.get_by_label("Service account username").fill("bench.sa")
    mixpanel.locator("#mixpanel-secret").fill("s3cret-value")
    with page.expect_navigation():
        mixpanel.get_by_role("button", name="Save settings").click()
    saved = page.locator(".messages li.success")
    assert "mixpanel settings saved" in saved.inner_text()
    assert "s3cret-value" not in page.content()
    screenshot(page, "3-integration-saved")

    # Without a key the save is refused in the error style, never a success colour.
    settings.FIELD_ENCRYPTION_KEYS = []
    mixpanel = page.get_by_test_id("connection-mixpanel")
    mixpanel.get_by_text("Settings", exact=True).click()
    mixpanel.locator("#mixpanel-secret").fill("another")
    with page.expect_navigation():
        mixpanel.get_by_role("button", name="Save settings").click()
    refused = page.locator(".messages li.error")
    assert "Settings not saved" in refused.inner_text()
    assert refused.get_attribute("role") == "alert"

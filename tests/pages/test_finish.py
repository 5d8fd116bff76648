"""No dead ends: error pages and the API docs carry the app's navigation, a favicon on every
page, messages in the style of their level."""

import pytest
from django.contrib import messages
from django.test import Client, RequestFactory

from scoring.views.errors import server_error


def test_a_404_has_the_apps_navigation(client_as, settings):
    settings.DEBUG = False
    response = client_as("sales1").get("/no/such/page/")
    assert response.status_code == 404
    html = response.content.decode()
    assert "Not found" in html
    assert 'aria-label="Main"' in html and 'href="/leads/"' in html


def test_a_500_has_the_apps_navigation(role_users):
    request = RequestFactory().get("/boom/")
    request.user = role_users["manager"]
    response = server_error(request)
    assert response.status_code == 500
    html = response.content.decode()
    assert "Something went wrong" in html
    assert 'href="/kpis/"' in html


def test_a_500_still_renders_when_the_navigation_cannot(db, monkeypatch):
    from scoring.views import errors

    def broken(*args, **kwargs):
        raise RuntimeError("the template with the navigation is broken")

    monkeypatch.setattr(errors.loader, "render_to_string", broken)
    response = server_error(RequestFactory().get("/boom/"))
    # Django's own handler: 500.html without the request, so without the navigation.
    assert response.status_code == 500
    assert b"Something went wrong" in response.content
    assert b'aria-label="Main"' not in response.content


def test_the_server_handler_is_registered():
    from leadscoring import urls

    assert urls.handler500 == "scoring.views.errors.server_error"


@pytest.mark.parametrize(("username", "sees_docs"), [("sales1", True), ("manager", True)])
def test_the_api_docs_are_in_the_navigation_and_have_it(client_as, username, sees_docs):
    client = client_as(username)
    home = client.get("/").content.decode()
    assert ('href="/api/docs/"' in home) is sees_docs
    docs = client.get("/api/docs/").content.decode()
    assert 'aria-label="Main"' in docs and 'href="/leads/"' in docs
    assert "favicon.svg" in docs


def test_every_page_links_the_favicon_and_it_is_served(client_as):
    client = client_as("ops")
    assert 'rel="icon" href="/static/favicon.svg"' in client.get("/").content.decode()
    assert client.get("/static/favicon.svg").status_code == 200


def test_a_login_page_without_a_user_has_no_navigation(db):
    html = Client().get("/accounts/login/").content.decode()
    assert 'aria-label="Main"' not in html


def test_messages_carry_their_level_for_the_error_style(rf, role_users):
    from django.contrib.messages.storage.fallback import FallbackStorage
    from django.template.loader import render_to_string

    request = rf.get("/")
    request.user = role_users["admin"]
    request.session = {}
    storage = FallbackStorage(request)
    request._messages = storage
    messages.error(request, "FIELD_ENCRYPTION_KEYS is not set")
    messages.success(request, "saved")
    html = render_to_string("home.html", {"summary": {}}, request=request)
    assert '<li class="error" role="alert">FIELD_ENCRYPTION_KEYS is not set</li>' in html
    assert '<li class="success">saved</li>' in html

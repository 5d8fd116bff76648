"""Who may do what on the rule pages: every route, every role, and CSRF on every change."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import get_resolver

from scoring.models import PreviewRun, RescoreRun

READERS = ("ops", "manager", "admin")


@pytest.fixture
def routes(live, draft):
    preview = PreviewRun.objects.create(rule_set=draft, baseline=live)
    run = RescoreRun.objects.create(rule_set=live)
    d, v = draft.pk, live.pk
    gets = [
        "/rules/",
        f"/rules/{v}/",
        f"/rules/{d}/",
        f"/rules/{v}/export.json",
        f"/rules/{d}/history/",
        "/personas/",
        f"/personas/?rule_set={v}",
        f"/rules/{d}/rules/",
        f"/rules/previews/{preview.pk}/",
        f"/rules/previews/{preview.pk}/status/",
        f"/rules/runs/{run.pk}/",
        f"/rules/runs/{run.pk}/status/",
    ]
    edit_gets = [f"/rules/{d}/rules/0/edit/", f"/rules/{d}/bands/0/edit/"]
    posts = [
        "/rules/new/",
        "/rules/import/",
        f"/rules/{d}/settings/",
        f"/rules/{d}/preview/",
        f"/rules/{d}/rules/add/",
        f"/rules/{d}/rules/0/",
        f"/rules/{d}/rules/0/move/",
        f"/rules/{d}/rules/0/delete/",
        f"/rules/{d}/personas/add/",
        f"/rules/{d}/personas/0/",
        f"/rules/{d}/personas/0/delete/",
        f"/rules/{d}/bands/add/",
        f"/rules/{d}/bands/0/",
        f"/rules/{d}/bands/0/delete/",
        f"/rules/{d}/publish/",
        f"/rules/{v}/rollback/",
        f"/rules/{d}/discard/",
    ]
    return gets, edit_gets, posts


def test_every_rules_route_declares_its_capability():
    from scoring import urls

    names = [p.name for p in urls.urlpatterns if p.name and re.match("rules-|personas", p.name)]
    assert len(names) >= 20
    for pattern in urls.urlpatterns:
        if pattern.name in names:
            assert pattern.callback.capability in ("view_rules", "edit_rules"), pattern.name
    assert get_resolver().resolve("/rules/1/publish/").func.capability == "edit_rules"


@pytest.mark.parametrize("username", READERS)
def test_readers_get_every_page(client_as, routes, username):
    gets, _, _ = routes
    client = client_as(username)
    for url in gets:
        # htmx header: the section fragment answers plain requests with a redirect.
        assert client.get(url, HTTP_HX_REQUEST="true").status_code == 200, url


def test_managers_can_change_nothing(client_as, routes):
    # (The demo admin is a superuser, and roles.py gives superusers every capability.)
    _, edit_gets, posts = routes
    client = client_as("manager")
    for url in edit_gets:
        assert client.get(url).status_code == 403, url
    for url in posts:
        assert client.post(url, {"name": "x", "points": "1"}).status_code == 403, url


def test_a_read_only_page_offers_no_edit_controls_to_a_manager(client_as, draft):
    html = client_as("manager").get(f"/rules/{draft.pk}/").content.decode()
    assert "Add a rule" not in html and "Publish" not in html and "Edit</a>" not in html


def test_sales_reps_get_403_everywhere(client_as, routes):
    gets, edit_gets, posts = routes
    client = client_as("sales1")
    for url in gets + edit_gets:
        assert client.get(url).status_code == 403, url
    for url in posts:
        assert client.post(url, {"name": "x"}).status_code == 403, url


def test_anonymous_users_are_sent_to_the_login_page(routes):
    gets, edit_gets, posts = routes
    client = Client()
    for url in gets + edit_gets:
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    for url in posts:
        assert client.post(url).status_code == 302, url


def test_marketing_ops_reaches_every_change(client_as, routes):
    _, edit_gets, posts = routes
    client = client_as("ops")
    for url in edit_gets:
        assert client.get(url).status_code != 403, url
    for url in posts:
        assert client.post(url, {"source": "empty"}).status_code not in (403, 405), url


def test_a_post_without_csrf_token_is_refused_and_htmx_sends_it(role_users, draft):
    client = Client(enforce_csrf_checks=True)
    client.force_login(role_users["ops"])
    url = f"/rules/{draft.pk}/rules/0/move/"
    assert client.post(url, {"direction": "down"}).status_code == 403
    page = client.get(f"/rules/{draft.pk}/").content.decode()
    token = re.search(r'hx-headers=\'\{"X-CSRFToken": "([^"]+)"\}\'', page).group(1)
    response = client.post(
        url, {"direction": "down"}, HTTP_X_CSRFTOKEN=token, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200

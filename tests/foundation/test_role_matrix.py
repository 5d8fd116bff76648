"""The role matrix: every route of the product, walked from the URL configuration, admits
exactly the roles that should use it. A route added without a role check fails here."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import get_resolver

from scoring.services.rulesets import ruleset_import
from tests.factories import LeadFactory

# Reachable without logging in (the webhook authenticates by signature instead).
PUBLIC = {
    "healthz",
    "accounts/login/",
    "integrations/hubspot/webhook",
    # An invitation's set-password link (Django's password-reset confirm) and its done page.
    "accounts/reset/<uidb64>/<token>/",
    "accounts/reset/done/",
}

# The staff pages and who may open them (GET). Everyone else gets 403 (or 404 for a lead that
# is not theirs); anonymous users are sent to the login page.
PAGES = {
    "/": {"ops", "sales1", "manager", "admin"},
    "/leads/": {"ops", "sales1", "manager", "admin"},
    "/leads/export.csv": {"ops", "sales1", "manager", "admin"},
    "/rules/": {"ops", "manager", "admin"},
    "/personas/": {"ops", "manager", "admin"},
    "/feedback/": {"ops", "manager"},
    "/kpis/": {"ops", "manager", "admin"},
    "/kpis/calibration/": {"ops", "manager", "admin"},
    "/models/": {"ops", "manager"},
    "/experiments/": {"ops", "manager"},
    "/integrations/": {"ops", "admin"},
    "/imports/": {"ops", "admin"},
    "/profile/": {"ops", "sales1", "manager", "admin"},
    "/users/": {"admin"},
    "/webhooks/": {"ops", "admin"},
    "/profile/alerts/": {"ops", "sales1", "manager", "admin"},
    "/routing/": {"ops", "manager", "admin"},
    "/routing/workload/": {"ops", "manager", "admin"},
    "/companies/": {"ops", "sales1", "manager", "admin"},
}
API = {
    "/api/v1/leads/": {"ops", "sales1", "manager", "admin"},
    "/api/v1/accounts/": {"ops", "sales1", "manager", "admin"},
    "/api/v1/kpis/bands/": {"ops", "manager", "admin"},
    "/api/v1/kpis/funnel/": {"ops", "manager", "admin"},
    "/api/v1/webhooks/": {"ops", "admin"},
    "/api/v1/experiments/": {"ops", "manager"},
}
USERS = ("ops", "sales1", "manager", "admin")


def routes():
    def walk(patterns, prefix=""):
        for pattern in patterns:
            if hasattr(pattern, "url_patterns"):
                yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
            else:
                yield prefix + str(pattern.pattern)

    return [r for r in walk(get_resolver().url_patterns) if not r.startswith("admin/")]


def concrete(route: str, lead_id: int, rule_set_id: int) -> str:
    path = route.replace("<int:lead_id>", str(lead_id)).replace(
        "<int:rule_set_id>", str(rule_set_id)
    )
    path = path.replace("<str:section>", "rules").replace("<slug:vendor>", "hubspot")
    path = path.replace("<slug:table>", "bands").replace("<str:run_key>", "x")
    path = path.replace("<str:token_key>", "abcdef12")
    return "/" + re.sub(r"<int:\w+>", "1", path)


@pytest.fixture
def data(role_users):
    rule_set = ruleset_import(
        {"name": "r", "bands": [{"name": "Cold", "min_score": 0}], "rules": []}, publish=False
    )
    lead = LeadFactory(owner=role_users["sales2"])
    return lead, rule_set


def test_every_route_but_the_public_ones_needs_a_login(data):
    lead, rule_set = data
    anonymous = Client()
    checked = 0
    for route in routes():
        if route in PUBLIC:
            continue
        path = concrete(route, lead.pk, rule_set.pk)
        for method in ("get", "post"):
            response = getattr(anonymous, method)(path)
            # Machine endpoints (the API, the Segment source) answer 401/403, not a redirect.
            if path.startswith(("/api/", "/segment/")):
                assert response.status_code in (401, 403), (method, path, response.status_code)
            else:
                assert response.status_code == 302, (method, path, response.status_code)
                assert response["Location"].startswith("/accounts/login/"), path
            checked += 1
    assert checked > 100


@pytest.mark.parametrize("path", sorted(PAGES) + sorted(API))
def test_each_page_admits_exactly_its_roles(client_as, data, path):
    allowed = PAGES.get(path) or API[path]
    for username in USERS:
        status = client_as(username).get(path).status_code
        if username in allowed:
            assert status == 200, (username, path, status)
        else:
            assert status in (403, 404), (username, path, status)


def test_a_sales_rep_gets_404_for_another_reps_lead_and_403_on_rule_edits(client_as, data):
    lead, rule_set = data
    rep = client_as("sales1")
    assert rep.get(f"/leads/{lead.pk}/").status_code == 404
    assert rep.get(f"/api/v1/leads/{lead.pk}/").status_code == 404
    assert client_as("sales2").get(f"/leads/{lead.pk}/").status_code == 200
    for path in (
        f"/rules/{rule_set.pk}/rules/add/",
        f"/rules/{rule_set.pk}/publish/",
        "/rules/new/",
    ):
        assert rep.post(path, {}).status_code == 403, path


def test_a_manager_reads_the_rules_but_edits_nothing(client_as, data):
    _, rule_set = data
    manager = client_as("manager")
    assert manager.get(f"/rules/{rule_set.pk}/").status_code == 200
    for path in (
        f"/rules/{rule_set.pk}/rules/add/",
        f"/rules/{rule_set.pk}/settings/",
        f"/rules/{rule_set.pk}/publish/",
        f"/rules/{rule_set.pk}/discard/",
        "/rules/new/",
        "/rules/import/",
    ):
        assert manager.post(path, {}).status_code == 403, path

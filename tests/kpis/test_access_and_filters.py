"""Who may see the KPIs, and what bad filters answer."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.kpis import dataset

ENDPOINTS = [
    "bands",
    "funnel",
    "cycle",
    "qualification",
    "lift",
    "calibration",
    "revenue",
    "band-entries",
    "feedback",
]


@pytest.mark.parametrize("username", ["manager", "ops", "admin"])
def test_managers_ops_and_admins_see_the_kpis(client_as, username):
    client = client_as(username)
    assert client.get("/kpis/").status_code == 200
    for endpoint in ENDPOINTS:
        assert client.get(f"/api/v1/kpis/{endpoint}/").status_code == 200, endpoint


def test_sales_reps_are_refused(client_as):
    client = client_as("sales1")
    assert client.get("/kpis/").status_code == 403
    assert client.get("/kpis/export/bands.csv").status_code == 403
    for endpoint in ENDPOINTS:
        assert client.get(f"/api/v1/kpis/{endpoint}/").status_code == 403, endpoint


def test_anonymous_callers_are_sent_to_login_or_refused(db):
    response = Client().get("/kpis/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    assert Client().get("/api/v1/kpis/bands/").status_code in (401, 403)


@pytest.mark.parametrize(
    ("params", "field", "fragment"),
    [
        ({"start": "2024-13-01"}, "start", "not a date"),
        ({"end": "yesterday"}, "end", "YYYY-MM-DD"),
        ({"start": "2024-02-01", "end": "2024-01-01"}, "end", "before the start"),
        ({"owner": "bob"}, "owner", "user id"),
        ({"version": "-1"}, "version", "rule-set version"),
        ({"end": "9999-12-31"}, "end", "out of range"),
        ({"start": "0001-01-01"}, "start", "out of range"),
    ],
)
def test_bad_filters_get_a_400_naming_the_parameter(client_as, params, field, fragment):
    response = client_as("manager").get("/api/v1/kpis/bands/", params)
    assert response.status_code == 400
    assert fragment in response.json()["errors"][field]


def test_the_page_shows_filter_errors_with_a_400(client_as):
    response = client_as("manager").get("/kpis/", {"start": "nope"})
    assert response.status_code == 400
    assert b"not a date" in response.content


def test_dates_are_inclusive_whole_days(client_as):
    specs = dataset.build()
    rows = (
        client_as("manager")
        .get("/api/v1/kpis/bands/", {"start": "2024-01-31", "end": "2024-01-31"})
        .json()
    )
    # late-hot, first are elsewhere; only `last` (created 23:59 on Jan 31) is in.
    assert sum(r["leads"] for r in rows) == 1
    rows = (
        client_as("manager")
        .get("/api/v1/kpis/bands/", {"start": "2024-01-01", "end": "2024-01-01"})
        .json()
    )
    assert sum(r["leads"] for r in rows) == 1  # `first`, created at midnight
    assert len(specs) == len(dataset.SPECS)


def test_the_owner_filter_counts_only_that_owners_leads(client_as, role_users):
    specs = dataset.build()
    from scoring.models import Lead

    rep = role_users["sales2"]
    hot = [s.lead_id for s in specs if s.key in ("hot-1", "hot-2")]
    Lead.objects.filter(id__in=hot).update(owner=rep)
    rows = client_as("manager").get("/api/v1/kpis/bands/", {"owner": rep.pk}).json()
    assert [(r["band"], r["leads"], r["converted"]) for r in rows if r["leads"]] == [("Hot", 2, 2)]


def test_a_date_at_the_end_of_the_calendar_is_a_400_on_the_page_and_the_exports(client_as):
    client = client_as("manager")
    assert client.get("/kpis/", {"end": "9999-12-31"}).status_code == 400
    assert client.get("/kpis/export/bands.csv", {"end": "9999-12-31"}).status_code == 400

"""Each user's time zone: chosen on the profile page, activated per request for the pages
(times on the lead page and the queue in the user's zone), never for the API, and never for
the KPI page, whose days stay the site's so the KPI cube is read, not rebuilt."""

from __future__ import annotations

import datetime as dt

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from scoring.kpis import cube
from scoring.models import RescoreRun, RuleSet, UserPreference
from scoring.services.users import UserChangeRefused, user_time_zone_set
from tests.pages.factories import ScoredLeadFactory

pytestmark = pytest.mark.django_db

# 20:30 UTC on New Year's Day is 05:30 on 2 January in Tokyo (UTC+9, no summer time).
AT = dt.datetime(2026, 1, 1, 20, 30, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def site_in_utc(settings):
    settings.TIME_ZONE = "UTC"


@pytest.fixture
def lead(role_users):
    return ScoredLeadFactory(owner=role_users["sales1"], created_at=AT, scored_at=AT)


def test_a_user_chooses_a_time_zone_on_the_profile_page(client_as, role_users):
    client = client_as("sales1")
    page = client.get("/profile/")
    assert b'data-testid="time-zone"' in page.content
    assert b'<option value="Asia/Tokyo">' in page.content
    response = client.post("/profile/time-zone/", {"time_zone": "Asia/Tokyo"})
    assert response.status_code == 302
    assert UserPreference.objects.get(user=role_users["sales1"]).time_zone == "Asia/Tokyo"
    assert b'<option value="Asia/Tokyo" selected>' in client.get("/profile/").content


def test_an_unknown_zone_is_refused_and_nothing_is_stored(client_as, role_users):
    response = client_as("sales1").post("/profile/time-zone/", {"time_zone": "Mars/Olympus"})
    assert response.status_code == 400
    assert not UserPreference.objects.exists()
    with pytest.raises(UserChangeRefused):
        user_time_zone_set(role_users["sales1"], "Mars/Olympus")


def test_a_user_in_tokyo_sees_lead_times_in_jst(client_as, role_users, lead):
    client = client_as("sales1")
    assert b"scored 2026-01-01 20:30" in client.get(f"/leads/{lead.pk}/").content
    user_time_zone_set(role_users["sales1"], "Asia/Tokyo")
    detail = client.get(f"/leads/{lead.pk}/")
    assert b"scored 2026-01-02 05:30" in detail.content
    listing = client.get("/leads/?stage=all")
    assert b"<td>2026-01-02</td>" in listing.content
    assert b"<td>2026-01-01</td>" not in listing.content
    # The zone does not outlive the request: the next code on this thread has the site's.
    assert timezone.get_current_timezone_name() == settings.TIME_ZONE


def test_another_user_and_the_site_default_keep_the_sites_zone(client_as, role_users, lead):
    user_time_zone_set(role_users["sales1"], "Asia/Tokyo")
    assert b"scored 2026-01-01 20:30" in client_as("manager").get(f"/leads/{lead.pk}/").content
    user_time_zone_set(role_users["sales1"], "")
    assert b"scored 2026-01-01 20:30" in client_as("sales1").get(f"/leads/{lead.pk}/").content


def test_the_api_answers_in_the_sites_zone_whoever_asks(role_users, lead):
    user_time_zone_set(role_users["sales1"], "Asia/Tokyo")
    client = APIClient()
    client.force_login(role_users["sales1"])
    row = client.get(f"/api/v1/leads/?stage=all&q={lead.email}").json()["results"][0]
    assert dt.datetime.fromisoformat(row["created_at"]).utcoffset() == dt.timedelta(0)


def test_created_days_in_the_lead_list_are_the_sites_days(client_as, role_users, lead):
    # The same days give the same leads on the page, the API and the KPI page's links.
    user_time_zone_set(role_users["sales1"], "Asia/Tokyo")
    response = client_as("sales1").get(
        "/leads/?stage=all&created_from=2026-01-01&created_to=2026-01-01"
    )
    assert [row["id"] for row in response.context["page"].rows] == [lead.pk]


def test_the_kpi_page_keeps_the_sites_days_and_reads_the_cube_without_rebuilding_it(
    client_as, role_users, lead, settings
):
    settings.KPI_CUBE_MAX_AGE_SECONDS = 0
    # A finished rescore before now: the leads' current bands are the bands the cube needs.
    live = RuleSet.objects.create(name="live", status="published", version=1)
    RescoreRun.objects.create(rule_set=live, status="done", as_of=AT)
    assert cube.cube_refresh()
    before = cube.state()
    assert before.fresh
    user_time_zone_set(role_users["manager"], "Asia/Tokyo")
    with CaptureQueriesContext(connection) as queries:
        response = client_as("manager").get("/kpis/")
    assert response.status_code == 200
    assert b"site's time zone (UTC)" in response.content
    assert any("kpi_cube_cell" in q["sql"] for q in queries.captured_queries)
    after = cube.state()
    assert (after.built_at, after.fresh) == (before.built_at, True)
    export = client_as("manager").get("/kpis/export/bands.csv")
    assert export.status_code == 200

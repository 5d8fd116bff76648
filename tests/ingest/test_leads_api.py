"""/api/v1/leads/: visibility per role, filters, search, ordering by score with cursor
pagination, the lead detail, and create/update as an upsert."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from scoring.models import Identity, Lead, LeadMerge
from tests.factories import EventFactory, IdentityFactory, LeadFactory

URL = "/api/v1/leads/"


@pytest.fixture
def leads(role_users):
    sales1, sales2 = role_users["sales1"], role_users["sales2"]
    now = timezone.now()
    return {
        "hot": LeadFactory(
            email="hot@acme.com",
            company="Acme",
            score=90,
            band="Hot",
            owner=sales1,
            persona="Developer",
            source="Google",
            created_at=now - dt.timedelta(days=2),
        ),
        "warm": LeadFactory(
            email="warm@beta.io",
            company="Beta",
            score=40,
            band="Warm",
            owner=sales2,
            lifecycle_stage="mql",
            source="Referral",
            created_at=now - dt.timedelta(days=20),
        ),
        "cold": LeadFactory(
            email="cold@acme.com",
            company="Acme",
            score=5,
            band="Cold",
            owner=sales1,
            created_at=now - dt.timedelta(days=40),
        ),
        "unscored": LeadFactory(
            email="new@gamma.org", first_name="Zed", company="Gamma", score=None, owner=None
        ),
    }


def emails(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [row["email"] for row in response.json()["results"]]


def test_marketing_ops_sees_every_lead_ordered_by_score_with_unscored_last(api_as, leads):
    assert emails(api_as("ops").get(URL)) == [
        "hot@acme.com",
        "warm@beta.io",
        "cold@acme.com",
        "new@gamma.org",
    ]


def test_ascending_order_keeps_unscored_leads_last(api_as, leads):
    assert emails(api_as("ops").get(URL, {"ordering": "score"})) == [
        "cold@acme.com",
        "warm@beta.io",
        "hot@acme.com",
        "new@gamma.org",
    ]


def test_a_sales_rep_lists_only_their_own_leads(api_as, leads):
    assert emails(api_as("sales1").get(URL)) == ["hot@acme.com", "cold@acme.com"]


def test_a_sales_rep_gets_404_for_another_reps_lead(api_as, leads):
    client = api_as("sales1")
    assert client.get(f"{URL}{leads['warm'].pk}/").status_code == 404
    assert client.get(f"{URL}{leads['hot'].pk}/").status_code == 200


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"band": "hot"}, ["hot@acme.com"]),
        ({"persona": "Developer"}, ["hot@acme.com"]),
        ({"owner": "sales2"}, ["warm@beta.io"]),
        ({"lifecycle_stage": "mql"}, ["warm@beta.io"]),
        ({"score_min": 10, "score_max": 50}, ["warm@beta.io"]),
        ({"source": "google"}, ["hot@acme.com"]),
        ({"q": "acme"}, ["hot@acme.com", "cold@acme.com"]),
        ({"q": "zed"}, ["new@gamma.org"]),
    ],
)
def test_filters_and_search_narrow_the_list(api_as, leads, params, expected):
    assert emails(api_as("ops").get(URL, params)) == expected


def test_created_range_filters_by_creation_time(api_as, leads):
    now = timezone.now()
    params = {
        "created_after": (now - dt.timedelta(days=30)).isoformat(),
        "created_before": (now - dt.timedelta(days=1)).isoformat(),
    }
    assert emails(api_as("ops").get(URL, params)) == ["hot@acme.com", "warm@beta.io"]


def test_a_bad_filter_value_is_a_400(api_as, leads):
    assert api_as("ops").get(URL, {"lifecycle_stage": "won"}).status_code == 400
    assert api_as("ops").get(URL, {"ordering": "email"}).status_code == 400
    assert api_as("ops").get(URL, {"cursor": "garbage"}).status_code == 400


def test_the_cursor_walks_every_lead_once(api_as, db, role_users):
    for i in range(7):
        LeadFactory(score=[10, 10, 20, None, 30, 10, None][i])
    client = api_as("ops")
    seen, url, params = [], URL, {"page_size": 2}
    while url:
        body = client.get(url, params).json()
        seen.extend(row["id"] for row in body["results"])
        url, params = body["next"], None
    assert sorted(seen) == sorted(Lead.objects.values_list("id", flat=True))
    assert len(seen) == len(set(seen)) == 7


def test_the_detail_has_score_breakdown_identities_merges_and_recent_events(api_as, db):
    lead = LeadFactory(
        score=55,
        band="MQL",
        breakdown=[{"rule": "employees", "points": 15}],
        model_probability=0.42,
    )
    IdentityFactory(lead=lead, source="salesforce", external_id="00Q1")
    for days in range(25):
        EventFactory(lead=lead, occurred_at=timezone.now() - dt.timedelta(days=days))
    LeadMerge.objects.create(survivor=lead, merged_lead_id=999, email=lead.email)
    body = api_as("ops").get(f"{URL}{lead.pk}/").json()
    assert (body["score"], body["band"], body["model_probability"]) == (55, "MQL", 0.42)
    assert body["breakdown"] == [{"rule": "employees", "points": 15}]
    assert body["identities"] == [{"source": "salesforce", "external_id": "00Q1"}]
    assert body["merges"][0]["merged_lead_id"] == 999
    assert len(body["recent_events"]) == 20
    times = [e["occurred_at"] for e in body["recent_events"]]
    assert times == sorted(times, reverse=True)


def test_post_creates_a_lead_then_upserts_it(api_as, db, role_users):
    client = api_as("ops")
    body = {
        "email": "Dana@Example.com",
        "external_id": "crm-7",
        "identity_source": "crm",
        "company": "Delta",
        "owner": "sales1",
        "attributes": {"plan": "pro"},
    }
    created = client.post(URL, body, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["status"] == "created"
    lead = Lead.objects.get()
    assert (lead.email, lead.owner, lead.attributes) == (
        "dana@example.com",
        role_users["sales1"],
        {"plan": "pro"},
    )
    again = client.post(URL, body, format="json")
    assert (again.status_code, again.json()["status"]) == (200, "unchanged")
    by_identity = client.post(
        URL, {"external_id": "crm-7", "identity_source": "crm", "title": "CTO"}, format="json"
    )
    assert by_identity.json()["status"] == "updated"
    assert Lead.objects.get().title == "CTO"


def test_post_without_email_or_external_id_is_a_400(api_as, db):
    response = api_as("ops").post(URL, {"company": "Nobody"}, format="json")
    assert response.status_code == 400
    assert Lead.objects.count() == 0


def test_post_with_a_bad_field_is_a_400(api_as, db):
    response = api_as("ops").post(
        URL, {"email": "x@example.com", "employees": -3, "lifecycle_stage": "won"}, format="json"
    )
    assert response.status_code == 400
    assert set(response.json()) == {"employees", "lifecycle_stage"}


def test_patch_updates_a_lead(api_as, db):
    lead = LeadFactory(company="Old")
    response = api_as("ops").patch(f"{URL}{lead.pk}/", {"company": "New"}, format="json")
    assert response.status_code == 200
    assert response.json()["company"] == "New"
    lead.refresh_from_db()
    assert lead.company == "New"


def test_patch_to_another_leads_email_merges_the_two(api_as, db):
    older = LeadFactory(email="same@example.com")
    newer = LeadFactory(email="other@example.com")
    EventFactory(lead=newer)
    response = api_as("ops").patch(
        f"{URL}{newer.pk}/", {"email": "SAME@example.com"}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["id"] == older.pk
    assert not Lead.objects.filter(pk=newer.pk).exists()
    assert older.events.count() == 1


@pytest.mark.parametrize("username", ["sales1", "manager"])
def test_only_ingest_roles_may_write_leads(api_as, leads, username):
    client = api_as(username)
    assert client.post(URL, {"email": "x@example.com"}, format="json").status_code == 403
    assert (
        client.patch(f"{URL}{leads['hot'].pk}/", {"company": "X"}, format="json").status_code == 403
    )


def test_every_role_with_view_leads_may_read(api_as, leads):
    for username in ("ops", "sales1", "sales2", "manager", "admin"):
        assert api_as(username).get(URL).status_code == 200


def test_the_openapi_schema_describes_the_ingest_endpoints(api_as, db):
    response = api_as("ops").get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    text = response.content.decode()
    assert "/api/v1/events/" in text and "/api/v1/leads/{lead_id}/" in text


def test_identities_survive_an_upsert_by_a_second_source(api_as, db):
    client = api_as("ops")
    client.post(
        URL,
        {"email": "p@example.com", "external_id": "sf-1", "identity_source": "salesforce"},
        format="json",
    )
    client.post(
        URL,
        {"email": "p@example.com", "external_id": "hs-1", "identity_source": "hubspot"},
        format="json",
    )
    lead = Lead.objects.get()
    assert set(Identity.objects.filter(lead=lead).values_list("source", flat=True)) == {
        "salesforce",
        "hubspot",
    }

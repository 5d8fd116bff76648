"""manage.py sync hubspot / push_scores hubspot against a fake HubSpot; cross-source merge."""

from __future__ import annotations

import json

import pytest
from django.utils import timezone
from werkzeug import Response

from integrations.models import Connection
from scoring.models import Account, Identity, Lead
from scoring.services.rescore import rescore_all
from scoring.services.rulesets import ruleset_import
from tests.connectors.test_hubspot import (
    BATCH_UPDATE,
    SEARCH,
    FakeSearch,
    error_response,
    payload_contact_companies,
    payload_contacts,
)
from tests.connectors.test_salesforce import (
    FakeSalesforce,
    expect_deleted,
    json_response,
    lead_pages,
)

pytestmark = pytest.mark.django_db


def test_sync_brings_in_the_contacts_served_and_a_second_run_changes_nothing(
    hubspot_env, run_command
):
    FakeSearch(hubspot_env, payload_contacts(), result_limit=10_000)

    first, status = run_command("sync", "hubspot")

    assert status == 0
    assert (first["fetched"], first["created"], first["failed"]) == (3, 3, 0)
    assert set(Identity.objects.values_list("external_id", flat=True)) == {"151", "152", "153"}
    before = list(Lead.objects.order_by("id").values_list("id", "updated_at"))

    second, status = run_command("sync", "hubspot")

    assert status == 0
    assert second["cursor_before"] == first["cursor_after"]
    assert (second["created"], second["updated"]) == (0, 0)
    assert list(Lead.objects.order_by("id").values_list("id", "updated_at")) == before


def test_a_contacts_hubspot_company_becomes_its_account_and_without_one_its_email_domain(
    hubspot_env, hubspot_crm, run_command
):
    FakeSearch(hubspot_env, payload_contacts(), result_limit=10_000)
    # 151 has a primary company (5001), 152 two companies and no primary, 153 none.
    hubspot_crm.companies = payload_contact_companies()
    ruleset_import(
        {
            "name": "Accounts",
            "bands": [{"name": "Cold", "min_score": 0}],
            "account": {"method": "max", "bands": [{"name": "Any", "min_score": 0}]},
            "rules": [{"kind": "attribute", "field": "employees", "op": "gte", "value": 1,
                       "points": 10}],
        },
        publish=True,
    )  # fmt: skip

    summary, status = run_command("sync", "hubspot")
    rescore_all()

    assert status == 0 and summary["created"] == 3
    by_contact = {
        lead.identities.get().external_id: lead
        for lead in Lead.objects.select_related("account").prefetch_related("identities")
    }
    assert by_contact["151"].attributes["hubspot_company_id"] == "5001"
    assert (by_contact["151"].account.key, by_contact["151"].account.source) == (
        "hubspot:5001",
        "hubspot",
    )
    assert by_contact["151"].account.external_id == "5001"
    assert by_contact["151"].account.name == "Brightline Logistics"  # the contact's company
    assert by_contact["152"].account.key == "hubspot:5002"
    # No company association: the business email domain forms the account.
    assert "hubspot_company_id" not in by_contact["153"].attributes
    assert (by_contact["153"].account.key, by_contact["153"].account.source) == (
        "domain:example.net",
        "domain",
    )
    assert Account.objects.get(key="hubspot:5001").contact_count == 1


def test_the_same_person_in_salesforce_and_hubspot_is_one_lead_with_two_identities(
    salesforce_env, run_command, monkeypatch, http_server, hubspot_crm
):
    fake = FakeSalesforce(salesforce_env)
    page1, _ = lead_pages()
    page1["done"] = True
    page1.pop("nextRecordsUrl", None)
    fake.lead_pages.append(json_response(page1))
    expect_deleted(salesforce_env)
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", "hs-token")
    monkeypatch.setenv("HUBSPOT_BASE_URL", http_server.url_for("/").rstrip("/"))
    FakeSearch(http_server, payload_contacts(), result_limit=10_000)

    run_command("sync", "salesforce")
    summary, _ = run_command("sync", "hubspot")

    dana = Lead.objects.get(email="dana.okafor@example.com")
    assert set(dana.identities.values_list("source", "external_id")) == {
        ("salesforce", "00Q5g0000040001EAA"),
        ("hubspot", "151"),
    }
    assert Lead.objects.filter(email="lferreira@example.org").get().identities.count() == 2
    # dana and lferreira already existed: updated (or unchanged), not created.
    assert summary["created"] == 1
    assert Lead.objects.count() == 3


def test_a_burst_429_waits_the_retry_after_and_goes_on(hubspot_env, run_command, sleeps):
    hubspot_env.expect_oneshot_request(SEARCH, method="POST").respond_with_response(
        error_response("hubspot/error_429_ten_secondly_rolling.json", {"Retry-After": "3"})
    )
    FakeSearch(hubspot_env, payload_contacts(), result_limit=10_000)

    summary, status = run_command("sync", "hubspot")

    assert status == 0 and summary["created"] == 3
    assert sleeps.calls == [3.0]


def test_a_daily_429_pauses_the_connection(hubspot_env, run_command):
    hubspot_env.expect_request(SEARCH, method="POST").respond_with_response(
        error_response("hubspot/error_429_daily.json")
    )

    summary, status = run_command("sync", "hubspot")

    assert status == 1 and summary["status"] == "paused"
    assert summary["error_kind"] == "daily_limit"
    assert Connection.objects.get(vendor="hubspot").paused_until > timezone.now()


def test_a_500_is_retried_then_the_run_fails_as_transient_when_it_persists(
    hubspot_env, run_command, sleeps
):
    hubspot_env.expect_request(SEARCH, method="POST").respond_with_response(
        Response("oops", status=500)
    )

    summary, status = run_command("sync", "hubspot")

    assert status == 1
    assert summary["status"] == "failed" and summary["error_kind"] == "transient"
    assert len(sleeps.calls) == 2  # three attempts in all (SYNC_RETRY_ATTEMPTS=3)


def test_a_401_without_refresh_credentials_fails_clearly(hubspot_env, run_command):
    hubspot_env.expect_request(SEARCH, method="POST").respond_with_response(
        error_response("hubspot/error_401_expired.json")
    )

    summary, status = run_command("sync", "hubspot")

    assert status == 1 and summary["error_kind"] == "auth"
    assert "HubSpot rejected the access token" in summary["error"]


def test_malformed_contacts_are_counted_failed_and_the_rest_is_stored(hubspot_env, run_command):
    from tests.connectors.conftest import load_json

    data = load_json("hubspot/contacts_search_malformed.json")
    hubspot_env.expect_request(SEARCH, method="POST").respond_with_json(data)

    summary, status = run_command("sync", "hubspot")

    assert status == 0
    assert summary["failed"] >= 1
    assert all(f["id"] or f["reason"] for f in summary["failures"])
    assert Identity.objects.filter(source="hubspot").count() == summary["created"]


def test_push_sends_only_changed_contacts_through_the_batch_endpoint(hubspot_env, run_command):
    for n, contact_id in enumerate(("151", "152", "153")):
        lead = Lead.objects.create(email=f"h{n}@example.com", score=10 * n, band="Cold")
        Identity.objects.create(source="hubspot", external_id=contact_id, lead=lead)
    calls: list[dict] = []

    def batch_update(request):
        body = request.get_json()
        calls.append(body)
        results = [{"id": item["id"], "properties": item["properties"]} for item in body["inputs"]]
        return Response(
            json.dumps({"status": "COMPLETE", "results": results}),
            content_type="application/json",
        )

    hubspot_env.expect_request(BATCH_UPDATE, method="POST").respond_with_handler(batch_update)

    first, _ = run_command("push_scores", "hubspot")
    assert first["pushed"] == 3
    assert calls[0]["inputs"][1] == {
        "id": "152",
        "properties": {"lead_score": "10", "lead_band": "Cold"},
    }

    Lead.objects.filter(identities__external_id="153").update(band="Warm")
    second, _ = run_command("push_scores", "hubspot")
    assert second["pushed"] == 1
    assert [item["id"] for item in calls[1]["inputs"]] == ["153"]

    third, _ = run_command("push_scores", "hubspot")
    assert third["pushed"] == 0 and len(calls) == 2

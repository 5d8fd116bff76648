"""Nurture: a lead entering a band reaches the fake CRMs through the relay and the connectors
(HubSpot list membership over real HTTP, Salesforce campaign member over real TLS)."""

from __future__ import annotations

import pytest
from django.utils import timezone
from werkzeug import Response

from integrations.models import OutboxDelivery
from integrations.outbound import relay
from scoring.engine import RuleSetInvalid
from scoring.engine.routing import parse_routing
from scoring.models import Identity, LeadTransition
from scoring.services.routing import routing_import
from tests.factories import LeadFactory

# The integration tests' fake-vendor environment, reused as it is.
from tests.integrations.conftest import (  # noqa: F401
    _integration_env,
    _loopback_only,
    _plain_server,
    _tls_server,
    ca_bundle,
    http_server,
    https_server,
    hubspot_crm,
    hubspot_env,
    salesforce_env,
    sleeps,
    tls_ca,
)

CAMPAIGN_MEMBER = "/services/data/v59.0/sobjects/CampaignMember"
NURTURE = {
    "rules": [],
    "nurture": {
        "Hot": [
            {"action": "hubspot_list_add", "list_id": "42"},
            {"action": "salesforce_campaign_add", "campaign_id": "7015g000000AbcdAAC"},
        ],
        "Cold": [{"action": "hubspot_list_remove", "list_id": "42"}],
    },
}


def recording(calls: list, body: str, status: int = 200):
    """A fake endpoint's handler: record the JSON request body, answer `body`."""

    def handler(request):
        calls.append(request.get_json())
        return Response(body, status=status, content_type="application/json")

    return handler


def entered(band: str, **identities: str):
    lead = LeadFactory(band=band)
    for source, external_id in identities.items():
        Identity.objects.create(lead=lead, source=source, external_id=external_id)
    return LeadTransition.objects.create(
        lead=lead,
        kind="band_changed",
        from_band="Warm",
        to_band=band,
        score=90,
        occurred_at=timezone.now(),
    )


def test_the_nurture_document_is_validated_with_paths():
    with pytest.raises(RuleSetInvalid) as caught:
        parse_routing(
            {"rules": [], "nurture": {"Hot": [{"action": "fax"}, {"action": "hubspot_list_add"}]}}
        )
    assert [e.path for e in caught.value.errors] == [
        "$.nurture.Hot[0].action",
        "$.nurture.Hot[1].list_id",
    ]


def test_a_lead_entering_hot_joins_the_hubspot_list_and_the_salesforce_campaign(
    db,
    hubspot_env,  # noqa: F811
    salesforce_env,  # noqa: F811
):
    routing_import(NURTURE)
    added: list = []
    hubspot_env.expect_request(
        "/crm/v3/lists/42/memberships/add", method="PUT"
    ).respond_with_handler(recording(added, '{"recordIdsAdded": ["501"], "recordsIdsMissing": []}'))
    members: list = []
    salesforce_env.expect_request(CAMPAIGN_MEMBER, method="POST").respond_with_handler(
        recording(members, '{"id": "00v5g000001", "success": true, "errors": []}', 201)
    )
    entered("Hot", hubspot="501", salesforce="00Q5g0000040001EAA")
    relay.relay_run()
    assert added == [["501"]]
    assert members == [{"CampaignId": "7015g000000AbcdAAC", "LeadId": "00Q5g0000040001EAA"}]
    assert set(OutboxDelivery.objects.values_list("subscriber", "status")) == {
        ("nurture:0", "done"),
        ("nurture:1", "done"),
    }


def test_leaving_for_cold_removes_from_the_list_and_a_lead_without_a_crm_record_is_skipped(
    db,
    hubspot_env,  # noqa: F811
):
    routing_import(NURTURE)
    removed: list = []
    hubspot_env.expect_request(
        "/crm/v3/lists/42/memberships/remove", method="PUT"
    ).respond_with_handler(
        recording(removed, '{"recordIdsRemoved": ["501"], "recordsIdsMissing": []}')
    )
    entered("Cold", hubspot="501")
    entered("Cold")  # only known to us
    relay.relay_run()
    assert removed == [["501"]]
    assert sorted(OutboxDelivery.objects.values_list("status", flat=True)) == ["done", "skipped"]


def test_a_salesforce_outage_is_retried_by_the_relay_and_a_duplicate_member_is_success(
    db,
    salesforce_env,  # noqa: F811
):
    routing_import({"rules": [], "nurture": {"Hot": [NURTURE["nurture"]["Hot"][1]]}})
    salesforce_env.expect_ordered_request(CAMPAIGN_MEMBER, method="POST").respond_with_data(
        "unavailable", status=503
    )
    salesforce_env.expect_ordered_request(CAMPAIGN_MEMBER, method="POST").respond_with_data(
        "unavailable", status=503
    )
    salesforce_env.expect_ordered_request(CAMPAIGN_MEMBER, method="POST").respond_with_json(
        [{"errorCode": "DUPLICATE_VALUE", "message": "Already a campaign member."}], status=400
    )
    entered("Hot", salesforce="00Q5g0000040001EAA")
    relay.relay_run()
    delivery = OutboxDelivery.objects.get()
    assert delivery.status == "pending" and "503" in delivery.last_error
    relay.deliver_due(now=delivery.next_attempt_at)
    delivery.refresh_from_db()
    assert delivery.status == "done" and delivery.attempts == 2


def test_an_assignment_is_written_back_to_the_salesforce_owner_when_configured(
    role_users,
    salesforce_env,  # noqa: F811
    settings,
):
    from integrations.models import CrmOwner
    from scoring.services.routing import route_leads

    settings.ROUTING_CRM_OWNER_WRITEBACK = ["salesforce"]
    CrmOwner.objects.create(
        source="salesforce", external_id="0055g00000AbcdeAAA", user=role_users["sales2"]
    )
    routing_import({"rules": [{"name": "all", "when": [], "team": ["sales2", "sales1"]}]})
    patched: list = []
    salesforce_env.expect_request(
        "/services/data/v59.0/sobjects/Lead/00Q5g0000040001EAA", method="PATCH"
    ).respond_with_handler(recording(patched, "", 204))
    first = LeadFactory(qualified=True)
    Identity.objects.create(lead=first, source="salesforce", external_id="00Q5g0000040001EAA")
    second = LeadFactory(qualified=True)
    Identity.objects.create(lead=second, source="salesforce", external_id="00Q5g0000040002EAA")
    route_leads([first.pk, second.pk])  # sales2 then sales1, who has no Salesforce user
    relay.relay_run()
    assert patched == [{"OwnerId": "0055g00000AbcdeAAA"}]
    statuses = dict(
        OutboxDelivery.objects.filter(subscriber="owner:salesforce").values_list(
            "transition__lead", "status"
        )
    )
    assert statuses == {first.pk: "done", second.pk: "dead"}
    assert (
        "sales1 has no salesforce user"
        in OutboxDelivery.objects.get(subscriber="owner:salesforce", status="dead").last_error
    )

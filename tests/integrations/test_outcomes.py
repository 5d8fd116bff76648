"""CRM outcomes and owners end to end: fake Salesforce and HubSpot serving leads, opportunities
(won, lost, open, one won after its lead was converted), deals and owners; two incremental
syncs; then the leads' stages, times, revenue and owners, and the band KPIs."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from django.contrib.auth.models import User

from integrations.models import CrmOutcome
from integrations.outcomes import lead_outcome_values
from integrations.selectors import owners_unmatched
from scoring.models import Lead
from tests.connectors.test_hubspot import FakeSearch, payload_contacts, payload_deals
from tests.connectors.test_salesforce import FakeSalesforce, expect_deleted, json_response
from tests.kpis import dataset

from .conftest import load_json

pytestmark = pytest.mark.django_db

SALES1 = "0055g00000AaBbCAAV"  # Sales1@Example.com: our sales1, whatever the case
OUTSIDE = "0055g00000AaBbDAAV"  # a rep who has no user here


def sf_leads() -> dict[str, Any]:
    """Four leads on one page: open (Dana), converted with the won opportunity (Luis),
    converted with the lost one (Nguyen), and converted into the account of the open one
    without an opportunity of its own (Kim)."""
    page = load_json("salesforce/query_lead_page1.json")
    (nguyen,) = load_json("salesforce/query_lead_page2.json")["records"]
    nguyen.update(
        Email="t.nguyen@example.net",
        Status="Closed - Converted",
        IsConverted=True,
        ConvertedDate="2024-03-19",
        ConvertedOpportunityId="0065g00000AbCeFAAV",
        ConvertedAccountId="0015g00000XyZ13AAB",
        ConvertedContactId="0035g00000QrS35AAC",
        OwnerId=OUTSIDE,
        SystemModstamp="2024-03-19T09:00:05.000+0000",
    )
    kim = copy.deepcopy(nguyen)
    kim["attributes"]["url"] = kim["attributes"]["url"].replace("0003", "0004")
    kim.update(
        Id="00Q5g0000040004EAA",
        LastName="Kim",
        Email="jkim@example.com",
        ConvertedDate="2024-03-20",
        ConvertedOpportunityId=None,
        ConvertedAccountId="0015g00000XyZ14AAB",
        ConvertedContactId="0035g00000QrS36AAC",
        OwnerId=SALES1,
        SystemModstamp="2024-03-20T08:00:00.000+0000",
    )
    page["records"] += [nguyen, kim]
    page.update(done=True, totalSize=4)
    page.pop("nextRecordsUrl")
    return page


def opportunities(*, changed: bool) -> dict[str, Any]:
    page = load_json("salesforce/query_opportunity.json")
    if not changed:
        return page
    # The second sync sees what changed since the first: the lost deal was won after all,
    # and the first won deal's amount was corrected.
    won, lost, _, _ = page["records"]
    lost.update(
        IsWon=True,
        StageName="Closed Won",
        Amount=15000.0,
        CloseDate="2024-05-20",
        SystemModstamp="2024-05-20T10:00:00.000+0000",
    )
    won.update(Amount=50000.0, SystemModstamp="2024-05-21T10:00:00.000+0000")
    page["records"] = [lost, won]
    page["totalSize"] = 2
    return page


def lead_by_email(email: str) -> Lead:
    return Lead.objects.get(email=email)


def outcome_of(lead: Lead) -> tuple:
    return (lead.lifecycle_stage, lead.converted_at, lead.lost_at, lead.revenue)


def day(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, tzinfo=UTC)


def test_two_incremental_salesforce_syncs_give_every_lead_its_outcome_and_owner(
    salesforce_env, run_command, role_users, client_as
):
    fake = FakeSalesforce(salesforce_env)
    fake.lead_pages.append(json_response(sf_leads()))
    fake.opportunity_pages.append(opportunities(changed=False))
    expect_deleted(salesforce_env)
    dana_before = Lead.objects.create(email="dana.okafor@example.com", owner=role_users["sales2"])
    luis_before = Lead.objects.create(email="lferreira@example.org", owner=role_users["sales2"])

    first, status = run_command("sync", "salesforce")

    assert status == 0 and first["status"] == "succeeded"
    assert first["failed"] == 0
    dana, luis = lead_by_email("dana.okafor@example.com"), lead_by_email("lferreira@example.org")
    nguyen, kim = lead_by_email("t.nguyen@example.net"), lead_by_email("jkim@example.com")
    assert (dana.pk, luis.pk) == (dana_before.pk, luis_before.pk)
    assert outcome_of(dana) == ("lead", None, None, None)
    # Won, and won again after the conversion (a second opportunity on its contact).
    assert outcome_of(luis) == ("customer", day(2024, 4, 2), None, 57000.0)
    assert luis.opportunity_at == day(2024, 3, 18)
    # Closed lost: lost_at, never a conversion.
    assert outcome_of(nguyen) == ("lost", None, day(2024, 4, 3), None)
    # An opportunity on the account it was converted into.
    assert outcome_of(kim) == ("opportunity", None, None, None)
    assert kim.opportunity_at == datetime(2024, 3, 20, 8, 30, tzinfo=UTC)  # its creation
    # Owners follow the CRM: matched by e-mail whatever its case, else no owner.
    assert dana.owner == role_users["sales1"]
    assert luis.owner is None and nguyen.owner is None
    assert kim.owner == role_users["sales1"]
    assert CrmOutcome.objects.count() == 4
    detail = client_as("admin").get(f"/api/v1/leads/{nguyen.pk}/")
    assert detail.status_code == 200, detail.content
    assert detail.json()["lost_at"].startswith("2024-04-03")
    assert detail.json()["lifecycle_stage"] == "lost" and detail.json()["converted_at"] is None

    # The second, incremental sync: no lead changed, two opportunities did.
    fake.lead_pages.append(json_response({"totalSize": 0, "done": True, "records": []}))
    fake.opportunity_pages.append(opportunities(changed=True))
    second, status = run_command("sync", "salesforce")

    assert status == 0 and second["cursor_before"] == first["cursor_after"]
    opportunity_query = [q for q in fake.soql if " FROM Opportunity" in q][-1]
    assert "WHERE SystemModstamp > 2024-05-10T09:30:00Z" in opportunity_query
    assert (second["fetched"], second["updated"]) == (3, 2)  # two outcomes and a deletion
    assert outcome_of(lead_by_email("t.nguyen@example.net")) == (
        "customer",
        day(2024, 5, 20),
        None,
        15000.0,
    )
    assert outcome_of(lead_by_email("lferreira@example.org")) == (
        "customer",
        day(2024, 4, 2),
        None,
        59000.0,
    )
    assert outcome_of(lead_by_email("jkim@example.com")) == ("opportunity", None, None, None)


def test_a_lead_synced_after_its_opportunity_is_linked_to_it(
    salesforce_env, run_command, role_users
):
    fake = FakeSalesforce(salesforce_env)
    page = sf_leads()
    luis = page["records"][1]
    page["records"] = [page["records"][0]]
    fake.lead_pages.append(json_response(page))
    fake.opportunity_pages.append(opportunities(changed=False))
    expect_deleted(salesforce_env)
    run_command("sync", "salesforce")
    assert not Lead.objects.filter(email="lferreira@example.org").exists()

    luis["SystemModstamp"] = "2024-06-01T00:00:00.000+0000"
    fake.lead_pages.append(json_response({"totalSize": 1, "done": True, "records": [luis]}))
    run_command("sync", "salesforce")

    assert outcome_of(lead_by_email("lferreira@example.org")) == (
        "customer",
        day(2024, 4, 2),
        None,
        57000.0,
    )


def test_hubspot_deals_and_owners_reach_their_contacts_over_two_syncs(
    hubspot_env, hubspot_crm, run_command, role_users
):
    contacts = payload_contacts()
    for contact, owner in zip(contacts, ("41629779", "52730101", None), strict=True):
        contact["properties"]["hubspot_owner_id"] = owner
    FakeSearch(hubspot_env, contacts, result_limit=10_000)
    hubspot_crm.deals.contacts = payload_deals()
    hubspot_crm.serve_owners = True

    first, status = run_command("sync", "hubspot")

    assert status == 0 and first["failed"] == 0
    dana, luis = lead_by_email("dana.okafor@example.com"), lead_by_email("lferreira@example.org")
    nguyen = lead_by_email("t.nguyen@example.net")
    assert outcome_of(luis) == ("customer", day(2024, 4, 2), None, 48000.0)
    assert outcome_of(nguyen) == ("lost", None, day(2024, 4, 3), None)
    # The contact says MQL; its open deal (a stage *labelled* "Won - ...") makes it one.
    assert outcome_of(dana) == ("opportunity", None, None, None)
    assert dana.owner == role_users["sales1"] and luis.owner is None and nguyen.owner is None

    deals = payload_deals()
    deals[1]["properties"].update(
        dealstage="closedwon",
        amount="9100",
        closedate="2024-04-12T00:00:00Z",
        hs_lastmodifieddate="2024-04-12T09:00:00.000Z",
    )
    hubspot_crm.deals.contacts = deals
    second, status = run_command("sync", "hubspot")

    assert status == 0 and second["updated"] == 1
    assert outcome_of(lead_by_email("t.nguyen@example.net")) == (
        "customer",
        day(2024, 4, 12),
        None,
        9100.0,
    )


def test_unmatched_owners_are_listed_with_their_lead_counts(
    salesforce_env, run_command, role_users, client_as
):
    fake = FakeSalesforce(salesforce_env)
    fake.lead_pages.append(json_response(sf_leads()))
    expect_deleted(salesforce_env)
    run_command("sync", "salesforce")

    assert owners_unmatched() == [
        {
            "source": "salesforce",
            "external_id": OUTSIDE,
            "email": "outside.rep@partner.example.net",
            "leads": 2,
        },
        {
            "source": "salesforce",
            "external_id": "0055g00000AaBbEAAV",
            "email": "integration.user@example.com",
            "leads": 0,
        },
    ]
    page = client_as("admin").get("/integrations/")
    assert page.status_code == 200
    assert b"outside.rep@partner.example.net" in page.content

    # A user with that e-mail appears: the next sync matches the owner and gives the leads.
    User.objects.create_user("outside", "Outside.Rep@partner.example.net", "x")
    fake.lead_pages.append(json_response(sf_leads()))
    run_command("sync", "salesforce", "--full")
    assert [o["external_id"] for o in owners_unmatched()] == ["0055g00000AaBbEAAV"]
    assert lead_by_email("lferreira@example.org").owner.username == "outside"


def test_band_kpis_count_only_won_deals_as_conversions(
    salesforce_env, run_command, role_users, client_as
):
    fake = FakeSalesforce(salesforce_env)
    fake.lead_pages.append(json_response(sf_leads()))
    fake.opportunity_pages.append(opportunities(changed=False))
    expect_deleted(salesforce_env)
    run_command("sync", "salesforce")
    rule_set = dataset.live_rule_set()
    for lead in Lead.objects.all():
        dataset.ScoreHistoryFactory(
            lead=lead, score=90, band="Hot", as_of=day(2024, 3, 1), rule_set_version=1
        )
    assert rule_set.version == 1

    response = client_as("manager").get(
        "/api/v1/kpis/bands/", {"start": "2023-11-01", "end": "2024-03-31"}
    )

    assert response.status_code == 200, response.content
    hot = next(row for row in response.json() if row["band"] == "Hot")
    # Four leads: one won (Luis), one lost (Nguyen), one open opportunity, one open lead.
    assert (hot["leads"], hot["converted"], hot["revenue"]) == (4, 1, 57000.0)


@pytest.mark.parametrize(
    ("deals", "expected"),
    [
        ([("won", 10.0, 1, 5), ("lost", 20.0, 2, 9)], ("customer", 5, None, 10.0)),
        ([("lost", 20.0, 2, 9), ("open", None, 3, None)], ("opportunity", None, None, None)),
        ([("lost", 20.0, 2, 9), ("lost", 5.0, 1, 7)], ("lost", None, 9, None)),
        ([("won", None, 1, 8), ("won", 4.0, 2, 6)], ("customer", 6, None, 4.0)),
    ],
)
def test_a_leads_outcome_is_decided_by_all_of_its_deals(deals, expected):
    facts = [
        (status, amount, day(2024, 1, opened), day(2024, 2, closed) if closed else None, None)
        for status, amount, opened, closed in deals
    ]
    values = lead_outcome_values(facts, None)
    stage, converted, lost, revenue = expected
    assert values["lifecycle_stage"] == stage
    assert values["converted_at"] == (day(2024, 2, converted) if converted else None)
    assert values["lost_at"] == (day(2024, 2, lost) if lost else None)
    assert values["revenue"] == revenue
    assert values["opportunity_at"] == day(2024, 1, min(d[2] for d in deals))

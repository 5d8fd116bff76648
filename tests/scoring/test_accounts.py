"""Accounts: leads grouped by CRM account or business email domain (never free mail), the
rule set's roll-up computed in the same rescore (bulk and real time), the account pages and
/api/v1/accounts/, visibility by role."""

from __future__ import annotations

import datetime as dt
import io
import json

import pytest
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from scoring.models import Account, Lead, LeadDue
from scoring.services import rescore
from tests.factories import EventFactory, LeadFactory

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
DOCUMENT = {
    "name": "Accounts",
    "personas": [
        {"name": "Developer", "priority": 1, "match": [
            {"field": "title", "op": "contains", "value": "engineer"}]},
        {"name": "Buyer", "priority": 2, "match": [
            {"field": "title", "op": "contains", "value": "vp"}]},
    ],
    "bands": [{"name": "Cold", "min_score": 0}],
    "account": {"method": "top_k_mean", "k": 2, "cap": 100, "bands": [
        {"name": "Tier 1", "min_score": 40}, {"name": "Tier 2", "min_score": 0}]},
    "rules": [
        {"kind": "attribute", "field": "employees", "op": "gte", "value": 100, "points": 25},
        {"kind": "event", "event_type": "demo_request", "points": 30, "window_days": 30},
    ],
}  # fmt: skip


@pytest.fixture
def accounts(db, role_users, tmp_path):
    sales1 = role_users["sales1"]
    leads = {
        # acme.com: scores 55, 25, 0 -> top-2 mean 40 (Tier 1)
        "ada": LeadFactory(email="ada@acme.com", employees=500, title="VP Sales", owner=sales1),
        "bob": LeadFactory(email="bob@ACME.com", employees=500, title="Engineer"),
        "cy": LeadFactory(email="cy@acme.com", employees=5, title="Engineer"),
        # free mail: no account
        "gus": LeadFactory(email="gus@gmail.com", employees=500),
        # a Salesforce account wins over the domain
        "sf": LeadFactory(email="sf@beta.io", employees=5,
                          attributes={"salesforce_converted_account_id": "001XYZ"}),
    }  # fmt: skip
    for lead in leads.values():
        Lead.objects.filter(pk=lead.pk).update(created_at=NOW - dt.timedelta(days=10))
    EventFactory(lead=leads["ada"], event_type="demo_request", occurred_at=NOW - dt.timedelta(1))
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(DOCUMENT))
    call_command("ruleset", "import", str(path), "--publish", stdout=io.StringIO())
    call_command("rescore", "--all", "--as-of", NOW.isoformat(), stdout=io.StringIO())
    return {k: Lead.objects.get(pk=v.pk) for k, v in leads.items()}


def test_leads_group_into_accounts_and_the_roll_up_follows_the_rule_set(accounts):
    acme = Account.objects.get(key="domain:acme.com")
    assert {accounts[k].account_id for k in ("ada", "bob", "cy")} == {acme.pk}
    assert accounts["gus"].account_id is None
    assert accounts["sf"].account.key == "salesforce:001XYZ"
    assert [accounts[k].score for k in ("ada", "bob", "cy")] == [55, 25, 0]
    assert (acme.score, acme.band, acme.contact_count, acme.scored_contacts) == (
        40, "Tier 1", 3, 3)  # fmt: skip
    assert Account.objects.get(key="salesforce:001XYZ").band == "Tier 2"


def test_a_real_time_rescore_rolls_the_account_up_again(accounts):
    bob = accounts["bob"]
    EventFactory(lead=bob, event_type="demo_request", occurred_at=NOW - dt.timedelta(hours=2))
    rescore.rescore_leads([bob.pk], as_of=NOW)
    acme = Account.objects.get(key="domain:acme.com")
    assert acme.score == 55  # (55 + 55) / 2
    # A new address at a free-mail provider leaves the account; its roll-up follows.
    Lead.objects.filter(pk=bob.pk).update(email="bob@gmail.com")
    rescore.rescore_leads([bob.pk], as_of=NOW)
    acme.refresh_from_db()
    assert (acme.contact_count, acme.score) == (2, 28)  # (55 + 0) / 2 = 27.5 -> 28


def _bob_due_with_a_demo_request(accounts) -> None:
    bob = accounts["bob"]
    EventFactory(lead=bob, event_type="demo_request", occurred_at=NOW - dt.timedelta(hours=2))
    LeadDue.objects.update_or_create(lead=bob, defaults={"due_at": NOW - dt.timedelta(1)})


def test_the_due_rescore_rolls_the_accounts_it_touched_up_once_at_its_end(accounts):
    _bob_due_with_a_demo_request(accounts)
    assert rescore.rescore_due(as_of=NOW).rescored == 1
    assert Lead.objects.get(pk=accounts["bob"].pk).score == 55
    assert Account.objects.get(key="domain:acme.com").score == 55  # (55 + 55) / 2


def test_a_due_rescore_overtaken_by_a_publish_leaves_the_roll_up_to_the_new_version(
    accounts, monkeypatch
):
    _bob_due_with_a_demo_request(accounts)
    checks = iter([True, False])  # live for its chunk, superseded before its roll-up
    monkeypatch.setattr(rescore, "rule_set_is_live", lambda rule_set_id: next(checks))
    rescore.rescore_due(as_of=NOW)
    assert Lead.objects.get(pk=accounts["bob"].pk).score == 55
    assert Account.objects.get(key="domain:acme.com").score == 40  # not rolled up by it


def test_the_api_lists_accounts_by_score_and_reps_see_only_their_accounts(accounts, role_users):
    # Engaged = an event in the last 90 days (of today): only ada is.
    EventFactory(lead=accounts["ada"], occurred_at=timezone.now() - dt.timedelta(days=1))
    client = APIClient()
    client.force_authenticate(role_users["manager"])
    body = client.get("/api/v1/accounts/").json()
    assert [a["key"] for a in body["results"]] == ["domain:acme.com", "salesforce:001XYZ"]
    acme_id = body["results"][0]["id"]
    detail = client.get(f"/api/v1/accounts/{acme_id}/").json()
    assert [c["email"] for c in detail["contacts"]] == ["ada@acme.com", "bob@ACME.com",
                                                         "cy@acme.com"]  # fmt: skip
    assert detail["buying_group"] == {"engaged_contacts": 1, "personas": ["Buyer"]}
    assert client.get("/api/v1/accounts/?band=tier 2").json()["results"][0]["key"] == (
        "salesforce:001XYZ"
    )
    assert client.get("/api/v1/accounts/?page_size=0").status_code == 400

    rep = APIClient()
    rep.force_authenticate(role_users["sales1"])
    assert [a["key"] for a in rep.get("/api/v1/accounts/").json()["results"]] == ["domain:acme.com"]
    other = Account.objects.get(key="salesforce:001XYZ")
    assert rep.get(f"/api/v1/accounts/{other.pk}/").status_code == 404
    mine = rep.get(f"/api/v1/accounts/{acme_id}/").json()
    assert [c["email"] for c in mine["contacts"]] == ["ada@acme.com"]


def test_the_account_pages_show_score_contacts_and_coverage(accounts, client_as):
    EventFactory(lead=accounts["ada"], occurred_at=timezone.now() - dt.timedelta(days=1))
    client = client_as("manager")
    listing = client.get("/companies/").content.decode()
    acme = Account.objects.get(key="domain:acme.com")
    beta = Account.objects.get(key="salesforce:001XYZ")
    assert listing.index(f'data-account-id="{acme.pk}"') < listing.index(
        f'data-account-id="{beta.pk}"'
    )
    page = client.get(f"/companies/{acme.pk}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-testid="account-score">40<' in html and "Tier 1" in html
    assert 'data-testid="coverage">1 persona<' in html


def test_kpis_by_account_band_on_the_page_and_the_api(accounts, client_as, role_users):
    from scoring.kpis.stats import wilson_interval

    Lead.objects.filter(pk=accounts["ada"].pk).update(converted_at=NOW)
    client = APIClient()
    client.force_authenticate(role_users["manager"])
    response = client.get("/api/v1/kpis/account-bands/?start=2026-01-01&end=2026-12-31")
    assert response.status_code == 200, response.content
    rows = {r["account_band"]: r for r in response.json()}
    assert (rows["Tier 1"]["accounts"], rows["Tier 1"]["leads"], rows["Tier 1"]["converted"]) == (
        1, 3, 1)  # fmt: skip
    assert (rows["Tier 1"]["ci_low"], rows["Tier 1"]["ci_high"]) == wilson_interval(1, 3)
    assert rows["Tier 2"]["leads"] == 1 and rows["No account"]["leads"] == 1
    page = client_as("manager").get("/kpis/?start=2026-01-01&end=2026-12-31")
    assert 'data-testid="account-bands-table"' in page.content.decode()
    assert client_as("sales1").get("/api/v1/kpis/account-bands/").status_code == 403

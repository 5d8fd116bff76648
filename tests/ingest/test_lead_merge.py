"""Leads from every source are merged by normalised email: identities, events and feedback
follow the surviving lead, and the merge is recorded."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

from scoring.models import Event, Feedback, Identity, Lead, LeadMerge
from scoring.services.leads import (
    LeadUpsert,
    lead_merge,
    lead_upsert,
    leads_bulk_upsert,
)
from tests.factories import EventFactory, IdentityFactory, LeadFactory


def test_an_identity_and_an_email_of_two_leads_merge_them_across_sources(db):
    salesforce = IdentityFactory(
        source="salesforce", external_id="00Q1", lead=LeadFactory(email=None, title="CTO")
    )
    hubspot_lead = LeadFactory(email="pat@example.com", title="")
    IdentityFactory(source="hubspot", external_id="501", lead=hubspot_lead)
    EventFactory(lead=salesforce.lead)
    EventFactory(lead=hubspot_lead)

    outcome = lead_upsert(
        LeadUpsert(source="salesforce", external_id="00Q1", values={"email": " Pat@Example.com "})
    )

    survivor = Lead.objects.get()
    assert outcome.lead_id == survivor.pk == salesforce.lead_id  # the older lead survives
    assert survivor.email == "pat@example.com"
    assert survivor.title == "CTO"
    assert set(Identity.objects.values_list("source", "lead_id")) == {
        ("salesforce", survivor.pk),
        ("hubspot", survivor.pk),
    }
    assert Event.objects.filter(lead=survivor).count() == 2
    merge = LeadMerge.objects.get()
    assert (merge.survivor, merge.merged_lead_id, merge.email) == (
        survivor,
        hubspot_lead.pk,
        "pat@example.com",
    )
    assert (merge.identities_moved, merge.events_moved) == (1, 1)


def test_feedback_follows_the_survivor_and_the_newer_verdict_of_one_author_wins(role_users):
    rep, ops = role_users["sales1"], role_users["ops"]
    survivor, merged = LeadFactory(), LeadFactory()
    old = Feedback.objects.create(lead=survivor, author=rep, verdict="good")
    Feedback.objects.filter(pk=old.pk).update(updated_at=timezone.now() - dt.timedelta(days=1))
    Feedback.objects.create(lead=merged, author=rep, verdict="bad", reason="no_budget")
    Feedback.objects.create(lead=merged, author=ops, verdict="good")

    record = lead_merge(survivor, merged)

    verdicts = dict(
        Feedback.objects.filter(lead=survivor).values_list("author__username", "verdict")
    )
    assert verdicts == {"sales1": "bad", "ops": "good"}
    assert record.details["feedback_moved"] == 2


def test_a_merge_keeps_the_earliest_stage_times_and_the_furthest_stage(db):
    early = timezone.now() - dt.timedelta(days=90)
    survivor = LeadFactory(lifecycle_stage="mql", mql_at=timezone.now(), attributes={"a": 1})
    merged = LeadFactory(
        lifecycle_stage="sql", mql_at=early, sql_at=early, attributes={"a": 2, "b": 3}
    )
    lead_merge(survivor, merged)
    survivor.refresh_from_db()
    assert survivor.lifecycle_stage == "sql"
    assert survivor.mql_at == early
    assert survivor.attributes == {"a": 1, "b": 3}


def test_rows_of_one_chunk_sharing_an_email_become_one_lead_with_both_identities(db):
    result = leads_bulk_upsert(
        [
            LeadUpsert(source="a", external_id="1", values={"email": "x@example.com"}),
            LeadUpsert(
                source="b", external_id="2", values={"email": "X@example.com", "company": "Acme"}
            ),
        ]
    )
    assert [o.status for o in result.outcomes] == ["created", "updated"]
    lead = Lead.objects.get()
    assert lead.company == "Acme"
    assert lead.identities.count() == 2


def test_an_upsert_never_erases_a_stored_value_with_a_missing_one(db):
    lead = LeadFactory(email="k@example.com", company="Acme", attributes={"seats": 4})
    outcome = lead_upsert(
        LeadUpsert(
            values={"email": "k@example.com", "company": None, "title": ""},
            attributes={"seats": None},
        )
    )
    assert outcome.status == "unchanged"
    lead.refresh_from_db()
    assert (lead.company, lead.attributes) == ("Acme", {"seats": 4})


def test_a_record_without_identity_or_email_is_rejected(db):
    outcome = lead_upsert(LeadUpsert(values={"company": "Acme"}))
    assert outcome.status == "rejected"
    assert Lead.objects.count() == 0

"""The outbox relay: fan-out once per (transition, subscriber), claims, retries with backoff,
dead letters; against the real database and a real HTTP receiver."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac

import pytest
from django.utils import timezone

from integrations.models import OutboxDelivery
from integrations.outbound import relay
from integrations.outbound.webhooks import webhook_create
from scoring.models import LeadTransition
from scoring.services.rescore import RELAY_TASK
from scoring.services.rulesets import ruleset_import
from tests.factories import LeadFactory

SECRET = "a-webhook-secret-of-some-length"
EVENTS = ["lead.qualified", "lead.disqualified", "lead.band_changed"]


def transition(lead, kind=LeadTransition.Kind.QUALIFIED) -> LeadTransition:
    return LeadTransition.objects.create(
        lead=lead, kind=kind, from_band="Warm", to_band="MQL", score=60, occurred_at=timezone.now()
    )


@pytest.fixture
def hook(db, receiver):
    return webhook_create(receiver.url, SECRET, EVENTS)


def test_each_transition_fans_out_once_per_subscriber_with_a_stable_key(hook):
    lead = LeadFactory()
    first = transition(lead)
    transition(lead, LeadTransition.Kind.ASSIGNED)  # the webhook did not ask for it
    assert relay.fan_out() == 2
    assert relay.fan_out() == 0
    LeadTransition.objects.update(processed_at=None)  # as if a second worker raced the first
    assert relay.fan_out() == 2
    keys = OutboxDelivery.objects.filter(transition=first).values_list("subscriber", "key")
    assert dict(keys) == {
        "routing": relay.delivery_key(first.pk, "routing"),
        f"webhook:{hook.pk}": relay.delivery_key(first.pk, f"webhook:{hook.pk}"),
    }
    assert OutboxDelivery.objects.filter(webhook=hook).count() == 1
    assert not LeadTransition.objects.filter(processed_at__isnull=True).exists()


def test_a_claimed_delivery_is_not_claimed_by_a_second_worker(hook):
    transition(LeadFactory())
    relay.fan_out()
    delivery = OutboxDelivery.objects.get(webhook=hook)
    assert relay.delivery_claim(delivery.pk) is True
    assert relay.delivery_claim(delivery.pk) is False
    # Its lease runs out (the worker died): another worker may take it over.
    later = timezone.now() + dt.timedelta(seconds=relay.LEASE_SECONDS + 1)
    assert relay.delivery_claim(delivery.pk, now=later) is True
    delivery.refresh_from_db()
    assert delivery.attempts == 2


def test_a_delivery_is_signed_over_timestamp_and_body(hook, receiver):
    lead = LeadFactory(email="ada@example.com", score=60, band="MQL")
    made = transition(lead)
    relay.fan_out()
    counts = relay.deliver_due()
    assert (counts["done"], counts["skipped"]) == (1, 1)  # routing had nothing to route
    (request,) = receiver.requests
    timestamp = request.headers["X-Leadscoring-Timestamp"]
    expected = hmac.new(
        SECRET.encode(), timestamp.encode() + b"." + request.body, hashlib.sha256
    ).hexdigest()
    assert request.headers["X-Leadscoring-Signature"] == f"v1={expected}"
    body = request.json
    assert body["id"] == relay.delivery_key(made.pk, f"webhook:{hook.pk}")
    assert body["type"] == "lead.qualified"
    assert body["data"]["lead"] == {
        "id": lead.pk,
        "email": "ada@example.com",
        "first_name": lead.first_name,
        "last_name": lead.last_name,
        "company": lead.company,
        "score": 60,
        "band": "MQL",
        "persona": None,
        "owner": None,
        "lifecycle_stage": "lead",
        "qualified": False,
    }
    assert body["data"]["transition"]["to_band"] == "MQL"


def test_a_failing_receiver_is_retried_with_backoff_and_the_same_id(hook, receiver, settings):
    settings.OUTBOX_RETRY_BASE_SECONDS = 60
    settings.OUTBOX_RETRY_MAX_SECONDS = 60
    receiver.statuses = [503, 200]
    transition(LeadFactory())
    relay.fan_out()
    before = timezone.now()
    relay.deliver_due()
    delivery = OutboxDelivery.objects.get(webhook=hook)
    assert delivery.status == "pending" and delivery.last_status_code == 503
    assert before <= delivery.next_attempt_at <= before + dt.timedelta(seconds=61)
    # Not due yet: nothing is sent; once due, it is.
    if delivery.next_attempt_at > timezone.now() + dt.timedelta(seconds=1):
        assert relay.deliver_due()["retry"] == 0 and len(receiver.requests) == 1
    relay.deliver_due(now=delivery.next_attempt_at + dt.timedelta(seconds=1))
    delivery.refresh_from_db()
    assert delivery.status == "done" and delivery.attempts == 2
    first, second = receiver.requests
    assert first.json["id"] == second.json["id"] and first.body == second.body


def test_a_permanent_refusal_is_dead_lettered_at_once(hook, receiver):
    receiver.statuses = [410]
    transition(LeadFactory())
    relay.fan_out()
    assert relay.deliver_due()["dead"] == 1
    delivery = OutboxDelivery.objects.get(webhook=hook)
    assert delivery.status == "dead" and delivery.last_error == "HTTP 410"


def test_failures_are_dead_lettered_after_the_give_up_window(hook, receiver, settings):
    settings.OUTBOX_GIVE_UP_HOURS = 1
    receiver.statuses = [500]
    transition(LeadFactory())
    relay.fan_out()
    relay.deliver_due()  # young: retried
    assert OutboxDelivery.objects.get(webhook=hook).status == "pending"
    OutboxDelivery.objects.update(created_at=timezone.now() - dt.timedelta(hours=1, seconds=1))
    OutboxDelivery.objects.update(next_attempt_at=timezone.now())
    relay.deliver_due()
    assert OutboxDelivery.objects.get(webhook=hook).status == "dead"


def test_a_paused_webhook_holds_its_deliveries(hook, receiver):
    hook.paused = True
    hook.save()
    transition(LeadFactory())
    relay.fan_out()
    relay.deliver_due()
    assert receiver.requests == []
    assert OutboxDelivery.objects.get(webhook=hook).status == "pending"


def test_a_rescore_writes_band_changes_and_kicks_the_relay(
    db, sent_tasks, django_capture_on_commit_callbacks
):
    from scoring.services.rescore import rescore_all

    ruleset_import(
        {
            "name": "r",
            "bands": [
                {"name": "Cold", "min_score": 0},
                {"name": "MQL", "min_score": 10, "qualifies": True},
            ],
            "rules": [
                {"kind": "attribute", "field": "employees", "op": "gte", "value": 200, "points": 10}
            ],
        },
        publish=True,
    )
    lead = LeadFactory(employees=500, band="Cold", score=0)
    with django_capture_on_commit_callbacks(execute=True):
        rescore_all(inline=True)
    kinds = set(LeadTransition.objects.filter(lead=lead).values_list("kind", flat=True))
    assert kinds == {"qualified", "band_changed"}
    assert sent_tasks.named(RELAY_TASK)

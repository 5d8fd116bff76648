"""Outgoing webhooks: the API and pages by role, refusals, and delivery through a real worker
to a real HTTP receiver."""

from __future__ import annotations

import json
import time

import pytest
from django.utils import timezone

from integrations.models import OutboxDelivery, WebhookSubscription
from integrations.outbound.webhooks import webhook_create
from scoring.models import LeadTransition
from tests.factories import LeadFactory

SECRET = "a-webhook-secret-of-some-length"


def create(client, url, **overrides):
    body = {"url": url, "secret": SECRET, "events": ["lead.qualified"], **overrides}
    return client.post("/api/v1/webhooks/", json.dumps(body), content_type="application/json")


def test_ops_and_admin_manage_webhooks_and_others_may_not(client_as, receiver):
    for username in ("sales1", "manager"):
        assert create(client_as(username), receiver.url).status_code == 403
        assert client_as(username).get("/api/v1/webhooks/").status_code == 403
        assert client_as(username).get("/webhooks/").status_code == 403
    ops = client_as("ops")
    response = create(ops, receiver.url)
    assert response.status_code == 201, response.content
    created = response.json()
    assert "secret" not in created and created["paused"] is False
    assert SECRET not in WebhookSubscription.objects.get().secret  # stored encrypted
    admin = client_as("admin")
    assert [w["id"] for w in admin.get("/api/v1/webhooks/").json()] == [created["id"]]
    path = f"/api/v1/webhooks/{created['id']}/"
    paused = admin.patch(path, json.dumps({"paused": True}), content_type="application/json")
    assert paused.status_code == 200 and paused.json()["paused"] is True
    assert ops.get(f"/webhooks/{created['id']}/").status_code == 200
    assert ops.get(f"{path}deliveries/").json() == []
    assert ops.delete(path).status_code == 204
    assert not WebhookSubscription.objects.exists()


def test_bad_subscriptions_get_400_with_the_reason(client_as, receiver, settings):
    ops = client_as("ops")
    assert create(ops, receiver.url, secret="short").status_code == 400
    response = create(ops, receiver.url, events=["lead.exploded"])
    assert response.status_code == 400 and "events" in response.json()
    assert create(ops, "ftp://example.com/x").status_code == 400
    settings.WEBHOOK_ALLOW_PRIVATE = False
    for url in (receiver.url, "http://10.1.2.3/hook", "http://169.254.169.254/latest"):
        response = create(ops, url)
        assert response.status_code == 400, url
        assert "WEBHOOK_ALLOW_PRIVATE" in response.json()["url"][0]
    assert not WebhookSubscription.objects.exists()


def test_a_delivery_refused_later_as_private_is_dead_lettered(db, receiver, settings):
    from integrations.outbound import relay

    hook = webhook_create(receiver.url, SECRET, ["lead.qualified"])
    settings.WEBHOOK_ALLOW_PRIVATE = False  # e.g. the name now resolves elsewhere
    LeadTransition.objects.create(
        lead=LeadFactory(), kind="qualified", score=60, occurred_at=timezone.now()
    )
    relay.relay_run()
    delivery = OutboxDelivery.objects.get(webhook=hook)
    assert delivery.status == "dead" and "URL refused" in delivery.last_error
    assert receiver.requests == []


@pytest.mark.broker
def test_a_receiver_failing_twice_gets_it_on_the_third_attempt_with_the_same_id(
    celery_worker, receiver
):
    from integrations.outbound.relay import relay_kick

    receiver.statuses = [500, 502, 200]
    hook = webhook_create(receiver.url, SECRET, ["lead.qualified"])
    LeadTransition.objects.create(
        lead=LeadFactory(), kind="qualified", score=60, occurred_at=timezone.now()
    )
    relay_kick()  # autocommit: sent at once; the worker retries on its own from here
    requests = receiver.wait_for(3)
    assert len(requests) == 3
    assert len({r.json["id"] for r in requests}) == 1
    assert len({r.body for r in requests}) == 1
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        delivery = OutboxDelivery.objects.get(webhook=hook)
        if delivery.status == "done":
            break
        time.sleep(0.05)
    assert delivery.status == "done" and delivery.attempts == 3
    assert delivery.last_status_code == 200
    time.sleep(0.5)
    assert len(receiver.requests) == 3  # delivered once, never again


def test_the_log_page_redelivers_a_dead_letter_with_the_same_id(client_as, receiver):
    from integrations.outbound import relay

    receiver.statuses = [404, 200]
    hook = webhook_create(receiver.url, SECRET, ["lead.qualified"])
    LeadTransition.objects.create(
        lead=LeadFactory(), kind="qualified", score=60, occurred_at=timezone.now()
    )
    relay.fan_out()
    relay.deliver_due()
    delivery = OutboxDelivery.objects.get(webhook=hook)
    assert delivery.status == "dead"
    ops = client_as("ops")
    page = ops.get("/webhooks/").content.decode()
    assert delivery.key in page
    assert (
        client_as("manager").post(f"/webhooks/deliveries/{delivery.pk}/redeliver/").status_code
        == 403
    )
    assert ops.post(f"/webhooks/deliveries/{delivery.pk}/redeliver/").status_code == 302
    relay.deliver_due()
    delivery.refresh_from_db()
    assert delivery.status == "done"
    assert receiver.requests[0].json["id"] == receiver.requests[1].json["id"] == delivery.key

"""The issue's "done when", through the real parts: an event posted to the API qualifies a lead
(real-time rescore on a real worker), the matching rule assigns it within seconds, its rep is
emailed (real SMTP on loopback) and the subscribed receiver gets one signed POST per
transition (real HTTP on loopback)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest
from django.test import Client
from django.utils import timezone

from integrations.outbound.webhooks import webhook_create
from scoring.models import Lead, LeadAssignment
from scoring.services.routing import routing_import
from scoring.services.rulesets import ruleset_import
from tests.factories import LeadFactory, api_token

SECRET = "a-webhook-secret-of-some-length"
RULES = {
    "name": "r",
    "bands": [
        {"name": "Cold", "min_score": 0},
        {"name": "MQL", "min_score": 50, "qualifies": True},
    ],
    "rules": [{"kind": "event", "event_type": "demo_request", "points": 60, "window_days": 30}],
}


@pytest.mark.broker
def test_a_lead_qualifying_through_the_events_api_is_assigned_alerted_and_announced(
    celery_worker, role_users, smtp_server, receiver
):
    ruleset_import(RULES, publish=True)
    routing_import(
        {
            "rules": [
                {
                    "name": "Germany",
                    "when": [{"field": "country", "op": "eq", "value": "DE"}],
                    "team": ["sales2"],
                }
            ],
            "fallback": {"team": ["sales1"]},
        }
    )
    webhook_create(receiver.url, SECRET, ["lead.qualified", "lead.assigned"])
    lead = LeadFactory(email="ada@acme.example", country="DE")
    client = Client(HTTP_AUTHORIZATION=f"Token {api_token(role_users['ops'])}")
    started = time.monotonic()
    response = client.post(
        "/api/v1/events/",
        json.dumps(
            {
                "external_id": "e-1",
                "event_type": "demo_request",
                "occurred_at": timezone.now().isoformat(),
                "email": "ada@acme.example",
            }
        ),
        content_type="application/json",
    )
    assert response.status_code == 200, response.content

    while time.monotonic() - started < 20 and not LeadAssignment.objects.exists():
        time.sleep(0.05)
    assert time.monotonic() - started < 10
    assignment = LeadAssignment.objects.get()
    assert (assignment.lead_id, assignment.user.username, assignment.rule) == (
        lead.pk,
        "sales2",
        "Germany",
    )
    assert Lead.objects.get(pk=lead.pk).owner.username == "sales2"

    ((recipients, _),) = smtp_server.wait_for(1)
    assert recipients == ["sales2@example.com"]

    requests = receiver.wait_for(2)
    assert sorted(r.json["type"] for r in requests) == ["lead.assigned", "lead.qualified"]
    for request in requests:
        timestamp = request.headers["X-Leadscoring-Timestamp"]
        signed = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + request.body, hashlib.sha256)
        assert request.headers["X-Leadscoring-Signature"] == "v1=" + signed.hexdigest()
    assigned = next(r.json for r in requests if r.json["type"] == "lead.assigned")
    assert assigned["data"]["lead"]["owner"] == "sales2"
    assert assigned["data"]["transition"]["rule"] == "Germany"
    time.sleep(0.5)
    assert len(receiver.requests) == 2  # one POST per transition

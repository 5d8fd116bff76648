"""Alerts: the assigned rep's email over real SMTP (aiosmtpd on loopback), the daily digest,
the team's Slack-compatible webhook on a real HTTP receiver."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

from integrations.models import AlertPreference, OutboxDelivery
from integrations.outbound import relay
from integrations.outbound.alerts import digest_send
from scoring.services.routing import route_leads, routing_import
from tests.factories import LeadFactory


def document(slack_url=None):
    rule = {"name": "all", "when": [], "team": ["sales1", "sales2"]}
    if slack_url:
        rule["slack_webhook"] = slack_url
    return {"rules": [rule]}


def qualified_lead(**fields):
    values = {"qualified": True, "score": 70, "band": "MQL", "email": "ada@acme.example"}
    return LeadFactory(**{**values, **fields})


def test_the_assigned_rep_gets_an_email_and_the_team_channel_a_message(
    role_users, smtp_server, receiver
):
    routing_import(document(receiver.url))
    lead = qualified_lead(company="Acme")
    route_leads([lead.pk])
    relay.relay_run()
    ((recipients, message),) = smtp_server.wait_for(1)
    assert recipients == ["sales1@example.com"]
    assert "New qualified lead" in message and f"/leads/{lead.pk}/" in message
    (posted,) = receiver.requests
    assert set(posted.json) == {"text"}
    assert "sales1" in posted.json["text"] and "Acme" in posted.json["text"]
    statuses = dict(OutboxDelivery.objects.values_list("subscriber", "status"))
    assert statuses == {"email": "done", "slack": "done"}


def test_an_unreachable_smtp_server_is_retried_not_lost(role_users, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", 9  # nothing listens there
    routing_import(document())
    route_leads([qualified_lead().pk])
    relay.relay_run()
    email = OutboxDelivery.objects.get(subscriber="email")
    assert email.status == "pending" and "ConnectionRefused" in email.last_error


def test_a_digest_user_gets_one_daily_email_instead(role_users, smtp_server):
    AlertPreference.objects.create(user=role_users["sales1"], email="digest")
    routing_import({"rules": [{"name": "all", "when": [], "team": ["sales1"]}]})
    leads = [qualified_lead(email=f"lead{i}@acme.example") for i in range(2)]
    route_leads([lead.pk for lead in leads])
    relay.relay_run()
    assert OutboxDelivery.objects.get(transition__lead=leads[0], subscriber="email").status == (
        "skipped"
    )
    assert smtp_server.messages == []
    assert digest_send() == 1
    ((recipients, message),) = smtp_server.wait_for(1)
    assert recipients == ["sales1@example.com"]
    assert "2 qualified lead(s)" in message and "lead1@acme.example" in message
    assert digest_send() == 0  # once a day
    later = timezone.now() + dt.timedelta(hours=24)
    assert digest_send(now=later) == 0  # nothing new since


def test_a_rep_chooses_the_digest_on_the_alerts_page(client_as, role_users):
    rep = client_as("sales1")
    assert rep.get("/profile/alerts/").status_code == 200
    assert rep.post("/profile/alerts/", {"email": "digest"}).status_code == 302
    assert AlertPreference.objects.get(user=role_users["sales1"]).email == "digest"
    assert rep.post("/profile/alerts/", {"email": "nonsense"}).status_code == 400

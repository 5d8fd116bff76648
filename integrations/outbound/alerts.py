"""Alerts on assignments: an email to the assigned rep (Django's email backend, configured
from EMAIL_URL or the EMAIL_* settings; per user, a daily digest instead), and a
Slack-compatible incoming-webhook message (`{"text": ...}`) to the routing rule's
`slack_webhook`, the team's channel. Both are relay subscribers (`email`, `slack`) of
`lead.assigned` transitions, so they are retried and dead-lettered like webhooks."""

from __future__ import annotations

import datetime as dt
import logging
import smtplib
from typing import Any

import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db.models import Q
from django.utils import timezone

from integrations.models import AlertPreference, OutboxDelivery
from integrations.outbound.webhooks import DeliveryResult, url_refusal
from scoring.engine.routing import RoutingSpec
from scoring.models import LeadAssignment, LeadTransition

logger = logging.getLogger(__name__)


def alert_subscribers(transition: LeadTransition, spec: RoutingSpec | None) -> list[str]:
    """The alert subscribers of one transition: `email` and, when the rule names a channel,
    `slack`, for assignments."""
    if transition.kind != LeadTransition.Kind.ASSIGNED:
        return []
    names = ["email"]
    rule = spec.rule_named(transition.details.get("rule", "")) if spec else None
    if rule is not None and rule.slack_webhook:
        names.append("slack")
    return names


def _lead_line(document: dict[str, Any]) -> str:
    lead = document["data"]["lead"]
    name = " ".join(p for p in (lead.get("first_name"), lead.get("last_name")) if p)
    who = name or lead.get("email") or f"lead {lead['id']}"
    company = f" ({lead['company']})" if lead.get("company") else ""
    return f"{who}{company}, score {lead['score']}, band {lead['band']}"


def _lead_url(lead_id: int) -> str:
    return f"{settings.SITE_URL.rstrip('/')}/leads/{lead_id}/"


def alert_deliver(delivery: OutboxDelivery, document: dict[str, Any]) -> DeliveryResult | None:
    if delivery.subscriber == "email":
        return _email(document)
    return _slack(document)


def _email(document: dict[str, Any]) -> DeliveryResult | None:
    owner = document["data"]["transition"].get("owner")
    user = get_user_model().objects.filter(username=owner, is_active=True).first()
    if user is None or not user.email:
        return None
    mode = AlertPreference.objects.filter(user=user).values_list("email", flat=True).first()
    if mode in (AlertPreference.Email.DIGEST, AlertPreference.Email.OFF):
        return None  # the digest task tells them (or nothing does)
    lead_id = document["data"]["lead"]["id"]
    try:
        send_mail(
            f"New qualified lead: {_lead_line(document)}",
            f"A qualified lead was assigned to you.\n\n{_lead_line(document)}\n"
            f"Rule: {document['data']['transition'].get('rule')}\n\n{_lead_url(lead_id)}\n",
            None,
            [user.email],
        )
    except (smtplib.SMTPException, OSError) as exc:
        return DeliveryResult(False, error=f"{exc.__class__.__name__}: {exc}"[:500])
    return DeliveryResult(True)


def _slack(document: dict[str, Any]) -> DeliveryResult | None:
    from scoring.services.routing import routing_current

    state = routing_current()
    rule = state.spec.rule_named(document["data"]["transition"].get("rule", "")) if state else None
    if rule is None or not rule.slack_webhook:
        return None
    refusal = url_refusal(rule.slack_webhook)
    if refusal is not None:
        return DeliveryResult(False, error=f"URL refused: {refusal}", permanent=True)
    owner = document["data"]["transition"].get("owner")
    text = (
        f"New qualified lead for {owner}: {_lead_line(document)} "
        f"<{_lead_url(document['data']['lead']['id'])}|open>"
    )
    try:
        response = requests.post(
            rule.slack_webhook,
            json={"text": text},
            timeout=settings.WEBHOOK_TIMEOUT_SECONDS,
            allow_redirects=False,
        )
    except requests.RequestException as exc:
        return DeliveryResult(False, error=f"{exc.__class__.__name__}: {exc}"[:500])
    if 200 <= response.status_code < 300:
        return DeliveryResult(True, status_code=response.status_code)
    code = response.status_code
    return DeliveryResult(
        False,
        status_code=code,
        error=f"HTTP {code}",
        permanent=400 <= code < 500 and code != 429,
    )


def digest_send(*, now: dt.datetime | None = None) -> int:
    """Email each digest user the leads assigned to them since their last digest (at most a
    day back); returns how many emails went out."""
    now = now or timezone.now()
    sent = 0
    for pref in AlertPreference.objects.select_related("user").filter(
        Q(digest_sent_at__isnull=True) | Q(digest_sent_at__lte=now - dt.timedelta(hours=23)),
        email=AlertPreference.Email.DIGEST,
        user__is_active=True,
    ):
        since = max(pref.digest_sent_at or now - dt.timedelta(days=1), now - dt.timedelta(days=1))
        assignments = list(
            LeadAssignment.objects.select_related("lead")
            .filter(user=pref.user, assigned_at__gt=since, assigned_at__lte=now)
            .order_by("assigned_at")
        )
        if assignments and pref.user.email:
            lines = [
                f"- {a.lead.email or a.lead.pk}: score {a.lead.score}, band {a.lead.band} "
                f"({_lead_url(a.lead_id)})"
                for a in assignments
            ]
            send_mail(
                f"{len(assignments)} qualified lead(s) assigned to you",
                "Assigned to you since the last digest:\n\n" + "\n".join(lines) + "\n",
                None,
                [pref.user.email],
            )
            sent += 1
        AlertPreference.objects.filter(pk=pref.pk).update(digest_sent_at=now)
    return sent

"""Outgoing webhooks: subscriptions (create, pause, delete) and one signed delivery.

A delivery is `POST url` with the JSON body `{"id", "type", "created", "data": {...}}` and

    X-Leadscoring-Timestamp: <unix seconds>
    X-Leadscoring-Signature: v1=<hex HMAC-SHA256 of "<timestamp>.<body>" with the secret>

`id` is the delivery's idempotency key, the same on every retry. Any 2xx is success; 408, 429
and 5xx (and network errors) are retried; other 4xx are permanent. URLs whose host resolves to
a private, loopback, link-local or reserved address are refused (at creation and again before
each delivery) unless WEBHOOK_ALLOW_PRIVATE is on. Redirects are not followed."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from integrations.config import decrypt_secrets, encrypt_secrets
from integrations.models import OutboxDelivery, WebhookSubscription

EVENT_TYPES = (
    "lead.qualified",
    "lead.disqualified",
    "lead.band_changed",
    "lead.assigned",
    "lead.sla_breached",
)
SECRET_MIN_CHARS = 16
TIMESTAMP_HEADER = "X-Leadscoring-Timestamp"
SIGNATURE_HEADER = "X-Leadscoring-Signature"


class WebhookInvalid(ValueError):
    """A subscription that cannot be saved; `errors` maps a field to its reason."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))


@dataclass(frozen=True)
class DeliveryResult:
    """What one attempt did: `ok`, or why not and whether trying again can help."""

    ok: bool
    status_code: int | None = None
    error: str = ""
    permanent: bool = False
    retry_after: float | None = None


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header's value for `body` sent at `timestamp`."""
    message = timestamp.encode() + b"." + body
    return "v1=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def url_refusal(url: str) -> str | None:
    """Why `url` may not receive webhooks, or None when it may."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http(s) URL with a host"
    if settings.WEBHOOK_ALLOW_PRIVATE:
        return None
    try:
        infos = socket.getaddrinfo(
            parts.hostname,
            parts.port or (443 if parts.scheme == "https" else 80),
            type=socket.SOCK_STREAM,
        )
    except (socket.gaierror, UnicodeError):
        return f"the host {parts.hostname} does not resolve"
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if not address.is_global or address.is_multicast:
            return (
                f"resolves to the non-public address {address} (set WEBHOOK_ALLOW_PRIVATE=true"
                " to allow private receivers)"
            )
    return None


def webhook_create(
    url: str, secret: str, events: Sequence[str], *, user: Any = None
) -> WebhookSubscription:
    """Validate and store a subscription; raises `WebhookInvalid` with every problem."""
    errors: dict[str, str] = {}
    if not isinstance(url, str) or len(url) > 500:
        errors["url"] = "must be a URL of at most 500 characters"
    elif (reason := url_refusal(url)) is not None:
        errors["url"] = reason
    if not isinstance(secret, str) or len(secret) < SECRET_MIN_CHARS:
        errors["secret"] = f"must be a string of at least {SECRET_MIN_CHARS} characters"
    if (
        not isinstance(events, list | tuple)
        or not events
        or any(e not in EVENT_TYPES for e in events)
    ):
        errors["events"] = f"must be a non-empty list of: {', '.join(EVENT_TYPES)}"
    if errors:
        raise WebhookInvalid(errors)
    return WebhookSubscription.objects.create(
        url=url,
        secret=encrypt_secrets({"secret": secret}),
        events=sorted(set(events)),
        created_by=user if user is not None and user.is_authenticated else None,
    )


def webhook_pause(subscription: WebhookSubscription, paused: bool) -> WebhookSubscription:
    """Pause or resume; deliveries waiting for a paused subscription wait with it."""
    subscription.paused = paused
    subscription.save(update_fields=["paused"])
    return subscription


def webhook_delete(subscription: WebhookSubscription) -> None:
    """Delete the subscription and its delivery log."""
    subscription.delete()


def delivery_redeliver(delivery: OutboxDelivery) -> bool:
    """Queue a finished (or dead) delivery again, with the same id; False if it is in flight."""
    with transaction.atomic():
        changed = OutboxDelivery.objects.filter(
            pk=delivery.pk,
            status__in=[
                OutboxDelivery.Status.DONE,
                OutboxDelivery.Status.DEAD,
                OutboxDelivery.Status.SKIPPED,
            ],
        ).update(
            status=OutboxDelivery.Status.PENDING, next_attempt_at=timezone.now(), claimed_until=None
        )
    if changed:
        from integrations.outbound.relay import relay_kick

        relay_kick()
    return bool(changed)


def webhook_post(subscription: WebhookSubscription, payload: dict[str, Any]) -> DeliveryResult:
    """POST one signed delivery (never raises for the receiver's or the network's faults)."""
    if subscription.paused:
        return DeliveryResult(False, error="paused")
    refusal = url_refusal(subscription.url)
    if refusal is not None:
        return DeliveryResult(False, error=f"URL refused: {refusal}", permanent=True)
    secret = decrypt_secrets(subscription.secret)["secret"]
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "leadscoring-webhooks/1",
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(secret, timestamp, body),
    }
    try:
        response = requests.post(
            subscription.url,
            data=body,
            headers=headers,
            timeout=settings.WEBHOOK_TIMEOUT_SECONDS,
            allow_redirects=False,
        )
    except requests.RequestException as exc:
        return DeliveryResult(False, error=f"{exc.__class__.__name__}: {exc}"[:500])
    code = response.status_code
    if 200 <= code < 300:
        return DeliveryResult(True, status_code=code)
    retry_after = _retry_after(response.headers.get("Retry-After"))
    permanent = 400 <= code < 500 and code not in (408, 425, 429)
    return DeliveryResult(
        False,
        status_code=code,
        error=f"HTTP {code}",
        permanent=permanent,
        retry_after=retry_after,
    )


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None

"""Inbound vendor webhooks. They authenticate by signature, not by session."""

from __future__ import annotations

import logging
import time

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from integrations import config as integration_config
from integrations import services
from integrations.connectors.hubspot import verify_signature_v3
from scoring import strict_json

logger = logging.getLogger(__name__)

#: HubSpot's v3 signatures older than this are refused (a replay)...
MAX_SIGNATURE_AGE_MS = 300_000
#: ...and so are those dated further ahead than this: a little skew between HubSpot's clock and
#: ours is normal, and refusing it would drop real deliveries.
MAX_CLOCK_SKEW_MS = 60_000


@csrf_exempt
@login_not_required
@require_POST
def hubspot_webhook(request: HttpRequest) -> HttpResponse:
    """``POST /integrations/hubspot/webhook``: verify the v3 signature (401 when it is
    missing, wrong, older than 5 minutes or more than 60 s in the future), then hand the
    events to the service, which ignores replayed event ids and enqueues the sync. Answers at
    once: 200, or 202 when the task queue was unreachable (the sync is recorded and runs once
    it is back)."""
    secret = integration_config.hubspot_app_secret(services.connection_get("hubspot"))
    if not secret:
        logger.warning("sync.webhook.refused source=hubspot reason=no_app_secret")
        return JsonResponse({"error": "webhooks are not configured"}, status=503)
    body = request.body
    valid = verify_signature_v3(
        secret,
        request.method or "POST",
        request.build_absolute_uri(),
        body,
        request.headers.get("X-HubSpot-Request-Timestamp", ""),
        request.headers.get("X-HubSpot-Signature-v3", ""),
        now_ms=int(time.time() * 1000),
        max_age_ms=MAX_SIGNATURE_AGE_MS,
        max_skew_ms=MAX_CLOCK_SKEW_MS,
    )
    if not valid:
        logger.warning("sync.webhook.refused source=hubspot reason=signature")
        return JsonResponse({"error": "invalid or stale signature"}, status=401)
    try:
        events = strict_json.loads(body)
    except strict_json.StrictJSONError as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    if isinstance(events, dict):
        events = [events]
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        return JsonResponse({"error": "expected a list of events"}, status=400)
    summary = services.hubspot_webhook_receive(events)
    # 202 when the broker was down: accepted and recorded; the sync runs once it is back.
    return JsonResponse(summary, status=202 if summary["queued"] else 200)

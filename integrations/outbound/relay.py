"""The outbox relay: `LeadTransition` rows in, one delivery per (transition, subscriber) out.

`relay_run` does two things, each safe to run in several workers at once:

1. **Fan out.** Unprocessed transitions, oldest first, become `OutboxDelivery` rows, one per
   subscriber that wants them; the unique (transition, subscriber) pair makes a second fan-out
   of the same rows a no-op, and the transitions are marked processed in the same commit.
2. **Deliver.** Due deliveries (oldest transition first) are claimed one by one with a
   conditional UPDATE (pending and due, or running with an expired lease) and the row count
   says whether this worker won; the handler runs outside any transaction; the outcome is
   written in a short one. A failure is retried with exponential backoff and full jitter
   (OUTBOX_RETRY_BASE_SECONDS doubling up to OUTBOX_RETRY_MAX_SECONDS, or the receiver's
   Retry-After); after OUTBOX_GIVE_UP_HOURS, or at once on a permanent error, the delivery
   is dead-lettered and shown on the webhooks page.

At-least-once: a worker that dies after delivering but before recording it leaves a running
row whose lease expires and which is delivered again, with the same idempotency key.

Subscribers: `routing` (a qualified lead without an owner is assigned,
`scoring.services.routing`), `webhook:<id>` (every active subscription to the event type),
`email` (the assigned rep, `alerts`), `slack` (the rule's team channel, `alerts`) and
`nurture:<n>` (CRM list / campaign actions of the band a lead entered, `nurture`)."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from integrations.connectors.base import backoff_delay
from integrations.models import OutboxDelivery, WebhookSubscription
from integrations.outbound.alerts import alert_deliver, alert_subscribers
from integrations.outbound.nurture import (
    nurture_deliver,
    nurture_subscribers,
    owner_deliver,
    owner_subscribers,
)
from integrations.outbound.webhooks import DeliveryResult, webhook_post
from scoring.jobs import UNREACHABLE_KEEP, dispatch
from scoring.models import LeadTransition
from scoring.services.rescore import RELAY_TASK
from scoring.services.routing import route_leads, routing_current

logger = logging.getLogger(__name__)

#: Transition kind -> the event type subscribers see.
EVENT_TYPE = {
    LeadTransition.Kind.QUALIFIED: "lead.qualified",
    LeadTransition.Kind.UNQUALIFIED: "lead.disqualified",
    LeadTransition.Kind.BAND_CHANGED: "lead.band_changed",
    LeadTransition.Kind.ASSIGNED: "lead.assigned",
    LeadTransition.Kind.SLA_BREACHED: "lead.sla_breached",
}
FAN_OUT_BATCH = 1000
DELIVER_BATCH = 200
# How long a claimed delivery is this worker's; longer than any one delivery can take.
LEASE_SECONDS = 120
# A retry due sooner than this is scheduled as a follow-up task; later ones wait for the beat.
FOLLOW_UP_WITHIN_SECONDS = 60.0
_KEY_NAMESPACE = uuid.UUID("5b0e1f8c-3a47-4c1e-9d2a-6f2f0b9c7e11")


def delivery_key(transition_id: int, subscriber: str) -> str:
    """The idempotency key of (transition, subscriber): the same wherever and whenever it is
    computed, so a re-created row keeps its id."""
    return "evt_" + uuid.uuid5(_KEY_NAMESPACE, f"{transition_id}/{subscriber}").hex


def relay_kick(countdown: float | None = None) -> None:
    """Run the relay soon (after the current transaction commits)."""
    dispatch(RELAY_TASK, countdown=countdown, unreachable=UNREACHABLE_KEEP)


# ---------------------------------------------------------------------------------------------
# Fan-out


def fan_out(*, limit: int = FAN_OUT_BATCH, now: dt.datetime | None = None) -> int:
    """Turn up to `limit` unprocessed transitions into deliveries; returns how many
    transitions were processed."""
    now = now or timezone.now()
    with transaction.atomic():
        transitions = list(
            LeadTransition.objects.select_for_update(skip_locked=True)
            .filter(processed_at__isnull=True)
            .order_by("pk")[:limit]
        )
        if not transitions:
            return 0
        webhooks = list(WebhookSubscription.objects.all())
        routing = routing_current()
        rows = []
        for transition in transitions:
            event_type = EVENT_TYPE.get(transition.kind)
            subscribers: list[tuple[str, WebhookSubscription | None]] = []
            if transition.kind == LeadTransition.Kind.QUALIFIED:
                subscribers.append(("routing", None))
            spec = routing.spec if routing else None
            names = [
                *alert_subscribers(transition, spec),
                *nurture_subscribers(transition, spec),
                *owner_subscribers(transition),
            ]
            subscribers += [(name, None) for name in names]
            subscribers += [(f"webhook:{w.pk}", w) for w in webhooks if event_type in w.events]
            rows += [
                OutboxDelivery(
                    transition=transition,
                    subscriber=name,
                    webhook=webhook,
                    key=delivery_key(transition.pk, name),
                    next_attempt_at=now,
                    created_at=now,
                )
                for name, webhook in subscribers
            ]
        OutboxDelivery.objects.bulk_create(rows, batch_size=1000, ignore_conflicts=True)
        LeadTransition.objects.filter(
            pk__in=[t.pk for t in transitions], processed_at__isnull=True
        ).update(processed_at=now)
    logger.info("outbox.fan_out transitions=%s deliveries=%s", len(transitions), len(rows))
    return len(transitions)


# ---------------------------------------------------------------------------------------------
# Delivery


def _due(now: dt.datetime) -> Q:
    pending = Q(status=OutboxDelivery.Status.PENDING, next_attempt_at__lte=now)
    lost = Q(status=OutboxDelivery.Status.RUNNING, claimed_until__lt=now)
    # A paused webhook's deliveries wait (they are neither tried nor aged out meanwhile).
    return (pending | lost) & ~Q(webhook__paused=True)


def delivery_claim(delivery_id: int, now: dt.datetime | None = None) -> bool:
    """Take one due delivery for this worker; False when another worker has it."""
    now = now or timezone.now()
    return bool(
        OutboxDelivery.objects.filter(_due(now), pk=delivery_id).update(
            status=OutboxDelivery.Status.RUNNING,
            claimed_until=now + dt.timedelta(seconds=LEASE_SECONDS),
            attempts=F("attempts") + 1,
            last_attempt_at=now,
        )
    )


def deliver_due(*, limit: int = DELIVER_BATCH, now: dt.datetime | None = None) -> dict[str, int]:
    """Deliver up to `limit` due deliveries; returns counts by outcome."""
    now = now or timezone.now()
    ids = list(
        OutboxDelivery.objects.filter(_due(now))
        .order_by("transition_id", "pk")
        .values_list("pk", flat=True)[:limit]
    )
    counts = {"done": 0, "retry": 0, "dead": 0, "skipped": 0}
    for delivery_id in ids:
        if not delivery_claim(delivery_id, now):
            continue
        delivery = OutboxDelivery.objects.select_related("transition__lead", "webhook").get(
            pk=delivery_id
        )
        try:
            result = _handle(delivery)
        except Exception as exc:  # a handler's bug must not stop the other deliveries
            logger.exception("outbox.delivery.error delivery=%s", delivery.pk)
            result = DeliveryResult(False, error=f"{exc.__class__.__name__}: {exc}"[:500])
        counts[_record(delivery, result)] += 1
    return counts


def _handle(delivery: OutboxDelivery) -> DeliveryResult | None:
    """Run the subscriber; None means there was nothing for it to do."""
    kind = delivery.subscriber.split(":", 1)[0]
    return HANDLERS[kind](delivery)


def _record(delivery: OutboxDelivery, result: DeliveryResult | None) -> str:
    now = timezone.now()
    values: dict[str, Any] = {"claimed_until": None, "payload": delivery.payload}
    if result is None:
        values.update(status=OutboxDelivery.Status.SKIPPED, delivered_at=now, last_error="")
        outcome = "skipped"
    elif result.ok:
        values.update(
            status=OutboxDelivery.Status.DONE,
            delivered_at=now,
            last_status_code=result.status_code,
            last_error="",
        )
        outcome = "done"
    else:
        give_up_at = delivery.created_at + dt.timedelta(hours=settings.OUTBOX_GIVE_UP_HOURS)
        delay = result.retry_after
        if delay is None:
            delay = backoff_delay(
                delivery.attempts,
                base_delay=settings.OUTBOX_RETRY_BASE_SECONDS,
                max_delay=settings.OUTBOX_RETRY_MAX_SECONDS,
            )
        next_at = now + dt.timedelta(seconds=delay)
        dead = result.permanent or next_at > give_up_at
        values.update(
            status=OutboxDelivery.Status.DEAD if dead else OutboxDelivery.Status.PENDING,
            next_attempt_at=next_at,
            last_status_code=result.status_code,
            last_error=result.error[:2000],
        )
        outcome = "dead" if dead else "retry"
    # Only this claim's row: if the lease ran out and another worker took it, it records.
    OutboxDelivery.objects.filter(pk=delivery.pk, status=OutboxDelivery.Status.RUNNING).update(
        **values
    )
    logger.info(
        "outbox.delivery delivery=%s subscriber=%s attempt=%s outcome=%s",
        delivery.pk,
        delivery.subscriber,
        delivery.attempts,
        outcome,
    )
    return outcome


def relay_run() -> dict[str, int]:
    """One pass of the relay (what the task and the beat run): fan out everything waiting,
    deliver what is due, and schedule a follow-up for a retry due soon."""
    processed = 0
    counts = {"done": 0, "retry": 0, "dead": 0, "skipped": 0}
    # Delivering can write transitions (routing assigns: lead.assigned); a few rounds hand
    # those on in the same pass, and the kick after their commit or the beat does the rest.
    for _ in range(3):
        while batch := fan_out():
            processed += batch
        for outcome, n in deliver_due().items():
            counts[outcome] += n
        if not LeadTransition.objects.filter(processed_at__isnull=True).exists():
            break
    soonest = (
        OutboxDelivery.objects.filter(status=OutboxDelivery.Status.PENDING)
        .exclude(webhook__paused=True)
        .order_by("next_attempt_at")
        .values_list("next_attempt_at", flat=True)
        .first()
    )
    if soonest is not None:
        wait = (soonest - timezone.now()).total_seconds()
        if wait < FOLLOW_UP_WITHIN_SECONDS:
            relay_kick(countdown=max(0.05, wait))
    return {"transitions": processed, **counts}


# ---------------------------------------------------------------------------------------------
# Subscribers


def lead_document(delivery: OutboxDelivery) -> dict[str, Any]:
    """The event document every subscriber gets (the webhook body), frozen on the delivery at
    its first attempt so retries send the same thing."""
    if delivery.payload:
        return delivery.payload
    transition = delivery.transition
    lead = transition.lead
    owner = lead.owner.get_username() if lead.owner_id else None
    delivery.payload = {
        "id": delivery.key,
        "type": EVENT_TYPE[transition.kind],
        "created": transition.occurred_at.isoformat(),
        "data": {
            "lead": {
                "id": lead.pk,
                "email": lead.email,
                "first_name": lead.first_name,
                "last_name": lead.last_name,
                "company": lead.company,
                "score": lead.score,
                "band": lead.band,
                "persona": lead.persona or None,
                "owner": owner,
                "lifecycle_stage": lead.lifecycle_stage,
                "qualified": lead.qualified,
            },
            "transition": {
                "from_band": transition.from_band,
                "to_band": transition.to_band,
                "score": transition.score,
                "rule_set_version": transition.rule_set_version,
                **transition.details,
            },
        },
    }
    return delivery.payload


def _routing(delivery: OutboxDelivery) -> DeliveryResult | None:
    made = route_leads([delivery.transition.lead_id])
    return DeliveryResult(True) if made else None


def _webhook(delivery: OutboxDelivery) -> DeliveryResult | None:
    if delivery.webhook is None:
        return None
    return webhook_post(delivery.webhook, lead_document(delivery))


def _alert(delivery: OutboxDelivery) -> DeliveryResult | None:
    return alert_deliver(delivery, lead_document(delivery))


def _nurture(delivery: OutboxDelivery) -> DeliveryResult | None:
    state = routing_current()
    return nurture_deliver(delivery, state.spec if state else None)


def _owner(delivery: OutboxDelivery) -> DeliveryResult | None:
    return owner_deliver(delivery, lead_document(delivery))


HANDLERS: dict[str, Callable[[OutboxDelivery], DeliveryResult | None]] = {
    "routing": _routing,
    "webhook": _webhook,
    "email": _alert,
    "slack": _alert,
    "nurture": _nurture,
    "owner": _owner,
}

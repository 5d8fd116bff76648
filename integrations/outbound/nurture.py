"""Nurture: CRM actions for a lead entering a band (the routing document's `nurture` object,
`scoring.engine.routing`): add to or remove from a HubSpot static list, add as a Salesforce
campaign member. Each action of a `lead.band_changed` transition is its own relay subscriber
(`nurture:<n>`, n its position in the band's list), so it is retried and dead-lettered on its
own. `owner:<vendor>` subscribers write an assignment back to the CRM record's owner
(ROUTING_CRM_OWNER_WRITEBACK). Calls go through the connectors (their token refresh,
rate-limit and error taxonomy); a connector's own retries are kept short here because the
relay's backoff owns the long ones."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings

from integrations.config import NotConfigured
from integrations.connectors.base import (
    ConnectorError,
    PermanentError,
    RateLimited,
    RetryPolicy,
)
from integrations.models import CrmOwner, OutboxDelivery
from integrations.outbound.webhooks import DeliveryResult
from scoring.engine.routing import RoutingSpec
from scoring.models import Identity, LeadTransition

logger = logging.getLogger(__name__)

# A couple of quick tries inside one delivery; the relay retries for hours after that.
_RETRY = RetryPolicy(attempts=2, base_delay=0.5, max_delay=5.0)
_VENDOR = {
    "hubspot_list_add": "hubspot",
    "hubspot_list_remove": "hubspot",
    "salesforce_campaign_add": "salesforce",
}


def nurture_subscribers(transition: LeadTransition, spec: RoutingSpec | None) -> list[str]:
    """`nurture:<n>` for each action of the band a lead entered."""
    if spec is None or transition.kind != LeadTransition.Kind.BAND_CHANGED:
        return []
    return [f"nurture:{n}" for n in range(len(spec.nurture_for(transition.to_band)))]


def _record_id(lead_id: int, vendor: str) -> str | None:
    """The lead's record id in `vendor`, or None when it has none there."""
    return (
        Identity.objects.filter(lead_id=lead_id, source=vendor)
        .order_by("pk")
        .values_list("external_id", flat=True)
        .first()
    )


def _with_connector(vendor: str, call: Callable[[Any], Any]) -> DeliveryResult:
    """Run `call(connector)` and translate the connector's error taxonomy for the relay."""
    from integrations.services import build_connector

    try:
        connector = build_connector(vendor, retry=_RETRY)
    except NotConfigured as exc:
        return DeliveryResult(False, error=f"{vendor} is not configured: {exc}"[:500])
    try:
        call(connector)
    except RateLimited as exc:
        return DeliveryResult(False, error=str(exc)[:500], retry_after=exc.retry_after)
    except PermanentError as exc:
        return DeliveryResult(False, status_code=exc.status, error=str(exc)[:500], permanent=True)
    except ConnectorError as exc:
        return DeliveryResult(False, status_code=exc.status, error=str(exc)[:500])
    finally:
        close = getattr(connector, "close", None)
        if callable(close):
            close()
    return DeliveryResult(True)


def nurture_deliver(delivery: OutboxDelivery, spec: RoutingSpec | None) -> DeliveryResult | None:
    """Run one nurture action; None when there is nothing to do (the action was removed from
    the document since, or the lead has no record in that CRM)."""
    transition = delivery.transition
    actions = spec.nurture_for(transition.to_band) if spec is not None else ()
    position = int(delivery.subscriber.split(":", 1)[1])
    if position >= len(actions):
        return None
    action = actions[position]
    vendor = _VENDOR[action.action]
    external_id = _record_id(transition.lead_id, vendor)
    if external_id is None:
        return None
    if vendor == "hubspot":
        add = action.action == "hubspot_list_add"
        result = _with_connector(
            vendor, lambda c: c.list_membership(action.target, [external_id], add=add)
        )
    else:
        result = _with_connector(
            vendor, lambda c: c.campaign_member_add(action.target, external_id)
        )
    if not result.ok:
        return result
    logger.info(
        "outbox.nurture lead=%s action=%s target=%s",
        transition.lead_id,
        action.action,
        action.target,
    )
    return DeliveryResult(True)


# ---------------------------------------------------------------------------------------------
# CRM owner write-back of assignments (ROUTING_CRM_OWNER_WRITEBACK)


def owner_subscribers(transition: LeadTransition) -> list[str]:
    """`owner:<vendor>` for each CRM that follows assignments."""
    if transition.kind != LeadTransition.Kind.ASSIGNED:
        return []
    return [f"owner:{vendor}" for vendor in settings.ROUTING_CRM_OWNER_WRITEBACK]


def owner_deliver(delivery: OutboxDelivery, document: dict) -> DeliveryResult | None:
    """Set the CRM record's owner to the assigned rep's CRM user (matched by email on sync,
    `CrmOwner`). None when the lead has no record in that CRM; a rep with no CRM user is a
    permanent failure, shown as a dead letter."""
    vendor = delivery.subscriber.split(":", 1)[1]
    transition = delivery.transition
    external_id = _record_id(transition.lead_id, vendor)
    if external_id is None:
        return None
    username = document["data"]["transition"].get("owner")
    owner_id = (
        CrmOwner.objects.filter(source=vendor, user__username=username)
        .values_list("external_id", flat=True)
        .first()
    )
    if owner_id is None:
        return DeliveryResult(
            False,
            error=f"{username} has no {vendor} user (matched by email on sync)",
            permanent=True,
        )
    return _with_connector(vendor, lambda c: c.owner_set(external_id, owner_id))

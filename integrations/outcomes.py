"""CRM outcomes and owners: what a sync learns about deals, and who owns a lead.

Outcomes (DESIGN §3): an opportunity or deal won makes its leads customers (``converted_at``
= when it closed, ``revenue`` = the won amounts); lost, and nothing else, makes them ``lost``
(``lost_at``: a closed non-conversion, never a conversion); open makes them opportunities.
A lead's outcome is recomputed from *all* of its stored deals whenever one of them, or the
lead itself, is synced, so a deal that is lost and later won (or whose amount changes) moves
its lead on the next incremental sync, and a lead re-synced from its CRM record does not lose
what its deals say:

- any deal won: ``customer``, ``converted_at`` = the earliest won close, ``revenue`` = the sum
  of the won amounts, ``lost_at`` cleared;
- else any deal open: ``opportunity``, ``converted_at``, ``lost_at`` and ``revenue`` cleared;
- else (all lost): ``lost``, ``lost_at`` = the latest close, ``converted_at`` and ``revenue``
  cleared.

``opportunity_at`` becomes the earliest deal creation when that is earlier than what is
stored. Leads without deals keep what their CRM record says.

Linking: an outcome names its leads through ``CrmOutcomeLink`` rows: ``@identity`` links
(HubSpot contacts associated with a deal) reach every lead with that identity; the other links
are ``related_ids`` keys tried in rank order (Salesforce: the lead whose
``ConvertedOpportunityId`` is the opportunity, else the lead converted into its contact, else
into its account), and the first that matches picks one lead (the latest converted). Links are
resolved when the outcome is synced and again when a lead they match is synced.

Owners: each sync stores the CRM's users and matches them to our users by email
(case-insensitive). A lead whose CRM record names an owner gets that user, or no owner when the
CRM owner matches none of our users (someone outside the app owns it); a record naming no
owner leaves the lead's owner as it is (routing may have assigned one). The integrations page
lists the unmatched owners (``integrations.selectors.owners_unmatched``).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Lower
from django.utils import timezone

from integrations.connectors.base import OutcomeRecord, OwnerRecord, related_id_attribute
from integrations.models import CrmOutcome, CrmOutcomeLink, CrmOwner
from scoring.models import Identity, Lead, LifecycleStage

logger = logging.getLogger(__name__)

#: The link key of an outcome's ``lead_external_ids`` (records of its source that are leads).
IDENTITY_LINK = "@identity"
_OUTCOME_FIELDS = ("status", "stage", "amount", "opened_at", "closed_at", "modified_at")
_LEAD_OUTCOME_FIELDS = (
    "lifecycle_stage",
    "opportunity_at",
    "converted_at",
    "lost_at",
    "revenue",
)


@dataclass
class OutcomeCounts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0


# --------------------------------------------------------------------------------------------
# Owners
# --------------------------------------------------------------------------------------------


def owners_store(records: Sequence[OwnerRecord]) -> int:
    """Upsert the CRM's users and (re)match each to our user with the same email,
    case-insensitively. Returns how many are matched."""
    if not records:
        return 0
    latest = {(r.source, r.external_id): (r.email or "").strip().lower() for r in records}
    emails = {email for email in latest.values() if email}
    users = (
        get_user_model()
        .objects.annotate(email_lower=Lower("email"))
        .filter(email_lower__in=emails, is_active=True)
        .order_by("id")
        .values_list("email_lower", "id")
    )
    user_by_email: dict[str, int] = {}
    for email, user_id in users:
        user_by_email.setdefault(email, user_id)  # two users with one email: the oldest
    rows = [
        CrmOwner(
            source=source, external_id=external_id, email=email, user_id=user_by_email.get(email)
        )
        for (source, external_id), email in latest.items()
    ]
    CrmOwner.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["source", "external_id"],
        update_fields=["email", "user", "updated_at"],
    )
    return sum(1 for row in rows if row.user_id is not None)


def leads_owner_follow(source: str, owner_by_lead: dict[int, str]) -> int:
    """Give each lead the user its CRM owner matches (none when it matches no user); returns
    how many leads changed owner. ``owner_by_lead``: lead id -> the CRM owner's id."""
    if not owner_by_lead:
        return 0
    matched = dict(
        CrmOwner.objects.filter(
            source=source, external_id__in=set(owner_by_lead.values())
        ).values_list("external_id", "user_id")
    )
    wanted = {lead_id: matched.get(owner) for lead_id, owner in owner_by_lead.items()}
    current = dict(Lead.objects.filter(pk__in=wanted).values_list("id", "owner_id"))
    now = timezone.now()
    changed = [
        Lead(pk=lead_id, owner_id=user_id, updated_at=now)
        for lead_id, user_id in wanted.items()
        if lead_id in current and current[lead_id] != user_id
    ]
    Lead.objects.bulk_update(changed, ["owner", "updated_at"], batch_size=1000)
    return len(changed)


# --------------------------------------------------------------------------------------------
# Outcomes
# --------------------------------------------------------------------------------------------


def _links_of(record: OutcomeRecord) -> list[tuple[int, str, str]]:
    links = [(0, IDENTITY_LINK, external_id) for external_id in record.lead_external_ids]
    links += [(rank, key, value) for rank, (key, value) in enumerate(record.links, 1) if value]
    return links


def outcomes_store(records: Sequence[OutcomeRecord]) -> tuple[OutcomeCounts, set[int]]:
    """Upsert outcomes with their links and resolve their leads. Returns the counts and the
    ids of every lead whose outcome may have changed (linked now or before)."""
    counts = OutcomeCounts()
    latest = {(r.source, r.external_id): r for r in records}
    if not latest:
        return counts, set()
    stored: dict[tuple[str, str], CrmOutcome] = {}
    for source in {source for source, _ in latest}:
        ids = [external_id for s, external_id in latest if s == source]
        for outcome in CrmOutcome.objects.filter(source=source, external_id__in=ids):
            stored[(source, outcome.external_id)] = outcome
    to_create: list[CrmOutcome] = []
    to_update: list[CrmOutcome] = []
    for key, record in latest.items():
        values = {
            "status": record.status,
            "stage": (record.stage or "")[:120],
            "amount": record.amount,
            "opened_at": record.opened_at,
            "closed_at": record.closed_at,
            "modified_at": record.modified_at,
        }
        outcome = stored.get(key)
        if outcome is None:
            to_create.append(CrmOutcome(source=key[0], external_id=key[1], **values))
            counts.created += 1
        elif any(getattr(outcome, name) != value for name, value in values.items()):
            for name, value in values.items():
                setattr(outcome, name, value)
            to_update.append(outcome)
            counts.updated += 1
        else:
            counts.unchanged += 1
    CrmOutcome.objects.bulk_create(to_create, batch_size=1000)
    CrmOutcome.objects.bulk_update(to_update, [*_OUTCOME_FIELDS, "updated_at"], batch_size=1000)
    outcome_ids = {(o.source, o.external_id): o.pk for o in [*stored.values(), *to_create]}
    CrmOutcomeLink.objects.filter(outcome_id__in=outcome_ids.values()).delete()
    CrmOutcomeLink.objects.bulk_create(
        [
            CrmOutcomeLink(outcome_id=outcome_ids[key], rank=rank, key=link_key, value=value)
            for key, record in latest.items()
            for rank, link_key, value in _links_of(record)
        ],
        batch_size=1000,
    )
    return counts, _outcomes_relink(set(outcome_ids.values()))


def outcomes_relink_for_leads(
    source: str, leads: Iterable[tuple[int, str, dict[str, str]]]
) -> set[int]:
    """Re-resolve the outcomes that a batch's leads may be linked to: ``leads`` holds
    (lead id, external id, related_ids) of the records just written. Returns the ids of the
    leads whose outcome may have changed."""
    wanted: dict[str, set[str]] = {}
    lead_ids: set[int] = set()
    for lead_id, external_id, related_ids in leads:
        lead_ids.add(lead_id)
        wanted.setdefault(IDENTITY_LINK, set()).add(external_id)
        for key, value in related_ids.items():
            wanted.setdefault(key, set()).add(value)
    outcome_ids: set[int] = set()
    for key, values in wanted.items():
        outcome_ids |= set(
            CrmOutcomeLink.objects.filter(
                outcome__source=source, key=key, value__in=sorted(values)
            ).values_list("outcome_id", flat=True)
        )
    affected = _outcomes_relink(outcome_ids) if outcome_ids else set()
    # A lead whose deals did not change still needs its outcome re-applied: its CRM record
    # (just written) may have overwritten its stage.
    with_outcomes = set(
        CrmOutcome.leads.through.objects.filter(lead_id__in=lead_ids).values_list(
            "lead_id", flat=True
        )
    )
    return affected | with_outcomes


def _outcomes_relink(outcome_ids: set[int]) -> set[int]:
    """Resolve the leads of these outcomes from their links; returns the old and new leads."""
    if not outcome_ids:
        return set()
    through = CrmOutcome.leads.through
    before = set(
        through.objects.filter(crmoutcome_id__in=outcome_ids).values_list("lead_id", flat=True)
    )
    sources = dict(CrmOutcome.objects.filter(pk__in=outcome_ids).values_list("id", "source"))
    links = list(
        CrmOutcomeLink.objects.filter(outcome_id__in=outcome_ids)
        .order_by("outcome_id", "rank", "id")
        .values_list("outcome_id", "rank", "key", "value")
    )
    # (source, key, value) -> candidate leads, one query per (source, key).
    wanted: dict[tuple[str, str], set[str]] = {}
    for outcome_id, _, key, value in links:
        wanted.setdefault((sources[outcome_id], key), set()).add(value)
    found: dict[tuple[str, str, str], list[tuple[int, dt.datetime | None]]] = {}
    for (source, key), values in wanted.items():
        if key == IDENTITY_LINK:
            rows = Identity.objects.filter(source=source, external_id__in=values).values_list(
                "external_id", "lead_id", "lead__opportunity_at"
            )
        else:
            attribute = related_id_attribute(source, key)
            # has_key matches the partial indexes of the Salesforce link keys (migration
            # lead_conversion_link_indexes), so this is no scan of every lead.
            rows = (
                Lead.objects.filter(
                    attributes__has_key=attribute,
                    **{f"attributes__{attribute}__in": sorted(values)},
                )
                .annotate(link_value=KeyTextTransform(attribute, "attributes"))
                .values_list("link_value", "id", "opportunity_at")
            )
        for value, lead_id, opened in rows:
            found.setdefault((source, key, value), []).append((lead_id, opened))
    resolved: dict[int, set[int]] = {outcome_id: set() for outcome_id in outcome_ids}
    picked_rank: dict[int, int] = {}
    for outcome_id, rank, key, value in links:
        candidates = found.get((sources[outcome_id], key, value), [])
        if not candidates:
            continue
        if key == IDENTITY_LINK:
            resolved[outcome_id].update(lead_id for lead_id, _ in candidates)
            continue
        if outcome_id in picked_rank:
            continue  # an earlier-ranked link already picked its lead
        picked_rank[outcome_id] = rank
        # Several leads converted into one account: the latest converted is the buyer.
        lead_id, _ = max(candidates, key=_latest_converted)
        resolved[outcome_id].add(lead_id)
    through.objects.filter(crmoutcome_id__in=outcome_ids).delete()
    through.objects.bulk_create(
        [
            through(crmoutcome_id=outcome_id, lead_id=lead_id)
            for outcome_id, lead_ids in resolved.items()
            for lead_id in lead_ids
        ],
        batch_size=1000,
    )
    return before | {lead_id for lead_ids in resolved.values() for lead_id in lead_ids}


_NEVER = dt.datetime.min.replace(tzinfo=dt.UTC)
#: (status, amount, opened_at, closed_at, modified_at) of one deal.
OutcomeFacts = tuple[str, float | None, dt.datetime | None, dt.datetime | None, dt.datetime | None]


def _latest_converted(candidate: tuple[int, dt.datetime | None]) -> tuple[dt.datetime, int]:
    lead_id, opportunity_at = candidate
    return (opportunity_at or _NEVER, lead_id)


def lead_outcome_values(
    outcomes: Sequence[OutcomeFacts],
    opportunity_at: dt.datetime | None,
) -> dict[str, Any]:
    """A lead's outcome columns from its deals ``(status, amount, opened_at, closed_at,
    modified_at)``; see the module docstring. ``opportunity_at`` is the stored one."""
    opened = [o[2] for o in outcomes if o[2] is not None]
    if opened and (opportunity_at is None or min(opened) < opportunity_at):
        opportunity_at = min(opened)
    values: dict[str, Any] = {
        "opportunity_at": opportunity_at,
        "converted_at": None,
        "lost_at": None,
        "revenue": None,
    }
    won = [o for o in outcomes if o[0] == CrmOutcome.Status.WON]
    if won:
        closes = [o[3] or o[4] for o in won if (o[3] or o[4]) is not None]
        amounts = [o[1] for o in won if o[1] is not None]
        values["lifecycle_stage"] = LifecycleStage.CUSTOMER
        values["converted_at"] = min(closes) if closes else None
        values["revenue"] = float(sum(amounts)) if amounts else None
    elif any(o[0] == CrmOutcome.Status.OPEN for o in outcomes):
        values["lifecycle_stage"] = LifecycleStage.OPPORTUNITY
    else:
        closes = [o[3] or o[4] for o in outcomes if (o[3] or o[4]) is not None]
        values["lifecycle_stage"] = LifecycleStage.LOST
        values["lost_at"] = max(closes) if closes else None
    return values


def leads_outcome_refresh(lead_ids: Iterable[int]) -> list[int]:
    """Recompute the outcome columns of these leads from all their stored deals (leads with
    none are left alone); returns the ids of the leads that changed."""
    ids = sorted(set(lead_ids))
    if not ids:
        return []
    by_lead: dict[int, list[tuple[Any, ...]]] = {}
    rows = CrmOutcome.leads.through.objects.filter(lead_id__in=ids).values_list(
        "lead_id",
        "crmoutcome__status",
        "crmoutcome__amount",
        "crmoutcome__opened_at",
        "crmoutcome__closed_at",
        "crmoutcome__modified_at",
    )
    for lead_id, *outcome in rows:
        by_lead.setdefault(lead_id, []).append(tuple(outcome))
    changed: list[Lead] = []
    now = timezone.now()
    for lead in Lead.objects.filter(pk__in=list(by_lead)).only("id", *_LEAD_OUTCOME_FIELDS):
        values = lead_outcome_values(by_lead[lead.pk], lead.opportunity_at)
        if any(getattr(lead, name) != value for name, value in values.items()):
            for name, value in values.items():
                setattr(lead, name, value)
            lead.updated_at = now
            changed.append(lead)
    Lead.objects.bulk_update(changed, [*_LEAD_OUTCOME_FIELDS, "updated_at"], batch_size=1000)
    changed_ids = [lead.pk for lead in changed]
    if changed_ids:
        from scoring.services.rescore import request_rescore

        request_rescore(changed_ids)
    return changed_ids

"""Writes of the Segment-compatible source: store a request's calls through the one ingest
path (`scoring.services.leads` upserts and merges, `scoring.services.events` events), and
the source keys that authenticate them.

Contract of :func:`calls_ingest` (one transaction per request):

1. Leads. identify and group calls upsert their lead by its identity (``segment`` + userId,
   else ``segment_anonymous`` + anonymousId) in one bulk upsert, in call order; every other
   call's lead is made if it does not exist yet (an anonymous visitor becomes a lead without
   an email). An identify whose email belongs to a known lead attaches the identity to it (the
   upsert's own rule), so the CRM's lead and the visitor meet.
2. Links. A call that carries both a userId and an anonymousId, and an alias (previousId ->
   userId), say two ids are one person: a new anonymousId is recorded as an identity of the
   user's lead; one that already has a lead of its own (the visitor's history) is merged into
   the user's lead with `lead_merge`, so its events move and a LeadMerge row audits it.
3. Events. track, page and screen calls are stored by `events_ingest` with source
   ``segment`` and the messageId as the idempotency key: a retried call counts as a
   duplicate and is stored once.

Rescoring follows each write as on the events API (after the commit, recorded in the
database first, so a broker outage loses nothing).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from integrations.models import SegmentGroup, SourceKey
from integrations.segment.calls import ANONYMOUS_SOURCE, SOURCE, SegmentCall
from scoring.models import Identity, Lead
from scoring.services.events import events_ingest
from scoring.services.leads import LeadUpsert, lead_merge, leads_bulk_upsert

logger = logging.getLogger(__name__)

Key = tuple[str, str]


@dataclass
class CallsResult:
    accepted: int = 0
    duplicate: int = 0
    # (index of the call in the request, reasons)
    rejected: list[tuple[int, list[str]]] = field(default_factory=list)
    merges: int = 0
    lead_ids: set[int] = field(default_factory=set)


def calls_ingest(calls: Sequence[SegmentCall]) -> CallsResult:
    """Store a request's valid calls; see the module docstring."""
    result = CallsResult()
    if not calls:
        return result
    with transaction.atomic():
        failed = _upsert_leads(calls, result)
        live = [c for c in calls if c.index not in failed]
        _link_identities(live, result)
        _store_groups([c for c in live if c.group is not None])
        events = [c for c in live if c.event is not None]
        if events:
            ingested = events_ingest([c.event for c in events])
            for position, reasons in ingested.rejected:
                failed.add(events[position].index)
                result.rejected.append((events[position].index, reasons))
            result.accepted += ingested.accepted
            result.duplicate += ingested.duplicate
            result.lead_ids.update(ingested.lead_ids)
        result.accepted += sum(1 for c in live if c.event is None)
    result.rejected.sort()
    logger.info(
        "segment.calls.ingested accepted=%s duplicate=%s rejected=%s merges=%s",
        result.accepted,
        result.duplicate,
        len(result.rejected),
        result.merges,
    )
    return result


def _upsert_leads(calls: Sequence[SegmentCall], result: CallsResult) -> set[int]:
    """Step 1: one bulk upsert. Returns the indexes of calls whose upsert was rejected."""
    # An anonymousId named with a userId in this request goes straight to the user's lead
    # instead of becoming an anonymous lead that step 2 would merge at once.
    anonymous_to_user: dict[str | None, str | None] = {}
    for c in calls:
        if c.user_id and (c.anonymous_id or c.type == "alias"):
            # The first user a device is tied to keeps it (see _link_identities).
            anonymous_to_user.setdefault(c.previous_id or c.anonymous_id, c.user_id)

    def key_of(call: SegmentCall) -> Key:
        if call.type == "alias":
            return (SOURCE, call.user_id or "")
        if not call.user_id and call.anonymous_id in anonymous_to_user:
            return (SOURCE, anonymous_to_user[call.anonymous_id])
        return call.lead_key

    # Calls with values first, in call order (the later identify wins), then one bare record
    # per lead that none of them names: a bare record placed before an identify with an email
    # would create an email-less lead that the identify's email could then not join.
    valued = [c for c in calls if c.lead_values or c.attributes]
    records = [
        LeadUpsert(
            source=key_of(c)[0],
            external_id=key_of(c)[1],
            values=c.lead_values,
            attributes=c.attributes,
        )
        for c in valued
    ]
    owners = [c.index for c in valued]
    named = {key_of(c) for c in valued}
    for call in calls:
        key = key_of(call)
        if key not in named:
            named.add(key)
            records.append(LeadUpsert(source=key[0], external_id=key[1]))
            owners.append(-1)
    upserted = leads_bulk_upsert(records)
    result.merges += upserted.merges
    failed: set[int] = set()
    for index, outcome in zip(owners, upserted.outcomes, strict=True):
        if outcome.status == "rejected":
            if index >= 0:
                failed.add(index)
                result.rejected.append((index, [f"traits: {outcome.reason}"]))
        elif outcome.lead_id is not None:
            result.lead_ids.add(outcome.lead_id)
    return failed


def _link_identities(calls: Sequence[SegmentCall], result: CallsResult) -> None:
    """Step 2: record or merge the ids that calls tie to a userId.

    An anonymousId is a device, and devices are shared: an anonymousId whose lead already
    belongs to another userId stays with that user (its history is not theirs to move), and
    two userIds are merged only by an explicit alias."""
    links: list[tuple[Key, Key, str]] = []
    for call in calls:
        user_key = (SOURCE, call.user_id or "")
        if call.type == "alias":
            links.append((user_key, (SOURCE, call.previous_id or ""), "segment alias"))
            links.append((user_key, (ANONYMOUS_SOURCE, call.previous_id or ""), "segment alias"))
        elif call.user_id and call.anonymous_id:
            links.append((user_key, (ANONYMOUS_SOURCE, call.anonymous_id), f"segment {call.type}"))
    if not links:
        return
    keys = {key for link in links for key in link[:2]}
    owner = _identity_owners(keys)
    new_identities: dict[Key, int] = {}
    for user_key, other_key, reason in links:
        user_lead = owner.get(user_key)
        other_lead = owner.get(other_key)
        if user_lead is None or other_lead == user_lead or user_key == other_key:
            continue
        if other_lead is None:
            if other_key[0] == ANONYMOUS_SOURCE:
                new_identities[other_key] = user_lead
                owner[other_key] = user_lead
            continue
        if reason != "segment alias" and _has_other_user(other_lead, user_key[1]):
            continue
        # The older lead survives, as in every merge (`leads_bulk_upsert`): the anonymous
        # visitor's history and the user's identities end up on one lead, audited.
        survivor, merged = sorted((user_lead, other_lead))
        lead_merge(
            Lead.objects.get(pk=survivor),
            Lead.objects.get(pk=merged),
            reason=f"{reason}: {other_key[0]} id tied to userId",
        )
        result.merges += 1
        result.lead_ids.discard(merged)
        result.lead_ids.add(survivor)
        for key, lead_id in owner.items():
            if lead_id == merged:
                owner[key] = survivor
        for key, lead_id in new_identities.items():
            if lead_id == merged:
                new_identities[key] = survivor
    Identity.objects.bulk_create(
        [
            Identity(source=s, external_id=e, lead_id=lead)
            for (s, e), lead in new_identities.items()
        ],
        ignore_conflicts=True,
    )


def _has_other_user(lead_id: int, user_id: str) -> bool:
    """Whether the lead is already another Segment user's (merges are rare: one query each)."""
    return (
        Identity.objects.filter(lead_id=lead_id, source=SOURCE)
        .exclude(external_id=user_id)
        .exists()
    )


def _identity_owners(keys: set[Key]) -> dict[Key, int]:
    by_source: dict[str, list[str]] = {}
    for source, external_id in keys:
        by_source.setdefault(source, []).append(external_id)
    condition = Q()
    for source, ids in by_source.items():
        condition |= Q(source=source, external_id__in=ids)
    return {
        (s, e): lead
        for s, e, lead in Identity.objects.filter(condition).values_list(
            "source", "external_id", "lead_id"
        )
    }


def _store_groups(calls: Sequence[SegmentCall]) -> None:
    """Keep each named group's latest traits (one row per groupId; few per request)."""
    latest: dict[str, Any] = {}
    for call in calls:
        latest[call.group.group_id] = call.group
    for group_id, group in sorted(latest.items()):
        row, _ = SegmentGroup.objects.get_or_create(group_id=group_id)
        row.traits = {**row.traits, **group.traits}
        for name in ("name", "employees", "industry", "website"):
            value = getattr(group, name)
            if value not in (None, ""):
                setattr(row, name, value)
        row.save()


# --------------------------------------------------------------------------------------------
# Source keys
# --------------------------------------------------------------------------------------------

KEY_PREFIX = "lsk_"


class SourceKeyInvalid(ValueError):
    """A source key cannot be made as asked (a bad or taken name)."""


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def source_key_create(name: str, *, user: AbstractBaseUser | None = None) -> tuple[SourceKey, str]:
    """A new source key -> (the stored row, the key to show once). Raises SourceKeyInvalid."""
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise SourceKeyInvalid("the name must be 1 to 100 characters")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    try:
        with transaction.atomic():
            row = SourceKey.objects.create(
                name=name,
                prefix=key[:12],
                digest=_digest(key),
                created_by=user if user is not None and user.is_authenticated else None,
            )
    except IntegrityError:
        raise SourceKeyInvalid(f"a source key named {name!r} exists") from None
    logger.info("segment.source_key.created id=%s prefix=%s", row.pk, row.prefix)
    return row, key


def source_key_revoke(key_id: int) -> bool:
    """Revoke a key; False when there is no such active key."""
    done = SourceKey.objects.filter(pk=key_id, revoked_at=None).update(revoked_at=timezone.now())
    if done:
        logger.info("segment.source_key.revoked id=%s", key_id)
    return bool(done)


def source_key_find(key: str) -> SourceKey | None:
    """The active source key with this value, if any."""
    if not key.startswith(KEY_PREFIX):
        return None
    return SourceKey.objects.filter(digest=_digest(key), revoked_at=None).first()


def source_key_record_use(
    key_id: int, *, accepted: int, duplicate: int, rejected: int, error: str = ""
) -> None:
    """Count one request on the key (one UPDATE, safe under concurrent requests)."""
    changes: dict[str, Any] = {
        "requests": F("requests") + 1,
        "accepted": F("accepted") + accepted,
        "duplicate": F("duplicate") + duplicate,
        "rejected": F("rejected") + rejected,
        "last_call_at": timezone.now(),
    }
    if error:
        changes["last_error"] = error[:500]
    SourceKey.objects.filter(pk=key_id).update(**changes)

"""Reads for the account list and page (web and API): which accounts a user may see, sorted
by score; an account's contacts, buying-group coverage and recent events."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.db.models import F, QuerySet
from django.utils import timezone

from scoring.models import Account, Event
from scoring.roles import can
from scoring.selectors.leads import visible_leads

# A contact is engaged when it has an event this recent; buying-group coverage counts the
# distinct personas among engaged contacts.
ENGAGED_DAYS = 90
ACCOUNT_PAGE_SIZE = 50
MAX_ACCOUNT_PAGE_SIZE = 500


def visible_accounts(user: Any) -> QuerySet[Account]:
    """Every account for roles that see every lead; otherwise the accounts of the user's own
    leads (a rep does not learn of accounts none of whose contacts they own)."""
    if can(user, "view_all_leads"):
        return Account.objects.all()
    if can(user, "view_leads"):
        return Account.objects.filter(contacts__owner=user).distinct()
    return Account.objects.none()


def account_list(
    user: Any, *, band: str | None = None, page: int = 1, size: int = ACCOUNT_PAGE_SIZE
) -> tuple[list[Account], bool]:
    """A page of the visible accounts by score (highest first, unscored last, then id); and
    whether there is a next page."""
    queryset = visible_accounts(user)
    if band:
        queryset = queryset.filter(band__iexact=band)
    size = max(1, min(size, MAX_ACCOUNT_PAGE_SIZE))
    ordered = queryset.order_by(F("score").desc(nulls_last=True), "-id")
    start = (max(page, 1) - 1) * size
    rows = list(ordered[start : start + size + 1])
    return rows[:size], len(rows) > size


@dataclass(frozen=True)
class AccountView:
    account: Account
    contacts: list[dict[str, Any]]
    personas_engaged: list[str]
    engaged_contacts: int
    recent_events: list[dict[str, Any]]


def account_view(account: Account, user: Any, *, now: dt.datetime | None = None) -> AccountView:
    """The account's contacts the user may see (by score), the distinct personas among the
    engaged ones (an event in the last ENGAGED_DAYS days) and the 20 latest events."""
    since = (now or timezone.now()) - dt.timedelta(days=ENGAGED_DAYS)
    contacts_qs = visible_leads(user).filter(account=account)
    contacts = list(
        contacts_qs.order_by(F("score").desc(nulls_last=True), "id").values(
            "id", "email", "first_name", "last_name", "title", "score", "band", "grade", "persona"
        )[:500]
    )
    engaged = set(
        Event.objects.filter(lead__in=contacts_qs, occurred_at__gte=since)
        .values_list("lead_id", flat=True)
        .distinct()
    )
    personas = sorted({c["persona"] for c in contacts if c["id"] in engaged and c["persona"]})
    for contact in contacts:
        contact["engaged"] = contact["id"] in engaged
    events = list(
        Event.objects.filter(lead__in=contacts_qs)
        .order_by("-occurred_at", "-id")
        .values("lead_id", "event_type", "occurred_at")[:20]
    )
    return AccountView(account, contacts, personas, len(engaged), events)

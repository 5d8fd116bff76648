"""Reads for the routing pages: a lead's assignments, the routing history, each rep's
workload (open qualified leads, capacity used today, SLA breaches)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from scoring.models import Lead, LeadAssignment, RoutingConfig
from scoring.selectors.leads import sla_deadline_passed_by, sla_running_assignments
from scoring.services.routing import open_loads, routing_current


def lead_assignments(lead: Lead) -> QuerySet[LeadAssignment]:
    """The lead's assignments, newest first (the open one, if any, is the current one)."""
    return lead.assignments.select_related("user").order_by("-assigned_at", "-pk")


def routing_history(limit: int = 50) -> QuerySet[RoutingConfig]:
    return RoutingConfig.objects.select_related("created_by").order_by("-version")[:limit]


@dataclass(frozen=True)
class RepWorkload:
    username: str
    open_qualified: int
    assigned_today: int
    capacity: int | None
    sla_breaches_30d: int
    overdue_now: int


def rep_workload(*, now: dt.datetime | None = None, only: Any = None) -> list[RepWorkload]:
    """One row per rep named in the routing (or owning open qualified leads), or only `only`
    (a user) when given: for a rep's own view."""
    now = now or timezone.now()
    state = routing_current()
    users = get_user_model().objects.filter(is_active=True)
    if only is not None:
        users = users.filter(pk=only.pk)
    else:
        named = Q(username__in=state.spec.usernames) if state is not None else Q(pk__in=[])
        users = users.filter(named | Q(pk__in=LeadAssignment.objects.values("user_id").distinct()))
    # Capacity counts the site's day (TIME_ZONE), not the viewer's (the routing's day).
    day_start = timezone.localtime(now, timezone.get_default_timezone()).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    names = list(users.values_list("username", flat=True))
    counts = dict(
        LeadAssignment.objects.filter(user__in=users, assigned_at__gte=day_start)
        .values_list("user__username")
        .annotate(n=Count("pk"))
    )
    breaches = dict(
        LeadAssignment.objects.filter(
            user__in=users, sla_breached_at__gte=now - dt.timedelta(days=30)
        )
        .values_list("user__username")
        .annotate(n=Count("pk"))
    )
    overdue = dict(
        sla_running_assignments()
        .filter(user__in=users, assigned_at__lte=sla_deadline_passed_by(now))
        .values_list("user__username")
        .annotate(n=Count("pk"))
    )
    loads = dict(open_loads(users))
    capacity: dict[str, int] = {}
    if state is not None:
        for rule in (*state.spec.rules, *([state.spec.fallback] if state.spec.fallback else [])):
            if rule.daily_capacity is not None:
                for name in rule.team:
                    capacity[name] = min(
                        capacity.get(name, rule.daily_capacity), rule.daily_capacity
                    )
    return [
        RepWorkload(
            username=name,
            open_qualified=loads.get(name, 0),
            assigned_today=counts.get(name, 0),
            capacity=capacity.get(name),
            sla_breaches_30d=breaches.get(name, 0),
            overdue_now=overdue.get(name, 0),
        )
        for name in sorted(names)
    ]

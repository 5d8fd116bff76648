"""Routing: who gets a lead that qualifies, and what happens when they do not act in time.

- `routing_import` validates a routing document (`scoring.engine.routing`), checks that every
  username names an active user, and stores it as the next version (nothing is written when
  anything is wrong; every problem comes back with its JSON path).
- `route_leads` assigns qualified leads that have no owner and no open assignment: the first
  matching rule's team (the fallback team when no rule matches or the team is full for the
  day), by `round_robin` (the rep after the rule's last assignee) or `least_loaded` (fewest
  open qualified leads). Each assignment is recorded (rule, team, method, time), sets the
  lead's owner, and writes a `lead.assigned` outbox transition.
- `sla_sweep` finds open assignments older than ROUTING_SLA_HOURS whose rep has not acted
  (no feedback, no accept, no stage change since the assignment), writes a
  `lead.sla_breached` transition, and reassigns to the next rep of the team or escalates to
  the rule's manager, as the rule says.

Routing runs under one advisory lock, so two workers never hand out the same turn."""

from __future__ import annotations

import datetime as dt
import logging
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Count, Exists, OuterRef
from django.utils import timezone

from leadscoring.db import advisory_xact_lock
from scoring.engine import RuleSetInvalid, ValidationIssue
from scoring.engine.routing import RoutingRule, RoutingSpec, match_rules, parse_routing
from scoring.jobs import UNREACHABLE_KEEP, dispatch
from scoring.models import (
    Lead,
    LeadAssignment,
    LeadTransition,
    RoutingConfig,
)
from scoring.rule_inputs import LEAD_FIELDS
from scoring.selectors.leads import (
    CLOSED_STAGES,
    sla_deadline_passed_by,
    sla_running_assignments,
)
from scoring.services.rescore import RELAY_TASK

logger = logging.getLogger(__name__)

_ROUTING_LOCK = zlib.crc32(b"scoring.routing")
# What a routing condition may name: the columns attribute rules read, plus the scoring
# outcome ("band", "persona", "score").
_LEAD_FIELDS = (*LEAD_FIELDS, "persona", "band", "score")


class RoutingInvalid(ValueError):
    """The routing document has problems; `errors` lists each as `ValidationIssue(path,
    message)`."""

    def __init__(self, errors: Sequence[ValidationIssue]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(f"{e.path}: {e.message}" for e in self.errors))


@dataclass(frozen=True)
class RoutingState:
    spec: RoutingSpec
    version: int


# ---------------------------------------------------------------------------------------------
# The document


def routing_validate(document: object) -> RoutingSpec:
    """The parsed document, or `RoutingInvalid` with every problem (shape and unknown or
    inactive usernames)."""
    try:
        spec = parse_routing(document)
    except RuleSetInvalid as exc:
        raise RoutingInvalid(exc.errors) from None
    active = set(
        get_user_model()
        .objects.filter(username__in=spec.usernames, is_active=True)
        .values_list("username", flat=True)
    )
    errors = []
    rules = [(f"$.rules[{i}]", rule) for i, rule in enumerate(spec.rules)]
    if spec.fallback is not None:
        rules.append(("$.fallback", spec.fallback))
    for path, rule in rules:
        for k, username in enumerate(rule.team):
            if username not in active:
                errors.append(ValidationIssue(f"{path}.team[{k}]", f"no active user {username!r}"))
        if rule.manager and rule.manager not in active:
            errors.append(ValidationIssue(f"{path}.manager", f"no active user {rule.manager!r}"))
    if errors:
        raise RoutingInvalid(errors)
    return spec


def routing_import(document: object, *, user: Any = None, source: str = "import") -> RoutingConfig:
    """Validate and store `document` as the next routing version (the one in force)."""
    routing_validate(document)
    with transaction.atomic():
        advisory_xact_lock(_ROUTING_LOCK)
        latest = RoutingConfig.objects.order_by("-version").values_list("version", flat=True)
        version = (latest.first() or 0) + 1
        return RoutingConfig.objects.create(
            version=version,
            document=document,
            created_by=user if user is not None and user.is_authenticated else None,
            source=source,
        )


def routing_current() -> RoutingState | None:
    """The routing in force, or None before the first import. A stored version is valid by
    construction; parsing again keeps one code path for its meaning."""
    config = RoutingConfig.objects.order_by("-version").first()
    if config is None:
        return None
    return RoutingState(parse_routing(config.document), config.version)


# ---------------------------------------------------------------------------------------------
# Assigning


def route_leads(lead_ids: Iterable[int], *, now: dt.datetime | None = None) -> list[LeadAssignment]:
    """Assign each of `lead_ids` that is qualified, open, without an owner and without an
    open assignment; returns the assignments made. Safe to call twice."""
    now = now or timezone.now()
    ids = sorted(set(lead_ids))
    if not ids:
        return []
    with transaction.atomic():
        advisory_xact_lock(_ROUTING_LOCK)
        state = routing_current()
        if state is None:
            return []
        leads = list(
            Lead.objects.filter(pk__in=ids, qualified=True, owner__isnull=True)
            .exclude(lifecycle_stage__in=CLOSED_STAGES)
            .exclude(Exists(LeadAssignment.objects.filter(lead=OuterRef("pk"), ended_at=None)))
            .order_by("pk")
        )
        if not leads:
            return []
        columns: dict[str, list[Any]] = {f: [getattr(x, f) for x in leads] for f in _LEAD_FIELDS}
        for key in {k for x in leads for k in (x.attributes or {})}:
            columns[f"attributes.{key}"] = [(x.attributes or {}).get(key) for x in leads]
        chosen = match_rules(state.spec, columns, len(leads))
        picker = _Picker(state.spec, now)
        made = []
        for lead, rule_name in zip(leads, chosen, strict=True):
            rule = state.spec.rule_named(rule_name) if rule_name else None
            pick = picker.pick(rule)
            if pick is None:
                logger.warning("routing.unassigned lead=%s rule=%s", lead.pk, rule_name)
                continue
            rule, user = pick
            made.append(
                _assign(lead, user, rule, state.version, now, LeadAssignment.Reason.QUALIFIED)
            )
        return made


def _assign(
    lead: Lead,
    user: Any,
    rule: RoutingRule,
    version: int | None,
    now: dt.datetime,
    reason: str,
) -> LeadAssignment:
    assignment = LeadAssignment.objects.create(
        lead=lead,
        user=user,
        rule=rule.name,
        team=list(rule.team),
        method=rule.method if reason != LeadAssignment.Reason.SLA_ESCALATE else "escalate",
        reason=reason,
        routing_version=version,
        assigned_at=now,
    )
    Lead.objects.filter(pk=lead.pk).update(owner=user)
    # The relay hands the new transition on (alerts, webhooks) once this commits.
    dispatch(RELAY_TASK, unreachable=UNREACHABLE_KEEP)
    LeadTransition.objects.create(
        lead=lead,
        kind=LeadTransition.Kind.ASSIGNED,
        from_band=lead.band,
        to_band=lead.band,
        score=lead.score or 0,
        rule_set_version=lead.rule_set_version,
        occurred_at=now,
        details=assignment_details(assignment, user.get_username()),
    )
    logger.info("routing.assigned lead=%s user=%s rule=%s", lead.pk, user.pk, rule.name)
    return assignment


def assignment_details(assignment: LeadAssignment, username: str) -> dict[str, Any]:
    """What a `lead.assigned` transition carries (and the webhook body's `assignment`)."""
    return {
        "assignment": assignment.pk,
        "owner": username,
        "rule": assignment.rule,
        "team": assignment.team,
        "method": assignment.method,
        "reason": assignment.reason,
        "assigned_at": assignment.assigned_at.isoformat(),
    }


class _Picker:
    """Chooses reps, keeping today's counts and open loads in memory for one routing pass (read
    once, set-based, then updated as it assigns)."""

    def __init__(self, spec: RoutingSpec, now: dt.datetime) -> None:
        self.spec = spec
        users = get_user_model().objects.filter(username__in=spec.usernames, is_active=True)
        self.users = {u.get_username(): u for u in users}
        # Capacity counts the site's day (TIME_ZONE), whichever user's request asks.
        day_start = timezone.localtime(now, timezone.get_default_timezone()).replace(
            hour=0, minute=0, second=0, microsecond=0
        )
        self.today = Counter(
            dict(
                LeadAssignment.objects.filter(assigned_at__gte=day_start, user__in=users)
                .values_list("user__username")
                .annotate(n=Count("pk"))
            )
        )
        self.load = Counter(dict(open_loads(users)))
        self.last: dict[str, str | None] = {}

    def pick(
        self, rule: RoutingRule | None, *, after: str | None = None
    ) -> tuple[RoutingRule, Any] | None:
        """(rule, user) for the next lead of `rule`; the fallback when the rule's team is
        full for the day; None when nobody can take it."""
        for candidate in (rule, self.spec.fallback):
            if candidate is None:
                continue
            user = self.pick_from(candidate, after if candidate is rule else None)
            if user is not None:
                return candidate, user
        return None

    def pick_from(self, rule: RoutingRule, after: str | None) -> Any:
        """The next user of `rule`'s team with capacity left, never `after`; None if none."""
        team = [name for name in rule.team if name in self.users and name != after]
        if rule.daily_capacity is not None:
            team = [name for name in team if self.today[name] < rule.daily_capacity]
        if not team:
            return None
        if rule.method == "least_loaded":
            # Fewest open qualified leads; ties go to the earlier name in the team.
            name = min(team, key=lambda n: (self.load[n], rule.team.index(n)))
        else:
            name = self._next_in_turn(rule, team, after)
        self.today[name] += 1
        self.load[name] += 1
        self.last[rule.name] = name
        return self.users[name]

    def _next_in_turn(self, rule: RoutingRule, team: list[str], after: str | None) -> str:
        previous = after
        if previous is None:
            if rule.name not in self.last:
                self.last[rule.name] = (
                    LeadAssignment.objects.filter(rule=rule.name)
                    .order_by("-assigned_at", "-pk")
                    .values_list("user__username", flat=True)
                    .first()
                )
            previous = self.last[rule.name]
        order = list(rule.team)
        start = order.index(previous) + 1 if previous in order else 0
        for offset in range(len(order)):
            name = order[(start + offset) % len(order)]
            if name in team:
                return name
        return team[0]


def open_loads(users: Any) -> list[tuple[str, int]]:
    """(username, open qualified leads owned) for `users` (a queryset of users)."""
    return list(
        Lead.objects.filter(owner__in=users, qualified=True)
        .exclude(lifecycle_stage__in=CLOSED_STAGES)
        .values_list("owner__username")
        .annotate(n=Count("pk"))
    )


# ---------------------------------------------------------------------------------------------
# Acting on an assignment, and the SLA


def assignment_accept(lead: Lead, user: Any, *, now: dt.datetime | None = None) -> bool:
    """The assigned rep accepts the lead (stops the SLA clock); False when `user` does not hold
    its open assignment."""
    return bool(
        LeadAssignment.objects.filter(lead=lead, user=user, ended_at=None, accepted_at=None).update(
            accepted_at=now or timezone.now()
        )
    )


def sla_sweep(*, now: dt.datetime | None = None) -> int:
    """Breach, then reassign or escalate, every open assignment past ROUTING_SLA_HOURS whose
    rep has not acted; returns how many breached."""
    now = now or timezone.now()
    with transaction.atomic():
        advisory_xact_lock(_ROUTING_LOCK)
        state = routing_current()
        # Breached once only: one left with its rep (nobody else to take it) stays put
        # (sla_running_assignments leaves breached ones out).
        breached = list(
            sla_running_assignments()
            .select_related("lead", "user")
            .filter(assigned_at__lte=sla_deadline_passed_by(now))
            .order_by("pk")
        )
        if not breached:
            return 0
        picker = _Picker(state.spec, now) if state is not None else None
        for assignment in breached:
            _breach(assignment, state, picker, now)
        return len(breached)


def _breach(
    assignment: LeadAssignment, state: RoutingState | None, picker: _Picker | None, now: dt.datetime
) -> None:
    lead = assignment.lead
    LeadAssignment.objects.filter(pk=assignment.pk).update(sla_breached_at=now)
    LeadTransition.objects.create(
        lead=lead,
        kind=LeadTransition.Kind.SLA_BREACHED,
        from_band=lead.band,
        to_band=lead.band,
        score=lead.score or 0,
        rule_set_version=lead.rule_set_version,
        occurred_at=now,
        details={
            **assignment_details(assignment, assignment.user.get_username()),
            "sla_hours": settings.ROUTING_SLA_HOURS,
        },
    )
    rule = state.spec.rule_named(assignment.rule) if state is not None else None
    target = None
    if rule is not None and picker is not None:
        if rule.on_sla_breach == "escalate" and rule.manager in picker.users:
            target, reason = (rule, picker.users[rule.manager]), LeadAssignment.Reason.SLA_ESCALATE
        else:
            reason = LeadAssignment.Reason.SLA_REASSIGN
            user = picker.pick_from(rule, assignment.user.get_username())
            target = (rule, user) if user is not None else None
    if target is None:
        # Nobody else to take it: the breach is recorded and the rep keeps the lead.
        logger.warning("routing.sla.no_one lead=%s assignment=%s", lead.pk, assignment.pk)
        return
    LeadAssignment.objects.filter(pk=assignment.pk).update(ended_at=now)
    lead.owner = None
    _assign(lead, target[1], target[0], state.version if state else None, now, reason)

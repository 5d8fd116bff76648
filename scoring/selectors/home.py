"""What the home page shows each role."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Q

from scoring.models import Lead, RescoreRun, RuleSet
from scoring.roles import MANAGER, MARKETING_OPS, SALES, can
from scoring.selectors.leads import (
    lead_list,
    lead_list_page,
    lead_list_query,
    queue_counts,
    visible_leads,
)
from scoring.selectors.rules import live_rule_set


def home_summary(user: Any, role: str | None) -> dict[str, Any]:
    """What the home page shows, fitted to the user's main role."""
    summary: dict[str, Any] = {}
    leads = visible_leads(user)
    if role == SALES:
        # The head of the rep's work queue (open leads, the untouched new MQLs first), as on
        # /leads/, and the same counts.
        query, _ = lead_list_query({}, work_queue=True)
        summary["top_leads"] = lead_list_page(
            lead_list(leads, query).exclude(score__isnull=True),
            size=10,
            fields=("id", "email", "first_name", "last_name", "company", "score", "band"),
            first=query.first,
        ).rows
        summary["lead_count"] = leads.count()
        summary["counts"] = queue_counts(leads)
    if role in (MARKETING_OPS, MANAGER) or can(user, "view_rules"):
        live = live_rule_set()
        summary["live_rule_set"] = live
        summary["drafts"] = RuleSet.objects.filter(status=RuleSet.Status.DRAFT).count()
        summary["last_run"] = RescoreRun.objects.order_by("-id").first()
    if role in (MANAGER, MARKETING_OPS) or can(user, "view_kpis"):
        totals = Lead.objects.aggregate(
            leads=Count("id"),
            qualified=Count("id", filter=Q(mql_at__isnull=False)),
            customers=Count("id", filter=Q(converted_at__isnull=False)),
        )
        summary["totals"] = totals
    return summary

"""Reads that return plain data to views, the API and charts."""

from __future__ import annotations

import json
from typing import Any

from django.db.models import Count, Q

from scoring.models import Lead, RescoreRun, RuleSet
from scoring.roles import MANAGER, MARKETING_OPS, SALES, can


def visible_leads(user: Any):
    """The leads a user may see: all of them for roles with `view_all_leads`, otherwise only
    the leads the user owns. Callers that need 404 for another rep's lead rely on this."""
    queryset = Lead.objects.all()
    if can(user, "view_all_leads"):
        return queryset
    if can(user, "view_leads"):
        return queryset.filter(owner=user)
    return queryset.none()


def live_rule_set() -> RuleSet | None:
    return RuleSet.objects.filter(status=RuleSet.Status.PUBLISHED).first()


def home_summary(user: Any, role: str | None) -> dict[str, Any]:
    """What the home page shows, fitted to the user's main role."""
    summary: dict[str, Any] = {}
    leads = visible_leads(user)
    if role == SALES:
        summary["top_leads"] = list(
            leads.exclude(score__isnull=True)
            .order_by("-score", "-id")
            .values("id", "email", "first_name", "last_name", "company", "score", "band")[:10]
        )
        summary["lead_count"] = leads.count()
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


def score_export_rows(batch_size: int = 5000):
    """Rows of the score export, streamed in id order: email, external_id (the lead's first
    identity, by source then id), persona, score, band, rule-set version, breakdown JSON.
    Text cells are escaped against spreadsheet formula injection."""
    from integrations.csv_safety import safe_cell
    from scoring.models import Identity

    last_id = 0
    while True:
        batch = list(
            Lead.objects.filter(id__gt=last_id)
            .order_by("id")
            .values_list(
                "id", "email", "persona", "score", "band", "rule_set_version", "breakdown"
            )[:batch_size]
        )
        if not batch:
            return
        ids = [row[0] for row in batch]
        external: dict[int, str] = {}
        for lead_id, external_id in (
            Identity.objects.filter(lead_id__in=ids)
            .order_by("lead_id", "source", "id")
            .values_list("lead_id", "external_id")
        ):
            external.setdefault(lead_id, external_id)
        for lead_id, email, persona, score, band, version, breakdown in batch:
            yield [
                safe_cell(email or ""),
                safe_cell(external.get(lead_id, "")),
                safe_cell(persona or ""),
                "" if score is None else score,
                safe_cell(band or ""),
                "" if version is None else version,
                json.dumps(breakdown, separators=(",", ":")),
            ]
        last_id = ids[-1]

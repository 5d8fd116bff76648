"""The lead queue, its CSV export, and the lead page."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.db.models import Exists, OuterRef
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.views.decorators.http import require_GET

from scoring.charts.lead import score_history_figure
from scoring.csv_safety import csv_lines
from scoring.models import Feedback, Lead, RuleSet
from scoring.roles import can
from scoring.selectors.experiments import lead_experiments
from scoring.selectors.lead_page import (
    breakdown_rows,
    grade_axes,
    identities_by_source,
    lead_events_page,
    lead_merges,
    lifecycle_timeline,
    score_history_points,
    score_history_rows,
    verdicts_by_lead,
)
from scoring.selectors.leads import (
    STAGE_PRESETS,
    lead_after,
    lead_list,
    lead_list_choices,
    lead_list_csv_rows,
    lead_list_page,
    lead_list_query,
    lead_sort_choices,
    queue_counts,
    visible_leads,
)
from scoring.selectors.routing import lead_assignments
from scoring.selectors.rules import live_rule_set
from scoring.views.access import require
from scoring.views.feedback import feedback_panel_context, is_htmx

# The filters the page has a picker for; any other filter in the query (the feedback review's
# links, the API's names) rides along as a hidden field so that refining the filter keeps it.
_PICKERS = (
    "q",
    "band",
    "grade",
    "persona",
    "stage",
    "source",
    "owner",
    "created_from",
    "created_to",
    "ordering",
)


def _selected_stages(query) -> set[str]:
    """The stages the multi-select shows selected: the asked-for ones, or the default's."""
    value = query.filterset.form.cleaned_data.get("stage") if query.filterset.is_valid() else None
    return set(value or ())


def _preset(selected: set[str]) -> str:
    """Which preset the selection equals ("" when none does)."""
    for name, stages in STAGE_PRESETS.items():
        if selected == set(stages):
            return name
    return ""


@require("view_leads")
@require_GET
def lead_queue(request: HttpRequest) -> HttpResponse:
    """The leads the user may see, filtered and sorted by score, one keyset page at a time.
    Parameters with a problem are reported and ignored; the rest still apply."""
    query, errors = lead_list_query(request.GET, lenient=True, work_queue=True)
    visible = visible_leads(request.user)
    page = lead_list_page(
        lead_list(visible, query),
        query.after,
        query.size,
        descending=query.descending,
        first=query.first,
    )
    sees_all = can(request.user, "view_all_leads")
    can_feedback = can(request.user, "give_feedback")
    mine = verdicts_by_lead(request.user, [r["id"] for r in page.rows]) if can_feedback else {}
    for row in page.rows:
        row["mine"] = mine.get(row["id"])
    # Links keep the filters, the sort and the size, never the cursor.
    params = {k: v for k, v in query.params.items() if k not in ("cursor", "after")}
    filters = query.filter_params
    query_string = urlencode(params)
    filter_string = urlencode(filters)
    selected_stages = _selected_stages(query)
    hidden = [
        (name, value)
        for name, value in params.items()
        if name not in _PICKERS and name not in ("cursor", "after")
    ]
    ordering = params.get("ordering", "queue")
    sort_choices = lead_sort_choices(live_rule_set())
    if ordering not in dict(sort_choices):  # an API-style order given in the URL stays shown
        sort_choices.append((ordering, ordering))
    without_stage = urlencode({k: v for k, v in filters.items() if k not in ("stage", "open")})
    context = {
        "filters": filters,
        "filters_active": query.active,
        "selected_stages": selected_stages,
        "stage_preset": _preset(selected_stages),
        "stage_preset_urls": {
            name: "?" + "&".join(p for p in (without_stage, f"stage={name}") if p)
            for name in STAGE_PRESETS
        },
        "default_open": query.default_open,
        # A rep's to-do counts; never for a whole company's leads (two counts at 1M leads).
        "counts": None if sees_all else queue_counts(visible),
        "sla_due_soon_hours": f"{settings.ROUTING_SLA_DUE_SOON_HOURS:g}",
        "lead_suffix": f"?{filter_string}" if filter_string else "",
        "filter_errors": errors,
        "page": page,
        "choices": lead_list_choices(),
        "sort_choices": sort_choices,
        "ordering": ordering,
        "sort_label": dict(sort_choices)[ordering],
        "sees_all": sees_all,
        "can_give_feedback": can_feedback,
        "reasons": Feedback.Reason.choices,
        "reason_labels": dict(Feedback.Reason.choices),
        "export_url": "/leads/export.csv" + (f"?{query_string}" if query_string else ""),
        "next_url": "?" + urlencode({**params, "after": page.next_cursor})
        if page.has_more
        else None,
        "first_url": "?" + query_string,
        "hidden_filters": hidden,
        "feedback_filter_text": _feedback_filter_text(filters),
    }
    return render(request, "leads/queue.html", context)


_REVIEW_FILTERS = ("feedback", "reason", "feedback_band", "flagged_from", "flagged_to", "rule")


def _feedback_filter_text(params: dict[str, str]) -> str:
    """A sentence saying which feedback filters apply, or "" when none do."""
    if not any(name in params for name in _REVIEW_FILTERS):
        return ""
    parts = ["Showing leads"]
    if "feedback" in params:
        parts.append(f"flagged {params['feedback']}")
    else:
        parts.append("with feedback")
    if "reason" in params:
        parts.append(f"for “{dict(Feedback.Reason.choices)[params['reason']]}”")
    if "feedback_band" in params:
        parts.append(f"while in band {params['feedback_band']}")
    if "flagged_from" in params:
        parts.append(f"from {params['flagged_from']}")
    if "flagged_to" in params:
        parts.append(f"to {params['flagged_to']}")
    if "rule" in params:
        parts.append(f"whose breakdown includes “{params['rule']}”")
    return " ".join(parts) + "."


@require("view_leads")
@require_GET
def lead_export(request: HttpRequest) -> HttpResponse:
    """Every lead of the current filter as CSV, in the page's order, streamed a keyset page at
    a time; cells are escaped against formula injection. Parameters with a problem are left
    out, as on the page; the cursor and page size are ignored (the export is the whole list).
    The page's default applies too: open leads only unless a stage is asked for."""
    query, _ = lead_list_query(request.GET, lenient=True, work_queue=True)
    leads = lead_list(visible_leads(request.user), query)
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
    response = StreamingHttpResponse(
        csv_lines(lead_list_csv_rows(leads, descending=query.descending, first=query.first)),
        content_type="text/csv",
    )
    response["Content-Disposition"] = f'attachment; filename="leads-{stamp}.csv"'
    return response


@require("view_leads")
@require_GET
def lead_detail(request: HttpRequest, lead_id: int) -> HttpResponse:
    """One lead the user may see (404 otherwise): why it scored what it did, its events,
    score history, lifecycle, identities, merges and feedback."""
    lead = get_object_or_404(
        visible_leads(request.user).select_related("owner", "probability_row"), pk=lead_id
    )
    events = lead_events_page(lead, request.GET.get("events_page"))
    if is_htmx(request) and request.headers.get("HX-Target") == "timeline":
        return render(request, "leads/detail.html#timeline", {"lead": lead, "events": events})
    breakdown, total = breakdown_rows(lead.breakdown)
    context = {
        "lead": lead,
        "breakdown": breakdown,
        "breakdown_total": total,
        "axes": grade_axes(lead),
        "rounding_note": _rounding_note(lead, total, bool(breakdown)),
        "events": events,
        "history_figure": score_history_figure(score_history_points(lead)),
        "history_rows": score_history_rows(lead),
        "stages": lifecycle_timeline(lead),
        "identities": identities_by_source(lead),
        "merges": lead_merges(lead),
        "assignments": lead_assignments(lead),
        "experiments": lead_experiments(lead.pk),
        **_next_lead_context(request, lead),
        **feedback_panel_context(request, lead),
    }
    return render(request, "leads/detail.html", context)


def _next_lead_context(request: HttpRequest, lead: Lead) -> dict[str, Any]:
    """The "next lead" link: the lead after this one in the queue the rep came from (its
    filters ride along in the lead page's query string; none means the default queue) that
    the user has not flagged yet."""
    query, _ = lead_list_query(request.GET, lenient=True, work_queue=True)
    queue = lead_list(visible_leads(request.user), query)
    # Leads this user has already flagged are done: "next" skips them (flagging the lead
    # shown moves it out of the new MQLs, and it would otherwise come round again).
    mine = Feedback.objects.filter(lead=OuterRef("pk"), author=request.user)
    following = lead_after(queue.exclude(Exists(mine)), lead, first=query.first)
    suffix = urlencode(query.filter_params)
    return {
        "next_lead": following,
        "queue_suffix": f"?{suffix}" if suffix else "",
    }


def _rounding_note(lead: Lead, total: float, has_entries: bool) -> str:
    """How the sum of the contributions became the score, for the rep checking it: rounded
    half away from zero, then clamped to the scoring rule set's [floor, ceiling]."""
    score = lead.score
    if score is None:
        return "Not scored yet."
    if not has_entries:
        return f"No rule contributed; the score is {score}."
    rounded = int(total + 0.5) if total >= 0 else -int(-total + 0.5)
    if rounded == score:
        return f"Sum {total:g}, rounded to the score {score}."
    bounds = (
        RuleSet.objects.filter(version=lead.rule_set_version).values("floor", "ceiling").first()
        if lead.rule_set_version is not None
        else None
    )
    if bounds and min(max(rounded, bounds["floor"]), bounds["ceiling"]) == score:
        return (
            f"Sum {total:g}, rounded to {rounded} and kept within the rule set's range "
            f"[{bounds['floor']:g}, {bounds['ceiling']:g}]: {score}."
        )
    return (
        f"Sum {total:g}: the stored score {score} does not follow from this breakdown; "
        "the lead may be waiting for a rescore."
    )

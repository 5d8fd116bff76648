"""Feedback pages: the good/bad verdict form (an htmx fragment on the lead page and in the
queue) and the feedback review for marketing ops and managers."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from leadscoring.middleware import site_time_zone
from scoring.models import Feedback, Lead
from scoring.roles import can
from scoring.selectors.feedback import feedback_review
from scoring.selectors.lead_page import lead_feedback
from scoring.selectors.leads import visible_leads
from scoring.services.feedback import NOTE_MAX_CHARS, FeedbackInvalid, feedback_give
from scoring.views.access import require

REVIEW_PERIODS = (("30", "Last 30 days"), ("90", "Last 90 days"), ("365", "Last year"),
                  ("all", "All time"))  # fmt: skip


def is_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


def feedback_panel_context(
    request: HttpRequest,
    lead: Lead,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    saved: bool = False,
) -> dict[str, Any]:
    """What the lead page's feedback panel needs: everyone's feedback, and the form prefilled
    with the user's own verdict (or with what they just submitted when it was refused)."""
    entries = lead_feedback(lead)
    own = next((e for e in entries if e["author_id"] == request.user.pk), None)
    if values is None:
        values = {
            "verdict": own["verdict"] if own else "",
            "reason": own["reason"] if own else "",
            "note": own["note"] if own else "",
        }
    return {
        "lead": lead,
        "feedback_entries": entries,
        "own_feedback": own,
        "feedback_values": values,
        "feedback_errors": errors or {},
        "feedback_saved": saved,
        "can_give_feedback": can(request.user, "give_feedback"),
        "reasons": Feedback.Reason.choices,
        "note_max": NOTE_MAX_CHARS,
    }


@require("give_feedback")
@require_POST
def lead_feedback_submit(request: HttpRequest, lead_id: int) -> HttpResponse:
    """Give or edit the user's verdict on a lead they can see (404 otherwise). An htmx request
    gets the fragment to swap (the lead page's panel, or the queue row's cell when the form
    says `context=queue`); a plain form post is redirected back to the lead page."""
    lead = get_object_or_404(visible_leads(request.user), pk=lead_id)
    values = {
        "verdict": request.POST.get("verdict", ""),
        "reason": request.POST.get("reason", ""),
        "note": request.POST.get("note", ""),
    }
    errors: dict[str, str] = {}
    try:
        feedback_give(lead, request.user, values["verdict"], values["reason"], values["note"])
    except FeedbackInvalid as exc:
        errors = exc.errors
    in_queue = request.POST.get("context") == "queue"
    if is_htmx(request):
        if in_queue:
            labels = dict(Feedback.Reason.choices)
            context = {
                "row": {"id": lead.pk},
                "mine": None
                if errors
                else {**values, "reason_label": labels.get(values["reason"])},
                "cell_errors": errors,
                "reasons": Feedback.Reason.choices,
            }
            return render(request, "feedback/panel.html#queue-cell", context)
        context = feedback_panel_context(
            request, lead, values=values if errors else None, errors=errors, saved=not errors
        )
        return render(request, "feedback/panel.html#panel", context)
    if errors:
        for message in errors.values():
            messages.error(request, message)
    else:
        messages.success(request, "Your feedback is saved.")
    return redirect("lead-detail", lead_id=lead.pk)


def _review_since(period: str) -> tuple[str, dt.date | None]:
    if period == "all":
        return period, None
    if period not in {p for p, _ in REVIEW_PERIODS}:
        period = "90"
    return period, timezone.localdate() - dt.timedelta(days=int(period))


# Its weeks and periods are the site's days, like the lead list's `flagged_from`/`flagged_to`
# its rows link to: a click opens the leads the row counted.
@site_time_zone
@require("view_feedback_review")
@require_GET
def feedback_review_page(request: HttpRequest) -> HttpResponse:
    period, since = _review_since(request.GET.get("period", "90"))
    review = feedback_review(since)
    context = {"review": review, "period": period, "periods": REVIEW_PERIODS}
    return render(request, "feedback/review.html", context)

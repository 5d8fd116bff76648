"""The routing pages: the rules (marketing ops and admins edit, managers read) with their
history, the reps' workload, and a rep accepting a lead assigned to them."""

from __future__ import annotations

import json

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from scoring.models import RoutingConfig
from scoring.roles import can
from scoring.selectors.leads import visible_leads
from scoring.selectors.routing import rep_workload, routing_history
from scoring.services.routing import RoutingInvalid, assignment_accept, routing_import
from scoring.views.access import require

EXAMPLE = {
    "rules": [
        {
            "name": "EMEA devs",
            "when": [
                {"field": "country", "op": "in", "value": ["DE", "FR"]},
                {"field": "persona", "op": "eq", "value": "Developer"},
            ],
            "team": ["sales1", "sales2"],
            "method": "round_robin",
            "daily_capacity": 20,
            "on_sla_breach": "reassign",
        }
    ],
    "fallback": {"team": ["sales1"], "method": "least_loaded"},
}


class RoutingForm(forms.Form):
    document = forms.CharField(widget=forms.Textarea(attrs={"rows": 24, "cols": 100}))


@require_http_methods(["GET", "POST"])
@require("view_routing")
def routing_page(request: HttpRequest) -> HttpResponse:
    current = RoutingConfig.objects.order_by("-version").first()
    initial = json.dumps(current.document if current else EXAMPLE, indent=2)
    form = RoutingForm(request.POST or None, initial={"document": initial})
    errors: list = []
    if request.method == "POST":
        if not can(request.user, "edit_routing"):
            raise PermissionDenied("Your role does not allow this (edit_routing).")
        if form.is_valid():
            try:
                document = json.loads(form.cleaned_data["document"])
            except json.JSONDecodeError as exc:
                errors = [{"path": "$", "message": f"not JSON: {exc}"}]
            else:
                try:
                    config = routing_import(document, user=request.user, source="page")
                except RoutingInvalid as exc:
                    errors = [{"path": e.path, "message": e.message} for e in exc.errors]
                else:
                    messages.success(request, f"Routing version {config.version} is in force.")
                    return redirect("routing")
    return render(
        request,
        "routing/page.html",
        {
            "form": form,
            "errors": errors,
            "current": current,
            "history": routing_history(),
            "can_edit": can(request.user, "edit_routing"),
        },
    )


@require_GET
@require("view_routing")
def routing_version(request: HttpRequest, version: int) -> HttpResponse:
    config = get_object_or_404(RoutingConfig, version=version)
    return HttpResponse(
        json.dumps(config.document, indent=2), content_type="application/json; charset=utf-8"
    )


@require_GET
@require("view_routing")
def workload_page(request: HttpRequest) -> HttpResponse:
    return render(request, "routing/workload.html", {"rows": rep_workload()})


@require_POST
@require("view_leads")
def lead_accept(request: HttpRequest, lead_id: int) -> HttpResponse:
    lead = get_object_or_404(visible_leads(request.user), pk=lead_id)
    if assignment_accept(lead, request.user):
        messages.success(request, "Accepted: the lead is yours.")
    else:
        messages.error(request, "Only the rep the lead is assigned to can accept it.")
    return redirect("lead-detail", lead.pk)

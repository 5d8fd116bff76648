"""The experiments pages: `/experiments/` (the list, and the start form for marketing ops) and
`/experiments/<id>/` (the report, the running estimate and, for threshold tests, MQLs per week
against capacity; stop and promote buttons for marketing ops). Managers read."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from scoring.charts.experiments import mqls_per_week_figure, running_estimate_figure
from scoring.models import Experiment
from scoring.roles import can
from scoring.selectors.experiments import (
    experiment_list,
    experiment_report,
    experiment_series,
    mqls_per_week,
)
from scoring.services.experiments import ExperimentInvalid, experiment_stop
from scoring.views.access import require


@require("view_experiments")
@require_GET
def experiments_page(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "experiments/index.html",
        {
            "experiments": experiment_list(),
            "can_run": can(request.user, "run_experiments"),
        },
    )


@require("view_experiments")
@require_GET
def experiment_page(request: HttpRequest, experiment_id: int) -> HttpResponse:
    experiment = get_object_or_404(Experiment, pk=experiment_id)
    report = experiment_report(experiment)
    context: dict[str, Any] = {
        "experiment": experiment,
        "report": report,
        "can_run": can(request.user, "run_experiments")
        and experiment.status == Experiment.Status.RUNNING,
        "estimate_figure": running_estimate_figure(
            experiment_series(experiment), experiment.relevant_difference
        ),
        "confidence": round(100 * (1 - experiment.alpha)),
        "difference": {
            "estimate": _points(report["difference"]["estimate"]),
            "low": _points(report["difference"]["ci"][0]),
            "high": _points(report["difference"]["ci"][1]),
        },
        "relevant_points": _points(experiment.relevant_difference),
    }
    if experiment.kind == Experiment.Kind.THRESHOLD:
        weekly = mqls_per_week(experiment)
        context["weekly"] = weekly
        context["weekly_figure"] = mqls_per_week_figure(weekly)
    return render(request, "experiments/detail.html", context)


@require("view_experiments")
@require_POST
def experiment_end(request: HttpRequest, experiment_id: int) -> HttpResponse:
    """The stop and promote buttons (`action` = stop | promote)."""
    if not can(request.user, "run_experiments"):
        raise PermissionDenied("Your role does not allow this (run_experiments).")
    experiment = get_object_or_404(Experiment, pk=experiment_id)
    promote = request.POST.get("action") == "promote"
    try:
        experiment_stop(experiment, user=request.user, promote=promote)
    except ExperimentInvalid as error:
        messages.error(request, str(error))
    else:
        messages.success(
            request,
            "Promoted: the challenger is live; every lead is being rescored."
            if promote
            else "Stopped: every lead is being rescored with the champion.",
        )
    return redirect("experiment", experiment_id=experiment.pk)


def _points(value: float | None) -> str:
    """A difference of rates in percentage points, signed ("+2.40")."""
    return "n/a" if value is None else f"{100 * value:+.2f}"

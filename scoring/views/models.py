"""The models page (/models/): marketing ops train (a Celery task, with an htmx progress bar),
activate and roll back models and apply suggested weights as a new draft; managers read.

Also the lead page's fragment `/models/explain/<lead id>/` (the features pushing that lead's
probability up and down), loaded with htmx by whoever may see the lead."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from scoring.charts.models import calibration_figure
from scoring.engine import RuleSetInvalid
from scoring.jobs import ACTIVE
from scoring.ml import registry
from scoring.ml.explain import explanation_context
from scoring.ml.labels import reached_stages
from scoring.ml.suggest import apply_suggestion
from scoring.ml.training import LOGISTIC
from scoring.models import FUNNEL_STAGES, MLModel
from scoring.roles import can
from scoring.selectors.leads import visible_leads
from scoring.selectors.rules import live_rule_set
from scoring.services import ml_models
from scoring.views.access import require

LABEL_STAGES = (*FUNNEL_STAGES[1:], "disqualified")
RUNNING = ACTIVE


@require("view_models")
def models_page(request: HttpRequest) -> HttpResponse:
    """GET: the page. POST (train_models): start a training run."""
    if request.method == "POST":
        if not can(request.user, "train_models"):
            raise PermissionDenied("Your role does not allow this (train_models).")
        return _start(request)
    if request.method != "GET":
        return HttpResponse(status=405)
    return render(request, "models/page.html", _page_context(request))


def _start(request: HttpRequest) -> HttpResponse:
    stage = request.POST.get("label", "customer")
    if stage not in LABEL_STAGES:
        messages.error(request, f"Unknown stage {stage!r}.")
        return redirect("models")
    reached_stages(stage)
    try:
        run_key = ml_models.training_request(label_stage=stage, user=request.user)
    except ml_models.TrainingBusy as busy:
        messages.info(request, str(busy))
        return redirect("models")
    if request.headers.get("HX-Request") == "true":
        return render(request, "models/progress.html", _progress_context(run_key))
    # The broker down: the run waits queued, and its rows say so.
    waiting = MLModel.objects.filter(run_key=run_key, status=MLModel.Status.QUEUED).exclude(
        error=""
    )
    if notice := waiting.values_list("error", flat=True).first():
        messages.warning(request, f"Training: {notice}")
    return redirect("models")


@require("view_models")
@require_GET
def training_progress(request: HttpRequest, run_key: str) -> HttpResponse:
    if not MLModel.objects.filter(run_key=run_key).exists():
        raise Http404("No such training run.")
    return render(request, "models/progress.html", _progress_context(run_key))


@require("train_models")
@require_POST
def model_activate(request: HttpRequest, model_id: int) -> HttpResponse:
    row = get_object_or_404(MLModel, pk=model_id)
    try:
        ml_models.model_activate(row)
    except (registry.ModelLoadRefused, registry.ModelNotReady) as error:
        messages.error(request, str(error))
    else:
        messages.success(request, f"Model #{row.pk} is active; probabilities are being updated.")
    return redirect("models")


@require("train_models")
@require_POST
def model_rollback(request: HttpRequest) -> HttpResponse:
    try:
        row = ml_models.model_rollback()
    except (registry.NothingToRollBack, registry.ModelLoadRefused) as error:
        messages.error(request, str(error))
    else:
        messages.success(request, f"Rolled back: model #{row.pk} is active again.")
    return redirect("models")


@require("train_models")
@require_POST
def model_deactivate(request: HttpRequest) -> HttpResponse:
    ml_models.model_deactivate()
    messages.success(request, "No model is active; rule scores stand alone.")
    return redirect("models")


@require("train_models")
@require_POST
def model_apply_suggestion(request: HttpRequest, model_id: int) -> HttpResponse:
    row = get_object_or_404(MLModel, pk=model_id)
    try:
        draft = apply_suggestion(row, user=request.user)
    except (ValueError, RuleSetInvalid) as error:
        messages.error(request, str(error))
        return redirect("models")
    messages.success(
        request,
        f"Draft rule set #{draft.pk} “{draft.name}” created from the suggested weights; "
        "preview it and publish it from the rules page.",
    )
    return redirect("models")


@require("view_leads")
@require_GET
def lead_explanation(request: HttpRequest, lead_id: int) -> HttpResponse:
    """The lead page's fragment: why the active model gave this lead its probability."""
    if not visible_leads(request.user).filter(pk=lead_id).exists():
        raise Http404("No such lead.")
    return render(request, "models/explanation.html", {"explanation": explanation_context(lead_id)})


# ---------------------------------------------------------------------------------------------
# Context


def _progress_context(run_key: str) -> dict[str, Any]:
    rows = list(MLModel.objects.filter(run_key=run_key).order_by("pk"))
    running = any(row.status in RUNNING for row in rows)
    failed = next((row for row in rows if row.status == MLModel.Status.FAILED), None)
    first = rows[0] if rows else None
    return {
        "run_key": run_key,
        "running": running,
        "percent": round(100 * (first.progress if first else 0)),
        # A queued run's error is why it waits (the broker down), not a failure.
        "message": (first.message or first.error) if first else "",
        "error": failed.error if failed else "",
        "done": bool(rows) and all(row.status == MLModel.Status.DONE for row in rows),
    }


def _model_row(row: MLModel) -> dict[str, Any]:
    overall = (row.metrics or {}).get("overall") or {}
    rules = (row.metrics or {}).get("rules") or {}
    return {
        "id": row.pk,
        "algorithm": row.algorithm,
        "is_active": row.is_active,
        "created_at": row.created_at,
        "label": row.label,
        "split": row.split,
        "n_train": row.n_train,
        "n_test": row.n_test,
        "n_features": len((row.features or {}).get("names", [])),
        "roc_auc": overall.get("roc_auc"),
        "pr_auc": overall.get("pr_auc"),
        "brier": overall.get("brier"),
        "ece": overall.get("ece"),
        "lift": overall.get("lift_top_decile"),
        "calibrated": (row.metrics or {}).get("calibrated"),
        "rules_roc_auc": rules.get("roc_auc"),
        "rules_version": rules.get("rule_set_version"),
        "per_persona": (row.metrics or {}).get("per_persona") or [],
        "versions": f"scikit-learn {row.sklearn_version}, NumPy {row.numpy_version}",
        "sha": row.artifact_sha256[:12],
        "has_suggestion": bool((row.details or {}).get("suggestion")),
    }


def suggested_rule_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The suggestion's rows, each with a `label` no other row has: the rule's description,
    and when two rows read the same, its name or persona and its position in the rule set."""
    seen: dict[str, int] = {}
    for r in rows:
        seen[r["rule"]] = seen.get(r["rule"], 0) + 1
    labelled = []
    for r in rows:
        label = r["rule"]
        if seen[label] > 1:
            extras = [f"rule {r['index'] + 1}"]
            if r.get("name"):
                extras.insert(0, f"“{r['name']}”")
            if r.get("persona"):
                extras.append(f"persona {r['persona']}")
            label = f"{label} ({', '.join(extras)})"
        labelled.append({**r, "label": label})
    return labelled


def _suggestion_rows(row: MLModel | None) -> dict[str, Any] | None:
    if row is None:
        return None
    suggestion = (row.details or {}).get("suggestion")
    if not suggestion:
        return None
    live = live_rule_set()
    model_auc = ((row.metrics or {}).get("overall") or {}).get("roc_auc")
    rules_auc = ((row.metrics or {}).get("rules") or {}).get("roc_auc")
    return {
        "model_id": row.pk,
        "model_roc_auc": model_auc,
        "rules_roc_auc": rules_auc,
        # The weights of a model that ranks leads worse than the live rules would make scoring
        # worse: the page says so and keeps them folded away.
        "weaker": model_auc is not None and rules_auc is not None and model_auc < rules_auc,
        "rules": suggested_rule_rows(suggestion["rules"]),
        "new_rules": suggestion["new_rules"],
        "test_roc_auc": suggestion.get("test_roc_auc"),
        "model_test_roc_auc": suggestion.get("model_test_roc_auc"),
        "scale": suggestion["scale_points_per_log_odds"],
        "based_on_version": suggestion["based_on_version"],
        "stale": live is not None and live.version != suggestion["based_on_version"],
    }


def _page_context(request: HttpRequest) -> dict[str, Any]:
    done = list(MLModel.objects.filter(status=MLModel.Status.DONE).order_by("-pk")[:20])
    running = MLModel.objects.filter(status__in=RUNNING).order_by("-pk").first()
    failed = (
        MLModel.objects.filter(status=MLModel.Status.FAILED).order_by("-pk").first()
        if not running
        else None
    )
    run_key = request.GET.get("run") or (done[0].run_key if done else None)
    run_rows = sorted((r for r in done if r.run_key == run_key), key=lambda r: r.pk)
    if run_key and not run_rows:
        run_rows = list(
            MLModel.objects.filter(run_key=run_key, status=MLModel.Status.DONE).order_by("pk")
        )
    logistic = next((r for r in run_rows if r.algorithm == LOGISTIC), None)
    selected = [_model_row(r) for r in run_rows]
    return {
        "can_train": can(request.user, "train_models"),
        "label_stages": LABEL_STAGES,
        "models": [_model_row(r) for r in done],
        "selected": selected,
        "selected_first": selected[0] if selected else None,
        "active": registry.active_model(),
        "progress": _progress_context(running.run_key) if running else None,
        "last_failure": failed.error if failed and failed.pk > (done[0].pk if done else 0) else "",
        "figure": calibration_figure(run_rows) if run_rows else None,
        "suggestion": _suggestion_rows(logistic),
    }

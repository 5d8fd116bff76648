"""Rule pages: rule sets (live, drafts, versions), the inline editor of a draft's rules,
personas and bands, import/export, the impact preview, publish/rollback with the rescore's
progress, and each version's diff and audit trail.

Reading needs `view_rules` (marketing ops, managers, admins); every change needs `edit_rules`
(marketing ops). htmx requests get fragments; the same URLs work as plain form posts."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from scoring.charts.preview import band_matrix_rows, preview_figures
from scoring.engine import RuleSetInvalid
from scoring.forms import (
    BandForm,
    GroupsFieldsForm,
    GroupsForm,
    ImportForm,
    PersonaForm,
    RuleForm,
    RuleSetSettingsForm,
)
from scoring.models import PreviewRun, RescoreRun, RuleSet
from scoring.roles import can
from scoring.selectors.publish_impact import discard_impact, publish_impact, rollback_impact
from scoring.selectors.rules import (
    audit_trail,
    groups_document,
    groups_document_text,
    groups_summary,
    issues_by_item,
    latest_rescore,
    live_rule_set,
    picker_options,
    previous_version,
    rule_item_label,
    rule_set_issues,
    version_diff,
    versions,
)
from scoring.services.drafts import (
    DraftEditInvalid,
    draft_create,
    draft_discard,
    draft_groups_save,
    draft_item_delete,
    draft_item_save,
    draft_rule_move,
    draft_settings_save,
)
from scoring.services.preview import preview_start
from scoring.services.rescore import rescore_all
from scoring.services.rulesets import (
    RuleSetNotEditable,
    ruleset_document,
    ruleset_export,
    ruleset_import,
    ruleset_publish,
)
from scoring.views.access import require

SECTION_FORMS = {"rules": RuleForm, "personas": PersonaForm, "bands": BandForm}
SECTION_TEMPLATES = {
    "rules": "rules/ruleset.html",
    "personas": "rules/personas.html",
    "bands": "rules/personas.html",
}


def is_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


def _rule_set(rule_set_id: int) -> RuleSet:
    return get_object_or_404(RuleSet.objects.select_related("based_on"), pk=rule_set_id)


def _section(section: str) -> str:
    if section not in SECTION_FORMS:
        raise Http404("No such section.")
    return section


def _page_url(rule_set: RuleSet, section: str) -> str:
    if section == "rules":
        return reverse("rules-detail", args=[rule_set.pk])
    return reverse("personas") + f"?rule_set={rule_set.pk}"


# ---------------------------------------------------------------------------------------------
# Context builders


def _form_for(section: str, rule_set: RuleSet, *, data=None, initial=None) -> Any:
    kwargs: dict[str, Any] = {"data": data, "initial": initial}
    if section in ("rules", "bands"):
        kwargs["personas"] = list(rule_set.personas.values_list("name", flat=True))
    if section == "rules":
        kwargs["groups"] = [g.get("name") for g in rule_set.groups or [] if isinstance(g, dict)]
    return SECTION_FORMS[section](**kwargs)


def _rows(rule_set: RuleSet, section: str, document: dict, issues: dict) -> list[dict]:
    rows = []
    objects = list(getattr(rule_set, section).all())
    for index, (obj, item) in enumerate(zip(objects, document.get(section, []), strict=True)):
        row = {"index": index, "obj": obj, "item": item, "issues": issues.get((section, index))}
        if section == "rules":
            row["label"] = rule_item_label(item)
        elif section == "personas":
            row["conditions"] = [
                rule_item_label({"kind": "attribute", "points": 0, **c}) for c in obj.match
            ]
        rows.append(row)
    return rows


def _section_context(
    request: HttpRequest,
    rule_set: RuleSet,
    section: str,
    *,
    editing: int | None = None,
    form: Any = None,
) -> dict[str, Any]:
    """One section (rules, personas or bands) of a rule set: rows, the row being edited, the
    add form, and the whole draft's problems beside the rows they concern."""
    document = ruleset_document(rule_set)
    issues = issues_by_item(rule_set_issues(rule_set))
    rows = _rows(rule_set, section, document, issues)
    editable = rule_set.is_editable and can(request.user, "edit_rules")
    if editable:
        for row in rows:
            if row["index"] == editing:
                row["form"] = form or _form_for(
                    section, rule_set, initial=SECTION_FORMS[section].initial_for(row["obj"])
                )
    add_form = form if editing is None and form is not None else None
    return {
        "rule_set": rule_set,
        "section": section,
        f"{section}_rows": rows,
        "editable": editable,
        f"{section}_add_form": add_form
        or _form_for(section, rule_set, initial={"kind": "attribute", "priority": 1}),
        "general_issues": issues.get(("", 0), []),
    }


def _confirm_texts(rule_set: RuleSet) -> dict[str, str]:
    if rule_set.status == RuleSet.Status.DRAFT:
        return {"publish": publish_impact(rule_set), "discard": discard_impact(rule_set)}
    if rule_set.status == RuleSet.Status.ARCHIVED:
        return {"rollback": rollback_impact(rule_set, live_rule_set())}
    return {}


def _editor_context(request: HttpRequest, rule_set: RuleSet) -> dict[str, Any]:
    issues = rule_set_issues(rule_set)
    run = latest_rescore(rule_set)
    context = {
        "rule_set": rule_set,
        "issue_count": len(issues),
        "can_edit": can(request.user, "edit_rules"),
        "editable": rule_set.is_editable and can(request.user, "edit_rules"),
        "pickers": picker_options(),
        "live": live_rule_set(),
        "previews": list(rule_set.previews.order_by("-id")[:5]),
        # The confirmation dialogs' texts (static/js/rules.js asks before the form posts).
        "confirm": _confirm_texts(rule_set),
        "run": run,
        "percent": round(run.progress * 100) if run else 0,
        "settings_form": RuleSetSettingsForm(
            initial={
                "name": rule_set.name,
                "floor": int(rule_set.floor),
                "ceiling": int(rule_set.ceiling),
                "model_weight": rule_set.model_weight,
            }
        ),
        "groups_form": GroupsForm(initial={"document": groups_document_text(rule_set)}),
        "groups_fields": GroupsFieldsForm(document=groups_document(rule_set)),
        "groups_summary": groups_summary(rule_set),
    }
    return context


# ---------------------------------------------------------------------------------------------
# Rule sets


@require("view_rules")
@require_GET
def rules_index(request: HttpRequest) -> HttpResponse:
    """The live rule set, the drafts and every published version."""
    return render(request, "rules/index.html", _index_context(request))


def _with_rollback_texts(rule_sets: list[RuleSet], live: RuleSet | None) -> list[RuleSet]:
    """Each archived version with the text its rollback button confirms."""
    for rule_set in rule_sets:
        if rule_set.status == RuleSet.Status.ARCHIVED:
            rule_set.rollback_confirm = rollback_impact(rule_set, live)
    return rule_sets


def _index_context(request: HttpRequest, **extra: Any) -> dict[str, Any]:
    active = (
        RescoreRun.objects.filter(status__in=[RescoreRun.Status.QUEUED, RescoreRun.Status.RUNNING])
        .select_related("rule_set")
        .order_by("-id")
        .first()
    )
    run = active or RescoreRun.objects.select_related("rule_set").order_by("-id").first()
    live = live_rule_set()
    return {
        "live": live,
        "percent": round(run.progress * 100) if run else 0,
        "drafts": list(
            RuleSet.objects.filter(status=RuleSet.Status.DRAFT)
            .select_related("created_by", "based_on")
            .order_by("-id")
        ),
        "versions": _with_rollback_texts(versions(), live),
        "run": run,
        "can_edit": can(request.user, "edit_rules"),
        "import_form": extra.pop("import_form", None) or ImportForm(),
        **extra,
    }


@require("edit_rules")
@require_POST
def draft_new(request: HttpRequest) -> HttpResponse:
    """A new draft: `source` = "empty" or the id of the rule set to copy."""
    source_id = request.POST.get("source", "empty")
    source = None if source_id == "empty" else get_object_or_404(RuleSet, pk=source_id)
    draft = draft_create(user=request.user, source=source)
    messages.success(request, f"Draft “{draft.name}” created.")
    return redirect("rules-detail", draft.pk)


@require("edit_rules")
@require_POST
def rules_import(request: HttpRequest) -> HttpResponse:
    """Upload a rule-set JSON document as a new draft (published at once when asked)."""
    form = ImportForm(request.POST, request.FILES)
    if form.is_valid():
        try:
            rule_set = ruleset_import(
                form.cleaned_data["document"],
                user=request.user,
                publish=form.cleaned_data["publish"],
            )
        except RuleSetInvalid as exc:
            context = _index_context(request, import_form=form, import_issues=exc.errors)
            return render(request, "rules/index.html", context, status=400)
        messages.success(request, f"Imported “{rule_set.name}”.")
        return redirect("rules-detail", rule_set.pk)
    context = _index_context(request, import_form=form)
    return render(request, "rules/index.html", context, status=400)


@require("view_rules")
@require_GET
def rules_export(request: HttpRequest, rule_set_id: int) -> HttpResponse:
    """The rule set as the DESIGN.md §4 document, as a download."""
    rule_set = _rule_set(rule_set_id)
    try:
        document = ruleset_export(rule_set)
    except RuleSetInvalid as exc:
        return HttpResponse(
            f"This draft does not validate yet, so it cannot be exported:\n{exc}",
            status=409,
            content_type="text/plain; charset=utf-8",
        )
    label = f"v{rule_set.version}" if rule_set.version else f"draft-{rule_set.pk}"
    response = JsonResponse(document, json_dumps_params={"indent": 2})
    response["Content-Disposition"] = f'attachment; filename="ruleset-{label}.json"'
    return response


@require("view_rules")
@require_GET
def rule_set_detail(request: HttpRequest, rule_set_id: int) -> HttpResponse:
    """A rule set's rules: the inline editor for a draft (marketing ops), read-only otherwise."""
    rule_set = _rule_set(rule_set_id)
    context = _editor_context(request, rule_set)
    editing = request.GET.get("edit", "")
    context.update(
        _section_context(
            request, rule_set, "rules", editing=int(editing) if editing.isdigit() else None
        )
    )
    return render(request, "rules/ruleset.html", context)


@require("edit_rules")
@require_POST
def rule_set_settings(request: HttpRequest, rule_set_id: int) -> HttpResponse:
    rule_set = _rule_set(rule_set_id)
    form = RuleSetSettingsForm(request.POST)
    if form.is_valid():
        try:
            draft_settings_save(rule_set, **form.cleaned_data)
        except RuleSetNotEditable as exc:
            messages.error(request, str(exc))
        except DraftEditInvalid as exc:
            for issue in exc.issues:
                form.add_error(None, f"{issue.path}: {issue.message}")
        if form.is_valid() and not form.errors:
            messages.success(request, "Settings saved.")
            return redirect("rules-detail", rule_set.pk)
    context = _editor_context(request, rule_set)
    context.update(_section_context(request, rule_set, "rules"))
    context["settings_form"] = form
    return render(request, "rules/ruleset.html", context, status=400)


@require("edit_rules")
@require_POST
def rule_set_groups(request: HttpRequest, rule_set_id: int) -> HttpResponse:
    """Save a draft's groups, grid and account roll-up from the field-by-field editor
    (`editor=fields`) or the JSON one (the advanced alternative)."""
    rule_set = _rule_set(rule_set_id)
    fields = request.POST.get("editor") == "fields"
    form: GroupsFieldsForm | GroupsForm = (
        GroupsFieldsForm(request.POST) if fields else GroupsForm(request.POST)
    )
    if form.is_valid():
        document = (
            form.document() if isinstance(form, GroupsFieldsForm) else form.cleaned_data["document"]
        )
        try:
            draft_groups_save(rule_set, document)
        except RuleSetNotEditable as exc:
            messages.error(request, str(exc))
            return redirect("rules-detail", rule_set.pk)
        except DraftEditInvalid as exc:
            if isinstance(form, GroupsFieldsForm):
                form.add_issues(exc.issues)
            else:
                for issue in exc.issues:
                    form.add_error("document", f"{issue.path}: {issue.message}")
        if not form.errors:
            messages.success(request, "Groups saved.")
            return redirect("rules-detail", rule_set.pk)
    context = _editor_context(request, rule_set)
    context.update(_section_context(request, rule_set, "rules"))
    context["groups_fields" if fields else "groups_form"] = form
    return render(request, "rules/ruleset.html", context, status=400)


@require("edit_rules")
@require_POST
def rule_set_discard(request: HttpRequest, rule_set_id: int) -> HttpResponse:
    rule_set = _rule_set(rule_set_id)
    try:
        draft_discard(rule_set)
    except RuleSetNotEditable as exc:
        messages.error(request, str(exc))
        return redirect("rules-detail", rule_set.pk)
    messages.success(request, "Draft discarded.")
    return redirect("rules-index")


@require("view_rules")
@require_GET
def personas_page(request: HttpRequest) -> HttpResponse:
    """Personas and bands of one rule set (`?rule_set=`; default: the newest draft, else the
    live one)."""
    if request.GET.get("rule_set"):
        try:
            rule_set = _rule_set(int(request.GET["rule_set"]))
        except ValueError as exc:
            raise Http404("No such rule set.") from exc
    else:
        rule_set = (
            RuleSet.objects.filter(status=RuleSet.Status.DRAFT).order_by("-id").first()
            or live_rule_set()
        )
    context = {
        "rule_set": rule_set,
        "choices": list(RuleSet.objects.exclude(status=RuleSet.Status.ARCHIVED).order_by("-id"))
        + [v for v in versions() if v.status == RuleSet.Status.ARCHIVED],
        "can_edit": can(request.user, "edit_rules"),
        "pickers": picker_options(),
    }
    if rule_set is not None:
        for section in ("personas", "bands"):
            editing = request.GET.get(f"edit_{section}", "")
            context.update(
                _section_context(
                    request,
                    rule_set,
                    section,
                    editing=int(editing) if editing.isdigit() else None,
                )
            )
        context["editable"] = rule_set.is_editable and can(request.user, "edit_rules")
    return render(request, "rules/personas.html", context)


# ---------------------------------------------------------------------------------------------
# Items (rules, personas, bands) of a draft


def _render_section(
    request: HttpRequest, rule_set: RuleSet, section: str, *, status: int = 200, **kwargs: Any
) -> HttpResponse:
    context = {"pickers": picker_options(), "rule_set": rule_set}
    context.update(_section_context(request, rule_set, section, **kwargs))
    template = f"{SECTION_TEMPLATES[section]}#{section}-section"
    response = render(request, template, context, status=status)
    response["HX-Retarget"] = f"#{section}-section"
    response["HX-Reswap"] = "outerHTML"
    return response


def _after_change(request: HttpRequest, rule_set: RuleSet, section: str) -> HttpResponse:
    if is_htmx(request):
        return _render_section(request, rule_set, section)
    return redirect(_page_url(rule_set, section))


def _refused(
    request: HttpRequest, rule_set: RuleSet, section: str, index: int | None, form: Any
) -> HttpResponse:
    """Show the form again with its errors: the htmx fragment, or the whole page."""
    if is_htmx(request):
        return _render_section(request, rule_set, section, editing=index, form=form)
    if section == "rules":
        context = _editor_context(request, rule_set)
    else:
        context = {"can_edit": True, "pickers": picker_options(), "choices": [rule_set]}
        other = "bands" if section == "personas" else "personas"
        context.update(_section_context(request, rule_set, other))
    context.update(_section_context(request, rule_set, section, editing=index, form=form))
    return render(request, SECTION_TEMPLATES[section], context, status=400)


def _not_editable(request: HttpRequest, rule_set: RuleSet, section: str) -> HttpResponse:
    messages.error(request, f"{rule_set} is {rule_set.status}: copy it to a draft to edit it.")
    if is_htmx(request):
        response = HttpResponse(status=409)
        response["HX-Redirect"] = _page_url(rule_set, section)
        return response
    return redirect(_page_url(rule_set, section))


@require("view_rules")
@require_GET
def section_fragment(request: HttpRequest, rule_set_id: int, section: str) -> HttpResponse:
    """One section as shown (e.g. after Cancel on a row being edited)."""
    rule_set = _rule_set(rule_set_id)
    section = _section(section)
    if is_htmx(request):
        return _render_section(request, rule_set, section)
    return redirect(_page_url(rule_set, section))


@require("edit_rules")
@require_GET
def item_edit(request: HttpRequest, rule_set_id: int, section: str, index: int) -> HttpResponse:
    """The section with one row turned into its form."""
    rule_set = _rule_set(rule_set_id)
    section = _section(section)
    if not rule_set.is_editable:
        return _not_editable(request, rule_set, section)
    if is_htmx(request):
        return _render_section(request, rule_set, section, editing=index)
    url = _page_url(rule_set, section)
    param = "edit" if section == "rules" else f"edit_{section}"
    return redirect(f"{url}{'&' if '?' in url else '?'}{param}={index}")


@require("edit_rules")
@require_POST
def item_save(
    request: HttpRequest, rule_set_id: int, section: str, index: int | None = None
) -> HttpResponse:
    """Save one item (`index`) or add one (no index); the engine's errors go beside fields."""
    rule_set = _rule_set(rule_set_id)
    section = _section(section)
    form = _form_for(section, rule_set, data=request.POST)
    if not form.is_valid():
        return _refused(request, rule_set, section, index, form)
    try:
        draft_item_save(rule_set, section, index, form.to_item())
    except RuleSetNotEditable:
        return _not_editable(request, rule_set, section)
    except IndexError as exc:
        raise Http404("No such item.") from exc
    except DraftEditInvalid as exc:
        form.add_issues(_own_issues(exc, section))
        return _refused(request, rule_set, section, index, form)
    return _after_change(request, rule_set, section)


def _own_issues(exc: DraftEditInvalid, section: str) -> list:
    """Issues of the edited item keep their field; others are said in words for the form."""
    from scoring.engine import ValidationIssue

    own_prefix = f"$.{section}[{exc.index}]"
    result = []
    for issue in exc.issues:
        if issue.path == own_prefix or issue.path.startswith((own_prefix + ".", own_prefix + "[")):
            result.append(issue)
        else:
            result.append(ValidationIssue("$", f"{_human_path(issue.path)}: {issue.message}"))
    return result


def _human_path(path: str) -> str:
    from scoring.engine import issue_location

    location = issue_location(path)
    if location is None:
        return path
    section, index, key, _ = location
    noun = {"rules": "rule", "personas": "persona", "bands": "band"}[section]
    return f"{noun} {index + 1}" + (f" {key}" if key != "__all__" else "")


@require("edit_rules")
@require_POST
def item_delete(request: HttpRequest, rule_set_id: int, section: str, index: int) -> HttpResponse:
    rule_set = _rule_set(rule_set_id)
    section = _section(section)
    try:
        draft_item_delete(rule_set, section, index)
    except RuleSetNotEditable:
        return _not_editable(request, rule_set, section)
    except IndexError as exc:
        raise Http404("No such item.") from exc
    except DraftEditInvalid as exc:
        text = "; ".join(f"{_human_path(i.path)}: {i.message}" for i in exc.issues)
        if is_htmx(request):
            response = _render_section(request, rule_set, section)
            response.content = (
                f'<p class="error" role="alert">Not deleted: {_escape(text)}</p>'.encode()
                + response.content
            )
            response["HX-Reswap"] = "outerHTML"
            return response
        messages.error(request, f"Not deleted: {text}")
    return _after_change(request, rule_set, section)


def _escape(text: str) -> str:
    from django.utils.html import escape

    return escape(text)


@require("edit_rules")
@require_POST
def rule_move(request: HttpRequest, rule_set_id: int, index: int) -> HttpResponse:
    rule_set = _rule_set(rule_set_id)
    offset = -1 if request.POST.get("direction") == "up" else 1
    try:
        draft_rule_move(rule_set, index, offset)
    except RuleSetNotEditable:
        return _not_editable(request, rule_set, "rules")
    except IndexError as exc:
        raise Http404("No such rule.") from exc
    return _after_change(request, rule_set, "rules")


# ---------------------------------------------------------------------------------------------
# Preview, publish, rollback


@require("edit_rules")
@require_POST
def preview_new(request: HttpRequest, rule_set_id: int) -> HttpResponse:
    """Start an impact preview of this rule set against the live one."""
    rule_set = _rule_set(rule_set_id)
    try:
        run = preview_start(rule_set, user=request.user)
    except RuleSetInvalid as exc:
        messages.error(request, f"Fix the draft first: {exc}")
        return redirect("rules-detail", rule_set.pk)
    return redirect("rules-preview", run.pk)


@require("view_rules")
@require_GET
def preview_page(request: HttpRequest, preview_id: int) -> HttpResponse:
    preview = get_object_or_404(
        PreviewRun.objects.select_related("rule_set", "baseline"), pk=preview_id
    )
    return render(request, "rules/preview.html", _preview_context(request, preview))


@require("view_rules")
@require_GET
def preview_status(request: HttpRequest, preview_id: int) -> HttpResponse:
    """The preview's progress bar (polled by htmx every second) or, once done, its results."""
    preview = get_object_or_404(
        PreviewRun.objects.select_related("rule_set", "baseline"), pk=preview_id
    )
    return render(request, "rules/preview.html#preview-status", _preview_context(request, preview))


def _preview_context(request: HttpRequest, preview: PreviewRun) -> dict[str, Any]:
    context: dict[str, Any] = {
        "preview": preview,
        "percent": round(preview.progress * 100),
        "can_edit": can(request.user, "edit_rules"),
    }
    if preview.status == PreviewRun.Status.DONE and preview.rule_set.status == "draft":
        context["confirm"] = {"publish": publish_impact(preview.rule_set)}
    result = preview.result
    if preview.status == PreviewRun.Status.DONE and result:
        matrix_rows, matrix_columns = band_matrix_rows(result)
        sides = result["sides"]
        context.update(
            result=result,
            figures=preview_figures(result),
            matrix_rows=matrix_rows,
            matrix_columns=matrix_columns,
            comparison=len(sides) == 2,
            outcome_rows=[
                {
                    "side": side,
                    "name": _side_name(result.get("rule_sets", {}).get(side, {})),
                    "roc_auc": result["outcomes"][side]["roc_auc"],
                    "qualified": result["qualified"][side],
                    "mql_week": result["mql_per_week"]["current"][side],
                    "thresholds": result.get("rule_sets", {}).get(side, {}).get("thresholds"),
                }
                for side in sides
            ],
        )
    return context


def _side_name(described: dict[str, Any]) -> str:
    version = described.get("version")
    label = f"v{version}" if version else f"draft #{described.get('id', '?')}"
    return f"{described.get('name', '')} ({label})"


@require("edit_rules")
@require_POST
def rule_set_publish(request: HttpRequest, rule_set_id: int) -> HttpResponse:
    """Publish a draft (or, for an earlier version, republish a copy of it: rollback) and
    follow the bulk rescore that starts."""
    rule_set = _rule_set(rule_set_id)
    rollback = rule_set.status != RuleSet.Status.DRAFT
    name = request.POST.get("name", "")
    note = request.POST.get("note", "").strip()
    if not rollback and not note:
        # Every version says why it exists; the history would otherwise be a list of names.
        messages.error(request, "Not published: write a change note saying what changed and why.")
        return redirect("rules-detail", rule_set.pk)
    try:
        published = ruleset_publish(rule_set, user=request.user, name=name, note=note)
    except RuleSetInvalid as exc:
        messages.error(request, f"Not published: {exc}")
        return redirect("rules-detail", rule_set.pk)
    run = latest_rescore(published)
    verb = f"Rolled back to v{rule_set.version} as" if rollback else "Published"
    if run is not None and run.status == RescoreRun.Status.QUEUED and run.error:
        # The broker down: the run is recorded and waits; its message says so.
        waiting = run.error[:1].lower() + run.error[1:]
        messages.warning(request, f"{verb} v{published.version}. Rescore {waiting}")
    else:
        messages.success(request, f"{verb} v{published.version}; rescoring every lead.")
    if run is None:
        return redirect("rules-detail", published.pk)
    return redirect("rules-run", run.pk)


@require("edit_rules")
@require_POST
def rule_set_rescore(request: HttpRequest, rule_set_id: int) -> HttpResponse:
    """Rescore every lead with the live rule set again (after a run failed), or join the run
    already under way."""
    rule_set = _rule_set(rule_set_id)
    if rule_set.status != RuleSet.Status.PUBLISHED:
        messages.error(request, "Only the live version rescores leads.")
        return redirect("rules-detail", rule_set.pk)
    run = rescore_all(rule_set=rule_set, user=request.user, inline=False)
    run.refresh_from_db()
    if run.status == RescoreRun.Status.QUEUED and run.error:
        messages.warning(request, f"Rescore {run.error[:1].lower()}{run.error[1:]}")
    return redirect("rules-run", run.pk)


def _run_context(request: HttpRequest, run: RescoreRun) -> dict[str, Any]:
    return {
        "run": run,
        "percent": round(run.progress * 100),
        "can_rescore": run.rule_set.status == RuleSet.Status.PUBLISHED
        and can(request.user, "edit_rules"),
    }


@require("view_rules")
@require_GET
def rescore_run_page(request: HttpRequest, run_id: int) -> HttpResponse:
    run = get_object_or_404(RescoreRun.objects.select_related("rule_set"), pk=run_id)
    return render(request, "rules/run.html", _run_context(request, run))


@require("view_rules")
@require_GET
def rescore_run_status(request: HttpRequest, run_id: int) -> HttpResponse:
    run = get_object_or_404(RescoreRun.objects.select_related("rule_set"), pk=run_id)
    return render(request, "rules/run.html#run-status", _run_context(request, run))


# ---------------------------------------------------------------------------------------------
# History


@require("view_rules")
@require_GET
def rule_set_history(request: HttpRequest, rule_set_id: int) -> HttpResponse:
    """What changed against the previous version, and the audit trail of every edit."""
    rule_set = _rule_set(rule_set_id)
    previous = previous_version(rule_set)
    diff = version_diff(previous, rule_set)
    return render(
        request,
        "rules/history.html",
        {
            "rule_set": rule_set,
            "previous": previous,
            "diff": diff,
            "diff_empty": not any(diff.values()),
            "audit": audit_trail(rule_set),
            "can_edit": can(request.user, "edit_rules"),
            "document_json": json.dumps(ruleset_document(rule_set), indent=2),
        },
    )

"""The integrations pages: connections, their runs and schedules (admin and marketing ops), and
the import page, where marketing ops upload a CSV/JSONL file of leads or events, watch its
progress (htmx polling) and read the rejected lines."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.core.exceptions import ImproperlyConfigured
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from integrations import config as integration_config
from integrations import selectors, services
from integrations.imports import import_job_create, shipped_mappings
from integrations.models import ImportJob
from integrations.segment.selectors import source_keys_overview
from integrations.segment.services import (
    SourceKeyInvalid,
    source_key_create,
    source_key_revoke,
)
from scoring.views.access import require


def _vendor(vendor: str) -> str:
    if vendor not in services.VENDORS:
        raise Http404("unknown integration")
    return vendor


def _integrations_page(
    request: HttpRequest, *, new_source_key: str = "", key_error: str = "", status: int = 200
) -> HttpResponse:
    return render(
        request,
        "integrations/page.html",
        {
            "connections": selectors.connections_overview(),
            "unmatched_owners": selectors.owners_unmatched(),
            "source_keys": source_keys_overview(),
            "segment_host": request.build_absolute_uri("/segment"),
            "new_source_key": new_source_key,
            "key_error": key_error,
        },
        status=status,
    )


@require_GET
@require("manage_integrations")
def integrations_page(request: HttpRequest) -> HttpResponse:
    return _integrations_page(request)


@require_POST
@require("manage_integrations")
@never_cache
def source_key_create_view(request: HttpRequest) -> HttpResponse:
    """Make a source key and show it in this response only (not in the session or a
    redirect, so a reload does not show it again; never_cache keeps it out of caches)."""
    try:
        _, key = source_key_create(request.POST.get("name", ""), user=request.user)
    except SourceKeyInvalid as exc:
        return _integrations_page(request, key_error=str(exc), status=400)
    return _integrations_page(request, new_source_key=key)


@require_POST
@require("manage_integrations")
def source_key_revoke_view(request: HttpRequest, key_id: int) -> HttpResponse:
    if source_key_revoke(key_id):
        messages.success(request, "Source key revoked: calls with it are refused from now on.")
    else:
        messages.error(request, "No such active source key.")
    return redirect("integrations")


@require_GET
@require("manage_integrations")
def connection_status(request: HttpRequest, vendor: str) -> HttpResponse:
    """The live part of one connection's card; htmx polls it while a run is going."""
    return render(
        request,
        "integrations/_status.html",
        {"c": selectors.connection_overview(_vendor(vendor))},
    )


@require_POST
@require("manage_integrations")
def sync_now(request: HttpRequest, vendor: str) -> HttpResponse:
    full = request.POST.get("full") == "1"
    sent = services.sync_enqueue(_vendor(vendor), full=full)
    if sent.sent is False:
        messages.warning(
            request,
            f"{vendor} sync queued; will start when the worker is reachable (the task queue "
            f"could not be reached: {sent.error}).",
        )
    else:
        messages.info(request, f"{vendor} {'full ' if full else ''}sync queued.")
    return redirect("integrations")


@require_POST
@require("manage_integrations")
def test_connection(request: HttpRequest, vendor: str) -> HttpResponse:
    # The outcome is recorded on the connection and shown beside its button (in the error
    # style when it failed); a flash message too would say it twice.
    services.connection_test(_vendor(vendor))
    return redirect("integrations")


@require_POST
@require("manage_integrations")
def schedule_update(request: HttpRequest, vendor: str) -> HttpResponse:
    try:
        every = int(request.POST.get("every_minutes", ""))
        services.schedule_set(
            _vendor(vendor), every_minutes=every, enabled=request.POST.get("enabled") == "on"
        )
    except ValueError as exc:
        messages.error(request, f"Schedule not saved: {exc}")
    else:
        messages.success(request, f"{vendor} schedule saved.")
    return redirect("integrations")


@require_POST
@require("manage_integrations")
def settings_save(request: HttpRequest, vendor: str) -> HttpResponse:
    keys = [s.key for s in integration_config.SETTINGS[_vendor(vendor)]]
    values = {key: request.POST.get(key, "") for key in keys}
    clear = [key for key in keys if request.POST.get(f"clear_{key}") == "on"]
    try:
        services.connection_settings_save(vendor, values, clear=clear)
    except ImproperlyConfigured as exc:
        messages.error(request, f"Settings not saved: {exc}")
    else:
        messages.success(request, f"{vendor} settings saved.")
    return redirect("integrations")


# The import page

MAX_UPLOAD_BYTES = 500 * 1024 * 1024


class ImportForm(forms.Form):
    file = forms.FileField(help_text="CSV with a header row, or JSONL (one object per line).")
    kind = forms.ChoiceField(choices=ImportJob.Kind.choices, initial=ImportJob.Kind.LEADS)
    mapping = forms.ChoiceField(required=False, help_text="For lead files only.")
    source = forms.CharField(
        required=False,
        max_length=40,
        help_text="The system the file's external ids come from (default: csv).",
    )
    atomic = forms.BooleanField(
        required=False, help_text="Import nothing unless every row is valid."
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["mapping"].choices = [("", "none (canonical columns)")] + [
            (name, name) for name in shipped_mappings()
        ]

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > MAX_UPLOAD_BYTES:
            raise forms.ValidationError("The file is larger than 500 MB.")
        return upload

    def clean(self):
        data = super().clean()
        if data.get("kind") == ImportJob.Kind.EVENTS and data.get("mapping"):
            self.add_error("mapping", "Mappings apply to lead files only.")
        return data


@require("import_data")
@require_http_methods(["GET", "POST"])
def import_page(request: HttpRequest) -> HttpResponse:
    form = ImportForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        job = import_job_create(
            form.cleaned_data["file"],
            kind=form.cleaned_data["kind"],
            user=request.user,
            source=form.cleaned_data["source"],
            mapping=form.cleaned_data["mapping"],
            atomic=form.cleaned_data["atomic"],
        )
        return redirect("import-detail", job_id=job.pk)
    jobs = ImportJob.objects.select_related("created_by")[:20]
    status = 400 if request.method == "POST" else 200
    return render(request, "imports/page.html", {"form": form, "jobs": jobs}, status=status)


@require("import_data")
@require_GET
def import_detail(request: HttpRequest, job_id: int) -> HttpResponse:
    job = get_object_or_404(ImportJob.objects.select_related("created_by"), pk=job_id)
    return render(request, "imports/detail.html", {"job": job})


@require("import_data")
@require_GET
def import_progress(request: HttpRequest, job_id: int) -> HttpResponse:
    """The progress fragment htmx polls; once the job is finished it comes without the
    polling trigger, so polling stops."""
    job = get_object_or_404(ImportJob, pk=job_id)
    return render(request, "imports/progress.html", {"job": job})

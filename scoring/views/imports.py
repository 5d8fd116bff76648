"""The import page for marketing ops: upload a CSV/JSONL file of leads or events, watch its
progress (htmx polling), read the rejected lines."""

from __future__ import annotations

from django import forms
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from integrations.imports import import_job_create, shipped_mappings
from integrations.models import ImportJob
from scoring.roles import require

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

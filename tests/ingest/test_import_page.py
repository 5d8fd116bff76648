"""The upload page for marketing ops: upload, the job's progress fragment (htmx polling that
stops when the job is done), role checks; and the small command and CSV-safety helpers."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from integrations.imports import IMPORT_TASK, import_job_run
from integrations.models import ImportJob
from scoring.models import Lead

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def inline_tasks(sent_tasks):
    """Run the import task in-process when it is enqueued (after the commit); the job ids
    it was sent for."""
    sent_tasks.on(IMPORT_TASK, import_job_run)
    return sent_tasks


def upload(client, name="leads.csv", content=b"email,plan\na@example.com,pro\n", **fields):
    data = {"file": SimpleUploadedFile(name, content), "kind": "leads", **fields}
    return client.post("/imports/", data)


def test_ops_uploads_a_file_and_sees_the_finished_job(
    client_as, inline_tasks, django_capture_on_commit_callbacks, settings, tmp_path
):
    settings.MEDIA_ROOT = tmp_path
    client = client_as("ops")
    with django_capture_on_commit_callbacks(execute=True):
        response = upload(client)
    job = ImportJob.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/imports/{job.pk}/"
    assert inline_tasks.named(IMPORT_TASK) == [[job.pk]]
    job.refresh_from_db()
    assert (job.status, job.created, job.progress_done, job.created_by.username) == (
        "done",
        1,
        1,
        "ops",
    )
    assert Lead.objects.get().attributes == {"plan": "pro"}
    # The stored upload is removed once imported.
    assert not (tmp_path / job.stored_path).exists()
    page = client.get(f"/imports/{job.pk}/")
    assert page.status_code == 200
    assert b"1 created" in page.content
    assert b"hx-trigger" not in page.content  # finished: no more polling


def test_a_running_job_polls_for_progress(client_as, db):
    job = ImportJob.objects.create(
        file_name="f.csv", kind="leads", status="running", progress_total=200, progress_done=50
    )
    fragment = client_as("ops").get(f"/imports/{job.pk}/progress/")
    assert fragment.status_code == 200
    assert b'hx-trigger="every 1s"' in fragment.content
    assert b'aria-valuenow="25"' in fragment.content


def test_rejected_lines_are_listed_on_the_job_page(
    client_as, inline_tasks, django_capture_on_commit_callbacks, settings, tmp_path
):
    settings.MEDIA_ROOT = tmp_path
    client = client_as("ops")
    with django_capture_on_commit_callbacks(execute=True):
        upload(client, content=b"email\na@example.com\nnot-an-email\n")
    job = ImportJob.objects.get()
    page = client.get(f"/imports/{job.pk}/").content.decode()
    assert "not-an-email" in page and ">3<" in page


def test_the_upload_page_uses_the_shipped_mapping(
    client_as, inline_tasks, django_capture_on_commit_callbacks, settings, tmp_path
):
    settings.MEDIA_ROOT = tmp_path
    content = (FIXTURES / "x_education_sample.csv").read_bytes()
    with django_capture_on_commit_callbacks(execute=True):
        upload(client_as("ops"), content=content, mapping="x_education_leads")
    assert ImportJob.objects.get().created == 30


def test_a_post_without_a_file_shows_the_form_again(client_as, db):
    response = client_as("ops").post("/imports/", {"kind": "leads"})
    assert response.status_code == 400
    assert ImportJob.objects.count() == 0


@pytest.mark.parametrize("username", ["sales1", "manager"])
def test_only_import_roles_see_the_page(client_as, username):
    assert client_as(username).get("/imports/").status_code == 403


def test_a_job_is_claimed_once_even_if_its_task_runs_twice(db, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    (tmp_path / "f.csv").write_text("email\na@example.com\n")
    job = ImportJob.objects.create(file_name="f.csv", stored_path="f.csv", kind="leads")
    import_job_run(job.pk)
    import_job_run(job.pk)
    job.refresh_from_db()
    assert (job.status, job.created) == ("done", 1)


def test_create_api_token_prints_a_working_token_as_its_last_line(role_users):
    out = StringIO()
    call_command("create_api_token", "ops", stdout=out, stderr=StringIO())
    token = out.getvalue().strip().splitlines()[-1]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/api/v1/me/").json()["username"] == "ops"
    # A new token replaces the old one.
    call_command("create_api_token", "ops", stdout=StringIO(), stderr=StringIO())
    assert client.get("/api/v1/me/").status_code in (401, 403)


def test_create_api_token_for_an_unknown_user_fails(db):
    with pytest.raises(CommandError, match="no user 'ghost'"):
        call_command("create_api_token", "ghost")


def test_an_upload_with_the_broker_down_waits_queued_with_a_clear_message(
    client_as, broker_down, transactional_db, settings, tmp_path
):
    # transactional_db: no surrounding transaction, so the task is sent during the request.
    settings.MEDIA_ROOT = tmp_path
    response = upload(client_as("ops"))
    job = ImportJob.objects.get()
    assert response.status_code == 302 and job.status == "queued"
    page = client_as("ops").get(f"/imports/{job.pk}/").content.decode()
    assert "will start when the worker is reachable" in page

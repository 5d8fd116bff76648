"""The integrations page: roles, status and progress, sync now, schedules."""

from __future__ import annotations

import json

import pytest
from django.utils import timezone

from integrations.models import Connection, SyncRun

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("username", ["admin", "ops"])
def test_admin_and_marketing_ops_see_the_page(client_as, username):
    response = client_as(username).get("/integrations/")

    assert response.status_code == 200
    for label in ("Salesforce", "HubSpot", "Mixpanel"):
        assert label in response.content.decode()


@pytest.mark.parametrize("username", ["sales1", "manager"])
def test_sales_and_managers_are_refused_everywhere(client_as, username):
    client = client_as(username)
    for method, url in [
        ("get", "/integrations/"),
        ("get", "/integrations/hubspot/status"),
        ("post", "/integrations/hubspot/sync"),
        ("post", "/integrations/hubspot/test"),
        ("post", "/integrations/hubspot/schedule"),
        ("post", "/integrations/hubspot/settings"),
    ]:
        assert getattr(client, method)(url).status_code == 403, url
    assert not Connection.objects.exists()


def test_anonymous_visitors_are_sent_to_the_login_page(client):
    response = client.get("/integrations/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_a_running_sync_shows_live_progress_polled_by_htmx(client_as):
    connection = Connection.objects.create(
        vendor="hubspot", api_usage={"api_used": 900, "api_limit": 1000, "throttle": True}
    )
    run = SyncRun.objects.create(connection=connection, batches=2, fetched=200, created=150)
    Connection.objects.filter(pk=connection.pk).update(current_run=run)

    html = client_as("ops").get("/integrations/hubspot/status").content.decode()

    assert 'hx-trigger="every 2s"' in html
    assert "2 batches, 200 fetched, 150 created" in html
    assert "900 / 1000" in html and "slowing down" in html


def test_a_finished_run_shows_its_counts_and_failures(client_as):
    connection = Connection.objects.create(vendor="salesforce")
    SyncRun.objects.create(
        connection=connection,
        status="failed",
        finished_at=timezone.now(),
        fetched=3,
        failed=1,
        failures=[{"id": "00Q1", "reason": "SystemModstamp: missing"}],
        error="Salesforce 400 MALFORMED_QUERY",
    )

    html = client_as("admin").get("/integrations/").content.decode()

    assert "SystemModstamp: missing" in html and "MALFORMED_QUERY" in html
    assert "hx-trigger" not in html


def test_sync_now_enqueues_a_task(client_as, sent_tasks, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = client_as("ops").post("/integrations/mixpanel/sync", {"full": "1"})

    assert response.status_code == 302
    run = SyncRun.objects.get()  # the request, queued until its task claims it
    assert (run.status, run.full, run.trigger) == ("queued", True, "manual")
    assert sent_tasks == [("integrations.tasks.sync_task", ["mixpanel", True, "manual", run.pk])]


def test_sync_now_with_the_broker_down_says_so_instead_of_failing(
    client_as, broker_down, transactional_db
):
    # transactional_db: no surrounding transaction, so the task is sent during the request,
    # as in production.
    response = client_as("ops").post("/integrations/mixpanel/sync", follow=True)

    assert response.status_code == 200
    page = response.content.decode()
    assert "sync queued; will start when the worker is reachable" in page
    assert SyncRun.objects.get().status == "queued"
    assert "<td>Queued</td>" in page  # the run's row on mixpanel's card


def test_the_schedule_is_a_periodic_task_per_vendor(client_as):
    from django_celery_beat.models import PeriodicTask

    client_as("admin").post(
        "/integrations/salesforce/schedule", {"every_minutes": "15", "enabled": "on"}
    )
    client_as("admin").post("/integrations/salesforce/schedule", {"every_minutes": "30"})

    task = PeriodicTask.objects.get(name="integrations.sync.salesforce")
    assert task.task == "integrations.tasks.sync_task"
    assert json.loads(task.args) == ["salesforce", False, "schedule"]
    assert (task.interval.every, task.enabled, task.expire_seconds) == (30, False, 1800)
    assert Connection.objects.get(vendor="salesforce").enabled is False
    page = client_as("admin").get("/integrations/").content.decode()
    assert 'value="30"' in page


def test_test_connection_reports_a_missing_setting(client_as):
    response = client_as("ops").post("/integrations/mixpanel/test", follow=True)

    assert "MIXPANEL_PROJECT_ID" in response.content.decode()
    assert Connection.objects.get(vendor="mixpanel").last_test_ok is False


def test_a_failed_connection_test_is_shown_once_in_the_error_style(client_as):
    response = client_as("ops").post("/integrations/mixpanel/test", follow=True)
    html = response.content.decode()
    section = html[html.index('data-testid="connection-mixpanel"') :]
    section = section[: section.index("</section>")]
    # Once: beside the button, not again in a flash message above the page.
    assert html.count("MIXPANEL_PROJECT_ID") == section.count("MIXPANEL_PROJECT_ID")
    assert 'class="messages"' not in html
    error = section[section.index('<span class="error">') :]
    assert "MIXPANEL_PROJECT_ID" in error[: error.index("</span>")]

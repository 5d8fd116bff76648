"""Every job in leadscoring/schedules.py: it is scheduled (a registered task, with an expiry
so a backlog cannot pile up) and, run as beat runs it, it does its work."""

from __future__ import annotations

import datetime as dt
import json

from django.conf import settings
from django.utils import timezone

from integrations.models import WebhookDelivery
from leadscoring.celery import app
from leadscoring.schedules import CELERY_BEAT_SCHEDULE
from scoring.models import Identity, Lead, LeadDue, PendingRescore, ScoreHistory
from scoring.services.rescore import rescore_leads
from tests.factories import EventFactory, LeadFactory

# The integration tests' fake-vendor environment, reused as it is.
from tests.integrations.conftest import (  # noqa: F401
    _integration_env,
    _loopback_only,
    _tls_server,
    ca_bundle,
    https_server,
    salesforce_env,
    sleeps,
    tls_ca,
)
from tests.rules.conftest import live  # noqa: F401

COMPOSITE = "/services/data/v59.0/composite/sobjects"

# One test per job below; a job added to the schedule without one fails the first test.
TESTED = {
    "rescore-pending-sweep",
    "kpi-rollup-refresh",
    "crm-score-push",
    "webhook-deliveries-prune",
    "time-rescore-due",
    "rescore-runs-sweep",
    "jobs-resend",
    "outbox-relay",
    "routing-sla",
    "alert-digest",
}


def run_scheduled(name: str):
    """Run a job's task in this process, as beat's entry names it."""
    app.loader.import_default_modules()  # the worker's autodiscovery of the task modules
    entry = CELERY_BEAT_SCHEDULE[name]
    return app.tasks[entry["task"]].apply(args=entry.get("args", ())).get()


def test_every_job_is_scheduled_with_a_registered_task_and_an_expiry():
    app.loader.import_default_modules()
    assert set(CELERY_BEAT_SCHEDULE) == TESTED
    assert settings.CELERY_BEAT_SCHEDULE is CELERY_BEAT_SCHEDULE
    for name, entry in CELERY_BEAT_SCHEDULE.items():
        assert entry["task"] in app.tasks, name
        assert 0 < entry["options"]["expires"] <= entry["schedule"], name


def test_the_score_push_runs_every_five_minutes_by_default():
    assert CELERY_BEAT_SCHEDULE["crm-score-push"]["schedule"] == 300.0


def test_rescore_pending_sweep_rescores_leads_whose_realtime_task_never_ran(live):  # noqa: F811
    lead = LeadFactory(employees=500, created_at=timezone.now() - dt.timedelta(days=1))
    PendingRescore.objects.create(lead=lead)

    assert run_scheduled("rescore-pending-sweep") == 1

    lead.refresh_from_db()
    assert lead.score is not None and lead.scored_at is not None
    assert not PendingRescore.objects.exists()


def test_time_rescore_due_rescores_leads_whose_event_left_its_window(live):  # noqa: F811
    now = timezone.now()
    lead = LeadFactory(employees=500, created_at=now - dt.timedelta(days=90))
    # The live rules give a demo request 30 points for 60 days.
    EventFactory(lead=lead, event_type="demo_request", occurred_at=now - dt.timedelta(days=60.5))
    rescore_leads([lead.pk], as_of=now - dt.timedelta(days=2))
    lead.refresh_from_db()
    assert lead.score == 35  # 15 (employees) + 30 (demo) - 10 (inactive for 45 days)
    # Due when the demo request leaves its window (a millisecond early, by design).
    leaves = now - dt.timedelta(days=0.5)
    due_at = LeadDue.objects.get(lead=lead).due_at
    assert leaves - dt.timedelta(milliseconds=2) < due_at <= leaves
    quiet = LeadFactory(employees=500, created_at=now - dt.timedelta(days=1))
    rescore_leads([quiet.pk], as_of=now - dt.timedelta(hours=1))

    assert run_scheduled("time-rescore-due") == 1

    lead.refresh_from_db()
    assert lead.score == 5
    # Inactive already and no event left: only a new event (a real-time rescore) changes it.
    assert LeadDue.objects.get(lead=lead).due_at is None
    assert run_scheduled("time-rescore-due") == 0


def test_time_rescore_runs_every_fifteen_minutes_by_default():
    assert CELERY_BEAT_SCHEDULE["time-rescore-due"]["schedule"] == 900.0
    assert settings.TIME_RESCORE_INTERVAL_SECONDS == 900


def test_kpi_rollup_refresh_stores_the_band_before_conversion(db):
    converted_at = timezone.now() - dt.timedelta(days=2)
    lead = LeadFactory(converted_at=converted_at, lifecycle_stage="customer")
    ScoreHistory.objects.create(
        lead=lead, score=85, band="Hot", rule_set_version=1, as_of=converted_at - dt.timedelta(1)
    )
    ScoreHistory.objects.create(
        lead=lead, score=10, band="Cold", rule_set_version=1, as_of=converted_at
    )

    run_scheduled("kpi-rollup-refresh")

    lead.refresh_from_db()
    assert (lead.conversion_band, lead.conversion_score) == ("Hot", 85)
    assert lead.conversion_band_at == converted_at


def test_webhook_deliveries_prune_forgets_ids_older_than_the_retention(db, monkeypatch):
    now = timezone.now()
    for event_id, age in (("old", 8), ("recent", 6)):
        delivery = WebhookDelivery.objects.create(source="hubspot", event_id=event_id)
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            received_at=now - dt.timedelta(days=age)
        )

    assert run_scheduled("webhook-deliveries-prune") == 1
    assert list(WebhookDelivery.objects.values_list("event_id", flat=True)) == ["recent"]

    monkeypatch.setenv("WEBHOOK_DELIVERY_RETENTION_DAYS", "5")
    assert run_scheduled("webhook-deliveries-prune") == 1
    assert not WebhookDelivery.objects.exists()


def test_crm_score_push_sends_only_scores_changed_since_the_last_push(db, salesforce_env):  # noqa: F811
    pushed: list[dict] = []

    def composite(request):
        from werkzeug import Response

        body = request.get_json()
        pushed.append(body)
        results = [{"id": r["id"], "success": True, "errors": []} for r in body["records"]]
        return Response(json.dumps(results), content_type="application/json")

    salesforce_env.expect_request(COMPOSITE, method="PATCH").respond_with_handler(composite)
    ids = ("00Q5g0000040001EAA", "00Q5g0000040002EAA")
    leads = []
    for n, external_id in enumerate(ids):
        lead = Lead.objects.create(email=f"p{n}@example.com", score=40 + n, band="Warm")
        Identity.objects.create(source="salesforce", external_id=external_id, lead=lead)
        leads.append(lead)

    assert run_scheduled("crm-score-push") == {"salesforce": 2}
    # A real-time rescore qualifies one lead: the next beat pushes that one alone.
    Lead.objects.filter(pk=leads[1].pk).update(score=75, band="MQL")
    assert run_scheduled("crm-score-push") == {"salesforce": 1}
    assert [r["id"] for r in pushed[1]["records"]] == [ids[1]]
    assert pushed[1]["records"][0]["Lead_Band__c"] == "MQL"
    assert run_scheduled("crm-score-push") == {"salesforce": 0}
    assert len(pushed) == 2


def test_rescore_runs_sweep_sends_again_the_chunks_of_a_stalled_run(
    live,  # noqa: F811
    settings,
    sent_tasks,
    django_capture_on_commit_callbacks,
):
    from scoring.models import RescoreRun
    from scoring.services.rescore import CHUNK_TASK, rescore_all

    settings.RESCORE_STALL_SECONDS = 5
    LeadFactory.create_batch(3)
    run = rescore_all(inline=False)  # its chunk's message lost (never sent: no commit here)
    RescoreRun.objects.filter(pk=run.pk).update(created_at=timezone.now() - dt.timedelta(1))
    run.chunks.update(created_at=timezone.now() - dt.timedelta(1))

    with django_capture_on_commit_callbacks(execute=True):
        assert run_scheduled("rescore-runs-sweep") == {"superseded": 0, "resent": 1, "failed": 0}
    assert sent_tasks.named(CHUNK_TASK) == [[run.chunks.get().pk]]


def test_jobs_resend_sends_again_a_queued_job_whose_task_the_broker_missed(
    live,  # noqa: F811
    settings,
    sent_tasks,
    django_capture_on_commit_callbacks,
):
    from scoring.models import PreviewRun

    settings.JOB_RESEND_SECONDS = 5
    preview = PreviewRun.objects.create(
        rule_set=live,
        task_name="scoring.preview_tasks.preview_task",
        created_at=timezone.now() - dt.timedelta(minutes=1),
    )
    PreviewRun.objects.filter(pk=preview.pk).update(task_args=[preview.pk])

    with django_capture_on_commit_callbacks(execute=True):
        assert run_scheduled("jobs-resend") == 1
        # Sent once per JOB_RESEND_SECONDS, not at every beat.
        assert run_scheduled("jobs-resend") == 0
    assert sent_tasks.named("scoring.preview_tasks.preview_task") == [[preview.pk]]


def _routed_lead(role_users, hours_ago: float):
    from scoring.services.routing import route_leads, routing_import

    routing_import({"rules": [{"name": "all", "when": [], "team": ["sales1", "sales2"]}]})
    lead = LeadFactory(qualified=True, score=60, band="MQL")
    route_leads([lead.pk], now=timezone.now() - dt.timedelta(hours=hours_ago))
    return lead


def test_outbox_relay_hands_new_transitions_to_their_subscribers(role_users):
    from integrations.models import OutboxDelivery

    lead = _routed_lead(role_users, 0)  # wrote a lead.assigned transition
    assert run_scheduled("outbox-relay")["transitions"] == 1
    assert OutboxDelivery.objects.get(transition__lead=lead).subscriber == "email"


def test_routing_sla_reassigns_leads_nobody_acted_on(role_users, settings):
    settings.ROUTING_SLA_HOURS = 24
    lead = _routed_lead(role_users, 25)
    assert run_scheduled("routing-sla") == 1
    lead.refresh_from_db()
    assert lead.owner.username == "sales2"


def test_alert_digest_emails_reps_who_chose_it(role_users, mailoutbox):
    from integrations.models import AlertPreference

    AlertPreference.objects.create(user=role_users["sales1"], email="digest")
    _routed_lead(role_users, 1)
    assert run_scheduled("alert-digest") == 1
    assert mailoutbox[0].to == ["sales1@example.com"]

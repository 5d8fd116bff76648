"""The beat schedule, in code. `expires` keeps a backlog from piling up while workers are
down. django-celery-beat copies these entries into its tables, where the pages can edit them.
Every entry has a test that it is scheduled and does its work
(tests/foundation/test_schedules.py)."""

from leadscoring.env import env_int

# The CRM write-back interval: a lead that qualifies in real time reaches the CRMs within it.
SCORE_PUSH_INTERVAL_SECONDS = env_int("SCORE_PUSH_INTERVAL_SECONDS", 300, minimum=10)
# How often leads due for a time-based rescore (windows, inactivity, decay) are rescored; a
# stored score lags time by at most this much.
TIME_RESCORE_INTERVAL_SECONDS = env_int("TIME_RESCORE_INTERVAL_SECONDS", 900, minimum=30)

CELERY_BEAT_SCHEDULE = {
    # Bulk rescore runs: superseded ones ended, stalled chunks sent again (within minutes, not
    # at the broker's visibility timeout), hopeless ones failed (scoring.services.rescore).
    "rescore-runs-sweep": {
        "task": "scoring.tasks.rescore_runs_sweep_task",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
    # Queued jobs whose task the broker missed (down, restarted) are sent again: publish,
    # preview, training, import, sync now, webhook intake (scoring.jobs.jobs_resend).
    "jobs-resend": {
        "task": "scoring.jobs_tasks.jobs_resend_task",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
    "rescore-pending-sweep": {
        "task": "scoring.tasks.rescore_pending_sweep_task",
        "schedule": 30.0,
        "options": {"expires": 25},
    },
    # The conversion bands and the KPI cube (scoring.kpis.cube). After a write to the leads
    # the dashboard reads the cube "as of" its last refresh for KPI_CUBE_MAX_AGE_SECONDS, then
    # computes directly (seconds at 1M leads) until this runs; a refresh takes ~5-9 s at 1M.
    "kpi-rollup-refresh": {
        "task": "scoring.tasks.kpi_rollup_refresh_task",
        "schedule": 300.0,
        "options": {"expires": 250},
    },
    # Scores and bands changed since their last push, whatever changed them, to each
    # configured CRM (batched, changed-only: integrations.services.push_scores).
    "crm-score-push": {
        "task": "integrations.tasks.push_changed_scores_task",
        "schedule": float(SCORE_PUSH_INTERVAL_SECONDS),
        "options": {"expires": SCORE_PUSH_INTERVAL_SECONDS * 0.9},
    },
    # Leads whose score, band or persona may have changed with time alone since their last
    # scoring, found by their due time (scoring.models.LeadDue) and rescored as of now.
    "time-rescore-due": {
        "task": "scoring.tasks.rescore_due_task",
        "schedule": float(TIME_RESCORE_INTERVAL_SECONDS),
        "options": {"expires": TIME_RESCORE_INTERVAL_SECONDS * 0.9},
    },
    # Webhook event ids kept to recognise replays: forgotten after
    # WEBHOOK_DELIVERY_RETENTION_DAYS (7 by default).
    "webhook-deliveries-prune": {
        "task": "integrations.tasks.webhook_deliveries_prune_task",
        "schedule": 3600.0,
        "options": {"expires": 3000},
    },
    # The outbox relay (integrations.outbound.relay): transitions are also relayed at once
    # after the rescore that wrote them commits; this catches broker outages and retries.
    "outbox-relay": {
        "task": "integrations.tasks.outbox_relay_task",
        "schedule": 30.0,
        "options": {"expires": 25},
    },
    # Routing SLA (ROUTING_SLA_HOURS): reassign or escalate leads nobody acted on.
    "routing-sla": {
        "task": "scoring.tasks.routing_sla_task",
        "schedule": 300.0,
        "options": {"expires": 250},
    },
    # Reps who chose a daily digest instead of an email per lead: the task sends each one at
    # most once in 23 hours, so an hourly check keeps the digest daily whenever beat started.
    "alert-digest": {
        "task": "integrations.tasks.alert_digest_task",
        "schedule": 3600.0,
        "options": {"expires": 3000},
    },
}

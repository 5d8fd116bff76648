"""The beat schedule, in code. `expires` keeps a backlog from piling up while workers are
down. django-celery-beat copies these entries into its tables, where the pages can edit them."""

CELERY_BEAT_SCHEDULE = {
    "rescore-pending-sweep": {
        "task": "scoring.tasks.rescore_pending_sweep_task",
        "schedule": 30.0,
        "options": {"expires": 25},
    },
    "kpi-rollup-refresh": {
        "task": "scoring.tasks.kpi_rollup_refresh_task",
        "schedule": 600.0,
        "options": {"expires": 500},
    },
}

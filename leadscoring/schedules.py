"""The beat schedule, in code. `expires` keeps a backlog from piling up while workers are
down. django-celery-beat copies these entries into its tables, where the pages can edit them."""

CELERY_BEAT_SCHEDULE = {
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
}

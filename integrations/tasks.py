"""Celery entry points of the integrations app: thin wrappers over services."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task

from integrations.imports import import_job_run


@shared_task(acks_late=True, ignore_result=True)
def import_file_task(job_id: int) -> None:
    """Run one uploaded file's import (safe to deliver twice: the job is claimed)."""
    import_job_run(job_id)


# --------------------------------------------------------------------------------------------
# Vendor syncs and score write-back
# --------------------------------------------------------------------------------------------

from integrations import config as integration_config  # noqa: E402
from integrations import services as sync_services  # noqa: E402
from integrations.connectors.base import (  # noqa: E402
    ConnectorError,
    RateLimited,
    TransientError,
)
from leadscoring.db import TRANSIENT_DB_ERRORS  # noqa: E402
from scoring.jobs import dispatch  # noqa: E402

PUSH_TASK_NAME = "integrations.tasks.push_scores_task"

_RETRY = {
    "acks_late": True,
    "autoretry_for": (TransientError, *TRANSIENT_DB_ERRORS),
    "retry_backoff": 5,
    "retry_backoff_max": 600,
    "retry_jitter": True,
    "max_retries": 5,
}


@shared_task(bind=True, **_RETRY)
def sync_task(
    self, vendor: str, full: bool = False, trigger: str = "schedule", run_id: int | None = None
) -> int | None:
    """Sync one vendor for at most the time budget; continue in a follow-up task.

    A busy or paused connection is skipped (the schedule comes back; a requested run,
    ``run_id``, stays queued for the jobs sweep); a burst rate limit is retried after the
    vendor's ``retry_after``; an exhausted transient error retries with backoff."""
    if trigger == "schedule" and not sync_services.connection_get(vendor).enabled:
        return None
    try:
        run = sync_services.sync_run(
            vendor,
            full=full,
            trigger=trigger,
            time_budget=integration_config.sync_time_budget() or None,
            run_id=run_id,
        )
    except sync_services.SyncNotStarted:
        return None
    if run.status == run.Status.PARTIAL:
        # The cursor is committed: the follow-up continues incrementally from it.
        dispatch(sync_services.SYNC_TASK_NAME, [vendor, False, "continue"])
    elif run.status == run.Status.RATE_LIMITED:
        raise self.retry(countdown=run.retry_after or 10, max_retries=10)
    elif run.error_kind == "transient":
        raise TransientError(run.error)
    return run.pk


@shared_task(bind=True, **_RETRY)
def push_scores_task(self, vendor: str) -> int:
    """Push changed scores to one CRM; a burst rate limit retries after ``retry_after``."""
    try:
        return sync_services.push_scores(vendor)["pushed"]
    except RateLimited as exc:
        if exc.scope == "burst":
            raise self.retry(countdown=exc.retry_after, max_retries=10) from exc
        return 0


@shared_task(acks_late=True, ignore_result=True)
def push_scores_after_rescore_task(run_id: int | None = None) -> list[str]:
    """After a bulk rescore: enqueue a push to every configured, enabled CRM."""
    vendors = sync_services.push_vendors_configured()
    for vendor in vendors:
        dispatch(PUSH_TASK_NAME, [vendor])
    return vendors


@shared_task(acks_late=True, ignore_result=True)
def push_changed_scores_task() -> dict[str, int]:
    """Beat: push to every configured, enabled CRM the scores and bands that changed since
    their last push, whatever changed them (real-time, due or bulk rescore). A vendor error
    is recorded on the connection by the push and not retried here: the next beat is the
    retry, so a backlog never piles up."""
    pushed: dict[str, int] = {}
    for vendor in sync_services.push_vendors_configured():
        try:
            pushed[vendor] = sync_services.push_scores(vendor)["pushed"]
        except ConnectorError:
            pushed[vendor] = 0
    return pushed


@shared_task(acks_late=True, ignore_result=True)
def webhook_deliveries_prune_task() -> int:
    """Beat: forget webhook event ids older than ``WEBHOOK_DELIVERY_RETENTION_DAYS``."""
    return sync_services.webhook_deliveries_prune(
        timedelta(days=integration_config.webhook_retention_days())
    )


@shared_task(bind=True, acks_late=True, max_retries=20, autoretry_for=(TransientError,))
def hubspot_webhook_sync_task(self, object_ids: list[str], run_id: int | None = None) -> int | None:
    """An incremental HubSpot sync for contacts a webhook named (the queued run ``run_id``
    the intake recorded). If a sync is already running it may have passed them, so try again
    shortly rather than drop the change."""
    try:
        run = sync_services.sync_run("hubspot", trigger="webhook", run_id=run_id)
    except sync_services.SyncBusy as exc:
        raise self.retry(countdown=30) from exc
    except sync_services.SyncNotStarted:
        return None
    if run.status == run.Status.RATE_LIMITED:
        raise self.retry(countdown=run.retry_after or 10)
    return run.pk


# --------------------------------------------------------------------------------------------
# The outbox relay (integrations.outbound)
# --------------------------------------------------------------------------------------------

from integrations.outbound.alerts import digest_send  # noqa: E402
from integrations.outbound.relay import relay_run  # noqa: E402


@shared_task(
    name="integrations.tasks.outbox_relay_task",
    acks_late=True,
    autoretry_for=TRANSIENT_DB_ERRORS,
    retry_backoff=True,
    max_retries=3,
)
def outbox_relay_task() -> dict[str, int]:
    """One relay pass: fan out new transitions, deliver what is due (claimed row by row, so
    any number of these may run at once)."""
    return relay_run()


@shared_task(name="integrations.tasks.alert_digest_task", acks_late=True)
def alert_digest_task() -> int:
    """The daily digest email of each rep who chose it (at most one a day per rep)."""
    return digest_send()

"""Celery entry points of rescoring and the KPI rollup: take ids, call a service, return. Each
is safe to run twice. Names are explicit, so queued messages, stored jobs and beat entries keep
working whatever the module is called."""

from __future__ import annotations

from celery import shared_task

from leadscoring.db import TRANSIENT_DB_ERRORS
from scoring.services import rescore

TRANSIENT = TRANSIENT_DB_ERRORS


@shared_task(
    name="scoring.tasks.rescore_chunk_task",
    bind=True,
    acks_late=True,
    autoretry_for=TRANSIENT,
    retry_backoff=2,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=5,
)
def rescore_chunk_task(self, chunk_id: int) -> int:
    try:
        return rescore.rescore_chunk(chunk_id).scored
    except TRANSIENT as exc:
        rescore.rescore_chunk_failed(chunk_id, repr(exc), final=self.request.retries >= 5)
        raise
    except Exception as exc:
        rescore.rescore_chunk_failed(chunk_id, repr(exc), final=True)
        raise


@shared_task(
    name="scoring.tasks.rescore_pending_task",
    acks_late=True,
    autoretry_for=TRANSIENT,
    retry_backoff=True,
    max_retries=5,
)
def rescore_pending_task() -> int:
    return rescore.rescore_pending_drain()


@shared_task(name="scoring.tasks.kpi_rollup_refresh_task", acks_late=True, expires=500)
def kpi_rollup_refresh_task() -> int:
    """Periodic (and after each bulk rescore run): conversions that arrived by import, sync or
    API get their band before conversion stored, then the KPI cube is rebuilt (5-9 s at 1M
    leads; see scoring.kpis.cube)."""
    from scoring.kpis.rollup import conversion_bands_refresh

    return conversion_bands_refresh()


@shared_task(name="scoring.tasks.rescore_pending_sweep_task", acks_late=True, expires=25)
def rescore_pending_sweep_task() -> int:
    """Periodic: rescore leads whose real-time task never ran (e.g. the broker was down)."""
    return rescore.rescore_pending_drain()


@shared_task(
    name="scoring.tasks.rescore_due_task",
    acks_late=True,
    autoretry_for=TRANSIENT,
    retry_backoff=True,
    max_retries=3,
)
def rescore_due_task() -> int:
    """Periodic (TIME_RESCORE_INTERVAL_SECONDS): rescore the leads whose score may have changed
    with time alone (windows, inactivity, decay). Nothing to do without a live rule set."""
    try:
        return rescore.rescore_due().rescored
    except rescore.NoLiveRuleSet:
        return 0


@shared_task(name="scoring.tasks.rescore_runs_sweep_task", acks_late=True, expires=55)
def rescore_runs_sweep_task() -> dict[str, int]:
    """Periodic: bulk runs superseded, stalled chunks sent again, hopeless ones failed."""
    outcome = rescore.rescore_runs_sweep()
    return {"superseded": outcome.superseded, "resent": outcome.resent, "failed": outcome.failed}

"""Celery entry point of routing's SLA: the beat runs the sweep (scoring.services.routing)."""

from __future__ import annotations

from celery import shared_task

from leadscoring.db import TRANSIENT_DB_ERRORS
from scoring.services.routing import sla_sweep


@shared_task(
    name="scoring.tasks.routing_sla_task",
    acks_late=True,
    autoretry_for=TRANSIENT_DB_ERRORS,
    retry_backoff=True,
    max_retries=3,
)
def routing_sla_task() -> int:
    """Reassign or escalate the assignments past their SLA (safe to run twice: one lock)."""
    return sla_sweep()

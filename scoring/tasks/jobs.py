"""The job sweep's Celery entry point (explicit name: see scoring.tasks)."""

from __future__ import annotations

from celery import shared_task

from scoring.jobs import jobs_resend


@shared_task(name="scoring.jobs_tasks.jobs_resend_task", acks_late=True, expires=55)
def jobs_resend_task() -> int:
    """Periodic: send again the tasks of queued jobs that the broker missed."""
    return jobs_resend()

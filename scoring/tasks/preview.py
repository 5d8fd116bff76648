"""The impact preview's Celery entry point (explicit name: see scoring.tasks)."""

from __future__ import annotations

from celery import shared_task

from scoring.services.preview import preview_execute


@shared_task(name="scoring.preview_tasks.preview_task", acks_late=True)
def preview_task(preview_id: int) -> int:
    """Run one queued preview; safe to run twice (a finished preview is left as it is)."""
    return preview_execute(preview_id).pk

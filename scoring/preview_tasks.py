"""The impact preview's Celery entry point (imported by scoring.tasks, so the worker finds it)."""

from __future__ import annotations

from celery import shared_task

from scoring.services.preview import preview_execute


@shared_task(acks_late=True)
def preview_task(preview_id: int) -> int:
    """Run one queued preview; safe to run twice (a finished preview is left as it is)."""
    return preview_execute(preview_id).pk

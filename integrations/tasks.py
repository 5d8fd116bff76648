"""Celery entry points of the integrations app: thin wrappers over services."""

from __future__ import annotations

from celery import shared_task

from integrations.imports import import_job_run


@shared_task(acks_late=True, ignore_result=True)
def import_file_task(job_id: int) -> None:
    """Run one uploaded file's import (safe to deliver twice: the job is claimed)."""
    import_job_run(job_id)

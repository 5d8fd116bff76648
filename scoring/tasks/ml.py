"""Celery entry points of predictive scoring (explicit names: see scoring.tasks)."""

from __future__ import annotations

from celery import shared_task
from django.contrib.auth import get_user_model

from scoring.jobs import job_claimable
from scoring.ml import scoring as ml_scoring
from scoring.ml.training import train_models
from scoring.models import MLModel


@shared_task(name="scoring.ml_tasks.train_model_task", acks_late=True)
def train_model_task(user_id: int | None, label_stage: str, run_key: str | None = None) -> int:
    """Train both models; progress is recorded on the run's MLModel rows. Running it twice for
    the same run does nothing the second time (the run is over, or a live worker trains it)."""
    if run_key and not job_claimable(MLModel.objects.filter(run_key=run_key)).exists():
        return 0
    user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    report = train_models(label_stage=label_stage, user=user, run_key=run_key)
    return len(report.rows)


@shared_task(name="scoring.ml_tasks.score_active_model_task", acks_late=True)
def score_active_model_task() -> int:
    """Store the active model's probability on every lead (or clear them with none active)."""
    return ml_scoring.score_all()

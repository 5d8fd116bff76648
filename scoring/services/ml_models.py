"""The models page's jobs: start a training run, and refresh the active model's stored
probabilities after a model is activated, rolled back or deactivated. The tasks are sent
after the commit by `scoring.jobs.dispatch`; a broker outage leaves the training run queued
with a message on its rows (the page shows it) and the jobs sweep sends it once the broker is
back, instead of an error page."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

from scoring.jobs import UNREACHABLE_KEEP, Dispatch, dispatch
from scoring.ml import registry
from scoring.ml.training import start_training, training_in_progress
from scoring.models import MLModel

logger = logging.getLogger(__name__)

TRAIN_TASK = "scoring.ml_tasks.train_model_task"
SCORE_TASK = "scoring.ml_tasks.score_active_model_task"


class TrainingBusy(Exception):
    """A training run is already queued or running."""


def training_request(*, label_stage: str, user: Any = None) -> str:
    """Queue a training run (its rows, then the task after the commit); returns its key.
    Raises `TrainingBusy` while another run is queued or running."""
    if training_in_progress():
        raise TrainingBusy("A training run is already under way.")
    user_id = user.pk if getattr(user, "is_authenticated", False) else None
    with transaction.atomic():
        run_key = start_training(label_stage=label_stage, user=user)
        dispatch(
            TRAIN_TASK,
            [user_id, label_stage, run_key],
            jobs=MLModel.objects.filter(run_key=run_key),
            unreachable=UNREACHABLE_KEEP,
        )
    logger.info("ml.training.requested run=%s", run_key)
    return run_key


def probabilities_refresh() -> Dispatch:
    """Store the active model's probability on every lead (clear them with none active), in
    a task after the commit. A broker outage leaves the old probabilities until the next
    change or rescore (logged, never raised)."""
    return dispatch(SCORE_TASK)


def model_activate(row: MLModel) -> MLModel:
    """Make `row` the active model and refresh the probabilities. Raises what
    `registry.activate` raises (`ModelLoadRefused`, `ModelNotReady`)."""
    with transaction.atomic():
        registry.activate(row)
        probabilities_refresh()
    return row


def model_rollback() -> MLModel:
    """Reactivate the previously active model; raises `registry.NothingToRollBack` or
    `registry.ModelLoadRefused`."""
    with transaction.atomic():
        row = registry.rollback()
        probabilities_refresh()
    return row


def model_deactivate() -> None:
    """No active model: rule scores stand alone; the stored probabilities are cleared."""
    with transaction.atomic():
        registry.deactivate()
        probabilities_refresh()

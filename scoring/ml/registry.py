"""The model registry: artifacts on disk under VAR_DIR/models, metadata on `MLModel` rows.

One artifact per model: the whole fitted scikit-learn estimator (a `Pipeline`, or the
`CalibratedClassifierCV` wrapping it), dumped with joblib. Its SHA-256 and the versions of
scikit-learn and NumPy that trained it are stored on the row and checked *before* the file is
unpickled: an artifact from another scikit-learn version (or NumPy major version) is refused
with a message naming both versions, and a file whose hash differs is refused as tampered or
corrupt. At most one model is active (a partial unique constraint); activating one
deactivates the previous, and `rollback` re-activates the one active before it."""

from __future__ import annotations

import hashlib
import io
import logging
import os
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sklearn
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from scoring.models import MLModel

logger = logging.getLogger(__name__)


class ModelLoadRefused(Exception):
    """The artifact cannot be trusted to load: other library versions, or its hash differs."""


class ModelNotReady(Exception):
    """The model has not finished training (or failed), so it cannot be activated."""


class NothingToRollBack(Exception):
    """No model was active before the current one."""


def models_dir() -> Path:
    return Path(settings.VAR_DIR) / "models"


def save_artifact(row: MLModel, estimator: Any) -> MLModel:
    """Dump `estimator`, write it atomically under models_dir() and record its path, hash and
    library versions on `row` (saved)."""
    buffer = io.BytesIO()
    joblib.dump(estimator, buffer)
    data = buffer.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    name = f"{row.pk}-{row.algorithm}-{digest[:12]}.joblib"
    write_file(name, data)
    row.artifact_path = name
    row.artifact_sha256 = digest
    row.sklearn_version = sklearn.__version__
    row.numpy_version = np.__version__
    row.save(update_fields=["artifact_path", "artifact_sha256", "sklearn_version", "numpy_version"])
    logger.info("ml.artifact.saved model=%s bytes=%s", row.pk, len(data))
    return row


def write_file(name: str, data: bytes) -> None:
    """Write `data` as models_dir()/name atomically: a reader sees the old file or the new
    one, never half of it."""
    directory = models_dir()
    directory.mkdir(parents=True, exist_ok=True)
    temporary = directory / f".{name}.tmp"
    temporary.write_bytes(data)
    os.replace(temporary, directory / name)


def read_checked(model_id: int, name: str, sha256: str, what: str) -> bytes:
    """The bytes of models_dir()/name (model `model_id`'s `what`: its artifact, its compiled
    trees),
    once their SHA-256 is the one recorded when they were saved. Raises ModelLoadRefused."""
    try:
        data = (models_dir() / name).read_bytes()
    except OSError as error:
        raise ModelLoadRefused(f"Model #{model_id}: cannot read its {what} ({error}).") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise ModelLoadRefused(
            f"Model #{model_id}: the SHA-256 of its {what} is {digest[:16]}…, but "
            f"{sha256[:16]}… was recorded when it was saved; "
            "refusing to load a changed or corrupt file."
        )
    return data


def check_compatible(row: MLModel) -> None:
    """Raise ModelLoadRefused unless this process can load the row's artifact safely."""
    if row.sklearn_version != sklearn.__version__:
        raise ModelLoadRefused(
            f"Model #{row.pk} was trained with scikit-learn {row.sklearn_version or 'unknown'}, "
            f"but this installation has scikit-learn {sklearn.__version__}: refusing to load it. "
            "Retrain the model with this version (or install the version it was trained with)."
        )
    trained_major = (row.numpy_version or "0").split(".")[0]
    if trained_major != np.__version__.split(".")[0]:
        raise ModelLoadRefused(
            f"Model #{row.pk} was trained with NumPy {row.numpy_version or 'unknown'}, but this "
            f"installation has NumPy {np.__version__}: refusing to load it. Retrain the model."
        )


def load_estimator(row: MLModel) -> Any:
    """The row's fitted estimator. Raises ModelLoadRefused (versions, missing file, hash)."""
    check_compatible(row)
    if not row.artifact_path:
        raise ModelLoadRefused(f"Model #{row.pk} has no artifact (it has not finished training).")
    data = read_checked(row.pk, row.artifact_path, row.artifact_sha256, "artifact")
    return joblib.load(io.BytesIO(data))


def active_model() -> MLModel | None:
    return MLModel.objects.filter(is_active=True).first()


@transaction.atomic
def activate(row: MLModel) -> MLModel:
    """Make `row` the one active model (after checking its artifact loads). The previous
    active model is deactivated and remembered for `rollback`."""
    row = MLModel.objects.select_for_update().get(pk=row.pk)
    if row.status != MLModel.Status.DONE:
        raise ModelNotReady(f"Model #{row.pk} is {row.status}; only a trained model can be active.")
    load_estimator(row)
    now = timezone.now()
    MLModel.objects.filter(is_active=True).exclude(pk=row.pk).update(
        is_active=False, deactivated_at=now
    )
    if not row.is_active:
        row.is_active = True
        row.activated_at = now
        row.save(update_fields=["is_active", "activated_at"])
    logger.info("ml.model.activated model=%s", row.pk)
    return row


@transaction.atomic
def rollback() -> MLModel:
    """Re-activate the model that was active before the current one (the most recently
    deactivated trained model). Raises NothingToRollBack."""
    current = active_model()
    previous = (
        MLModel.objects.filter(status=MLModel.Status.DONE, deactivated_at__isnull=False)
        .exclude(pk=getattr(current, "pk", None))
        .order_by("-deactivated_at", "-pk")
        .first()
    )
    if previous is None:
        raise NothingToRollBack("No model was active before this one.")
    return activate(previous)


@transaction.atomic
def deactivate() -> None:
    """No model active: rule scores stand alone (probabilities are cleared by the caller)."""
    MLModel.objects.filter(is_active=True).update(is_active=False, deactivated_at=timezone.now())

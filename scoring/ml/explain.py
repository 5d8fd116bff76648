"""Why the model gave a lead its probability: the features that push it up and down most.

- Logistic regression: per model column (a standardised number, a missing indicator or a
  one-hot category value) the contribution to the log-odds is coefficient x transformed
  value; the contributions plus the intercept add up to the uncalibrated log-odds exactly.
- Gradient boosting: per feature, the change in probability when that feature alone is set
  to its training median (numbers) or most frequent value (categories), i.e. p(lead) minus
  p(lead with the feature made typical). These need not add up to anything; they say which
  features make this lead different from a typical one, in probability points.

The top `TOP` each way are returned (positive ones "up", negative ones "down")."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.utils import timezone

from scoring.ml import feature_frame as F
from scoring.ml.scoring import LoadedModel, active_loaded
from scoring.ml.training import LOGISTIC, inner_pipeline, logistic_columns

TOP = 3


@dataclass(frozen=True)
class Explanation:
    model_id: int
    algorithm: str
    probability: float
    unit: str  # "log-odds" or "probability"
    up: list[tuple[str, float]] = field(default_factory=list)
    down: list[tuple[str, float]] = field(default_factory=list)
    intercept: float | None = None
    contributions: dict[str, float] = field(default_factory=dict)


def explain_frame(loaded: LoadedModel, raw: F.RawFrame, top: int = TOP) -> list[Explanation]:
    """One explanation per lead of the frame, vectorised per model."""
    X = F.encode(loaded.spec, raw)
    probabilities = loaded.estimator.predict_proba(X)[:, 1] if raw.n else np.zeros(0)
    if loaded.algorithm == LOGISTIC:
        pipeline = inner_pipeline(loaded.estimator)
        model = pipeline.named_steps["model"]
        labels, _ = logistic_columns(pipeline, loaded.spec)
        values = pipeline.named_steps["prepare"].transform(X) * model.coef_[0]
        intercept = float(model.intercept_[0])
        unit = "log-odds"
    else:
        labels = _labels_of_values(loaded.spec, X)
        values = _perturbation_effects(loaded, X, probabilities)
        intercept = None
        unit = "probability"
    explanations = []
    for i in range(raw.n):
        row_labels = labels[i] if isinstance(labels[0], list) else labels
        row = values[i]
        order = np.argsort(row)
        up = [(row_labels[k], round(float(row[k]), 4)) for k in order[::-1][:top] if row[k] > 0]
        down = [(row_labels[k], round(float(row[k]), 4)) for k in order[:top] if row[k] < 0]
        explanations.append(
            Explanation(
                model_id=loaded.pk,
                algorithm=loaded.algorithm,
                probability=round(float(probabilities[i]), 4),
                unit=unit,
                up=up,
                down=down,
                intercept=intercept,
                contributions={
                    row_labels[k]: float(row[k]) for k in np.flatnonzero(row) if row[k] != 0
                },
            )
        )
    return explanations


def _perturbation_effects(loaded: LoadedModel, X: np.ndarray, p: np.ndarray) -> np.ndarray:
    n, width = X.shape
    if n == 0:
        return np.zeros((0, width))
    reference = [np.nan if r is None else r for r in loaded.reference] or [np.nan] * width
    # Every (feature, lead) variant in one predict_proba call: a call per feature cost a few
    # milliseconds of fixed overhead each, most of the lead page's explanation fragment.
    changed = np.repeat(X[np.newaxis, :, :], width, axis=0)
    for j in range(width):
        changed[j, :, j] = reference[j]
    variants = loaded.estimator.predict_proba(changed.reshape(width * n, width))[:, 1]
    return p[:, np.newaxis] - variants.reshape(width, n).T


def _labels_of_values(spec: F.FeatureSpec, X: np.ndarray) -> list[list[str]]:
    """Per lead, a label per feature naming its value ("source = google", "employees = 250")."""
    names = spec.names
    p_num = len(spec.numeric_names)
    rows = []
    for i in range(X.shape[0]):
        labels = []
        for j, name in enumerate(names):
            value = X[i, j]
            if j >= p_num:
                feature = spec.categorical[j - p_num]
                labels.append(f"{name} = {F.category_label(feature, int(value))}")
            elif value != value:
                labels.append(f"{name} is missing")
            else:
                labels.append(f"{name} = {value:g}")
        rows.append(labels)
    return rows


def explain_lead(
    lead_id: int, *, as_of: dt.datetime | None = None, loaded: LoadedModel | None = None
) -> Explanation | None:
    """The active model's explanation of one lead (None when no model is active or the lead
    does not exist). Raises registry.ModelLoadRefused when the artifact cannot be loaded."""
    loaded = loaded or active_loaded()
    if loaded is None:
        return None
    raw = F.read_frame(loaded.spec, as_of or timezone.now(), lead_id, lead_id)
    if raw.n == 0:
        return None
    return explain_frame(loaded, raw)[0]


def explanation_context(lead_id: int) -> dict[str, Any] | None:
    """Plain data for a template: probability, unit and the up / down lists (or an error)."""
    from scoring.ml.registry import ModelLoadRefused

    try:
        explanation = explain_lead(lead_id)
    except ModelLoadRefused as error:
        return {"error": str(error)}
    if explanation is None:
        return None
    return {
        "model_id": explanation.model_id,
        "algorithm": explanation.algorithm,
        "probability": explanation.probability,
        "unit": explanation.unit,
        "up": [{"feature": f, "value": v} for f, v in explanation.up],
        "down": [{"feature": f, "value": v} for f, v in explanation.down],
    }

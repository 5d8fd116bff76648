"""Evaluation of probabilities against outcomes: ROC AUC, PR AUC (average precision), Brier
score, expected calibration error, lift in the top decile and a calibration curve, overall and
per persona with n. Pure NumPy + scikit-learn; computed on test leads only by the caller."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

CALIBRATION_BINS = 10


def _safe(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 6)


def roc_auc(y: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC AUC, None when only one class is present (it is undefined then)."""
    y = np.asarray(y)
    if y.size == 0 or y.min() == y.max():
        return None
    return _safe(roc_auc_score(y, scores))


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = CALIBRATION_BINS) -> float:
    """Sum over equal-width probability bins of (bin share) x |mean predicted - observed rate|."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    if y.size == 0:
        return math.nan
    index = np.minimum((p * bins).astype(np.int64), bins - 1)
    total = 0.0
    for b in range(bins):
        mask = index == b
        if mask.any():
            total += mask.mean() * abs(p[mask].mean() - y[mask].mean())
    return float(total)


def calibration_curve(
    y: np.ndarray, p: np.ndarray, bins: int = CALIBRATION_BINS
) -> list[dict[str, float]]:
    """Per non-empty equal-width bin: mean predicted probability, observed rate and n."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    index = np.minimum((p * bins).astype(np.int64), bins - 1)
    curve = []
    for b in range(bins):
        mask = index == b
        if mask.any():
            curve.append(
                {
                    "predicted": round(float(p[mask].mean()), 6),
                    "observed": round(float(y[mask].mean()), 6),
                    "n": int(mask.sum()),
                }
            )
    return curve


def lift_top_decile(y: np.ndarray, scores: np.ndarray) -> float | None:
    """Conversion rate of the 10 % highest-scored leads over the overall rate (ties broken by
    position, so the top decile has exactly ceil(n / 10) leads)."""
    y = np.asarray(y, dtype=np.float64)
    if y.size == 0 or y.sum() == 0:
        return None
    k = max(1, math.ceil(0.1 * y.size))
    top = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")[:k]
    return _safe(y[top].mean() / y.mean())


def probability_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    """The overall metrics of one model on one set of leads."""
    y = np.asarray(y)
    p = np.asarray(p, dtype=np.float64)
    both = y.size > 0 and y.min() != y.max()
    return {
        "n": int(y.size),
        "positives": int(y.sum()),
        "roc_auc": roc_auc(y, p),
        "pr_auc": _safe(average_precision_score(y, p)) if both else None,
        "brier": _safe(brier_score_loss(y, p)) if y.size else None,
        "ece": _safe(expected_calibration_error(y, p)),
        "lift_top_decile": lift_top_decile(y, p),
        # Only to compare with published results that report accuracy; a threshold metric.
        "accuracy_at_0_5": _safe(float(((p >= 0.5) == (y == 1)).mean())) if y.size else None,
    }


def per_persona(y: np.ndarray, p: np.ndarray, persona: np.ndarray) -> list[dict[str, Any]]:
    """The metrics per persona (None = "(no persona)"), each with its n, largest first."""
    rows = []
    labels = np.asarray(persona, dtype=object)
    for name in sorted(set(labels.tolist()), key=lambda v: str(v)):
        mask = labels == name
        metrics = probability_metrics(y[mask], p[mask])
        rows.append({"persona": name, **metrics})
    rows.sort(key=lambda row: -row["n"])
    return rows

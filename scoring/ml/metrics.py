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


def roc_auc(
    y: np.ndarray, scores: np.ndarray, sample_weight: np.ndarray | None = None
) -> float | None:
    """ROC AUC (scikit-learn's: ties count half), None when only one class is present (it is
    undefined then). The one ROC AUC of the product: models, rules, KPIs and the preview.

    `sample_weight` counts each (label, score) that many times, so a histogram (one entry per
    score value and class, weighted by its count) gives the AUC of the leads behind it without
    expanding them; entries of weight 0 are left out."""
    y = np.asarray(y)
    scores = np.asarray(scores, dtype=np.float64)
    if sample_weight is not None:
        sample_weight = np.asarray(sample_weight, dtype=np.float64)
        kept = sample_weight > 0
        y, scores, sample_weight = y[kept], scores[kept], sample_weight[kept]
    if y.size == 0 or y.min() == y.max():
        return None
    value = float(roc_auc_score(y, scores, sample_weight=sample_weight))
    return value if math.isfinite(value) else None


def roc_auc_from_counts(
    scores: np.ndarray, positives: np.ndarray, negatives: np.ndarray
) -> float | None:
    """`roc_auc` of a histogram: at each of `scores`, `positives[i]` converted and
    `negatives[i]` unconverted leads (as the KPI and preview SQL count them)."""
    scores = np.asarray(scores, dtype=np.float64)
    y = np.concatenate((np.ones(scores.size, dtype=np.int8), np.zeros(scores.size, np.int8)))
    weights = np.concatenate((np.asarray(positives), np.asarray(negatives)))
    return roc_auc(y, np.concatenate((scores, scores)), sample_weight=weights)


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
        "roc_auc": _safe(roc_auc(y, p)),
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

"""Checks at training that leave a feature out, each with a reason for the report.

- **Range overlap** (`range_overlap_drops`): a feature whose test values mostly fall outside
  the range its training values span (a number) or were never seen on a training lead (a
  category) depends on when the split was cut (a lead's age, a date-like attribute): the model
  could only extrapolate on it, so it is left out. The time-honest behaviour columns (capped
  ages, the calendar) pass it; what is left are attributes that drift with time.
- **Leakage guard** (`leakage_drops`): a feature whose ROC AUC on its own, on the training
  leads, is above `ML_LEAKAGE_AUC` (default 0.95) is almost certainly known only after the
  outcome (a call's duration, a sales-entered status); it is left out unless allowed.

Both work on the encoded matrix (`feature_frame.encode`), numbers first then category codes."""

from __future__ import annotations

import numpy as np

from scoring.ml import feature_frame as F
from scoring.ml.metrics import roc_auc

# A feature is kept when at least this share of its test values lies within its training range.
MIN_RANGE_OVERLAP = 0.5


def range_overlap_drops(
    spec: F.FeatureSpec, X: np.ndarray, raw: F.RawFrame, train: np.ndarray, test: np.ndarray
) -> dict[str, str]:
    """Feature name -> reason, for the features whose test values mostly lie outside their
    training range (numbers) or were never seen in training (categories)."""
    drops: dict[str, str] = {}
    names = spec.names
    p_num = len(spec.numeric_names)
    for j in range(p_num):
        trained = X[train, j]
        tested = X[test, j]
        trained, tested = trained[np.isfinite(trained)], tested[np.isfinite(tested)]
        if trained.size == 0 or tested.size == 0:
            continue
        low, high = float(trained.min()), float(trained.max())
        inside = float(np.mean((tested >= low) & (tested <= high)))
        if inside < MIN_RANGE_OVERLAP:
            drops[names[j]] = (
                f"test values ({tested.min():g} to {tested.max():g}) lie outside the training "
                f"range ({low:g} to {high:g}) for {1 - inside:.0%} of test leads: the feature "
                "depends on when the split was cut"
            )
    for c, feature in enumerate(spec.categorical):
        tested = raw.categorical[test, c]
        tested = tested[tested != F.MISSING]
        if tested.size == 0:
            continue
        seen = np.unique(raw.categorical[train, c].astype(str))
        inside = float(np.mean(np.isin(tested.astype(str), seen)))
        if inside < MIN_RANGE_OVERLAP:
            drops[feature.name] = (
                f"{1 - inside:.0%} of test leads have a value no training lead has: the "
                "feature depends on when the split was cut"
            )
    return drops


def single_feature_auc(spec: F.FeatureSpec, X: np.ndarray, y: np.ndarray) -> list[float | None]:
    """Per feature of `spec.names`, the ROC AUC of that feature alone on (X, y), direction-free
    (max(auc, 1 - auc)). A number ranks by its value, missing below every value; a category
    by its code's rate of positives among these leads."""
    out: list[float | None] = []
    p_num = len(spec.numeric_names)
    for j in range(X.shape[1]):
        column = X[:, j]
        if j < p_num:
            finite = np.isfinite(column)
            if not finite.any():
                out.append(None)
                continue
            values = np.where(finite, column, column[finite].min() - 1.0)
        else:
            codes = column.astype(np.int64)
            counts = np.bincount(codes)
            positives = np.bincount(codes, weights=y, minlength=counts.size)
            rates = positives / np.maximum(counts, 1)
            values = rates[codes]
        auc = roc_auc(y, values)
        out.append(None if auc is None else max(auc, 1.0 - auc))
    return out


def leakage_drops(
    spec: F.FeatureSpec,
    X: np.ndarray,
    y: np.ndarray,
    threshold: float,
    allow: set[str] = frozenset(),
) -> dict[str, str]:
    """Feature name -> reason, for the features whose single-feature ROC AUC on (X, y) (the
    training leads) is above `threshold`; the names in `allow` are kept."""
    drops: dict[str, str] = {}
    allowed = {F.normalise_key(name.removeprefix("attributes.")) for name in allow}
    for name, auc in zip(spec.names, single_feature_auc(spec, X, y), strict=True):
        if auc is None or auc <= threshold:
            continue
        if F.normalise_key(name.removeprefix("attributes.")) in allowed:
            continue
        drops[name] = (
            f"probable leakage: its ROC AUC on its own is {auc:.3f} on the training leads "
            f"(above ML_LEAKAGE_AUC {threshold:g}); use --allow {name} to keep it"
        )
    return drops

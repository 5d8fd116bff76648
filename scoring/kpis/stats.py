"""Pure statistics for the KPI dashboard: NumPy in, plain numbers out, no Django.

Most KPIs are computed from *histograms* that SQL returns (how many leads, and how many of
them converted, at each integer score), never from one row per lead: a score is an integer
in [floor, ceiling], so a few hundred histogram cells carry everything that AUC (computed by
`scoring.ml.metrics.roc_auc_from_counts`, the one ROC AUC), lift, gains and
the threshold curve need, whether the cohort has 30 leads or a million. Where scores tie across a
decile boundary, the tied leads are split between the deciles and their conversions shared in
proportion: the expected value under random tie-breaking, which is the only order-free answer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Two-sided 95 %: the 0.975 quantile of the standard normal.
Z_95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float | None, float | None]:
    """The Wilson score interval for a binomial proportion; (None, None) when n is 0.

    Unlike the normal approximation it stays inside [0, 1] and is sensible for 0 of n and n
    of n, which small bands produce all the time."""
    if n <= 0:
        return None, None
    if successes < 0 or successes > n:
        raise ValueError(f"successes must be within [0, n]; got {successes} of {n}")
    p = successes / n
    z2 = z * z
    denominator = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def rate(successes: float, n: float) -> float | None:
    """successes / n, or None when there is nothing to divide by."""
    return successes / n if n else None


def quantiles(values: Sequence[float] | np.ndarray) -> dict[str, float | None]:
    """min, q1, median, q3, max with linear interpolation (PostgreSQL's percentile_cont);
    all None for no values."""
    array = np.asarray(values, dtype=float)
    if array.size == 0:
        return {"min": None, "q1": None, "median": None, "q3": None, "max": None}
    q = np.quantile(array, [0.0, 0.25, 0.5, 0.75, 1.0])
    return {
        "min": float(q[0]),
        "q1": float(q[1]),
        "median": float(q[2]),
        "q3": float(q[3]),
        "max": float(q[4]),
    }


@dataclass(frozen=True)
class ScoreHistogram:
    """Leads and conversions per distinct score, sorted by score descending."""

    scores: np.ndarray  # float, descending, unique
    leads: np.ndarray  # int
    positives: np.ndarray  # int

    @classmethod
    def from_cells(cls, cells: Sequence[tuple[float, int, int]]) -> ScoreHistogram:
        """cells: (score, leads, positives); repeated scores are summed."""
        if not cells:
            empty = np.zeros(0)
            return cls(empty, empty.astype(int), empty.astype(int))
        raw = np.asarray(cells, dtype=float)
        unique, inverse = np.unique(raw[:, 0], return_inverse=True)
        leads = np.bincount(inverse, weights=raw[:, 1], minlength=unique.size)
        positives = np.bincount(inverse, weights=raw[:, 2], minlength=unique.size)
        order = np.argsort(-unique)
        return cls(unique[order], leads[order].astype(int), positives[order].astype(int))

    @property
    def total(self) -> int:
        return int(self.leads.sum())

    @property
    def total_positives(self) -> int:
        return int(self.positives.sum())


def roc_points(histogram: ScoreHistogram) -> list[dict[str, float]]:
    """(fpr, tpr, threshold) at each distinct score, from the strictest threshold down,
    starting at (0, 0)."""
    pos = histogram.positives.astype(float)
    neg = (histogram.leads - histogram.positives).astype(float)
    n_pos, n_neg = pos.sum(), neg.sum()
    points = [{"threshold": None, "fpr": 0.0, "tpr": 0.0}]
    if n_pos == 0 or n_neg == 0:
        return points
    tpr = pos.cumsum() / n_pos
    fpr = neg.cumsum() / n_neg
    for score, f, t in zip(histogram.scores, fpr, tpr, strict=True):
        points.append({"threshold": float(score), "fpr": float(f), "tpr": float(t)})
    return points


def decile_table(histogram: ScoreHistogram, groups: int = 10) -> list[dict[str, float | int]]:
    """Leads ranked by score (highest first) cut into `groups` equal parts.

    Each row: decile (1 = top scores), leads (integer), converted (expected conversions, a
    float where a tie straddles the boundary), conversion_rate, lift (decile rate / overall
    rate), cumulative_leads_share, cumulative_gain (share of all conversions captured down to
    this decile), min_score, max_score. Empty when there are no leads."""
    total = histogram.total
    if total == 0:
        return []
    overall = histogram.total_positives / total
    bounds = [round(k * total / groups) for k in range(groups + 1)]
    group_end = histogram.leads.cumsum()
    group_start = group_end - histogram.leads
    shares = np.where(histogram.leads > 0, histogram.positives / np.maximum(histogram.leads, 1), 0)
    rows: list[dict[str, float | int]] = []
    captured = 0.0
    for k in range(groups):
        low, high = bounds[k], bounds[k + 1]
        overlap = np.clip(np.minimum(group_end, high) - np.maximum(group_start, low), 0, None)
        n = int(overlap.sum())
        if n == 0:
            continue
        converted = float((overlap * shares).sum())
        captured += converted
        present = histogram.scores[overlap > 0]
        decile_rate = converted / n
        rows.append(
            {
                "decile": k + 1,
                "leads": n,
                "converted": converted,
                "conversion_rate": decile_rate,
                "lift": decile_rate / overall if overall else None,
                "cumulative_leads_share": high / total,
                "cumulative_gain": (
                    captured / histogram.total_positives if histogram.total_positives else None
                ),
                "min_score": float(present.min()),
                "max_score": float(present.max()),
            }
        )
    return rows


def decile_overlaps(histogram: ScoreHistogram, groups: int = 10) -> np.ndarray:
    """For calibration: a (groups, distinct scores) matrix of how many of each score's leads
    fall in each decile (same cut as `decile_table`)."""
    total = histogram.total
    matrix = np.zeros((groups, histogram.scores.size))
    if total == 0:
        return matrix
    bounds = [round(k * total / groups) for k in range(groups + 1)]
    group_end = histogram.leads.cumsum()
    group_start = group_end - histogram.leads
    for k in range(groups):
        matrix[k] = np.clip(
            np.minimum(group_end, bounds[k + 1]) - np.maximum(group_start, bounds[k]), 0, None
        )
    return matrix


def threshold_curve(
    histogram: ScoreHistogram, thresholds: Sequence[float], total_positives: int | None = None
) -> list[dict[str, float | int | None]]:
    """For each threshold t: leads with score >= t (would be MQL), how many of them converted,
    precision and recall. `total_positives` lets recall count converters that have no score at
    all (they are missed at every threshold); it defaults to the histogram's own."""
    positives_all = histogram.total_positives if total_positives is None else total_positives
    rows = []
    for t in thresholds:
        mask = histogram.scores >= t
        selected = int(histogram.leads[mask].sum())
        hits = int(histogram.positives[mask].sum())
        rows.append(
            {
                "threshold": float(t),
                "mqls": selected,
                "converted": hits,
                "precision": rate(hits, selected),
                "recall": rate(hits, positives_all),
            }
        )
    return rows

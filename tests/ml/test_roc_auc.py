"""The one ROC AUC (scoring.ml.metrics.roc_auc, scikit-learn's), for per-lead scores and for
histograms, against the definition: the share of (converted, not converted) pairs in which
the converted lead scored higher, ties counting half."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scoring.ml.metrics import roc_auc, roc_auc_from_counts


def pairwise_auc(labels: list[int], scores: list[float]) -> float:
    positives = [s for s, y in zip(scores, labels, strict=True) if y]
    negatives = [s for s, y in zip(scores, labels, strict=True) if not y]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


leads = st.lists(st.tuples(st.integers(-5, 20), st.booleans()), min_size=2, max_size=60).filter(
    lambda rows: 0 < sum(label for _, label in rows) < len(rows)
)


@settings(max_examples=80, deadline=None)
@given(leads)
def test_auc_is_the_share_of_pairs_the_converted_lead_wins_ties_counting_half(rows):
    labels = [int(label) for _, label in rows]
    scores = [float(score) for score, _ in rows]
    assert roc_auc(np.array(labels), np.array(scores)) == pytest.approx(
        pairwise_auc(labels, scores)
    )


histograms = st.lists(
    st.tuples(st.integers(0, 100), st.integers(0, 6), st.integers(0, 6)), min_size=1, max_size=25
).filter(lambda cells: sum(p for _, p, _ in cells) and sum(n for _, _, n in cells))


@settings(max_examples=80, deadline=None)
@given(histograms)
def test_a_histograms_auc_equals_the_auc_of_the_leads_behind_it(cells):
    # Repeated scores and empty cells included: weights add up, zero weights drop out.
    scores = np.array([score for score, _, _ in cells], dtype=float)
    positives = np.array([p for _, p, _ in cells])
    negatives = np.array([n for _, _, n in cells])
    labels, expanded = [], []
    for score, p, n in cells:
        labels += [1] * p + [0] * n
        expanded += [float(score)] * (p + n)
    expected = roc_auc(np.array(labels), np.array(expanded))
    assert expected == pytest.approx(pairwise_auc(labels, expanded))
    assert roc_auc_from_counts(scores, positives, negatives) == pytest.approx(expected)


def test_auc_is_none_when_only_one_class_is_present():
    assert roc_auc(np.ones(5), np.arange(5)) is None
    assert roc_auc(np.array([]), np.array([])) is None
    assert roc_auc_from_counts(np.array([5.0, 7.0]), np.array([3, 1]), np.array([0, 0])) is None
    # A class whose every entry has weight 0 is absent too.
    assert roc_auc(np.array([1, 0]), np.array([2.0, 1.0]), sample_weight=[4, 0]) is None
